"""How much one recipe varies between seeds: learning curves of the same recipe, gathered per budget.

    python -m benchmarks.seed_spread --name amd_avx2_default \\
        --curve 7=amd_avx2_sourcemix30_seed7 --curve 1=amd_avx2_default_seed1 --curve 3=amd_avx2_default_seed3

Each ``--curve SEED=NAME`` is a committed ``learning_curve_NAME.json`` (``benchmarks.learning_curve --name
NAME``). Nothing is trained or scored here: the report reads those points and writes, per training-minute
budget, every seed's scores, their mean, sample standard deviation and range, and how many seeds meet
issue 9's targets (asymmetric ≥ MiniLM-L6 alone, asymmetric ≥ 0.99x teacher, student/student ≥ 0.97x
teacher), to ``seed_spread_NAME.{md,json,png}``. Curves from different CPUs are refused: a time budget buys
a different number of steps on each.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from benchmarks._report import cell, labelled, markdown_table, run_main, save_results
from benchmarks.learning_curve import MINILM_TEST, TEACHER_TEST
from embedkd.errors import InputError

METRICS = {  # JSON key: column title
    "asym_ndcg10": "asym nDCG@10",
    "sym_ndcg10": "student/student",
    "teacher_agreement10": "agreement@10",
    "heldout_cosine": "held-out cos",
    "dev_ndcg10": "dev nDCG@10",
}
TARGETS = {  # name: (JSON key, threshold)
    f"asym ≥ MiniLM-L6 ({MINILM_TEST})": ("asym_ndcg10", MINILM_TEST),
    f"asym ≥ 0.99x teacher ({0.99 * TEACHER_TEST:.4f})": ("asym_ndcg10", 0.99 * TEACHER_TEST),
    f"student/student ≥ 0.97x teacher ({0.97 * TEACHER_TEST:.4f})": ("sym_ndcg10", 0.97 * TEACHER_TEST),
}


def cpu_of(machine: str) -> str:
    """The CPU part of a machine stamp (``benchmarks._report.machine``): its model and bf16 support, without
    threads, torch or date. A comma inside the bf16 note's parentheses ("AVX512-BF16, no AMX") is the CPU's."""
    depth = 0
    for i, char in enumerate(machine):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            return machine[:i].strip()
    return machine.strip()


def spread(curves: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per budget: each seed's scores, and the mean, sample sd, min and max of each metric over the seeds
    that reached that budget, with the number of seeds meeting each target. ``curves`` maps a seed's label
    to its learning-curve JSON. Pure: reads only its argument."""
    cpus = {cpu_of(c["machine"]) for c in curves.values()}
    if len(cpus) > 1:
        raise InputError(f"curves from different CPUs cannot be pooled by training minutes: {sorted(cpus)}")
    budgets = sorted({p["train_minutes_budget"] for c in curves.values() for p in c["points"]})
    rows = []
    for budget in budgets:
        seeds = {
            seed: {**{k: p.get(k) for k in METRICS}, "steps": p.get("steps"), "last_step": p.get("last_step")}
            for seed, c in curves.items()
            for p in c["points"]
            if p["train_minutes_budget"] == budget
        }
        summary = {}
        for key in METRICS:
            values = [s[key] for s in seeds.values() if s[key] is not None]
            summary[key] = {
                "n": len(values),
                "mean": statistics.fmean(values) if values else None,
                "sd": statistics.stdev(values) if len(values) > 1 else None,
                "min": min(values, default=None),
                "max": max(values, default=None),
            }
        met = {
            name: sum(1 for s in seeds.values() if s[key] is not None and s[key] >= threshold)
            for name, (key, threshold) in TARGETS.items()
        }
        rows.append({"train_minutes_budget": budget, "seeds": seeds, "summary": summary, "targets_met": met})
    return {"cpu": cpus.pop() if cpus else "", "budgets": rows}


