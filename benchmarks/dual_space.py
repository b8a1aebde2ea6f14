"""Would a second, cheap document index in the student base's own space lift the asymmetric student?

    PYTHONPATH=. python -m benchmarks.dual_space --student "60-minute=DIR" [--student ...] [--name NAME]

`rank_fusion.md` found that the teacher's ranking and MiniLM-L6's own (each model searching its own
document vectors) fuse to more than either. The default student is MiniLM-L6 with only its top layer
trained, so a query can carry both: the student's vector searches the teacher's index, the undistilled
MiniLM-L6's vector searches a second index of the same documents in MiniLM-L6's own space (MiniLM encodes
documents 5-10x cheaper than the teacher, so that index adds a small share of the teacher's cost), and the
two score lists are added per query: ``student . teacher_doc + w * base . base_doc``.

For each student, on SciFact (dev: the train qrels, which choose the weight w; test is recorded only) and
on STS-B paraphrase search (a domain no training text comes from; the paraphrase task of
``benchmarks.unseen_alignment``, scored at the weight dev chose): nDCG@10 of the student alone, of the
fusion at each weight, and of the sum of per-query z-scores. References: the teacher, MiniLM-L6 in its
own space, and the teacher fused with MiniLM-L6 the same way. Query cost: batch-1 latency of the student
alone, of both encoders one after the other, and of one pass that runs the layers the two share
(the student's frozen lower layers, checked equal to the base's) once and then each top layer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
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
from benchmarks._scifact import corpus_vectors, scifact_splits, scifact_teacher
from benchmarks.rank_fusion import zscore
from benchmarks.unseen_alignment import paraphrase_task, rank_gains, rank_of
from embedkd.data.beir import BeirDataset
from embedkd.evaluation import score_retrieval
from embedkd.evaluation.retrieval import run_from_embeddings
from embedkd.models import Encoder
from embedkd.models.shared_trunk import SharedTrunk

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
CANDIDATES = (20, 50, 100, 200)  # teacher-space candidates rescored by the fusion


def fused(space: np.ndarray, base: np.ndarray) -> dict[str, np.ndarray]:
    """Score matrices: the teacher-space scores plus ``w`` times the base's own, and the z-score sum."""
    rows = {f"w {w:g}": space + w * base for w in WEIGHTS}
    rows["z-scores"] = zscore(space) + zscore(base)
    return rows


def rescored(space: np.ndarray, base: np.ndarray, weight: float, candidates: int) -> np.ndarray:
    """The fusion computed only for each query's ``candidates`` best documents in the teacher's space (what
    an index can do with one search structure and a second vector per document, read back to rescore);
    every other document ranks below them."""
    out = np.full_like(space, -1e9)
    top = np.argsort(-space, axis=1)[:, :candidates]
    rows = np.arange(len(space))[:, None]
    out[rows, top] = space[rows, top] + weight * base[rows, top]
    return out


def beir_ndcg(data: BeirDataset, scores: np.ndarray) -> float:
    eye = np.eye(scores.shape[1], dtype=np.float32)  # score matrices go in as queries against unit documents
    return score_retrieval(data, scores.astype(np.float32), eye).ndcg_at_10


def per_query_ndcg(data: BeirDataset, scores: np.ndarray) -> np.ndarray:
    """Each scored query's nDCG@10 (pytrec_eval, in query-id order): the terms ``beir_ndcg`` averages."""
    import pytrec_eval

    eye = np.eye(scores.shape[1], dtype=np.float32)
    run = run_from_embeddings(list(data.queries), scores.astype(np.float32), data.doc_ids(), eye)
    scored = pytrec_eval.RelevanceEvaluator(data.qrels, {"ndcg_cut_10"}).evaluate(run)
    return np.array([scored[q]["ndcg_cut_10"] for q in sorted(scored)])


def paired_ci(a: np.ndarray, b: np.ndarray, *, rounds: int = 5000, seed: int = 0) -> list[float]:
    """Mean of ``a - b`` over queries and its 95% paired-bootstrap interval (queries resampled)."""
    diff = a - b
    picks = np.random.default_rng(seed).integers(0, len(diff), size=(rounds, len(diff)))
    low, high = np.percentile(diff[picks].mean(axis=1), [2.5, 97.5])
    return [float(diff.mean()), float(low), float(high)]


def latency(label: str, student: Encoder, base: Encoder, texts: list[str]) -> tuple[int, dict[str, float]]:
    """Batch-1 ms of the base, the student, both one after the other, and both in embedkd's shared pass
    (:class:`~embedkd.models.shared_trunk.SharedTrunk`, which checks itself against the two encoders)."""

    def both(text: str) -> object:
        return student.encode_query([text]), base.encode_query([text])

    runs: dict[str, Callable[[str], object]] = {
        "base alone": lambda text: base.encode_query([text]),
        label: lambda text: student.encode_query([text]),
        f"{label} + base, one after the other": both,
    }
    trunk = SharedTrunk.find(student, base)
    if trunk is None:  # e.g. a student cut from the teacher: nothing to run once
        return 0, batch1_ms(runs, texts)
    runs[f"{label} + base, {trunk.shared} shared layers run once"] = lambda text: trunk.encode_query([text])
    return trunk.shared, batch1_ms(runs, texts)


