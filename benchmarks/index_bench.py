"""Index benchmark: exactness, recall@10 against flat, latency, memory and build throughput.

    python benchmarks/index_bench.py --beir ../shared/data/beir/scifact [--synthetic 1000000] [--out benchmarks/results]

Parts:
1. SciFact (5,183 documents, teacher embeddings from the shared cache): flat search against numpy exact
   search (top-100 identical?), then every index type at its defaults: recall@10 against flat, search
   latency p50/p99 for one query (k=10), memory, build time.
2. Synthetic N x 768 (default 1M): vectors drawn around real teacher document vectors (so the clusters
   look like real embeddings), queried with the real SciFact test-query embeddings; CPU types only.
3. Build throughput: ``Index`` build (chunking, store, faiss) against raw teacher ``encode`` on the same
   documents, both from a cold cache, to measure the index layer's overhead.
4. Footprint on disk (``--footprint``): a real index folder of every type over SciFact, its bytes split
   into the faiss file, the float16 vector store that every type keeps (exact rescoring, upserts, rebuilds)
   and the SQLite document store (texts and metadata).
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
from embedkd.distill.teacher import Teacher
from embedkd.index import FaissIndex, IndexParams, build_index
from embedkd.index.exact import exact_search

KINDS = ["flat", "hnsw", "ivf-flat", "ivf-pq", "sq8", "binary"]


def latency(index: FaissIndex, queries: np.ndarray, rescore: Any, repeats: int = 3) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        for q in queries:
            start = time.perf_counter()
            index.search(q[None, :], 10, rescore=rescore)
            times.append(time.perf_counter() - start)
    return float(np.percentile(times, 50) * 1000), float(np.percentile(times, 99) * 1000)


def recall_at_10(ids: np.ndarray, reference: np.ndarray) -> float:
    return float(np.mean([len(set(a[:10]) & set(b[:10])) / 10 for a, b in zip(ids, reference, strict=True)]))


def params_for(kind: str) -> IndexParams:
    return IndexParams(kind=kind)  # type: ignore[arg-type]  # the defaults are what is measured


def bench_types(docs: np.ndarray, queries: np.ndarray, kinds: list[str], label: str) -> list[dict[str, Any]]:
    ids = np.arange(len(docs), dtype=np.int64)
    rescore = lambda chunk_ids: docs[chunk_ids]  # noqa: E731 - exact vectors, as the doc store provides
    flat = FaissIndex(docs.shape[1], params_for("flat"))
    flat.build(docs, ids)
    _, reference = flat.search(queries, 10)
    rows = []
    for kind in kinds:
        index = FaissIndex(docs.shape[1], params_for(kind))
        start = time.perf_counter()
        index.build(docs, ids)
        build_s = time.perf_counter() - start
        _, found = index.search(queries, 10, rescore=rescore)
        p50, p99 = latency(index, queries[:100], rescore)
        rows.append(
            {
                "set": label,
                "type": kind,
                "recall@10 vs flat": recall_at_10(found, reference),
                "p50 ms": p50,
                "p99 ms": p99,
                "memory MiB": index.memory_bytes() / 2**20,
                "build s": build_s,
                "params": {k: v for k, v in index.params.to_dict().items() if k != "extra"},
            }
        )
        print(json.dumps(rows[-1]), flush=True)
        del index
    return rows


def synthetic(real: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` unit vectors scattered around real document vectors (cosine to their centre about 0.8)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, real.shape[1]), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        centres = real[rng.integers(0, len(real), stop - start)]
        noise = rng.standard_normal((stop - start, real.shape[1]), dtype=np.float32) * (0.75 / np.sqrt(real.shape[1]))
        block = centres + noise
        out[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def build_throughput(beir: Path, teacher_name: str, n_docs: int) -> dict[str, Any]:
    """Index build vs raw teacher encode on the same documents, each from an empty cache."""
    dataset = load_beir(beir, "test")
    items = list(dataset.corpus.items())[:n_docs]
    docs = [Document(id=i, title=d["title"], text=d["text"]) for i, d in items]
    texts = [f"{d.title} {d.text}".strip() for d in docs]
    teacher = Teacher.from_model(teacher_name)
    encoder = teacher.encoder()
    encoder.encode(texts[:8])  # warm-up
    start = time.perf_counter()
    encoder.encode_document(texts, batch_size=32)
    raw_s = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        cold = Teacher.from_encoder(encoder, cache_root=Path(tmp) / "cache")  # same weights, empty cache
        start = time.perf_counter()
        index = build_index(
            Path(tmp) / "index",
            docs,
            teacher=cold.ref,
            embed=lambda t: cold.embeddings(t, batch_size=32, progress=False),
            chunking=False,
            progress=False,
        )
        build_s = time.perf_counter() - start
        index.close()
    return {
        "documents": len(docs),
        "raw encode s": raw_s,
        "index build s": build_s,
        "raw docs/s": len(docs) / raw_s,
        "build docs/s": len(docs) / build_s,
        "overhead %": 100 * (build_s - raw_s) / raw_s,
    }


def footprint(beir: Path, teacher: Teacher, docs: np.ndarray) -> list[dict[str, Any]]:
    """On-disk bytes of a real index folder of each type, by file role (no chunking: one vector per doc)."""
    dataset = load_beir(beir, "test")
    documents = [
        Document(id=doc_id, title=doc.get("title", ""), text=doc.get("text", ""))
        for doc_id, doc in dataset.corpus.items()
    ]
    vectors = {doc.id: docs[i] for i, doc in enumerate(documents)}
    by_text: dict[str, np.ndarray] = {}
    for doc in documents:
        by_text[f"{doc.title} {doc.text}".strip()] = vectors[doc.id]
        by_text[doc.text] = vectors[doc.id]

    def embed(texts: list[str]) -> np.ndarray:
        return np.stack([by_text[t.strip()] for t in texts])

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in KINDS:
            folder = Path(tmp) / kind
            index = build_index(
                folder,
                documents,
                teacher=teacher.ref,
                embed=embed,
                params=params_for(kind),
                chunking=False,
                progress=False,
            )
            faiss_ram = index.info()["memory_bytes"]
            index.close()
            sizes: dict[str, int] = {"faiss": 0, "vectors": 0, "documents": 0, "other": 0}
            for file in folder.rglob("*"):
                if not file.is_file():
                    continue
                name = file.name
                role = (
                    "faiss"
                    if name.endswith(".faiss")
                    else "vectors"
                    if "vector" in name or name.endswith(".npy")
                    else "documents"
                    if ".sqlite" in name or name.endswith(".db") or "-wal" in name
                    else "other"
                )
                sizes[role] += file.stat().st_size
            rows.append(
                {
                    "type": kind,
                    "documents": len(documents),
                    "faiss RAM MiB": faiss_ram / 2**20,
                    **{f"{role} MiB": size / 2**20 for role, size in sizes.items()},
                    "total MiB": sum(sizes.values()) / 2**20,
                    "files": sorted(str(f.relative_to(folder)) for f in folder.rglob("*") if f.is_file()),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--beir", type=Path, default=Path("../shared/data/beir/scifact"))
    parser.add_argument("--teacher", default="mpnet-base")
    parser.add_argument("--synthetic", type=int, default=1_000_000)
    parser.add_argument("--synthetic-kinds", default=",".join(KINDS))
    parser.add_argument("--throughput-docs", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument(
        "--add-synthetic",
        action="store_true",
        help="Only run the synthetic set for --synthetic-kinds and merge its rows into an existing index.json.",
    )
    parser.add_argument(
        "--footprint", action="store_true", help="Only measure each type's folder on disk; merge into index.json."
    )
    args = parser.parse_args()

    dataset = load_beir(args.beir, "test")
    teacher = Teacher.from_model(args.teacher)
    docs = teacher.embeddings(dataset.doc_texts(), role="document")
    queries = teacher.embeddings(list(dataset.queries.values()), role="query")
    if args.footprint:
        earlier = json.loads((args.out / "index.json").read_text())
        earlier["footprint"] = footprint(args.beir, teacher, docs)
        earlier["footprint_machine"] = machine()
        write_json(args.out / "index.json", earlier)
        write_markdown(earlier, args.out / "index.md")
        return
    if args.add_synthetic:
        earlier = json.loads((args.out / "index.json").read_text())
        kinds = [k for k in args.synthetic_kinds.split(",") if k]
        big = synthetic(docs, args.synthetic)
        rows = bench_types(big, queries, kinds, f"synthetic {args.synthetic // 1000}k x 768")
        kept = [r for r in earlier.get("synthetic", []) if r["type"] not in kinds]
        earlier["synthetic"] = sorted(kept + rows, key=lambda r: KINDS.index(r["type"]))
        write_json(args.out / "index.json", earlier)
        write_markdown(earlier, args.out / "index.md")
        return
    results: dict[str, Any] = {"machine": machine()}

    # 1. exactness of flat against numpy on SciFact
    flat = FaissIndex(docs.shape[1])
    flat.build(docs, np.arange(len(docs)))
    _, flat_ids = flat.search(queries, 100)
    unit_docs = docs / np.linalg.norm(docs, axis=1, keepdims=True)
    unit_queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    numpy_ids = np.argsort(-(unit_queries @ unit_docs.T), axis=1, kind="stable")[:, :100]
    torch_scores, torch_ids = exact_search(unit_queries, unit_docs, 100)
    results["flat_vs_numpy"] = {
        "queries": len(queries),
        "identical top-100 lists": int(sum(np.array_equal(a, b) for a, b in zip(flat_ids, numpy_ids, strict=True))),
        "identical top-100 sets": int(sum(set(a) == set(b) for a, b in zip(flat_ids, numpy_ids, strict=True))),
        "torch exact identical lists": int(
            sum(np.array_equal(a, b) for a, b in zip(torch_ids, numpy_ids, strict=True))
        ),
    }
    print(json.dumps(results["flat_vs_numpy"]), flush=True)

    results["scifact"] = bench_types(docs, queries, KINDS, "scifact 5k")
    if args.throughput_docs:
        results["build_throughput"] = build_throughput(args.beir, args.teacher, args.throughput_docs)
        print(json.dumps(results["build_throughput"]), flush=True)
    if args.synthetic:
        big = synthetic(docs, args.synthetic)
        kinds = [k for k in args.synthetic_kinds.split(",") if k]
        results["synthetic"] = bench_types(big, queries, kinds, f"synthetic {args.synthetic // 1000}k x 768")
        del big

    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "index.json", results)
    write_markdown(results, args.out / "index.md")


def write_markdown(results: dict[str, Any], path: Path) -> None:
    lines = ["# Index benchmark", "", f"Machine: {results['machine']}.", ""]
    exact = results["flat_vs_numpy"]
    lines += [
        "## Flat search against numpy exact search (SciFact test queries, teacher vectors, top-100)",
        "",
        f"- identical ranked top-100 lists: {exact['identical top-100 lists']} / {exact['queries']}",
        f"- identical top-100 sets: {exact['identical top-100 sets']} / {exact['queries']}",
        f"- torch exact search (the GPU path, run on CPU) identical lists: "
        f"{exact['torch exact identical lists']} / {exact['queries']}",
        "",
    ]
    for key, title in (("scifact", "SciFact, 5,183 documents"), ("synthetic", "Synthetic")):
        if key not in results:
            continue
        lines += [f"## {title}", ""]
        lines += markdown_table(
            ["set", "type", "recall@10 vs flat", "p50 ms", "p99 ms", "memory MiB", "build s"],
            (
                [r["set"], r["type"], f"{r['recall@10 vs flat']:.4f}", f"{r['p50 ms']:.3f}", f"{r['p99 ms']:.3f}"]
                + [f"{r['memory MiB']:.1f}", f"{r['build s']:.1f}"]
                for r in results[key]
            ),
        )
        skipped = [k for k in KINDS if k not in {row["type"] for row in results[key]}]
        if skipped:
            lines += ["", f"Not measured on this set (left out with --synthetic-kinds): {', '.join(skipped)}."]
        lines.append("")
    if "build_throughput" in results:
        t = results["build_throughput"]
        lines += [
            "## Build throughput (cold cache, no chunking, batch 32)",
            "",
            f"- raw teacher encode: {t['raw docs/s']:.2f} docs/s ({t['raw encode s']:.1f} s for {t['documents']} docs)",
            f"- index build: {t['build docs/s']:.2f} docs/s ({t['index build s']:.1f} s)",
            f"- index layer overhead: {t['overhead %']:.1f}%",
            "",
        ]
    if "footprint" in results:
        lines += [
            "## Footprint on disk (SciFact, one vector per document)",
            "",
            f"Measured on {results['footprint_machine']}. Every type keeps the float16 vectors beside its faiss",
            "file (exact rescoring of binary and ivf-pq, upserts, rebuilds), so a compressed type shrinks the",
            "RAM-resident faiss structure, not the folder. The `memory MiB` columns above count the faiss",
            "structure only.",
            "",
        ]
        lines += markdown_table(
            ["type", "faiss RAM MiB", "faiss file MiB", "float16 vectors MiB", "documents (SQLite) MiB", "folder MiB"],
            (
                [r["type"], f"{r['faiss RAM MiB']:.1f}", f"{r['faiss MiB']:.1f}", f"{r['vectors MiB']:.1f}"]
                + [f"{r['documents MiB']:.1f}", f"{r['total MiB']:.1f}"]
                for r in results["footprint"]
            ),
        )
        lines.append("")
    lines += [
        "Defaults: hnsw M=32, efConstruction=200, efSearch=128; ivf nlist=min(4*sqrt(n), n/39), nprobe=32;",
        "ivf-pq d/8 sub-quantisers x 8 bits with 10x exact rescoring; sq8 8-bit per dimension; binary 1 bit per",
        "dimension with 10x exact rescoring from the float16 vector store (memory excludes that store, which is",
        "read through the page cache).",
    ]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    run_main(main)
