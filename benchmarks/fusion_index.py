"""Fusion through embedkd's own indexes and retriever: what `embedkd search --fuse-index` runs, on SciFact.

    PYTHONPATH=. python -m benchmarks.fusion_index --student "60-minute=DIR" [--student ...] [--name NAME]

`benchmarks.dual_space` measured the fusion on score matrices. This builds the two indexes a user would
build (the teacher's index of the SciFact corpus, from the precomputed vectors, and MiniLM-L6's own, with
`embedkd index build --teacher minilm-l6`'s code, no chunking in either), searches them with
:class:`embedkd.retrieval.AsymmetricRetriever` and a :class:`~embedkd.retrieval.Fusion`, and scores the hits
it returns (BEIR-exact nDCG@10; dev = SciFact train qrels, test recorded only). It also times a batch-1
`search` of one query, with and without the fusion, the two taking turns (encoding, in one shared pass where
the student's lower layers are the base's, faiss and the rescoring of the candidates, all included). Run it
on an otherwise idle machine.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import (
    labelled,
    machine,
    markdown_table,
    run_main,
    student_report_parser,
    write_json,
    write_sections,
)
from benchmarks._scifact import scifact_splits, scifact_teacher
from embedkd.data.documents import Document
from embedkd.distill import Teacher
from embedkd.evaluation.retrieval import evaluate_run
from embedkd.index import Index, build_index
from embedkd.models import Encoder
from embedkd.retrieval import AsymmetricRetriever, Fusion


def built(folder: Path, docs: list[Document], teacher: Teacher) -> Index:
    """The index in ``folder``, built by ``teacher`` without chunking if it is not there yet."""
    if not (folder / "manifest.json").is_file():
        embed = lambda texts: teacher.embeddings(texts, progress=False)  # noqa: E731
        build_index(folder, docs, teacher=teacher.ref, embed=embed, chunking=False, progress=False).close()
    return Index.open(folder, readonly=True)


def ndcg10(retriever: AsymmetricRetriever, data: Any) -> float:
    hits = retriever.search(list(data.queries.values()), 10)
    run = {qid: {h.id: h.score for h in query_hits} for qid, query_hits in zip(data.queries, hits, strict=True)}
    return evaluate_run(data.qrels, run).ndcg_at_10


def batch1_ms(retrievers: dict[str, AsymmetricRetriever], queries: list[str]) -> dict[str, float]:
    """Median ms of one query's ``search`` (k 10) for each retriever, taking turns query by query."""
    times: dict[str, list[float]] = {name: [] for name in retrievers}
    for i, query in enumerate(queries):
        for name, retriever in retrievers.items():
            start = time.perf_counter()
            retriever.search([query], 10)
            if i >= 10:  # warm-up
                times[name].append((time.perf_counter() - start) * 1000)
    return {name: float(np.median(ms)) for name, ms in times.items()}


def main() -> None:
    parser = student_report_parser(__doc__, "fusion_index")
    parser.add_argument("--base", default="minilm-l6", help="The model that builds the second index.")
    parser.add_argument("--weights", default="1,1.5", help="Fusion weights to score (comma-separated).")
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--latency-queries", type=int, default=200)
    parser.add_argument("--work", type=Path, default=Path(".embedkd/fusion_index"))
    args = parser.parse_args()
    students = labelled(args.student)
    stem = f"fusion_index_{args.name}" if args.name else "fusion_index"
    splits = scifact_splits(args.data_root)
    docs = [Document(id=i, title=d["title"], text=d["text"]) for i, d in splits["test"].corpus.items()]
    teacher = scifact_teacher(args.data_root)
    base_teacher = Teacher.from_model(args.base, precision="fp32")
    started = time.perf_counter()
    main_index = built(args.work / "teacher-index", docs, teacher)
    base_index = built(args.work / f"{args.base}-index", docs, base_teacher)
    base = Encoder.load(args.base, device="cpu")
    weights = [float(w) for w in args.weights.split(",")]
    results: dict[str, Any] = {
        "machine": machine(),
        "concurrent": args.concurrent,
        "base": args.base,
        "candidates": args.candidates,
        "indexes_built_s": round(time.perf_counter() - started, 1),
        "rows": [],
    }
    for label, folder in students:
        student = Encoder.load(folder, device="cpu")
        plain = AsymmetricRetriever(main_index, student=student)
        row: dict[str, Any] = {
            "label": label,
            "folder": folder,
            "alone": {s: ndcg10(plain, d) for s, d in splits.items()},
        }
        fused = {
            w: AsymmetricRetriever(
                main_index, student=student, fusion=Fusion(base_index, base, weight=w, candidates=args.candidates)
            )
            for w in weights
        }
        row["fused"] = {f"{w:g}": {s: ndcg10(r, d) for s, d in splits.items()} for w, r in fused.items()}
        trunk = fused[weights[0]].trunk
        row["shared_layers"] = trunk.shared if trunk is not None else 0  # run once for both query vectors
        queries = list(splits["test"].queries.values())[: args.latency_queries]
        row["batch1_ms"] = batch1_ms({"alone": plain, f"fused, w {weights[0]:g}": fused[weights[0]]}, queries)
        print(row, flush=True)
        results["rows"].append(row)
    main_index.close()
    base_index.close()
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / f"{stem}.json", results)
    write_markdown(results, args.out / f"{stem}.md")


def write_markdown(results: dict[str, Any], path: Path) -> None:
    table = []
    for row in results["rows"]:
        table.append([row["label"], "alone", f"{row['alone']['dev']:.4f}", f"{row['alone']['test']:.4f}"])
        for w, scores in row["fused"].items():
            table.append(
                [row["label"], f"+ {results['base']} index, w {w}", f"{scores['dev']:.4f}", f"{scores['test']:.4f}"]
            )
    latency = [
        [row["label"], name, f"{ms:.1f}", row.get("shared_layers", 0) if name != "alone" else ""]
        for row in results["rows"]
        for name, ms in row["batch1_ms"].items()
    ]
    lines = [
        "# Fusion through embedkd's indexes and retriever (`embedkd search --fuse-index`), SciFact",
        "",
        f"Machine: {results['machine']}. Ran beside: {results['concurrent']}. "
        "Command: `python -m benchmarks.fusion_index` (see its docstring).",
        "",
        f"Two index folders of the SciFact corpus, no chunking: the teacher's (from the precomputed vectors) and "
        f"{results['base']}'s own (built in {results['indexes_built_s']} s when not cached). Each student searches "
        f"the teacher's index; with the fusion, its {results['candidates']} best documents are rescored with "
        f"{results['base']}'s score from the second index added, times w. nDCG@10 of the hits the retriever "
        "returns; dev = SciFact train qrels, test recorded only.",
        "",
        *markdown_table(["student", "search", "dev nDCG@10", "test nDCG@10 (recorded only)"], table),
        "",
        "Batch-1 `search` (k 10) of one SciFact test claim, median ms, the two taking turns. The fused search "
        "embeds the query for both indexes, running the student's layers that are the base's own once "
        "(`SharedTrunk`; two passes where there are none), then rescores its candidates:",
        "",
        *markdown_table(["student", "search", "p50 ms", "layers run once for both"], latency),
        "",
    ]
    write_sections(path, lines)  # keeps the file's own sections, such as a reading, on a rerun
    print("\n".join(lines))


if __name__ == "__main__":
    run_main(main)
