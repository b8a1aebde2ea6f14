"""Vectors kept in Milvus (a cluster, or Milvus Lite in a local file) instead of a faiss file.

Only the vectors move: the document store, the manifest, the teacher guard, upserts and deletes by
document id, metadata filters (passed to Milvus as an ``id in [...]`` filter) and chunk grouping stay in
:class:`~embedkd.index.document_index.Index`, exactly as with faiss. Milvus persists what it holds, so an
index records the store generation it has applied (``index.state.json``) and replays only later changes
when it is opened. The collection name is chosen when the index is created and kept in its parameters.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from embedkd.errors import InputError
from embedkd.index.base import SearchParams
from embedkd.index.faiss import IndexKind, IndexParams, RescoreFn, _normalize

__all__ = ["MilvusVectors", "new_collection_name"]

_KINDS = {IndexKind.FLAT: "FLAT", IndexKind.HNSW: "HNSW", IndexKind.IVF_FLAT: "IVF_FLAT"}
_MAX_LIMIT = 16_384  # Milvus's largest top-k


def new_collection_name() -> str:
    return f"embedkd_{uuid.uuid4().hex[:16]}"


class MilvusVectors:
    """The faiss index's interface (``build/add/remove/search``) on a Milvus collection."""

    persistent = True  # Milvus keeps the vectors itself: no file to write, only the applied generation

    def __init__(self, dimension: int, params: IndexParams, *, device: str = "cpu") -> None:
        try:
            from pymilvus import MilvusClient
        except ImportError as exc:
            raise InputError(
                "--backend milvus needs pymilvus (and milvus-lite for a local file): pip install 'embedkd[scale]'"
            ) from exc
        if params.kind not in _KINDS:
            kinds = ", ".join(k.value for k in _KINDS)
            raise InputError(f"the milvus backend supports {kinds}; got {params.kind.value}")
        uri = params.extra.get("uri")
        if not uri:
            raise InputError("--backend milvus needs --uri (a Milvus URI, or a local Milvus Lite file such as idx.db)")
        self.params = params
        self.full_dimension = dimension
        self.dimension = params.dims or dimension
        self.device = device
        self.collection = str(params.extra.setdefault("collection", new_collection_name()))
        # A secured cluster's credentials ("user:password" or an API key) come from the environment,
        # never from the index's parameters, which are written to its manifest.
        from pymilvus.exceptions import MilvusException

        try:
            self._client = MilvusClient(str(uri), token=os.environ.get("MILVUS_TOKEN", ""))
            present = self._client.has_collection(self.collection)
        except MilvusException as exc:  # a bad URI, a file that is not Milvus Lite's, an unreachable server
            raise InputError(f"--uri {uri}: Milvus cannot open it ({getattr(exc, 'message', exc)})") from exc
        self._count: int | None = None
        if not present:
            self._create()

    # ------------------------------------------------------------------ what Index reads
    kind = property(lambda self: self.params.kind)
    needs_training = False
    needs_compaction = False
    _index = True  # "built": Milvus needs no training before the first add

    def tombstones(self) -> set[int]:
        return set()

    def serialize(self) -> None:
        return None

    def memory_bytes(self) -> int:
        return 0  # held by Milvus, not by this process

    @property
    def ntotal(self) -> int:
        if self._count is None:
            rows = self._client.query(self.collection, filter="", output_fields=["count(*)"])
            self._count = int(rows[0]["count(*)"]) if rows else 0
        return self._count

    def prepare(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.full_dimension:
            raise InputError(f"expected vectors of dimension {self.full_dimension}, got shape {tuple(vectors.shape)}")
        return _normalize(vectors[:, : self.dimension])

    # ------------------------------------------------------------------ writing
    def _create(self) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dimension)
        index = self._client.prepare_index_params()
        p = self.params
        extra: dict[str, Any] = {}
        if p.kind is IndexKind.HNSW:
            extra = {"M": p.hnsw_m, "efConstruction": p.hnsw_ef_construction}
        elif p.kind is IndexKind.IVF_FLAT:
            extra = {"nlist": p.nlist or 128}
        index.add_index(field_name="vector", index_type=_KINDS[p.kind], metric_type="IP", params=extra)
        self._client.create_collection(self.collection, schema=schema, index_params=index)

    def build(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        vectors = np.asarray(vectors)
        self.build_from(lambda rows: vectors[rows], ids)

    def build_from(self, fetch: Callable[[np.ndarray], np.ndarray], ids: np.ndarray, *, block: int = 65_536) -> None:
        """A fresh collection filled block by block: ``fetch(rows)`` gives the vectors of ``ids[rows]``."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if self._client.has_collection(self.collection):
            self._client.drop_collection(self.collection)
        self._create()
        self._count = 0
        for start in range(0, len(ids), block):
            rows = np.arange(start, min(start + block, len(ids)))
            self.add(np.asarray(fetch(rows), dtype=np.float32), ids[rows])

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        prepared = self.prepare(vectors)
        for start in range(0, len(ids), 2048):
            rows = [
                {"id": int(i), "vector": v.tolist()}
                for i, v in zip(ids[start : start + 2048], prepared[start : start + 2048], strict=True)
            ]
            self._client.upsert(self.collection, rows)
        self._count = None

    def remove(self, ids: np.ndarray) -> int:
        if len(ids) == 0:
            return 0
        for start in range(0, len(ids), 4096):
            part = ",".join(str(int(i)) for i in ids[start : start + 4096])
            self._client.delete(self.collection, filter=f"id in [{part}]")
        self._count = None
        return int(len(ids))

    def close(self) -> None:
        self._client.close()

    # ------------------------------------------------------------------ searching
    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        allowed: np.ndarray | None = None,
        rescore: RescoreFn | None = None,
        params: SearchParams | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        n = queries.shape[0]
        limit = min(k, _MAX_LIMIT)
        scores = np.full((n, k), -np.inf, np.float32)
        ids = np.full((n, k), -1, np.int64)
        if k <= 0 or self.ntotal == 0:
            return scores, ids
        effort: dict[str, Any] = {}
        if params is not None and params.nprobe and self.params.kind is IndexKind.IVF_FLAT:
            effort["nprobe"] = params.nprobe
        if self.params.kind is IndexKind.HNSW:
            effort["ef"] = max((params.ef_search if params else None) or self.params.hnsw_ef_search, limit)
        where = "" if allowed is None else f"id in [{','.join(str(int(i)) for i in allowed)}]"
        hits = self._client.search(
            self.collection,
            data=self.prepare(queries).tolist() if queries.shape[1] == self.full_dimension else queries.tolist(),
            limit=limit,
            filter=where,
            search_params={"metric_type": "IP", "params": effort},
        )
        for q, row in enumerate(hits):
            for j, hit in enumerate(row[:limit]):
                ids[q, j] = int(hit["id"])
                scores[q, j] = float(hit["distance"])
        return scores, ids
