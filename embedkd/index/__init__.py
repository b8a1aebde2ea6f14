"""Teacher-side indexes: FAISS structures, a SQLite document store, chunking, atomic persistence."""

from __future__ import annotations

from embedkd.index.base import SearchParams
from embedkd.index.build import build_index
from embedkd.index.document_index import Hit, Index
from embedkd.index.faiss import FaissIndex, IndexKind, IndexParams
from embedkd.index.manifest import IndexManifest

__all__ = ["FaissIndex", "Hit", "Index", "IndexKind", "IndexManifest", "IndexParams", "SearchParams", "build_index"]
