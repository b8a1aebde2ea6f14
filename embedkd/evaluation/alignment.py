"""How closely a student reproduces its teacher's embeddings."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from embedkd.data.beir import doc_text
from embedkd.errors import InputError

if TYPE_CHECKING:
    from embedkd.index.document_index import Index
    from embedkd.models.embedder import Embedder
    from embedkd.models.manifest import StudentManifest

__all__ = ["AlignmentScores", "Coverage", "alignment_scores", "coverage_of", "index_coverage"]

# The share of its own held-out cosine a student keeps on an index's chunks, at and above which they count as
# covered by its training (benchmarks/results/index_coverage_*.md).
COVERED = 0.95


@dataclass
class AlignmentScores:
    mean_cosine: float
    mse: float  # mean squared L2 distance of the normalised embeddings (the LEAF loss)
    texts: int
    by_kind: dict[str, float] = field(default_factory=dict)  # mean cosine per text kind


def alignment_scores(student: np.ndarray, teacher: np.ndarray, kinds: Sequence[str] | None = None) -> AlignmentScores:
    s = student / np.maximum(np.linalg.norm(student, axis=1, keepdims=True), 1e-12)
    t = teacher / np.maximum(np.linalg.norm(teacher, axis=1, keepdims=True), 1e-12)
    cos = (s * t).sum(1)
    by_kind: dict[str, float] = {}
    if kinds is not None:
        labels = np.asarray(kinds)
        for kind in sorted(set(kinds)):
            by_kind[kind] = float(cos[labels == kind].mean())
    return AlignmentScores(
        mean_cosine=float(cos.mean()),
        mse=float(((s - t) ** 2).sum(1).mean()),
        texts=int(len(cos)),
        by_kind=by_kind,
    )


@dataclass
class Coverage:
    """A student's cosine to the teacher vectors an index holds, on a sample of its chunks, beside the cosine it
    reached on its own held-out texts of the same kinds (documents for long chunks, sentences for short ones)."""

    cosine: float  # mean over the sampled chunks
    compared: int  # chunks sampled
    chunks: int  # chunks in the index
    reference_cosine: float | None  # the held-out cosine of the same kinds, weighted as the sample is
    reference: str  # what the reference is
    ratio: float | None  # cosine / reference_cosine
    covered_ratio: float
    by_kind: dict[str, dict[str, float]] = field(default_factory=dict)  # kind -> chunks, cosine, reference

    @property
    def covered(self) -> bool | None:
        return None if self.ratio is None else self.ratio >= self.covered_ratio

    @property
    def verdict(self) -> str:
        if self.ratio is None:
            return "no verdict: the student records no held-out alignment to compare with"
        if self.covered:
            return "covered: the student is as aligned on these documents as on its own held-out texts"
        return (
            "not covered: the student is less aligned on these documents than on its own held-out texts, so its "
            "queries will keep less of the teacher's quality here. Adapt it to these documents (`embedkd adapt "
            "--student STUDENT --index INDEX --out NEW`: a few CPU minutes, no queries or labels), or fuse "
            "with an index in its base's own space (`embedkd index build --teacher minilm-l6`, then `embedkd index "
            "link --fuse-index`)"
        )

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "covered": self.covered, "verdict": self.verdict}


def coverage_of(
    cosines: np.ndarray,
    kinds: Sequence[str],
    chunks: int,
    manifest: StudentManifest | None,
    *,
    covered_ratio: float = COVERED,
) -> Coverage:
    """:class:`Coverage` from each sampled chunk's cosine and kind (``document`` or ``sentence``), against the
    held-out cosines by kind that ``manifest`` records (a kind it lacks falls back to its overall cosine)."""
    cosines = np.asarray(cosines, dtype=np.float64)
    labels = np.asarray(kinds)
    recorded: dict[str, float] = {}
    overall = None
    if manifest is not None and manifest.alignment is not None:
        recorded = {str(k): float(v) for k, v in (manifest.alignment.extra.get("cosine_by_kind") or {}).items()}
        overall = float(manifest.alignment.mean_cosine)
    by_kind: dict[str, dict[str, float]] = {}
    weighted: list[float] = []
    sources = set()
    for kind in sorted(set(kinds)):
        mask = labels == kind
        reference = recorded.get(kind, overall)
        sources.add(kind if kind in recorded else "all kinds")
        by_kind[kind] = {"chunks": int(mask.sum()), "cosine": float(cosines[mask].mean())}
        if reference is not None:
            by_kind[kind]["reference"] = reference
            weighted += [reference] * int(mask.sum())
    reference_cosine = float(np.mean(weighted)) if weighted else None  # every kind has one, or none does
    cosine = float(cosines.mean())
    return Coverage(
        cosine=cosine,
        compared=len(cosines),
        chunks=chunks,
        reference_cosine=reference_cosine,
        reference=(
            "its own held-out texts (" + ", ".join(sorted(sources)) + ")" if reference_cosine else "none recorded"
        ),
        ratio=cosine / reference_cosine if reference_cosine else None,
        covered_ratio=covered_ratio,
        by_kind=by_kind,
    )


def index_coverage(
    encoder: Embedder,
    index: Index,
    manifest: StudentManifest | None,
    *,
    sample: int = 256,
    seed: int = 0,
    covered_ratio: float = COVERED,
    encode: Callable[[list[str]], np.ndarray] | None = None,
) -> Coverage:
    """Whether ``encoder`` reproduces the teacher vectors ``index`` holds as well as it does on its own held-out
    texts, on up to ``sample`` of the index's chunks (drawn with ``seed``): each chunk's text as the teacher
    embedded it, encoded by ``encoder`` and compared in the space the index searches (its kept dimensions,
    normalised). A student is aligned where its training text reached; this tells whether it reached *these*
    documents, with no teacher and no queries. ``encode`` replaces ``encoder.encode_document`` (a server runs
    it a few texts at a time, behind its queries)."""
    from embedkd.distill.data import TextKind, kind_of  # here: embedkd.distill imports this module

    if sample < 1:
        raise InputError(f"the sample must hold at least 1 chunk, got {sample}")
    ids = index.store.live_chunk_ids()
    if len(ids) == 0:
        raise InputError(f"index {index.folder} holds no documents yet")
    picked = np.sort(np.random.default_rng(seed).choice(ids, size=min(sample, len(ids)), replace=False))
    chunks = index.store.chunks(picked.tolist())
    docs = index.store.documents(sorted({chunk.doc_id for chunk in chunks.values()}))
    texts = [doc_text(docs[chunks[i].doc_id].title, chunks[i].passage) for i in picked.tolist()]
    embedded = encode(texts) if encode is not None else encoder.encode_document(texts, batch_size=16)
    student = index.vectors.prepare(embedded)
    teacher = index.vectors.prepare(index.store.vectors_for(picked))
    # as training texts are told apart: a long chunk against held-out documents, a short one against sentences
    kinds = ["document" if kind_of(text) is TextKind.DOCUMENT else "sentence" for text in texts]
    return coverage_of((student * teacher).sum(1), kinds, len(ids), manifest, covered_ratio=covered_ratio)
