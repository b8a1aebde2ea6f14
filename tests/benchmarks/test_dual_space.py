"""benchmarks/dual_space.py: score fusion, rescoring, per-query nDCG and paired intervals (the shared pass it
times is embedkd's SharedTrunk, tested in tests/models/test_shared_trunk.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.dual_space import WEIGHTS, beir_ndcg, fused, paired_ci, per_query_ndcg, rescored
from benchmarks.unseen_alignment import rank_gains, rank_of, rank_scores


def test_fusion_adds_the_weighted_base_scores_and_a_z_score_sum() -> None:
    space = np.array([[0.9, 0.1, 0.5], [0.2, 0.4, 0.3]], dtype=np.float32)
    base = np.array([[0.1, 0.8, 0.3], [0.5, 0.5, 0.9]], dtype=np.float32)
    rows = fused(space, base)
    assert set(rows) == {*(f"w {w:g}" for w in WEIGHTS), "z-scores"}
    np.testing.assert_allclose(rows["w 0"], space)
    np.testing.assert_allclose(rows["w 1.5"], space + 1.5 * base)
    assert np.argmax(rows["w 2"][0]) == 1  # enough weight on the base moves its favourite to the top
    np.testing.assert_allclose(rows["z-scores"].mean(axis=1), 0.0, atol=1e-6)


def test_rank_of_leaves_its_scores_alone_and_matches_rank_scores() -> None:
    rng = np.random.default_rng(0)
    queries, docs = rng.normal(size=(5, 8)), rng.normal(size=(12, 8))
    relevant, own = np.array([1, 2, 3, 4, 5]), np.array([0, 1, 2, 3, 4])
    scores = queries @ docs.T
    before = scores.copy()
    ndcg, top = rank_of(scores, relevant, own)
    np.testing.assert_array_equal(scores, before)
    assert (ndcg, top.tolist()) == (
        rank_scores(queries, docs, relevant, own)[0],
        rank_scores(queries, docs, relevant, own)[1].tolist(),
    )
    assert not np.any(top == own[:, None])  # a query never finds itself
    gains, same_top = rank_gains(scores, relevant, own)
    assert gains.shape == (5,) and abs(float(gains.mean()) - ndcg) < 1e-12
    np.testing.assert_array_equal(same_top, top)


def test_per_query_ndcg_averages_to_the_beir_score(tmp_path: Path) -> None:
    from embedkd.data.beir import load_beir
    from embedkd.testing import build_tiny_beir

    data = load_beir(build_tiny_beir(tmp_path / "beir", docs=30, queries=8), "test")
    scores = np.random.default_rng(3).normal(size=(len(data.queries), len(data.doc_ids()))).astype(np.float32)
    per_query = per_query_ndcg(data, scores)
    assert per_query.shape == (8,)
    assert abs(per_query.mean() - beir_ndcg(data, scores)) < 1e-9


def test_the_paired_interval_brackets_the_mean_difference_and_is_zero_for_equal_runs() -> None:
    rng = np.random.default_rng(1)
    a = rng.uniform(size=300)
    assert paired_ci(a, a) == [0.0, 0.0, 0.0]
    b = a - 0.05 + rng.normal(scale=0.2, size=300)
    mean, low, high = paired_ci(a, b)
    assert low < mean < high and mean == float(np.mean(a - b))
    assert paired_ci(a, b) == [mean, low, high]  # seeded: the same interval every time


def test_rescoring_fuses_only_the_teacher_space_candidates() -> None:
    space = np.array([[0.9, 0.8, 0.1, 0.0]], dtype=np.float32)
    base = np.array([[0.0, 0.5, 2.0, 0.0]], dtype=np.float32)
    out = rescored(space, base, 1.0, 2)
    np.testing.assert_allclose(out[0, :2], [0.9, 1.3])  # the two candidates, fused: the second now leads
    assert np.all(out[0, 2:] < -1e8)  # document 2 would win a full fusion but was never a candidate
    np.testing.assert_allclose(rescored(space, base, 0.5, 4), space + 0.5 * base)  # every document a candidate
