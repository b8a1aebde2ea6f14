"""How well students keep the teacher's space on text from a domain they never trained on.

    python -m benchmarks.unseen_alignment --name tokens --student "base=DIR" --student "token weight 3=DIR"

Students are also judged on retrieval sets they never see, and the first students lost most there: the
student's mean cosine to the teacher on such queries was 0.68-0.73 against 0.81 on SciFact's. None of
the training text (generic queries, the SciFact corpus) comes from STS-B's news, captions and forum
posts, so its sentences measure that side. For each student:

- mean cosine to the teacher on the distinct STS-B test sentences (unseen domain) and on SciFact's 1,109
  claims (the target domain's queries, never trained on either);
- STS-B paraphrase retrieval: every first sentence of a pair scored 4 or more searches all the distinct
  STS-B sentences (itself left out) in the teacher's space; its second sentence is the relevant one.
  nDCG@10 and agreement@10 with the teacher's own top 10, next to the teacher searching its own vectors;
- STS-B Spearman (student/student).

References: the teacher, and the undistilled MiniLM-L6 in its own space (no alignment: its retrieval
row searches its own vectors).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import cell, labelled, machine, run_main, student_report_parser, write_json, write_report
from embedkd.data import load_beir
from embedkd.distill import Teacher
from embedkd.evaluation import load_sts, sts_spearman
from embedkd.models import Encoder


def paraphrase_task(sts_path: Path) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """(queries, corpus, index of each query's paraphrase in the corpus, index of the query itself)."""
    sts = load_sts(sts_path)
    corpus = list(dict.fromkeys([*sts.left, *sts.right]))
    where = {text: i for i, text in enumerate(corpus)}
    pairs = [(a, b) for a, b, g in zip(sts.left, sts.right, sts.gold, strict=True) if g >= 4.0 and a != b]
    pairs = list(dict.fromkeys(pairs))
    queries = [a for a, _ in pairs]
    return queries, corpus, np.array([where[b] for _, b in pairs]), np.array([where[a] for a, _ in pairs])


def rank_scores(
    queries: np.ndarray, docs: np.ndarray, relevant: np.ndarray, own: np.ndarray
) -> tuple[float, np.ndarray]:
    """nDCG@10 (one relevant document per query) and each query's top 10, the query's own row left out."""
    return rank_of(queries @ docs.T, relevant, own)


def rank_of(scores: np.ndarray, relevant: np.ndarray, own: np.ndarray) -> tuple[float, np.ndarray]:
    """``rank_scores`` of a query-by-document score matrix (the matrix is not changed)."""
    gains, top = rank_gains(scores, relevant, own)
    return float(gains.mean()), top


def rank_gains(scores: np.ndarray, relevant: np.ndarray, own: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each query's nDCG@10 (the terms ``rank_of`` averages) and its top 10."""
    scores = scores.copy()
    scores[np.arange(len(own)), own] = -np.inf
    top = np.argsort(-scores, axis=1)[:, :10]
    hits = top == relevant[:, None]
    return (hits / np.log2(np.arange(2, 12))[None, :]).sum(axis=1), top


def agreement(top: np.ndarray, reference: np.ndarray) -> float:
    """Mean share of each row of ``reference`` (the teacher's top 10) that ``top`` also returns."""
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(top, reference, strict=True)]))


class ParaphraseJudge:
    """STS-B as a domain no training text comes from: a query encoder's cosine to the teacher on every
    distinct sentence, and its paraphrase search in the teacher's space (``paraphrase_task``)."""

    def __init__(self, sts_path: Path, teacher: Teacher) -> None:
        self.queries, self.corpus, self.relevant, self.own = paraphrase_task(sts_path)
        self.docs = teacher.embeddings(self.corpus, role="document")
        self.teacher_ndcg10, self.teacher_top = rank_scores(
            teacher.embeddings(self.queries, role="query"), self.docs, self.relevant, self.own
        )

    def __call__(self, encoder: Any) -> dict[str, float]:
        ndcg, top = rank_scores(encoder.encode_query(self.queries), self.docs, self.relevant, self.own)
        return {
            "sts_cosine": float(np.mean(np.sum(encoder.encode_query(self.corpus) * self.docs, axis=1))),
            "paraphrase_ndcg10": ndcg,
            "paraphrase_agreement10": agreement(top, self.teacher_top),
        }


