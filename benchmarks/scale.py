"""Teacher encoding at scale: Ray Data with 1 and 2 CPU workers against one process, and projections.

    python -m benchmarks.scale [--docs 200] [--gpu-docs-per-s N]

The same SciFact abstracts, chunked as an index chunks them, are encoded by the teacher (fp32, no cache):
in this process, then by ``encode --engine ray`` with one actor on both CPUs and with two actors on one CPU
each (shards written, as a real run). The projection to 10M and 100M documents scales the measured
docs/s; for GPUs it uses ``--gpu-docs-per-s`` (per GPU), stated as an assumption unless measured.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._report import machine, markdown_table, run_main
from embedkd.data import load_beir
from embedkd.data.documents import Document
from embedkd.distill.teacher import Teacher
from embedkd.index.shards import chunk_for_index
from embedkd.models.encoder import Encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--beir", type=Path, default=Path("../shared/data/beir/scifact"))
    parser.add_argument("--teacher", default="mpnet-base")
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--gpu-docs-per-s", type=float, default=None, help="Measured teacher docs/s on one GPU.")
    parser.add_argument("--gpu-source", default="", help="Where --gpu-docs-per-s comes from.")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--concurrent", default="nothing else")
    args = parser.parse_args()
    from embedkd.scale.ray_encode import encode_with_ray

    dataset = load_beir(args.beir, "test")
    docs = [Document(id=i, title=d["title"], text=d["text"]) for i, d in list(dataset.corpus.items())[: args.docs]]
    ref = Teacher.from_model(args.teacher).ref
    chunking = {"enabled": True, "max_tokens": ref.max_seq_length or 512, "overlap": 64}
    texts = [c.encode_text for chunks in chunk_for_index(docs, ref, chunking) for c in chunks]
    rows: list[dict[str, Any]] = []

    encoder = Encoder.load(args.teacher, device="cpu")
    encoder.encode(texts[:8], role="document")  # warm-up
    start = time.perf_counter()
    encoder.encode(texts, role="document", batch_size=32)
    seconds = time.perf_counter() - start
    rows.append({"engine": "one process (2 torch threads)", "seconds": seconds, "docs/s": len(docs) / seconds})
    print(json.dumps(rows[-1]), flush=True)
    del encoder

    for workers, cpus in ((1, 2), (2, 1)):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            stats = encode_with_ray(
                docs, Path(tmp) / "emb", teacher=args.teacher, workers=workers, cpus_per_worker=cpus,
                batch_size=32, shard_size=50, chunking=chunking,
            )  # fmt: skip
            seconds = time.perf_counter() - start
        rows.append(
            {
                "engine": f"ray, {workers} actor(s) x {cpus} CPU",
                "seconds": seconds,
                "docs/s": len(docs) / seconds,
                "chunks": stats["chunks"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
        import ray

        ray.shutdown()
    results = {
        "machine": machine(),
        "concurrent": args.concurrent,
        "documents": len(docs),
        "chunks": len(texts),
        "rows": rows,
        "gpu_docs_per_s": args.gpu_docs_per_s,
        "gpu_source": args.gpu_source,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps(results, indent=2))
    write_markdown(results, args.out / "scale.md")


def _duration(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} h"


def write_markdown(results: dict[str, Any], path: Path) -> None:
    rows = results["rows"]
    lines = [
        "# Teacher encoding at scale: Ray Data against one process",
        "",
        f"Machine: {results['machine']}. Ran beside: {results['concurrent']}.",
        "",
        f"{results['documents']} SciFact abstracts ({results['chunks']} chunks as an index makes them), teacher "
        "all-mpnet-base-v2 in fp32, no cache; Ray times include starting the actors and writing the shards.",
        "",
    ]
    lines += markdown_table(
        ["engine", "seconds", "docs/s"], [[r["engine"], f"{r['seconds']:.1f}", f"{r['docs/s']:.2f}"] for r in rows]
    )
    best = max(rows, key=lambda r: r["docs/s"])
    lines += ["", "## Projection", ""]
    projection = [[f"this CPU ({best['engine']})", f"{best['docs/s']:.2f}"] + [
        _duration(n / best["docs/s"]) for n in (10_000_000, 100_000_000)
    ]]  # fmt: skip
    gpu = results.get("gpu_docs_per_s")
    if gpu:
        for n_gpu in (1, 8, 64):
            projection.append(
                [f"{n_gpu} GPU(s), {gpu:.0f} docs/s each", f"{gpu * n_gpu:.0f}"]
                + [_duration(n / (gpu * n_gpu)) for n in (10_000_000, 100_000_000)]
            )
    lines += markdown_table(["where", "docs/s", "10M documents", "100M documents"], projection)
    lines += [
        "",
        "Assumptions: throughput scales linearly with actors (one actor per GPU; Ray Data streams the shards, "
        "so the driver is not the bottleneck at these rates); SciFact-length documents (about 1.2 chunks each).",
    ]
    if gpu:
        lines.append(f"GPU throughput: {results.get('gpu_source') or 'an assumption, not measured here'}.")
    else:
        lines.append("No GPU was available: no GPU projection is given rather than an unmeasured one.")
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    run_main(main)
