"""benchmarks/query_feedback.py: Rocchio feedback over the first search's top documents."""

from __future__ import annotations

import numpy as np

from benchmarks.query_feedback import feedback


def _unit(rows: list[list[float]]) -> np.ndarray:
    array = np.asarray(rows, dtype=np.float32)
    return array / np.linalg.norm(array, axis=1, keepdims=True)


def test_feedback_moves_each_query_towards_the_mean_of_its_top_documents() -> None:
    docs = _unit([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0, 1]])
    query = _unit([[1, 0.2, 0]])
    moved = feedback(query, docs, k=2, beta=1.0, weighted=False)
    expected = query[0] + docs[:2].mean(axis=0)  # its top 2 are documents 0 and 1
    np.testing.assert_allclose(moved[0], expected / np.linalg.norm(expected), rtol=1e-6)
    assert np.isclose(np.linalg.norm(moved[0]), 1.0)
    unmoved = feedback(query, docs, k=2, beta=0.0, weighted=False)
    np.testing.assert_allclose(unmoved, query, rtol=1e-6)


def test_the_skipped_document_never_counts_and_softmax_weights_favour_the_best() -> None:
    docs = _unit([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    query = _unit([[1, 0.5, 0.1]])
    skipped = feedback(query, docs, k=1, beta=1.0, weighted=False, skip=np.array([0]))
    expected = query[0] + docs[1]  # document 0 is the query's own row: its best after it is document 1
    np.testing.assert_allclose(skipped[0], expected / np.linalg.norm(expected), rtol=1e-6)
    weighted = feedback(query, docs, k=3, beta=1.0, weighted=True)
    plain = feedback(query, docs, k=3, beta=1.0, weighted=False)
    assert weighted[0] @ docs[0] > plain[0] @ docs[0]  # the top document weighs more than a third