def write_markdown(results: dict[str, Any], path: Path) -> None:
    lines = [
        "# One recipe across seeds (SciFact, BEIR-exact nDCG@10)",
        "",
        f"CPU of every curve: {results['cpu']}. Nothing ran here: this report reads the committed learning "
        "curves below, whose own files say what ran beside each run. Command: `python -m benchmarks.seed_spread` "
        "(see its docstring).",
        "",
        "Curves: "
        + ", ".join(f"seed {seed}: `learning_curve_{name}.md`" for seed, name in results["curves"].items())
        + ".",
        "",
        f"References on test: teacher {TEACHER_TEST}, undistilled MiniLM-L6 in its own space {MINILM_TEST}. "
        "Dev is SciFact's train qrels, which chose each seed's kept checkpoint; test chose nothing.",
    ]
    for row in results["budgets"]:
        budget, seeds = row["train_minutes_budget"], row["seeds"]
        lines += ["", f"## {budget:g} training minutes ({len(seeds)} seed{'s' * (len(seeds) != 1)})", ""]
        table = [
            [f"seed {seed}", cell(s["steps"], ","), *(cell(s[key], ".4f") for key in METRICS)]
            for seed, s in seeds.items()
        ]
        for stat in ("mean", "sd", "min", "max"):
            table.append(["**" + stat + "**", "", *(cell(row["summary"][key][stat], ".4f") for key in METRICS)])
        lines += markdown_table(["seed", "kept step", *METRICS.values()], table)
        lines += ["", "Seeds meeting each target: " + "; ".join(
            f"{name}: {met} of {len(seeds)}" for name, met in row["targets_met"].items()
        ) + "."]  # fmt: skip
    if results.get("reading"):
        lines += ["", results["reading"]]
    path.write_text("\n".join(lines) + "\n")


def plot(results: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(8, 4))
    budgets = results["budgets"]
    for i, seed in enumerate(results["curves"]):
        pts = [(r["train_minutes_budget"], r["seeds"][seed]) for r in budgets if seed in r["seeds"]]
        color = f"C{i}"
        ax.plot([b for b, _ in pts], [s["asym_ndcg10"] for _, s in pts], "o-", color=color, lw=1, label=f"seed {seed}")
        ax.plot([b for b, _ in pts], [s["sym_ndcg10"] for _, s in pts], "s--", color=color, lw=0.8, alpha=0.6)
    x = [r["train_minutes_budget"] for r in budgets]
    ax.plot(x, [r["summary"]["asym_ndcg10"]["mean"] for r in budgets], "k-", lw=2.5, label="mean, asymmetric")
    ax.plot(x, [r["summary"]["sym_ndcg10"]["mean"] for r in budgets], "k--", lw=2, label="mean, student/student")
    ax.axhline(TEACHER_TEST, color="k", lw=1, ls="-.", label=f"teacher {TEACHER_TEST}")
    ax.axhline(MINILM_TEST, color="gray", lw=1, ls=":", label=f"MiniLM-L6 alone {MINILM_TEST}")
    ax.axhline(0.97 * TEACHER_TEST, color="gray", lw=1, ls="--", label="0.97x teacher (student/student target)")
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(x, [f"{b:g}" for b in x])
    ax.set_xlabel("training-minute budget (2-core CPU)")
    ax.set_ylabel("SciFact test nDCG@10")
    ax.set_title("Seeds of one recipe: asymmetric (solid), student/student (dashed)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--curve", action="append", required=True, help="SEED=NAME of learning_curve_NAME.json")
    parser.add_argument("--name", required=True, help="Write seed_spread_NAME.{md,json,png}.")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--reading", default="", help="A paragraph that reads the numbers, kept in the report.")
    args = parser.parse_args()
    names = dict(labelled(args.curve, option="--curve", form="SEED=NAME"))
    curves = {}
    for seed, name in names.items():
        path = args.out / f"learning_curve_{name}.json"
        if not path.is_file():
            raise InputError(f"no learning curve {path}; run benchmarks.learning_curve --name {name} first")
        curves[seed] = json.loads(path.read_text())
    results = {"curves": names, **spread(curves)}
    stem = f"seed_spread_{args.name}"
    old = args.out / f"{stem}.json"
    previous = json.loads(old.read_text()) if old.is_file() else {}
    same_numbers = previous.get("curves") == names and previous.get("budgets") == results["budgets"]
    results["reading"] = args.reading or (previous.get("reading", "") if same_numbers else "")  # never a stale one
    save_results(results, args.out, stem, write_markdown)
    plot(results, args.out / f"{stem}.png")


if __name__ == "__main__":
    run_main(main)
