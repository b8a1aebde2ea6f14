"""The document store of an index: SQLite for documents and chunks, a float16 file for chunk vectors.

SQLite (WAL, ``synchronous=FULL``) is the commit point. A write appends its vectors to ``vectors.f16``
and fsyncs them first, then commits documents, chunks and a new *generation* number in one transaction.
Rows of ``vectors.f16`` past the last committed one are orphans of a crash and are cut off on open.
Every chunk records the generation that added it and every removal leaves a tombstone, so a faiss
structure saved at generation ``g`` can be brought up to date by replaying what happened after ``g``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedkd.data.documents import Document, check_metadata_value
from embedkd.errors import InputError
from embedkd.index.chunking import Chunk

__all__ = ["MAX_FILTER_KEYS", "DocStore", "StoredChunk", "StoredDocument"]

MAX_FILTER_KEYS = 64  # each key is one SQL clause; SQLite refuses a few thousand

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    chunk_id INTEGER PRIMARY KEY,
    doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    start_char INTEGER NOT NULL,
    end_char INTEGER NOT NULL,
    passage TEXT NOT NULL,
    generation INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_doc ON chunks(doc_id);
CREATE INDEX IF NOT EXISTS chunks_by_generation ON chunks(generation);
CREATE TABLE IF NOT EXISTS tombstones (chunk_id INTEGER PRIMARY KEY, generation INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS tombstones_by_generation ON tombstones(generation);
"""


@dataclass
class StoredDocument:
    id: str
    title: str
    text: str
    metadata: dict[str, Any]
    chunks: int
    created_at: float
    updated_at: float


@dataclass
class StoredChunk:
    chunk_id: int
    doc_id: str
    ordinal: int
    passage: str


