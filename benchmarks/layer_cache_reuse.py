"""What later runs save by reading the shared layer store instead of computing the frozen layers again.

    python -m benchmarks.layer_cache_reuse --name amd_bf16

The default recipe (``learning_curve``'s, every text) trains ``--steps`` steps with ``keep_checkpoints`` into
an empty layer store (``EMBEDKD_LAYERS_DIR`` pointed at ``--work``), so it computes the frozen layers' outputs
for every training text and adds them to the store. Then two later runs read it: a fresh run on 20,000 texts
a source drawn with another seed (the old sources' share of an ``embedkd adapt`` mix), and ``--resume`` of the
first. Reported per run: the trainer's own timings (``layer_cache_seconds``, ``teacher_seconds`` for the
cached teacher targets and the rest of the set-up, ``train_seconds``), the run's wall time, and the store's
size on disk. Run it on an otherwise idle machine, with the teacher's and the base's embeddings of the texts
already cached (any earlier run of the recipe), or the first run's set-up includes encoding them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from benchmarks._report import machine, markdown_table, run_main, save_results
from benchmarks.learning_curve import default_recipe
from embedkd.distill import DistillConfig, distill
from embedkd.distill.data import DataOptions


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--work", type=Path, default=Path(".embedkd/layer_cache_reuse"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--name", default="", help="Write layer_cache_reuse_NAME.{md,json}.")
    parser.add_argument("--concurrent", default="nothing else")
    args = parser.parse_args()
    student, layers = args.work / "student", args.work / "layers"
    for folder in (student, args.work / "subset", layers):
        shutil.rmtree(folder, ignore_errors=True)
    os.environ["EMBEDKD_LAYERS_DIR"] = str(layers.resolve())  # an empty store, not the user's
    recipe = {**default_recipe(student, args.data_root), "eval_beir": None}
    runs: list[dict[str, Any]] = []
    for label, config in (
        ("first run, every text (computes them, adds them to the store)", DistillConfig(**recipe)),
        (
            "a fresh run, 20,000 texts a source, data seed 1 (reads the store)",
            DistillConfig(
                **{
                    **recipe,
                    "out": args.work / "subset",
                    "data_options": DataOptions(max_texts_per_source=20_000, seed=1),
                }
            ),
        ),
        ("--resume of the first (reads the store)", DistillConfig(**recipe, resume=True)),
    ):
        config.max_steps, config.keep_checkpoints = args.steps, True
        started = time.perf_counter()
        result = distill(config)
        timings = result.manifest.training["timings"]
        runs.append(
            {
                "run": label,
                "texts": result.manifest.training["data"]["texts"],
                "wall_seconds": time.perf_counter() - started,
                "layer_cache_seconds": timings.get("layer_cache_seconds"),
                "teacher_seconds": timings.get("teacher_seconds"),
                "train_seconds": timings.get("train_seconds"),
                "store_bytes": folder_bytes(layers),
            }
        )
        print(json.dumps(runs[-1]), flush=True)
    for folder in (student, args.work / "subset", layers):
        shutil.rmtree(folder, ignore_errors=True)
    results = {"machine": machine(), "concurrent": args.concurrent, "steps": args.steps, "runs": runs}
    save_results(results, args.out, f"layer_cache_reuse_{args.name}" if args.name else "layer_cache_reuse", write)


def write(results: dict[str, Any], path: Path) -> None:
    rows = [
        [
            r["run"],
            f"{r['texts']:,}",
            f"{r['layer_cache_seconds']:.1f}",
            f"{r['teacher_seconds']:.1f}",
            f"{r['train_seconds']:.1f}",
            f"{r['wall_seconds']:.1f}",
            f"{r['store_bytes'] / 2**20:,.0f}",
        ]
        for r in results["runs"]
    ]
    lines = [
        "# The layer store, computed once and read back by later runs",
        "",
        f"Machine: {results['machine']}. Running at the same time: {results['concurrent']}. "
        "Command: `python -m benchmarks.layer_cache_reuse` (see its docstring).",
        "",
        f"The default recipe on every generic query and the SciFact corpus, {results['steps']} steps per run, "
        "no dev evaluation; the second run draws 20,000 texts a source, as `embedkd adapt` does for a student's "
        "own sources. Seconds are the trainer's own timings; the teacher's and the base's vectors were "
        "cached before (their column is reading them and the rest of the set-up).",
        "",
        *markdown_table(
            [
                "run",
                "training texts",
                "layer cache s",
                "teacher targets and set-up s",
                "training s",
                "wall s",
                "store MiB",
            ],
            rows,
        ),
        "",
    ]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    run_main(main)
