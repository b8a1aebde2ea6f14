"""Asymmetric retrieval: queries embedded by a cheap student, documents by the teacher that built the index.

The guard: a student's ``embedkd.json`` names the teacher it was aligned to (weights fingerprint) and an
index's manifest names the teacher that embedded its documents. They must match, or the query vectors
land in a different space from the documents and the results are noise. A mismatch raises
:class:`~embedkd.errors.AlignmentError` unless the caller forces it.

Optionally a :class:`Fusion` adds a second index of the same documents, built by another model (the
student's base): the main search's candidates are rescored with that model's scores added, under the same
rule (only the model that built the second index may query it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

import numpy as np

from embedkd.errors import AlignmentError, InputError
from embedkd.index.base import SearchParams
from embedkd.index.document_index import Hit, Index
from embedkd.models.encoder import Encoder
from embedkd.models.manifest import StudentManifest, TeacherRef
from embedkd.models.shared_trunk import SharedTrunk

__all__ = [
    "AsymmetricRetriever",
    "Fusion",
    "RetrievalMode",
    "alignment_problem",
    "check_alignment",
    "student_mode",
]

logger = logging.getLogger(__name__)

# A student whose held-out cosine to its teacher is below this is warned about as loosely aligned. Measured
# on the default recipe's learning curves (ten runs on three machines, benchmarks/results/
# learning_curve_*_default_* and *_relation01_*): none of their 247 dev evaluations below 0.75 reached
# MiniLM-L6's own dev nDCG@10 (the best was 0.6544 against 0.6602), and every run passed it between 0.762 and
# 0.774. The line was 0.8 before, which warned about the default's own 30-minute students (0.78, 0.99x the
# teacher on SciFact test). Cosine is not comparable across recipes (a cut of the teacher passed MiniLM-L6
# only at 0.88), nor across corpora: what tells a user whether the student serves *their* documents is
# `embedkd index check`.
LOOSE_COSINE = 0.75


class RetrievalMode(str, Enum):
    ASYM = "asym"  # student queries against the teacher's index
    TEACHER = "teacher"  # teacher queries: the quality ceiling
    STUDENT = "student"  # student queries against an index the student built itself


def _short(fingerprint: str) -> str:
    return fingerprint[:12] + "…" if len(fingerprint) > 12 else fingerprint


def _backend_problem(encoder: Encoder, manifest: StudentManifest) -> str | None:
    """The same rule for an exported backend (onnx, int8, ...), from what ``embedkd export`` measured:
    refuse an export that no longer reproduces the student, warn when its alignment drops."""
    if encoder.backend == "torch":
        return None
    from embedkd.evaluation.backends import FIDELITY_FLOOR

    measured = manifest.backends.get(encoder.backend)
    if measured is None:
        logger.warning(
            "student %s on the %s backend was never measured; run `embedkd export %s --backend ...` to record "
            "its alignment",
            encoder.name,
            encoder.backend,
            encoder.path,
        )
        return None
    fidelity = float(measured.get("cosine_to_torch_fp32", 0.0))
    if fidelity < FIDELITY_FLOOR:
        return (
            f"student {encoder.name} on the {encoder.backend} backend reproduces its own fp32 output with mean "
            f"cosine {fidelity:.4f} (< {FIDELITY_FLOOR}): the export is broken; use another backend"
        )
    cosine, torch_cosine = measured.get("mean_cosine"), measured.get("torch_mean_cosine")
    if cosine is not None and (cosine < LOOSE_COSINE or (torch_cosine is not None and torch_cosine - cosine > 0.01)):
        logger.warning(
            "student %s on the %s backend is less aligned to its teacher: mean cosine %.3f (torch fp32 %.3f)",
            encoder.name,
            encoder.backend,
            cosine,
            torch_cosine if torch_cosine is not None else float("nan"),
        )
    return None


def student_mode(fingerprint: str, indexed_by: TeacherRef) -> RetrievalMode:
    """How a student queries an index: its own index (``student``), or a teacher's (``asym``)."""
    return RetrievalMode.STUDENT if fingerprint == indexed_by.fingerprint else RetrievalMode.ASYM


