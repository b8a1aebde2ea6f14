"""/v1/embeddings under load with one server process or several (``embedkd serve --workers N``).

    python -m benchmarks.serving_processes --student STUDENT [--workers 1,2] [--clients 8,32] [--repeats 3]

One short query per request, wrk with one thread pinned to one core, ``--seconds`` per run; the settings
alternate, ``--repeats`` times, because runs on a shared 2-core machine drift. Each server is the real
``embedkd serve`` (teacher loaded, so document writes work): with ``--workers N`` it starts N uvicorn worker
processes on one port, each with its own models and micro-batcher and ``OMP_NUM_THREADS`` = cores / N.
``/metrics`` adds every worker's values up, which gives the effective batch and the model's busy share.
The in-process column encodes the same queries with ``encode`` at that batch, with both cores and nothing
beside it, on the same backend.

With ``--infinity`` (infinity-emb's ``infinity_emb`` in a virtual environment of its own: ``make
.venv-infinity``), each round also loads infinity-emb serving the same student (``/embeddings``, its torch
engine, batch size 32) with the same load generator and payloads, so the peer is measured in the same
alternation as embedkd.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks._report import machine, markdown_table, run_main, save_results
from benchmarks.load import PIN_LOADGEN, SHORT_QUERIES, forward_passes, inprocess_throughput, wrk_post
from benchmarks.serving_peers import infinity_load
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


def infinity_version(binary: str) -> str:
    """``infinity-emb VERSION`` when ``binary`` exists (its venv's python answers), else ""."""
    if not Path(binary).is_file():
        return ""
    python = Path(binary).parent / "python"
    out = subprocess.run(
        [str(python), "-c", "import infinity_emb; print(infinity_emb.__version__)"], capture_output=True, text=True
    )
    return f"infinity-emb {out.stdout.strip() or '(unknown version)'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", type=Path, required=True)
    parser.add_argument("--workers", default="1,2", help="Server processes to compare, comma-separated.")
    parser.add_argument("--clients", default="32", help="Concurrent clients (wrk connections), comma-separated.")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=3, help="Rounds; the settings alternate within each.")
    parser.add_argument("--backend", default="torch")
    parser.add_argument(
        "--infinity",
        default=".venv-infinity/bin/infinity_emb",
        help="infinity-emb's server binary (make .venv-infinity); each round also measures it when it exists.",
    )
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
    peer = infinity_version(args.infinity)
    if peer:
        results["peer"] = peer
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
            if peer:
                loads = infinity_load(args.infinity, args.student, root, bodies, clients, args.seconds, warmup=3)
                results["rows"] += [{"round": round_, "workers": "infinity-emb", **load} for load in loads]
    add_in_process(results, Encoder.load(args.student, device="cpu", backend=args.backend))
    save_results(results, args.out, args.name, write_markdown)


def add_in_process(results: dict[str, Any], encoder: Encoder) -> None:
    """In-process texts/s at each embedkd row's effective batch (and at 32), on the rows and in ``in_process``;
    the peer's rows have no batch of ours and get none."""
    ours = [r for r in results["rows"] if "effective batch" in r]
    batches = sorted({max(1, round(r["effective batch"])) for r in ours} | {32})
    results["in_process"] = {str(b): inprocess_throughput(encoder, b) for b in batches}
    for row in ours:
        row["in-process texts/s"] = results["in_process"][str(max(1, round(row["effective batch"])))]


def write_markdown(results: dict[str, Any], path: Path) -> None:
    rows = results["rows"]
    best = max(results["in_process"].values())
    peer = results.get("peer", "")
    lines = [
        "# Server processes: /v1/embeddings with `embedkd serve --workers N`",
        "",
        f"Machine: {results['machine']}. Ran beside: {results['concurrent']}. Load generator: "
        f"{results['load_generator']}; one short query per request, {results['seconds']} s per run; server and "
        f"load generator share the machine. Student `{results['student']}` on {results['backend']}. "
        "Each worker runs with `OMP_NUM_THREADS` = cores / workers. In-process: `encode` at the run's effective "
        f"batch, both cores, nothing beside it; the best in-process rate at any batch measured is {best:.0f} "
        "texts/s (the last column divides by it)."
        + (
            f" Peer: {peer} serving the same student (copied with sentence-transformers 3.x module names, same "
            "weights) on its torch engine, batch size 32, `/embeddings`, measured in each round after embedkd."
            if peer
            else ""
        ),
        "",
    ]

    def cells(r: dict[str, Any]) -> list[object]:
        if "effective batch" not in r:  # the peer: no metrics of ours
            return [r["round"], r["workers"], r["connections"], f"{r['requests/s']:.0f}", f"{r['p50 ms']:.1f}",
                    f"{r['p99 ms']:.1f}", "", "", "", "", "", ""]  # fmt: skip
        return [r["round"], r["workers"], r["connections"], f"{r['requests/s']:.0f}", f"{r['p50 ms']:.1f}",
                f"{r['p99 ms']:.1f}", r["effective batch"], f"{r['model busy']:.0%}", f"{r['forward ms']:.1f}",
                f"{r['in-process texts/s']:.0f}", f"{r['requests/s'] / r['in-process texts/s']:.2f}",
                f"{r['requests/s'] / best:.2f}"]  # fmt: skip

    lines += markdown_table(
        ["round", "workers", "clients", "req/s", "p50 ms", "p99 ms", "effective batch", "model busy", "forward ms",
         "in-process texts/s at that batch", "ratio", "ratio to the best in-process"],
        [cells(r) for r in rows],
    )  # fmt: skip
    lines += ["", "## Means over the rounds", ""]
    summary = []
    servers = sorted({r["workers"] for r in rows}, key=lambda w: (isinstance(w, str), str(w)))
    for n in sorted({r["connections"] for r in rows}):
        peer_rows = [r for r in rows if r["workers"] == "infinity-emb" and r["connections"] == n]
        peer_rate = statistics.mean(r["requests/s"] for r in peer_rows) if peer_rows else None
        for w in servers:
            mine = [r for r in rows if r["workers"] == w and r["connections"] == n]
            if not mine:
                continue
            rate = statistics.mean(r["requests/s"] for r in mine)
            ours = "effective batch" in mine[0]
            summary.append(
                [w, n, len(mine), f"{rate:.0f}", f"{statistics.mean(r['p50 ms'] for r in mine):.1f}",
                 f"{statistics.mean(r['p99 ms'] for r in mine):.1f}",
                 f"{statistics.mean(r['requests/s'] / r['in-process texts/s'] for r in mine):.2f}" if ours else "",
                 f"{rate / best:.2f}" if ours else "",
                 f"{rate / peer_rate:.2f}x" if ours and peer_rate else ""]
            )  # fmt: skip
    lines += markdown_table(
        ["workers", "clients", "runs", "req/s", "p50 ms", "p99 ms", "ratio (at the run's batch)", "ratio to the best",
         "vs infinity-emb"],
        summary,
    )  # fmt: skip
    if results.get("reading"):
        lines += ["", results["reading"]]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    run_main(main)
