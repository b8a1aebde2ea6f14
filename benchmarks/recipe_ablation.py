"""Recipe ablation: one change per row, the same step count and seed, judged on a development set.

    python -m benchmarks.recipe_ablation --data-root ../shared/data --steps 1500 [--only "name;name"]
    python -m benchmarks.recipe_ablation --stage default --steps 1600   # rows on top of the MiniLM default
    python -m benchmarks.recipe_ablation --stage teacher-cut --steps 1600   # rows on top of the 3-layer cut
    python -m benchmarks.recipe_ablation --stage documents --steps 1600   # rows on top of today's default

Stage ``first-wave`` (``recipe_ablation.{md,json}``) starts every row from the first wave's recipe; stage
``default`` (``recipe_ablation_default.{md,json}``) starts from the current ``DistillConfig`` defaults
(frozen layer cache, listwise KL on the corpus) and tries the next changes on top of them.

Every row starts from the same base recipe and changes one thing. Rows are compared by step count, not
wall time, so a busy machine changes the seconds column but not the quality columns.

Selection metric (the only one used to choose): nDCG@10 on SciFact's *train* qrels (809 queries whose
texts are never trained on), asymmetric against the teacher's document vectors. Also reported:
teacher agreement@10 (share of the teacher's top-10 that the asymmetric search returns, over the 1,109
SciFact queries with train or test qrels), held-out cosine, and SciFact *test* nDCG@10, which is
recorded but never used to choose. Results are appended to ``recipe_ablation.json`` as each row
finishes, so a long sweep can be stopped and resumed (rows already present are skipped).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import machine, markdown_table, run_main, write_json
from embedkd.data import load_beir
from embedkd.distill import DataOptions, DistillConfig, LossName, Teacher, distill
from embedkd.distill.teacher import read_aligned_texts
from embedkd.evaluation import score_retrieval
from embedkd.models import Encoder


def base_recipe(out: Path, data_root: Path, steps: int) -> dict[str, Any]:
    """The recipe every row starts from: the first wave's default (batch 32, lr 2e-4 / 2e-3, maxlen 128)."""
    return dict(
        out=out,
        data=[data_root / "train" / "queries.jsonl", data_root / "beir" / "scifact"],
        teacher="mpnet-base",
        student="minilm-l6",
        data_options=DataOptions(max_texts_per_source=40_000, seed=0),
        # pinned to the first wave's recipe, whatever `embedkd train`'s defaults are now
        rank_weight=0.0,
        frozen_layers=0,
        lr=2e-4,
        head_lr=2e-3,
        min_lr_ratio=0.0,
        batch_size=32,
        max_seq_length=128,
        max_steps=steps,
        eval_every=steps,
        progress=False,
    )


def default_recipe(out: Path, data_root: Path, steps: int) -> dict[str, Any]:
    """The recipe the cut-based stages ran on: ``DistillConfig``'s defaults with a student cut from 3 of the
    teacher's layers (the default until the MiniLM-L6 student with its top layer trained replaced it)."""
    return dict(
        out=out,
        student="teacher",
        data=[data_root / "train" / "queries.jsonl", data_root / "beir" / "scifact"],
        data_options=DataOptions(max_texts_per_source=40_000, seed=0),
        max_steps=steps,
        eval_every=steps,
        progress=False,
    )


def minilm_recipe(out: Path, data_root: Path, steps: int) -> dict[str, Any]:
    """The recipe the "default" stage ran on: a MiniLM-L6 student with its lower 3 layers frozen."""
    return {**default_recipe(out, data_root, steps), "student": "minilm-l6", "frozen_layers": 3}