def alignment_problem(
    *,
    name: str,
    fingerprint: str,
    dimension: int | None,
    manifest: StudentManifest | None,
    indexed_by: TeacherRef,
    mode: RetrievalMode | str,
    index_dimension: int | None = None,
    where: str = "the index",
) -> str | None:
    """The one rule for "may this model query that index in this mode", from identities alone (no weights
    needed): the service's pre-flight, the retriever and index writes all apply it. None when allowed.

    - asym: the model's embedkd.json names the index's teacher (same weights fingerprint);
    - teacher / student: the model *is* the model that built the index (same fingerprint);
    - always: the same dimension.
    """
    mode = RetrievalMode(mode)
    held = index_dimension or indexed_by.dimension  # an index may keep only the first N dimensions
    if dimension is not None and dimension != held:
        return f"{name} writes {dimension}-d vectors but {where} holds {held}-d vectors from {indexed_by.name}"
    if mode is RetrievalMode.ASYM:
        if manifest is None:
            return (
                f"{name} has no embedkd.json: it was never aligned to a teacher, so its vectors are not in the "
                f"space of {where} (teacher {indexed_by.name}). Train a student with `embedkd train`, or use mode "
                "'student' with an index it built"
            )
        if manifest.teacher.fingerprint != indexed_by.fingerprint:
            return (
                f"student {name} was aligned to teacher {manifest.teacher.name} "
                f"({_short(manifest.teacher.fingerprint)}), but {where} was built with teacher {indexed_by.name} "
                f"({_short(indexed_by.fingerprint)}). Rebuild the index with the student's teacher or train a "
                "student against the index's teacher"
            )
        return None
    if fingerprint != indexed_by.fingerprint:
        role = "teacher" if mode is RetrievalMode.TEACHER else "student that built it"
        return (
            f"mode {mode.value!r} needs the {role} ({indexed_by.name}, {_short(indexed_by.fingerprint)}), "
            f"got {name} ({_short(fingerprint)}); {where} must be rebuilt for other weights"
        )
    return None


def raise_or_warn(problem: str | None, *, force: bool, overridable: bool = True) -> None:
    """Raise an :class:`AlignmentError` for ``problem`` (a warning with ``force``); ``overridable=False``
    for a caller with no force option, whose message must not offer one."""
    if problem is None:
        return
    if force:
        logger.warning("alignment check overridden: %s", problem)
        return
    raise AlignmentError(problem + (" (pass force to override)" if overridable else ""))


def check_alignment(encoder: Encoder, index: Index, mode: RetrievalMode | str, *, force: bool = False) -> None:
    """Raise :class:`AlignmentError` if ``encoder`` cannot query ``index`` in ``mode``."""
    mode = RetrievalMode(mode)
    problem = alignment_problem(
        name=encoder.name,
        fingerprint=encoder.fingerprint,
        dimension=encoder.dimension,
        manifest=encoder.manifest,
        indexed_by=index.teacher,
        mode=mode,
        index_dimension=index.manifest.dimension,
        where=f"index {index.folder}",
    )
    if problem is None and mode is RetrievalMode.ASYM and encoder.manifest is not None:
        problem = _backend_problem(encoder, encoder.manifest)
        alignment = encoder.manifest.alignment
        if problem is None and alignment is not None and alignment.mean_cosine < LOOSE_COSINE:
            logger.warning(
                "student %s is only loosely aligned to its teacher (held-out mean cosine %.3f < %.2f): the "
                "default recipe's students below that scored under MiniLM-L6 alone on SciFact dev; train it longer, "
                "and see `embedkd index check` for your own documents",
                encoder.name,
                alignment.mean_cosine,
                LOOSE_COSINE,
            )
    raise_or_warn(problem, force=force)


@dataclass(frozen=True)
class Fusion:
    """A second index of the same documents, in the own space of the model that built it (e.g. the student's
    base, MiniLM-L6), whose scores are added to the main search's: each query's ``candidates`` best documents
    from the main index are rescored as ``score + weight * score in the second space``
    (``benchmarks/results/dual_space_*.md``: the two models make different mistakes, and rescoring the top
    100 keeps the whole gain of fusing every document). ``encoder`` must be the model that built ``index``."""

    index: Index
    encoder: Encoder
    weight: float = 1.0
    candidates: int = 100

    def __post_init__(self) -> None:
        if not self.weight >= 0:
            raise InputError(f"the fusion weight must be 0 or more, got {self.weight}")
        if self.candidates < 1:
            raise InputError(f"fusion candidates must be at least 1, got {self.candidates}")

    def problem(self) -> str | None:
        """Why ``encoder`` cannot query ``index`` (None when it can): the same identity rule as a student's own
        index, the model that built it and no other."""
        problem = alignment_problem(
            name=self.encoder.name,
            fingerprint=self.encoder.fingerprint,
            dimension=self.encoder.dimension,
            manifest=self.encoder.manifest,
            indexed_by=self.index.teacher,
            mode=RetrievalMode.STUDENT,  # the model that built the index, and no other
            index_dimension=self.index.manifest.dimension,
            where=f"fusion index {self.index.folder}",
        )
        return None if problem is None else f"fusion: {problem}"

    def rescore_vectors(self, vectors: np.ndarray, pool: list[list[Hit]], k: int) -> list[list[Hit]]:
        """The ``k`` best of each query's candidate ``pool`` by the fused score, the queries embedded by
        :attr:`encoder` as ``vectors``. A candidate the fusion index does not hold (not indexed there yet)
        counts as the lowest second-space score among that query's."""
        extra = self.index.document_scores(vectors, [[hit.id for hit in hits] for hits in pool])
        out = []
        for hits, scores in zip(pool, extra, strict=True):
            floor = min(scores.values(), default=0.0)
            fused = [replace(hit, score=hit.score + self.weight * scores.get(hit.id, floor)) for hit in hits]
            out.append(sorted(fused, key=lambda hit: -hit.score)[:k])
        return out


