"""A disk cache of one model's embeddings, keyed by text, shared by training, evaluation and indexing.

Layout of a cache folder::

    manifest.json   model name, fingerprint, dimension, max_seq_length, prompt, precision, committed row count
    vectors.f16     float16 rows, appended in chunks, memory-mapped for reads
    keys.txt        one text hash (blake2b, 32 hex chars) per row, same order

Rows are appended chunk by chunk: vectors first, then keys, each flushed and fsynced, then the manifest's
``count`` is replaced atomically. Only ``count`` rows are ever trusted, so a crash mid-append loses at most
the chunk in flight, and the next run re-encodes just the texts that are missing: the cache resumes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from embedkd.errors import InputError
from embedkd.npy import atomic_write_bytes
from embedkd.paths import cache_dir

if TYPE_CHECKING:
    from embedkd.models.manifest import TeacherRef

__all__ = ["EmbeddingCache", "text_key", "unusable_row"]

_MANIFEST = "manifest.json"
_VECTORS = "vectors.f16"
_KEYS = "keys.txt"
_FORMAT = 1
_KEY_LINE = 33  # 32 hex characters and a newline


def text_key(text: str) -> str:
    """Stable 128-bit hash of a text, used as its cache key."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


_OPEN: dict[Path, EmbeddingCache] = {}


def unusable_row(vectors: np.ndarray) -> tuple[int, str] | None:
    """The first row of ``vectors`` that cannot be an embedding, and why ("NaN or infinite values", or
    "length 0": no direction to search by), or None. Norms in float64, so huge finite float32 values are
    not mistaken for infinite ones. Imported vectors are checked with it before any is added."""
    norms = np.linalg.norm(np.asarray(vectors, dtype=np.float64), axis=1)
    bad = np.flatnonzero(~np.isfinite(norms) | (norms < 1e-6))
    if not bad.size:
        return None
    row = int(bad[0])
    return row, "NaN or infinite values" if not np.isfinite(norms[row]) else "length 0"


