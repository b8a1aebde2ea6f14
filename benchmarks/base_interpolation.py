"""Does the student lose the base's knowledge? Interpolate its backbone back towards the base (WiSE-FT).

    python -m benchmarks.base_interpolation --student .embedkd/curve_minilm_amd/student \\
        --alphas 1,0.9,0.8,0.7,0.5 --refit-alphas 0,0.5,1 --name minilm60

A student fine-tuned from a pre-trained base (MiniLM-L6) may drift from what the base knew wherever its
training text does not reach. WiSE-FT (Wortsman et al., 2022) found that interpolating fine-tuned weights
with the pre-trained ones keeps more of the base off-distribution at little cost in-distribution. Each row
sets the backbone to ``alpha x student + (1 - alpha) x base`` and either keeps the student's trained
projection or refits it by ridge regression (``fit_ridge_projection``, as training initialises it) on
generic training texts and their cached teacher vectors. ``alpha 0`` with a refit head is the base frozen
under a linear map: no fine-tuning at all.

Each row is judged like the recipe ablation (SciFact dev nDCG@10, the number that chooses; test recorded
only; agreement@10) and like ``unseen_alignment.py`` (STS-B, a domain no training text comes from).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._report import machine, run_main, save_results, write_report
from benchmarks.recipe_ablation import Judge
from benchmarks.unseen_alignment import ParaphraseJudge
from embedkd.data.texts import read_texts
from embedkd.distill import Teacher
from embedkd.models import Encoder
from embedkd.models.student import fit_ridge_projection, pooled_embeddings, projection, set_projection


def interpolate(student: dict[str, torch.Tensor], base: dict[str, torch.Tensor], alpha: float) -> dict[str, Any]:
    """``alpha x student + (1 - alpha) x base`` for every floating-point weight (others from the student)."""
    if student.keys() != base.keys() or any(student[k].shape != base[k].shape for k in student):
        raise ValueError("the student's backbone does not have its base's architecture; cannot interpolate")
    return {
        k: (alpha * v.float() + (1 - alpha) * base[k].float()).to(v.dtype) if v.is_floating_point() else v
        for k, v in student.items()
    }


def refit_texts(teacher: Teacher, path: Path, count: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """``count`` texts of ``path`` and their teacher vectors, preferring the ones the cache already holds."""
    texts = read_texts(path)
    cache = teacher.cache_for("query")
    cached = [t for t in texts if t in cache]
    pool = cached if len(cached) >= count else texts
    rng = np.random.default_rng(seed)
    chosen = [pool[i] for i in rng.choice(len(pool), size=min(count, len(pool)), replace=False)]
    return chosen, teacher.embeddings(chosen, role="query")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--student", type=Path, required=True, help="A student folder trained from a model base.")
    parser.add_argument("--alphas", default="1,0.9,0.8,0.7,0.5", help="Rows that keep the trained projection.")
    parser.add_argument("--refit-alphas", default="0,0.5,1", help="Rows whose projection is refitted by ridge.")
    parser.add_argument("--refit-texts", type=int, default=16000, help="Generic training texts for the refit.")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", default="", help="Write base_interpolation_NAME.{md,json}.")
    parser.add_argument("--concurrent", default="nothing else")
    parser.add_argument(
        "--save-linear-map",
        type=Path,
        help="Also save the alpha-0 refit row's model (the base frozen under the ridge map) to this folder, "
        "as a sentence-transformers folder, for other benchmarks (unseen_docstrings) to judge.",
    )
    args = parser.parse_args()
    student = Encoder.load(args.student, device="cpu")
    if student.manifest is None or not student.manifest.base:
        parser.error(f"{args.student} records no base model (embedkd.json)")
    base_name = str(student.manifest.base)
    base = Encoder.load(base_name, device="cpu")
    backbone: torch.nn.Module = student.model[0].auto_model  # type: ignore[assignment]
    trained = {k: v.clone() for k, v in backbone.state_dict().items()}
    base_weights = base.model[0].auto_model.state_dict()  # type: ignore[union-attr]
    dense = projection(student.model).linear
    trained_head = (dense.weight.detach().clone(), dense.bias.detach().clone())

    teacher = Teacher.from_model("mpnet-base")  # fp32: exact targets for the refit (cached after the first run)
    judge = Judge(args.data_root, teacher)
    paraphrase = ParaphraseJudge(args.data_root / "sts" / "stsb-test.tsv", teacher)
    texts, targets = refit_texts(teacher, args.data_root / "train" / "queries.jsonl", args.refit_texts)

    plan = [(float(a), False) for a in args.alphas.split(",") if a] + [
        (float(a), True) for a in args.refit_alphas.split(",") if a
    ]
    results: dict[str, Any] = {
        "machine": machine(),
        "concurrent": args.concurrent,
        "student": str(args.student),
        "base": base_name,
        "refit_texts": len(texts),
        "teacher_paraphrase_ndcg10": paraphrase.teacher_ndcg10,
        "rows": [],
    }
    for alpha, refit in plan:
        try:
            backbone.load_state_dict(interpolate(trained, base_weights, alpha))
        except ValueError as exc:
            parser.error(str(exc))
        with torch.no_grad():
            dense.weight.copy_(trained_head[0])
            dense.bias.copy_(trained_head[1])
        if refit:
            set_projection(student.model, *fit_ridge_projection(pooled_embeddings(student.model, texts), targets))
        if refit and alpha == 0 and args.save_linear_map is not None:
            student.model.save(str(args.save_linear_map))
        row = {"alpha": alpha, "head": "refit" if refit else "trained", **judge(student), **paraphrase(student)}
        results["rows"].append(row)
        print(json.dumps(row), flush=True)
    stem = f"base_interpolation_{args.name}" if args.name else "base_interpolation"
    save_results(results, args.out, stem, write_markdown)


def write_markdown(results: dict[str, Any], path: Path) -> None:
    teacher = results["teacher_paraphrase_ndcg10"]
    header = ["alpha (1 = student)", "projection", "dev nDCG@10", "agreement@10", "test nDCG@10 (recorded only)"]
    header += ["STS-B cos to teacher", "STS-B paraphrase nDCG@10 (x teacher)"]
    table = [
        [
            f"{r['alpha']:g}",
            r["head"],
            f"{r['dev_ndcg10']:.4f}",
            f"{r['teacher_agreement10']:.3f}",
            f"{r['test_ndcg10']:.4f}",
            f"{r['sts_cosine']:.3f}",
            f"{r['paraphrase_ndcg10']:.4f} ({r['paraphrase_ndcg10'] / teacher:.3f}x)",
        ]
        for r in results["rows"]
    ]
    intro = [
        f"Student `{results['student']}`, base `{results['base']}`. Backbone = alpha x student + (1 - alpha) x base.",
        "Projection: the student's trained one, or refitted by ridge regression on "
        f"{results['refit_texts']:,} generic training texts and their teacher vectors (alpha 0, refit: the base",
        "frozen under a linear map). Dev: SciFact train qrels (809 claims, never trained on), against the teacher's",
        "document vectors; STS-B: a domain no training text comes from (mean cosine to the teacher, paraphrase",
        f"search in the teacher's space; teacher {teacher:.4f}).",
    ]
    title = "The student's backbone interpolated back towards its base (WiSE-FT)"
    write_report(path, title, results, intro, header, table)


if __name__ == "__main__":
    run_main(main)
