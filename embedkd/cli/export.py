"""``embedkd export``: export a model to an inference backend and record how faithful it is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from embedkd.cli._app import app
from embedkd.cli._options import BackendOpt, QuantizeOpt
from embedkd.errors import InputError
from embedkd.models.backends import Backend, Quantize


@app.command("export")
def export_command(
    model: Annotated[
        Path, typer.Argument(help="Model folder (a trained student, or any sentence-transformers folder).")
    ],
    backend: BackendOpt = Backend.ONNX,
    quantize: QuantizeOpt = Quantize.NONE,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Export MODEL's transformer to ONNX or OpenVINO (int8 optional) inside its folder, measure it against
    the fp32 torch output and, for a student, against its teacher, and record that in embedkd.json."""
    from embedkd.evaluation.backends import measure_backend

    if Backend(backend) is Backend.TORCH:
        raise InputError("--backend torch needs no export; choose onnx or openvino")
    if not model.is_dir():
        raise InputError(f"{model}: not a model folder")
    result = measure_backend(model, Backend(backend).value, Quantize(quantize).value)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    line = f"{model} on {Backend(backend).value}"
    if Quantize(quantize) is Quantize.INT8:
        line += " int8"
    line += (
        f": cosine to torch fp32 {result['cosine_to_torch_fp32']:.4f} (min {result['min_cosine_to_torch_fp32']:.4f})"
    )
    if "mean_cosine" in result:
        line += (
            f"; mean cosine to the teacher {result['mean_cosine']:.4f} (torch fp32 {result['torch_mean_cosine']:.4f})"
        )
    typer.echo(line)
