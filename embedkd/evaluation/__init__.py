"""Alignment and retrieval metrics."""

from __future__ import annotations

from embedkd.evaluation.alignment import AlignmentScores, alignment_scores
from embedkd.evaluation.retrieval import RetrievalScores, evaluate_run, run_from_embeddings, score_retrieval
from embedkd.evaluation.sts import StsPairs, load_sts, sts_spearman

__all__ = [
    "AlignmentScores",
    "RetrievalScores",
    "StsPairs",
    "alignment_scores",
    "evaluate_run",
    "load_sts",
    "run_from_embeddings",
    "score_retrieval",
    "sts_spearman",
]
