"""One compute thread with both cores, or two compute threads with one core each: the torch server at load.

    python -m benchmarks.serving_workers --student STUDENT

1. In-process, one fresh process per cell: the student's forward pass (``embed_tokens``, short queries)
   run by W Python threads at once, each with T torch kernel threads, for ``--inprocess-seconds``; texts/s.
   W=1, T=2 is what the server did; W=2, T=1 is ``EMBEDKD_COMPUTE_WORKERS=2``.
2. The torch server's ``/v1/embeddings`` at 1, 8 and 32 clients (``benchmarks.serving_peers``) with
   ``EMBEDKD_COMPUTE_WORKERS`` 1 and 2 alternating (1, 2, 2, 1), so the machine's drift shows in the pairs;
   with where the CPU went during each run (the server's threads by OS name, and wrk's own).
3. One torch server (one compute worker) at 1 and 32 clients with its event-loop thread at nice 0, 10 and 19
   in turn (0, 19, 10, 19, 0 per client count): whether letting the model's threads win the cores helps.

``--parts`` picks which to run; the parts not run are kept from an earlier ``serving_workers.json``.
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
from benchmarks.load import SHORT_QUERIES
from benchmarks.serving_peers import cpu_cell, wrk
from embedkd.data.documents import Document
from embedkd.distill.teacher import Teacher
from embedkd.index import build_index
from embedkd.testing import LiveServer, free_port

CELL = r"""
import json, sys, threading, time
import torch
student, seconds = sys.argv[1], float(sys.argv[5])
workers, threads, batch = (int(a) for a in sys.argv[2:5])
QUERIES = ["what causes high blood pressure in older adults", "how do I read a file line by line",
           "best way to learn a new language", "symptoms of vitamin d deficiency"]
counts = [0] * workers
def work(i, encoder, tokens, start, stop):
    torch.set_num_threads(threads)
    while True:
        encoder.embed_tokens(tokens)
        now = time.perf_counter()
        if now > stop:
            return
        if now > start:
            counts[i] += batch
def load():
    from embedkd.models import Encoder
    torch.set_num_threads(threads)
    encoder = Encoder.load(student, device="cpu", backend="torch")
    return encoder, encoder.tokenize([QUERIES[i % 4] for i in range(batch)], role="query")
