"""``embedkd search``: query an index with a student (or the teacher) and print ranked documents."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from embedkd.cli._app import app
from embedkd.cli._options import BackendOpt, Device, FuseWeight, IndexDir, QuantizeOpt
from embedkd.data.jsonl import reject_surrogates
from embedkd.device import resolve_device
from embedkd.errors import InputError
from embedkd.index.base import SearchParams
from embedkd.index.document_index import Index
from embedkd.index.manifest import check_fusion_pair, remembered_fusion
from embedkd.models.backends import Backend, Quantize
from embedkd.models.encoder import Encoder
from embedkd.retrieval import AsymmetricRetriever, Fusion, RetrievalMode


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
    index: IndexDir,
    student: Annotated[str | None, typer.Option(help="Trained student folder (needed for asym/student).")] = None,
    mode: Annotated[
        RetrievalMode,
        typer.Option(
            case_sensitive=False,
            help="asym: student queries on the teacher's index; teacher: teacher queries (the ceiling); student: "
            "student queries on an index the student built. The same set as the API's.",
        ),
    ] = RetrievalMode.ASYM,
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=1000, help="Documents per query.")] = 10,
    filters: Annotated[list[str] | None, typer.Option("--filter", help="Metadata equality, key=value.")] = None,
    nprobe: Annotated[
        int | None, typer.Option(min=1, max=65536, help="IVF lists searched (ivf kinds; default: the index's).")
    ] = None,
    ef_search: Annotated[
        int | None, typer.Option(min=1, max=65536, help="HNSW candidate list (hnsw kind; default: the index's).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Skip the student/index teacher check.")] = False,
    fuse_index: Annotated[
        Path | None,
        typer.Option(
            help="A second index of the same documents built by another model, e.g. the student's base "
            "(`embedkd index build --teacher minilm-l6`): each query's --fuse-candidates best documents are "
            "rescored with that model's score added, times --fuse-weight (benchmarks/results/dual_space_*.md). "
            "Default: the one the index remembers (`embedkd index link`), if any.",
        ),
    ] = None,
    fuse: Annotated[
        bool, typer.Option("--fuse/--no-fuse", help="--no-fuse: search the index alone, without any fusion index.")
    ] = True,
    fuse_weight: FuseWeight = 1.0,
    fuse_candidates: Annotated[
        int, typer.Option(min=1, max=10000, help="Documents per query rescored with --fuse-index.")
    ] = 100,
    device: Device = "auto",
    backend: BackendOpt = Backend.TORCH,
    quantize: QuantizeOpt = Quantize.NONE,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON: [{query, mode, model, hits: [...]}], one entry per query.")
    ] = False,
) -> None:
    """Print the best documents for each query."""
    reject_surrogates(queries, "query")  # bytes that are not UTF-8 reach argv as lone surrogates
    retrieval_mode = RetrievalMode(mode)
    device = resolve_device(device)
    given = fuse_index is not None
    if not fuse:
        fuse_index = None
    elif fuse_index is None:
        fuse_index = remembered_fusion(index)
    if fuse_index is not None:
        check_fusion_pair(index, fuse_index, strict=given)  # a remembered one only warns: writes keep it in step
    opened = Index.open(index, device=device, readonly=True)  # safe beside a server writing it
    second = None
    try:
        fusion = None
        if fuse_index is not None:
            second = Index.open(fuse_index, device=device, readonly=True)
            fusion = Fusion(
                second, Encoder.load(second.teacher.name, device=device), weight=fuse_weight, candidates=fuse_candidates
            )
        student_encoder = (
            Encoder.load(student, device=device, backend=Backend(backend).value, quantize=Quantize(quantize).value)
            if student
            else None
        )
        teacher_encoder = None
        if retrieval_mode is RetrievalMode.TEACHER:
            teacher_encoder = Encoder.load(opened.teacher.name, device=device)
        elif student_encoder is None:
            raise InputError(f"mode {retrieval_mode.value} needs --student")
        retriever = AsymmetricRetriever(
            opened, student=student_encoder, teacher=teacher_encoder, mode=retrieval_mode, force=force, fusion=fusion
        )
        params = SearchParams(nprobe=nprobe, ef_search=ef_search)
        results = retriever.search(queries, k, filters=parse_filters(filters), params=params)
        model = retriever.encoder(retrieval_mode)
    finally:
        opened.close()
        if second is not None:
            second.close()
    if as_json:
        name = model.name if model is not None else None
        payload = [
            {
                "query": query,
                "mode": retrieval_mode.value,
                "model": name,
                **({"fused_with": fusion.encoder.name, "fuse_weight": fuse_weight} if fusion else {}),
                "hits": [asdict(h) for h in hits],
            }
            for query, hits in zip(queries, results, strict=True)
        ]
        typer.echo(json.dumps(payload, indent=2))
        return
    for query, hits in zip(queries, results, strict=True):
        typer.echo(f"\n{query}")
        for rank, hit in enumerate(hits, start=1):
            passage = " ".join(hit.passage.split())[:160]
            typer.echo(f"{rank:>3}. {hit.score:.4f}  {hit.id}  {hit.title[:60]}")
            typer.echo(f"      {passage}")
