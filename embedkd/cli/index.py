"""``embedkd index``: build a teacher-side index and keep it up to date."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from embedkd.cli._app import app
from embedkd.cli._options import BatchSize, Device, Engine, IndexDir, PrecisionOpt, Progress, TruncateDim
from embedkd.data.documents import read_documents
from embedkd.device import Precision, resolve_device
from embedkd.distill.teacher import Teacher
from embedkd.errors import InputError
from embedkd.index.build import build_index
from embedkd.index.document_index import Embed, Index
from embedkd.index.faiss import IndexKind, IndexParams
from embedkd.index.manifest import remembered_fusion
from embedkd.retrieval import RetrievalMode, alignment_problem, check_alignment, raise_or_warn

index_app = typer.Typer(help="Build, inspect and update teacher-side indexes.", no_args_is_help=True)
app.add_typer(index_app, name="index")

Docs = Annotated[
    Path,
    typer.Option(
        "--input", "-i", "--docs", help="Documents: .jsonl ({id, title, text, ...}), a BEIR folder, or .txt/.md files."
    ),
]


def teacher_embedder(index_or_teacher: Index | str, *, device: str, batch_size: int, progress: bool) -> Embed:
    """Teacher embeddings through the shared cache; checks the teacher still has the index's weights."""
    if isinstance(index_or_teacher, Index):
        expected = index_or_teacher.teacher
        # New vectors in the precision of those already indexed: precisions are never mixed in one index.
        precision = index_or_teacher.manifest.precision
        teacher = Teacher.from_model(expected.name, device=device, precision=precision)
        problem = alignment_problem(
            name=f"teacher {expected.name} on this machine",
            fingerprint=teacher.ref.fingerprint,
            dimension=None,  # the teacher's full width; an index may keep fewer dimensions
            manifest=None,
            indexed_by=expected,
            mode=RetrievalMode.TEACHER,
            where=f"index {index_or_teacher.folder}",
        )
        raise_or_warn(problem, force=False, overridable=False)
    else:
        teacher = Teacher.from_model(index_or_teacher, device=device)
    return lambda texts: teacher.encode_document(texts, batch_size=batch_size, progress=progress)


@index_app.command("build")
def build_command(
    docs: Docs,
    out: Annotated[Path, typer.Option("--out", "-o", help="New index folder.")],
    teacher: Annotated[str, typer.Option(help="Teacher model that embeds the documents.")] = "mpnet-base",
    index_type: Annotated[IndexKind, typer.Option("--type", case_sensitive=False, help="faiss index kind.")] = (
        IndexKind.FLAT
    ),
    truncate_dim: TruncateDim = None,
    nlist: Annotated[int | None, typer.Option(min=1, help="IVF lists (default ~4*sqrt(chunks)).")] = None,
    nprobe: Annotated[int, typer.Option(min=1, help="IVF lists searched per query (default of the index).")] = 32,
    hnsw_m: Annotated[int, typer.Option(min=2, help="HNSW neighbours per node.")] = 32,
    ef_search: Annotated[int, typer.Option(min=1, help="HNSW candidate list at search (default of the index).")] = 128,
    rescore: Annotated[int, typer.Option(min=1, help="binary/ivf-pq: candidates per result rescored.")] = 10,
    chunking: Annotated[bool, typer.Option(help="Split long documents into overlapping chunks.")] = True,
    chunk_tokens: Annotated[int | None, typer.Option(min=16, help="Tokens per chunk (default: teacher max).")] = None,
    overlap: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Tokens shared by neighbouring chunks, less than a chunk (default: 64, or a quarter "
            "of a shorter chunk).",
        ),
    ] = None,
    batch_size: BatchSize = 64,
    device: Device = "auto",
    precision: PrecisionOpt = Precision.AUTO,
    progress: Progress = True,
    from_embeddings: Annotated[
        Path | None,
        typer.Option(help="Build from sharded teacher embeddings (`embedkd encode --engine ray`) instead of encoding."),
    ] = None,
    engine: Annotated[
        Engine,
        typer.Option(
            case_sensitive=False, help="local, or ray: encode with a Ray Data actor pool into OUT.embeddings first."
        ),
    ] = Engine.LOCAL,
    workers: Annotated[int, typer.Option(min=1, help="ray: teacher actors.")] = 1,
    backend: Annotated[
        str,
        typer.Option(
            help="Where the vectors live: faiss (in this process, the default) or milvus (a Milvus cluster or a "
            "Milvus Lite file, see --uri); documents and the manifest stay in the index folder."
        ),
    ] = "faiss",
    uri: Annotated[
        str | None, typer.Option(help="milvus: a Milvus URI (http://host:19530) or a local Milvus Lite file (x.db).")
    ] = None,
) -> None:
    """Embed documents with the teacher (cached, resumable) and write a new index folder.

    The teacher's precision is recorded in the manifest; later writes to the index use the same one.
    """
    documents = read_documents(docs)
    if backend not in {"faiss", "milvus"}:
        raise InputError(f"--backend must be faiss or milvus, got {backend!r}")
    extra = {"backend": "milvus", "uri": uri} if backend == "milvus" else {}
    params = IndexParams(
        kind=IndexKind(index_type),
        dims=truncate_dim,
        nlist=nlist,
        nprobe=nprobe,
        hnsw_m=hnsw_m,
        hnsw_ef_search=ef_search,
        rescore=rescore,
        extra=extra,
    )
    if Engine(engine) is Engine.RAY and from_embeddings is None:
        from embedkd.scale.ray_encode import encode_with_ray

        from_embeddings = out.with_name(out.name + ".embeddings")
        encode_with_ray(
            documents,
            from_embeddings,
            teacher=teacher,
            workers=workers,
            batch_size=batch_size,
            precision=Precision(precision).value,
            chunking={"enabled": chunking, "max_tokens": chunk_tokens, "overlap": overlap},
            source=str(docs),
        )
    if from_embeddings is not None:
        from embedkd.index.shards import build_from_embeddings

        start = time.perf_counter()
        index = build_from_embeddings(
            out,
            documents,
            from_embeddings,
            params=params,
            teacher=teacher,
            device=resolve_device(device),
            progress=progress,
        )
        info = index.info()
        index.close()
        typer.echo(
            f"built {params.kind.value} index {out} from {from_embeddings}: {info['counts']['documents']} documents, "
            f"{info['counts']['chunks']} chunks, {time.perf_counter() - start:.1f}s"
        )
        return
    device = resolve_device(device)
    embed_teacher = Teacher.from_model(teacher, device=device, precision=Precision(precision).value)
    start = time.perf_counter()
    index = build_index(
        out,
        documents,
        teacher=embed_teacher.ref,
        embed=lambda texts: embed_teacher.encode_document(texts, batch_size=batch_size, progress=progress),
        params=params,
        chunking=chunking,
        chunk_tokens=chunk_tokens,
        overlap=overlap,
        progress=progress,
        device=device,
        precision=embed_teacher.precision,
    )
    seconds = time.perf_counter() - start
    info = index.info()
    index.close()
    typer.echo(
        f"built {params.kind.value} index {out}: {info['counts']['documents']} documents, "
        f"{info['counts']['chunks']} chunks, teacher {embed_teacher.ref.name}, {seconds:.1f}s"
    )