def default_variants(data_root: Path) -> dict[str, dict[str, Any]]:
    return {
        "base (current default: frozen 3, rank KL 0.1)": {},
        "rank weight 0.3": {"rank_weight": 0.3},
        "rank weight 1.0": {"rank_weight": 1.0},
        "rank weight 3.0": {"rank_weight": 3.0},
        "rank weight 1.0, every corpus document as anchor": {"rank_weight": 1.0, "max_anchors": 1_000_000},
        "rank temperature 0.02": {"rank_temperature": 0.02},
        "frozen layers 4": {"frozen_layers": 4},
        "every corpus document as anchor": {"max_anchors": 1_000_000},
        "+ whole documents": {"data_options": DataOptions(max_texts_per_source=40_000, seed=0, documents=True)},
        "lr 4e-4 / head 4e-3": {"lr": 4e-4, "head_lr": 4e-3},
        "student mpnet-base, 3 layers, rank weight 1.0": {"student": "mpnet-base", "layers": 3, "rank_weight": 1.0},
    }


def teacher_cut_variants(data_root: Path) -> dict[str, dict[str, Any]]:
    """Rows on top of today's default: a student cut from 3 of the teacher's layers, rank KL weight 1.0."""
    return {
        "base (current default: 3 teacher layers, rank KL 1.0)": {},
        "4 teacher layers": {"layers": 4},
        "frozen layers 1 (layer cache)": {"frozen_layers": 1},
        "4 teacher layers, frozen layers 1 (layer cache)": {"layers": 4, "frozen_layers": 1},
        "lr 1e-4 / head 1e-3": {"lr": 1e-4, "head_lr": 1e-3},
        "rank weight 3.0": {"rank_weight": 3.0},
        "every corpus document as anchor": {"max_anchors": 1_000_000},
        "lr 4e-4 / head 4e-3": {"lr": 4e-4, "head_lr": 4e-3},
    }


def documents_variants(data_root: Path) -> dict[str, dict[str, Any]]:
    """Rows on top of today's default, whole documents included: the rows the earlier stages left out."""
    return {
        "base (current default: 3 teacher layers, rank KL 1.0, whole documents)": {},
        "batch 16, twice the steps (the same texts)": {"batch_size": 16, "max_steps": 3200, "eval_every": 3200},
        "max sequence length 64": {"max_seq_length": 64},
        "base, seed 7 (seed noise)": {"seed": 7},
        "lr 1e-4 / head 1e-3 (keeps more of the base)": {"lr": 1e-4, "head_lr": 1e-3},
        "loss cosine": {"loss": LossName.COSINE},
        "L2-SP weight 0.05 (a pull towards the starting weights)": {"l2sp_weight": 0.05},
        "L2-SP weight 0.005": {"l2sp_weight": 0.005},
    }


def tokens_variants(data_root: Path) -> dict[str, dict[str, Any]]:
    """Rows on top of today's default (64-token texts): richer targets per step."""
    return {
        "base (current default: 3 teacher layers, rank KL 1.0, whole documents, 64 tokens)": {},
        "token weight 1.0 (the teacher's state of every token)": {"token_weight": 1.0},
        "token weight 0.3": {"token_weight": 0.3},
        "token weight 3.0": {"token_weight": 3.0},
        "token weight 10.0": {"token_weight": 10.0},
        "MiniLM-L6 student (lower 3 layers frozen, layer cache)": {"student": "minilm-l6"},
    }


def variants(data_root: Path) -> dict[str, dict[str, Any]]:
    scifact = data_root / "beir" / "scifact"
    queries = data_root / "train" / "queries.jsonl"
    return {
        "base (first-wave default)": {},
        "generic queries only": {"data": [queries]},
        "+ rank KL on corpus docs (w 0.1 T 0.05)": {"rank_weight": 0.1, "anchor_data": scifact},
        "frozen layers 3, twice the steps (about the same seconds as base)": {
            "frozen_layers": 3,
            "max_steps": 1600,
            "eval_every": 1600,
        },
        "frozen layers 3 (layer cache)": {"frozen_layers": 3},
        "lr 1e-4 -> 1e-5 (LEAF)": {"lr": 1e-4, "min_lr_ratio": 0.1},
        "all 124k generic queries": {"data_options": DataOptions(seed=0)},
        "+ whole documents": {"data_options": DataOptions(max_texts_per_source=40_000, seed=0, documents=True)},
        "frozen layers 2 (layer cache)": {"frozen_layers": 2},
        "batch 16": {"batch_size": 16},
        "student mpnet-base, 2 layers": {"student": "mpnet-base", "layers": 2},
    }


