"""Training-step throughput of the student on this machine, one option at a time.

    python -m benchmarks.train_throughput --data-root ../shared/data

Times the real training step (forward, LEAF loss, backward, AdamW) of MiniLM-L6 plus its projection on
length-bucketed batches of the recipe's texts (generic queries and SciFact titles/sentences, batch 32,
truncation 128), after a warm-up. Options: fp32 against bf16 autocast, 1 or 2 threads, torch.compile,
frozen lower layers served from the layer cache (the lower layers' output computed once), and the
default student (3 of the teacher's layers, truncation 64) with AdamW's default (foreach) and fused
kernels. A second table times an in-training evaluation's encode (1,809 texts, the default student) in
fp32 and bf16. Run it on an otherwise idle machine: it reports what else was running.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks._report import machine, markdown_table, run_main, write_json
from embedkd.device import autocast, native_bf16, to_device
from embedkd.distill import DataOptions
from embedkd.distill.batching import bucketed_batches
from embedkd.distill.data import load_training_texts
from embedkd.distill.layer_cache import LayerCache
from embedkd.distill.losses import leaf_loss
from embedkd.models.student import build_student


def measure(texts: list[str], option: dict[str, Any], steps: int, warmup: int) -> dict[str, Any]:
    """Time ``steps`` training steps after ``warmup``; ``option`` may also name a ``device`` (default cpu),
    a ``batch`` size (default 32) and a ``base`` folder for the student (default the registry's model)."""
    device = option.get("device", "cpu")
    if device == "cpu":
        torch.set_num_threads(option.get("threads", 2))
    torch.manual_seed(0)
    model = _student(option).to(device)
    max_len = model.max_seq_length
    transformer: Any = model[0]
    for param in transformer.auto_model.get_input_embeddings().parameters():
        param.requires_grad_(False)
    precision = option.get("precision", "fp32")
    cache = None
    if option.get("frozen"):
        cache = LayerCache(model, texts, frozen=option["frozen"], device=device, progress=False)
        lengths = cache.lengths()
    else:
        lengths = [len(ids) for ids in model.tokenizer(texts, truncation=True, max_length=max_len)["input_ids"]]
    forward_module: Any = model
    if option.get("compile"):
        forward_module = torch.compile(model, dynamic=True)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, fused=option.get("fused"))
    targets = torch.nn.functional.normalize(torch.randn(len(texts), 768), dim=-1).to(device)
    batches = bucketed_batches(lengths, option.get("batch", 32), seed=0)
    random.Random(0).shuffle(batches)
    model.train()
    seen = tokens = 0
    started = 0.0
    for step, batch in enumerate(batches[: warmup + steps]):
        if step == warmup:
            _synchronize(device)
            started = time.perf_counter()
            seen = tokens = 0
        with autocast(precision, device):
            if cache is not None:
                out = cache.forward(model, batch)
            else:
                features = model.preprocess([texts[i] for i in batch])
                features = to_device(features, device)
                out = forward_module(features)["sentence_embedding"].float()
        loss = leaf_loss(out, targets[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(batch)
        tokens += sum(lengths[i] for i in batch)
    _synchronize(device)
    seconds = time.perf_counter() - started
    return {"texts/s": seen / seconds, "tokens/s": tokens / seconds, "steps": steps, "seconds": seconds}


def _student(option: dict[str, Any]) -> Any:
    """MiniLM-L6 at 128 tokens, or with ``teacher3`` the default student: 3 teacher layers at 64 tokens."""
    if option.get("teacher3"):
        model, _ = build_student(option.get("base", "mpnet-base"), teacher_dimension=768, layers=3, device="cpu")
        model.max_seq_length = 64
    else:
        model, _ = build_student(option.get("base", "minilm-l6"), teacher_dimension=768, device="cpu")
        model.max_seq_length = 128
    return model


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure_eval(texts: list[str], precision: str) -> dict[str, Any]:
    """One in-training evaluation's encode (the default student), in fp32 or bf16 autocast."""
    torch.set_num_threads(2)
    model = _student({"teacher3": True})
    model.eval()
    timings = []
    with torch.inference_mode(), autocast(precision, "cpu"):
        for _ in range(2):
            started = time.perf_counter()
            model.encode(texts, batch_size=128, convert_to_tensor=True)
            timings.append(time.perf_counter() - started)
    return {"precision": precision, "texts": len(texts), "seconds": min(timings)}


OPTIONS: list[tuple[str, dict[str, Any]]] = [
    ("fp32, 2 threads", {"precision": "fp32"}),
    ("bf16 autocast, 2 threads", {"precision": "bf16"}),
    ("bf16 autocast, 1 thread", {"precision": "bf16", "threads": 1}),
    ("bf16 + torch.compile (dynamic)", {"precision": "bf16", "compile": True}),
    ("bf16 + 2 frozen layers (layer cache)", {"precision": "bf16", "frozen": 2}),
    ("bf16 + 3 frozen layers (layer cache)", {"precision": "bf16", "frozen": 3}),
    ("fp32 + 3 frozen layers (layer cache)", {"precision": "fp32", "frozen": 3}),
    ("default student (3 teacher layers, 64 tokens), bf16, AdamW foreach", {"precision": "bf16", "teacher3": True}),
    (
        "default student (3 teacher layers, 64 tokens), bf16, AdamW fused",
        {"precision": "bf16", "teacher3": True, "fused": True},
    ),
]


def _eval_texts(root: Path) -> list[str]:
    def rows(path: Path, n: int) -> list[dict[str, Any]]:
        return [json.loads(line) for line in path.read_text().splitlines()[:n]]

    claims = [r["text"] for r in rows(root / "beir" / "scifact" / "queries.jsonl", 809)]
    queries = [r["text"] for r in rows(root / "train" / "queries.jsonl", 700)]
    docs = rows(root / "beir" / "scifact" / "corpus.jsonl", 300)
    return claims + queries + [f"{d['title']} {d['text']}" for d in docs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--concurrent", default="nothing else")
    parser.add_argument("--only", default="", help="Option names to run, separated by ';'.")
    args = parser.parse_args()
    texts = [
        t.text
        for t in load_training_texts(
            [args.data_root / "train" / "queries.jsonl", args.data_root / "beir" / "scifact"],
            DataOptions(max_texts_per_source=4000, seed=0),
        )
    ]
    results: dict[str, Any] = {
        "machine": machine(),
        "native_bf16": native_bf16("cpu"),
        "concurrent": args.concurrent,
        "texts": len(texts),
        "rows": [],
    }
    wanted = {w.strip() for w in args.only.split(";") if w.strip()}
    for name, option in OPTIONS:
        if wanted and name not in wanted:
            continue
        try:
            row = {"option": name, **measure(texts, option, args.steps, args.warmup)}
        except Exception as exc:  # noqa: BLE001 - an option that does not run here is reported, not fatal
            row = {"option": name, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        results["rows"].append(row)
        print(json.dumps(row), flush=True)
    eval_texts = _eval_texts(args.data_root)
    results["evaluation"] = [measure_eval(eval_texts, precision) for precision in ("fp32", "bf16")]
    print(json.dumps(results["evaluation"]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "train_throughput.json", results)
    base = next((r["texts/s"] for r in results["rows"] if "texts/s" in r), None)
    table = [
        [
            r["option"],
            f"{r['texts/s']:.0f}" if "texts/s" in r else r["error"],
            f"{r['tokens/s']:.0f}" if "tokens/s" in r else "",
            f"{r['texts/s'] / base:.2f}x" if base and "texts/s" in r else "",
        ]
        for r in results["rows"]
    ]
    lines = [
        "# Training-step throughput (batch 32; MiniLM-L6 at truncation 128 unless the row says otherwise)",
        "",
        f"Machine: {results['machine']}; native bf16: {results['native_bf16']}. "
        f"Running at the same time: {results['concurrent']}.",
        "",
        f"{args.steps} timed steps after {args.warmup} warm-up steps, on length-bucketed batches of "
        f"{len(texts)} recipe texts (generic queries and SciFact titles/sentences).",
        "",
        *markdown_table(["option", "texts/s", "tokens/s", "vs first row"], table),
        "",
        f"An in-training evaluation's encode ({len(eval_texts)} texts: SciFact's 809 dev claims, 700 generic "
        "queries, 300 SciFact documents; the default student, batch 128, best of two):",
        "",
        *markdown_table(
            ["precision", "seconds"], [[e["precision"], f"{e['seconds']:.1f}"] for e in results["evaluation"]]
        ),
    ]
    (args.out / "train_throughput.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    run_main(main)
