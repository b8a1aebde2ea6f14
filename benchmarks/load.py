"""Load test of the service, with every figure a ratio measured in the same run on the same machine.

    python benchmarks/load.py --student STUDENT_DIR --beir ../shared/data/beir/scifact [--out benchmarks/results]

1. /encode throughput with 32 concurrent clients, one short query per request (wrk when installed, else an
   asyncio client), against in-process ``encode`` at the effective batch size the server reported.
2. Idle /search p50 (sequential requests) against in-process student encode (batch 1) + index search.
3. The same two for the teacher, for the end-to-end asymmetric speedup.
4. Fuzzing: schemathesis over the OpenAPI schema; counts generated requests and server errors.
5. Durability: kill -9 the server during a /documents ingest loop, restart it, and check that every
   acknowledged document is present and searchable.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks._report import machine, markdown_table, run_main, write_json, write_sections
from embedkd.data import load_beir
from embedkd.data.documents import Document
from embedkd.distill.teacher import Teacher, read_aligned_texts
from embedkd.index import Index, build_index
from embedkd.models import Encoder
from embedkd.testing import LiveServer, durable_document, free_port

SHORT_QUERIES = [
    "how to cook rice",
    "symptoms of flu",
    "python list sort",
    "cheap flights to rome",
    "what is dna",
    "best running shoes",
    "capital of canada",
    "how vaccines work",
    "tax deadline",
    "bitcoin price",
    "learn guitar chords",
    "why is the sky blue",
    "dog food allergies",
    "solar panel cost",
    "mortgage rates",
    "what causes earthquakes",
    "coffee and sleep",
    "how to tie a tie",
    "world cup winners",
    "insulin resistance",
]


def metric_sum(text: str, name: str, label: str) -> tuple[float, float]:
    """(sum, count) of a Prometheus histogram for one label value."""
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith(f"{name}_sum{{") and label in line:
            total = float(line.rsplit(" ", 1)[1])
        if line.startswith(f"{name}_count{{") and label in line:
            count = float(line.rsplit(" ", 1)[1])
    return total, count


# The load generator gets one core at most, so the server keeps the rest (taskset is in util-linux).
PIN_LOADGEN = ["taskset", "-c", "0"] if shutil.which("taskset") else []


def wrk_post(url: str, path: str, bodies: list[dict[str, Any]], seconds: int, connections: int = 32) -> dict[str, Any]:
    """Requests/s, non-2xx count, p50 and p99 of wrk POSTing ``bodies`` in turn to ``path``.

    wrk runs one thread pinned to CPU 0 (``taskset``): the load generator takes one core at most.
    """
    encoded = ",".join(json.dumps(json.dumps(b)) for b in bodies)
    script = f"""
