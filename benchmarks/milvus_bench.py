"""Milvus against faiss on SciFact: the same ``Index`` (documents, guard, grouping), two vector backends.

    python -m benchmarks.milvus_bench [--data-root ../shared/data] [--kinds flat,hnsw]

Both backends index the teacher's precomputed SciFact document vectors (no encoding) through
``build_index``; the 300 test queries are the teacher's own query vectors. For each backend and kind:
nDCG@10 (BEIR-exact, pytrec_eval), the share of faiss flat's top-10 it returns, search latency p50/p99
for one query at k=10 through ``Index.search`` (what the service calls), and build seconds. Milvus runs as
Milvus Lite (``milvus-lite``) in a local file, so its numbers include a local gRPC hop that a cluster
would replace with a network one.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import machine, markdown_table, run_main, write_json
from embedkd.data import load_beir
from embedkd.data.documents import Document
from embedkd.distill.teacher import Teacher, read_aligned_texts
from embedkd.evaluation import evaluate_run
from embedkd.index import Index, IndexParams, build_index


def measure(index: Index, qids: list[str], queries: np.ndarray, repeats: int = 3) -> dict[str, Any]:
    hits = index.search(queries, 10)
    run = {qid: {h.id: h.score for h in row} for qid, row in zip(qids, hits, strict=True)}
    times = []
    for _ in range(repeats):
        for q in queries:
            start = time.perf_counter()
            index.search(q[None, :], 10)
            times.append(time.perf_counter() - start)
    return {
        "run": run,
        "p50_ms": float(np.percentile(times, 50) * 1000),
        "p99_ms": float(np.percentile(times, 99) * 1000),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--kinds", default="flat,hnsw")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--concurrent", default="nothing else")
    args = parser.parse_args()

    beir = args.data_root / "beir" / "scifact"
    dataset = load_beir(beir, "test")
    teacher = Teacher.from_model("mpnet-base")
    precomputed = args.data_root / "embeddings" / "scifact-mpnet-base" / "corpus.f16.npy"
    teacher.import_embeddings(read_aligned_texts(beir, precomputed), precomputed)
    docs = [Document(id=i, title=d["title"], text=d["text"]) for i, d in dataset.corpus.items()]
    qids = list(dataset.queries)
    queries = teacher.embeddings([dataset.queries[q] for q in qids], role="query", progress=False)

    def embed(texts: list[str]) -> np.ndarray:
        return teacher.embeddings(texts, role="document", progress=False)

    rows: list[dict[str, Any]] = []
    reference: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in [k.strip() for k in args.kinds.split(",") if k.strip()]:
            for backend in ("faiss", "milvus"):
                extra = {"backend": "milvus", "uri": str(Path(tmp) / f"{kind}.db")} if backend == "milvus" else {}
                params = IndexParams(kind=kind, extra=extra)
                start = time.perf_counter()
                index = build_index(
                    Path(tmp) / f"{backend}-{kind}", docs, teacher=teacher.ref, embed=embed, params=params,
                    chunking=False, progress=False,
                )  # fmt: skip
                build_s = time.perf_counter() - start
                try:
                    got = measure(index, qids, queries)
                finally:
                    index.close()
                top = {q: sorted(hits, key=lambda d: -hits[d])[:10] for q, hits in got.pop("run").items()}
                if not reference:
                    reference = top  # faiss flat, measured first: the exact answer
                run = {q: {d: float(10 - r) for r, d in enumerate(ids)} for q, ids in top.items()}
                rows.append(
                    {
                        "backend": backend,
                        "kind": kind,
                        "ndcg10": evaluate_run(dataset.qrels, run).ndcg_at_10,
                        "top10_overlap_with_faiss_flat": float(
                            np.mean([len(set(top[q]) & set(reference[q])) / 10 for q in qids])
                        ),
                        "build_s": build_s,
                        **got,
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    results = {"machine": machine(), "concurrent": args.concurrent, "documents": len(docs), "queries": len(qids)}
    results["rows"] = rows
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "milvus.json", results)
    write_markdown(results, args.out / "milvus.md")


def write_markdown(results: dict[str, Any], path: Path) -> None:
    import pymilvus

    lines = [
        "# Milvus against faiss: the same index, another vector backend (SciFact test)",
        "",
        f"Machine: {results['machine']}; pymilvus {pymilvus.__version__} with Milvus Lite. "
        f"Ran beside: {results['concurrent']}.",
        "",
        f"{results['documents']} documents (the teacher's precomputed vectors, one chunk each), "
        f"{results['queries']} test queries embedded by the teacher. Latency is one query at k=10 through "
        "`Index.search` (vector search, chunk grouping and the document-store lookup), 3 passes.",
        "",
    ]
    flat = next(r for r in results["rows"] if r["backend"] == "faiss" and r["kind"] == "flat")
    lines += markdown_table(
        ["backend", "kind", "nDCG@10", "Δ vs faiss flat", "top-10 overlap with faiss flat", "p50 ms", "p99 ms"]
        + ["build s"],
        (
            [r["backend"], r["kind"], f"{r['ndcg10']:.4f}", f"{r['ndcg10'] - flat['ndcg10']:+.4f}"]
            + [f"{r['top10_overlap_with_faiss_flat']:.3f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}"]
            + [f"{r['build_s']:.1f}"]
            for r in results["rows"]
        ),
    )
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    run_main(main)
