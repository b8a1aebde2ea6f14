"""Weight averaging ("model soups"): does averaging students' weights beat the students alone?

    python -m benchmarks.weight_averaging --soup "A=.embedkd/mpnet3-30min-student/checkpoints/best" ...

Each ``--soup NAME=FOLDER[+FOLDER...]`` averages the weights of students trained from the same starting
point (checkpoints of one run, or runs of the same architecture) with equal weights, saves the average as a
sentence-transformers folder, and scores it like a recipe-ablation row: dev nDCG@10 (SciFact train qrels,
the only number used to choose), test nDCG@10 and teacher agreement@10, asymmetric against the teacher's
precomputed document vectors. A soup of one folder is that student alone, for reference.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks._report import machine, markdown_table, run_main, write_json
from benchmarks.recipe_ablation import Judge
from embedkd.distill import Teacher
from embedkd.models import Encoder

WEIGHT_FILES = ("model.safetensors", "2_Dense/model.safetensors")


def average(folders: list[Path], out: Path) -> Path:
    """The element-wise mean of ``folders``' weights, in a copy of the first folder's layout."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(folders[0], out, ignore=shutil.ignore_patterns("checkpoints", "onnx", "openvino", "*.pt"))
    for name in WEIGHT_FILES:
        if not (folders[0] / name).is_file():
            continue
        states = [load_file(str(folder / name)) for folder in folders]
        mean = {k: torch.stack([s[k].float() for s in states]).mean(0).to(states[0][k].dtype) for k in states[0]}
        save_file(mean, str(out / name))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--soup", action="append", required=True, help="NAME=FOLDER[+FOLDER...] (repeatable).")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--concurrent", default="nothing else")
    args = parser.parse_args()
    judge = Judge(args.data_root, Teacher.from_model("mpnet-base"))
    results: dict[str, Any] = {"machine": machine(), "concurrent": args.concurrent, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i, spec in enumerate(args.soup):
            name, _, members = spec.partition("=")
            folders = [Path(m) for m in members.split("+")]
            model = average(folders, Path(tmp) / str(i)) if len(folders) > 1 else folders[0]
            row = {"soup": name, "members": [str(f) for f in folders], **judge(Encoder.load(model, device="cpu"))}
            results["rows"].append(row)
            print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "weight_averaging.json", results)
    lines = [
        "# Weight averaging of students (SciFact, asymmetric against the teacher's document vectors)",
        "",
        f"Machine: {results['machine']}. Ran beside: {results['concurrent']}.",
        "",
        "Chosen by dev nDCG@10 (SciFact train qrels); test is recorded, never used to choose.",
        "",
        *markdown_table(
            ["soup", "members", "dev nDCG@10", "test nDCG@10", "agreement@10"],
            [
                [
                    r["soup"],
                    " + ".join(f"`{m}`" for m in r["members"]),
                    f"{r['dev_ndcg10']:.4f}",
                    f"{r['test_ndcg10']:.4f}",
                    f"{r['teacher_agreement10']:.3f}",
                ]
                for r in results["rows"]
            ],
        ),
        "",
    ]
    (args.out / "weight_averaging.md").write_text("\n".join(lines))


if __name__ == "__main__":
    run_main(main)