FuseIndex = Annotated[
    Path | None,
    typer.Option(
        help="A fusion index of the same documents (`embedkd search --fuse-index`): apply the write to it too, "
        "with the model that built it, so the two stay in step as the server keeps them. Default: the one the "
        "index remembers (`embedkd index link`), if any.",
    ),
]


def _update(
    index_dir: Path,
    docs: Path,
    *,
    replace: bool,
    device: str,
    batch_size: int,
    progress: bool,
    fuse_index: Path | None = None,
) -> None:
    documents = read_documents(docs)
    device = resolve_device(device)
    fuse_index = fuse_index or remembered_fusion(index_dir)
    with Index.open(index_dir, device=device) as index, _maybe_open(fuse_index, device) as second:
        embed = teacher_embedder(index, device=device, batch_size=batch_size, progress=progress)
        other = teacher_embedder(second, device=device, batch_size=batch_size, progress=progress) if second else None
        if replace:  # the fusion index first, so a document is never searchable without its second vector
            if second is not None and other is not None:
                second.upsert(documents, other)
                second.save()
            result = index.upsert(documents, embed)
        else:  # add refuses existing ids: only then may the fusion index take the documents
            result = index.add(documents, embed)
            if second is not None and other is not None:
                second.upsert(documents, other)
                second.save()
        index.save()
    typer.echo(json.dumps(result))


@contextlib.contextmanager
def _maybe_open(folder: Path | None, device: str) -> Iterator[Index | None]:
    if folder is None:
        yield None
        return
    with Index.open(folder, device=device) as index:
        yield index


@index_app.command("add")
def add_command(
    index: IndexDir,
    docs: Docs,
    batch_size: BatchSize = 64,
    device: Device = "auto",
    progress: Progress = True,
    fuse_index: FuseIndex = None,
) -> None:
    """Add new documents (ids must not exist yet)."""
    _update(index, docs, replace=False, device=device, batch_size=batch_size, progress=progress, fuse_index=fuse_index)


@index_app.command("upsert")
def upsert_command(
    index: IndexDir,
    docs: Docs,
    batch_size: BatchSize = 64,
    device: Device = "auto",
    progress: Progress = True,
    fuse_index: FuseIndex = None,
) -> None:
    """Insert or replace documents by id."""
    _update(index, docs, replace=True, device=device, batch_size=batch_size, progress=progress, fuse_index=fuse_index)


