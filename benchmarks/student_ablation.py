"""Students of one recipe trained for the same steps, one change each, against a reference (the first, or
``--reference LABEL``: e.g. a run's kept checkpoint against its last step).

    python -m benchmarks.student_ablation --name NAME --student "default=DIR" --student "change=DIR" ...

For each student, its queries search the teacher's vectors:

- SciFact dev (train qrels, 809 queries, which choose recipes) and test (300, recorded) nDCG@10, with the
  95% paired-bootstrap interval of the difference from the reference, per query;
- teacher agreement@10 over all 1,109 SciFact queries;
- two domains no training text comes from: STS-B paraphrase search and the standard library's docstrings
  searched by their summary lines (``unseen_alignment``, ``unseen_docstrings``), as x the teacher, with
  the paired interval of the difference from the reference;
- the kept step and held-out cosine, from the student's manifest;
- with ``--symmetric``, the student searching its own vectors of the documents (student/student, dev and
  test, as x the teacher searching its own): a few minutes more per student.

Writes ``student_ablation_NAME.{md,json}``; ``--reading FILE`` appends a written reading to the markdown.
"""

from __future__ import annotations

import argparse
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import cell, labelled, machine, markdown_table, run_main, write_json
from benchmarks.dual_space import paired_ci, per_query_ndcg
from benchmarks.recipe_ablation import Judge
from benchmarks.unseen_alignment import agreement, paraphrase_task, rank_gains
from benchmarks.unseen_docstrings import diagonal_gains, docstring_task
from embedkd.data.stdlib import stdlib_corpus
from embedkd.distill import Teacher
from embedkd.errors import InputError
from embedkd.models import Encoder
from embedkd.models.manifest import StudentManifest