def batch1_ms(runs: dict[str, Callable[[str], object]], texts: list[str]) -> dict[str, float]:
    """Median milliseconds to encode one text, for each way of encoding it, taking turns text by text."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for i, text in enumerate(texts):
        for name, encode in runs.items():
            start = time.perf_counter()
            encode(text)
            if i >= 10:  # warm-up
                times[name].append((time.perf_counter() - start) * 1000)
    return {name: float(np.median(ms)) for name, ms in times.items()}


def main() -> None:
    parser = student_report_parser(__doc__, "dual_space")
    parser.add_argument("--base", default="minilm-l6")
    parser.add_argument("--latency-texts", type=int, default=200)
    args = parser.parse_args()
    students = labelled(args.student)
    stem = f"dual_space_{args.name}" if args.name else "dual_space"
    splits = scifact_splits(args.data_root)
    teacher = scifact_teacher(args.data_root)
    base = Encoder.load(args.base, device="cpu")
    teacher_docs, base_docs = corpus_vectors(splits, teacher, base)
    queries = {split: list(data.queries.values()) for split, data in splits.items()}
    base_scores = {split: base.encode(q, role="query") @ base_docs.T for split, q in queries.items()}

    base_per_query = {split: per_query_ndcg(data, base_scores[split]) for split, data in splits.items()}
    para_queries, para_corpus, relevant, own = paraphrase_task(args.data_root / "sts" / "stsb-test.tsv")
    para_teacher_docs = teacher.embeddings(para_corpus, role="document")
    para_base = base.encode_query(para_queries) @ base.encode_document(para_corpus).T
    para_teacher = teacher.embeddings(para_queries, role="query") @ para_teacher_docs.T
    para_per_query = {"base": rank_gains(para_base, relevant, own)[0]}

    def judge(label: str, space: dict[str, np.ndarray], para_space: np.ndarray) -> dict[str, Any]:
        """Each fusion's dev and test nDCG@10 on SciFact and its paraphrase nDCG@10 on STS-B."""
        scifact = {split: fused(space[split], base_scores[split]) for split in splits}
        para = fused(para_space, para_base)
        rows = {
            name: {
                "dev": beir_ndcg(splits["dev"], scifact["dev"][name]),
                "test": beir_ndcg(splits["test"], scifact["test"][name]),
                "paraphrase": rank_of(para[name], relevant, own)[0],
            }
            for name in scifact["dev"]
        }
        chosen = max((name for name in rows if name.startswith("w ") and name != "w 0"), key=lambda n: rows[n]["dev"])
        print(label, rows["w 0"], chosen, rows[chosen], flush=True)
        weight = float(chosen.split()[1])
        rescoring = {
            str(n): {
                **{
                    split: beir_ndcg(data, rescored(space[split], base_scores[split], weight, n))
                    for split, data in splits.items()
                },
                "paraphrase": rank_of(rescored(para_space, para_base, weight, n), relevant, own)[0],
            }
            for n in CANDIDATES
        }
        vs_base: dict[str, dict[str, list[float]]] = {}
        for name in dict.fromkeys(["w 0", chosen]):
            vs_base[name] = {
                split: paired_ci(per_query_ndcg(data, scifact[split][name]), base_per_query[split])
                for split, data in splits.items()
            }
            gains = rank_gains(para[name], relevant, own)[0]
            vs_base[name]["paraphrase"] = paired_ci(gains, para_per_query["base"])
            if "teacher" in para_per_query:
                vs_base[name]["paraphrase vs teacher"] = paired_ci(gains, para_per_query["teacher"])
        return {"label": label, "fusions": rows, "chosen_by_dev": chosen, "vs_base": vs_base, "rescoring": rescoring}

    teacher_space = {split: teacher.embeddings(q, role="query") @ teacher_docs.T for split, q in queries.items()}
    results: dict[str, Any] = {
        "machine": machine(),
        "concurrent": args.concurrent,
        "base": args.base,
        "base_alone": {
            "dev": beir_ndcg(splits["dev"], base_scores["dev"]),
            "test": beir_ndcg(splits["test"], base_scores["test"]),
            "paraphrase": rank_of(para_base, relevant, own)[0],
        },
        "rows": [judge("teacher", teacher_space, para_teacher)],
    }
    para_per_query["teacher"] = rank_gains(para_teacher, relevant, own)[0]
    latency_texts = queries["test"][: args.latency_texts]
    results["latency_ms"] = {}
    for label, folder in students:
        student = Encoder.load(folder, device="cpu")
        space = {split: student.encode_query(q) @ teacher_docs.T for split, q in queries.items()}
        row = judge(label, space, student.encode_query(para_queries) @ para_teacher_docs.T)
        results["rows"].append({**row, "folder": folder})
        shared, ms = latency(label, student, base, latency_texts)
        results["latency_ms"].update(ms)
        results["rows"][-1]["shared_layers"] = shared
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / f"{stem}.json", results)
    write_markdown(results, args.out / f"{stem}.md")


