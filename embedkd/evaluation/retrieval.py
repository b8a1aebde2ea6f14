"""BEIR-exact retrieval evaluation: exact search, then nDCG@10 and Recall@100 from pytrec_eval.

Documents are embedded as ``title + " " + text``, only queries with qrels in the split are scored, and
a query's own id is removed from its results (BEIR's ``ignore_identical_ids``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from embedkd.data.beir import BeirDataset
from embedkd.index.exact import exact_search

__all__ = ["RetrievalScores", "evaluate_run", "run_from_embeddings", "score_retrieval"]

_METRICS = {"ndcg_cut.10", "recall.100", "recip_rank"}


@dataclass
class RetrievalScores:
    ndcg_at_10: float
    recall_at_100: float
    mrr: float
    queries: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_from_embeddings(
    query_ids: list[str],
    query_embeddings: np.ndarray,
    doc_ids: list[str],
    doc_embeddings: np.ndarray,
    *,
    k: int = 100,
    ignore_identical_ids: bool = True,
    device: str = "cpu",
) -> dict[str, dict[str, float]]:
    """A TREC-style run ``{query_id: {doc_id: score}}`` from exact inner-product search."""
    scores, ids = exact_search(query_embeddings, doc_embeddings, k + 1 if ignore_identical_ids else k, device=device)
    run: dict[str, dict[str, float]] = {}
    for qi, query_id in enumerate(query_ids):
        hits: dict[str, float] = {}
        for score, di in zip(scores[qi], ids[qi], strict=True):
            doc_id = doc_ids[di]
            if ignore_identical_ids and doc_id == query_id:
                continue
            hits[doc_id] = float(score)
            if len(hits) == k:
                break
        run[query_id] = hits
    return run


def evaluate_run(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]]) -> RetrievalScores:
    """Average nDCG@10, Recall@100 and MRR over the queries pytrec_eval scores."""
    import pytrec_eval

    per_query = pytrec_eval.RelevanceEvaluator(qrels, _METRICS).evaluate(run)
    n = max(len(per_query), 1)
    return RetrievalScores(
        ndcg_at_10=sum(q["ndcg_cut_10"] for q in per_query.values()) / n,
        recall_at_100=sum(q["recall_100"] for q in per_query.values()) / n,
        mrr=sum(q["recip_rank"] for q in per_query.values()) / n,
        queries=len(per_query),
    )


def score_retrieval(
    dataset: BeirDataset,
    query_embeddings: np.ndarray,
    doc_embeddings: np.ndarray,
    *,
    device: str = "cpu",
) -> RetrievalScores:
    """Scores of query embeddings (in ``dataset.queries`` order) against document embeddings (corpus order)."""
    run = run_from_embeddings(list(dataset.queries), query_embeddings, dataset.doc_ids(), doc_embeddings, device=device)
    return evaluate_run(dataset.qrels, run)
