"""benchmarks/mteb_run.py: mteb 2.x on embedkd encoders, offline, agreeing with embedkd's BEIR evaluator.

Tiny random encoders (conftest) on a tiny BEIR folder and STS file written here; nothing touches the hub.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

# mteb creates its default result cache when imported: keep it out of the user's home, and remove it after.
if "MTEB_CACHE" not in os.environ:
    os.environ["MTEB_CACHE"] = tempfile.mkdtemp(prefix="embedkd-test-mteb-")
    atexit.register(shutil.rmtree, os.environ["MTEB_CACHE"], True)

import json  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from mteb.types import PromptType  # noqa: E402

from benchmarks import mteb_run  # noqa: E402
from embedkd.data import load_beir  # noqa: E402
from embedkd.evaluation import score_retrieval  # noqa: E402
from embedkd.models import Encoder  # noqa: E402

WORDS = (
    "protein cell gene brain heart lung virus vaccine tumor neuron insulin muscle enzyme receptor cortex "
    "liver kidney blood bone skin memory sleep stress diet obesity diabetes cancer therapy trial dose "
    "mouse human child aging signal pathway membrane mutation immune infection antibody plasma fiber "
    "oxygen glucose lipid hormone growth repair"
).split()
BEIR_NAME = "BEIR-beir"


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.sample(WORDS, n))


@pytest.fixture(scope="module")
def beir_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 documents (one without a title), 9 queries of which 8 have test qrels (graded 1/2), ids never shared."""
    rng = random.Random(7)
    folder = tmp_path_factory.mktemp("data") / "beir"
    (folder / "qrels").mkdir(parents=True)
    docs = [
        {"_id": f"d{i:02d}", "title": "" if i == 5 else _sentence(rng, 3).title(), "text": _sentence(rng, 10) + "."}
        for i in range(30)
    ]
    queries, qrels = [], ["query-id\tcorpus-id\tscore"]
    for q in range(9):
        targets = rng.sample(docs, 2)
        # a query shares a few words with its first relevant document, so even random encoders rank it somewhat
        text = " ".join(targets[0]["text"].rstrip(".").split()[:3] + rng.sample(WORDS, 2))
        queries.append({"_id": f"q{q}", "text": text})
        if q < 8:  # q8 has no qrels: neither BEIR nor mteb may score it
            qrels += [f"q{q}\t{targets[0]['_id']}\t2", f"q{q}\t{targets[1]['_id']}\t1"]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries), encoding="utf-8")
    (folder / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def sts_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = random.Random(3)
    rows = ["sentence1\tsentence2\tscore"]
    for i in range(10):
        first = _sentence(rng, 6)
        second = first if i == 0 else _sentence(rng, 6)
        rows.append(f'{first}\t"{second}" he said\t{5.0 if i == 0 else round(rng.uniform(0, 5), 1)}')
    path = tmp_path_factory.mktemp("sts") / "sts.tsv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _embedkd_ndcg(beir_folder: Path, query_model: Path, doc_model: Path) -> tuple[float, float]:
    """embedkd's BEIR-exact nDCG@10, and the smallest score gap among each query's top 11 documents."""
    dataset = load_beir(beir_folder, "test")
    queries = Encoder.load(query_model, device="cpu").encode_query(list(dataset.queries.values()))
    docs = Encoder.load(doc_model, device="cpu").encode_document(dataset.doc_texts())
    top = -np.sort(-(queries @ docs.T), axis=1)[:, :11]
    return score_retrieval(dataset, queries, docs).ndcg_at_10, float(np.min(top[:, :-1] - top[:, 1:]))


def _result_json(out: Path, task_name: str) -> dict[str, Any]:
    files = list((out / "results").glob(f"embedkd__*/*/{task_name}.json"))
    assert len(files) == 1, files
    assert (files[0].parent / "model_meta.json").is_file()
    return json.loads(files[0].read_text(encoding="utf-8"))


@pytest.mark.parametrize("pair", ["symmetric", "asymmetric"])
def test_retrieval_matches_embedkd_evaluator(
    pair: str, beir_folder: Path, tiny_model_factory: Callable[..., Path], tmp_path: Path
) -> None:
    if pair == "symmetric":
        query_model = doc_model = tiny_model_factory()
    else:  # same width, different weights: student queries against teacher documents
        query_model, doc_model = tiny_model_factory(hidden=48, seed=1), tiny_model_factory(hidden=48, seed=2)
    out = tmp_path / "mteb"

    scores = mteb_run.run(str(query_model), str(doc_model), [beir_folder], None, "test", out)

    expected, min_gap = _embedkd_ndcg(beir_folder, query_model, doc_model)
    # Both sides hand pytrec_eval a scored run, and pytrec_eval breaks exact ties by document id, so the
    # rankings can only differ where two scores are closer than the pipelines' float32 discrepancy (mteb's
    # torch cosine vs embedkd's inner product: about 2e-7 here). Tiny random encoders crowd their scores, so
    # check that this data leaves no such near-tie in any query's top 10; then 0.005 is a real tolerance.
    assert min_gap > 1e-6
    assert 0.0 < expected < 1.0  # not a degenerate agreement
    assert scores[BEIR_NAME] == pytest.approx(expected, abs=0.005)

    result = _result_json(out, BEIR_NAME)
    assert result["task_name"] == BEIR_NAME
    assert result["mteb_version"]
    assert result["scores"]["test"][0]["main_score"] == pytest.approx(scores[BEIR_NAME], abs=1e-6)
    assert result["scores"]["test"][0]["ndcg_at_10"] == pytest.approx(expected, abs=0.005)
    meta = json.loads(next((out / "results").glob("embedkd__*/*/model_meta.json")).read_text(encoding="utf-8"))
    assert meta["name"].startswith("embedkd/asym-" if pair == "asymmetric" else "embedkd/")
    assert meta["similarity_fn_name"] == "cosine"


class _Recorder(mteb_run.SymmetricEncoder):
    """Remembers the texts mteb asks for, per prompt type."""

    def __init__(self, encoder: Encoder) -> None:
        super().__init__(encoder)
        self.seen: dict[PromptType | None, list[str]] = {}

    def encode(self, inputs: Any, **kwargs: Any) -> np.ndarray:
        texts = mteb_run._texts(inputs)
        self.seen.setdefault(kwargs.get("prompt_type"), []).extend(texts)
        return super().encode(inputs, **kwargs)


def test_mteb_embeds_beir_texts(beir_folder: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    """Documents reach the model as BEIR's title + " " + text; only queries with qrels are encoded."""
    recorder = _Recorder(Encoder.load(tiny_model_dir, device="cpu"))
    mteb_run.evaluate(recorder, [mteb_run.beir_task(beir_folder)], tmp_path / "mteb")
    dataset = load_beir(beir_folder, "test")
    assert recorder.seen[PromptType.document] == dataset.doc_texts()
    assert recorder.seen[PromptType.query] == list(dataset.queries.values())
    assert "q8" not in dataset.queries and len(dataset.queries) == 8


def test_asymmetric_routing_and_meta(tiny_model_factory: Callable[..., Path]) -> None:
    student = Encoder.load(tiny_model_factory(hidden=48, seed=1), device="cpu")
    teacher = Encoder.load(tiny_model_factory(hidden=48, seed=2), device="cpu")
    model = mteb_run.AsymmetricEncoder(student, teacher)
    assert model._encoder_for(PromptType.query) is student
    assert model._encoder_for(PromptType.document) is teacher
    assert model._encoder_for(None) is student  # STS and other non-retrieval tasks: the student
    meta = model.mteb_model_meta
    assert meta.embed_dim == 48 and meta.n_parameters == student.parameters() + teacher.parameters()
    assert meta.revision == f"{student.fingerprint[:16]}_{teacher.fingerprint[:16]}"
    assert meta.similarity_fn_name == "cosine" and meta.use_instructions is False  # no query/document prompts
    with pytest.raises(ValueError, match="shared space"):
        mteb_run.AsymmetricEncoder(Encoder.load(tiny_model_factory(), device="cpu"), teacher)


def test_cli_runs_sts_and_retrieval(
    beir_folder: Path, sts_file: Path, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mteb"
    argv = ["--query-model", str(tiny_model_dir), "--beir", str(beir_folder), "--sts", str(sts_file), "--out", str(out)]
    assert mteb_run.main(argv) == 0

    printed = capsys.readouterr().out
    assert BEIR_NAME in printed and "STS-sts" in printed and "nDCG@10 / Spearman" in printed
    sts = _result_json(out, "STS-sts")["scores"]["test"][0]
    assert math.isfinite(sts["cosine_spearman"]) and -1.0 <= sts["cosine_spearman"] <= 1.0
    assert sts["main_score"] == sts["cosine_spearman"]
    assert len(mteb_run.read_sts(sts_file)) == 10


def test_agreement_table_replaces_the_rows_of_an_earlier_run(tmp_path: Path) -> None:
    mteb_run.record_agreement(tmp_path, "student", "teacher", {"SciFact": 0.61, "STSB": 0.8}, {"SciFact": 0.6102})
    mteb_run.record_agreement(tmp_path, "teacher", None, {"SciFact": 0.65}, {"SciFact": 0.65})
    mteb_run.record_agreement(tmp_path, "student", "teacher", {"SciFact": 0.62, "STSB": 0.8}, {"SciFact": 0.6202})
    rows = [line for line in (tmp_path / "agreement.md").read_text().splitlines() if line.startswith("| student")]
    assert rows == [
        "| student | teacher | SciFact | nDCG@10 0.6200 | 0.6202 | 0.0002 |",
        "| student | teacher | STSB | Spearman 0.8000 | | |",
    ]
    teacher_row = "| teacher | teacher | SciFact | nDCG@10 0.6500 | 0.6500 | 0.0000 |"
    assert teacher_row in (tmp_path / "agreement.md").read_text()
