"""``embedkd encode``: embed a text file with any model and write a .npy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from embedkd.cli._app import app
from embedkd.data import read_texts
from embedkd.models import load_model
from embedkd.npy import save_npy_atomic


@app.command("encode")
def encode_command(
    input_path: Annotated[Path, typer.Option("--input", "-i", help=".jsonl, .txt or BEIR folder.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Model name, folder or hub id.")] = "minilm-l6",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Output .npy (default: INPUT.<model>.npy).")
    ] = None,
    field: Annotated[str, typer.Option(help="JSON field holding the text.")] = "text",
    batch_size: Annotated[int, typer.Option(min=1, help="Texts per forward pass.")] = 64,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    max_length: Annotated[
        int | None, typer.Option(min=1, help="Truncate to this many tokens (default: the model's).")
    ] = None,
    float16: Annotated[bool, typer.Option("--float16", help="Store float16 instead of float32.")] = False,
) -> None:
    """Write L2-normalised embeddings of every text in INPUT, one row per text, in input order."""
    texts = read_texts(input_path, field=field)
    encoder = load_model(model, device=device)
    if max_length:
        encoder.max_seq_length = max_length
    embeddings = encoder.encode(
        texts,
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=True,
    )
    embeddings = np.asarray(embeddings, dtype=np.float16 if float16 else np.float32)
    if output is None:
        output = input_path.with_name(f"{input_path.stem}.{Path(model).name}.npy")
    save_npy_atomic(output, embeddings)
    typer.echo(f"wrote {output}: {embeddings.shape[0]} x {embeddings.shape[1]} {embeddings.dtype}")
