"""Asymmetric retrieval: queries embedded by a cheap student, documents by the teacher that built the index.

The guard: a student's ``embedkd.json`` names the teacher it was aligned to (weights fingerprint) and an
index's manifest names the teacher that embedded its documents. They must match, or the query vectors
land in a different space from the documents and the results are noise. A mismatch raises
:class:`~embedkd.errors.AlignmentError` unless the caller forces it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from enum import Enum
from typing import Any

import numpy as np

from embedkd.errors import AlignmentError, InputError
from embedkd.index.base import SearchParams
from embedkd.index.collection import Hit, Index
from embedkd.models.encoder import Encoder
from embedkd.models.manifest import StudentManifest

__all__ = ["AsymmetricRetriever", "RetrievalMode", "check_alignment"]

logger = logging.getLogger(__name__)


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
    if cosine is not None and (cosine < 0.8 or (torch_cosine is not None and torch_cosine - cosine > 0.01)):
        logger.warning(
            "student %s on the %s backend is less aligned to its teacher: mean cosine %.3f (torch fp32 %.3f)",
            encoder.name,
            encoder.backend,
            cosine,
            torch_cosine if torch_cosine is not None else float("nan"),
        )
    return None


def check_alignment(encoder: Encoder, index: Index, mode: RetrievalMode | str, *, force: bool = False) -> None:
    """Raise :class:`AlignmentError` if ``encoder`` cannot query ``index`` in ``mode``."""
    mode = RetrievalMode(mode)
    indexed_by = index.teacher
    problem = None
    if encoder.dimension != index.manifest.dimension:
        problem = (
            f"{encoder.name} writes {encoder.dimension}-d vectors but index {index.folder} holds "
            f"{index.manifest.dimension}-d vectors from {indexed_by.name}"
        )
    elif mode is RetrievalMode.ASYM:
        manifest = encoder.manifest
        if manifest is None:
            problem = (
                f"{encoder.name} has no embedkd.json: it was never aligned to a teacher, so its vectors "
                f"are not in the space of index {index.folder} (teacher {indexed_by.name}). "
                "Train a student with `embedkd train`, or use mode 'student' with an index it built"
            )
        elif manifest.teacher.fingerprint != indexed_by.fingerprint:
            problem = (
                f"student {encoder.name} was aligned to teacher {manifest.teacher.name} "
                f"({_short(manifest.teacher.fingerprint)}), but index {index.folder} was built with "
                f"teacher {indexed_by.name} ({_short(indexed_by.fingerprint)}). Rebuild the index with "
                "the student's teacher or train a student against the index's teacher"
            )
        else:
            problem = _backend_problem(encoder, manifest)
            if problem is None and manifest.alignment is not None and manifest.alignment.mean_cosine < 0.8:
                logger.warning(
                    "student %s is only loosely aligned to its teacher (mean cosine %.3f)",
                    encoder.name,
                    manifest.alignment.mean_cosine,
                )
    elif encoder.fingerprint != indexed_by.fingerprint:
        role = "teacher" if mode is RetrievalMode.TEACHER else "student that built it"
        problem = (
            f"mode {mode.value!r} needs the {role} ({indexed_by.name}, {_short(indexed_by.fingerprint)}), "
            f"got {encoder.name} ({_short(encoder.fingerprint)})"
        )
    if problem is not None:
        if force:
            logger.warning("alignment check overridden: %s", problem)
            return
        raise AlignmentError(problem + " (pass force to override)")


class AsymmetricRetriever:
    """Embeds queries with the right encoder for the mode and searches the index."""

    def __init__(
        self,
        index: Index,
        *,
        student: Encoder | None = None,
        teacher: Encoder | None = None,
        mode: RetrievalMode | str = RetrievalMode.ASYM,
        force: bool = False,
    ) -> None:
        self.index = index
        self.student = student
        self.teacher = teacher
        self.mode = RetrievalMode(mode)
        self.force = force
        for each_mode, encoder in self._encoders().items():
            check_alignment(encoder, index, each_mode, force=force)
        if self.encoder(self.mode) is None:
            raise InputError(f"mode {self.mode.value!r} needs a {self._needs(self.mode)} encoder")

    def _encoders(self) -> dict[RetrievalMode, Encoder]:
        out: dict[RetrievalMode, Encoder] = {}
        if self.student is not None:
            student_built = self.student.fingerprint == self.index.teacher.fingerprint
            out[RetrievalMode.STUDENT if student_built else RetrievalMode.ASYM] = self.student
        if self.teacher is not None:
            out[RetrievalMode.TEACHER] = self.teacher
        return out

    @staticmethod
    def _needs(mode: RetrievalMode) -> str:
        return "teacher" if mode is RetrievalMode.TEACHER else "student"

    def encoder(self, mode: RetrievalMode | str | None = None) -> Encoder | None:
        mode = RetrievalMode(mode or self.mode)
        return self.teacher if mode is RetrievalMode.TEACHER else self.student

    def embed_queries(self, queries: Sequence[str], *, mode: RetrievalMode | str | None = None) -> np.ndarray:
        encoder = self.encoder(mode)
        if encoder is None:
            raise InputError(f"mode {RetrievalMode(mode or self.mode).value!r} is not available on this retriever")
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
        vectors = self.embed_queries(queries, mode=mode)
        return self.index.search(vectors, k, filters=filters, include_text=include_text, params=params)
