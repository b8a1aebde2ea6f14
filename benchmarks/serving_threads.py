"""Which thread runs the model: the torch server's missing 40%, measured in-process and under load.

    python -m benchmarks.serving_threads --student STUDENT [--before ../before]

1. In-process, one fresh process per cell: the student's forward pass (``embed_tokens``) at batch 1 and
   16, p50 over repeated calls, (a) loaded and run on one worker thread, (b) run on a second thread after
   the main thread has run one torch parallel region (a matmul), as the server did before it had one
   compute thread: libgomp then manages more threads than the machine has CPUs, and stops letting idle
   workers spin between the forward pass's parallel regions.
2. With ``--before DIR`` (a checkout of the code before ``embedkd/service/compute.py``): the torch server's
   ``/v1/embeddings`` at 1, 8 and 32 clients (``benchmarks.serving_peers``), old and new code alternating,
   twice each, so the machine's drift shows in the pairs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._report import machine, markdown_table, run_main, stamp, write_json

CELL = r"""
import json, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
import torch
student, batch, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
QUERIES = ["what causes high blood pressure in older adults", "how do I read a file line by line",
           "best way to learn a new language", "symptoms of vitamin d deficiency"]
def measure():
    from embedkd.models import Encoder
    encoder = Encoder.load(student, device="cpu", backend="torch")
    tokens = encoder.tokenize([QUERIES[i % 4] for i in range(batch)], role="query")
    for _ in range(20):
        encoder.embed_tokens(tokens)
    times = []
    for _ in range(max(40, 400 // batch)):
        start = time.perf_counter()
        encoder.embed_tokens(tokens)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] * 1000
if mode == "second thread":
    (torch.ones(512, 512) @ torch.ones(512, 512)).sum()  # the main thread's own OpenMP team
print(json.dumps({"p50_ms": ThreadPoolExecutor(1).submit(measure).result()}))
"""

MODES = ("one thread", "second thread")


def inprocess(student: Path, batches: list[int], repeats: int) -> list[dict[str, Any]]:
    rows = []
    for batch in batches:
        for _ in range(repeats):
            for mode in MODES:
                out = subprocess.run(
                    [sys.executable, "-c", CELL, str(student), str(batch), mode],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                p50 = json.loads(out.stdout.strip().splitlines()[-1])["p50_ms"]
                rows.append({"batch": batch, "mode": mode, "p50_ms": round(p50, 2)})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def server_runs(
    student: Path, before: Path, clients: str, seconds: int, backend: str = "torch"
) -> list[dict[str, Any]]:
    """``serving_peers`` on one backend, the code in ``before`` and this code alternating (before, after,
    after, before), so the machine's drift shows in the pairs."""
    rows = []
    order = [("before", before), ("after", None), ("after", None), ("before", before)]
    for run, (code, path) in enumerate(order, 1):
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ)
            if path is not None:  # run from the old checkout: `-m` puts the working folder first on sys.path
                env["PYTHONPATH"] = str(path.resolve())
            subprocess.run(
                [sys.executable, "-m", "benchmarks.serving_peers", "--student", str(student), "--backends", backend,
                 "--clients", clients, "--seconds", str(seconds), "--no-profile", "--infinity", "none", "--out", tmp],
                check=True, env=env, cwd=path.resolve() if path is not None else None,
            )  # fmt: skip
            for row in json.loads((Path(tmp) / "serving_peers.json").read_text())["rows"]:
                rows.append({"run": run, "code": code, **row})
    return rows


def write_markdown(results: dict[str, Any], path: Path) -> None:
    lines = [
        "# Which thread runs the model: the torch server and libgomp",
        "",
        stamp(results, "serving_threads", student=", torch fp32"),
        "",
        "## In-process: the student's forward pass, p50 ms (one fresh process per cell)",
        "",
        "`one thread`: the model is loaded and run on one worker thread (what the server now does). "
        "`second thread`: the main thread ran one torch parallel region first, then the worker runs the model "
        "(what the server did: it loaded on an anyio worker and ran on a per-model thread).",
        "",
    ]
    table = []
    for batch in sorted({r["batch"] for r in results["inprocess"]}):
        cells = {
            m: [r["p50_ms"] for r in results["inprocess"] if r["batch"] == batch and r["mode"] == m] for m in MODES
        }
        one, second = min(cells["one thread"]), min(cells["second thread"])
        table.append([batch, " / ".join(f"{x:.2f}" for x in cells["one thread"]),
                      " / ".join(f"{x:.2f}" for x in cells["second thread"]), f"{second / one:.2f}x"])  # fmt: skip
    lines += markdown_table(["batch", "one thread (runs)", "second thread (runs)", "second ÷ one (best runs)"], table)
    if results.get("server"):
        lines += [
            "",
            "## The torch server under load, old code (`before`) and new code (`after`) alternating",
            "",
            "`/v1/embeddings`, one short query per request, wrk 1 thread pinned to CPU 0; in-process: `encode` at "
            "the effective batch, both cores, measured right after each server run.",
            "",
        ]
        rows = [
            [r["run"], r["code"], r["connections"], round(r["requests/s"]), r["p50 ms"], r["p99 ms"],
             r["effective batch"], round(r["in-process texts/s"]), f"{r['requests/s'] / r['in-process texts/s']:.2f}"]
            for r in sorted(results["server"], key=lambda r: (r["connections"], r["run"]))
        ]  # fmt: skip
        lines += markdown_table(
            ["run", "code", "clients", "req/s", "p50 ms", "p99 ms", "effective batch", "in-process texts/s", "ratio"],
            rows,
        )
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", type=Path, required=True)
    parser.add_argument("--before", type=Path, help="A checkout of the code before the compute thread.")
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--concurrent", default="nothing else")
    args = parser.parse_args()
    args.student = args.student.resolve()
    results: dict[str, Any] = {"machine": machine(), "concurrent": args.concurrent, "student": str(args.student)}
    results["inprocess"] = inprocess(args.student, [int(b) for b in args.batches.split(",")], args.repeats)
    if args.before is not None:
        results["server"] = server_runs(args.student, args.before, args.clients, args.seconds)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "serving_threads.json", results)
    write_markdown(results, args.out / "serving_threads.md")


if __name__ == "__main__":
    run_main(main)
