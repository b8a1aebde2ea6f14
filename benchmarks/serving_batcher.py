"""The server's batcher: formed on the event loop (before) or taken by the compute thread itself (after).

    python -m benchmarks.serving_batcher --student STUDENT --before ../before-batcher [--backends torch,openvino]
    python -m benchmarks.serving_batcher --render --reading "..."   # re-write the markdown with a reading

``--before`` is a checkout of the code before ``embedkd/service/batching.py`` moved batch-taking onto the
compute thread. For each backend, ``benchmarks.serving_peers`` loads ``/v1/embeddings`` at 1, 8 and 32
clients with the old and the new code alternating (before, after, after, before), so the machine's drift
shows in the pairs. The new code also reports the compute thread's busy share and its forward ms per batch.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks._report import machine, markdown_table, run_main, stamp, write_json
from benchmarks.serving_threads import server_runs


def write_markdown(results: dict[str, Any], path: Path) -> None:
    lines = [
        "# The server's batcher: formed on the event loop, or taken by the compute thread",
        "",
        stamp(results, "serving_batcher"),
        "",
        "`before`: the event loop formed each batch and handed it to the compute thread, so between two batches "
        "the model waited while the loop answered the last batch's requests, tokenised the next batch on a "
        "thread of its own and handed it over. `after`: the compute thread takes the waiting texts itself, "
        "tokenises and runs them, and hands only the rows back. `/v1/embeddings`, one short query per request, "
        "wrk 1 thread pinned to CPU 0, 15 s per cell; in-process: `encode` at the effective batch, both cores, "
        "measured right after each server run. `model busy`: share of the run's wall time the compute thread "
        "spent in forward passes (new code only).",
        "",
    ]
    rows = [
        [r["backend"], r["connections"], r["run"], r["code"], round(r["requests/s"]), r["p50 ms"], r["p99 ms"],
         r["effective batch"], round(r["in-process texts/s"]), f"{r['requests/s'] / r['in-process texts/s']:.2f}",
         f"{r['model busy']:.0%}" if "model busy" in r else "",
         f"{r['forward ms']:.1f}" if "forward ms" in r else ""]
        for r in sorted(results["server"], key=lambda r: (r["backend"], r["connections"], r["run"]))
    ]  # fmt: skip
    lines += markdown_table(
        ["backend", "clients", "run", "code", "req/s", "p50 ms", "p99 ms", "effective batch", "in-process texts/s",
         "ratio", "model busy", "forward ms"],
        rows,
    )  # fmt: skip
    if results.get("reading"):
        lines += ["", results["reading"]]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", type=Path)
    parser.add_argument("--before", type=Path, help="A checkout of the code before the change.")
    parser.add_argument("--render", action="store_true", help="Only re-write the markdown (with --reading).")
    parser.add_argument("--backends", default="torch,openvino")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--concurrent", default="nothing else")
    parser.add_argument("--reading", default="", help="A paragraph on what the numbers say, for the report.")
    args = parser.parse_args()
    results: dict[str, Any]
    if args.render:
        results = json.loads((args.out / "serving_batcher.json").read_text())
        results["reading"] = args.reading or results.get("reading", "")
        write_json(args.out / "serving_batcher.json", results)
        write_markdown(results, args.out / "serving_batcher.md")
        return
    if args.student is None or args.before is None:
        parser.error("--student and --before are needed to measure")
    student = args.student.resolve()
    results = {
        "machine": machine(),
        "concurrent": args.concurrent,
        "student": str(student),
        "reading": args.reading,
        "server": [],
    }
    for backend in args.backends.split(","):
        for row in server_runs(student, args.before, args.clients, args.seconds, backend):
            results["server"].append({"backend": backend, **row})
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "serving_batcher.json", results)
    write_markdown(results, args.out / "serving_batcher.md")


if __name__ == "__main__":
    run_main(main)
