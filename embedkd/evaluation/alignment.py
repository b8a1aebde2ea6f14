"""How closely a student reproduces its teacher's embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["AlignmentScores", "alignment_scores"]


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
