"""Option types shared by every command: one name, one help text and one default per concept.

Names follow sentence-transformers where it has one (``max_seq_length``, ``truncate_dim``, ``batch_size``,
``precision``, ``device``). Older spellings stay as secondary flags so existing scripts keep working.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from embedkd.device import Precision
from embedkd.models.backends import Backend, Quantize

__all__ = [
    "BackendOpt",
    "BatchSize",
    "Device",
    "Engine",
    "IndexDir",
    "InputPath",
    "MaxSeqLength",
    "Progress",
    "PrecisionOpt",
    "QuantizeOpt",
    "TruncateDim",
]

InputPath = Annotated[
    Path,
    typer.Option(
        "--input",
        "-i",
        help="Input texts or documents: .jsonl, .txt, a BEIR folder, or a folder of .txt/.md files.",
    ),
]
IndexDir = Annotated[Path, typer.Option("--index", "-x", help="Index folder.")]
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, help="Texts per forward pass.")]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")]
PrecisionOpt = Annotated[
    Precision,
    typer.Option(
        "--precision",
        case_sensitive=False,
        help="Compute precision: auto (bf16 autocast where the hardware has it natively, e.g. AMX CPUs: 1.6-2.5x "
        "faster in bulk, mean cosine 0.99998 to fp32), fp32, bf16, fp16 (CUDA).",
    ),
]
MaxSeqLength = Annotated[
    int | None,
    typer.Option(
        "--max-seq-length", "--max-length", min=1, help="Truncate inputs to this many tokens (default: the model's)."
    ),
]
TruncateDim = Annotated[
    int | None,
    typer.Option("--truncate-dim", "--dims", min=1, help="Keep only the first N dimensions (Matryoshka order)."),
]
Progress = Annotated[bool, typer.Option(help="Show progress bars.")]
FuseWeight = Annotated[
    float, typer.Option(min=0.0, help="Weight of the second model's score in the fusion (1: the plain sum of cosines).")
]
BackendOpt = Annotated[
    Backend,
    typer.Option(
        "--backend",
        case_sensitive=False,
        help="Inference backend of the student: torch, onnx (ONNX Runtime) or openvino; exported into the model "
        "folder on first use (`embedkd export` also measures it).",
    ),
]
QuantizeOpt = Annotated[
    Quantize,
    typer.Option("--quantize", case_sensitive=False, help="none, or int8 (dynamic int8 weights; onnx/openvino)."),
]


class Engine(str, Enum):
    LOCAL = "local"
    RAY = "ray"
