"""/v1/embeddings under load with one server process or several (``embedkd serve --workers N``).

    python -m benchmarks.serving_processes --student STUDENT [--workers 1,2] [--clients 8,32] [--repeats 3]

One short query per request, wrk with one thread pinned to one core, ``--seconds`` per run; the settings
alternate, ``--repeats`` times, because runs on a shared 2-core machine drift. Each server is the real
``embedkd serve`` (teacher loaded, so document writes work): with ``--workers N`` it starts N uvicorn worker
processes on one port, each with its own models and micro-batcher and ``OMP_NUM_THREADS`` = cores / N.
``/metrics`` adds every worker's values up, which gives the effective batch and the model's busy share.
The in-process column encodes the same queries with ``encode`` at that batch, with both cores and nothing
beside it, on the same backend.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks._report import machine, markdown_table, run_main, save_results
from benchmarks.load import PIN_LOADGEN, SHORT_QUERIES, forward_passes, inprocess_throughput, wrk_post
from embedkd.data.documents import Document
from embedkd.distill.teacher import Teacher
from embedkd.index import build_index
from embedkd.models.encoder import Encoder
from embedkd.testing import LiveServer, free_port


def wait_for_workers(url: str, workers: int, timeout_s: float = 300) -> None:
    """Until ``workers`` distinct processes have answered /ready (one answer proves only one)."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=url, timeout=10, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        while workers > 1 and len(seen) < workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(seen)} of {workers} workers became ready")
            ready = client.get("/ready")
            if ready.status_code == 200:
                seen.add(ready.json()["worker_pid"])
            time.sleep(0.05)


def run(server: LiveServer, bodies: list[dict[str, Any]], clients: int, seconds: int, workers: int) -> dict[str, Any]:
    before = httpx.get(f"{server.url}/metrics").text
    load = wrk_post(server.url, "/v1/embeddings", bodies, seconds, clients)
    after = httpx.get(f"{server.url}/metrics").text
    load.pop("raw")
    texts, passes, busy = forward_passes(before, after)
    return {
        **load,
        "effective batch": round(texts / passes, 1),
        "model busy": busy / (seconds * workers),  # per worker: the share of the run in forward passes
        "forward ms": 1000 * busy / passes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", type=Path, required=True)
    parser.add_argument("--workers", default="1,2", help="Server processes to compare, comma-separated.")
    parser.add_argument("--clients", default="32", help="Concurrent clients (wrk connections), comma-separated.")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=3, help="Rounds; the settings alternate within each.")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", default="serving_processes")
    parser.add_argument("--concurrent", default="nothing else")
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    clients = [int(c) for c in args.clients.split(",")]
    bodies = [{"input": q, "model": "student"} for q in SHORT_QUERIES]
    results: dict[str, Any] = {
        "machine": machine(),
        "concurrent": args.concurrent,
        "student": str(args.student),
        "backend": args.backend,
        "seconds": args.seconds,
        "load_generator": "wrk, 1 thread pinned to CPU 0 (taskset)" if PIN_LOADGEN else "wrk, 1 thread (no taskset)",
        "rows": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        teacher = Teacher.from_model("mpnet-base")
        docs = [Document(id=f"d{i}", text=q) for i, q in enumerate(SHORT_QUERIES)]
        build_index(root / "index", docs, teacher=teacher.ref, embed=teacher.encode_document, progress=False).close()
        for round_ in range(1, args.repeats + 1):
            order = workers if round_ % 2 else workers[::-1]
            for w in order:
                extra = ["--backend", args.backend, "--workers", str(w)]
                server = LiveServer(root / "index", args.student, free_port(), extra=extra)
                try:
                    wait_for_workers(server.url, w)
                    wrk_post(server.url, "/v1/embeddings", bodies, 3, max(clients))  # warm every worker
                    for n in clients:
                        row = {"round": round_, "workers": w, **run(server, bodies, n, args.seconds, w)}
                        results["rows"].append(row)
                        print(json.dumps(row), flush=True)
                finally:
                    server.stop()
    encoder = Encoder.load(args.student, device="cpu", backend=args.backend)
    batches = sorted({max(1, round(r["effective batch"])) for r in results["rows"]} | {32})
    results["in_process"] = {str(b): inprocess_throughput(encoder, b) for b in batches}
    for row in results["rows"]:
        row["in-process texts/s"] = results["in_process"][str(max(1, round(row["effective batch"])))]
    save_results(results, args.out, args.name, write_markdown)


def write_markdown(results: dict[str, Any], path: Path) -> None:
    rows = results["rows"]
    best = max(results["in_process"].values())
    lines = [
        "# Server processes: /v1/embeddings with `embedkd serve --workers N`",
        "",
        f"Machine: {results['machine']}. Ran beside: {results['concurrent']}. Load generator: "
        f"{results['load_generator']}; one short query per request, {results['seconds']} s per run; server and "
        f"load generator share the machine. Student `{results['student']}` on {results['backend']}. "
        "Each worker runs with `OMP_NUM_THREADS` = cores / workers. In-process: `encode` at the run's effective "
        f"batch, both cores, nothing beside it; the best in-process rate at any batch measured is {best:.0f} "
        "texts/s (the last column divides by it).",
        "",
    ]
    lines += markdown_table(
        ["round", "workers", "clients", "req/s", "p50 ms", "p99 ms", "effective batch", "model busy", "forward ms",
         "in-process texts/s at that batch", "ratio", "ratio to the best in-process"],
        [
            [r["round"], r["workers"], r["connections"], f"{r['requests/s']:.0f}", f"{r['p50 ms']:.1f}",
             f"{r['p99 ms']:.1f}", r["effective batch"], f"{r['model busy']:.0%}", f"{r['forward ms']:.1f}",
             f"{r['in-process texts/s']:.0f}", f"{r['requests/s'] / r['in-process texts/s']:.2f}",
             f"{r['requests/s'] / best:.2f}"]
            for r in rows
        ],
    )  # fmt: skip
    lines += ["", "## Means over the rounds", ""]
    summary = []
    for w in sorted({r["workers"] for r in rows}):
        for n in sorted({r["connections"] for r in rows}):
            mine = [r for r in rows if r["workers"] == w and r["connections"] == n]
            if not mine:
                continue
            summary.append(
                [w, n, len(mine), f"{statistics.mean(r['requests/s'] for r in mine):.0f}",
                 f"{statistics.mean(r['p50 ms'] for r in mine):.1f}",
                 f"{statistics.mean(r['p99 ms'] for r in mine):.1f}",
                 f"{statistics.mean(r['requests/s'] / r['in-process texts/s'] for r in mine):.2f}",
                 f"{statistics.mean(r['requests/s'] for r in mine) / best:.2f}"]
            )  # fmt: skip
    lines += markdown_table(
        ["workers", "clients", "runs", "req/s", "p50 ms", "p99 ms", "ratio (at the run's batch)", "ratio to the best"],
        summary,
    )
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    run_main(main)
