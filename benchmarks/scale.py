"""Teacher encoding at scale: Ray Data with 1 and 2 CPU workers against one process, and projections.

    python -m benchmarks.scale [--docs 200] [--gpu-docs-per-s N]
    python -m benchmarks.scale --report-only     # rewrite scale.md from scale.json (new assumptions)

The same SciFact abstracts, chunked as an index chunks them, are encoded by the teacher (fp32, no cache):
in this process, then by ``encode --engine ray`` with one actor on both CPUs and with two actors on one CPU
each (shards written, as a real run). The projection to 10M and 100M documents scales the measured
docs/s; for GPUs it uses ``--gpu-docs-per-s`` (per GPU) where one was measured, and otherwise an estimate
from first principles, labelled as such: the teacher's forward FLOPs per document (from its parameter count
and the measured tokens per chunk) against each GPU's dense bf16 peak at an assumed utilisation, checked
against the utilisation this CPU run actually reached.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._report import machine, markdown_table, run_main, write_json
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
    parser.add_argument("--report-only", action="store_true", help="Rewrite scale.md from scale.json.")
    args = parser.parse_args()
    if args.report_only:
        results = json.loads((args.out / "scale.json").read_text())
        if "tokens" not in results:
            results.update(_token_facts(args.beir, args.teacher, results["documents"]))
            write_json(args.out / "scale.json", results)
        write_markdown(results, args.out / "scale.md")
        return
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
        **_token_facts(args.beir, args.teacher, len(docs)),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "scale.json", results)
    write_markdown(results, args.out / "scale.md")


# Dense bf16 tensor-core peaks from the vendors' datasheets (FLOP/s, without sparsity).
GPU_PEAKS = {"A100": 312e12, "H100 SXM": 989e12}
ASSUMED_UTILISATION = 0.35  # of peak, for batched encoder inference of ~300-token chunks (an assumption)
ASSUMED_USD_PER_GPU_HOUR = {"A100": 1.5, "H100 SXM": 3.0}  # on-demand cloud ballparks (an assumption)


def _token_facts(beir: Path, teacher: str, n_docs: int) -> dict[str, Any]:
    """Tokens per chunk of the documents the run encoded, and the teacher's non-embedding parameters."""
    dataset = load_beir(beir, "test")
    docs = [Document(id=i, title=d["title"], text=d["text"]) for i, d in list(dataset.corpus.items())[:n_docs]]
    encoder = Encoder.load(teacher, device="cpu")
    ref = Teacher.from_model(teacher).ref
    chunking = {"enabled": True, "max_tokens": ref.max_seq_length or 512, "overlap": 64}
    texts = [c.encode_text for chunks in chunk_for_index(docs, ref, chunking) for c in chunks]
    limit = ref.max_seq_length or 10**9
    tokens = [min(n, limit) for n in encoder.token_counts(texts, role="document")]  # the model truncates there
    model: Any = encoder.model[0].auto_model
    embedding = sum(p.numel() for p in model.get_input_embeddings().parameters())
    config = model.config
    return {
        "tokens": int(sum(tokens)),
        "mean_chunk_tokens": float(sum(tokens) / len(tokens)),
        "teacher_params_non_embedding": int(sum(p.numel() for p in model.parameters()) - embedding),
        "teacher_layers": int(config.num_hidden_layers),
        "teacher_hidden": int(config.hidden_size),
    }


def flops_per_document(results: dict[str, Any]) -> float:
    """Forward FLOPs: 2 per weight per token, plus attention's 4 x layers x hidden x chunk length per token."""
    per_token = 2 * results["teacher_params_non_embedding"] + (
        4 * results["teacher_layers"] * results["teacher_hidden"] * results["mean_chunk_tokens"]
    )
    return float(per_token * results["tokens"] / results["documents"])


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
        "so the driver is not the bottleneck at these rates); SciFact-length documents (about "
        f"{results['chunks'] / results['documents']:.2f} chunks each).",
    ]
    if gpu:
        lines.append(f"GPU throughput: {results.get('gpu_source') or 'an assumption, not measured here'}.")
    if "tokens" in results:
        flops = flops_per_document(results)
        cpu_flops = best["docs/s"] * flops
        lines += [
            "",
            "## GPU estimate (not measured: no GPU was available)",
            "",
            f"The teacher spends about {flops / 1e9:.0f} GFLOP per document here ({results['mean_chunk_tokens']:.0f} "
            f"tokens per chunk, {results['teacher_params_non_embedding'] / 1e6:.0f}M non-embedding weights). This "
            f"CPU's best run therefore sustained {cpu_flops / 1e9:.0f} GFLOP/s in fp32. For GPUs the table assumes "
            f"{ASSUMED_UTILISATION:.0%} of the dense bf16 peak (datasheet) and on-demand prices; both are "
            "assumptions, so treat the rows as a planning estimate to replace with a measured "
            "`--gpu-docs-per-s`.",
            "",
        ]
        estimate = []
        for name, peak in GPU_PEAKS.items():
            rate = peak * ASSUMED_UTILISATION / flops
            price = ASSUMED_USD_PER_GPU_HOUR[name]
            for n_gpu in (1, 8):
                row = [f"{n_gpu} x {name} (${price:.2f}/GPU-h)", f"{rate * n_gpu:,.0f}"]
                for n_docs in (10_000_000, 100_000_000):
                    hours = n_docs / rate / 3600  # GPU-hours: the cost does not depend on how many GPUs
                    row.append(f"{_duration(n_docs / (rate * n_gpu))}, ${hours * price:,.0f}")
                estimate.append(row)
        lines += markdown_table(["where", "docs/s", "10M documents (time, cost)", "100M documents"], estimate)
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    run_main(main)