local bodies = {{{encoded}}}
local n = 0
request = function()
  n = n + 1
  return wrk.format("POST", "{path}", {{["Content-Type"] = "application/json"}}, bodies[(n % #bodies) + 1])
end
"""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    out = subprocess.run(
        [*PIN_LOADGEN, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", handle.name, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}

    def percentile(label: str) -> float | None:
        found = re.search(rf"\b{label}%\s+([\d.]+)(us|ms|s)\b", out)
        return float(found.group(1)) * scale[found.group(2)] if found else None

    return {
        "requests/s": rps,
        "non-2xx": int(errors.group(1)) if errors else 0,
        "p50 ms": percentile("50"),
        "p99 ms": percentile("99"),
        "connections": connections,
        "raw": out,
    }


def wrk_throughput(url: str, model: str, seconds: int, connections: int = 32) -> dict[str, Any]:
    bodies = [{"inputs": q, "model": model} for q in SHORT_QUERIES]
    return {**wrk_post(url, "/encode", bodies, seconds, connections), "client": "wrk"}


def python_throughput(url: str, model: str, seconds: int, connections: int = 32) -> dict[str, Any]:
    import asyncio

    async def run() -> tuple[int, int]:
        done = errors = 0
        stop = time.perf_counter() + seconds
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:

            async def worker(i: int) -> None:
                nonlocal done, errors
                while time.perf_counter() < stop:
                    query = SHORT_QUERIES[(i + done) % len(SHORT_QUERIES)]
                    response = await client.post("/encode", json={"inputs": query, "model": model})
                    done += 1
                    errors += response.status_code != 200

            await asyncio.gather(*(worker(i) for i in range(connections)))
        return done, errors

    done, errors = asyncio.run(run())
    return {"requests/s": done / seconds, "non-2xx": errors, "client": "httpx asyncio"}


def forward_passes(before: str, after: str, model: str = "student") -> tuple[float, float, float]:
    """(texts, forward passes, seconds in forward passes) of ``model`` between two /metrics scrapes;
    at least one pass, so that ratios of them stay defined."""
    s0, c0 = metric_sum(before, "embedkd_batch_size", f'model="{model}"')
    s1, c1 = metric_sum(after, "embedkd_batch_size", f'model="{model}"')
    f0, _ = metric_sum(before, "embedkd_encode_seconds", f'model="{model}"')
    f1, _ = metric_sum(after, "embedkd_encode_seconds", f'model="{model}"')
    return s1 - s0, max(1.0, c1 - c0), f1 - f0


def throughput(url: str, model: str, seconds: int) -> dict[str, Any]:
    before = httpx.get(f"{url}/metrics").text
    result = (wrk_throughput if shutil.which("wrk") else python_throughput)(url, model, seconds)
    after = httpx.get(f"{url}/metrics").text
    texts, passes, _ = forward_passes(before, after, model)
    result["effective batch size"] = texts / passes
    return result


def inprocess_throughput(encoder: Encoder, batch_size: int, n: int = 2048) -> float:
    queries = [SHORT_QUERIES[i % len(SHORT_QUERIES)] for i in range(n)]
    encoder.encode(queries[:batch_size], batch_size=batch_size)
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        encoder.encode(queries, batch_size=batch_size)
        best = max(best, n / (time.perf_counter() - start))
    return best


def inprocess_search_ms(encoder: Encoder, index: Index, queries: list[str]) -> float:
    times = []
    for q in queries:
        start = time.perf_counter()
        index.search(encoder.encode_query([q], batch_size=1), 10)
        times.append(time.perf_counter() - start)
    return float(np.percentile(times, 50) * 1000)


def http_search_ms(url: str, queries: list[str], mode: str) -> tuple[float, float]:
    times = []
    with httpx.Client(base_url=url, timeout=30) as client:
        client.post("/search", json={"query": queries[0], "mode": mode})
        for q in queries:
            start = time.perf_counter()
            response = client.post("/search", json={"query": q, "k": 10, "mode": mode, "include_text": False})
            times.append(time.perf_counter() - start)
            response.raise_for_status()
    return float(np.percentile(times, 50) * 1000), float(np.percentile(times, 99) * 1000)


def fuzz(url: str, max_examples: int) -> dict[str, Any]:
    exe = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")
    proc = subprocess.run(
        [
            exe,
            "run",
            f"{url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            str(max_examples),
            "--phases",
            "examples,coverage,fuzzing",
            "--no-color",
        ],
        capture_output=True,
        text=True,
    )
    out = proc.stdout + proc.stderr
    total = re.search(r"(\d+) generated", out) or re.search(r"Test cases:\s*\n?\s*(\d+)", out)
    return {"exit code": proc.returncode, "summary": out[-3000:], "generated": int(total.group(1)) if total else None}


def durability(index: Path, student: Path, seconds: float) -> dict[str, Any]:
    port = free_port()
    server = LiveServer(index, student, port)
    acked: list[str] = []
    stop = threading.Event()

    def ingest() -> None:
        i = 0
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                doc = durable_document(i)
                try:
                    if client.post("/documents", json={"documents": [doc]}).status_code == 200:
                        acked.append(doc["id"])
                except httpx.HTTPError:
                    return  # the server is gone
                i += 1

    thread = threading.Thread(target=ingest)
    thread.start()
    time.sleep(seconds)
    server.kill9()
    stop.set()
    thread.join()
    restarted = LiveServer(index, student, port)
    present = searchable = 0
    with httpx.Client(base_url=restarted.url, timeout=30) as client:
        for doc_id in acked:
            present += client.get(f"/documents/{doc_id}").status_code == 200
        for doc_id in acked[-20:]:
            doc = durable_document(int(doc_id.split("-")[1]))
            body = {"query": f"{doc['title']} {doc['text']}", "mode": "teacher", "k": 5}
            hits = client.post("/search", json=body).json()["results"][0]["hits"]
            searchable += any(h["id"] == doc_id for h in hits)
    restarted.stop()
    return {
        "acknowledged": len(acked),
        "present after restart": present,
        "searchable (last 20 checked)": searchable,
        "seconds before kill": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", type=Path, required=True)
    parser.add_argument("--beir", type=Path, default=Path("../shared/data/beir/scifact"))
    parser.add_argument("--work", type=Path, default=Path(".embedkd/load"))
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--fuzz-examples", type=int, default=150)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": machine()}

    # A flat SciFact index without chunking, built from the teacher cache (the corpus is precomputed).
    dataset = load_beir(args.beir, "test")
    teacher = Teacher.from_model("mpnet-base")
    precomputed = args.beir.parent.parent / "embeddings" / "scifact-mpnet-base" / "corpus.f16.npy"
    if precomputed.is_file():
        teacher.import_embeddings(read_aligned_texts(args.beir, precomputed), precomputed)
    index_dir = args.work / "scifact-index"
    if not (index_dir / "manifest.json").is_file():
        docs = [Document(id=i, title=d["title"], text=d["text"]) for i, d in dataset.corpus.items()]
        build_index(
            index_dir,
            docs,
            teacher=teacher.ref,
            chunking=False,
            progress=False,
            embed=lambda t: teacher.embeddings(t, progress=False),
        ).close()
    queries = list(dataset.queries.values())[:200]

    student = Encoder.load(args.student, device="cpu")
    teacher_encoder = teacher.encoder()
    with Index.open(index_dir, readonly=True) as index:
        results["inprocess"] = {
            "student encode+search p50 ms": inprocess_search_ms(student, index, queries),
            "teacher encode+search p50 ms": inprocess_search_ms(teacher_encoder, index, queries),
        }
    print(json.dumps(results["inprocess"]), flush=True)

    port = free_port()
    server = LiveServer(index_dir, args.student, port)
    try:
        for model in ("student", "teacher"):
            loaded = throughput(server.url, model, args.seconds)
            batch = max(1, round(loaded["effective batch size"]))
            encoder = student if model == "student" else teacher_encoder
            base = inprocess_throughput(encoder, batch)
            loaded.pop("raw", None)
            results[f"{model} /embed"] = {
                **loaded,
                "in-process texts/s at that batch": base,
                "ratio": loaded["requests/s"] / base,
            }
            print(json.dumps(results[f"{model} /embed"]), flush=True)
        for mode, key in (("asym", "student"), ("teacher", "teacher")):
            p50, p99 = http_search_ms(server.url, queries, mode)
            inproc = results["inprocess"][f"{key} encode+search p50 ms"]
            results[f"{mode} /search idle"] = {
                "p50 ms": p50,
                "p99 ms": p99,
                "in-process p50 ms": inproc,
                "ratio": p50 / inproc,
            }
            print(json.dumps(results[f"{mode} /search idle"]), flush=True)
        results["fuzz"] = fuzz(server.url, args.fuzz_examples)
        print(json.dumps({k: v for k, v in results["fuzz"].items() if k != "summary"}), flush=True)
    finally:
        server.stop()

    durable_index = args.work / "durability-index"
    shutil.rmtree(durable_index, ignore_errors=True)
    shutil.copytree(index_dir, durable_index)
    results["durability"] = durability(durable_index, args.student, seconds=15)
    print(json.dumps(results["durability"]), flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "load.json", results)
    write_markdown(results, args.out / "load.md")


def write_markdown(results: dict[str, Any], path: Path) -> None:
    s, t = results["student /embed"], results["teacher /embed"]
    a, ti = results["asym /search idle"], results["teacher /search idle"]
    lines = [
        "# Service load test",
        "",
        f"Machine: {results['machine']}. Server and load generator share the machine.",
        "",
        "## /embed throughput, 32 concurrent clients, one short query per request",
        "",
    ]
    lines += markdown_table(
        ["model", "server req/s", "effective batch", "in-process texts/s at that batch", "ratio", "non-2xx", "client"],
        (
            [name, f"{row['requests/s']:.1f}", f"{row['effective batch size']:.1f}"]
            + [f"{row['in-process texts/s at that batch']:.1f}", f"{row['ratio']:.2f}", row["non-2xx"], row["client"]]
            for name, row in (("student", s), ("teacher", t))
        ),
    )
    lines += ["", "## /search latency at idle (sequential requests, k=10, SciFact flat index)", ""]
    lines += markdown_table(
        ["mode", "p50 ms", "p99 ms", "in-process encode+search p50 ms", "ratio"],
        (
            [name, *(f"{row[key]:.2f}" for key in ("p50 ms", "p99 ms", "in-process p50 ms", "ratio"))]
            for name, row in (("asym (student)", a), ("teacher", ti))
        ),
    )
    lines += [
        "",
        f"End to end, asymmetric search is {ti['p50 ms'] / a['p50 ms']:.1f}x faster than teacher search "
        f"at idle, and the student /embed serves {s['requests/s'] / t['requests/s']:.1f}x the teacher's "
        "requests per second.",
        "",
    ]
    fz = results["fuzz"]
    lines += [
        "## Fuzzing (schemathesis, not_a_server_error)",
        "",
        f"- exit code {fz['exit code']}, generated test cases: {fz['generated']}",
        "",
        "```",
        fz["summary"].strip()[-1500:],
        "```",
        "",
    ]
    d = results["durability"]
    lines += [
        "## Durability (kill -9 during a /documents ingest loop)",
        "",
        f"- acknowledged upserts before the kill: {d['acknowledged']}",
        f"- present after restart: {d['present after restart']} / {d['acknowledged']}",
        f"- searchable after restart (last 20 checked): {d['searchable (last 20 checked)']} / "
        f"{min(20, d['acknowledged'])}",
        "",
    ]
    write_sections(path, lines)  # keeps the sections other benchmarks write into load.md


if __name__ == "__main__":
    run_main(main)