def _interval(cell: list[float] | None) -> str:
    if cell is None:
        return ""
    mean, low, high = cell
    return f"{mean:+.4f} [{low:+.4f}, {high:+.4f}]"


def write_markdown(results: dict[str, Any], path: Path) -> None:
    teacher = results["rows"][0]["fusions"]["w 0"]
    base = results["base_alone"]

    def cells(scores: dict[str, float]) -> list[str]:
        return [
            f"{scores['dev']:.4f}",
            f"{scores['test']:.4f} ({scores['test'] / teacher['test']:.3f}x)",
            f"{scores['paraphrase']:.4f} ({scores['paraphrase'] / teacher['paraphrase']:.3f}x)",
        ]

    table: list[list[str]] = [
        ["teacher / teacher", "", *cells(teacher)],
        [f"{results['base']} / its own", "", *cells(base)],
    ]
    for row in results["rows"]:
        chosen = row["chosen_by_dev"]
        label = row["label"] if row["label"] == "teacher" else f"{row['label']} → teacher"
        if row["label"] != "teacher":
            table.append([label, "", *cells(row["fusions"]["w 0"])])
        for name in dict.fromkeys([chosen, "w 1", "z-scores"]):
            mark = " (chosen by dev)" if name == chosen else ""
            table.append([f"{label} + {results['base']} / its own", name + mark, *cells(row["fusions"][name])])
    latency = [[name, f"{ms:.1f}"] for name, ms in results["latency_ms"].items()]
    rescoring = [
        [f"{row['label']}, {row['chosen_by_dev']}", n, f"{s['dev']:.4f}", f"{s['test']:.4f}", f"{s['paraphrase']:.4f}"]
        for row in results["rows"]
        for n, s in row["rescoring"].items()
    ]
    paired = [
        [
            row["label"] if name == "w 0" else f"{row['label']} + {results['base']} / its own, {name}",
            *(_interval(row["vs_base"][name].get(s)) for s in ("dev", "test", "paraphrase", "paraphrase vs teacher")),
        ]
        for row in results["rows"]
        for name in row["vs_base"]
    ]
    lines = [
        "# A second document index in the student base's own space, fused with the teacher's",
        "",
        f"Machine: {results['machine']}. Ran beside: {results['concurrent']}. "
        "Command: `python -m benchmarks.dual_space` (see its docstring).",
        "",
        "Each query searches the teacher's document vectors (the student's vector, or the teacher's for the "
        f"reference) and {results['base']}'s own document vectors ({results['base']}'s vector), and the score "
        "lists are added: `space + w x own`. Dev (SciFact train qrels, 809 claims) chooses w; SciFact test and "
        "STS-B paraphrase search (a domain no training text comes from) are recorded at that w. "
        "x = times the teacher searching its own vectors.",
        "",
        *markdown_table(
            [
                "queries → documents",
                "fusion",
                "dev nDCG@10",
                "test nDCG@10 (recorded only)",
                "STS-B paraphrase nDCG@10",
            ],
            table,
        ),
        "",
        "Every weight (dev / test / paraphrase):",
        "",
        *markdown_table(
            ["queries", *results["rows"][0]["fusions"]],
            [
                [
                    row["label"],
                    *(f"{s['dev']:.4f} / {s['test']:.4f} / {s['paraphrase']:.4f}" for s in row["fusions"].values()),
                ]
                for row in results["rows"]
            ],
        ),
        "",
        f"Difference from {results['base']} searching its own vectors (last column: from the teacher searching "
        "its own), per query, with a 95% paired-bootstrap interval (5,000 resamplings of the queries): an "
        "interval that holds 0 is a difference these queries cannot resolve.",
        "",
        *markdown_table(
            ["queries", "dev", "test (recorded only)", "STS-B paraphrase", "STS-B paraphrase, against the teacher"],
            paired,
        ),
        "",
        "The fusion computed only for each query's N best documents in the teacher's space (one search "
        "structure, the second vector of each candidate read back to rescore it), at the weight dev chose:",
        "",
        *markdown_table(["queries", "N", "dev nDCG@10", "test nDCG@10", "STS-B paraphrase nDCG@10"], rescoring),
        "",
        "Batch-1 query latency (median ms over SciFact test claims, torch fp32, the ways taking turns text by "
        "text; the shared pass is embedkd's `SharedTrunk`: the student's frozen lower layers, equal to the "
        "base's, run once, then each top layer):",
        "",
        *markdown_table(["query encoder", "p50 ms"], latency),
        "",
    ]
    write_sections(path, lines)  # keeps the file's own sections, such as a reading, on a rerun
    print("\n".join(lines))


if __name__ == "__main__":
    run_main(main)
