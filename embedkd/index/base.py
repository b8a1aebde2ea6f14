"""The interface every vector index implements: ids in, ``(scores, ids)`` out, like faiss."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from embedkd.errors import InputError

__all__ = ["SearchParams", "VectorIndex"]


@dataclass(frozen=True)
class SearchParams:
    """Per-query search effort, overriding the index's own setting for one call (faiss's ``SearchParameters``).

    ``nprobe``: IVF lists visited (ivf-flat, ivf-pq); ``ef_search``: HNSW candidate-list size. Kinds they do
    not apply to ignore them, as faiss does.
    """

    nprobe: int | None = None
    ef_search: int | None = None

    def __post_init__(self) -> None:
        for name in ("nprobe", "ef_search"):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= 65_536:
                raise InputError(f"{name} must be between 1 and 65536, got {value}")


class VectorIndex(Protocol):
    """A searchable set of vectors keyed by int64 ids."""

    @property
    def ntotal(self) -> int: ...

    def build(self, vectors: np.ndarray, ids: np.ndarray) -> None: ...

    def build_from(self, fetch: Callable[[np.ndarray], np.ndarray], ids: np.ndarray, *, block: int = ...) -> None:
        """``build`` with ``fetch(rows)`` giving the vectors of ``ids[rows]`` a block at a time (larger than memory)."""

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> int: ...

    def search(
        self, queries: np.ndarray, k: int, *, allowed: np.ndarray | None = None, params: SearchParams | None = None
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def write(self, path: Path) -> None: ...

    def read(self, path: Path) -> None: ...
