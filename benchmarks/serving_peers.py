"""/v1/embeddings under load: embedkd against infinity-emb on the same student, and where embedkd's time goes.

    python -m benchmarks.serving_peers --student STUDENT [--infinity .venv-infinity/bin/infinity_emb]

1, 8 and 32 concurrent clients (wrk, one thread pinned to one core), one short query per request, for
``--seconds``:

1. embedkd's ``/v1/embeddings`` (the student on torch fp32, then on ONNX Runtime);
2. infinity-emb's ``/embeddings`` on the same student (its own venv: it pins sentence-transformers < 4, so
   the student folder is copied with sentence-transformers 3.x module names; same weights);
3. in-process ``encode`` at the server's effective batch size, on the same backend;
4. where the CPU goes during each embedkd run: CPU seconds of the server's threads by their OS names
   (``ekd-compute``: the model, with the OpenMP / ONNX Runtime / OpenVINO workers it started;
   ``ekd-tokenize``, the tokenizer's thread before the compute thread tokenised its own batches; the rest:
   the event loop and HTTP), and of the load generator; the compute thread's time in forward passes;
5. a py-spy profile of the embedkd server under that load: the functions where its threads spend their
   time (own time, all threads).

Server and load generator share this machine's cores, as a real single-box deployment would.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from benchmarks._report import machine, markdown_table, run_main, write_json, write_sections
from benchmarks.load import PIN_LOADGEN, SHORT_QUERIES, forward_passes, inprocess_throughput, wrk_post
from embedkd.data.documents import Document
from embedkd.distill.teacher import Teacher
from embedkd.index import build_index
from embedkd.models.encoder import Encoder
from embedkd.testing import LiveServer, free_port


def wrk(
    url: str, path: str, bodies: list[dict[str, Any]], seconds: int, connections: int = 32, pid: int | None = None
) -> dict[str, Any]:
    """wrk's numbers; with the server's ``pid``, also where the CPU went while it ran (``cpu``)."""
    before = thread_cpu(pid) if pid else {}
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = wrk_post(url, path, bodies, seconds, connections)
    wall = time.perf_counter() - started
    result.pop("raw")
    if pid:
        after = thread_cpu(pid)
        spent = resource.getrusage(resource.RUSAGE_CHILDREN)
        groups: dict[str, float] = {}
        for name, seconds_used in after.items():
            group = name if name in CPU_GROUPS else "event loop and the rest"
            groups[group] = groups.get(group, 0.0) + seconds_used - before.get(name, 0.0)
        load = spent.ru_utime + spent.ru_stime - children.ru_utime - children.ru_stime
        result["cpu cores"] = {
            **{k: round(v / wall, 3) for k, v in groups.items()},
            "load generator": round(load / wall, 3),
        }
    return result


CPU_GROUPS = ("ekd-compute", "ekd-tokenize")
CPU_COLUMNS = (*CPU_GROUPS, "event loop and the rest", "load generator")


def cpu_cell(row: dict[str, Any]) -> str:
    """A row's cores busy as ``compute / tokenize / event loop / wrk``."""
    return " / ".join(f"{row.get('cpu cores', {}).get(k, 0.0):.2f}" for k in CPU_COLUMNS)


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of process ``pid``'s live threads, summed by OS thread name (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        used[name] = used.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return used


def st3_copy(student: Path, target: Path) -> Path:
    """The student folder with sentence-transformers 3.x module names and configs (same weights)."""
    shutil.copytree(student, target, ignore=shutil.ignore_patterns("checkpoints", "onnx", "openvino"))
    names = {n: f"sentence_transformers.models.{n}" for n in ("Transformer", "Pooling", "Dense", "Normalize")}
    modules = json.loads((target / "modules.json").read_text())
    for module in modules:
        module["type"] = names[module["type"].rsplit(".", 1)[1]]
    (target / "modules.json").write_text(json.dumps(modules, indent=2))
    bert = json.loads((target / "config.json").read_text())
    (target / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": min(256, int(bert.get("max_position_embeddings", 512))), "do_lower_case": False})
    )
    pooling = json.loads((target / "1_Pooling" / "config.json").read_text())
    (target / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": pooling["embedding_dimension"], "pooling_mode_mean_tokens": True})
    )
    dense = json.loads((target / "2_Dense" / "config.json").read_text())
    keep = ("in_features", "out_features", "bias", "activation_function")
    (target / "2_Dense" / "config.json").write_text(json.dumps({k: dense[k] for k in keep}))
    return target