STAGES = {  # stage -> (results file stem, base recipe, rows)
    "first-wave": ("recipe_ablation", base_recipe, variants),
    "default": ("recipe_ablation_default", minilm_recipe, default_variants),
    "teacher-cut": ("recipe_ablation_teacher_cut", default_recipe, teacher_cut_variants),
    "documents": ("recipe_ablation_documents", default_recipe, documents_variants),
    "tokens": ("recipe_ablation_tokens", default_recipe, tokens_variants),
}
DESCRIPTIONS = {
    "first-wave": "the first wave's recipe (all layers trained, no ranking term) and changes one thing.",
    "default": "the then `DistillConfig` defaults (MiniLM-L6, 3 of 6 layers frozen and served from the layer "
    "cache, listwise KL against the corpus documents, weight 0.1, T 0.05) and changes one thing.",
    "teacher-cut": "today's `DistillConfig` defaults (a student cut from 3 evenly spaced layers of the teacher, "
    "listwise KL against the corpus documents at weight 1.0, T 0.05) and changes one thing.",
    "documents": "today's `DistillConfig` defaults (a student cut from 3 evenly spaced layers of the teacher, "
    "listwise KL against the corpus documents at weight 1.0, T 0.05, whole documents in the training mix) "
    "and changes one thing.",
    "tokens": "today's `DistillConfig` defaults (a student cut from 3 evenly spaced layers of the teacher, "
    "listwise KL against the corpus documents at weight 1.0, T 0.05, whole documents, 64-token texts) and "
    "changes one thing.",
}


class Judge:
    """Dev nDCG@10, test nDCG@10 and teacher agreement@10 of a query encoder against the teacher's docs."""

    def __init__(self, data_root: Path, teacher: Teacher) -> None:
        beir = data_root / "beir" / "scifact"
        self.dev = load_beir(beir, "train")
        self.test = load_beir(beir, "test")
        precomputed = data_root / "embeddings" / "scifact-mpnet-base" / "corpus.f16.npy"
        if precomputed.is_file():
            teacher.import_embeddings(read_aligned_texts(beir, precomputed), precomputed)
        self.docs = teacher.embeddings(self.test.doc_texts(), role="document")
        self.all_queries = list(self.dev.queries.values()) + list(self.test.queries.values())
        self.teacher_top = self._top(teacher.embeddings(self.all_queries, role="query"))

    def _top(self, queries: np.ndarray, k: int = 10) -> np.ndarray:
        return np.argsort(-(queries @ self.docs.T), axis=1)[:, :k]

    def __call__(self, encoder: Encoder) -> dict[str, float]:
        dev = score_retrieval(self.dev, encoder.encode_query(list(self.dev.queries.values())), self.docs)
        test = score_retrieval(self.test, encoder.encode_query(list(self.test.queries.values())), self.docs)
        top = self._top(encoder.encode_query(self.all_queries))
        agreement = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, self.teacher_top, strict=True)])
        return {
            "dev_ndcg10": dev.ndcg_at_10,
            "test_ndcg10": test.ndcg_at_10,
            "teacher_agreement10": float(agreement),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--work", type=Path, default=Path(".embedkd/ablation"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--stage", choices=list(STAGES), default="first-wave")
    parser.add_argument("--only", type=str, default="", help="Row names to run, separated by ';'.")
    parser.add_argument("--concurrent", type=str, default="", help="What else ran on the machine meanwhile.")
    args = parser.parse_args()
    stem, recipe, rows = STAGES[args.stage]
    results_path = args.out / f"{stem}.json"
    results: dict[str, Any] = json.loads(results_path.read_text()) if results_path.is_file() else {}
    results.setdefault("machine", machine())
    results.setdefault("rows", [])
    results["steps"] = args.steps
    results["stage"] = args.stage
    done = {r["row"] for r in results["rows"]}
    judge = Judge(args.data_root, Teacher.from_model("mpnet-base"))
    wanted = [n.strip() for n in args.only.split(";") if n.strip()]
    for name, change in rows(args.data_root).items():
        if name in done or (wanted and name not in wanted):
            continue
        out = args.work / args.stage / name.split(" (")[0].replace(" ", "-").replace("/", "-").replace("+", "plus")
        config = DistillConfig(**{**recipe(out, args.data_root, args.steps), **change})
        started = time.perf_counter()
        result = distill(config)
        manifest = result.manifest
        row = {
            "row": name,
            "change": {k: str(v) for k, v in change.items()},
            "steps": config.max_steps,
            "heldout_cosine": manifest.alignment.mean_cosine if manifest.alignment else None,
            "train_s": manifest.training["timings"].get("train_seconds"),
            "wall_s": time.perf_counter() - started,
            "texts_per_s": (config.max_steps or 0)
            * config.batch_size
            / max(manifest.training["timings"]["train_seconds"], 1e-9),
            "concurrent": args.concurrent or "nothing else",
            "machine": machine(),  # rows of one file may come from different sessions and machines
            **judge(Encoder.load(out, device="cpu")),
        }
        results["rows"].append(row)
        print(json.dumps(row), flush=True)
        args.out.mkdir(parents=True, exist_ok=True)
        write_json(results_path, results)
        write_markdown(results, args.out / f"{stem}.md")