class Domains:
    """Everything a student is measured on, computed once for the teacher."""

    def __init__(self, data_root: Path) -> None:
        teacher = Teacher.from_model("mpnet-base", precision="fp32")
        self.teacher = teacher
        self.judge = Judge(data_root, teacher)
        _, self.doc_queries, doc_rest = docstring_task(stdlib_corpus(None))
        self.doc_docs = teacher.embeddings(doc_rest, role="document")
        self.doc_teacher = diagonal_gains(teacher.embeddings(self.doc_queries, role="query") @ self.doc_docs.T)[0]
        self.sts_queries, corpus, self.sts_relevant, self.sts_own = paraphrase_task(data_root / "sts" / "stsb-test.tsv")
        self.sts_docs = teacher.embeddings(corpus, role="document")
        teacher_sts = teacher.embeddings(self.sts_queries, role="query") @ self.sts_docs.T
        self.sts_teacher = rank_gains(teacher_sts, self.sts_relevant, self.sts_own)[0]

    def gains(self, student: Encoder) -> dict[str, np.ndarray]:
        judge = self.judge
        return {
            "dev": per_query_ndcg(judge.dev, student.encode_query(list(judge.dev.queries.values())) @ judge.docs.T),
            "test": per_query_ndcg(judge.test, student.encode_query(list(judge.test.queries.values())) @ judge.docs.T),
            "sts": rank_gains(
                student.encode_query(self.sts_queries) @ self.sts_docs.T, self.sts_relevant, self.sts_own
            )[0],
            "docstrings": diagonal_gains(student.encode_query(self.doc_queries) @ self.doc_docs.T)[0],
        }

    def symmetric(self, student: Encoder) -> dict[str, float]:
        """Student/student nDCG@10 on dev and test, each as x the teacher searching its own vectors."""
        judge = self.judge
        docs = student.encode_document(judge.test.doc_texts())
        out: dict[str, float] = {}
        for key, data in (("dev", judge.dev), ("test", judge.test)):
            own = per_query_ndcg(data, student.encode_query(list(data.queries.values())) @ docs.T).mean()
            out[f"sym_{key}_ndcg10"] = float(own)
            out[f"sym_{key}_x_teacher"] = float(own / self._teacher_ndcg[key])
        return out

    @cached_property
    def _teacher_ndcg(self) -> dict[str, float]:
        """The teacher searching its own vectors: dev and test nDCG@10, computed once for every student."""
        judge = self.judge
        return {
            key: float(
                per_query_ndcg(
                    data, self.teacher.embeddings(list(data.queries.values()), role="query") @ judge.docs.T
                ).mean()
            )
            for key, data in (("dev", judge.dev), ("test", judge.test))
        }

    def agreement10(self, student: Encoder) -> float:
        judge = self.judge
        return agreement(judge._top(student.encode_query(judge.all_queries)), judge.teacher_top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument(
        "--student",
        action="append",
        default=[],
        help='LABEL=FOLDER (repeatable), in row order; a LABEL that starts with - needs --student="LABEL=FOLDER".',
    )
    parser.add_argument("--reference", help="The LABEL the Δ columns are measured from (default: the first student).")
    parser.add_argument("--name", required=True, help="Write student_ablation_NAME.{md,json}.")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--recipe", default="", help="How the students were trained (the command), for the report.")
    parser.add_argument("--concurrent", default="nothing else", help="What ran beside the training and this run.")
    parser.add_argument("--reading", type=Path, help="Markdown appended to the report.")
    parser.add_argument("--symmetric", action="store_true", help="Also student/student nDCG@10 (dev and test).")
    args = parser.parse_args()
    if len(args.student) < 2:
        parser.error("give at least two --student LABEL=FOLDER")
    folders = dict(labelled(args.student))
    reference_label = args.reference or next(iter(folders))
    if reference_label not in folders:
        raise InputError(f"--reference {reference_label!r} is none of the students' labels {list(folders)}")
    loaded = {label: Encoder.load(folder, device="cpu") for label, folder in folders.items()}  # bad folders fail here
    domains = Domains(args.data_root)
    all_gains = {label: domains.gains(student) for label, student in loaded.items()}
    reference = all_gains[reference_label]
    rows: list[dict[str, Any]] = []
    for label, folder in folders.items():
        student, gains = loaded[label], all_gains[label]
        manifest = StudentManifest.read(Path(folder))
        alignment = manifest.alignment if manifest else None
        row: dict[str, Any] = {
            "student": label,
            "folder": folder,
            "kept_step": (alignment.extra or {}).get("step") if alignment else None,
            "heldout_cosine": alignment.mean_cosine if alignment else None,
            "teacher_agreement10": domains.agreement10(student),
        }
        for key, teacher in (
            ("dev", None),
            ("test", None),
            ("sts", domains.sts_teacher),
            ("docstrings", domains.doc_teacher),
        ):
            row[f"{key}_ndcg10"] = float(gains[key].mean())
            if teacher is not None:
                row[f"{key}_x_teacher"] = float(gains[key].mean() / teacher.mean())
            row[f"{key}_vs_reference"] = paired_ci(gains[key], reference[key])
        if args.symmetric:
            row.update(domains.symmetric(student))
        rows.append(row)
        print(row, flush=True)
    results = {
        "machine": machine(),
        "concurrent": args.concurrent,
        "recipe": args.recipe,
        "reference": f"{reference_label}={folders[reference_label]}",
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / f"student_ablation_{args.name}.json", results)
    reading = args.reading.read_text() if args.reading else ""
    (args.out / f"student_ablation_{args.name}.md").write_text(report(results, reading))


def _delta(cell: list[float]) -> str:
    mean, low, high = cell
    return f"{mean:+.4f} [{low:+.4f}, {high:+.4f}]"


def report(results: dict[str, Any], reading: str = "") -> str:
    header = [
        "student",
        "kept step",
        "dev nDCG@10",
        "Δ dev [95%]",
        "test nDCG@10",
        "Δ test [95%]",
        "agreement@10",
        "held-out cos",
        "STS-B x teacher",
        "Δ STS-B [95%]",
        "docstrings x teacher",
        "Δ docstrings [95%]",
    ]
    body = [
        [
            r["student"],
            cell(r["kept_step"]),
            f"{r['dev_ndcg10']:.4f}",
            _delta(r["dev_vs_reference"]),
            f"{r['test_ndcg10']:.4f}",
            _delta(r["test_vs_reference"]),
            f"{r['teacher_agreement10']:.3f}",
            cell(r["heldout_cosine"], ".3f"),
            f"{r['sts_x_teacher']:.3f}",
            _delta(r["sts_vs_reference"]),
            f"{r['docstrings_x_teacher']:.3f}",
            _delta(r["docstrings_vs_reference"]),
        ]
        for r in results["rows"]
    ]
    if all("sym_dev_ndcg10" in r for r in results["rows"]):
        header += ["student/student dev (x teacher)", "student/student test (x teacher)"]
        for line, r in zip(body, results["rows"], strict=True):
            line += [
                f"{r['sym_dev_ndcg10']:.4f} ({r['sym_dev_x_teacher']:.3f})",
                f"{r['sym_test_ndcg10']:.4f} ({r['sym_test_x_teacher']:.3f})",
            ]
    lines = [
        "# Students of one recipe at equal steps, one change each",
        "",
        f"Machine: {results['machine']}. Ran beside: {results['concurrent']}. "
        "Command: `python -m benchmarks.student_ablation` (see its docstring).",
        "",
        f"Recipe: {results['recipe'] or 'see the reading'}. Reference (Δ columns): {results['reference']}.",
        "",
        "Queries encoded by each student search the teacher's document vectors. Dev = SciFact train qrels (809 "
        "queries, chooses); test = SciFact test (300, recorded only); agreement@10 = share of the teacher's top 10 "
        "over all 1,109 SciFact queries. STS-B paraphrase search and stdlib docstrings (summary line → rest) are "
        "domains no training text comes from. Intervals: 95% paired bootstrap over queries (5,000 resamples). "
        "Kept step and held-out cosine come from the student's manifest; – marks a folder without one (a raw "
        "training checkpoint).",
        "",
        *markdown_table(header, body),
        "",
    ]
    return "\n".join(lines) + ("\n" + reading.strip() + "\n" if reading.strip() else "")


if __name__ == "__main__":
    run_main(main)