def infinity_server(binary: str, model: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [binary, "v2", "--model-id", str(model), "--engine", "torch", "--device", "cpu", "--port", str(port),
             "--batch-size", "32", "--no-model-warmup", "--served-model-name", "student"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"infinity exited: {log.read_text()[-2000:]}")
        time.sleep(1)
    raise RuntimeError("infinity did not start")


def infinity_load(
    binary: str,
    student: Path,
    root: Path,
    bodies: list[dict[str, Any]],
    clients: list[int],
    seconds: int,
    warmup: int = 0,
) -> list[dict[str, Any]]:
    """wrk against infinity-emb's ``/embeddings`` on the student (a copy it can load, kept in ``root/st3``),
    one row per client count; ``warmup`` seconds of load first, unmeasured. The server stops afterwards."""
    model = root / "st3" if (root / "st3").is_dir() else st3_copy(student, root / "st3")
    port = free_port()
    proc = infinity_server(binary, model, port, root / "infinity.log")
    rows = []
    try:
        url = f"http://127.0.0.1:{port}"
        if warmup:
            wrk_post(url, "/embeddings", bodies, warmup, max(clients))
        for n in clients:
            rows.append(wrk(url, "/embeddings", bodies, seconds, n))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    return rows


def profile(pid: int, seconds: int, out: Path) -> list[tuple[str, float]]:
    """Share of samples by innermost function (own time) across the server's threads, via py-spy."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    raw = out / "server.collapsed"
    subprocess.run(
        [py_spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "200", "--format", "raw",
         "--output", str(raw), "--threads", "--nonblocking"],
        capture_output=True, check=True,
    )  # fmt: skip
    own: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [f for f in stack.split(";") if not f.startswith("thread")]
        leaf = frames[-1] if frames else "?"
        name = re.sub(r"\s*\(.*?/site-packages/|\s*\(/.*?/", " (", leaf)
        own[name] += int(count)
    total = sum(own.values()) or 1
    return [(name, n / total) for name, n in own.most_common(15)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", type=Path, required=True)
    parser.add_argument("--infinity", default=".venv-infinity/bin/infinity_emb")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--clients", default="1,8,32", help="Concurrent clients (wrk connections), comma-separated.")
    parser.add_argument("--backends", default="torch,onnx")
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        help="KEY=VALUE for the embedkd server's environment, e.g. OMP_NUM_THREADS=1 (repeatable).",
    )
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--concurrent", default="nothing else")
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    bodies = [{"input": q, "model": "student"} for q in SHORT_QUERIES]
    results: dict[str, Any] = {
        "machine": machine(),
        "concurrent": args.concurrent,
        "load_generator": "wrk, 1 thread pinned to CPU 0 (taskset)" if PIN_LOADGEN else "wrk, 1 thread (no taskset)",
        "rows": [],
    }
    env = dict(item.split("=", 1) for item in args.server_env)
    results["server_env"] = env
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        teacher = Teacher.from_model("mpnet-base")
        docs = [Document(id=f"d{i}", text=q) for i, q in enumerate(SHORT_QUERIES)]
        build_index(root / "index", docs, teacher=teacher.ref, embed=teacher.encode_document, progress=False).close()
        for backend in args.backends.split(","):
            server = LiveServer(root / "index", args.student, free_port(), extra=["--backend", backend], env=env)
            measured = []
            try:
                for n in clients:
                    before = httpx.get(f"{server.url}/metrics").text
                    load = wrk(server.url, "/v1/embeddings", bodies, args.seconds, n, pid=server.proc.pid)
                    after = httpx.get(f"{server.url}/metrics").text
                    texts, passes, busy = forward_passes(before, after)
                    load["model busy"] = busy / args.seconds  # share of the run in forward passes
                    load["forward ms"] = 1000 * busy / passes
                    measured.append((n, load, max(1, round(texts / passes))))
                if backend == "torch" and not args.no_profile:
                    results["profile"] = threading_profile(server, bodies, args.seconds, root)
            finally:
                server.stop()
            encoder = Encoder.load(args.student, device="cpu", backend=backend)
            for _n, load, batch in measured:
                row = {"server": f"embedkd ({backend})", **load, "effective batch": batch}
                row["in-process texts/s"] = inprocess_throughput(encoder, batch)
                results["rows"].append(row)
                print(json.dumps(row), flush=True)
        if Path(args.infinity).exists():
            for load in infinity_load(args.infinity, args.student, root, bodies, clients, args.seconds):
                results["rows"].append({"server": "infinity-emb 0.0.78 (torch)", **load})
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "serving_peers.json", results)
    write_markdown(results, args.out / "serving_peers.md")


def threading_profile(server: LiveServer, bodies: list[dict[str, Any]], seconds: int, root: Path) -> Any:
    """Profile the server while wrk loads it (the profile's own overhead makes this run's req/s unreliable)."""
    import threading

    box: dict[str, Any] = {}
    loader = threading.Thread(target=lambda: box.update(wrk(server.url, "/v1/embeddings", bodies, seconds + 4)))
    loader.start()
    time.sleep(2)
    try:
        top = profile(server.proc.pid, seconds, root)
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        top = [(f"py-spy failed: {exc}", 0.0)]
    loader.join()
    return top


def write_markdown(results: dict[str, Any], path: Path) -> None:
    rows = results["rows"]
    infinity = {r.get("connections", 32): r for r in rows if r["server"].startswith("infinity")}
    lines = [
        "# /v1/embeddings under load: embedkd and infinity-emb on the same student",
        "",
        f"Machine: {results['machine']}. Ran beside: {results['concurrent']}. Load generator: "
        f"{results.get('load_generator', 'wrk')}; one short query per request; server and load generator share "
        "the machine. The in-process column encodes the same queries at the server's effective batch size on the "
        "same backend, with both cores (no load generator beside it). embedkd server environment: "
        f"{results.get('server_env') or 'defaults'} (ONNX Runtime's idle threads sleep unless EMBEDKD_BUSY_WAIT=1, "
        "serving_busy_wait.md).",
        "",
    ]
    table = []
    for r in sorted(rows, key=lambda r: (r.get("connections", 32), r["server"])):
        n = r.get("connections", 32)
        ratio = f"{r['requests/s'] / r['in-process texts/s']:.2f}" if "in-process texts/s" in r else ""
        peer = infinity.get(n)
        vs = f"{r['requests/s'] / peer['requests/s']:.2f}x" if peer and r is not peer else ""
        table.append(
            [n, r["server"], f"{r['requests/s']:.0f}", f"{r['p50 ms']:.1f}" if r.get("p50 ms") else "",
             f"{r['p99 ms']:.1f}" if r.get("p99 ms") else "", r.get("effective batch", ""),
             f"{r['in-process texts/s']:.0f}" if "in-process texts/s" in r else "", ratio, vs, r["non-2xx"]]
        )  # fmt: skip
    lines += markdown_table(
        ["clients", "server", "req/s", "p50 ms", "p99 ms", "effective batch", "in-process texts/s at that batch",
         "ratio", "vs infinity", "non-2xx"],
        table,
    )  # fmt: skip
    busy_rows = [r for r in sorted(rows, key=lambda r: (r["server"], r.get("connections", 32))) if "model busy" in r]
    if busy_rows:
        lines += ["", "## The model's time: forward passes, and the gaps between them", ""]
        lines += [
            "`model busy`: share of the run's wall time the compute thread spent in forward passes "
            "(`embedkd_encode_seconds`); the rest of the time the model waited for a batch. `forward ms`: one "
            "forward pass at the effective batch in the server; in-process: the same batch through `encode` "
            "(tokenising included) with both cores and nothing beside it.",
            "",
        ]
        lines += markdown_table(
            ["server", "clients", "req/s", "effective batch", "model busy", "forward ms", "in-process ms"],
            [
                [r["server"], r.get("connections", 32), f"{r['requests/s']:.0f}", r["effective batch"],
                 f"{r['model busy']:.0%}", f"{r['forward ms']:.1f}",
                 f"{1000 * r['effective batch'] / r['in-process texts/s']:.1f}"]
                for r in busy_rows
            ],
        )  # fmt: skip
    cpu_rows = [r for r in sorted(rows, key=lambda r: (r["server"], r.get("connections", 32))) if r.get("cpu cores")]
    if cpu_rows:
        groups = list(CPU_COLUMNS)
        lines += ["", "## Where the CPU goes (cores busy during each run, of the machine's 2)", ""]
        lines += [
            "Server threads by OS name: `ekd-compute` is the model (with the OpenMP, ONNX Runtime or OpenVINO "
            "workers it started; it tokenises its own batches), `ekd-tokenize` the tokenizer's thread in earlier "
            "code (0 since); the rest is the event loop (HTTP, JSON, "
            "batching). Load generator: wrk's own CPU time. Per request: the event loop's CPU ms per request.",
            "",
        ]
        lines += markdown_table(
            ["server", "clients", "req/s", *groups, "total", "event loop ms / request"],
            [
                [r["server"], r.get("connections", 32), f"{r['requests/s']:.0f}",
                 *(f"{r['cpu cores'].get(g, 0.0):.2f}" for g in groups), f"{sum(r['cpu cores'].values()):.2f}",
                 f"{1000 * r['cpu cores'].get('event loop and the rest', 0.0) / max(r['requests/s'], 1e-9):.2f}"]
                for r in cpu_rows
            ],
        )  # fmt: skip
    if results.get("profile"):
        lines += ["", "## Where the embedkd server's time goes (py-spy, own time, all threads, torch backend)", ""]
        lines += markdown_table(["function", "share"], [[n, f"{s:.1%}"] for n, s in results["profile"]])
    path.write_text("\n".join(lines) + "\n")
    # load.md carries the same tables as sections of its own (the rest of load.md is kept).
    write_sections(path.parent / "load.md", ["#" + line if line.startswith("#") else line for line in lines])


if __name__ == "__main__":
    run_main(main)
