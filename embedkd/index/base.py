"""The interface every vector index implements: ids in, ``(scores, ids)`` out, like faiss."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

__all__ = ["VectorIndex"]


class VectorIndex(Protocol):
    """A searchable set of vectors keyed by int64 ids."""

    @property
    def ntotal(self) -> int: ...

    def build(self, vectors: np.ndarray, ids: np.ndarray) -> None: ...

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> int: ...

    def search(
        self, queries: np.ndarray, k: int, *, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def write(self, path: Path) -> None: ...

    def read(self, path: Path) -> None: ...
