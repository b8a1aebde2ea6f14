"""CPU inference backends: latency, throughput and quality of each model on each backend.

    python -m benchmarks.backends --student "default student=PATH" [--student "NAME=PATH" ...]
    python -m benchmarks.backends --student "2 teacher layers=PATH" --timing-only "MiniLM-L6=minilm-l6" \
        --variants "torch fp32,openvino" --name layers       # a subset, written to backends_layers.{md,json}

For the teacher and each student, on torch fp32, torch bf16 (where the CPU has native bf16), ONNX Runtime,
ONNX int8, OpenVINO and OpenVINO int8 (where they install): batch-1 p50/p99 latency of one short query,
batch-64 texts/s, asymmetric nDCG@10 on SciFact test against the same fp32 teacher document vectors, and
the mean cosine to the model's own torch fp32 output. A ``--timing-only`` model (an untrained layer cut, or a
base whose vectors are not in the teacher's space) is timed, and gets no nDCG@10. The teacher/student speed
ratio is reported on matched backends. Run it on an otherwise idle machine: every number is a wall-clock time.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import labelled, machine, markdown_table, run_main, write_json
from embedkd.data import load_beir
from embedkd.device import native_bf16
from embedkd.distill.teacher import Teacher, read_aligned_texts
from embedkd.errors import InputError
from embedkd.evaluation import score_retrieval
from embedkd.models.encoder import Encoder

VARIANTS = [
    ("torch", "fp32", "none"),
    ("torch", "bf16", "none"),
    ("onnx", "fp32", "none"),
    ("onnx", "fp32", "int8"),
    ("openvino", "fp32", "none"),
    ("openvino", "fp32", "int8"),
]
LATENCY_QUERIES = 200


def label(backend: str, precision: str, quantize: str) -> str:
    if backend == "torch":
        return f"torch {precision}"
    return backend if quantize == "none" else f"{backend} {quantize}"


def timings(encoder: Encoder, queries: list[str]) -> dict[str, float]:
    encoder.encode_query(queries[:16], batch_size=16)  # warm-up
    times = []
    for q in queries[:LATENCY_QUERIES]:
        start = time.perf_counter()
        encoder.encode_query([q], batch_size=1)
        times.append(time.perf_counter() - start)
    batch = (queries * (1024 // len(queries) + 1))[:1024]
    start = time.perf_counter()
    encoder.encode_query(batch, batch_size=64)
    return {
        "b1 p50 ms": float(np.percentile(times, 50) * 1000),
        "b1 p99 ms": float(np.percentile(times, 99) * 1000),
        "b64 texts/s": len(batch) / (time.perf_counter() - start),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--beir", type=Path, default=Path("../shared/data/beir/scifact"))
    parser.add_argument("--precomputed", type=Path, default=Path("../shared/data/embeddings/scifact-mpnet-base"))
    parser.add_argument("--teacher", default="mpnet-base")
    parser.add_argument(
        "--student",
        action="append",
        required=True,
        help="NAME=PATH of a student (repeatable); the first is the default.",
    )
    parser.add_argument(
        "--timing-only",
        action="append",
        default=[],
        help="NAME=PATH of a model that is timed but not scored (not aligned to the teacher); repeatable.",
    )
    parser.add_argument(
        "--variants",
        default="",
        help="Comma-separated backends to measure (e.g. 'torch fp32,openvino'); default: all of them.",
    )
    parser.add_argument("--name", default="", help="Write backends_NAME.{md,json} instead of backends.{md,json}.")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--concurrent", default="nothing else")
    args = parser.parse_args()
    scored, timing = labelled(args.student), labelled(args.timing_only, option="--timing-only")
    models = {"teacher": args.teacher}
    for name, path in scored + timing:
        if name in models:
            raise InputError(f"label {name!r} is given twice (or is the teacher's); label each model once")
        models[name] = path
    timing_only = {name for name, _ in timing}
    results_default = scored[0][0]
    wanted = {v.strip() for v in args.variants.split(",") if v.strip()}
    unknown = wanted - {label(*v) for v in VARIANTS}
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {[label(*v) for v in VARIANTS]}")

    test = load_beir(args.beir, "test")
    dev = load_beir(args.beir, "train")
    queries = list(test.queries.values())
    timing_queries = list(dev.queries.values())  # short claims, never the scored ones
    teacher_source = Teacher.from_model(args.teacher)
    corpus = args.precomputed / "corpus.f16.npy"
    if corpus.is_file():
        teacher_source.import_embeddings(read_aligned_texts(args.beir, corpus), corpus)
    docs = teacher_source.embeddings(test.doc_texts(), role="document")

    rows: list[dict[str, Any]] = []
    for model_label, path in models.items():
        reference: np.ndarray | None = None
        for backend, precision, quantize in VARIANTS:
            if backend == "torch" and precision == "bf16" and not native_bf16("cpu"):
                continue
            name = label(backend, precision, quantize)
            if wanted and name not in wanted:
                continue
            try:
                encoder = Encoder.load(path, device="cpu", precision=precision, backend=backend, quantize=quantize)
            except Exception as exc:  # a backend that does not install or export here is reported, not fatal
                rows.append({"model": model_label, "backend": name, "error": f"{type(exc).__name__}: {exc}"})
                print(json.dumps(rows[-1]), flush=True)
                continue
            vectors = encoder.encode_query(queries, batch_size=64)
            if reference is None:
                reference = vectors
            row = {
                "model": model_label,
                "backend": name,
                **timings(encoder, timing_queries),
                "ndcg@10": None if model_label in timing_only else score_retrieval(test, vectors, docs).ndcg_at_10,
                "cosine to fp32": float((vectors * reference).sum(axis=1).mean()),
                "parameters": encoder.parameters(),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
            del encoder
    results = {"machine": machine(), "concurrent": args.concurrent, "rows": rows, "default": results_default}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"backends_{args.name}" if args.name else "backends"
    write_json(args.out / f"{stem}.json", results)
    write_markdown(results, args.out / f"{stem}.md")


def write_markdown(results: dict[str, Any], path: Path) -> None:
    rows = [r for r in results["rows"] if "error" not in r]
    lines = [
        "# Inference backends on CPU",
        "",
        f"Machine: {results['machine']}. Ran beside: {results['concurrent']}.",
        "",
        "Batch-1 latency: one short SciFact claim (dev split) at a time, 200 of them. Batch-64: 1,024 claims. "
        "nDCG@10: SciFact test queries against the same fp32 teacher document vectors (asymmetric for the "
        "students). Cosine: mean cosine of the 300 test-query vectors to the model's own torch fp32 output.",
        "",
    ]
    lines += markdown_table(
        ["model", "backend", "b1 p50 ms", "b1 p99 ms", "b64 texts/s", "nDCG@10", "cosine to fp32"],
        (
            [r["model"], r["backend"], f"{r['b1 p50 ms']:.1f}", f"{r['b1 p99 ms']:.1f}", f"{r['b64 texts/s']:.0f}"]
            + [f"{r['ndcg@10']:.4f}" if r["ndcg@10"] is not None else "–", f"{r['cosine to fp32']:.5f}"]
            for r in rows
        ),
    )
    failed = [r for r in results["rows"] if "error" in r]
    if failed:
        lines += ["", "Not measured:", ""] + [f"- {r['model']} on {r['backend']}: {r['error']}" for r in failed]
    # matched backends: the teacher/student ratio never compares a fast student with a slow teacher
    by = {(r["model"], r["backend"]): r for r in rows}
    ratios = []
    for (model, backend), r in sorted(by.items()):
        teacher = by.get(("teacher", backend))
        if model != "teacher" and teacher is not None:
            ratios.append(
                [
                    model,
                    backend,
                    f"{teacher['b1 p50 ms'] / r['b1 p50 ms']:.1f}x",
                    f"{r['b64 texts/s'] / teacher['b64 texts/s']:.1f}x",
                ]
            )
    if ratios:
        lines += ["", "## Teacher / student speed on the same backend", ""]
        lines += markdown_table(["student", "backend", "batch-1 latency ratio", "batch-64 throughput ratio"], ratios)
    default = results.get("default", "student L6")
    fastest = _fastest_within(rows, default, 0.003)
    if fastest is not None:
        base = by[(default, "torch fp32")]
        lines += [
            "",
            f"Fastest {default} backend within 0.003 nDCG@10 of torch fp32: **{fastest['backend']}**, batch-1 p50 "
            f"{fastest['b1 p50 ms']:.1f} ms against {base['b1 p50 ms']:.1f} ms "
            f"({base['b1 p50 ms'] / fastest['b1 p50 ms']:.2f}x lower), nDCG@10 {fastest['ndcg@10']:.4f} against "
            f"{base['ndcg@10']:.4f}.",
        ]
    path.write_text("\n".join(lines) + "\n")


def _fastest_within(rows: list[dict[str, Any]], model: str, tolerance: float) -> dict[str, Any] | None:
    mine = [r for r in rows if r["model"] == model]
    base = next((r for r in mine if r["backend"] == "torch fp32"), None)
    if base is None:
        return None
    ok = [r for r in mine if base["ndcg@10"] - r["ndcg@10"] <= tolerance]  # the default is always scored
    return min(ok, key=lambda r: r["b1 p50 ms"]) if ok else None


if __name__ == "__main__":
    run_main(main)
