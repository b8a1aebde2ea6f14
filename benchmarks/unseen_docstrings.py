"""A second domain no training text comes from: the Python standard library's docstrings.

    PYTHONPATH=. python -m benchmarks.unseen_docstrings --student "60-minute=DIR" [--student ...] [--name NAME]

The STS-B paraphrase search of ``benchmarks.unseen_alignment`` is, so far, the only unseen domain the
students' claims rest on. This one is of another kind: each docstring's first sentence (its summary line)
is a query, and the rest of the same docstring is its one relevant document, among the rests of every
docstring (``docstring_task``). Neither the generic query-like texts nor the SciFact corpus the students
trained on hold code documentation. Nothing here chooses anything: the fusion weights are the product's
default (1) and the one SciFact dev chose in ``dual_space`` (1.5).

Rows: the teacher searching its own vectors; MiniLM-L6 searching its own (undistilled); each student
searching the teacher's vectors (asymmetric), alone and fused with MiniLM-L6's own scores
(``student . teacher_doc + w * base . base_doc``, every document scored); and the teacher fused the same
way. Each with nDCG@10, x the teacher, and a 95% paired-bootstrap interval of its difference from the
teacher and from MiniLM-L6 (queries resampled).
"""

from __future__ import annotations

import re
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
from benchmarks.dual_space import paired_ci
from benchmarks.unseen_alignment import agreement, rank_gains
from embedkd.data.documents import Document
from embedkd.data.stdlib import stdlib_corpus
from embedkd.distill import Teacher
from embedkd.models import Encoder

WEIGHTS = (1.0, 1.5)
_FIRST_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def docstring_task(
    docs: list[Document], *, min_words: int = 4, max_words: int = 40, min_rest_chars: int = 80
) -> tuple[list[str], list[str], list[str]]:
    """(ids, queries, documents): each docstring's first sentence, and the rest of it as its document.

    Docstrings whose first sentence is shorter than ``min_words`` or longer than ``max_words``, or whose
    rest is under ``min_rest_chars``, are left out, as is any repeated query or document (inherited or
    copied docstrings), so every query has exactly one relevant document."""
    rows: list[tuple[str, str, str]] = []
    for doc in docs:
        parts = _FIRST_SENTENCE.split(doc.text, maxsplit=1)
        if len(parts) != 2:
            continue
        head, rest = parts[0].strip(), parts[1].strip()
        if min_words <= len(head.split()) <= max_words and len(rest) >= min_rest_chars:
            rows.append((doc.id, head, rest))
    heads = [h for _, h, _ in rows]
    rests = [r for _, _, r in rows]
    rows = [row for row in rows if heads.count(row[1]) == 1 and rests.count(row[2]) == 1]
    return [i for i, _, _ in rows], [h for _, h, _ in rows], [r for _, _, r in rows]


def diagonal_gains(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each query's nDCG@10 when document i is query i's one relevant document, and each query's top 10.
    (``rank_gains`` with no query's own row to leave out: that goes to an extra column that never ranks.)"""
    padded = np.concatenate([scores, np.full((len(scores), 1), -np.inf, dtype=scores.dtype)], axis=1)
    return rank_gains(padded, np.arange(len(scores)), np.full(len(scores), scores.shape[1]))


def main() -> None:
    parser = student_report_parser(__doc__, "unseen_docstrings", data_root=False)
    parser.add_argument("--base", default="minilm-l6")
    args = parser.parse_args()
    students = labelled(args.student)
    stem = f"unseen_docstrings_{args.name}" if args.name else "unseen_docstrings"
    ids, queries, corpus = docstring_task(stdlib_corpus(None))
    print(f"{len(queries)} queries, each with one relevant document among {len(corpus)}", flush=True)
    teacher = Teacher.from_model("mpnet-base", precision="fp32")
    base = Encoder.load(args.base, device="cpu")
    teacher_docs = teacher.embeddings(corpus, role="document")
    base_scores = base.encode_query(queries) @ base.encode_cached(corpus, role="document").T
    teacher_scores = teacher.embeddings(queries, role="query") @ teacher_docs.T
    gains: dict[str, np.ndarray] = {}
    tops: dict[str, np.ndarray] = {}

    def add(label: str, scores: np.ndarray) -> None:
        gains[label], tops[label] = diagonal_gains(scores)
        print(label, round(float(gains[label].mean()), 4), flush=True)

    add("teacher / teacher", teacher_scores)
    add(f"{args.base} / its own", base_scores)
    for w in WEIGHTS:
        add(f"teacher + {args.base} / its own, w {w:g}", teacher_scores + w * base_scores)
    for label, folder in students:
        student = Encoder.load(folder, device="cpu")
        space = student.encode_query(queries) @ teacher_docs.T
        add(f"{label} → teacher", space)
        for w in WEIGHTS:
            add(f"{label} → teacher + {args.base} / its own, w {w:g}", space + w * base_scores)
    reference, own = gains["teacher / teacher"], gains[f"{args.base} / its own"]
    rows = [
        {
            "queries": label,
            "ndcg10": float(g.mean()),
            "x_teacher": float(g.mean() / reference.mean()),
            "agreement10": agreement(tops[label], tops["teacher / teacher"]),
            "vs_teacher": paired_ci(g, reference),
            "vs_base": paired_ci(g, own),
        }
        for label, g in gains.items()
    ]
    results = {
        "machine": machine(),
        "concurrent": args.concurrent,
        "base": args.base,
        "task": {"queries": len(queries), "documents": len(corpus), "example": [ids[0], queries[0], corpus[0]]},
        "students": args.student,
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / f"{stem}.json", results)
    write_markdown(results, args.out / f"{stem}.md")


def _interval(cell: list[float]) -> str:
    mean, low, high = cell
    return f"{mean:+.4f} [{low:+.4f}, {high:+.4f}]"


def write_markdown(results: dict[str, Any], path: Path) -> None:
    task = results["task"]
    lines = [
        "# A second unseen domain: searching the standard library's docstrings by their summary lines",
        "",
        f"Machine: {results['machine']}. Ran beside: {results['concurrent']}. "
        "Command: `python -m benchmarks.unseen_docstrings` (see its docstring).",
        "",
        f"{task['queries']} queries (each docstring's first sentence), each with one relevant document (the rest "
        f"of the same docstring) among {task['documents']}. No training text is code documentation. "
        f"Example: `{task['example'][0]}`: query {task['example'][1]!r}. "
        "x = times the teacher searching its own vectors; agreement@10 = share of the teacher's top 10 returned. "
        "Intervals: 95% paired bootstrap over queries (5,000 resamplings); one that holds 0 is a difference "
        "these queries cannot resolve.",
        "",
        *markdown_table(
            ["queries → documents", "nDCG@10", "x teacher", "agreement@10", "vs the teacher", f"vs {results['base']}"],
            [
                [
                    r["queries"],
                    f"{r['ndcg10']:.4f}",
                    f"{r['x_teacher']:.3f}",
                    f"{r['agreement10']:.3f}",
                    _interval(r["vs_teacher"]),
                    _interval(r["vs_base"]),
                ]
                for r in results["rows"]
            ],
        ),
        "",
    ]
    write_sections(path, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    run_main(main)
