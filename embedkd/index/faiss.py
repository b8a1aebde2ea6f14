"""FAISS vector indexes of every supported kind behind one small interface, on CPU or GPU.

Kinds and their defaults (recall@10 against ``flat`` is measured in ``benchmarks/results/index.md``):

=========  ======================================================================================
flat       exact inner product (``IndexFlatIP``)
hnsw       ``IndexHNSWFlat``, M=32, efConstruction=200, efSearch=128; removals are tombstoned
ivf-flat   ``IndexIVFFlat``, nlist ~ 4*sqrt(n) (at least 39 training points per list), nprobe=32,
           k-means trained on a seeded sample of at most 64 points per list
ivf-pq     ``IndexIVFPQ``, same lists, d/8 sub-quantisers of 8 bits, candidates rescored exactly
sq8        ``IndexScalarQuantizer`` with 8-bit codes per dimension (int8-like, 4x smaller)
binary     one bit per dimension (sign), Hamming search, top ``rescore * k`` rescored exactly
=========  ======================================================================================

``dims`` keeps only the first ``dims`` coordinates (Matryoshka-style truncation, renormalised).
Rescoring reads the exact float16 vectors through a callback, so the index itself stays small.

Device: with ``device="cuda"`` the index is searched on the GPU through faiss's GPU indexes when the
installed faiss has them; otherwise exact (flat) search runs in torch on the GPU; otherwise on the CPU.
It is one code path with the device as a parameter.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from embedkd.errors import InputError
from embedkd.index.base import SearchParams
from embedkd.index.exact import exact_search

__all__ = ["FaissIndex", "IndexKind", "IndexParams", "faiss_has_gpu"]

logger = logging.getLogger(__name__)

RescoreFn = Callable[[np.ndarray], np.ndarray]  # chunk ids -> exact float32 vectors (full dimension)


class IndexKind(str, Enum):
    FLAT = "flat"
    HNSW = "hnsw"
    IVF_FLAT = "ivf-flat"
    IVF_PQ = "ivf-pq"
    SQ8 = "sq8"
    BINARY = "binary"


@dataclass
class IndexParams:
    kind: IndexKind = IndexKind.FLAT
    dims: int | None = None
    hnsw_m: int = 32
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 128
    nlist: int | None = None
    nprobe: int = 32
    pq_m: int | None = None
    pq_bits: int = 8
    rescore: int = 10  # binary / ivf-pq: rescore this many candidates per result exactly
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            self.kind = IndexKind(self.kind)
        except ValueError as exc:
            kinds = ", ".join(k.value for k in IndexKind)
            raise InputError(f"unknown index type {self.kind!r}; choose one of {kinds}") from exc

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"] = self.kind.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexParams:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def faiss_has_gpu() -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class FaissIndex:
    """A vector index keyed by int64 ids: ``add`` / ``remove`` / ``search -> (scores, ids)`` / save / load."""

    def __init__(self, dimension: int, params: IndexParams | None = None, *, device: str = "cpu") -> None:
        self.full_dimension = dimension
        self.params = params or IndexParams()
        if self.params.dims is not None and not 1 <= self.params.dims <= dimension:
            raise InputError(f"--dims must be between 1 and {dimension}")
        self.dimension = self.params.dims or dimension
        self.device = device
        self._index: Any = None
        self._tombstones: set[int] = set()  # hnsw only: removed but still in the graph
        self._gpu: Any = None  # faiss GPU copy, or None
        self._gpu_dirty = True
        self._torch_mirror: tuple[Any, np.ndarray] | None = None  # (tensor on device, ids) for flat

    # ------------------------------------------------------------------ construction
    @property
    def kind(self) -> IndexKind:
        return self.params.kind

    def prepare(self, vectors: np.ndarray) -> np.ndarray:
        """Truncate to ``dims`` and renormalise: the space this index searches in."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.full_dimension:
            raise InputError(f"expected vectors of dimension {self.full_dimension}, got shape {tuple(vectors.shape)}")
        return _normalize(vectors[:, : self.dimension])

    def _default_nlist(self, n: int) -> int:
        if self.params.nlist:
            return self.params.nlist
        return max(1, min(int(4 * math.sqrt(n)), n // 39))

    def _new_index(self, n_train: int) -> Any:
        d, p = self.dimension, self.params
        ip = faiss.METRIC_INNER_PRODUCT
        if p.kind is IndexKind.FLAT:
            return faiss.IndexIDMap2(faiss.IndexFlatIP(d))
        if p.kind is IndexKind.HNSW:
            hnsw = faiss.IndexHNSWFlat(d, p.hnsw_m, ip)
            hnsw.hnsw.efConstruction = p.hnsw_ef_construction
            hnsw.hnsw.efSearch = p.hnsw_ef_search
            return faiss.IndexIDMap2(hnsw)
        if p.kind is IndexKind.SQ8:
            return faiss.IndexIDMap2(faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, ip))
        if p.kind is IndexKind.BINARY:
            if d % 8:
                raise InputError("binary indexes need a dimension divisible by 8")
            return faiss.IndexBinaryIDMap2(faiss.IndexBinaryFlat(d))
        nlist = self._default_nlist(n_train)
        quantizer = faiss.IndexFlatIP(d)
        if p.kind is IndexKind.IVF_FLAT:
            index = faiss.IndexIVFFlat(quantizer, d, nlist, ip)
        else:
            m = p.pq_m or max(1, d // 8)
            if d % m:
                raise InputError(f"ivf-pq needs the dimension ({d}) to be divisible by pq_m ({m})")
            index = faiss.IndexIVFPQ(quantizer, d, nlist, m, p.pq_bits, ip)
            # faiss warns once per sub-quantiser (d/8 times) below 39 points per code; small collections are
            # measured to keep recall (benchmarks/results/index.md), so one warning-free minimum is enough
            index.pq.cp.min_points_per_centroid = 1
        index.nprobe = min(p.nprobe, nlist)
        return index  # faiss's wrapper keeps a reference to the quantizer

    @property
    def needs_training(self) -> bool:
        return self.kind in (IndexKind.IVF_FLAT, IndexKind.IVF_PQ, IndexKind.SQ8)

    def build(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Create the structure (training it on ``vectors`` when the kind needs it) and add ``vectors``."""
        vectors = np.asarray(vectors)
        self.build_from(lambda rows: vectors[rows], ids)

    def build_from(self, fetch: Callable[[np.ndarray], np.ndarray], ids: np.ndarray, *, block: int = 65_536) -> None:
        """:meth:`build` without holding every vector at once: ``fetch(rows)`` returns the vectors of
        ``ids[rows]``. Trains on a sample, then adds block by block."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)

        def get(rows: np.ndarray) -> np.ndarray:
            return self.prepare(np.asarray(fetch(rows), dtype=np.float32))

        self._index = self._new_index(len(ids))
        if self.needs_training:
            minimum = getattr(self._index, "nlist", 1)
            if self.kind is IndexKind.IVF_PQ:
                minimum = max(minimum, 2**self.params.pq_bits)
            if len(ids) < minimum:
                raise InputError(
                    f"a {self.kind.value} index needs at least {minimum} vectors to train, got "
                    f"{len(ids)}; use flat or hnsw for small collections"
                )
            self._index.train(get(self._training_rows(len(ids))))
        self._tombstones.clear()
        for start in range(0, len(ids), block):
            rows = np.arange(start, min(start + block, len(ids)))
            self._add_prepared(get(rows), ids[rows])

    def _training_rows(self, n: int) -> np.ndarray:
        """At most 64 points per IVF list (faiss advises 30-256): k-means cost grows with the sample."""
        limit = 64 * getattr(self._index, "nlist", 0) if self.kind is not IndexKind.SQ8 else 262_144
        limit = max(limit, 2**self.params.pq_bits * 64 if self.kind is IndexKind.IVF_PQ else 0)
        if n <= limit:
            return np.arange(n)
        return np.sort(np.random.default_rng(0).choice(n, size=limit, replace=False))

    def _ensure_built(self, vectors: np.ndarray) -> None:
        if self._index is None:
            if self.needs_training:
                raise InputError(f"{self.kind.value} index must be built (trained) before adding vectors")
            self._index = self._new_index(len(vectors))

    # ------------------------------------------------------------------ updates
    def _add_prepared(self, prepared: np.ndarray, ids: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if self.kind is IndexKind.BINARY:
            self._index.add_with_ids(np.packbits(prepared > 0, axis=1), ids)
        else:
            self._index.add_with_ids(prepared, ids)
        self._tombstones.difference_update(int(i) for i in ids)
        self._invalidate()

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        if len(ids) == 0:
            return
        prepared = self.prepare(vectors)
        self._ensure_built(prepared)
        self._add_prepared(prepared, ids)

    def remove(self, ids: np.ndarray) -> int:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if self._index is None or len(ids) == 0:
            return 0
        self._invalidate()
        if self.kind is IndexKind.HNSW:  # faiss HNSW cannot remove: hide the ids until the next compaction
            before = len(self._tombstones)
            self._tombstones.update(int(i) for i in ids)
            return len(self._tombstones) - before
        return int(self._index.remove_ids(faiss.IDSelectorBatch(ids)))

    @property
    def ntotal(self) -> int:
        return 0 if self._index is None else int(self._index.ntotal) - len(self._tombstones)

    @property
    def needs_compaction(self) -> bool:
        """True when tombstones make up a quarter of an HNSW graph: rebuild it from the live vectors."""
        return self._index is not None and len(self._tombstones) > 0.25 * max(1, int(self._index.ntotal))

    def _invalidate(self) -> None:
        self._gpu_dirty = True
        self._torch_mirror = None

    # ------------------------------------------------------------------ search
    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        allowed: np.ndarray | None = None,
        rescore: RescoreFn | None = None,
        params: SearchParams | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ``(scores, ids)`` per query, best first; missing results have id -1.

        ``allowed`` restricts results to those ids. ``rescore`` returns exact full-dimension vectors for
        ids, used to re-rank the candidates of lossy kinds (binary, ivf-pq). ``params`` overrides nprobe /
        efSearch for this call only (the index itself is not changed, so concurrent searches are safe).
        """
        n = queries.shape[0]
        if self._index is None or self.ntotal == 0 or k <= 0:
            return np.full((n, max(k, 0)), -np.inf, np.float32), np.full((n, max(k, 0)), -1, np.int64)
        prepared = self.prepare(queries)
        lossy = self.kind in (IndexKind.BINARY, IndexKind.IVF_PQ) and rescore is not None
        fetch = k * max(1, self.params.rescore) if lossy else k
        # HNSW hides removed ids behind tombstones: over-fetch a little, and more only when a row came back short.
        extra = min(len(self._tombstones), max(fetch, 16)) if self.kind is IndexKind.HNSW else 0
        total = int(self._index.ntotal)
        while True:
            scores, ids = self._raw_search(prepared, min(fetch + extra, total), allowed, params)
            if self._tombstones:
                dead = np.isin(ids, np.fromiter(self._tombstones, dtype=np.int64))
                ids = np.where(dead, -1, ids)
                scores = np.where(dead, -np.inf, scores)
            short = bool(((ids >= 0).sum(axis=1) < min(fetch, self.ntotal)).any())
            if not (self._tombstones and short) or fetch + extra >= total:
                break
            extra = min(total, max(4 * extra, fetch))
        if lossy and rescore is not None:
            scores, ids = self._rescore(prepared, ids, rescore)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        scores = np.take_along_axis(scores, order, axis=1)
        ids = np.take_along_axis(ids, order, axis=1)
        if scores.shape[1] < k:
            pad = k - scores.shape[1]
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        return scores.astype(np.float32), ids.astype(np.int64)

    def _rescore(self, queries: np.ndarray, ids: np.ndarray, rescore: RescoreFn) -> tuple[np.ndarray, np.ndarray]:
        valid = ids >= 0
        flat_ids = np.unique(ids[valid])
        vectors = self.prepare(rescore(flat_ids)) if len(flat_ids) else np.zeros((0, self.dimension), np.float32)
        position = {int(i): row for row, i in enumerate(flat_ids)}
        scores = np.full(ids.shape, -np.inf, dtype=np.float32)
        for qi in range(ids.shape[0]):
            rows = [position[int(i)] for i in ids[qi] if i >= 0]
            if rows:
                scores[qi, : len(rows)] = vectors[rows] @ queries[qi]
                ids[qi, : len(rows)] = ids[qi][ids[qi] >= 0]
                ids[qi, len(rows) :] = -1
        return scores, ids

    def _raw_search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None, effort: SearchParams | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.device.startswith("cuda") and effort is None:
            gpu_result = self._gpu_search(queries, k, allowed)
            if gpu_result is not None:
                return gpu_result
        params = None
        effort = effort or SearchParams()
        selector = None if allowed is None else faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
        extra: dict[str, Any] = {} if selector is None else {"sel": selector}
        if self.kind in (IndexKind.IVF_FLAT, IndexKind.IVF_PQ) and (selector is not None or effort.nprobe):
            nprobe = min(effort.nprobe or self._index.nprobe, self._index.nlist)
            params = faiss.SearchParametersIVF(nprobe=nprobe, **extra)
        elif self.kind is IndexKind.HNSW and (selector is not None or effort.ef_search):
            ef = max(effort.ef_search or self.params.hnsw_ef_search, k)
            params = faiss.SearchParametersHNSW(efSearch=ef, **extra)
        elif selector is not None:
            params = faiss.SearchParameters(sel=selector)
        if self.kind is IndexKind.BINARY:
            distances, ids = self._index.search(np.packbits(queries > 0, axis=1), k, params=params)
            scores = 1.0 - 2.0 * distances.astype(np.float32) / self.dimension  # Hamming -> cosine-like
            scores[ids < 0] = -np.inf
            return scores, ids
        scores, ids = self._index.search(queries, k, params=params)
        scores[ids < 0] = -np.inf
        return scores, ids

    def _gpu_search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Search on the GPU: faiss GPU index when available, torch exact search for flat; else None."""
        if allowed is not None or self.kind in (IndexKind.HNSW, IndexKind.BINARY):
            return None  # faiss has no GPU HNSW; filtered search stays on the CPU path
        if faiss_has_gpu():
            if self._gpu is None or self._gpu_dirty:
                resources = getattr(self, "_gpu_resources", None) or faiss.StandardGpuResources()
                self._gpu_resources = resources
                self._gpu = faiss.index_cpu_to_gpu(resources, int(self.device.partition(":")[2] or 0), self._index)
                self._gpu_dirty = False
            scores, ids = self._gpu.search(queries, k)
            scores[ids < 0] = -np.inf
            return scores, ids
        if self.kind is IndexKind.FLAT:
            import torch

            if self._torch_mirror is None:
                inner = faiss.downcast_index(self._index.index)
                vectors = faiss.rev_swig_ptr(inner.get_xb(), inner.ntotal * self.dimension)
                matrix = torch.from_numpy(np.array(vectors).reshape(inner.ntotal, self.dimension))
                id_map = faiss.vector_to_array(self._index.id_map).astype(np.int64)
                self._torch_mirror = (matrix.to(self.device), id_map)
            matrix, id_map = self._torch_mirror
            scores, rows = exact_search(queries, matrix, k, device=self.device)
            return scores, id_map[rows]
        return None

    # ------------------------------------------------------------------ persistence
    def write(self, path: Path) -> None:
        """Serialise the structure to ``path`` (callers make the write atomic)."""
        if self._index is None:
            raise InputError("cannot save an empty, unbuilt index")
        if self.kind is IndexKind.BINARY:
            faiss.write_index_binary(self._index, str(path))
        else:
            faiss.write_index(self._index, str(path))

    def read(self, path: Path, *, tombstones: set[int] | None = None) -> None:
        reader = faiss.read_index_binary if self.kind is IndexKind.BINARY else faiss.read_index
        self._index = reader(str(path))
        if self.kind is IndexKind.HNSW:
            faiss.downcast_index(self._index.index).hnsw.efSearch = self.params.hnsw_ef_search
        if self.kind in (IndexKind.IVF_FLAT, IndexKind.IVF_PQ):
            self._index.nprobe = min(self.params.nprobe, self._index.nlist)
        self._tombstones = set(tombstones or ())
        self._invalidate()

    def serialize(self) -> np.ndarray:
        """The structure as a uint8 buffer (what :meth:`write` puts in a file), not copied again into ``bytes``."""
        if self._index is None:
            raise InputError("cannot save an empty, unbuilt index")
        if self.kind is IndexKind.BINARY:
            return np.asarray(faiss.serialize_index_binary(self._index))
        return np.asarray(faiss.serialize_index(self._index))

    def tombstones(self) -> set[int]:
        return set(self._tombstones)

    def memory_bytes(self) -> int:
        """Approximate RAM of the structure: codes, ids and (HNSW) graph links; never serialises it."""
        if self._index is None:
            return 0
        n = int(self._index.ntotal)
        if self.kind is IndexKind.BINARY:
            code_size = self.dimension // 8
        else:
            inner = faiss.downcast_index(self._index.index) if hasattr(self._index, "index") else self._index
            code_size = int(getattr(inner, "code_size", 0)) or self.dimension * 4
        links = n * self.params.hnsw_m * 2 * 4 if self.kind is IndexKind.HNSW else 0
        return n * (code_size + 8) + links
