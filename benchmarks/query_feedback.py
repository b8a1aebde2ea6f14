"""Can a query repair its own misalignment at search time? Pseudo-relevance feedback in the teacher's space.

    python -m benchmarks.query_feedback --name NAME --student "s1=DIR" --student "s42=DIR"

The documents are the teacher's vectors, so the top documents a student's query finds are points of the
teacher's own space. Rocchio feedback (vector PRF, as in Li et al., 2021, for dense retrievers) moves the
query towards them: ``q' = normalize(q + beta x mean of the top-k documents)``, or with the top-k weighted by
a softmax of their scores (temperature 0.05), and searches again. That costs a second search and no second
index, where fusion costs a second index of every document. If the student's misses in a domain it never
trained on are near misses, feedback could pull its queries back onto the teacher's documents there.

Each row is the teacher (as a reference: does feedback help the teacher itself?) or a student, with and
without feedback, judged like ``student_ablation``: SciFact dev (train qrels, 809 queries, the number that
chooses) and test (recorded only), STS-B paraphrase search and the standard library's docstrings (domains no
training text comes from), each unseen domain as x the teacher without feedback. Δ columns: the 95%
paired-bootstrap interval of the difference from the same encoder without feedback.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import labelled, machine, run_main, save_results, write_report
from benchmarks.dual_space import paired_ci, per_query_ndcg
from benchmarks.student_ablation import Domains
from benchmarks.unseen_alignment import rank_gains
from benchmarks.unseen_docstrings import diagonal_gains
from embedkd.models import Encoder

# (top-k, beta, softmax-weighted); (0, 0, False) is the plain search
SETTINGS = [(0, 0.0, False), (1, 0.25, False), (1, 1.0, False), (3, 0.25, False), (3, 1.0, False)]
SETTINGS += [(10, 0.25, False), (10, 1.0, False), (10, 0.5, True)]


def feedback(
    queries: np.ndarray, docs: np.ndarray, k: int, beta: float, weighted: bool, skip: np.ndarray | None = None
) -> np.ndarray:
    """Rocchio: each query plus ``beta`` x the (softmax-weighted) mean of its top ``k`` documents, normalised.
    ``skip`` (one document per query) never counts as feedback: STS-B's query is itself in the corpus."""
    scores = queries @ docs.T
    if skip is not None:
        scores[np.arange(len(skip)), skip] = -np.inf
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    if weighted:
        top_scores = np.take_along_axis(scores, top, axis=1)
        weights = np.exp((top_scores - top_scores.max(axis=1, keepdims=True)) / 0.05)
        centroid = np.einsum("qk,qkd->qd", weights / weights.sum(axis=1, keepdims=True), docs[top])
    else:
        centroid = docs[top].mean(axis=1)
    moved = queries + beta * centroid
    return moved / np.linalg.norm(moved, axis=1, keepdims=True)


