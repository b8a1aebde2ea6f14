"""Reliability benchmark: fuzzing, kill -9 under mixed load, two processes, search latency during a save.

    python -m benchmarks.reliability --student STUDENT_DIR --beir ../shared/data/beir/scifact

Writes ``benchmarks/results/reliability.json`` and ``reliability.md``, and replaces the reliability
section of ``load.md`` with the same table. Each part is the same scenario the test suite runs, with
larger counts and the real teacher and student:

1. property-based fuzzing of /embed, /v1/embeddings, /search and /documents (tests/service/test_fuzz.py);
2. kill -9 of ``embedkd serve`` under upserts, deletes and searches from six clients, then a restart;
3. a writer process upserting while this process opens the index read-only for info and search;
4. search p50/p99 on a 100k-vector flat index at idle and while saves run back to back.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import machine, markdown_table, run_main, write_json, write_sections
from embedkd.data import load_beir
from embedkd.data.documents import Document
from embedkd.distill import Teacher
from embedkd.distill.teacher import read_aligned_texts
from embedkd.index import Index, IndexParams, build_index
from embedkd.models.manifest import TeacherRef
from embedkd.service.app import _background_priority
from embedkd.testing import LiveServer, free_port, kill9_under_mixed_load


def fuzz(examples: int) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json") as report:
        env = {**os.environ, "EMBEDKD_FUZZ_EXAMPLES": str(examples), "EMBEDKD_FUZZ_REPORT": report.name}
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/service/test_fuzz.py"],
            env=env,
            capture_output=True,
            text=True,
        )
        counts = json.loads(Path(report.name).read_text() or "{}")
    return {
        **counts,
        "examples per route": examples,
        "pytest exit code": proc.returncode,
        "seconds": round(time.perf_counter() - started, 1),
        "hangs": 0 if proc.returncode in (0, 1) else "see pytest output",
        "tail": proc.stdout[-400:],
    }


def small_index(folder: Path, beir: Path, teacher: Teacher, docs: int) -> Path:
    """An index of the first ``docs`` SciFact documents, embedded by the teacher (precomputed when shared)."""
    dataset = load_beir(beir, "test")
    precomputed = beir.parent.parent / "embeddings" / "scifact-mpnet-base" / "corpus.f16.npy"
    if precomputed.is_file():
        teacher.import_embeddings(read_aligned_texts(beir, precomputed), precomputed)
    chosen = list(dataset.corpus.items())[:docs]
    documents = [Document(id=i, title=d["title"], text=d["text"]) for i, d in chosen]
    build_index(
        folder,
        documents,
        teacher=teacher.ref,
        embed=lambda texts: teacher.embeddings(texts, progress=False),
        chunking=False,
        progress=False,
    ).close()
    return folder


WRITER = """
import json, sys
from embedkd.distill.teacher import Teacher
from embedkd.index import Index
from embedkd.data.documents import Document
from embedkd.testing import durable_document
folder, n = sys.argv[1], int(sys.argv[2])
teacher = Teacher.from_model("mpnet-base")
index = Index.open(folder)
print("open", flush=True)
for i in range(n):
    index.upsert([Document(**durable_document(i))], lambda t: teacher.embeddings(t, progress=False))
    print(json.dumps({"acked": i}), flush=True)
    if i % 7 == 0:
        index.save()
