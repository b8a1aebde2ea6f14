"""``embedkd search``: query an index with a student (or the teacher) and print ranked documents."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from embedkd.cli._app import app
from embedkd.device import resolve_device
from embedkd.errors import InputError
from embedkd.index.collection import Index
from embedkd.models.encoder import Encoder
from embedkd.retrieval import AsymmetricRetriever, RetrievalMode


def parse_filters(items: list[str] | None) -> dict[str, object] | None:
    if not items:
        return None
    filters: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InputError(f"--filter expects key=value, got {item!r}")
        try:
            filters[key] = json.loads(raw)
        except ValueError:
            filters[key] = raw
    return filters


@app.command("search")
def search_command(
    queries: Annotated[list[str], typer.Argument(help="Query text(s).")],
    index: Annotated[Path, typer.Option("--index", "-x", help="Index folder.")],
    student: Annotated[str | None, typer.Option(help="Student folder (needed for asym/student).")] = None,
    mode: Annotated[str, typer.Option(help="asym, teacher or student.")] = "asym",
    k: Annotated[int, typer.Option("-k", min=1, max=1000)] = 10,
    filters: Annotated[list[str] | None, typer.Option("--filter", help="Metadata equality, key=value.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Skip the student/index teacher check.")] = False,
    device: Annotated[str, typer.Option()] = "auto",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Print the best documents for each query."""
    retrieval_mode = RetrievalMode(mode) if mode in {m.value for m in RetrievalMode} else None
    if retrieval_mode is None:
        raise InputError(f"unknown mode {mode!r}; use asym, teacher or student")
    device = resolve_device(device)
    opened = Index.open(index, device=device, readonly=True)  # safe beside a server writing it
    try:
        student_encoder = Encoder.load(student, device=device) if student else None
        teacher_encoder = None
        if retrieval_mode is RetrievalMode.TEACHER:
            teacher_encoder = Encoder.load(opened.teacher.name, device=device)
        elif student_encoder is None:
            raise InputError(f"mode {mode!r} needs --student")
        retriever = AsymmetricRetriever(
            opened, student=student_encoder, teacher=teacher_encoder, mode=retrieval_mode, force=force
        )
        results = retriever.search(queries, k, filters=parse_filters(filters))
    finally:
        opened.close()
    if as_json:
        typer.echo(json.dumps([[asdict(h) for h in hits] for hits in results], indent=2))
        return
    for query, hits in zip(queries, results, strict=True):
        typer.echo(f"\n{query}")
        for rank, hit in enumerate(hits, start=1):
            passage = " ".join(hit.passage.split())[:160]
            typer.echo(f"{rank:>3}. {hit.score:.4f}  {hit.id}  {hit.title[:60]}")
            typer.echo(f"      {passage}")