class AsymmetricRetriever:
    """Embeds queries with the right encoder for the mode and searches the index (and, with a
    :class:`Fusion`, rescores the candidates in a second index's space)."""

    def __init__(
        self,
        index: Index,
        *,
        student: Encoder | None = None,
        teacher: Encoder | None = None,
        mode: RetrievalMode | str = RetrievalMode.ASYM,
        force: bool = False,
        fusion: Fusion | None = None,
    ) -> None:
        self.index = index
        self.student = student
        self.teacher = teacher
        self.mode = RetrievalMode(mode)
        self.force = force
        self.fusion = fusion
        # the student and the fusion model in one pass where the student's lower layers are that model's own
        self.trunk = SharedTrunk.find(student, fusion.encoder) if fusion is not None and student is not None else None
        for each_mode, encoder in self._encoders().items():
            check_alignment(encoder, index, each_mode, force=force)
        if self.encoder(self.mode) is None:
            raise InputError(self.unavailable(self.mode))
        if fusion is not None:
            raise_or_warn(fusion.problem(), force=force)
            held, other = index.store.counts()["documents"], fusion.index.store.counts()["documents"]
            if held != other:
                logger.warning(
                    "fusion index %s holds %d documents, index %s holds %d: a candidate missing there counts "
                    "as its query's lowest score in that index",
                    fusion.index.folder,
                    other,
                    index.folder,
                    held,
                )

    def _encoders(self) -> dict[RetrievalMode, Encoder]:
        out: dict[RetrievalMode, Encoder] = {}
        if self.student is not None:
            out[student_mode(self.student.fingerprint, self.index.teacher)] = self.student
        if self.teacher is not None:
            out[RetrievalMode.TEACHER] = self.teacher
        return out

    @staticmethod
    def _needs(mode: RetrievalMode) -> str:
        return "teacher" if mode is RetrievalMode.TEACHER else "student"

    @property
    def modes(self) -> list[RetrievalMode]:
        """The modes this retriever can serve with what it holds."""
        return list(self._encoders())

    def encoder(self, mode: RetrievalMode | str | None = None) -> Encoder | None:
        """The encoder that embeds queries in ``mode``; None when this retriever cannot serve it."""
        return self._encoders().get(RetrievalMode(mode or self.mode))

    def unavailable(self, mode: RetrievalMode | str) -> str:
        """Why ``mode`` cannot be served, for an error message."""
        mode = RetrievalMode(mode)
        if mode is not RetrievalMode.TEACHER and self.student is not None:
            built = mode is RetrievalMode.STUDENT
            return (
                f"mode {mode.value!r} searches an index {'the student built' if built else 'built by a teacher'}; "
                f"this one was built by {self.index.teacher.name}: use mode "
                f"{student_mode(self.student.fingerprint, self.index.teacher).value!r}"
            )
        return f"mode {mode.value!r} needs the {self._needs(mode)} model, which is not loaded"

    def embed_queries(self, queries: Sequence[str], *, mode: RetrievalMode | str | None = None) -> np.ndarray:
        encoder = self.encoder(mode)
        if encoder is None:
            raise InputError(self.unavailable(mode or self.mode))
        return encoder.encode_query(list(queries))

    def search(
        self,
        queries: Sequence[str],
        k: int = 10,
        *,
        mode: RetrievalMode | str | None = None,
        filters: dict[str, Any] | None = None,
        include_text: bool = False,
        params: SearchParams | None = None,
    ) -> list[list[Hit]]:
        if self.fusion is None:
            vectors = self.embed_queries(queries, mode=mode)
            return self.search_vectors(vectors, k, filters=filters, include_text=include_text, params=params)
        if self.trunk is not None and self.encoder(mode) is self.student:
            vectors, second = self.trunk.encode_query(list(queries))
        else:
            vectors = self.embed_queries(queries, mode=mode)
            second = self.fusion.encoder.encode_query(list(queries))
        pool = self.search_vectors(vectors, max(k, self.fusion.candidates), filters=filters, params=params)
        hits = self.fusion.rescore_vectors(second, pool, k)
        return self.index.with_text(hits) if include_text else hits

    def search_vectors(
        self,
        vectors: np.ndarray,
        k: int = 10,
        *,
        filters: dict[str, Any] | None = None,
        include_text: bool = False,
        params: SearchParams | None = None,
    ) -> list[list[Hit]]:
        """Search with query vectors already embedded by :meth:`encoder` (the service micro-batches them)."""
        return self.index.search(vectors, k, filters=filters, include_text=include_text, params=params)