class EmbeddingCache:
    """Embeddings of one model (identified by its fingerprint) for any number of texts."""

    def __init__(
        self,
        folder: Path,
        *,
        model_name: str,
        fingerprint: str,
        dimension: int,
        max_seq_length: int | None = None,
        prompt: str = "",
        precision: str = "fp32",
    ) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.identity: dict[str, Any] = {
            "model": model_name,
            "fingerprint": fingerprint,
            "dimension": int(dimension),
            "max_seq_length": max_seq_length,
            "prompt": prompt,
            "precision": precision,
        }
        self._rows: dict[str, int] = {}
        self._count = 0
        self._memmap: np.memmap | None = None
        with self._lock():
            self._load_or_init()

    # ------------------------------------------------------------------ construction
    @classmethod
    def for_ref(
        cls, ref: TeacherRef, *, role: str | None = "document", variant: str = "fp32", root: Path | None = None
    ) -> EmbeddingCache:
        """The cache of the model ``ref`` identifies, for ``role``'s prompt and a numeric ``variant`` (fp32,
        bf16, onnx-int8, ...). Every caller derives its key here, so one model never gets two caches."""
        return cls.for_model(
            model_name=ref.name,
            fingerprint=ref.fingerprint,
            dimension=ref.dimension,
            max_seq_length=ref.max_seq_length,
            prompt=ref.prompts.get(role, "") if role else "",
            precision=variant,
            root=root,
        )

    @classmethod
    def for_model(
        cls,
        *,
        model_name: str,
        fingerprint: str,
        dimension: int,
        max_seq_length: int | None = None,
        prompt: str = "",
        precision: str = "fp32",
        root: Path | None = None,
    ) -> EmbeddingCache:
        """The cache of a model under ``root`` (default ``<EMBEDKD_CACHE_DIR>/embeddings``)."""
        root = Path(root) if root is not None else cache_dir() / "embeddings"
        tag = f"{fingerprint[:16]}-d{dimension}-L{max_seq_length or 'auto'}"
        if prompt:
            tag += "-p" + text_key(prompt)[:8]
        if precision != "fp32":  # vectors of another precision never share a cache with fp32 ones
            tag += f"-{precision}"
        folder = (root / tag).absolute()
        opened = _OPEN.get(folder)
        if opened is not None and opened.identity.get("model") == model_name and folder.is_dir():
            # One instance per process: its key table is read once, then only what others appended since.
            with opened._lock():
                opened._load_or_init()
            return opened
        _OPEN[folder] = cache = cls(
            folder,
            model_name=model_name,
            fingerprint=fingerprint,
            dimension=dimension,
            max_seq_length=max_seq_length,
            prompt=prompt,
            precision=precision,
        )
        return cache

    @property
    def dimension(self) -> int:
        return int(self.identity["dimension"])

    @property
    def fingerprint(self) -> str:
        return str(self.identity["fingerprint"])

    def __len__(self) -> int:
        return self._count

    def __contains__(self, text: object) -> bool:
        return isinstance(text, str) and text_key(text) in self._rows

    @contextmanager
    def _lock(self) -> Iterator[None]:
        with open(self.folder / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _load_or_init(self) -> None:
        manifest_path = self.folder / _MANIFEST
        if manifest_path.is_file():
            manifest = json.loads(manifest_path.read_text())
            defaults = {"prompt": "", "precision": "fp32"}  # caches written before precision was recorded
            for key in ("fingerprint", "dimension", "max_seq_length", "prompt", "precision"):
                if manifest.get(key, defaults.get(key)) != self.identity[key]:
                    raise InputError(
                        f"embedding cache {self.folder} belongs to another model "
                        f"({key}={manifest.get(key)!r}, expected {self.identity[key]!r})"
                    )
            count = int(manifest["count"])
        else:
            count = 0
            self._write_manifest(0)
        row_bytes = self.dimension * 2
        vectors = self.folder / _VECTORS
        keys_path = self.folder / _KEYS
        vectors.touch()
        keys_path.touch()
        # Drop anything written after the last committed count (a crash mid-append). Keys are fixed-width
        # lines, so both files are cut in place: nothing is rewritten, and a crash here loses nothing.
        for path, size in ((vectors, count * row_bytes), (keys_path, count * _KEY_LINE)):
            if path.stat().st_size > size:
                os.truncate(path, size)
        if keys_path.stat().st_size < count * _KEY_LINE or vectors.stat().st_size < count * row_bytes:
            raise InputError(f"embedding cache {self.folder} is damaged; delete the folder to rebuild it")
        if count < self._count:  # the cache was replaced behind our back: read it again from the start
            self._rows, self._count = {}, 0
        if count > self._count:  # read only the keys appended since the last look
            with open(keys_path, "rb") as handle:
                handle.seek(self._count * _KEY_LINE)
                fresh = handle.read((count - self._count) * _KEY_LINE).decode("ascii").split("\n")
            for offset, key in enumerate(fresh[: count - self._count]):
                self._rows[key] = self._count + offset
            self._memmap = None
        self._count = count

    def _write_manifest(self, count: int) -> None:
        manifest = {
            "format": _FORMAT,
            **self.identity,
            "dtype": "float16",
            "normalized": True,
            "count": count,
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        atomic_write_bytes(self.folder / _MANIFEST, json.dumps(manifest, indent=1).encode())

    def _vectors(self) -> np.ndarray:
        if self._count == 0:
            return np.zeros((0, self.dimension), dtype=np.float16)
        if self._memmap is None or self._memmap.shape[0] != self._count:
            self._memmap = np.memmap(
                self.folder / _VECTORS, dtype=np.float16, mode="r", shape=(self._count, self.dimension)
            )
        return self._memmap

    # ------------------------------------------------------------------ reading
    def missing(self, texts: Sequence[str]) -> list[str]:
        """Distinct texts that have no cached embedding yet, in first-seen order."""
        seen: set[str] = set()
        out = []
        for text in texts:
            key = text_key(text)
            if key not in self._rows and key not in seen:
                seen.add(key)
                out.append(text)
        return out

    def rows(self, texts: Sequence[str]) -> np.ndarray:
        """Row numbers of ``texts`` in the cache (all must be cached)."""
        try:
            return np.fromiter((self._rows[text_key(t)] for t in texts), dtype=np.int64, count=len(texts))
        except KeyError as exc:
            raise KeyError(f"{len(self.missing(texts))} texts are not in the embedding cache") from exc

    def get(self, texts: Sequence[str], *, dtype: type = np.float32) -> np.ndarray:
        """Embeddings of ``texts`` in order, as a new array."""
        rows = self.rows(texts)
        return np.asarray(self._vectors()[rows], dtype=dtype)

    def vectors(self) -> np.ndarray:
        """All cached rows (memory-mapped, read-only)."""
        return self._vectors()

    # ------------------------------------------------------------------ writing
    def add(self, texts: Sequence[str], embeddings: np.ndarray, *, overwrite: bool = False) -> int:
        """Append embeddings for texts not yet cached (or for all, with ``overwrite``); returns rows added.

        Overwriting appends new rows and points the keys at them (the last row of a key wins on load).
        """
        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2 or embeddings.shape[0] != len(texts):
            raise InputError(f"got {embeddings.shape[0] if embeddings.ndim else 0} embeddings for {len(texts)} texts")
        if embeddings.shape[1] != self.dimension:
            raise InputError(
                f"embeddings have dimension {embeddings.shape[1]}, but {self.identity['model']} "
                f"has dimension {self.dimension}"
            )
        if not np.isfinite(embeddings).all():
            raise InputError("embeddings contain NaN or infinite values")
        with self._lock():
            self._load_or_init()  # another process may have appended meanwhile
            fresh: dict[str, int] = {}
            for i, text in enumerate(texts):
                key = text_key(text)
                if (overwrite or key not in self._rows) and key not in fresh:
                    fresh[key] = i
            if not fresh:
                return 0
            block = embeddings[list(fresh.values())].astype(np.float64)  # 1e30 squared overflows float32
            norms = np.linalg.norm(block, axis=1, keepdims=True)
            block = (block / np.maximum(norms, 1e-12)).astype(np.float16)
            with open(self.folder / _VECTORS, "ab") as handle:
                handle.write(block.tobytes())
                handle.flush()
                os.fsync(handle.fileno())
            with open(self.folder / _KEYS, "a") as handle:
                handle.write("".join(k + "\n" for k in fresh))
                handle.flush()
                os.fsync(handle.fileno())
            start = self._count
            self._write_manifest(start + len(fresh))
            for offset, key in enumerate(fresh):
                self._rows[key] = start + offset
            self._count = start + len(fresh)
            self._memmap = None
            return len(fresh)

    def ensure(
        self,
        texts: Sequence[str],
        encode: Callable[[list[str]], np.ndarray],
        *,
        chunk_size: int = 256,
        progress: bool = True,
        description: str | None = None,
    ) -> np.ndarray:
        """Embeddings of ``texts``, encoding (in resumable chunks) only the ones not cached yet.

        ``encode`` maps a list of texts to an ``(n, dimension)`` array. Each chunk is committed as soon as
        it is encoded, so an interrupted call loses at most one chunk of work.
        """
        todo = sorted(self.missing(texts), key=len)  # similar lengths per batch: less padding
        if todo:
            label = description or f"encoding with {self.identity['model']}"
            with tqdm(total=len(todo), desc=label, unit="text", disable=not progress) as bar:
                for start in range(0, len(todo), chunk_size):
                    chunk = todo[start : start + chunk_size]
                    self.add(chunk, encode(chunk))
                    bar.update(len(chunk))
        return self.get(texts)
