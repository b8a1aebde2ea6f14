"""Distillation benchmark on SciFact: the default recipe against the reference baselines.

    python benchmarks/distill_scifact.py --data-root ../shared/data --out benchmarks/results

Trains students with the default recipe on unlabeled text only (the SciFact corpus, never its queries,
plus generic query-like text), then scores on SciFact test with the BEIR-exact evaluator:

- teacher / teacher, undistilled MiniLM / MiniLM, and a least-squares 384->768 map (asymmetric);
- the default student (``embedkd train``'s defaults: MiniLM-L6 with its top layer trained) asymmetric
  (student queries, teacher documents) and student / student;
- the same recipe on a student cut from 3 of the teacher's own layers (the previous default), and each
  model's batch-1 query latency.

Teacher embeddings come from the shared embedding cache: the corpus from the precomputed black-box file,
the rest computed once by the teacher; their cost is reported apart from the training step.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import machine, markdown_table, recipe_overrides, run_main, write_json
from embedkd.data import load_beir
from embedkd.distill import DataOptions, DistillConfig, Teacher, distill
from embedkd.distill.teacher import read_aligned_texts
from embedkd.evaluation import alignment_scores, score_retrieval
from embedkd.models import Encoder


def query_latency_ms(encoder: Encoder, queries: list[str], repeats: int = 100) -> dict[str, float]:
    encoder.encode(queries[:4])
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        encoder.encode_query([queries[i % len(queries)]], batch_size=1)
        times.append(time.perf_counter() - start)
    return {"p50": float(np.percentile(times, 50) * 1000), "p99": float(np.percentile(times, 99) * 1000)}


def teacher_cost(data_root: Path, teacher: Teacher, sample: int = 512) -> dict[str, Any]:
    """Teacher encode time of the recipe's texts: measured rate per kind (uncached) x number of texts.

    The cache makes reruns free, so the cost of the first run is measured on a sample of each kind.
    """
    from embedkd.distill.data import load_training_texts

    texts = load_training_texts(
        [data_root / "train" / "queries.jsonl", data_root / "beir" / "scifact"],
        DataOptions(max_texts_per_source=None, seed=0),
    )
    encoder = teacher.encoder()
    encoder.encode(["warm up"])
    out: dict[str, Any] = {"by_kind": {}}
    total = 0.0
    for kind in sorted({t.kind.value for t in texts}):
        of_kind = [t.text for t in texts if t.kind.value == kind]
        probe = of_kind[:sample]
        start = time.perf_counter()
        encoder.encode(probe, batch_size=64)
        rate = len(probe) / (time.perf_counter() - start)
        out["by_kind"][kind] = {"texts": len(of_kind), "texts/s": round(rate, 1), "seconds": round(len(of_kind) / rate)}
        total += len(of_kind) / rate
    out["total seconds"] = round(total)
    return out


def recipe(out: Path, data_root: Path, **overrides: Any) -> DistillConfig:
    """The default recipe: `embedkd train`'s defaults (MiniLM-L6 with all but its top layer frozen, the ranking
    term against the corpus mixed with the base's own ranking, batch 32, lr 4e-4 / 4e-3, bf16 where native)
    on the SciFact corpus's titles, sentences and documents plus every generic query,
    in at most 30 minutes of training."""
    settings: dict[str, Any] = dict(
        out=out,
        data=[data_root / "train" / "queries.jsonl", data_root / "beir" / "scifact"],
        teacher="mpnet-base",  # the student is DistillConfig's default
        data_options=DataOptions(max_texts_per_source=None, seed=0),
        eval_beir=data_root / "beir" / "scifact",
        eval_split="train",  # dev: SciFact's train qrels (never trained on) pick the checkpoint; test stays untouched
        max_minutes=30,  # the training-step budget on a 2-core CPU; a GPU finishes the epochs sooner
        progress=False,
    )
    settings.update(overrides)
    return DistillConfig(**settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--work", type=Path, default=Path(".embedkd/bench"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--skip-cut", action="store_true", help="Train only the default student.")
    parser.add_argument("--recipe-json", type=str, default="{}", help="Overrides of the recipe, as JSON.")
    args = parser.parse_args()
    overrides = recipe_overrides(args.recipe_json, "--recipe-json")
    beir = args.data_root / "beir" / "scifact"
    dataset = load_beir(beir, "test")
    query_texts = list(dataset.queries.values())
    results: dict[str, Any] = {"machine": machine(), "rows": []}

    teacher = Teacher.from_model("mpnet-base")
    precomputed = args.data_root / "embeddings" / "scifact-mpnet-base" / "corpus.f16.npy"
    if precomputed.is_file():  # the black-box path: import instead of 44 minutes of encoding
        teacher.import_embeddings(read_aligned_texts(beir, precomputed), precomputed)
    start = time.perf_counter()
    docs_t = teacher.embeddings(dataset.doc_texts(), role="document")
    queries_t = teacher.embeddings(query_texts, role="query")
    results["teacher_eval_encode_s"] = time.perf_counter() - start

    def row(name: str, mode: str, q: np.ndarray, d: np.ndarray, extra: dict[str, Any] | None = None) -> None:
        scores = score_retrieval(dataset, q, d)
        entry = {"run": name, "mode": mode, "ndcg@10": scores.ndcg_at_10, "recall@100": scores.recall_at_100}
        entry["vs teacher"] = scores.ndcg_at_10 / results["rows"][0]["ndcg@10"] if results["rows"] else 1.0
        entry.update(extra or {})
        results["rows"].append(entry)
        print(json.dumps(entry), flush=True)

    row("teacher (mpnet-base)", "teacher / teacher", queries_t, docs_t)
    minilm = Encoder.load("minilm-l6", device="cpu")
    docs_m = minilm.encode_cached(dataset.doc_texts(), role="document")
    queries_m = minilm.encode_query(query_texts)
    row("undistilled MiniLM-L6", "student / student", queries_m, docs_m)

    # Least-squares 384->768 map fitted on 10k generic training queries plus the corpus (FINDINGS' baseline).
    from embedkd.distill.data import load_training_texts

    fit_texts = [
        t.text
        for t in load_training_texts(
            [args.data_root / "train" / "queries.jsonl"], DataOptions(max_texts_per_source=10_000, seed=0)
        )
    ]
    x = np.concatenate([minilm.encode(fit_texts, batch_size=128), docs_m])
    y = np.concatenate([teacher.embeddings(fit_texts, role="query"), docs_t])
    w, *_ = np.linalg.lstsq(x, y, rcond=None)
    mapped = queries_m @ w
    row(
        "MiniLM + least-squares map",
        "asymmetric",
        mapped,
        docs_t,
        {"test-query cosine": alignment_scores(mapped, queries_t).mean_cosine},
    )

    results["teacher_encode_estimate"] = teacher_cost(args.data_root, teacher)
    print(json.dumps(results["teacher_encode_estimate"]), flush=True)

    variants: list[tuple[str, dict[str, Any]]] = [("default student (MiniLM-L6, top layer trained)", {})]
    if not args.skip_cut:
        variants.append(("student cut from 3 teacher layers", {"student": "teacher"}))
    teacher_encoder = teacher.encoder()
    latency_teacher = query_latency_ms(teacher_encoder, query_texts)
    results["teacher_latency_ms"] = latency_teacher
    for name, variant in variants:
        out = args.work / ("student" if not variant else "student-cut")
        result = distill(recipe(out, args.data_root, **{**overrides, **variant}))
        student = Encoder.load(out, device="cpu")
        q_s = student.encode_query(query_texts)
        timings = result.manifest.training["timings"]
        extra = {
            "test-query cosine": alignment_scores(q_s, queries_t).mean_cosine,
            "held-out cosine": result.manifest.alignment.mean_cosine if result.manifest.alignment else None,
            "train s": timings.get("train_seconds"),
            "teacher encode s": timings.get("teacher_seconds"),
            "texts": result.manifest.training["data"],
        }
        latency = query_latency_ms(student, query_texts)
        extra["batch-1 p50 ms"] = latency["p50"]
        extra["speedup vs teacher"] = latency_teacher["p50"] / latency["p50"]
        row(name, "asymmetric", q_s, docs_t, extra)
        start = time.perf_counter()
        docs_s = student.encode_cached(dataset.doc_texts(), role="document")
        row(name, "student / student", q_s, docs_s, {"doc encode s": time.perf_counter() - start})

    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "distill_scifact.json", results)
    write_markdown(results, args.out / "distill_scifact.md")


def _fmt(value: Any, spec: str, suffix: str = "") -> str:
    return "" if value is None else f"{value:{spec}}{suffix}"


def write_markdown(results: dict[str, Any], path: Path) -> None:
    lines = [
        "# Distillation on SciFact (test split, BEIR-exact nDCG@10)",
        "",
        f"Machine: {results['machine']}.",
        "",
    ]
    header = ["run", "mode", "nDCG@10", "x teacher", "Recall@100", "test-query cosine", "train s"]
    rows = []
    for r in results["rows"]:
        rows.append(
            [
                r["run"],
                r["mode"],
                _fmt(r["ndcg@10"], ".4f"),
                _fmt(r["vs teacher"], ".3f"),
                _fmt(r["recall@100"], ".4f"),
                _fmt(r.get("test-query cosine"), ".3f"),
                _fmt(r.get("train s"), ".0f"),
                _fmt(r.get("batch-1 p50 ms"), ".1f"),
                _fmt(r.get("speedup vs teacher"), ".1f", "x"),
            ]
        )
    lines += markdown_table([*header, "batch-1 p50 ms", "speedup"], rows)
    lines += ["", f"Teacher batch-1 query latency: p50 {results['teacher_latency_ms']['p50']:.1f} ms.", ""]
    cost = results.get("teacher_encode_estimate")
    if cost:
        lines += [
            "Teacher encoding of the recipe's texts (measured rate per kind on 512 uncached texts x count;"
            " computed once, then cached and shared with indexing):",
            "",
        ]
        for kind, c in cost["by_kind"].items():
            lines.append(f"- {kind}: {c['texts']} texts at {c['texts/s']} texts/s = {c['seconds']} s")
        lines += [f"- total: {cost['total seconds']} s", ""]
    for r in results["rows"]:
        if "texts" in r and r["mode"] == "asymmetric":
            kinds = json.dumps(r["texts"]["by_kind"])
            lines.append(f"- {r['run']}: training texts {kinds}; teacher encoding {r['teacher encode s']} s.")
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    run_main(main)
