"""Timeline of ``embedkd demo`` from a cold start: first /search answer, index complete, student live.

    python -m benchmarks.demo_timeline [--limit-minutes 40] [--out benchmarks/results] [--name NAME]

Runs ``embedkd demo`` (what ``make demo`` runs after ``make install`` and ``embedkd models --prepare``) in a
fresh work folder with an empty embedding cache, so every teacher embedding is computed, and polls the
server: the first ``/search`` that answers 200, the moment ``/ready`` reports the index complete, and the
moment ``/search`` answers in asym mode (the trained student took over without a restart). The models are
already assembled (``make install`` does that); run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks._report import machine, markdown_table, run_main, write_json
from embedkd.testing import free_port

QUERY = "parse command line arguments"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit-minutes", type=float, default=40.0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--concurrent", default="nothing else")
    parser.add_argument("--name", default="", help="Write demo_NAME.{md,json} (another machine) instead.")
    args = parser.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    events: dict[str, float] = {}
    first_body: dict[str, Any] = {}
    last_body: dict[str, Any] = {}
    described: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "EMBEDKD_CACHE_DIR": str(Path(tmp) / "cache")}
        log = Path(tmp) / "demo.log"
        started = time.monotonic()
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "embedkd", "demo", "--workdir", str(Path(tmp) / "demo"), "--port", str(port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        try:
            deadline = started + args.limit_minutes * 60
            while time.monotonic() < deadline and proc.poll() is None:
                time.sleep(1.0)
                try:
                    ready = httpx.get(f"{base}/ready", timeout=5).json()
                    if "first_answer" not in events:
                        response = httpx.post(f"{base}/search", json={"query": QUERY}, timeout=60)
                        if response.status_code == 200:
                            events["first_answer"] = time.monotonic() - started
                            first_body = response.json()
                    index = ready.get("building", {}).get("index", {})
                    if "index_complete" not in events and index.get("state") == "complete":
                        events["index_complete"] = time.monotonic() - started
                        events["documents"] = float(index.get("documents", 0))
                    if "student_live" not in events and ready.get("search_mode") == "asym":
                        events["student_live"] = time.monotonic() - started
                        last_body = httpx.post(f"{base}/search", json={"query": QUERY}, timeout=60).json()
                        described = httpx.get(f"{base}/models", timeout=30).json()
                        break
                except (httpx.HTTPError, ValueError):
                    continue
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        tail = log.read_text(errors="replace")[-3000:]
    results = {
        "machine": machine(),
        "concurrent": args.concurrent,
        "limit_minutes": args.limit_minutes,
        "events_s": events,
        "first_answer_mode": first_body.get("mode"),
        "query": QUERY,
        "answers": {"first": _answer(first_body), "student_live": _answer(last_body)},
        "student_alignment": ((described.get("student") or {}).get("alignment") or {}),
        "fusion": _fusion(described.get("fusion")),
        "log_tail": tail,
    }
    print(json.dumps(results["events_s"]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"demo_{args.name}" if args.name else "demo"
    write_json(args.out / f"{stem}.json", results)
    write_markdown(results, args.out / f"{stem}.md")


def _answer(body: dict[str, Any]) -> dict[str, Any]:
    """Mode, fusion model and top hits of a /search answer."""
    if not body:
        return {}
    hits = body["results"][0]["hits"][:3]
    return {"mode": body.get("mode"), "fused_with": body.get("fused_with"), "top3": [h["id"] for h in hits]}


def _fusion(described: dict[str, Any] | None) -> dict[str, Any] | None:
    if not described:
        return None
    return {
        "model": described.get("name"),
        "weight": described.get("weight"),
        "documents": described.get("index", {}).get("counts", {}).get("documents"),
    }


def write_markdown(results: dict[str, Any], path: Path) -> None:
    events = results["events_s"]

    def at(key: str) -> str:
        return (
            f"{events[key] / 60:.1f} min ({events[key]:.0f} s)"
            if key in events
            else (f"not reached within {results['limit_minutes']:g} min")
        )

    lines = [
        "# `embedkd demo` timeline from a cold start",
        "",
        f"Machine: {results['machine']}. Ran beside: {results['concurrent']}.",
        "",
        "Counted from the start of `embedkd demo` with the models assembled (the end of `make install` and "
        "`embedkd models --prepare`) and an empty embedding cache: every teacher embedding is computed.",
        "",
    ]
    lines += markdown_table(
        ["event", "time"],
        [
            [f"first `/search` answer ({results.get('first_answer_mode')} mode)", at("first_answer")],
            [
                f"index complete ({int(events['documents'])} documents)" if "documents" in events else "index complete",
                at("index_complete"),
            ],
            ["student live (`/search` answers asym, no restart)", at("student_live")],
        ],
    )
    answers = results.get("answers", {})
    if answers:
        lines += ["", f"`/search` for {results['query']!r} (top 3 document ids):", ""]
        lines += markdown_table(
            ["answer", "mode", "fused with", "top 3"],
            [
                [name, a.get("mode"), a.get("fused_with") or "—", ", ".join(a.get("top3", []))]
                for name, a in answers.items()
                if a
            ],
        )
    fusion, alignment = results.get("fusion"), results.get("student_alignment") or {}
    if fusion:
        lines += [
            "",
            f"Fusion index: {fusion['documents']} documents in {fusion['model']}'s own space, "
            f"weight {fusion['weight']}.",
        ]
    if alignment.get("mean_cosine") is not None:
        lines += [f"The demo's student: held-out mean cosine to the teacher {alignment['mean_cosine']:.3f}."]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    run_main(main)