def main() -> None:
    parser = student_report_parser(__doc__, "unseen_alignment")
    args = parser.parse_args()
    students = labelled(args.student)
    stem = f"unseen_alignment_{args.name}" if args.name else "unseen_alignment"
    sts_path = args.data_root / "sts" / "stsb-test.tsv"
    sts = load_sts(sts_path)
    beir = args.data_root / "beir" / "scifact"
    claims = list(load_beir(beir, "train").queries.values()) + list(load_beir(beir, "test").queries.values())

    teacher = Teacher.from_model("mpnet-base", precision="fp32")
    paraphrase = ParaphraseJudge(sts_path, teacher)
    t_claims = teacher.embeddings(claims, role="query")
    t_spearman = sts_spearman(teacher.embeddings(sts.left), teacher.embeddings(sts.right), sts.gold)

    rows: list[dict[str, Any]] = [
        {"label": "teacher (mpnet-base)", "sts_cosine": 1.0, "claims_cosine": 1.0,
         "paraphrase_ndcg10": paraphrase.teacher_ndcg10, "paraphrase_agreement10": 1.0, "sts_spearman": t_spearman,
         "space": "teacher"},
    ]  # fmt: skip
    minilm = Encoder.load("minilm-l6", device="cpu")
    queries, corpus, relevant, own = paraphrase.queries, paraphrase.corpus, paraphrase.relevant, paraphrase.own
    m_ndcg, m_top = rank_scores(minilm.encode_query(queries), minilm.encode_document(corpus), relevant, own)
    rows.append(
        {"label": "undistilled MiniLM-L6 (its own space)", "sts_cosine": None, "claims_cosine": None,
         "paraphrase_ndcg10": m_ndcg, "paraphrase_agreement10": agreement(m_top, paraphrase.teacher_top),
         "sts_spearman": sts_spearman(minilm.encode(sts.left), minilm.encode(sts.right), sts.gold), "space": "own"},
    )  # fmt: skip
    for label, folder in students:
        student = Encoder.load(folder, device="cpu")
        rows.append(
            {
                "label": label,
                "folder": folder,
                **paraphrase(student),
                "claims_cosine": float(np.mean(np.sum(student.encode_query(claims) * t_claims, axis=1))),
                "sts_spearman": sts_spearman(student.encode(sts.left), student.encode(sts.right), sts.gold),
                "space": "teacher (asymmetric)",
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    results = {
        "machine": machine(),
        "concurrent": args.concurrent,
        "task": {"paraphrase_queries": len(queries), "corpus": len(corpus), "claims": len(claims)},
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / f"{stem}.json", results)
    write_markdown(results, args.out / f"{stem}.md")


def write_markdown(results: dict[str, Any], path: Path) -> None:
    teacher = results["rows"][0]

    table = [
        [
            r["label"],
            r["space"],
            cell(r["sts_cosine"], ".3f"),
            cell(r["claims_cosine"], ".3f"),
            f"{r['paraphrase_ndcg10']:.4f} ({r['paraphrase_ndcg10'] / teacher['paraphrase_ndcg10']:.3f}x)",
            cell(r["paraphrase_agreement10"], ".3f"),
            f"{r['sts_spearman']:.4f}",
        ]
        for r in results["rows"]
    ]
    task = results["task"]
    intro = [
        f"STS-B paraphrase retrieval: {task['paraphrase_queries']} queries (first sentences of pairs scored 4 or "
        f"more) search {task['corpus']} distinct STS-B sentences (the query itself left out) in the teacher's "
        "space; the second sentence is the relevant one. Cosines are means of the student's vector against the "
        f"teacher's, over the distinct STS-B sentences and over SciFact's {task['claims']} claims; neither was "
        "ever trained on.",
    ]
    header = ["query encoder", "searches", "cos to teacher, STS-B", "cos to teacher, SciFact claims",
              "paraphrase nDCG@10 (x teacher)", "agreement@10", "STS-B Spearman"]  # fmt: skip
    title = "Alignment on a domain the students never trained on (STS-B)"
    write_report(path, title, results, intro, header, table)


if __name__ == "__main__":
    run_main(main)
