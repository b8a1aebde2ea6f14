"""The teacher's document encoding and the student's training steps on one CUDA GPU.

    python -m benchmarks.gpu_throughput --data-root ../shared/data
    python -m benchmarks.gpu_throughput --random-weights --teacher path/to/mpnet-folder   # timing only

Encodes SciFact's documents, chunked as an index chunks them, with the teacher (mpnet-base) in fp32, fp16
and bf16 autocast (documents/s, chunks/s, tokens/s), then times the default student's training step (3 of the
teacher's layers, truncation 64, LEAF loss, fused AdamW) in fp32 and bf16 autocast with ``train_throughput``'s
loop. The measured bf16 documents/s is what ``benchmarks.scale --gpu-docs-per-s`` takes for its projection.

``--random-weights`` keeps the teacher folder's configuration and tokenizer and draws fresh weights: the speed
of a dense transformer does not depend on its weights, so the timings hold for the real model, while its
vectors mean nothing (no drift or quality is reported). It is for machines the weights cannot reach.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks._report import machine, markdown_table, run_main, write_json
from benchmarks.train_throughput import measure
from embedkd.data.documents import Document
from embedkd.data.jsonl import iter_jsonl
from embedkd.distill import DataOptions
from embedkd.distill.data import load_training_texts
from embedkd.errors import InputError
from embedkd.index.chunking import chunk_document
from embedkd.models import Encoder
from embedkd.models.loading import resolve_model_path

PRECISIONS = ("fp32", "fp16", "bf16")  # fp16 is CUDA's
TRAINING = [("fp32", 32), ("bf16", 32), ("bf16", 128)]


def random_weights_copy(source: Path, folder: Path, *, seed: int = 0) -> Path:
    """``source``'s sentence-transformers folder with the transformer's weights drawn afresh (same shapes)."""
    from transformers import AutoConfig, AutoModel

    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "onnx", "openvino"))
    torch.manual_seed(seed)
    AutoModel.from_config(AutoConfig.from_pretrained(folder)).save_pretrained(folder)
    return folder


def encode_rows(
    teacher: Path, docs: list[Document], batch_size: int, device: str
) -> tuple[list[dict[str, Any]], int, int]:
    from transformers import AutoTokenizer

    texts: list[str] = []
    tokens = 0
    rows = []
    for precision in [p for p in PRECISIONS if p != "fp16" or device.startswith("cuda")]:
        encoder = Encoder.load(teacher, device=device, precision=precision)
        if not texts:  # chunked once, at the length the model reads (the first load tells it)
            max_tokens = int(encoder.model.max_seq_length or 512)
            tokenizer = AutoTokenizer.from_pretrained(str(teacher))
            tokenizer.model_max_length = 10**9
            texts = [c.encode_text for d in docs for c in chunk_document(d, tokenizer, max_tokens=max_tokens)]
            tokens = sum(min(len(ids), max_tokens) for ids in tokenizer(texts)["input_ids"])
        encoder.encode(texts[: 4 * batch_size], role="document", batch_size=batch_size)  # warm-up
        start = time.perf_counter()
        encoder.encode(texts, role="document", batch_size=batch_size)  # returns numpy: the GPU has finished
        seconds = time.perf_counter() - start
        rows.append(
            {
                "precision": precision,
                "seconds": seconds,
                "docs/s": len(docs) / seconds,
                "chunks/s": len(texts) / seconds,
                "tokens/s": tokens / seconds,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
        del encoder
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return rows, len(texts), tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--teacher", default="mpnet-base", help="Registry name or sentence-transformers folder.")
    parser.add_argument("--random-weights", action="store_true", help="Time a same-shape copy with fresh weights.")
    parser.add_argument("--docs", type=int, default=0, help="SciFact documents to encode (0: all).")
    parser.add_argument("--batch-size", type=int, default=128, help="Chunks per teacher forward pass.")
    parser.add_argument("--device", default="cuda", help="cuda (what it is for) or cpu (a quick dry run).")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", default="", help="Suffix of the results files.")
    parser.add_argument("--concurrent", default="nothing else")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("no CUDA device: this benchmark times the GPU paths (see train_throughput for the CPU)")
    rows = list(iter_jsonl(args.data_root / "beir" / "scifact" / "corpus.jsonl"))
    docs = [Document(id=str(r["_id"]), title=str(r.get("title", "")), text=str(r["text"])) for _, r in rows]
    docs = docs[: args.docs] if args.docs else docs
    with tempfile.TemporaryDirectory() as tmp:
        teacher = resolve_model_path(args.teacher)
        if args.random_weights:
            teacher = random_weights_copy(teacher, Path(tmp) / "teacher")
        encoding, chunks, tokens = encode_rows(teacher, docs, args.batch_size, args.device)
        texts = [
            t.text
            for t in load_training_texts(
                [args.data_root / "train" / "queries.jsonl", args.data_root / "beir" / "scifact"],
                DataOptions(max_texts_per_source=4000, seed=0),
            )
        ]
        training = []
        for precision, batch in TRAINING:
            option = {"device": args.device, "teacher3": True, "base": str(teacher), "precision": precision}
            row = measure(texts, {**option, "batch": batch, "fused": True}, args.steps, args.warmup)
            training.append({"precision": precision, "batch": batch, **row, "steps/s": row["steps"] / row["seconds"]})
            print(json.dumps(training[-1]), flush=True)
    results = {
        "machine": machine(),
        "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "none: a CPU dry run",
        "concurrent": args.concurrent,
        "weights": "random (same configuration and tokenizer)" if args.random_weights else "the real teacher",
        "documents": len(docs),
        "chunks": chunks,
        "tokens": tokens,
        "batch_size": args.batch_size,
        "encoding": encoding,
        "training": training,
    }
    stem = "gpu_throughput" + (f"_{args.name}" if args.name else "")
    write_json(args.out / f"{stem}.json", results)
    (args.out / f"{stem}.md").write_text("\n".join(_markdown(results)) + "\n")


def _markdown(results: dict[str, Any]) -> list[str]:
    return [
        f"# Teacher encoding and student training on one GPU ({results['gpu']})",
        "",
        f"Machine: {results['machine']}. Ran beside: {results['concurrent']}. Weights: {results['weights']}.",
        "",
        f"The teacher (mpnet-base) encodes {results['documents']:,} SciFact documents, chunked as an index chunks "
        f"them ({results['chunks']:,} chunks, {results['tokens']:,} tokens), batch {results['batch_size']}, "
        "after a warm-up:",
        "",
        *markdown_table(
            ["precision", "seconds", "docs/s", "chunks/s", "tokens/s"],
            [
                [
                    r["precision"],
                    f"{r['seconds']:.1f}",
                    f"{r['docs/s']:,.0f}",
                    f"{r['chunks/s']:,.0f}",
                    f"{r['tokens/s']:,.0f}",
                ]
                for r in results["encoding"]
            ],
        ),
        "",
        "The default student's training step (3 teacher layers, truncation 64, LEAF loss, fused AdamW) on "
        "length-bucketed batches of the recipe's texts:",
        "",
        *markdown_table(
            ["precision", "batch", "steps/s", "texts/s", "tokens/s"],
            [
                [r["precision"], r["batch"], f"{r['steps/s']:.1f}", f"{r['texts/s']:,.0f}", f"{r['tokens/s']:,.0f}"]
                for r in results["training"]
            ],
        ),
    ]


if __name__ == "__main__":
    run_main(main)
