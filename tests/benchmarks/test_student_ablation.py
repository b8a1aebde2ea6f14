from __future__ import annotations

import numpy as np
import pytest

from benchmarks.student_ablation import per_query_ndcg10, report
from embedkd.data.beir import BeirDataset
from embedkd.evaluation import score_retrieval


def test_per_query_scores_average_to_the_evaluators_ndcg() -> None:
    rng = np.random.default_rng(0)
    corpus = {f"d{i}": {"title": "", "text": f"doc {i}"} for i in range(30)}
    queries = {f"q{i}": f"query {i}" for i in range(12)}
    qrels = {f"q{i}": {f"d{(3 * i) % 30}": 1, f"d{(3 * i + 1) % 30}": 2} for i in range(12)}
    dataset = BeirDataset(corpus, queries, qrels, "test")
    docs = rng.normal(size=(30, 8)).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    q = rng.normal(size=(12, 8)).astype(np.float32)
    gains = per_query_ndcg10(dataset, q, docs)
    assert gains.shape == (12,) and ((gains >= 0) & (gains <= 1)).all()
    assert gains.mean() == pytest.approx(score_retrieval(dataset, q, docs).ndcg_at_10)
    perfect = docs[[(3 * i + 1) % 30 for i in range(12)]] * 10  # each query finds its most relevant doc first
    assert per_query_ndcg10(dataset, perfect, docs).min() > 0.6


def test_report_lists_each_student_with_its_intervals() -> None:
    row = {
        "student": "default",
        "kept_step": 16000,
        "heldout_cosine": 0.77,
        "teacher_agreement10": 0.68,
        **{f"{k}_ndcg10": 0.6 for k in ("dev", "test", "sts", "docstrings")},
        "sts_x_teacher": 0.95,
        "docstrings_x_teacher": 0.77,
        **{f"{k}_vs_reference": [0.0, 0.0, 0.0] for k in ("dev", "test", "sts", "docstrings")},
    }
    other = {**row, "student": "change", "dev_vs_reference": [0.0095, 0.0053, 0.0142], "heldout_cosine": None}
    text = report(
        {"machine": "m", "concurrent": "nothing", "recipe": "r", "reference": "default=x", "rows": [row, other]},
        "## Reading\nok",
    )
    assert "| change | 16000 | 0.6000 | +0.0095 [+0.0053, +0.0142] |" in text
    assert text.rstrip().endswith("## Reading\nok") and "Ran beside: nothing" in text
