"""Does `embedkd index check` tell, from an index's documents alone, where a student keeps the teacher's quality?

    python -m benchmarks.index_coverage --student "30-minute=DIR" [--student ...] [--name NAME]

A student writes into its teacher's space only where its training text reached (README, "Queries from a
domain the student never trained on"). `embedkd index check` measures that before any query is served: it
encodes a sample of an index's chunks with the student and compares them with the teacher vectors the
index holds, next to the student's cosine on its own held-out texts of the same kinds
(``embedkd.evaluation.alignment.index_coverage``). This report builds a real index of each of three corpora
with the teacher (fp32, cached; whole documents, unchunked, as each task's own retrieval scores them), runs
that check on each, and sets it beside what the check is meant to predict, measured on the same corpus with
its own queries:

- SciFact (the corpus the default recipe trains on): dev queries (the train qrels; test is not read), BEIR-exact
  nDCG@10;
- the standard library's docstrings (``benchmarks.unseen_docstrings``: summary line -> rest of the docstring);
- STS-B sentences (``benchmarks.unseen_alignment``'s paraphrase search).

For each (student, corpus): the check's cosine on 256 chunks (seed 0) and its ratio to the student's
held-out cosine on texts of the same kinds; the student's mean cosine to the teacher on that corpus's
queries; and asymmetric nDCG@10 x the teacher. Nothing here trains or chooses a recipe.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import cell, labelled, machine, run_main, student_report_parser, write_json, write_report
from benchmarks._scifact import scifact_splits, scifact_teacher
from benchmarks.unseen_alignment import paraphrase_task, rank_gains
from benchmarks.unseen_docstrings import diagonal_gains, docstring_task
from embedkd.data.beir import doc_text
from embedkd.data.documents import Document
from embedkd.data.stdlib import stdlib_corpus
from embedkd.distill import Teacher
from embedkd.evaluation import score_retrieval
from embedkd.evaluation.alignment import index_coverage
from embedkd.index import build_index
from embedkd.models import Encoder


class Task:
    """A corpus with its queries: ``x_teacher(encoder)`` is the encoder's asymmetric nDCG@10 over the
    teacher's."""

    def __init__(self, name: str, docs: list[Document], queries: list[str], teacher: Teacher) -> None:
        self.name, self.docs, self.queries, self.teacher = name, docs, queries, teacher
        self.doc_vectors = teacher.embeddings([_text(d) for d in docs], role="document")
        self.query_vectors = teacher.embeddings(queries, role="query")
        self.teacher_ndcg10 = self.ndcg10(self.query_vectors)

    def ndcg10(self, query_vectors: np.ndarray) -> float:
        raise NotImplementedError

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        return self.teacher.embeddings(texts, role="document")

    def measure(self, encoder: Encoder) -> dict[str, float]:
        vectors = encoder.encode_query(self.queries)
        ndcg = self.ndcg10(vectors)
        return {
            "query_cosine": float(np.mean(np.sum(vectors * self.query_vectors, axis=1))),
            "ndcg10": ndcg,
            "x_teacher": ndcg / self.teacher_ndcg10,
        }


class SciFactTask(Task):
    def __init__(self, data_root: Path) -> None:
        dev = scifact_splits(data_root)["dev"]
        self.dataset = dev
        docs = [Document(id=i, title=d["title"], text=d["text"]) for i, d in dev.corpus.items()]
        super().__init__("SciFact dev (trained on)", docs, list(dev.queries.values()), scifact_teacher(data_root))

    def ndcg10(self, query_vectors: np.ndarray) -> float:
        return score_retrieval(self.dataset, query_vectors, self.doc_vectors).ndcg_at_10


class DocstringTask(Task):
    def __init__(self, teacher: Teacher) -> None:
        ids, queries, rests = docstring_task(stdlib_corpus(None))
        docs = [
            Document(id=f"{i}#{n}", title="", text=rest) for n, (i, rest) in enumerate(zip(ids, rests, strict=True))
        ]
        super().__init__("stdlib docstrings (unseen)", docs, queries, teacher)

    def ndcg10(self, query_vectors: np.ndarray) -> float:
        return float(diagonal_gains(query_vectors @ self.doc_vectors.T)[0].mean())


