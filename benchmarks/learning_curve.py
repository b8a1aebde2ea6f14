"""Learning curve of the default recipe: quality after 10, 30, 60 and 120 training minutes.

    python -m benchmarks.learning_curve --data-root ../shared/data --minutes 10,30,60,120

One run, extended with ``--resume``: each point trains until the cumulative training time reaches its
budget, in a learning-rate cycle of its own (the recipe's decay to ``min_lr_ratio``, as LEAF's cycles),
then the student is saved and scored:

- asymmetric nDCG@10 on SciFact test (student queries, the teacher's precomputed document vectors);
- student/student nDCG@10 (the student also embeds the corpus);
- teacher agreement@10 over the 1,109 SciFact queries with train or test qrels;
- held-out cosine to the teacher (training-distribution texts never trained on).

Points are written to ``learning_curve.json`` as they finish, so an interrupted curve keeps them; a
rerun resumes from the last finished point. Training minutes are the trainer's own loop time (teacher
encoding, which is cached, and evaluation are excluded); compare points on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from benchmarks._report import machine, markdown_table, recipe_overrides, run_main, write_json
from benchmarks.recipe_ablation import Judge
from embedkd.distill import DataOptions, DistillConfig, Teacher, distill
from embedkd.distill.checkpoint import load_state
from embedkd.evaluation import load_sts, score_retrieval, sts_spearman
from embedkd.models import Encoder
from embedkd.models.manifest import StudentManifest

TEACHER_TEST, MINILM_TEST = 0.6557, 0.6451  # SciFact test nDCG@10, measured in distill_scifact.md by the same evaluator


def default_recipe(out: Path, data_root: Path) -> dict[str, Any]:
    """`embedkd train`'s defaults on the benchmark data: every generic query plus the SciFact corpus (its
    titles, sentences and whole documents); every text, not 40k of each, since
    unseen_alignment_minilm_alltexts_amd.md."""
    return dict(
        out=out,
        data=[data_root / "train" / "queries.jsonl", data_root / "beir" / "scifact"],
        data_options=DataOptions(max_texts_per_source=None, seed=0),
        teacher="mpnet-base",  # the student is DistillConfig's default (MiniLM-L6, its top layer trained)
        eval_beir=data_root / "beir" / "scifact",
        eval_split="train",  # dev: SciFact's train qrels, never trained on; test stays untouched
        progress=False,
    )


def evaluations(student_dir: Path, after_step: int) -> list[dict[str, Any]]:
    """The run's dev evaluations after ``after_step`` (the trainer's own history in its last checkpoint)."""
    state = load_state(student_dir / "checkpoints" / "last") or {}
    return [
        {
            "step": h["step"],
            "cycle_seconds": h["seconds"],
            "dev_ndcg10": h.get("ndcg_at_10"),
            "heldout_cosine": h.get("cosine"),
        }
        for h in state.get("history", [])
        if h["step"] > after_step
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--work", type=Path, default=Path(".embedkd/curve"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--minutes", type=str, default="10,30,60,120")
    parser.add_argument("--recipe-json", type=str, default="{}", help="Overrides of the recipe, as JSON.")
    parser.add_argument("--concurrent", default="nothing else")
    parser.add_argument(
        "--name", default="", help="Write learning_curve_NAME.{md,json,png} (a variant of the recipe) instead."
    )
    args = parser.parse_args()
    stem = f"learning_curve_{args.name}" if args.name else "learning_curve"
    path = args.out / f"{stem}.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    results.setdefault("machine", machine())
    results.setdefault("points", [])
    results["recipe_overrides"] = recipe_overrides(args.recipe_json, "--recipe-json")
    results["concurrent"] = args.concurrent
    done = {p["train_minutes_budget"] for p in results["points"]}
    judge = Judge(args.data_root, Teacher.from_model("mpnet-base"))
    student_dir = args.work / "student"
    for minutes in [float(m) for m in args.minutes.split(",")]:
        if minutes in done:
            continue
        config = DistillConfig(
            **{**default_recipe(student_dir, args.data_root), **results["recipe_overrides"]},
            max_minutes=minutes,
            keep_checkpoints=True,
            resume=(student_dir / "checkpoints" / "last").is_dir(),
        )
        previous_step = max((p.get("last_step", -1) for p in results["points"]), default=-1)
        started = time.perf_counter()
        result = distill(config)
        wall = time.perf_counter() - started
        student = Encoder.load(student_dir, device="cpu")
        scores = judge(student)
        docs = student.encode_document(judge.test.doc_texts(), batch_size=64)
        symmetric = score_retrieval(judge.test, student.encode_query(list(judge.test.queries.values())), docs)
        sts = load_sts(args.data_root / "sts" / "stsb-test.tsv")
        spearman = sts_spearman(student.encode(sts.left), student.encode(sts.right), sts.gold)
        manifest = StudentManifest.read(student_dir)
        point = {
            "train_minutes_budget": minutes,
            "train_minutes": result.manifest.training["timings"].get("train_seconds_total", 0) / 60,
            "steps": (manifest.alignment.extra or {}).get("step") if manifest and manifest.alignment else None,
            "asym_ndcg10": scores["test_ndcg10"],
            "sym_ndcg10": symmetric.ndcg_at_10,
            "teacher_agreement10": scores["teacher_agreement10"],
            "dev_ndcg10": scores["dev_ndcg10"],
            "stsb_spearman": spearman,
            "heldout_cosine": manifest.alignment.mean_cosine if manifest and manifest.alignment else None,
            "wall_seconds": wall,
            "evaluations": evaluations(student_dir, previous_step),
        }
        point["last_step"] = max((e["step"] for e in point["evaluations"]), default=0)
        results["points"].append(point)
        print(json.dumps(point), flush=True)
        args.out.mkdir(parents=True, exist_ok=True)
        write_json(path, results)
        write_report(results, args.out, stem)


def dev_references(out: Path) -> str:
    """The teacher's and MiniLM's dev nDCG@10 (``dev_references.json``), for the dev column; "" if absent."""
    path = out / "dev_references.json"
    if not path.is_file():
        return ""
    scores = json.loads(path.read_text())["ndcg10"]
    teacher, minilm = scores["teacher (mpnet-base)"]["dev"], scores["undistilled MiniLM-L6"]["dev"]
    return f" On dev (`dev_references.md`): teacher {teacher:.4f}, MiniLM-L6 {minilm:.4f}."


def write_report(results: dict[str, Any], out: Path, stem: str = "learning_curve") -> None:
    points = sorted(results["points"], key=lambda p: p["train_minutes_budget"])
    teacher, minilm = TEACHER_TEST, MINILM_TEST
    labelled = any(p.get("run") for p in points)  # a curve mixing a chain with runs of their own
    rows = [
        [
            f"{p['train_minutes_budget']:g}" + (f" ({p['run']})" if p.get("run") else ""),
            f"{p['train_minutes']:.1f}",
            p.get("steps") or "",
            f"{p['asym_ndcg10']:.4f} ({p['asym_ndcg10'] / teacher:.3f}x)",
            f"{p['sym_ndcg10']:.4f} ({p['sym_ndcg10'] / teacher:.3f}x)",
            f"{p['teacher_agreement10']:.3f}",
            f"{p['heldout_cosine']:.3f}" if p["heldout_cosine"] is not None else "",
            f"{p['dev_ndcg10']:.4f}",
            f"{p['stsb_spearman']:.4f}" if "stsb_spearman" in p else "",
        ]
        for p in points
    ]
    lines = [
        f"# Learning curve of {'the default recipe' if stem == 'learning_curve' else 'a recipe variant'} "
        "(SciFact test, BEIR-exact nDCG@10)",
        "",
        f"Machine: {results['machine']}. Running at the same time: {results.get('concurrent', 'nothing else')}."
        + (f" {results['note']}" if results.get("note") else ""),
        "Recipe: `embedkd train`'s defaults on generic queries plus the SciFact corpus ("
        + (
            "data options as in the overrides"
            if "data_options" in results.get("recipe_overrides", {})
            else "its titles, sentences and whole documents; every text"
        )
        + f"); overrides `{json.dumps(results.get('recipe_overrides', {}))}`.",
        "",
        f"References: teacher {teacher:.4f}; undistilled MiniLM-L6 (its own index) {minilm:.4f}. "
        "STS-B Spearman (a check that the student keeps general knowledge): teacher 0.8342, MiniLM 0.8203."
        + dev_references(out),
        "",
        *markdown_table(
            [
                "budget min",
                "trained min",
                "best step",
                "asym nDCG@10",
                "student/student",
                "agreement@10",
                "held-out cos",
                "dev nDCG@10",
                "STS-B Spearman",
            ],
            rows,
        ),
        "",
        ("Each point of one chain" if labelled else "Each point")
        + " continues the previous one with `--resume` and a larger `--max-minutes`: a new learning-rate "
        "cycle. The checkpoint kept at each point is the best by dev nDCG@10 (SciFact train qrels), so a point whose "
        "cycle never beat the previous best keeps the previous checkpoint (same best step, same scores)."
        + (" A point marked as a run of its own is a fresh run." if labelled else ""),
    ]
    previous = 0.0
    for p in points:
        if p["train_minutes"] - previous < 0.98 * (p["train_minutes_budget"] - previous):
            lines.append(
                f"The {p['train_minutes_budget']:g}-minute point trained {p['train_minutes']:.1f} minutes: its cycle "
                f"({p['train_minutes'] - previous:.1f} of {p['train_minutes_budget'] - previous:.1f} minutes) ended on "
                "the recipe's step limit before its time budget (`epochs` passes over the texts per cycle, or "
                "`max_steps`; a time budget only shortens a cycle)."
            )
        previous = p["train_minutes"]
    cycles = [p for p in points if p.get("evaluations")]
    if cycles:
        lines += ["", "## Every dev evaluation (each point's learning-rate cycle)", ""]
        lines += markdown_table(
            ["point (budget min)", "step", "minutes into the cycle", "dev nDCG@10", "held-out cos"],
            [
                [f"{p['train_minutes_budget']:g}", e["step"], f"{e['cycle_seconds'] / 60:.1f}",
                 f"{e['dev_ndcg10']:.4f}" if e["dev_ndcg10"] is not None else "", f"{e['heldout_cosine']:.3f}"]
                for p in cycles
                for e in p["evaluations"]
            ],
        )  # fmt: skip
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6.5, 4))
    x = [p["train_minutes"] for p in points]
    ax.plot(x, [p["asym_ndcg10"] for p in points], "o-", label="student → teacher index (asym)")
    ax.plot(x, [p["sym_ndcg10"] for p in points], "s--", label="student / student")
    ax.axhline(teacher, color="k", lw=1, label=f"teacher {teacher:.4f}")
    ax.axhline(minilm, color="gray", lw=1, ls=":", label=f"undistilled MiniLM {minilm:.4f}")
    ax.set_xlabel("training minutes (2-core CPU)")
    ax.set_ylabel("SciFact nDCG@10")
    ax.set_title("Learning curve")
    ax.legend(fontsize=8, loc="center right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / f"{stem}.png", dpi=120)


if __name__ == "__main__":
    run_main(main)
