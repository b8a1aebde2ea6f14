"""Would the teacher's ranking gain from the student base's own? The check behind ``--rank-base-mix``.

    PYTHONPATH=. python -m benchmarks.rank_fusion [--data-root ../shared/data]

Each model searches its own index (the teacher's document vectors, and MiniLM-L6's own), and the two
score lists are fused per query: the plain sum of cosines, the sum of per-query z-scores, and the mixture
of the two softmax distributions at the ranking term's temperature (what ``--rank-base-mix 0.5`` asks the
student to reproduce). Dev is SciFact's train qrels, test is recorded only. If the fusion beats the
teacher, the mixed target carries ranking knowledge that the teacher alone lacks.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import machine, markdown_table, run_main, write_json
from benchmarks._scifact import corpus_vectors, scifact_splits, scifact_teacher
from embedkd.evaluation import score_retrieval
from embedkd.models import Encoder


def softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    z = (scores - scores.max(1, keepdims=True)) / temperature
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def zscore(scores: np.ndarray) -> np.ndarray:
    return (scores - scores.mean(1, keepdims=True)) / scores.std(1, keepdims=True)


def fusions(teacher: np.ndarray, base: np.ndarray, temperature: float) -> dict[str, np.ndarray]:
    """Query-by-document score matrices: each model alone and three fusions of the two."""
    return {
        "teacher / teacher": teacher,
        "MiniLM-L6 / MiniLM-L6": base,
        "sum of cosines": teacher + base,
        "sum of z-scores": zscore(teacher) + zscore(base),
        f"softmax mixture 0.5 / 0.5 (T {temperature})": softmax(teacher, temperature) + softmax(base, temperature),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--base", default="minilm-l6")
    parser.add_argument("--temperature", type=float, default=0.05)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--concurrent", default="nothing else")
    args = parser.parse_args()
    splits = scifact_splits(args.data_root)
    teacher = scifact_teacher(args.data_root)
    base = Encoder.load(args.base, device="cpu")
    teacher_docs, base_docs = corpus_vectors(splits, teacher, base)
    results: dict[str, Any] = {"machine": machine(), "concurrent": args.concurrent, "ndcg10": {}}
    eye = np.eye(len(teacher_docs), dtype=np.float32)  # score matrices are passed as queries against unit documents
    for split, data in splits.items():
        queries = list(data.queries.values())
        t = teacher.embeddings(queries, role="query") @ teacher_docs.T
        b = base.encode(queries, role="query") @ base_docs.T
        for name, scores in fusions(t, b, args.temperature).items():
            ndcg = score_retrieval(data, scores.astype(np.float32), eye).ndcg_at_10
            results["ndcg10"].setdefault(name, {})[split] = ndcg
    write_json(args.out / "rank_fusion.json", results)
    rows = [(name, f"{s['dev']:.4f}", f"{s['test']:.4f}") for name, s in results["ndcg10"].items()]
    lines = [
        "# Fusing the teacher's ranking with the student base's own (SciFact, BEIR-exact nDCG@10)",
        "",
        f"Machine: {results['machine']}. Running at the same time: {args.concurrent}.",
        "",
        "Each model searches its own document vectors; the fusions combine the two score lists per query. "
        "Dev: SciFact train qrels (809 claims); test is recorded only. This is the check behind "
        "`--rank-base-mix`: the mixture row is the target that option asks the student to reproduce while it "
        "scores only the teacher's document vectors.",
        "",
        *markdown_table(["ranking", "dev nDCG@10", "test nDCG@10 (recorded only)"], rows),
        "",
    ]
    (args.out / "rank_fusion.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    run_main(main)
