"""``manifest.json`` of an index folder: the teacher it belongs to, how it is built, what it holds."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from embedkd._version import __version__
from embedkd.errors import InputError
from embedkd.index.store import DocStore
from embedkd.models.manifest import TeacherRef
from embedkd.npy import atomic_write_bytes

__all__ = ["IndexManifest", "check_fusion_pair", "index_documents", "is_index_folder", "remembered_fusion"]

logger = logging.getLogger(__name__)

_FILE = "manifest.json"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class IndexManifest:
    teacher: TeacherRef
    dimension: int  # of the teacher's vectors (before any --dims truncation)
    params: dict[str, Any]  # IndexParams.to_dict()
    chunking: dict[str, Any]  # {"max_tokens": .., "overlap": .., "enabled": ..}
    metric: str = "inner_product"
    normalized: bool = True
    precision: str = "fp32"  # what the teacher computed the vectors in; later writes use the same
    fusion: str | None = None  # the fusion index of the same documents (`embedkd index link`), from this folder

    counts: dict[str, int] = field(default_factory=dict)
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    embedkd_version: str = __version__

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "embedkd-index", **asdict(self)}

    def write(self, folder: Path) -> None:
        self.updated_at = _now()
        atomic_write_bytes(Path(folder) / _FILE, json.dumps(self.to_dict(), indent=2).encode())

    @classmethod
    def read(cls, folder: Path) -> IndexManifest:
        path = Path(folder) / _FILE
        if not path.is_file():
            raise InputError(f"{folder} is not an embedkd index (no {_FILE}); build one with `embedkd index build`")
        try:
            data = json.loads(path.read_text())
            return cls(
                teacher=TeacherRef(**data["teacher"]),
                dimension=int(data["dimension"]),
                params=dict(data["params"]),
                chunking=dict(data["chunking"]),
                metric=data.get("metric", "inner_product"),
                normalized=bool(data.get("normalized", True)),
                precision=str(data.get("precision", "fp32")),
                fusion=str(data["fusion"]) if data.get("fusion") else None,
                counts=dict(data.get("counts") or {}),
                created_at=data.get("created_at", ""),
                updated_at=data.get("updated_at", ""),
                embedkd_version=data.get("embedkd_version", ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: malformed index manifest ({exc})") from exc


def remembered_fusion(folder: Path) -> Path | None:
    """The fusion index that the index at ``folder`` remembers (``embedkd index link``), or None.

    A remembered index that is gone is an error, not a silent fallback to unfused search and writes."""
    manifest = IndexManifest.read(folder)
    if manifest.fusion is None:
        return None
    partner = (Path(folder) / manifest.fusion).resolve()
    if not (partner / _FILE).is_file():
        raise InputError(
            f"index {folder} remembers the fusion index {partner}, which is not an embedkd index (moved or deleted?): "
            f"move it back, or forget it with `embedkd index link --index {folder} --forget`"
        )
    return partner


def check_fusion_pair(folder: Path, partner: Path, *, strict: bool = True) -> None:
    """Refuse ``partner`` as ``folder``'s fusion index unless it is a second folder, built by another model,
    holding the same document ids (`embedkd index link`, and a fusion index given to a search or a server).
    Reads only the two manifests and document stores, not the vectors. Not ``strict`` (a fusion index the
    index remembers, which writes keep in step), other documents are a warning: a server restarted after a
    write that reached one index only still serves, each candidate missing there scored as its lowest."""
    if partner.resolve() == folder.resolve():
        raise InputError("a fusion index must be a second index folder, not the index itself")
    ours, theirs = IndexManifest.read(folder), IndexManifest.read(partner)
    if theirs.teacher.fingerprint == ours.teacher.fingerprint:
        raise InputError(
            f"{partner} was built by {theirs.teacher.name}, the same model as {folder}: fusing it adds nothing; "
            "build the fusion index with another model (e.g. the student's base)"
        )
    mine = DocStore(folder, dimension=ours.dimension, readonly=True)
    other = DocStore(partner, dimension=theirs.dimension, readonly=True)
    try:
        count, their_count = mine.counts()["documents"], other.counts()["documents"]
        pairs = zip(mine.iter_ids(), other.iter_ids(), strict=False) if count == their_count else ()
        unmatched = next(((a, b) for a, b in pairs if a != b), None)  # ids in order: the first mismatch
    finally:
        mine.close()
        other.close()
    if count != their_count or unmatched is not None:
        detail = f"{their_count} documents against {count}" if count != their_count else f"ids differ at {unmatched}"
        message = (
            f"{partner} and {folder} must hold the same documents ({detail}): fill the fusion index "
            f"(`embedkd index upsert --index {partner} -i DOCS`) first"
        )
        if strict:
            raise InputError(message)
        logger.warning("%s; fusing anyway, as the index remembers it", message)


def is_index_folder(path: Path) -> bool:
    """Whether ``path`` is an embedkd index folder (a manifest and a document store)."""
    return path.is_dir() and (path / _FILE).is_file() and (path / "docstore.sqlite").is_file()


def index_documents(folder: Path) -> list[tuple[str, str]]:
    """(title, text) of every document an index holds, in id order: training text for a student that will
    serve it (`embedkd train --data INDEX`). Read-only, so safe beside a process that writes the index."""
    manifest = IndexManifest.read(folder)
    store = DocStore(folder, dimension=manifest.dimension, readonly=True)
    try:
        return list(store.iter_texts())
    finally:
        store.close()
