"""An index folder: teacher-embedded document chunks, searchable, updatable, crash-safe.

Layout::

    manifest.json          teacher (name, fingerprint, dimension), index type and parameters, counts
    docstore.sqlite        documents, chunks and the generation counter (the commit point)
    vectors.f16            exact chunk vectors (row = chunk id), for rebuilds and rescoring
    index.<gen>.faiss      the faiss structure as of generation <gen>
    index.state.json       which faiss file is current, its generation, HNSW tombstones

Writes go to the store first (durable when they return); the faiss file is rewritten by :meth:`Index.save`
with a temp file, fsync and rename, and ``index.state.json`` is switched to it last. A crash at any point
leaves the previous faiss file in force, and on open the changes committed after its generation are
replayed from the store, so no acknowledged write is lost.

The faiss structure tracks the store generation it has *applied*. Every write catches it up from there
(so a write whose faiss step failed, or one made while the index was closed, is replayed by the next),
and :meth:`Index.save` records the applied generation, never more.

One process writes a folder at a time (a ``flock`` on ``.writer.lock``); ``Index.open(readonly=True)``
changes nothing on disk, is safe beside a running writer and follows its committed writes
(:meth:`Index.refresh`, before each search). ``Index.open(shared=True)`` lets the workers of one server write
one folder together: SQLite serialises their writes, each applies the others' before it searches, and saves
go under the lock. Inside a process, searches run concurrently under a readers-writer lock; a save
serialises faiss under the read lock and writes the file outside it, and an HNSW compaction rebuilds outside
the lock, so searches keep being answered meanwhile.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from embedkd.data.documents import Document, validate_documents
from embedkd.errors import InputError
from embedkd.index.base import SearchParams
from embedkd.index.chunking import Chunk, chunk_document, chunk_overlap
from embedkd.index.exact import exact_search
from embedkd.index.faiss import FaissIndex, IndexKind, IndexParams
from embedkd.index.manifest import IndexManifest, check_fusion_pair
from embedkd.index.store import DocStore
from embedkd.locks import FolderLock, ReadWriteLock
from embedkd.models.manifest import TeacherRef
from embedkd.npy import atomic_write_bytes

__all__ = ["Hit", "Index"]

logger = logging.getLogger(__name__)

Embed = Callable[[list[str]], np.ndarray]  # chunk texts -> normalised teacher vectors
_STATE = "index.state.json"
_EXACT_FILTER_LIMIT = 50_000  # filters matching fewer chunks than this are searched exactly


@dataclass
class Hit:
    """One document in a result list, represented by its best-matching chunk."""

    id: str
    score: float
    title: str
    passage: str
    chunk: int
    metadata: dict[str, Any] = field(default_factory=dict)
    text: str | None = None


class Index:
    """Documents embedded by a teacher, stored with their chunks, searchable by vectors in its space."""

    def __init__(
        self,
        folder: Path,
        manifest: IndexManifest,
        store: DocStore,
        vectors: FaissIndex,
        *,
        writer: FolderLock | None = None,
        shared: bool = False,
    ) -> None:
        self.folder = folder
        self.manifest = manifest
        self.store = store
        self.vectors = vectors
        self.shared = shared
        self.readonly = writer is None
        self._writer = writer
        self._lock = ReadWriteLock()
        self._save_lock = threading.Lock()  # one save (or compaction) at a time
        self._tokenizer: Any = None
        self._unsaved = 0
        self._applied = 0  # the store generation the faiss structure reflects

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(
        cls,
        folder: Path,
        *,
        teacher: TeacherRef,
        params: IndexParams | None = None,
        chunk_tokens: int | None = None,
        overlap: int | None = None,
        chunking: bool = True,
        device: str = "cpu",
        precision: str = "fp32",
    ) -> Index:
        """An empty index in a new folder; ``precision`` records what the teacher computes its vectors in."""
        folder = Path(folder)
        if (folder / "manifest.json").exists():
            raise InputError(f"{folder} already holds an index; open it, or choose another folder")
        params = params or IndexParams()
        if params.extra.get("backend") == "milvus":
            from embedkd.index.milvus import new_collection_name

            params.extra.setdefault("collection", new_collection_name())  # recorded in the manifest
        max_tokens = chunk_tokens or teacher.max_seq_length or 512
        overlap = chunk_overlap(overlap, max_tokens) if chunking else overlap or 0
        manifest = IndexManifest(
            teacher=teacher,
            dimension=teacher.dimension,
            params=params.to_dict(),
            chunking={
                "enabled": chunking,
                "max_tokens": max_tokens,
                "overlap": overlap,
            },
            precision=precision,
        )
        folder.mkdir(parents=True, exist_ok=True)
        writer = FolderLock(folder, what="index")
        writer.acquire()
        store = DocStore(folder, dimension=teacher.dimension, create=True)
        index = cls(folder, manifest, store, make_vectors(teacher.dimension, params, device=device), writer=writer)
        manifest.counts = store.counts()
        manifest.write(folder)
        return index

    @classmethod
    def open(cls, folder: Path, *, device: str = "cpu", readonly: bool = False, shared: bool = False) -> Index:
        """Open an index folder, replaying any committed change its faiss file does not have yet.

        A writer (the default) takes the folder's writer lock, and fails at once with a message if another
        process holds it. ``readonly`` takes no lock and writes nothing: the replay happens in memory only.
        ``shared`` lets several processes write one folder (the workers of one server): each write is a
        SQLite transaction, which serialises them; each process applies the others' commits before it
        searches or writes, and saves its faiss file one process at a time, and only if no newer save is on
        disk. Shared opens hold the writer lock together: a single writer and they exclude each other.
        """
        if readonly and shared:
            raise InputError("open an index read-only or shared, not both")
        folder = Path(folder)
        manifest = IndexManifest.read(folder)
        params = IndexParams.from_dict(manifest.params)
        writer = None
        if not readonly:
            writer = FolderLock(folder, what="index", shared=shared)
            writer.acquire()
        try:
            store = DocStore(folder, dimension=manifest.dimension, readonly=readonly)
            vectors = make_vectors(manifest.dimension, params, device=device)
            index = cls(folder, manifest, store, vectors, writer=writer, shared=shared)
            index._load_vectors()
        except BaseException:
            if writer is not None:
                writer.release()
            raise
        return index

    def _state(self) -> dict[str, Any]:
        path = self.folder / _STATE
        if not path.exists():
            return {}
        try:
            state = json.loads(path.read_text())
            int(state["generation"])
            return dict(state)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(
                f"{path} is damaged ({exc}); the documents are safe in docstore.sqlite: delete {path.name} "
                "to rebuild the vector index from them"
            ) from exc

    def _load_vectors(self) -> None:
        state = self._state()
        if state and getattr(self.vectors, "persistent", False):  # Milvus kept them: replay what came later
            self._applied = int(state["generation"])
            self._catch_up()
            return
        path = self.folder / str(state.get("file", ""))
        if state and path.is_file():
            try:
                self.vectors.read(path, tombstones=set(state.get("tombstones", [])))
            except RuntimeError:
                logger.warning("%s is unreadable; rebuilding the vector index from the store", path)
                state = {}
        if not state or not path.is_file():
            self._rebuild()
            return
        self._applied = int(state["generation"])
        replayed = self._catch_up()
        if replayed:
            logger.info("replayed %d changed chunks committed after the last save", replayed)

    def _catch_up(self, until: int | None = None) -> int:
        """Apply to faiss every store change after the applied generation (idempotent); returns chunks."""
        target = self.store.generation() if until is None else until
        if target <= self._applied:
            return 0
        added, removed = self.store.changes_since(self._applied, target)
        stale = np.union1d(removed, added)  # re-adding is safe: an id is removed before it is added again
        if len(stale):
            self.vectors.remove(stale)
        if len(added):
            self.vectors.add(self.store.vectors_for(added), added)
        self._applied = target
        self._unsaved += len(added) + len(removed)
        return int(len(added) + len(removed))

    def refresh(self) -> int:
        """Apply the changes another process committed since this index last looked; returns the chunks applied.

        A read-only or shared index calls this before each search (one SQLite read when nothing changed), so it
        serves what a writer beside it (a server, its other workers, ``embedkd index add``) has acknowledged.
        """
        if self.store.generation() <= self._applied:
            return 0
        with self._lock.write():
            return self._catch_up()

    def _rebuild(self) -> None:
        generation = self.store.generation()
        ids = self.store.live_chunk_ids()
        if len(ids) == 0 and not getattr(self.vectors, "persistent", False):
            self.vectors = FaissIndex(self.manifest.dimension, self.vectors.params, device=self.vectors.device)
        else:
            # block by block from the memory-mapped store
            self.vectors.build_from(lambda rows: self.store.vectors_for(ids[rows]), ids)
        self._applied = generation
        self._unsaved += 1

    def close(self) -> None:
        try:
            if self._unsaved and not self.readonly:
                self.save()
        finally:
            self.store.close()
            if hasattr(self.vectors, "close"):
                self.vectors.close()
            if self._writer is not None:
                self._writer.release()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ facts
    @property
    def teacher(self) -> TeacherRef:
        return self.manifest.teacher

    @property
    def unsaved(self) -> int:
        """Changes applied since the last save (0: the faiss file is current)."""
        return self._unsaved

    @property
    def params(self) -> IndexParams:
        return self.vectors.params

    def __len__(self) -> int:
        return self.store.counts()["documents"]

    def info(self) -> dict[str, Any]:
        with self._lock.read():
            data = self.manifest.to_dict()
            data["counts"] = {**self.store.counts(), "vectors": self.vectors.ntotal}
            data["generation"] = self.store.generation()
            data["memory_bytes"] = self.vectors.memory_bytes()
            data["folder"] = str(self.folder)
            return data

    # ------------------------------------------------------------------ writing
    def chunk(self, doc: Document) -> list[Chunk]:
        chunking = self.manifest.chunking
        if not chunking.get("enabled", True) or self._get_tokenizer() is None:
            return [Chunk(0, _full_text(doc), doc.text, 0, len(doc.text))]
        return chunk_document(
            doc, self._tokenizer, max_tokens=int(chunking["max_tokens"]), overlap=int(chunking["overlap"])
        )

    def _get_tokenizer(self) -> Any:
        if self._tokenizer is None:
            from embedkd.errors import ModelNotFoundError
            from embedkd.models.loading import resolve_model_path

            try:
                path = resolve_model_path(self.teacher.name)
            except ModelNotFoundError:
                return None  # a black-box teacher: documents stay whole
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(str(path))
            self._tokenizer.model_max_length = 10**9  # chunking tokenises whole documents on purpose
        return self._tokenizer

    def upsert(self, docs: Sequence[Document], embed: Embed, *, progress: bool = False) -> dict[str, int]:
        """Insert or replace documents. Durable when it returns. Returns counts of new and replaced ids."""
        docs = validate_documents(docs)
        chunks = [self.chunk(doc) for doc in docs]
        texts = [c.encode_text for doc_chunks in chunks for c in doc_chunks]
        vectors = np.asarray(embed(texts), dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape != (len(texts), self.manifest.dimension):
            raise InputError(
                f"the embedder returned shape {tuple(vectors.shape)}, expected "
                f"({len(texts)}, {self.manifest.dimension})"
            )
        self._check_writable()
        with self._lock.write():
            existing = set(self.store.documents([d.id for d in docs]))
            needs_build = self.vectors.needs_training and self.vectors._index is None
            _, _, generation = self.store.upsert(docs, chunks, vectors)
            if needs_build:
                self._rebuild()
            else:
                self._catch_up(generation)
        return {"inserted": len(docs) - len(existing), "replaced": len(existing), "chunks": len(texts)}

    def add(self, docs: Sequence[Document], embed: Embed, *, progress: bool = False) -> dict[str, int]:
        """Insert new documents; refuses ids that already exist (use :meth:`upsert` to replace)."""
        docs = validate_documents(docs)
        with self._lock.read():
            clash = sorted(self.store.documents([d.id for d in docs]))
        if clash:
            raise InputError(f"{len(clash)} document ids already exist (e.g. {clash[0]!r}); use upsert to replace")
        return self.upsert(docs, embed, progress=progress)

    def delete(self, doc_ids: Sequence[str]) -> dict[str, Any]:
        """Delete documents by id; unknown ids are reported, not fatal."""
        self._check_writable()
        doc_ids = list(dict.fromkeys(doc_ids))  # an id given twice is one document
        with self._lock.write():
            removed, missing, generation = self.store.delete(doc_ids)
            self._catch_up(generation)
        return {"deleted": len(doc_ids) - len(missing), "missing": missing, "chunks": int(len(removed))}

    def link_fusion(self, partner: Path | None) -> None:
        """Remember ``partner``, an index of the same documents built by another model, as this index's fusion
        index (None forgets it): searches then fuse with it and writes go to both, unless told otherwise.
        The path is kept relative to this folder, so the two folders can move together."""
        self._check_writable()
        if partner is not None:
            partner = Path(partner)
            check_fusion_pair(self.folder, partner)
        self.manifest.fusion = None if partner is None else os.path.relpath(partner.resolve(), self.folder.resolve())
        self.manifest.write(self.folder)

    def _check_writable(self) -> None:
        if self.readonly:
            raise InputError(f"{self.folder} is open read-only")

    def save(self) -> None:
        """Persist the faiss structure (atomically) and the manifest; compacts HNSW tombstones first.

        Searches go on meanwhile: faiss is serialised under the read lock, the file is written outside it.
        """
        self._check_writable()
        if self.shared:
            self._save_shared()
            return
        self._save()

    def _save_shared(self, wait_s: float = 5.0) -> None:
        """A shared index's save: one worker at a time, and only if the faiss file on disk is older."""
        lock = FolderLock(self.folder, what="index", name=".save.lock")
        if not lock.acquire_within(wait_s):
            logger.info("%s: another worker is saving; saving later", self.folder)
            return
        try:
            self.refresh()
            if int(self._state().get("generation", -1)) >= self._applied:  # another worker saved as much
                with self._lock.write():
                    self._unsaved = 0
                return
            self._save()
        finally:
            lock.release()

    def _save(self) -> None:
        with self._save_lock:
            if self.vectors.needs_compaction:
                self._compact()
            with self._lock.read():
                applied = self._applied
                unsaved = self._unsaved
                state: dict[str, Any] = {"generation": applied}
                blob = self.vectors.serialize() if self.vectors._index is not None else None
                tombstones = sorted(self.vectors.tombstones())
                counts = {**self.store.counts(), "vectors": self.vectors.ntotal}
            if blob is not None:
                name = f"index.{applied}.faiss"
                atomic_write_bytes(self.folder / name, blob)
                state.update(file=name, tombstones=tombstones)
            atomic_write_bytes(self.folder / _STATE, json.dumps(state).encode())
            for old in self.folder.glob("index.*.faiss"):
                if old.name != state.get("file"):
                    old.unlink(missing_ok=True)
            self.manifest.counts = counts
            self.manifest.write(self.folder)
            with self._lock.write():
                self._unsaved = max(0, self._unsaved - unsaved)

    def _compact(self) -> None:
        """Rebuild a tombstoned HNSW graph from the live vectors outside the lock, then swap it in."""
        with self._lock.read():
            generation = self._applied
        ids = self.store.live_chunk_ids()
        fresh = FaissIndex(self.manifest.dimension, self.vectors.params, device=self.vectors.device)
        if len(ids):
            fresh.build_from(lambda rows: self.store.vectors_for(ids[rows]), ids)
        with self._lock.write():
            current, applied = self.vectors, self._applied
            self.vectors, self._applied = fresh, generation
            try:
                self._catch_up(applied)  # what was written while the new graph was being built
            except BaseException:
                self.vectors, self._applied = current, applied
                raise

    # ------------------------------------------------------------------ searching
    def search(
        self,
        queries: np.ndarray,
        k: int = 10,
        *,
        filters: dict[str, Any] | None = None,
        include_text: bool = False,
        params: SearchParams | None = None,
    ) -> list[list[Hit]]:
        """The ``k`` best documents for each query vector (in this index's teacher space).

        ``params`` sets nprobe / efSearch for this call (ivf and hnsw kinds), trading speed for recall.
        """
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries[None, :]
        if queries.ndim != 2 or queries.shape[1] != self.manifest.dimension:
            raise InputError(
                f"query vectors have dimension {queries.shape[-1]}, this index holds "
                f"{self.manifest.dimension}-d vectors of teacher {self.teacher.name}"
            )
        if k < 1:
            raise InputError("k must be at least 1")
        if self.readonly or self.shared:
            self.refresh()
        with self._lock.read():
            allowed = self.store.chunk_ids_matching(filters) if filters else None
            if allowed is not None and len(allowed) == 0:
                return [[] for _ in range(len(queries))]
            total = self.vectors.ntotal if allowed is None else len(allowed)
            fetch = min(total, k * 4)
            while True:
                scores, ids = self._search_chunks(queries, fetch, allowed, params)
                grouped = self._group(scores, ids, k)
                if fetch >= total or all(len(g) >= k for g in grouped):
                    break
                fetch = min(total, fetch * 4)
            return self._hits(grouped, include_text)

    def with_text(self, hits: list[list[Hit]]) -> list[list[Hit]]:
        """``hits`` with each document's full text from the store: a fused search reads its many candidates
        without it and fills in only the ``k`` it returns."""
        docs = self.store.documents(sorted({hit.id for query_hits in hits for hit in query_hits}))
        return [[replace(hit, text=docs[hit.id].text if hit.id in docs else None) for hit in q] for q in hits]

    def document_scores(self, queries: np.ndarray, doc_ids: Sequence[Sequence[str]]) -> list[dict[str, float]]:
        """Exact scores of given documents in this index's space: for each query vector, the score of each of
        its documents' best chunk (a document is scored as search ranks it). Documents this index does not
        hold are left out of that query's dict. Used to rescore another index's candidates (fusion)."""
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.manifest.dimension or len(queries) != len(doc_ids):
            raise InputError(
                f"expected {len(doc_ids)} query vectors of dimension {self.manifest.dimension}, got "
                f"{tuple(queries.shape)}"
            )
        if self.readonly or self.shared:
            self.refresh()
        prepared = self.vectors.prepare(queries)  # as search compares them (e.g. kept dimensions)
        with self._lock.read():
            chunks = self.store.chunk_ids_of([d for ids in doc_ids for d in ids])
            out: list[dict[str, float]] = []
            for query, ids in zip(prepared, doc_ids, strict=True):
                held = [doc for doc in dict.fromkeys(ids) if doc in chunks]
                if not held:
                    out.append({})
                    continue
                rows = np.asarray([c for doc in held for c in chunks[doc]], dtype=np.int64)
                scores = self.vectors.prepare(self.store.vectors_for(rows)) @ query
                starts = np.cumsum([0] + [len(chunks[doc]) for doc in held[:-1]])
                out.append(dict(zip(held, np.maximum.reduceat(scores, starts).tolist(), strict=True)))
            return out

    def _search_chunks(
        self, queries: np.ndarray, fetch: int, allowed: np.ndarray | None, params: SearchParams | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        if allowed is not None and (len(allowed) <= _EXACT_FILTER_LIMIT or self.params.kind is IndexKind.HNSW):
            vectors = self.vectors.prepare(self.store.vectors_for(allowed))
            scores, rows = exact_search(self.vectors.prepare(queries), vectors, fetch)
            return scores, allowed[rows]
        return self.vectors.search(queries, fetch, allowed=allowed, rescore=self.store.vectors_for, params=params)

    def _group(self, scores: np.ndarray, ids: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """Per query, up to ``k`` (chunk id, score) pairs: the best chunk of each distinct document."""
        all_ids = np.unique(ids[ids >= 0])
        doc_of = {cid: chunk.doc_id for cid, chunk in self.store.chunks(all_ids.tolist()).items()}
        grouped = []
        for q in range(ids.shape[0]):
            seen: set[str] = set()
            best: list[tuple[int, float]] = []
            for cid, score in zip(ids[q], scores[q], strict=True):
                doc = doc_of.get(int(cid))
                if cid < 0 or doc is None or doc in seen:
                    continue
                seen.add(doc)
                best.append((int(cid), float(score)))
                if len(best) == k:
                    break
            grouped.append(best)
        return grouped

    def _hits(self, grouped: list[list[tuple[int, float]]], include_text: bool) -> list[list[Hit]]:
        chunk_rows = self.store.chunks([cid for group in grouped for cid, _ in group])
        docs = self.store.documents(sorted({c.doc_id for c in chunk_rows.values()}))
        out = []
        for group in grouped:
            hits = []
            for cid, score in group:
                chunk = chunk_rows.get(cid)
                doc = docs.get(chunk.doc_id) if chunk is not None else None
                if chunk is None or doc is None:  # another worker deleted it after this one caught up: gone
                    continue
                hits.append(
                    Hit(
                        id=doc.id,
                        score=score,
                        title=doc.title,
                        passage=chunk.passage,
                        chunk=chunk.ordinal,
                        metadata=doc.metadata,
                        text=doc.text if include_text else None,
                    )
                )
            out.append(hits)
        return out


def _full_text(doc: Document) -> str:
    from embedkd.data.beir import doc_text

    return doc_text(doc.title, doc.text)


def make_vectors(dimension: int, params: IndexParams, *, device: str = "cpu") -> Any:
    """The vector backend ``params`` asks for: faiss in this process (the default), or Milvus."""
    if params.extra.get("backend") == "milvus":
        from embedkd.index.milvus import MilvusVectors

        return MilvusVectors(dimension, params, device=device)
    return FaissIndex(dimension, params, device=device)
