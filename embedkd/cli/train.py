"""``embedkd train``: align a student to a teacher on unlabeled text; ``embedkd adapt``: to an index's documents.

The options are generated from :class:`~embedkd.distill.DistillConfig` (and its ``DataOptions``): one
source of truth for names, types, defaults and help, so the CLI cannot drift from the library.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from embedkd.cli._app import app
from embedkd.distill import DataOptions, DistillConfig, distill
from embedkd.distill.adapt import ADAPT_STEPS, ADAPT_TEXTS_PER_SOURCE, adapt_config

_NESTED = "data_options"


def _option(field: dataclasses.Field[Any], annotation: Any) -> inspect.Parameter:
    flags = tuple(field.metadata.get("flags") or ()) or ("--" + field.name.replace("_", "-"),)
    origin = typing.get_origin(annotation)
    if field.default is not dataclasses.MISSING:
        default = field.default
    elif field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
    else:
        default = ...  # required
    metavar = None
    if origin is list:  # repeatable options; typer wants None rather than a mutable default
        annotation, default, metavar = annotation | None, None, "PATH"
    if isinstance(default, Enum):
        default = default.value  # typer shows and accepts the plain value; the config validates it
        annotation = str
    if annotation is bool:
        flags = (f"{flags[0]}/--no-{flags[0][2:]}", *flags[1:])
    option = typer.Option(
        *flags, help=field.metadata.get("help"), show_default=default not in (None, ...), metavar=metavar
    )
    return inspect.Parameter(
        field.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[annotation, option]
    )


def _parameters() -> list[inspect.Parameter]:
    params = []
    for cls in (DistillConfig, DataOptions):
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            if field.name == _NESTED:
                continue
            name = "data_seed" if cls is DataOptions and field.name == "seed" else field.name
            params.append(_option(field, hints[field.name]).replace(name=name))
    required = [p for p in params if p.default is ...]
    return required + [p for p in params if p.default is not ...]


def train_command(**options: Any) -> None:
    """Train a student whose embeddings land in the teacher's space (LEAF), or match its scores (DSE)."""
    nested = {}
    for field in dataclasses.fields(DataOptions):
        key = "data_seed" if field.name == "seed" else field.name
        nested[field.name] = options.pop(key)
    for field in dataclasses.fields(DistillConfig):
        if typing.get_origin(typing.get_type_hints(DistillConfig)[field.name]) is list:
            options[field.name] = list(options.get(field.name) or [])
    config = DistillConfig(**options, data_options=DataOptions(**nested))
    result = distill(config)
    alignment = result.manifest.alignment
    typer.echo(f"student saved to {result.out}")
    if alignment is not None:
        typer.echo(f"held-out alignment: mean cosine {alignment.mean_cosine:.4f}, mse {alignment.mse:.4f}")


train_command.__signature__ = inspect.Signature(_parameters())  # type: ignore[attr-defined]
app.command("train")(train_command)


@app.command("adapt")
def adapt_command(
    student: Annotated[Path, typer.Option("--student", "-s", help="The trained student to adapt.")],
    index: Annotated[list[Path], typer.Option("--index", "-x", help="Index whose documents to adapt to (repeatable).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the adapted student (a new folder).")],
    data: Annotated[
        list[Path] | None,
        typer.Option(
            "--data",
            "-d",
            help="More training text, e.g. generic query-like texts (repeatable) [default: the student's own "
            "training data, those of its files found here].",
        ),
    ] = None,
    steps: Annotated[int, typer.Option(min=1, help="Optimiser steps.")] = ADAPT_STEPS,
    max_texts_per_source: Annotated[
        int, typer.Option(min=1, help="At most this many texts from each source, the index's documents included.")
    ] = ADAPT_TEXTS_PER_SOURCE,
    seed: Annotated[int | None, typer.Option(help="Random seed [default: the student's].")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Adapt a trained student to the documents of an index it will serve: no queries or labels needed."""
    config = adapt_config(
        student,
        index,
        out,
        data=data or (),
        steps=steps,
        texts_per_source=max_texts_per_source,
        seed=seed,
        progress=progress,
    )
    result = distill(config)
    alignment = result.manifest.alignment
    typer.echo(f"adapted student saved to {result.out}")
    if alignment is not None:
        typer.echo(f"held-out alignment (with the index's documents): mean cosine {alignment.mean_cosine:.4f}")
    typer.echo(f"check it on the index: embedkd index check --index {index[0]} --student {result.out}")