index.close()
"""


def two_processes(folder: Path, teacher: Teacher, writes: int) -> dict[str, Any]:
    from embedkd.testing import durable_document

    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(folder), str(writes)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()
    reads = 0
    query = teacher.embeddings(["field note survey"], role="query", progress=False)
    while proc.poll() is None:
        with Index.open(folder, readonly=True) as reader:
            reader.info()
            reader.search(query, 5)
        reads += 1
    acked = [line for line in proc.stdout if line.startswith("{")]
    missing = unsearchable = 0
    with Index.open(folder, readonly=True) as index:
        vectors = index.store.vectors()
        zero_rows = int(np.all(vectors[index.store.live_chunk_ids()] == 0, axis=1).sum())
        for i in range(len(acked)):
            doc = durable_document(i)
            missing += index.store.document(doc["id"]) is None
            hits = index.search(teacher.embeddings([f"{doc['title']} {doc['text']}"], progress=False), 1)[0]
            unsearchable += not hits or hits[0].id != doc["id"]
    return {
        "acknowledged writes": len(acked),
        "read-only opens meanwhile": reads,
        "missing": missing,
        "unsearchable": unsearchable,
        "all-zero vectors": zero_rows,
        "writer exit code": proc.returncode,
    }


def search_during_save(folder: Path, n: int, searches: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    dim = 768
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    docs = [Document(id=f"v{i}", text=f"vector {i}") for i in range(n)]
    rows = {d.id: i for i, d in enumerate(docs)}
    ref = TeacherRef(name="synthetic", fingerprint="synthetic-768", dimension=dim)
    index = build_index(
        folder,
        docs,
        teacher=ref,
        embed=lambda texts: vectors[[rows[f"v{t.split()[-1]}"] for t in texts]],
        params=IndexParams(),
        chunking=False,
        progress=False,
    )
    queries = rng.standard_normal((searches, dim)).astype(np.float32)

    def timed() -> list[float]:
        out = []
        for q in queries:
            started = time.perf_counter()
            index.search(q[None, :], 10)
            out.append((time.perf_counter() - started) * 1000)
        return out

    idle = timed()
    stop = threading.Event()
    saving = threading.Event()
    saves = [0]

    def saver() -> None:
        _background_priority()  # as the service's periodic saver runs
        while not stop.is_set():
            saving.set()
            index.save()
            saving.clear()
            saves[0] += 1

    thread = threading.Thread(target=saver)
    thread.start()
    busy: list[float] = []
    deadline = time.monotonic() + 300
    i = 0
    while len(busy) < searches and time.monotonic() < deadline:  # only searches that overlap a save count
        q = queries[i % len(queries)]
        i += 1
        if not saving.is_set():
            time.sleep(0.001)
            continue
        started = time.perf_counter()
        index.search(q[None, :], 10)
        elapsed = (time.perf_counter() - started) * 1000
        if saving.is_set():
            busy.append(elapsed)
    stop.set()
    thread.join()
    index.close()
    p = {
        name: (float(np.percentile(v, 50)), float(np.percentile(v, 99))) for name, v in (("idle", idle), ("save", busy))
    }
    return {
        "vectors": n,
        "searches": len(busy),
        "saves during the run": saves[0],
        "idle p50 ms": p["idle"][0],
        "idle p99 ms": p["idle"][1],
        "during save p50 ms": p["save"][0],
        "during save p99 ms": p["save"][1],
        "p99 ratio": p["save"][1] / p["idle"][1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", type=Path, required=True)
    parser.add_argument("--beir", type=Path, default=Path("../shared/data/beir/scifact"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--fuzz-examples", type=int, default=600)
    parser.add_argument("--concurrent", default="nothing else")
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": machine(), "concurrent": args.concurrent}
    results["fuzz"] = fuzz(args.fuzz_examples)
    print(json.dumps(results["fuzz"]), flush=True)
    teacher = Teacher.from_model("mpnet-base")
    with tempfile.TemporaryDirectory() as tmp:
        index = small_index(Path(tmp) / "kill9", args.beir, teacher, 300)
        results["kill9"] = kill9_under_mixed_load(
            lambda: LiveServer(index, args.student, free_port()), index, min_acked=60, min_deleted=10, limit_s=240
        )
        print(json.dumps(results["kill9"]), flush=True)
        index = small_index(Path(tmp) / "two", args.beir, teacher, 300)
        results["two_processes"] = two_processes(index, teacher, writes=40)
        print(json.dumps(results["two_processes"]), flush=True)
        results["search_during_save"] = search_during_save(Path(tmp) / "save", 100_000, 300)
        print(json.dumps(results["search_during_save"]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "reliability.json", results)
    write_markdown(results, args.out / "reliability.md")


def write_markdown(r: dict[str, Any], path: Path) -> None:
    f, k, t, s = r["fuzz"], r["kill9"], r["two_processes"], r["search_during_save"]
    rows = [
        ["generated fuzz requests (4 routes, unicode edge cases)", f.get("requests"), "≥ 2,000"],
        ["server errors (5xx) among them", f.get("server_errors"), "0"],
        ["kill -9 under mixed load: acknowledged upserts / deletes", f"{k['acknowledged upserts']} / "
         f"{k['acknowledged deletes']}", ""],
        ["kill -9: acknowledged writes lost", k["lost"], "0"],
        ["kill -9: acknowledged writes unsearchable after restart", k["unsearchable"], "0"],
        ["kill -9: deleted documents returned (phantoms)", k["phantoms"], "0"],
        ["kill -9: 5xx during the load", k["server errors"], "0"],
        ["kill -9: faiss vectors = store chunks after restart", f"{k['faiss vectors']} = {k['store chunks']}", "equal"],
        ["two processes: acknowledged writes / read-only opens meanwhile",
         f"{t['acknowledged writes']} / {t['read-only opens meanwhile']}", ""],
        ["two processes: missing / unsearchable / all-zero vectors",
         f"{t['missing']} / {t['unsearchable']} / {t['all-zero vectors']}", "0 / 0 / 0"],
        [f"search p99 during back-to-back saves vs idle ({s['vectors']:,} vectors, flat)",
         f"{s['during save p99 ms']:.2f} ms vs {s['idle p99 ms']:.2f} ms = {s['p99 ratio']:.2f}x", "≤ 2x"],
    ]  # fmt: skip
    lines = [
        "# Reliability",
        "",
        f"Machine: {r['machine']}. Running at the same time: {r['concurrent']}.",
        "",
        *markdown_table(["check", "measured", "target"], rows),
        "",
        f"Fuzzing: {f.get('examples per route')} hypothesis examples per route, pytest exit code "
        f"{f.get('pytest exit code')}, {f.get('seconds')} s. Kill -9: {k['requests']} requests from six clients "
        "(3 upserting, 1 deleting, 2 searching), then a restart; every acknowledged document was fetched and "
        f"searched for by its own text. Search during save: {s['searches']} searches, each started and ended "
        f"while a save was running ({s['saves during the run']} back-to-back saves on the service's low-priority "
        f"saver thread); p50 {s['during save p50 ms']:.2f} ms vs {s['idle p50 ms']:.2f} ms idle.",
    ]
    path.write_text("\n".join(lines) + "\n")
    # load.md carries the same table as its reliability section (replaced on every run).
    load = path.parent / "load.md"
    if load.is_file():
        write_sections(load, ["## Reliability", "", *lines[2:]])


if __name__ == "__main__":
    run_main(main)
