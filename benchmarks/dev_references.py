"""The references on both SciFact splits: the teacher alone and the undistilled MiniLM-L6 alone.

    python -m benchmarks.dev_references [--data-root ../shared/data]

Recipes are chosen on SciFact's *train* qrels (809 queries, "dev"), and judged on *test* (300 queries).
This measures the two symmetric references on both, with the evaluator and the precomputed fp32 teacher
document vectors that every other SciFact table uses, so a student's dev score can be read next to them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks._report import machine, markdown_table, run_main, write_json
from embedkd.data import load_beir
from embedkd.distill import Teacher
from embedkd.distill.teacher import read_aligned_texts
from embedkd.evaluation import score_retrieval
from embedkd.models import Encoder

SPLITS = {"dev": "train", "test": "test"}  # our name -> SciFact's qrels split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--concurrent", default="nothing else")
    args = parser.parse_args()
    beir = args.data_root / "beir" / "scifact"
    data = {name: load_beir(beir, split) for name, split in SPLITS.items()}
    teacher = Teacher.from_model("mpnet-base")
    precomputed = args.data_root / "embeddings" / "scifact-mpnet-base" / "corpus.f16.npy"
    if precomputed.is_file():
        teacher.import_embeddings(read_aligned_texts(beir, precomputed), precomputed)
    docs = teacher.embeddings(data["test"].doc_texts(), role="document")
    minilm = Encoder.load("minilm-l6", device="cpu")
    minilm_docs = minilm.encode_document(data["test"].doc_texts())
    scores: dict[str, dict[str, float]] = {"teacher (mpnet-base)": {}, "undistilled MiniLM-L6": {}}
    for name, split in data.items():
        queries = list(split.queries.values())
        teacher_queries = teacher.embeddings(queries, role="query")
        scores["teacher (mpnet-base)"][name] = score_retrieval(split, teacher_queries, docs).ndcg_at_10
        scores["undistilled MiniLM-L6"][name] = score_retrieval(
            split, minilm.encode_query(queries), minilm_docs
        ).ndcg_at_10
    results = {"machine": machine(), "concurrent": args.concurrent, "ndcg10": scores}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "dev_references.json", results)
    lines = [
        "# SciFact references on the dev split (train qrels) and on test",
        "",
        f"Machine: {results['machine']}. Ran beside: {results['concurrent']}. BEIR-exact nDCG@10; the teacher "
        "searches the shared precomputed fp32 document vectors, MiniLM-L6 its own index of the same corpus. "
        "Dev (SciFact's train qrels, 809 queries) chooses recipes and checkpoints; test (300) is only recorded.",
        "",
        *markdown_table(
            ["model (its own index)", "dev nDCG@10", "test nDCG@10"],
            [[name, f"{s['dev']:.4f}", f"{s['test']:.4f}"] for name, s in scores.items()],
        ),
    ]
    (args.out / "dev_references.md").write_text("\n".join(lines) + "\n")
    print(json.dumps(scores))


if __name__ == "__main__":
    run_main(main)
