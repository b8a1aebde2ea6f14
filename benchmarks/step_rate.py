"""The real trainer's step rate under recipe options, measured in interleaved runs.

    python -m benchmarks.step_rate --name relation01 --repeats 3 \
        --option 'with={"base_relation_weight": 0.1}' --option 'without={"base_relation_weight": 0}'

A time-budgeted run makes as many steps as its CPU allows, and this shared 2-core virtual machine ran the
same recipe anywhere from 14.6 to 25 steps/s on different days. So two 30-minute runs a day apart cannot
say what an option costs. Here each option (``LABEL=JSON``, overrides of ``learning_curve``'s default
recipe, ``{}`` for none) trains the same ``--steps`` steps, and the options take turns (A, B, A, B, ...),
so a slow stretch of the machine falls on all of them.

The timed part is the trainer's own loop (``train_seconds_total``): set-up, the teacher's cached targets
and the layer cache are left out; its held-out evaluations at the first and the last step, a few seconds,
are the same for every option. The texts are ``--max-texts-per-source`` of each source (the step costs
the same; the set-up is shorter); there is no dev evaluation and no checkpoint until the last step. Run it
on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks._report import (
    labelled,
    machine,
    markdown_table,
    recipe_overrides,
    run_main,
    save_results,
    write_report,
)
from benchmarks.learning_curve import default_recipe
from embedkd.distill import DataOptions, DistillConfig, distill
from embedkd.errors import InputError


def parse_options(specs: list[str]) -> dict[str, dict[str, Any]]:
    """``LABEL=JSON`` pairs as {label: overrides}; ``{}`` is the recipe as it is."""
    return {
        label: recipe_overrides(text, f"--option {label}")
        for label, text in labelled(specs, option="--option", form="LABEL=JSON")
    }


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per option: its runs' steps/s, their mean and range, and the mean relative to the first option."""
    labels = list(dict.fromkeys(r["option"] for r in runs))
    rates = {label: [r["steps_per_s"] for r in runs if r["option"] == label] for label in labels}
    first = statistics.fmean(rates[labels[0]])
    return [
        {
            "option": label,
            "runs": len(rates[label]),
            "mean_steps_per_s": statistics.fmean(rates[label]),
            "min_steps_per_s": min(rates[label]),
            "max_steps_per_s": max(rates[label]),
            "relative_to_first": statistics.fmean(rates[label]) / first,
        }
        for label in labels
    ]


def write_markdown(results: dict[str, Any], path: Path) -> None:
    intro = [
        f"Each option trained {results['steps']} steps of `learning_curve`'s default recipe on "
        f"{results['max_texts_per_source']} texts of each source, seed {results['seed']}, the options taking turns "
        f"({results['repeats']} runs each, in the order of the runs table). Steps/s is the trainer's own loop time. "
        "Command: `python -m benchmarks.step_rate` (see its docstring).",
        "",
        "Options: " + "; ".join(f"{label}: `{json.dumps(o)}`" for label, o in results["options"].items()) + ".",
    ]
    table = [
        [s["option"], s["runs"], f"{s['mean_steps_per_s']:.2f}",
         f"{s['min_steps_per_s']:.2f}–{s['max_steps_per_s']:.2f}", f"{s['relative_to_first']:.3f}x"]
        for s in results["summary"]
    ]  # fmt: skip
    write_report(
        path,
        "The trainer's step rate under recipe options, interleaved runs",
        results,
        intro,
        ["option", "runs", "mean steps/s", "range", "x the first option"],
        table,
    )
    runs = [[r["run"], r["option"], f"{r['train_seconds']:.1f}", f"{r['steps_per_s']:.2f}"] for r in results["runs"]]
    lines = [*path.read_text().splitlines(), "", *markdown_table(["run", "option", "train seconds", "steps/s"], runs)]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--option", action="append", required=True, help="LABEL=JSON of recipe overrides.")
    parser.add_argument("--name", required=True, help="Write step_rate_NAME.{md,json}.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--max-texts-per-source", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--work", type=Path, default=Path(".embedkd/step_rate"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--concurrent", default="nothing else")
    parser.add_argument("--reading", default="", help="A paragraph that reads the numbers, kept in the report.")
    args = parser.parse_args()
    options = parse_options(args.option)
    if len(options) < 2 or args.repeats < 1 or args.steps < 1:
        raise InputError("give two or more --option, and a positive --repeats and --steps")
    if args.work.exists() and any(args.work.iterdir()):
        raise InputError(f"--work {args.work} is not empty; give a new folder (each run's student is removed after it)")
    runs: list[dict[str, Any]] = []
    for repeat in range(args.repeats):
        for label, overrides in options.items():
            out = args.work / f"run{len(runs)}"
            recipe = {
                **default_recipe(out, args.data_root),
                "eval_beir": None,
                "data_options": DataOptions(max_texts_per_source=args.max_texts_per_source, seed=0),
                "seed": args.seed,
                "max_steps": args.steps,
                "eval_every": args.steps,
            }
            started = time.perf_counter()
            result = distill(DistillConfig(**{**recipe, **overrides}))
            seconds = result.manifest.training["timings"]["train_seconds_total"]
            run = {"run": len(runs), "option": label, "repeat": repeat, "train_seconds": seconds,
                   "steps_per_s": args.steps / seconds, "wall_seconds": time.perf_counter() - started}  # fmt: skip
            print(json.dumps(run), flush=True)
            runs.append(run)
            shutil.rmtree(out)  # only its time is wanted; this folder was empty before the run
    results = {
        "machine": machine(),
        "concurrent": args.concurrent,
        "options": options,
        "steps": args.steps,
        "repeats": args.repeats,
        "max_texts_per_source": args.max_texts_per_source,
        "seed": args.seed,
        "runs": runs,
        "summary": summarise(runs),
        "reading": args.reading,
    }
    save_results(results, args.out, f"step_rate_{args.name}", write_markdown)


if __name__ == "__main__":
    run_main(main)
