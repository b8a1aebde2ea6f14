"""The teacher in static int8 (OpenVINO + NNCF) on CPUs without native bf16: speed and drift.

    python -m benchmarks.teacher_int8 --data-root ../shared/data

On a CPU with native bf16 the teacher's bf16 autocast meets the issue's bar (at least 2x fp32, cosine and
nDCG@10 within 0.002: `teacher_precision.md`). Without it, `auto` stays fp32. This measures whether int8
can take bf16's place there: the teacher's OpenVINO export, statically quantised by NNCF (the transformer
preset, which keeps softmax and layer norms in float and applies SmoothQuant to the MatMuls), calibrated on
a sample of the recipe's own training texts. Variants: NNCF's default SmoothQuant strength (0.95), a
weaker one (0.8), and 0.8 with the FFN down-projections kept in fp32 (in the upper six layers, and in
all twelve), since the activations after GELU are where int8 loses most.

For each variant: texts/s on a sample of the recipe's training texts, batched as the real pass batches
them (runs of texts of one length, each from the middle of an equal share of the length order), batch 64, the
median of several passes, the variants taking turns so that a slow spell of the shared cores falls on
all of them, the estimated time for all of the recipe's teacher texts (the SciFact documents' vectors
are imported, so they cost nothing), mean and minimum cosine to the torch fp32 vectors, and
SciFact nDCG@10 (test and dev) with the claims encoded by the variant against the precomputed fp32
document vectors. Run it on an otherwise idle machine: every speed is a wall-clock time.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._report import machine, markdown_table, run_main, write_json
from embedkd.data import load_beir
from embedkd.device import native_bf16
from embedkd.distill import DataOptions, Teacher
from embedkd.distill.data import load_training_texts
from embedkd.distill.teacher import read_aligned_texts
from embedkd.errors import InputError
from embedkd.evaluation import score_retrieval
from embedkd.models import Encoder
from embedkd.models.backends import Backend, attach_backend, ensure_export

# (label, SmoothQuant strength for MatMuls or None for NNCF's default, name patterns kept in fp32)
VARIANTS: list[tuple[str, float | None, list[str]]] = [
    ("int8, SmoothQuant 0.95 (NNCF default)", None, []),
    ("int8, SmoothQuant 0.8", 0.8, []),
    ("int8, SmoothQuant 0.8, FFN down-proj. fp32 in layers 6-11", 0.8,
     [r".*/layer\.([6-9]|1[01])/output/dense/MatMul"]),
    ("int8, SmoothQuant 0.8, every FFN down-proj. fp32", 0.8, [r".*/output/dense/MatMul"]),
]  # fmt: skip
KINDS = ("query", "title", "sentence")
HEADER = ["teacher", "texts/s", "recipe texts, est. min", "speed-up", "cosine mean / min", "test nDCG@10",
          "dev nDCG@10"]  # fmt: skip


def _nncf() -> Any:
    try:
        import nncf
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise InputError("this benchmark needs NNCF: pip install 'embedkd[bench]' (or pip install nncf)") from exc
    return nncf


def quantize(source: Path, target: Path, encoder: Encoder, calibration: Sequence[str], alpha: float | None,
             fp32_patterns: list[str]) -> None:  # fmt: skip
    """Static int8 of the OpenVINO model at ``source``, calibrated one text at a time, saved to ``target``."""
    import openvino as ov

    nncf = _nncf()
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    tokenizer = encoder.model.tokenizer
    limit = encoder.model.max_seq_length
    model = ov.Core().read_model(str(source))
    names = [port.get_any_name() for port in model.inputs]  # e.g. token_type_ids for BERT, not for MPNet

    def feed(text: str) -> dict[str, np.ndarray]:
        tokens = tokenizer([text], truncation=True, max_length=limit, return_tensors="np")
        return {name: tokens[name].astype(np.int64) for name in names}

    options: dict[str, Any] = {"model_type": nncf.ModelType.TRANSFORMER, "subset_size": len(calibration)}
    if alpha is not None:
        options["advanced_parameters"] = AdvancedQuantizationParameters(
            smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=alpha)
        )
    if fp32_patterns:
        options["ignored_scope"] = nncf.IgnoredScope(patterns=fp32_patterns)
    ov.save_model(nncf.quantize(model, nncf.Dataset(list(calibration), feed), **options), str(target))


def vectors(encoder: Encoder, sample: list[str], claims: list[str]) -> dict[str, np.ndarray]:
    return {"sample": encoder.encode(sample, batch_size=64), "claims": encoder.encode_query(claims, batch_size=64)}


def time_rounds(encoders: dict[str, Encoder], sample: list[str], rounds: int) -> dict[str, float]:
    """Median seconds per pass over ``sample`` for each encoder, the encoders taking turns in each round,
    so that a slow spell of the machine (shared cores) falls on all of them alike."""
    for encoder in encoders.values():
        encoder.encode(sample[:64], batch_size=64)  # warm-up
    seconds: dict[str, list[float]] = {label: [] for label in encoders}
    for _ in range(rounds):
        for label, encoder in encoders.items():
            started = time.perf_counter()
            encoder.encode(sample, batch_size=64)
            seconds[label].append(time.perf_counter() - started)
    return {label: float(np.median(values)) for label, values in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--sample", type=int, default=1024, help="Training texts timed and compared.")
    parser.add_argument("--rounds", type=int, default=3, help="Timed passes per variant (the median counts).")
    parser.add_argument("--calibration", type=int, default=400, help="Training texts NNCF calibrates on.")
    parser.add_argument("--concurrent", default="nothing else")
    parser.add_argument("--name", default="", help="Write teacher_int8_NAME.{md,json} (another machine) instead.")
    args = parser.parse_args()
    stem = f"teacher_int8_{args.name}" if args.name else "teacher_int8"
    beir = args.data_root / "beir" / "scifact"
    recipe = load_training_texts(
        [args.data_root / "train" / "queries.jsonl", beir], DataOptions(max_texts_per_source=None, seed=0)
    )
    teacher_texts = [t for t in recipe if t.kind.value in KINDS]  # the documents' vectors are imported
    counts = {kind: sum(t.kind.value == kind for t in teacher_texts) for kind in KINDS}
    queries = [t.text for t in teacher_texts if t.kind.value == "query"]
    sentences = [t.text for t in teacher_texts if t.kind.value == "sentence"]
    # Calibration from the front of the seeded shuffle; the timed sample leaves those texts out.
    calibration = queries[: args.calibration * 3 // 4] + sentences[: args.calibration // 4]
    # The timed sample is what the real pass encodes: the cache encodes its missing texts sorted by length,
    # so every batch holds texts of about one length. Batches of 64 consecutive texts of that order, taken
    # at evenly spaced points of it, stand for the whole pass (a random sample would pad short texts to
    # long ones and overstate the time several-fold).
    held_out = set(calibration)
    ordered = sorted((t for t in teacher_texts if t.text not in held_out), key=lambda t: len(t.text))
    runs = max(1, args.sample // 64)  # each run stands for its 1/runs of the order: it sits at the middle
    starts = ((np.arange(runs) + 0.5) * len(ordered) / runs - 32).clip(0, len(ordered) - 64).astype(int)
    chosen = [t for start in starts for t in ordered[start : start + 64]]
    sample = [t.text for t in chosen]
    kinds = np.array([t.kind.value for t in chosen])
    splits = {split: load_beir(beir, split) for split in ("test", "train")}
    claims = [q for ds in splits.values() for q in ds.queries.values()]
    teacher = Teacher.from_model("mpnet-base")
    precomputed = args.data_root / "embeddings" / "scifact-mpnet-base" / "corpus.f16.npy"
    teacher.import_embeddings(read_aligned_texts(beir, precomputed), precomputed)
    docs = teacher.embeddings(splits["test"].doc_texts(), role="document", progress=False)

    def ndcg(vectors: np.ndarray) -> dict[str, float]:
        out, start = {}, 0
        for split, ds in splits.items():
            out[split] = score_retrieval(ds, vectors[start : start + len(ds.queries)], docs).ndcg_at_10
            start += len(ds.queries)
        return out

    encoders: dict[str, Encoder] = {"torch fp32 (today's path here)": Encoder.load("mpnet-base", device="cpu")}
    openvino = Encoder.load("mpnet-base", device="cpu", backend="openvino")
    encoders["OpenVINO fp32"] = openvino
    fp32_export = ensure_export(openvino.model, openvino.path, openvino.fingerprint, Backend.OPENVINO, "none")
    quantize_seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for number, (label, alpha, patterns) in enumerate(VARIANTS):
            target = Path(tmp) / f"int8_{number}.xml"
            started = time.perf_counter()
            quantize(fp32_export, target, openvino, calibration, alpha, patterns)
            quantize_seconds[label] = time.perf_counter() - started
            encoder = Encoder.load("mpnet-base", device="cpu", backend="openvino")
            attach_backend(encoder.model, target, Backend.OPENVINO, threads=torch.get_num_threads())
            encoders[label] = encoder
        seconds = time_rounds(encoders, sample, args.rounds)
        found = {label: vectors(encoder, sample, claims) for label, encoder in encoders.items()}
    total = sum(counts.values())
    reference = found["torch fp32 (today's path here)"]
    base_seconds = seconds["torch fp32 (today's path here)"]
    rows: list[dict[str, Any]] = []
    for label, own in found.items():
        cos = {k: (own[k] * reference[k]).sum(1) for k in own}
        flat = np.concatenate(list(cos.values()))
        result = {
            "variant": label,
            "texts_per_s": len(sample) / seconds[label],
            "recipe_minutes": total * seconds[label] / len(sample) / 60,
            "speedup_vs_torch_fp32": base_seconds / seconds[label],
            "cosine_mean": float(flat.mean()),
            "cosine_min": float(flat.min()),
            "cosine_by_kind": {k: float(cos["sample"][kinds == k].mean()) for k in KINDS}
            | {"claims": float(cos["claims"].mean())},
            "ndcg10": ndcg(own["claims"]),
            "quantize_seconds": quantize_seconds.get(label),
        }
        rows.append(result)
        print(json.dumps(result), flush=True)
    out = {
        "machine": machine(),
        "native_bf16": native_bf16("cpu"),
        "threads": torch.get_num_threads(),
        "concurrent": args.concurrent,
        "recipe_counts": counts,
        "sample": len(sample),
        "rounds": args.rounds,
        "calibration_texts": len(calibration),
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / f"{stem}.json", out)
    base = rows[0]["ndcg10"]
    table = [
        [r["variant"], f"{r['texts_per_s']:.1f}", f"{r['recipe_minutes']:.0f}", f"{r['speedup_vs_torch_fp32']:.2f}x",
         f"{r['cosine_mean']:.4f} / {r['cosine_min']:.4f}",
         f"{r['ndcg10']['test']:.4f} ({r['ndcg10']['test'] - base['test']:+.4f})",
         f"{r['ndcg10']['train']:.4f} ({r['ndcg10']['train'] - base['train']:+.4f})"]
        for r in rows
    ]  # fmt: skip
    lines = [
        "# The teacher in static int8 (OpenVINO + NNCF) where the CPU has no native bf16",
        "",
        f"Machine: {out['machine']}; native bf16: {out['native_bf16']}; {out['threads']} threads. "
        f"Running at the same time: {args.concurrent}.",
        "",
        f"Calibration: {len(calibration)} of the recipe's training texts (3/4 generic queries, 1/4 SciFact "
        f"sentences). Timed: {len(sample)} other training texts, {len(sample) // 64} runs of 64 consecutive texts "
        "at the middle of each equal share of the length order in which the cache encodes them (so batches hold texts "
        f"of one length, as in the real pass), batch 64, the median of {args.rounds} passes, the variants "
        "taking turns in each round. "
        f"The recipe's teacher texts: {counts['query']:,} queries, {counts['title']:,} titles, "
        f"{counts['sentence']:,} sentences (the SciFact documents' vectors are imported); the estimate scales "
        f"the sample's time to them. Cosine: to torch fp32, over the sample and the {len(claims):,} SciFact "
        "claims. nDCG@10: the claims encoded by the variant against the precomputed fp32 document vectors "
        "(dev = SciFact's train qrels).",
        "",
        *markdown_table(HEADER, table),
    ]
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    run_main(main)