class ParaphraseTask(Task):
    def __init__(self, sts_path: Path, teacher: Teacher) -> None:
        queries, corpus, self.relevant, self.own = paraphrase_task(sts_path)
        docs = [Document(id=str(n), title="", text=text) for n, text in enumerate(corpus)]
        super().__init__("STS-B sentences (unseen)", docs, queries, teacher)

    def ndcg10(self, query_vectors: np.ndarray) -> float:
        return float(rank_gains(query_vectors @ self.doc_vectors.T, self.relevant, self.own)[0].mean())


def _text(doc: Document) -> str:
    return doc_text(doc.title, doc.text)


def main() -> None:
    parser = student_report_parser(__doc__, "index_coverage")
    parser.add_argument("--sample", type=int, default=256)
    args = parser.parse_args()
    students = labelled(args.student)
    stem = f"index_coverage_{args.name}" if args.name else "index_coverage"
    scifact = SciFactTask(args.data_root)
    tasks: list[Task] = [
        scifact,
        DocstringTask(scifact.teacher),
        ParaphraseTask(args.data_root / "sts" / "stsb-test.tsv", scifact.teacher),
    ]
    encoders = {label: Encoder.load(folder, device="cpu") for label, folder in students}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="index-coverage-") as work:
        for n, task in enumerate(tasks):
            print(f"{task.name}: {len(task.docs)} documents, {len(task.queries)} queries", flush=True)
            index = build_index(
                Path(work) / f"index{n}",
                task.docs,
                teacher=task.teacher.ref,
                embed=task.embed_documents,
                chunking=False,  # whole documents, as each task's own retrieval scores them
                progress=False,
            )
            with index:
                for label, encoder in encoders.items():
                    coverage = index_coverage(encoder, index, encoder.manifest, sample=args.sample)
                    row = {"student": label, "corpus": task.name, **coverage.to_dict(), **task.measure(encoder)}
                    print({k: row[k] for k in ("student", "corpus", "cosine", "ratio", "x_teacher")}, flush=True)
                    rows.append(row)
    results = {
        "machine": machine(),
        "concurrent": args.concurrent,
        "sample": args.sample,
        "students": args.student,
        "teacher_ndcg10": {task.name: task.teacher_ndcg10 for task in tasks},
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / f"{stem}.json", results)
    write_report(
        args.out / f"{stem}.md",
        "Does `embedkd index check` predict where a student keeps the teacher's quality?",
        results,
        [
            f"`embedkd index check` on a real index of each corpus ({args.sample} chunks, seed 0), beside the "
            "student's asymmetric nDCG@10 x the teacher on that corpus's own queries. Ratio: the check's cosine "
            "over the student's cosine on its own held-out texts of the same kinds (documents for chunks over 64 "
            "words, corpus sentences for the rest; its embedkd.json); the verdict's line is "
            f"{rows[0]['covered_ratio'] if rows else ''}. Teacher nDCG@10: "
            + ", ".join(f"{name} {value:.4f}" for name, value in results["teacher_ndcg10"].items())
            + ".",
        ],
        ["student", "corpus", "chunks", "check cosine", "ratio", "verdict", "query cosine", "nDCG@10", "x teacher"],
        [
            [
                r["student"],
                r["corpus"],
                r["chunks"],
                cell(r["cosine"], ".4f"),
                cell(r["ratio"], ".3f"),
                "covered" if r["covered"] else ("not covered" if r["covered"] is False else "-"),
                cell(r["query_cosine"], ".4f"),
                cell(r["ndcg10"], ".4f"),
                cell(r["x_teacher"], ".3f"),
            ]
            for r in rows
        ],
    )


if __name__ == "__main__":
    run_main(main)
