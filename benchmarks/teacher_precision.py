"""Teacher encoding in bf16 against fp32: speed and drift, on this machine.

    python -m benchmarks.teacher_precision --data-root ../shared/data

Measures the teacher (mpnet-base) in fp32 and in bf16 autocast on short queries (batch 64) and on SciFact
abstracts (batch 16): texts/s, and the mean and minimum cosine of the bf16 vectors to the fp32 ones. Then
SciFact test nDCG@10 with teacher queries encoded in each precision against the fp32 document vectors
(the shared precomputed file). Encoding all 5,183 abstracts again in bf16 would take ~20 minutes here, so
the document side's drift is measured by cosine on a sample.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import machine, markdown_table, run_main, write_json
from embedkd.data import load_beir
from embedkd.data.jsonl import iter_jsonl
from embedkd.device import native_bf16
from embedkd.distill import DataOptions, Teacher
from embedkd.distill.data import load_training_texts
from embedkd.distill.teacher import read_aligned_texts
from embedkd.evaluation import score_retrieval
from embedkd.models import Encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--queries", type=int, default=1024)
    parser.add_argument("--docs", type=int, default=64)
    parser.add_argument("--concurrent", default="nothing else")
    args = parser.parse_args()
    beir = args.data_root / "beir" / "scifact"
    dataset = load_beir(beir, "test")
    queries = [str(r["text"]) for _, r in iter_jsonl(args.data_root / "train" / "queries.jsonl")][: args.queries]
    docs = dataset.doc_texts()[: args.docs]
    recipe = load_training_texts(
        [args.data_root / "train" / "queries.jsonl", beir], DataOptions(max_texts_per_source=40_000, seed=0)
    )
    counts = {kind: sum(t.kind.value == kind for t in recipe) for kind in ("query", "title", "sentence")}
    samples = {kind: [t.text for t in recipe if t.kind.value == kind][:256] for kind in counts}
    test_queries = list(dataset.queries.values())
    cache = Teacher.from_model("mpnet-base")
    precomputed = args.data_root / "embeddings" / "scifact-mpnet-base" / "corpus.f16.npy"
    cache.import_embeddings(read_aligned_texts(beir, precomputed), precomputed)
    doc_vectors = cache.embeddings(dataset.doc_texts(), role="document", progress=False)

    out: dict[str, Any] = {"machine": machine(), "native_bf16": native_bf16("cpu"), "concurrent": args.concurrent}
    vectors: dict[str, dict[str, np.ndarray]] = {}
    for precision in ("fp32", "bf16"):
        encoder = Encoder.load("mpnet-base", device="cpu", precision=precision)
        encoder.encode(queries[:64])  # warm-up
        row: dict[str, Any] = {}
        started = time.perf_counter()
        q = encoder.encode(queries, batch_size=64)
        row["queries/s"] = len(queries) / (time.perf_counter() - started)
        started = time.perf_counter()
        d = encoder.encode(docs, batch_size=16)
        row["abstracts/s"] = len(docs) / (time.perf_counter() - started)
        t = encoder.encode_query(test_queries, batch_size=64)
        seconds = 0.0
        for kind, sample in samples.items():
            started = time.perf_counter()
            encoder.encode(sample, batch_size=64)
            seconds += counts[kind] * (time.perf_counter() - started) / len(sample)
        row["recipe texts, estimated s"] = seconds
        row["ndcg@10"] = score_retrieval(dataset, t, doc_vectors).ndcg_at_10
        vectors[precision] = {"q": q, "d": d, "t": t}
        out[precision] = row
        print(precision, json.dumps(row), flush=True)
    for kind in ("q", "d", "t"):
        cos = (vectors["fp32"][kind] * vectors["bf16"][kind]).sum(1)
        out[f"cosine_{kind}"] = {"mean": float(cos.mean()), "min": float(cos.min())}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "teacher_precision.json", out)
    f, b = out["fp32"], out["bf16"]
    rows = [
        ["short queries (batch 64), texts/s", f"{f['queries/s']:.1f}", f"{b['queries/s']:.1f}",
         f"{b['queries/s'] / f['queries/s']:.2f}x"],
        ["SciFact abstracts (batch 16), texts/s", f"{f['abstracts/s']:.2f}", f"{b['abstracts/s']:.2f}",
         f"{b['abstracts/s'] / f['abstracts/s']:.2f}x"],
        [f"the recipe's {sum(counts.values()):,} training texts (rate per kind x count), estimated s",
         f"{f['recipe texts, estimated s']:.0f}", f"{b['recipe texts, estimated s']:.0f}",
         f"{f['recipe texts, estimated s'] / b['recipe texts, estimated s']:.2f}x faster"],
        ["SciFact test nDCG@10 (queries in this precision, fp32 documents)", f"{f['ndcg@10']:.4f}",
         f"{b['ndcg@10']:.4f}", f"{b['ndcg@10'] - f['ndcg@10']:+.4f}"],
    ]  # fmt: skip
    cos = out
    lines = [
        "# Teacher precision: bf16 autocast against fp32",
        "",
        f"Machine: {out['machine']}; native bf16: {out['native_bf16']}. Running at the same time: {args.concurrent}.",
        "",
        *markdown_table(["measure", "fp32", "bf16", "change"], rows),
        "",
        "Cosine of the bf16 vectors to the fp32 ones (mean / min): "
        f"{len(queries)} queries {cos['cosine_q']['mean']:.6f} / {cos['cosine_q']['min']:.6f}; "
        f"{len(docs)} abstracts {cos['cosine_d']['mean']:.6f} / {cos['cosine_d']['min']:.6f}; "
        f"{len(test_queries)} SciFact test claims {cos['cosine_t']['mean']:.6f} / {cos['cosine_t']['min']:.6f}.",
        "",
        "Defaults that follow: the trainer's teacher targets and `embedkd index build` use `auto`, which is "
        "bf16 where the hardware has it natively and fp32 elsewhere; the precision is part of the embedding "
        "cache key and of the index manifest, so vectors of different precision never share a cache or an index.",
    ]
    (args.out / "teacher_precision.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    run_main(main)