@index_app.command("delete")
def delete_command(
    index: IndexDir,
    ids: Annotated[list[str], typer.Argument(help="Document ids to delete.")],
    fuse_index: FuseIndex = None,
) -> None:
    """Delete documents by id."""
    if not ids:
        raise InputError("give at least one document id")
    fuse_index = fuse_index or remembered_fusion(index)
    with Index.open(index) as opened, _maybe_open(fuse_index, "cpu") as second:
        result = opened.delete(ids)
        opened.save()
        if second is not None:  # after the main index: a document is never searchable without its second vector
            second.delete(ids)
            second.save()
    typer.echo(json.dumps(result))


@index_app.command("link")
def link_command(
    index: IndexDir,
    fuse_index: Annotated[
        Path | None,
        typer.Option(
            help="An index of the same documents built by another model (`embedkd index build --teacher minilm-l6`) "
            "for the index to remember: `embedkd search` and `embedkd serve` then fuse with it, and `embedkd index "
            "add/upsert/delete` write both, without --fuse-index.",
        ),
    ] = None,
    forget: Annotated[bool, typer.Option("--forget", help="Forget the remembered fusion index.")] = False,
) -> None:
    """Remember a fusion index of the same documents (or forget it with --forget)."""
    if (fuse_index is None) == (not forget):
        raise InputError("give either --fuse-index FOLDER or --forget")
    with Index.open(index) as opened:  # the writer's lock: refused beside a server or another writer
        opened.link_fusion(fuse_index)
        linked = opened.manifest.fusion
    typer.echo(json.dumps({"index": str(index), "fusion": linked}))


@index_app.command("info")
def info_command(index: IndexDir, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Show an index's teacher, type, parameters and counts."""
    with Index.open(index, readonly=True) as opened:  # safe beside a server writing it
        info = opened.info()
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    teacher = info["teacher"]
    typer.echo(f"index      {info['folder']}")
    typer.echo(f"teacher    {teacher['name']} (sha256 {teacher['fingerprint'][:16]}…, {teacher['dimension']}-d)")
    typer.echo(f"type       {info['params']['kind']}  {json.dumps(info['params'])}")
    typer.echo(f"counts     {info['counts']}  generation {info['generation']}")
    typer.echo(f"memory     {info['memory_bytes'] / 2**20:.1f} MiB")
    typer.echo(f"created    {info['created_at']}   updated {info['updated_at']}")


@index_app.command("check")
def check_command(
    index: IndexDir,
    student: Annotated[str, typer.Option(help="Trained student folder: the model that will query this index.")],
    sample: Annotated[int, typer.Option(min=1, max=100_000, help="Chunks of the index to compare.")] = 256,
    seed: Annotated[int, typer.Option(help="Seed of the chunk sample.")] = 0,
    min_ratio: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Exit 1 when the cosine on the index's chunks is below this share of the student's own "
            "held-out cosine on texts of the same kinds (0: report only).",
        ),
    ] = 0.0,
    device: Device = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Measure whether a student is aligned on *this* index's documents, before it serves queries there.

    A student writes into its teacher's space only where its training text reached: on a domain it never saw,
    it keeps less of the teacher's quality (README, "Queries from a domain the student never trained on"). This
    encodes a sample of the index's chunks with the student and compares them with the teacher vectors the index
    already holds (no teacher and no queries are needed), then with the cosine the student reached on its own
    held-out texts of the same kinds, which its embedkd.json records.
    """
    from embedkd.evaluation.alignment import index_coverage
    from embedkd.models.encoder import Encoder

    device = resolve_device(device)
    with Index.open(index, device=device, readonly=True) as opened:  # safe beside a server writing it
        encoder = Encoder.load(student, device=device)
        check_alignment(encoder, opened, RetrievalMode.ASYM)  # the same teacher first, as search checks it
        coverage = index_coverage(encoder, opened, encoder.manifest, sample=sample, seed=seed)
    if as_json:
        typer.echo(json.dumps({"index": str(index), "student": str(student), **coverage.to_dict()}, indent=2))
    else:
        typer.echo(f"index      {index} ({coverage.compared} of {coverage.chunks} chunks compared)")
        typer.echo(f"student    {student}")
        typer.echo(f"cosine     {coverage.cosine:.4f} to the teacher vectors of this index's chunks")
        if coverage.reference_cosine is not None and coverage.ratio is not None:
            typer.echo(f"reference  {coverage.reference_cosine:.4f} on {coverage.reference}")
            typer.echo(f"ratio      {coverage.ratio:.3f} (covered at {coverage.covered_ratio:g} and above)")
        typer.echo(coverage.verdict)
    if min_ratio > 0 and (coverage.ratio is None or coverage.ratio < min_ratio):
        raise typer.Exit(1)
