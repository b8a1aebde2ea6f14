"""``embedkd cache``: list embedding caches and layer stores; import precomputed (black-box) teacher embeddings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated

import typer

from embedkd.cli._app import app
from embedkd.distill.layer_store import store_summaries
from embedkd.distill.teacher import Teacher, read_aligned_texts
from embedkd.errors import ModelNotFoundError
from embedkd.paths import cache_dir

cache_app = typer.Typer(
    help="Embedding caches shared by training, evaluation and indexing, and training's layer stores.",
    no_args_is_help=True,
)
app.add_typer(cache_app, name="cache")


@cache_app.command("import")
def import_command(
    embeddings: Annotated[Path, typer.Option(help=".npy whose row i embeds text i of --texts.")],
    texts: Annotated[Path, typer.Option(help=".jsonl, .txt or BEIR folder (ordered by an ids.txt beside the .npy).")],
    model: Annotated[str, typer.Option(help="The teacher that made the embeddings.")] = "mpnet-base",
) -> None:
    """Add precomputed teacher embeddings to the cache, after checking rows, dimension and teacher."""
    try:
        teacher = Teacher.from_model(model)
    except ModelNotFoundError:
        import numpy as np

        teacher = Teacher.black_box(model, dimension=int(np.load(embeddings, mmap_mode="r").shape[-1]))
    aligned = read_aligned_texts(texts, embeddings)
    added = teacher.import_embeddings(aligned, embeddings)
    typer.echo(f"imported {added} new embeddings ({len(aligned) - added} already cached) into {teacher.cache.folder}")


@cache_app.command("list")
def list_command() -> None:
    """List the embedding caches and the training runs' layer stores on this machine (a store's folder may be
    deleted at any time: the next run computes it again)."""
    root = cache_dir() / "embeddings"
    for manifest in sorted(root.glob("*/manifest.json")):
        info = json.loads(manifest.read_text())
        typer.echo(
            f"{info['model']:<20} {info['count']:>8} rows  d={info['dimension']:<5} "
            f"L={info.get('max_seq_length')}  {manifest.parent}"
        )
    for store in store_summaries():
        typer.echo(
            f"{str(store.get('model', '?')):<20} {store['texts']:>8} texts, layers 1-{store.get('frozen', '?')} "
            f"({store.get('precision', '?')}), {store['bytes'] / 2**20:,.0f} MiB  {store['folder']}"
        )


@cache_app.command("purge-layers")
def purge_layers_command() -> None:
    """Delete every layer store (the frozen layers' outputs that training keeps; the next run computes what it
    needs again). Embedding caches are kept: the teacher's vectors cost far more to compute again."""
    freed = 0
    stores = store_summaries()
    for store in stores:
        shutil.rmtree(store["folder"], ignore_errors=True)
        freed += store["bytes"]
    typer.echo(f"removed {len(stores)} layer store(s), {freed / 2**20:,.0f} MiB")
