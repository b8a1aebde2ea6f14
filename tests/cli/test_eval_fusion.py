"""embedkd eval --fuse-model: the fused score over every document, against a direct computation."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from embedkd.data.beir import load_beir
from embedkd.evaluation.retrieval import evaluate_run
from embedkd.models import Encoder
from embedkd.testing import build_tiny_beir


def test_eval_fuses_the_second_models_scores(
    tiny_model_factory: Callable[..., Path],
    run_cli: Callable[..., tuple[int, str, str]],
    tmp_path: Path,
    isolated_cache: Path,
) -> None:
    beir = build_tiny_beir(tmp_path / "beir", docs=40, queries=12)
    first, second = tiny_model_factory(hidden=48, seed=1), tiny_model_factory(hidden=32, seed=9)
    common = ("eval", "-i", beir, "--query-model", first, "--device", "cpu", "--json")

    def ndcg(*extra: object) -> dict[str, object]:
        code, out, err = run_cli(*common, *extra)
        assert code == 0, err
        return json.loads(out)

    plain = ndcg()
    assert ndcg("--fuse-model", second, "--fuse-weight", "0")["ndcg_at_10"] == pytest.approx(plain["ndcg_at_10"])
    fused = ndcg("--fuse-model", second, "--fuse-weight", "2")
    assert fused["fused_with"] == str(second) and fused["fuse_weight"] == 2.0

    data = load_beir(beir, "test")
    queries, docs = list(data.queries.values()), data.doc_texts()
    scores = sum(
        weight * Encoder.load(model, device="cpu").encode_query(queries) @ Encoder.load(model).encode_document(docs).T
        for model, weight in ((first, 1.0), (second, 2.0))
    )
    run = {
        qid: dict(zip(data.doc_ids(), map(float, row), strict=True))
        for qid, row in zip(data.queries, scores, strict=True)
    }
    assert fused["ndcg_at_10"] == pytest.approx(evaluate_run(data.qrels, run).ndcg_at_10, abs=1e-6)
    assert fused["ndcg_at_10"] != pytest.approx(plain["ndcg_at_10"])  # the second model changed the ranking