class DocStore:
    """Documents, chunks and chunk vectors of one index folder."""

    def __init__(self, folder: Path, *, dimension: int, readonly: bool = False, create: bool = False) -> None:
        """Open a store, or with ``create`` make a new one. A writer must hold the folder's writer lock
        (:class:`~embedkd.locks.FolderLock`); ``readonly`` opens change nothing on disk, so they are safe
        beside a running writer."""
        self.folder = Path(folder)
        self.dimension = dimension
        self.readonly = readonly
        self.db_path = self.folder / "docstore.sqlite"
        self.vectors_path = self.folder / "vectors.f16"
        if not create and not self.db_path.is_file():  # a writer would start an empty store beside the vectors
            raise InputError(
                f"{self.folder} has no docstore.sqlite, which holds the documents: it is not an index folder, "
                "or its documents are gone; build the index again"
            )
        if create:
            self.folder.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        try:
            self.db = self._connect()
            if not readonly:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.executescript(_SCHEMA)
            else:
                self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # reads the header
        except sqlite3.DatabaseError as exc:
            self.close()
            raise InputError(
                f"{self.db_path} is damaged ({exc}); restore it from a backup or build the index again"
            ) from exc
        self._row_bytes = dimension * 2
        self._memmap: np.memmap | None = None
        self._memmap_rows = 0
        if not readonly:
            self._trim_orphan_vectors()

    def _connect(self) -> sqlite3.Connection:
        if self.readonly:
            uri = f"file:{self.db_path}?mode=ro"
            db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        else:
            db = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA busy_timeout=10000")
        with self._connections_lock:
            self._connections.append(db)
        return db

    def _reader(self) -> sqlite3.Connection:
        """A connection of this thread's own for reads, so searches on several threads never share one."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect()
        return db

    def close(self) -> None:
        self._memmap = None
        with self._connections_lock:
            for db in self._connections:
                db.close()
            self._connections.clear()

    # ------------------------------------------------------------------ bookkeeping
    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        if self.readonly:
            raise InputError(f"{self.folder} is open read-only")
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def generation(self) -> int:
        return self._generation(self._reader())

    @staticmethod
    def _generation(db: sqlite3.Connection) -> int:
        row = db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0]) if row else 0

    def next_chunk_id(self) -> int:
        return self._next_chunk_id(self._reader())

    def _next_chunk_id(self, db: sqlite3.Connection) -> int:
        row = db.execute(
            "SELECT MAX(m) FROM (SELECT MAX(chunk_id) AS m FROM chunks UNION ALL SELECT MAX(chunk_id) FROM tombstones)"
        ).fetchone()
        return int(row[0]) + 1 if row and row[0] is not None else 0

    def _trim_orphan_vectors(self) -> None:
        # Under SQLite's write lock: rows fsynced by a write whose commit is still to come are never cut.
        with self._transaction() as db:
            committed = self._next_chunk_id(db) * self._row_bytes
            if self.vectors_path.exists() and self.vectors_path.stat().st_size > committed:
                os.truncate(self.vectors_path, committed)

    def counts(self) -> dict[str, int]:
        db = self._reader()
        docs = db.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
        chunks = db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        return {"documents": int(docs), "chunks": int(chunks)}

    # ------------------------------------------------------------------ vectors
    def vectors(self) -> np.ndarray:
        """All vector rows ever written (row = chunk id), memory-mapped; removed chunks' rows are stale."""
        rows = self.vectors_path.stat().st_size // self._row_bytes if self.vectors_path.exists() else 0
        if rows == 0:
            return np.zeros((0, self.dimension), dtype=np.float16)
        if self._memmap is None or self._memmap_rows != rows:
            self._memmap = np.memmap(self.vectors_path, dtype=np.float16, mode="r", shape=(rows, self.dimension))
            self._memmap_rows = rows
        return self._memmap

    def vectors_for(self, chunk_ids: np.ndarray) -> np.ndarray:
        return np.asarray(self.vectors()[np.asarray(chunk_ids, dtype=np.int64)], dtype=np.float32)

    def _append_vectors(self, first_id: int, vectors: np.ndarray) -> None:
        expected = first_id * self._row_bytes
        with open(self.vectors_path, "ab") as handle:
            if handle.tell() != expected:  # keep row == chunk id even after a trimmed crash
                handle.truncate(expected)
                handle.seek(expected)
            handle.write(np.ascontiguousarray(vectors, dtype=np.float16).tobytes())
            handle.flush()
            os.fsync(handle.fileno())

    # ------------------------------------------------------------------ writes
    def upsert(
        self, docs: Sequence[Document], chunks: Sequence[Sequence[Chunk]], vectors: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Insert or replace documents with their chunks and vectors, durably, in one transaction.

        Returns ``(new_chunk_ids, removed_chunk_ids, generation)``.
        """
        total = sum(len(c) for c in chunks)
        if vectors.shape != (total, self.dimension):
            raise InputError(f"expected {total} vectors of dimension {self.dimension}, got {vectors.shape}")
        now = time.time()
        with self._transaction() as db:
            generation = self._generation(db) + 1
            first = self._next_chunk_id(db)
            self._append_vectors(first, vectors)
            ids = [doc.id for doc in docs]
            removed = self._remove_chunks(db, ids, generation)
            created = {
                row[0]: row[1]
                for row in db.execute(
                    f"SELECT id, created_at FROM documents WHERE id IN ({','.join('?' * len(ids))})", ids
                )
            }
            db.executemany(
                "INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, ?, ?)",
                [(d.id, d.title, d.text, json.dumps(d.metadata), created.get(d.id, now), now) for d in docs],
            )
            rows = []
            chunk_id = first
            for doc, doc_chunks in zip(docs, chunks, strict=True):
                for chunk in doc_chunks:
                    rows.append((chunk_id, doc.id, chunk.ordinal, chunk.start, chunk.end, chunk.passage, generation))
                    chunk_id += 1
            db.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (str(generation),))
        return np.arange(first, first + total, dtype=np.int64), removed, generation

    def _remove_chunks(self, db: sqlite3.Connection, doc_ids: Sequence[str], generation: int) -> np.ndarray:
        removed: list[int] = []
        for start in range(0, len(doc_ids), 500):
            batch = list(doc_ids[start : start + 500])
            marks = ",".join("?" * len(batch))
            removed.extend(r[0] for r in db.execute(f"SELECT chunk_id FROM chunks WHERE doc_id IN ({marks})", batch))
            db.execute(f"DELETE FROM chunks WHERE doc_id IN ({marks})", batch)
        db.executemany("INSERT OR REPLACE INTO tombstones VALUES (?, ?)", [(c, generation) for c in removed])
        return np.asarray(removed, dtype=np.int64)

    def delete(self, doc_ids: Sequence[str]) -> tuple[np.ndarray, list[str], int]:
        """Delete documents. Returns ``(removed_chunk_ids, missing_doc_ids, generation)``."""
        with self._transaction() as db:
            existing = _stored_ids(db, doc_ids)
            missing = [d for d in doc_ids if d not in existing]
            present = [d for d in doc_ids if d in existing]
            if not present:
                return np.zeros(0, dtype=np.int64), missing, self._generation(db)
            generation = self._generation(db) + 1
            removed = self._remove_chunks(db, present, generation)
            for start in range(0, len(present), 500):
                batch = present[start : start + 500]
                db.execute(f"DELETE FROM documents WHERE id IN ({','.join('?' * len(batch))})", batch)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (str(generation),))
        return removed, missing, generation

    # ------------------------------------------------------------------ reads
    def live_chunk_ids(self) -> np.ndarray:
        return np.fromiter(
            (r[0] for r in self._reader().execute("SELECT chunk_id FROM chunks ORDER BY chunk_id")), dtype=np.int64
        )

    def changes_since(self, generation: int, until: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Chunk ids added after ``generation`` (up to ``until``) that still exist, and chunk ids removed then."""
        db = self._reader()
        bound = (generation, until if until is not None else 2**62)
        added = np.fromiter(
            (r[0] for r in db.execute("SELECT chunk_id FROM chunks WHERE generation > ? AND generation <= ?", bound)),
            dtype=np.int64,
        )
        removed = np.fromiter(
            (
                r[0]
                for r in db.execute("SELECT chunk_id FROM tombstones WHERE generation > ? AND generation <= ?", bound)
            ),
            dtype=np.int64,
        )
        return added, removed

    def document(self, doc_id: str) -> StoredDocument | None:
        row = (
            self._reader()
            .execute(
                "SELECT id, title, text, metadata, created_at, updated_at, "
                "(SELECT COUNT(*) FROM chunks WHERE doc_id = documents.id) FROM documents WHERE id = ?",
                (doc_id,),
            )
            .fetchone()
        )
        if row is None:
            return None
        return StoredDocument(row[0], row[1], row[2], json.loads(row[3]), row[6], row[4], row[5])

    def iter_ids(self) -> Iterator[str]:
        """Every stored document id, in sorted order, read a row at a time."""
        for (doc_id,) in self._reader().execute("SELECT id FROM documents ORDER BY id"):
            yield doc_id

    def iter_texts(self) -> Iterator[tuple[str, str]]:
        """(title, text) of every stored document, in id order, read a row at a time."""
        yield from self._reader().execute("SELECT title, text FROM documents ORDER BY id")

    def stored_ids(self, doc_ids: Sequence[str]) -> set[str]:
        """Which of ``doc_ids`` are stored (their ids only: no row is read)."""
        return _stored_ids(self._reader(), doc_ids)

    def documents(self, doc_ids: Sequence[str]) -> dict[str, StoredDocument]:
        out: dict[str, StoredDocument] = {}
        for start in range(0, len(doc_ids), 500):
            batch = list(doc_ids[start : start + 500])
            for row in self._reader().execute(
                f"SELECT id, title, text, metadata, created_at, updated_at FROM documents "
                f"WHERE id IN ({','.join('?' * len(batch))})",
                batch,
            ):
                out[row[0]] = StoredDocument(row[0], row[1], row[2], json.loads(row[3]), -1, row[4], row[5])
        return out

    def chunks(self, chunk_ids: Sequence[int]) -> dict[int, StoredChunk]:
        out: dict[int, StoredChunk] = {}
        ids = [int(c) for c in chunk_ids]
        for start in range(0, len(ids), 500):
            batch = ids[start : start + 500]
            marks = ",".join("?" * len(batch))
            for row in self._reader().execute(
                f"SELECT chunk_id, doc_id, ordinal, passage FROM chunks WHERE chunk_id IN ({marks})", batch
            ):
                out[row[0]] = StoredChunk(row[0], row[1], row[2], row[3])
        return out

    def chunk_ids_of(self, doc_ids: Sequence[str]) -> dict[str, list[int]]:
        """The chunk ids of each stored document among ``doc_ids`` (documents not stored are left out)."""
        out: dict[str, list[int]] = {}
        ids = list(dict.fromkeys(doc_ids))
        for start in range(0, len(ids), 500):
            batch = ids[start : start + 500]
            for doc_id, chunk_id in self._reader().execute(
                f"SELECT doc_id, chunk_id FROM chunks WHERE doc_id IN ({','.join('?' * len(batch))})", batch
            ):
                out.setdefault(doc_id, []).append(int(chunk_id))
        return out

    def chunk_ids_matching(self, filters: dict[str, Any]) -> np.ndarray:
        """Chunk ids of documents whose metadata equals every ``key: value`` in ``filters``."""
        clauses, params = [], []
        if len(filters) > MAX_FILTER_KEYS:
            raise InputError(f"a filter has {len(filters)} keys; at most {MAX_FILTER_KEYS} are allowed")
        for key, value in filters.items():
            if not isinstance(key, str) or not key.replace("_", "").replace("-", "").replace(".", "").isalnum():
                raise InputError(f"filter key {key!r} must be letters, digits, '_', '-' or '.'")
            if isinstance(value, bool | int | float | str) or value is None:
                check_metadata_value(value, f"filter {key!r}")
                clauses.append("json_extract(d.metadata, ?) IS ?")
                params.extend([f'$."{key}"', value if not isinstance(value, bool) else int(value)])
            else:
                raise InputError(f"filter value for {key!r} must be a string, number, boolean or null")
        where = " AND ".join(clauses) or "1"
        query = f"SELECT c.chunk_id FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE {where}"
        return np.fromiter((r[0] for r in self._reader().execute(query, params)), dtype=np.int64)


def _stored_ids(db: sqlite3.Connection, doc_ids: Sequence[str]) -> set[str]:
    ids = list(dict.fromkeys(doc_ids))
    return {
        row[0]
        for start in range(0, len(ids), 500)
        for row in db.execute(
            f"SELECT id FROM documents WHERE id IN ({','.join('?' * len(ids[start : start + 500]))})",
            ids[start : start + 500],
        )
    }