def write_markdown(results: dict[str, Any], path: Path) -> None:
    rows = results["rows"]
    base = next((r for r in rows if r["row"].startswith("base")), None)
    lines = [
        "# Recipe ablation: one change per row, same step count and seed",
        "",
        f"Machine: {results['machine']}.",
        "",
        "Every row starts from " + DESCRIPTIONS[results.get("stage", "first-wave")],
        "",
        "Chosen by **dev nDCG@10** (SciFact train qrels, 809 queries never trained on), asymmetric against",
        "the teacher's document vectors. Test nDCG@10 is shown but was never used to choose. Agreement@10:",
        "share of the teacher's top-10 documents returned, over all 1,109 SciFact queries.",
        "",
    ]
    header = ["row", "steps", "dev nDCG@10", "Δ dev vs base", "agreement@10", "held-out cos", "test nDCG@10"]
    table = []
    for r in rows:
        delta = "" if base is None else f"{r['dev_ndcg10'] - base['dev_ndcg10']:+.4f}"
        table.append(
            [
                r["row"],
                r["steps"],
                f"{r['dev_ndcg10']:.4f}",
                delta,
                f"{r['teacher_agreement10']:.3f}",
                f"{r['heldout_cosine']:.3f}" if r["heldout_cosine"] is not None else "",
                f"{r['test_ndcg10']:.4f}",
            ]
        )
    lines += markdown_table(header, table)
    elsewhere = {r["row"]: r["machine"] for r in rows if r.get("machine", results["machine"]) != results["machine"]}
    if elsewhere:
        lines += ["", f"Rows ran on {results['machine']} unless the list below names another machine."]
    lines += ["", "Throughput while the row ran (texts/s of training steps; see `concurrent` for the load):", ""]
    lines += [
        f"- {r['row']}: {r['texts_per_s']:.0f} texts/s ({r['concurrent']})"
        + (f"; machine: {elsewhere[r['row']]}" if r["row"] in elsewhere else "")
        for r in rows
    ]
    if results.get("not_run"):
        lines += ["", "Not run:", ""] + [f"- {rows_}: {why}" for rows_, why in results["not_run"].items()]
    if results.get("reading"):
        lines += ["", results["reading"]]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    run_main(main)
