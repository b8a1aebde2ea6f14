"""Two students in the teacher's space, averaged: does an ensemble keep more of the teacher on new domains?

    python -m benchmarks.student_ensemble --name amd \\
        --student "cut=.embedkd/curve/student" --student "minilm=.embedkd/curve_minilm/student" \\
        --ensemble cut+minilm

Every student of the project writes into the one teacher's space, so two of them can be averaged (the mean
of their normalized query vectors, normalized again) and still search the teacher's index. A student cut
from the teacher's layers knows only what its training text taught it; a MiniLM-L6 student keeps more of
what it learned in pre-training (``unseen_alignment_tokens_ablation.md``). Their errors differ, so the
mean may be closer to the teacher than either, at the cost of two forward passes per query.

Each row, single student or mean, is judged as the recipe ablation judges (SciFact dev nDCG@10 chooses,
test is recorded only, agreement@10 over all 1,109 claims) and as ``unseen_alignment.py`` judges a domain
no training text comes from (STS-B: cosine to the teacher and paraphrase search in the teacher's space).
With ``--latency`` each row's batch-1 query latency is measured too (run it on an otherwise idle machine).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import labelled, machine, run_main, save_results, student_report_parser, write_report
from benchmarks.frontier import encode_latency
from benchmarks.recipe_ablation import Judge
from benchmarks.unseen_alignment import ParaphraseJudge
from embedkd.distill import Teacher
from embedkd.models import Encoder


class MeanEncoder:
    """The normalized mean of several students' normalized query vectors (all in one teacher's space)."""

    def __init__(self, members: Sequence[Encoder]) -> None:
        self.members = list(members)

    def encode_query(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        total = sum(m.encode_query(texts, batch_size=batch_size) for m in self.members)
        mean = np.asarray(total, dtype=np.float32)
        return mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)


def main() -> None:
    parser = student_report_parser(__doc__, "student_ensemble")
    parser.add_argument("--ensemble", action="append", default=[], help="LABEL+LABEL[+...] (repeatable).")
    parser.add_argument("--latency", action="store_true", help="Also measure batch-1 query latency.")
    args = parser.parse_args()
    if not args.student:
        parser.error("give at least one --student LABEL=FOLDER")
    folders = dict(labelled(args.student))
    students = {label: Encoder.load(folder, device="cpu") for label, folder in folders.items()}
    rows: dict[str, Any] = {label: students[label] for label in students}
    for spec in args.ensemble:
        unknown = [m for m in spec.split("+") if m not in students]
        if unknown:
            parser.error(f"--ensemble {spec}: no --student labelled {', '.join(unknown)}")
        rows[spec] = MeanEncoder([students[m] for m in spec.split("+")])

    teacher = Teacher.from_model("mpnet-base", precision="fp32")
    judge = Judge(args.data_root, teacher)
    paraphrase = ParaphraseJudge(args.data_root / "sts" / "stsb-test.tsv", teacher)
    latency_queries = list(judge.test.queries.values())

    results: dict[str, Any] = {
        "machine": machine(),
        "concurrent": args.concurrent,
        "students": folders,
        "teacher_paraphrase_ndcg10": paraphrase.teacher_ndcg10,
        "rows": [],
    }
    for label, encoder in rows.items():
        row: dict[str, Any] = {"row": label, "members": label.split("+"), **judge(encoder), **paraphrase(encoder)}
        if args.latency:
            p50, p99, _ = encode_latency(encoder, latency_queries)
            row["batch1_p50_ms"], row["batch1_p99_ms"] = p50, p99
        results["rows"].append(row)
        print(json.dumps(row), flush=True)
    stem = f"student_ensemble_{args.name}" if args.name else "student_ensemble"
    save_results(results, args.out, stem, write_markdown)


def write_markdown(results: dict[str, Any], path: Path) -> None:
    teacher = results["teacher_paraphrase_ndcg10"]
    latency = any("batch1_p50_ms" in r for r in results["rows"])
    header = ["query encoder", "dev nDCG@10", "agreement@10", "test nDCG@10 (recorded only)", "STS-B cos to teacher"]
    header += ["STS-B paraphrase nDCG@10 (x teacher)"] + (["batch-1 p50 / p99 ms"] if latency else [])
    table = []
    for r in results["rows"]:
        cells = [r["row"], f"{r['dev_ndcg10']:.4f}", f"{r['teacher_agreement10']:.3f}", f"{r['test_ndcg10']:.4f}"]
        cells += [f"{r['sts_cosine']:.3f}", f"{r['paraphrase_ndcg10']:.4f} ({r['paraphrase_ndcg10'] / teacher:.3f}x)"]
        if latency:
            cells.append(f"{r['batch1_p50_ms']:.1f} / {r['batch1_p99_ms']:.1f}" if "batch1_p50_ms" in r else "")
        table.append(cells)
    students = "; ".join(f"`{label}` = `{folder}`" for label, folder in results["students"].items())
    intro = [
        f"Students: {students}. A row `a+b` searches with the normalized mean of their normalized query vectors.",
        "Dev: SciFact train qrels (809 claims, never trained on) against the teacher's document vectors;",
        "agreement@10 over all 1,109 claims; STS-B (a domain no training text comes from): mean cosine to the",
        f"teacher's vectors and paraphrase nDCG@10 in the teacher's space (teacher {teacher:.4f}).",
    ]
    write_report(path, "Students averaged in the teacher's space", results, intro, header, table)


if __name__ == "__main__":
    run_main(main)