box = []
loader = threading.Thread(target=lambda: box.append(load()))  # loaded on a worker thread, as the server does
loader.start(); loader.join()
encoder, tokens = box[0]
start = time.perf_counter() + 3  # warm-up
pool = [threading.Thread(target=work, args=(i, encoder, tokens, start, start + seconds)) for i in range(workers)]
for t in pool: t.start()
for t in pool: t.join()
print(json.dumps({"texts/s": sum(counts) / seconds}))
"""

CELLS = ((1, 2), (2, 1), (1, 1))  # (workers, kernel threads each)


def inprocess(student: Path, batches: list[int], seconds: float) -> list[dict[str, Any]]:
    rows = []
    for batch in batches:
        for workers, threads in CELLS:
            out = subprocess.run(
                [sys.executable, "-c", CELL, str(student), str(workers), str(threads), str(batch), str(seconds)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            speed = json.loads(out.stdout.strip().splitlines()[-1])["texts/s"]
            rows.append({"batch": batch, "workers": workers, "threads": threads, "texts/s": round(speed, 1)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def server_runs(student: Path, clients: str, seconds: int) -> list[dict[str, Any]]:
    rows = []
    for run, workers in enumerate((1, 2, 2, 1), 1):
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [sys.executable, "-m", "benchmarks.serving_peers", "--student", str(student), "--backends", "torch",
                 "--clients", clients, "--seconds", str(seconds), "--no-profile", "--infinity", "none", "--out", tmp,
                 "--server-env", f"EMBEDKD_COMPUTE_WORKERS={workers}"],
                check=True,
            )  # fmt: skip
            for row in json.loads((Path(tmp) / "serving_peers.json").read_text())["rows"]:
                rows.append({"run": run, "workers": workers, **row})
    return rows


def nice_runs(student: Path, clients: list[int], seconds: int) -> list[dict[str, Any]]:
    rows = []
    bodies = [{"input": q, "model": "student"} for q in SHORT_QUERIES]
    with tempfile.TemporaryDirectory() as tmp:
        teacher = Teacher.from_model("mpnet-base")
        docs = [Document(id=f"d{i}", text=q) for i, q in enumerate(SHORT_QUERIES)]
        build_index(Path(tmp) / "index", docs, teacher=teacher.ref, embed=teacher.encode_document, progress=False)
        server = LiveServer(Path(tmp) / "index", student, free_port())
        try:
            wrk(server.url, "/v1/embeddings", bodies, 3, 32)  # warm-up
            for n in clients:
                for nice in (0, 19, 10, 19, 0):
                    # the process id is the main thread's id: this renices the event loop's thread only
                    os.setpriority(os.PRIO_PROCESS, server.proc.pid, nice)
                    load = wrk(server.url, "/v1/embeddings", bodies, seconds, n, pid=server.proc.pid)
                    rows.append({"nice": nice, **load})
                    print(json.dumps(rows[-1]), flush=True)
        finally:
            server.stop()
    return rows


def write_markdown(results: dict[str, Any], path: Path) -> None:
    lines = [
        "# Compute workers: one thread with both cores, or two with one core each (torch server)",
        "",
        stamp(results, "serving_workers", student=", torch fp32"),
        "",
        "## In-process: texts/s of W threads running the forward pass at once, T kernel threads each",
        "",
    ]
    batches = sorted({r["batch"] for r in results["inprocess"]})
    cell = {(r["batch"], r["workers"], r["threads"]): r["texts/s"] for r in results["inprocess"]}
    lines += markdown_table(
        ["batch", *(f"W={w}, T={t}" for w, t in CELLS)],
        [[b, *(f"{cell.get((b, w, t), float('nan')):.0f}" for w, t in CELLS)] for b in batches],
    )
    if results.get("server"):
        lines += [
            "",
            "## The torch server under load, EMBEDKD_COMPUTE_WORKERS 1 and 2 alternating",
            "",
            "`/v1/embeddings`, one short query per request, wrk 1 thread pinned to CPU 0; in-process: `encode` at "
            "the effective batch, both cores, measured right after each server run. CPU: cores busy during the "
            "run: `ekd-compute` (the model), `ekd-tokenize`, the event loop and the rest, and wrk.",
            "",
        ]
        rows = []
        for r in sorted(results["server"], key=lambda r: (r["connections"], r["run"])):
            rows.append(
                [r["run"], r["workers"], r["connections"], round(r["requests/s"]), r["p50 ms"], r["p99 ms"],
                 r["effective batch"], round(r["in-process texts/s"]),
                 f"{r['requests/s'] / r['in-process texts/s']:.2f}", cpu_cell(r)]
            )  # fmt: skip
        lines += markdown_table(
            ["run", "workers", "clients", "req/s", "p50 ms", "p99 ms", "effective batch", "in-process texts/s",
             "ratio", "CPU: compute / tokenize / event loop / wrk"],
            rows,
        )  # fmt: skip
    if results.get("nice"):
        lines += [
            "",
            "## The event loop's priority (one compute worker)",
            "",
            "One server, the event-loop thread reniced between wrk runs (12-15 s each); CPU as above.",
            "",
        ]
        lines += markdown_table(
            ["clients", "event loop nice", "req/s", "p50 ms", "p99 ms", "CPU: compute / tokenize / event loop / wrk"],
            [
                [r["connections"], r["nice"], round(r["requests/s"]), r["p50 ms"], r["p99 ms"], cpu_cell(r)]
                for r in results["nice"]
            ],
        )  # fmt: skip
    if results.get("reading"):
        lines += ["", "## Reading", "", results["reading"]]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", type=Path, required=True)
    parser.add_argument("--batches", default="8,16")
    parser.add_argument("--inprocess-seconds", type=float, default=8.0)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--parts", default="inprocess,server,nice")
    parser.add_argument("--reading", help="A paragraph on what the numbers say, written under the tables.")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--concurrent", default="nothing else")
    args = parser.parse_args()
    args.student = args.student.resolve()
    parts = set(args.parts.split(","))
    saved = args.out / "serving_workers.json"
    results: dict[str, Any] = json.loads(saved.read_text()) if saved.is_file() else {}
    results.update({"machine": machine(), "concurrent": args.concurrent, "student": str(args.student)})
    if "inprocess" in parts:
        results["inprocess"] = inprocess(
            args.student, [int(b) for b in args.batches.split(",")], args.inprocess_seconds
        )
    if "server" in parts:
        results["server"] = server_runs(args.student, args.clients, args.seconds)
    if "nice" in parts:
        results["nice"] = nice_runs(args.student, [1, 32], args.seconds)
    if args.reading:
        results["reading"] = args.reading
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "serving_workers.json", results)
    write_markdown(results, args.out / "serving_workers.md")


if __name__ == "__main__":
    run_main(main)