def gains(domains: Domains, queries: dict[str, np.ndarray], setting: tuple[int, float, bool]) -> dict[str, np.ndarray]:
    """Per-query nDCG@10 on each domain, after feedback with ``setting`` (none for top-k 0)."""
    judge = domains.judge
    docs = {"dev": judge.docs, "test": judge.docs, "sts": domains.sts_docs, "docstrings": domains.doc_docs}
    k, beta, weighted = setting
    q = dict(queries)
    if k:
        q = {
            key: feedback(q[key], docs[key], k, beta, weighted, domains.sts_own if key == "sts" else None) for key in q
        }
    return {
        "dev": per_query_ndcg(judge.dev, q["dev"] @ judge.docs.T),
        "test": per_query_ndcg(judge.test, q["test"] @ judge.docs.T),
        "sts": rank_gains(q["sts"] @ domains.sts_docs.T, domains.sts_relevant, domains.sts_own)[0],
        "docstrings": diagonal_gains(q["docstrings"] @ domains.doc_docs.T)[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--student", action="append", default=[], help="LABEL=FOLDER (repeatable).")
    parser.add_argument("--name", required=True, help="Write query_feedback_NAME.{md,json}.")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--concurrent", default="nothing else", help="What ran beside this run.")
    parser.add_argument("--reading", default="", help="A written reading appended to the report.")
    args = parser.parse_args()
    folders = labelled(args.student)
    if not folders:
        parser.error("give at least one --student LABEL=FOLDER")
    students = {label: Encoder.load(folder, device="cpu") for label, folder in folders}  # bad folders fail here
    domains = Domains(args.data_root)
    judge = domains.judge
    texts = {
        "dev": list(judge.dev.queries.values()),
        "test": list(judge.test.queries.values()),
        "sts": domains.sts_queries,
        "docstrings": domains.doc_queries,
    }
    encoders: dict[str, Any] = {"teacher": lambda t: domains.teacher.embeddings(t, role="query")}
    encoders.update({label: student.encode_query for label, student in students.items()})
    unseen = {"sts": domains.sts_teacher.mean(), "docstrings": domains.doc_teacher.mean()}
    rows: list[dict[str, Any]] = []
    for label, encode in encoders.items():
        queries = {key: np.asarray(encode(t), dtype=np.float32) for key, t in texts.items()}
        plain: dict[str, np.ndarray] = {}
        for setting in SETTINGS:
            result = gains(domains, queries, setting)
            plain = plain or result
            k, beta, weighted = setting
            row: dict[str, Any] = {"encoder": label, "top_k": k, "beta": beta, "weighted": weighted}
            for key, values in result.items():
                row[f"{key}_ndcg10"] = float(values.mean())
                if key in unseen:
                    row[f"{key}_x_teacher"] = float(values.mean() / unseen[key])
                row[f"{key}_vs_plain"] = paired_ci(values, plain[key])
            rows.append(row)
            print(row, flush=True)
    results = {
        "machine": machine(),
        "concurrent": args.concurrent,
        "students": dict(folders),
        "rows": rows,
        "reading": args.reading,
    }
    save_results(results, args.out, f"query_feedback_{args.name}", write_markdown)


def _delta(cell: list[float]) -> str:
    mean, low, high = cell
    return f"{mean:+.4f} [{low:+.4f}, {high:+.4f}]"


def write_markdown(results: dict[str, Any], path: Path) -> None:
    header = ["encoder", "feedback", "dev", "Δ dev [95%]", "test", "STS-B x teacher", "Δ STS-B [95%]"]
    header += ["docstrings x teacher", "Δ docstrings [95%]"]
    table = [
        [
            r["encoder"],
            "none" if not r["top_k"] else f"top {r['top_k']}, beta {r['beta']}{', softmax' if r['weighted'] else ''}",
            f"{r['dev_ndcg10']:.4f}",
            "" if not r["top_k"] else _delta(r["dev_vs_plain"]),
            f"{r['test_ndcg10']:.4f}",
            f"{r['sts_x_teacher']:.3f}",
            "" if not r["top_k"] else _delta(r["sts_vs_plain"]),
            f"{r['docstrings_x_teacher']:.3f}",
            "" if not r["top_k"] else _delta(r["docstrings_vs_plain"]),
        ]
        for r in results["rows"]
    ]
    students = ", ".join(f"{label} = `{folder}`" for label, folder in results["students"].items())
    intro = [
        "Command: `python -m benchmarks.query_feedback` (see its docstring). Students: " + students + ".",
        "",
        "Queries search the teacher's document vectors, then move towards the mean of their top-k documents "
        "(Rocchio, `q + beta x centroid`, normalised) and search again. Dev = SciFact train qrels (809 queries, "
        "chooses); test = SciFact test (300, recorded only); STS-B paraphrases and stdlib docstrings are domains "
        "no training text comes from, as x the teacher without feedback. Δ: 95% paired bootstrap over queries "
        "against the same encoder without feedback.",
    ]
    write_report(path, "Pseudo-relevance feedback in the teacher's space", results, intro, header, table)


if __name__ == "__main__":
    run_main(main)
