"""Sharded teacher embeddings on disk: what a distributed encode writes and ``index build --from-embeddings``
reads, whichever engine made them.

A folder holds ``manifest.json`` (the teacher's identity, dimension, precision, chunking and the shard
list) and ``shard-NNNNN.parquet`` files with one row per chunk: ``id`` (document id), ``ordinal`` (chunk
number), ``text_sha`` (sha256 of the exact text embedded) and ``vector`` (float32 list). Shards are fixed
slices of the input documents, written to a temporary name and renamed, so a shard that exists is complete
and a rerun skips it. The chunks are the ones an index would make (``Index.chunk``), so an index built from
the shards holds exactly the vectors it would have computed itself.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embedkd.data.documents import Document
from embedkd.embedding_cache import unusable_row
from embedkd.errors import InputError
from embedkd.index.chunking import Chunk, chunk_document
from embedkd.models.manifest import TeacherRef

__all__ = ["ShardManifest", "ShardSet", "build_from_embeddings", "chunk_for_index", "text_sha"]

MANIFEST = "manifest.json"


def text_sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def chunk_for_index(docs: Sequence[Document], teacher: TeacherRef, chunking: dict[str, Any]) -> list[list[Chunk]]:
    """The chunks an index with these ``chunking`` settings makes of ``docs`` (see ``Index.chunk``)."""
    from embedkd.index.chunking import Chunk
    from embedkd.index.document_index import _full_text

    if not chunking.get("enabled", True):
        return [[Chunk(0, _full_text(d), d.text, 0, len(d.text))] for d in docs]
    from transformers import AutoTokenizer

    from embedkd.models.loading import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model_path(teacher.name)))
    tokenizer.model_max_length = 10**9
    return [
        chunk_document(d, tokenizer, max_tokens=int(chunking["max_tokens"]), overlap=int(chunking["overlap"]))
        for d in docs
    ]


@dataclass
class ShardManifest:
    teacher: TeacherRef
    dimension: int
    precision: str
    chunking: dict[str, Any]
    documents: int
    shard_size: int
    source: str = ""
    engine: str = ""
    shards: dict[str, int] = field(default_factory=dict)  # file name -> rows

    @classmethod
    def read(cls, folder: Path) -> ShardManifest:
        path = Path(folder) / MANIFEST
        if not path.is_file():
            raise InputError(f"{folder} holds no {MANIFEST}: not a sharded-embeddings folder")
        try:
            data = json.loads(path.read_text())
            manifest = cls(**{**data, "teacher": TeacherRef(**data["teacher"])})
            chunk_tokens = manifest.chunking.get("max_tokens")
            if not all(isinstance(v, int) and v > 0 for v in (manifest.dimension, manifest.shard_size)):
                raise ValueError("dimension and shard_size must be positive integers")
            if not isinstance(manifest.documents, int) or manifest.documents < 0:
                raise ValueError("documents must be an integer of 0 or more")
            if chunk_tokens is not None and not isinstance(chunk_tokens, int):
                raise ValueError("chunking.max_tokens must be an integer")
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise InputError(f"{path} is damaged ({exc}); encode the shards again into a new folder") from exc
        return manifest

    def write(self, folder: Path) -> None:
        tmp = Path(folder) / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, Path(folder) / MANIFEST)

    def shard_count(self) -> int:
        return -(-self.documents // self.shard_size)


class ShardSet:
    """Read and write the shards of one folder."""

    def __init__(self, folder: Path, manifest: ShardManifest) -> None:
        self.folder = Path(folder)
        self.manifest = manifest

    @staticmethod
    def name(index: int) -> str:
        return f"shard-{index:05d}.parquet"

    def missing(self) -> list[int]:
        return [i for i in range(self.manifest.shard_count()) if not (self.folder / self.name(i)).is_file()]

    def write_shard(self, index: int, rows: list[dict[str, Any]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table(
            {
                "id": [r["id"] for r in rows],
                "ordinal": pa.array([r["ordinal"] for r in rows], pa.int32()),
                "text_sha": [r["text_sha"] for r in rows],
                "vector": pa.array([np.asarray(r["vector"], np.float32) for r in rows], pa.list_(pa.float32())),
            }
        )
        target = self.folder / self.name(index)
        tmp = self.folder / f".{target.name}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, target)
        self.manifest.shards[target.name] = len(rows)
        self.manifest.write(self.folder)

    def shard(self, i: int) -> dict[str, np.ndarray]:
        """Vectors of shard ``i`` by text sha."""
        import pyarrow.parquet as pq

        path = self.folder / self.name(i)
        if not path.is_file():
            raise InputError(f"{path} is missing: finish the encode (rerun it; finished shards are kept)")
        dimension = self.manifest.dimension
        try:
            table = pq.read_table(path, columns=["text_sha", "vector"])
            vectors = np.asarray(table.column("vector").to_pylist(), dtype=np.float32)
            if len(vectors) and vectors.shape[1:] != (dimension,):
                raise ValueError(f"vectors of shape {vectors.shape[1:]}, not ({dimension},)")
            if unusable_row(vectors) is not None:  # as cache import refuses them
                raise ValueError("a vector is NaN, infinite or zero")
            return dict(zip(table.column("text_sha").to_pylist(), vectors, strict=True))
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
            raise InputError(f"{path} is damaged ({exc}); delete it and rerun the encode to write it again") from exc

    def rows(self) -> Iterator[tuple[str, np.ndarray]]:
        """(text sha, vector) of every chunk, shard by shard."""
        for i in range(self.manifest.shard_count()):
            yield from self.shard(i).items()


class ShardReader:
    """Vectors by text sha for texts asked for in the shards' own order, a few shards in memory at a time.

    The shards were written from the same documents in the same order as an index build asks for them, so
    each request is in the newest shard read or a later one; shards behind it are dropped. A text asked for
    again later (a duplicate chunk) falls back to a scan of every shard.
    """

    def __init__(self, shards: ShardSet) -> None:
        self.shards = shards
        self._next = 0
        self._window: list[dict[str, np.ndarray]] = []

    def get(self, shas: Sequence[str]) -> list[np.ndarray | None]:
        found: list[np.ndarray | None] = []
        for sha in shas:
            vector = next((w[sha] for w in reversed(self._window) if sha in w), None)
            while vector is None and self._next < self.shards.manifest.shard_count():
                self._window.append(self.shards.shard(self._next))
                self._next += 1
                vector = self._window[-1].get(sha)
            found.append(vector)
        self._window = self._window[-1:]
        missing = {sha for sha, vector in zip(shas, found, strict=True) if vector is None}
        if missing:  # out of order (a duplicate text): look through every shard once
            extra = {sha: v for sha, v in self.shards.rows() if sha in missing}
            found = [v if v is not None else extra.get(sha) for sha, v in zip(shas, found, strict=True)]
        return found


def build_from_embeddings(
    folder: Path,
    docs: Sequence[Document],
    embeddings: Path,
    *,
    params: Any = None,
    teacher: str | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> Any:
    """Build an index from sharded embeddings, through the same ``build_index`` as an encode-and-build.

    The shards' teacher is the index's teacher (``teacher``, when given, must be the same weights), and
    every chunk of ``docs`` must have its vector in the shards (same text, by sha256).
    """
    from embedkd.index.build import build_index

    manifest = ShardManifest.read(embeddings)
    if teacher is not None:
        from embedkd.distill.teacher import Teacher
        from embedkd.retrieval import RetrievalMode, alignment_problem, raise_or_warn

        here = Teacher.from_model(teacher).ref
        problem = alignment_problem(
            name=f"teacher {teacher}",
            fingerprint=here.fingerprint,
            dimension=here.dimension,
            manifest=None,
            indexed_by=manifest.teacher,
            mode=RetrievalMode.TEACHER,
            where=f"the embeddings in {embeddings}",
        )
        raise_or_warn(problem, force=False, overridable=False)
    reader = ShardReader(ShardSet(Path(embeddings), manifest))

    def embed(texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), manifest.dimension), dtype=np.float32)
        for i, (text, vector) in enumerate(zip(texts, reader.get([text_sha(t) for t in texts]), strict=True)):
            if vector is None:
                raise InputError(
                    f"a chunk of the documents has no vector in {embeddings} (e.g. {text[:60]!r}): encode these "
                    "documents with the same chunking first"
                )
            out[i] = vector
        return out

    chunking = manifest.chunking
    return build_index(
        folder,
        docs,
        teacher=manifest.teacher,
        embed=embed,
        params=params,
        chunking=bool(chunking.get("enabled", True)),
        chunk_tokens=int(chunking["max_tokens"]),
        overlap=chunking.get("overlap"),
        device=device,
        precision=manifest.precision,
        progress=progress,
    )
