"""``embedkd encode``: embed a text file with any model and write a .npy."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from embedkd.cli._app import app
from embedkd.cli._options import (
    BackendOpt,
    BatchSize,
    Device,
    Engine,
    InputPath,
    MaxSeqLength,
    PrecisionOpt,
    Progress,
    QuantizeOpt,
    TruncateDim,
)
from embedkd.data import read_texts
from embedkd.device import Precision
from embedkd.errors import InputError
from embedkd.models.backends import Backend, Quantize
from embedkd.models.encoder import Encoder
from embedkd.npy import save_npy_atomic
from embedkd.paths import check_parent_is_folder


class Role(str, Enum):
    QUERY = "query"
    DOCUMENT = "document"


class OutputDtype(str, Enum):
    FLOAT32 = "float32"
    FLOAT16 = "float16"


@app.command("encode")
def encode_command(
    input_path: InputPath,
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="Model that embeds the texts: the teacher's name (mpnet-base) for vectors in its index's space, "
            "a trained student folder, or any sentence-transformers folder or hub id. Required: no default is safe.",
        ),
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Output .npy (default: INPUT.<model>.npy).")
    ] = None,
    role: Annotated[
        Role, typer.Option(case_sensitive=False, help="query or document: which of the model's prompts to apply.")
    ] = Role.DOCUMENT,
    field: Annotated[str, typer.Option(help="JSON field holding the text.")] = "text",
    batch_size: BatchSize = 64,
    device: Device = "auto",
    precision: PrecisionOpt = Precision.AUTO,
    backend: BackendOpt = Backend.TORCH,
    quantize: QuantizeOpt = Quantize.NONE,
    max_seq_length: MaxSeqLength = None,
    truncate_dim: TruncateDim = None,
    output_dtype: Annotated[
        OutputDtype, typer.Option(case_sensitive=False, help="Storage type of the .npy.")
    ] = OutputDtype.FLOAT32,
    float16: Annotated[bool, typer.Option("--float16", hidden=True, help="Same as --output-dtype float16.")] = False,
    progress: Progress = True,
    engine: Annotated[
        Engine,
        typer.Option(
            case_sensitive=False,
            help="local: this process, one .npy. ray: a Ray Data actor pool over INPUT's documents (chunked as an "
            "index chunks them), writing resumable parquet shards to --output DIR for `index build "
            "--from-embeddings` (RAY_ADDRESS joins a cluster).",
        ),
    ] = Engine.LOCAL,
    workers: Annotated[
        int, typer.Option(min=1, help="ray: teacher actors (one per GPU, or per --cpus-per-worker).")
    ] = 1,
    cpus_per_worker: Annotated[int, typer.Option(min=1, help="ray: CPUs (and torch threads) per actor.")] = 1,
    shard_size: Annotated[int, typer.Option(min=1, help="ray: documents per parquet shard.")] = 1000,
) -> None:
    """Write L2-normalised embeddings of every text in INPUT, one row per text, in input order."""
    if Engine(engine) is Engine.RAY:
        from embedkd.data.documents import read_documents
        from embedkd.scale.ray_encode import encode_with_ray

        if output is None:
            raise InputError("--engine ray needs --output DIR (a folder for the shards)")
        stats = encode_with_ray(
            read_documents(input_path),
            output,
            teacher=model,
            workers=workers,
            cpus_per_worker=cpus_per_worker,
            batch_size=batch_size,
            shard_size=shard_size,
            precision=Precision(precision).value,
            source=str(input_path),
        )
        typer.echo(
            f"wrote {stats['shards_written']} shards ({stats['chunks']} chunks) to {output}; "
            f"{stats['shards_total']} in all"
        )
        return
    if output is None:
        output = input_path.with_name(f"{input_path.stem}.{Path(model).name}.npy")
    _check_output(output, input_path)  # before the minutes of encoding, not after
    texts = read_texts(input_path, field=field)
    encoder = Encoder.load(
        model,
        device=device,
        max_seq_length=max_seq_length,
        precision=Precision(precision).value,
        backend=Backend(backend).value,
        quantize=Quantize(quantize).value,
    )
    embeddings = encoder.encode(texts, role=Role(role).value, batch_size=batch_size, progress=progress)
    if truncate_dim is not None:
        if truncate_dim > embeddings.shape[1]:
            raise InputError(f"--truncate-dim {truncate_dim} exceeds the model's {embeddings.shape[1]} dimensions")
        embeddings = embeddings[:, :truncate_dim]
        embeddings /= np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    dtype = np.float16 if float16 or OutputDtype(output_dtype) is OutputDtype.FLOAT16 else np.float32
    embeddings = np.asarray(embeddings, dtype=dtype)
    save_npy_atomic(output, embeddings)
    typer.echo(f"wrote {output}: {embeddings.shape[0]} x {embeddings.shape[1]} {embeddings.dtype}")


def _check_output(output: Path, input_path: Path) -> None:
    """Refuse an ``--output`` that would replace the input, a folder, or a file that is not a ``.npy``, and
    one inside a file."""
    check_parent_is_folder(output, "--output")
    if not output.exists():
        return
    if output.is_dir():
        raise InputError(f"--output {output} is a folder; give a .npy file")
    if input_path.exists() and output.samefile(input_path):
        raise InputError(f"--output {output} is the input file; give another .npy file")
    if output.suffix != ".npy":
        raise InputError(f"--output {output} exists and is not a .npy file; embedkd does not overwrite it")
