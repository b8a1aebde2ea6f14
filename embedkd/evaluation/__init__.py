"""Alignment and retrieval metrics."""

from __future__ import annotations

from embedkd.evaluation.alignment import AlignmentScores, alignment_scores
from embedkd.evaluation.retrieval import RetrievalScores, evaluate_run, run_from_embeddings, score_retrieval

__all__ = [
    "AlignmentScores",
    "RetrievalScores",
    "alignment_scores",
    "evaluate_run",
    "run_from_embeddings",
    "score_retrieval",
]
