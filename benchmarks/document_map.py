"""A label-free correction of the student's queries, fitted on the documents of the index it searches.

    PYTHONPATH=. python -m benchmarks.document_map --student "seed 5, 120 min=DIR" [--name NAME]

Every index holds the teacher's vector of each document, and the student can embed the same documents
cheaply. Where the student never trained (``unseen_docstrings``), its vectors drift from the teacher's;
a linear map fitted on the pairs (student's document vector, teacher's) might carry the correction over
to the queries. The map is ridge regression pulled towards the identity,

    W = argmin ||S W - T||^2 + lam ||W - I||^2   (S, T: the student's and the teacher's document vectors),

and a query is searched as ``normalize(q W)``; ``offset`` adds only the difference of the two mean document
vectors. No query or label is used to fit or choose: ``lam`` is read against the cosine to the teacher on
a fifth of the documents held out from the fit (the "chosen" row), and every lam is listed.

Two corpora: the standard library's docstrings (queries: summary lines, documents: the rests, a domain no
training text comes from) and SciFact (the domain the students trained on; dev = train qrels, test
recorded only). A correction worth shipping would lift the first without lowering the second.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import labelled, machine, markdown_table, run_main, save_results, student_report_parser
from benchmarks.recipe_ablation import Judge
from benchmarks.unseen_docstrings import diagonal_gains, docstring_task
from embedkd.data.stdlib import stdlib_corpus
from embedkd.distill import Teacher
from embedkd.evaluation import alignment_scores
from embedkd.models import Encoder

LAMBDAS = (0.1, 1.0, 10.0, 100.0)


def normalized(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def fit_map(student: np.ndarray, teacher: np.ndarray, lam: float) -> np.ndarray:
    """The ridge map from the student's vectors to the teacher's, pulled towards the identity by ``lam``
    (the two must have one dimension, as every student of one teacher does)."""
    s, t = student.astype(np.float64), teacher.astype(np.float64)
    eye = np.eye(s.shape[1])
    return np.linalg.solve(s.T @ s + lam * eye, s.T @ t + lam * eye)


def heldout_cosine(student: np.ndarray, teacher: np.ndarray, lam: float, seed: int = 0) -> float:
    """Mean cosine to the teacher on a fifth of the documents, with the map fitted on the other four."""
    order = np.random.default_rng(seed).permutation(len(student))
    cut = int(0.8 * len(student))
    fit, held = order[:cut], order[cut:]
    return alignment_scores(student[held] @ fit_map(student[fit], teacher[fit], lam), teacher[held]).mean_cosine


def corrections(student_docs: np.ndarray, teacher_docs: np.ndarray) -> list[tuple[str, Any, float | None]]:
    """(label, how to correct a query, held-out document cosine) for none, the offset and each lam."""
    offset = teacher_docs.mean(axis=0) - student_docs.mean(axis=0)
    rows: list[tuple[str, Any, float | None]] = [
        ("none", lambda q: q, alignment_scores(student_docs, teacher_docs).mean_cosine),
        ("offset", lambda q: normalized(q + offset), None),
    ]
    for lam in LAMBDAS:
        w = fit_map(student_docs, teacher_docs, lam)
        rows.append((f"lam {lam:g}", lambda q, w=w: normalized(q @ w), heldout_cosine(student_docs, teacher_docs, lam)))
    return rows


def chosen(rows: Sequence[dict[str, Any]]) -> str:
    """The lam row with the highest held-out document cosine (ties: the stronger pull to the identity)."""
    fitted = [r for r in rows if r["correction"].startswith("lam")]
    return max(reversed(fitted), key=lambda r: r["heldout_doc_cos"])["correction"]


class Corrected:
    """A student whose query vectors pass through a correction (the ``Judge``'s encoder interface). The
    student's own vectors are kept in ``memo`` (shared between corrections), so each text list is
    encoded once."""

    def __init__(self, student: Encoder, correct: Any, memo: dict[tuple[str, ...], np.ndarray]) -> None:
        self.student, self.correct, self.memo = student, correct, memo

    def encode_query(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        key = tuple(texts)
        if key not in self.memo:
            self.memo[key] = self.student.encode_query(texts, batch_size=batch_size)
        return np.asarray(self.correct(self.memo[key]), dtype=np.float32)


def main() -> None:
    parser = student_report_parser(__doc__, "document_map")
    args = parser.parse_args()
    if not args.student:
        parser.error("give at least one --student LABEL=FOLDER")
    students = [(label, Encoder.load(folder, device="cpu")) for label, folder in labelled(args.student)]
    teacher = Teacher.from_model("mpnet-base", precision="fp32")
    _, queries, corpus = docstring_task(stdlib_corpus(None))
    doc_teacher = teacher.embeddings(corpus, role="document")
    doc_teacher_queries = teacher.embeddings(queries, role="query")
    doc_reference = float(diagonal_gains(doc_teacher_queries @ doc_teacher.T)[0].mean())
    judge = Judge(args.data_root, teacher)
    sci_corpus = judge.test.doc_texts()
    rows: list[dict[str, Any]] = []
    for label, student in students:
        doc_queries = student.encode_query(queries)
        doc_student = student.encode_document(corpus)
        for name, correct, cosine in corrections(doc_student, doc_teacher):
            q = correct(doc_queries)
            rows.append(
                {
                    "student": label,
                    "corpus": "docstrings",
                    "correction": name,
                    "heldout_doc_cos": cosine,
                    "query_cos": alignment_scores(q, doc_teacher_queries).mean_cosine,
                    "ndcg10": float(diagonal_gains((q @ doc_teacher.T).astype(np.float32))[0].mean()),
                }
            )
            print(rows[-1], flush=True)
        sci_student = student.encode_document(sci_corpus)
        memo: dict[tuple[str, ...], np.ndarray] = {}
        for name, correct, cosine in corrections(sci_student, judge.docs):
            scores = judge(Corrected(student, correct, memo))  # type: ignore[arg-type]
            row = {"student": label, "corpus": "scifact", "correction": name, "heldout_doc_cos": cosine}
            rows.append({**row, **scores})
            print(rows[-1], flush=True)
    results = {
        "machine": machine(),
        "concurrent": args.concurrent,
        "students": args.student,
        "docstrings_teacher_ndcg10": doc_reference,
        "lambdas": list(LAMBDAS),
        "rows": rows,
    }
    save_results(results, args.out, f"document_map_{args.name}" if args.name else "document_map", write_markdown)


def write_markdown(results: dict[str, Any], path: Path) -> None:
    reference = results["docstrings_teacher_ndcg10"]
    doc_rows: list[list[str]] = []
    sci_rows: list[list[str]] = []
    for student in dict.fromkeys(r["student"] for r in results["rows"]):
        mine = [r for r in results["rows"] if r["student"] == student]
        for corpus, table in (("docstrings", doc_rows), ("scifact", sci_rows)):
            rows = [r for r in mine if r["corpus"] == corpus]
            pick = chosen(rows)
            for r in rows:
                name = f"{r['correction']} (chosen)" if r["correction"] == pick else r["correction"]
                cos = "–" if r["heldout_doc_cos"] is None else f"{r['heldout_doc_cos']:.3f}"
                if corpus == "docstrings":
                    x = r["ndcg10"] / reference
                    table.append([student, name, cos, f"{r['query_cos']:.3f}", f"{r['ndcg10']:.4f} ({x:.3f}x)"])
                else:
                    agree = f"{r['teacher_agreement10']:.3f}"
                    table.append([student, name, cos, f"{r['dev_ndcg10']:.4f}", f"{r['test_ndcg10']:.4f}", agree])
    lines = [
        "# A correction of the student's queries fitted on the index's own documents",
        "",
        f"Machine: {results['machine']}. Ran beside: {results['concurrent']}. "
        "Command: `python -m benchmarks.document_map` (see its docstring).",
        "",
        "Each student's query vectors pass through a map fitted, per corpus, on the pairs (student's vector, "
        "teacher's vector) of the documents the index holds: ridge regression pulled towards the identity by "
        "lam, or only the difference of the two mean document vectors (offset). No query or label fits or "
        "chooses it: the held-out document cosine (a fifth of the documents left out of the fit; for `none`, "
        "the student's own cosine on all of them) picks lam.",
        "",
        f"Standard-library docstrings (a domain no training text comes from; teacher nDCG@10 {reference:.4f}):",
        "",
        *markdown_table(["student", "correction", "held-out doc cos", "query cos to teacher", "nDCG@10"], doc_rows),
        "",
        "SciFact (the domain the students trained on; dev chooses, test recorded only):",
        "",
        *markdown_table(
            ["student", "correction", "held-out doc cos", "dev nDCG@10", "test nDCG@10", "agreement@10"], sci_rows
        ),
        "",
    ]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    run_main(main)
