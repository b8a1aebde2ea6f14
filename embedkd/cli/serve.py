"""``embedkd serve``: run the HTTP service with uvicorn."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from embedkd.cli._app import app
from embedkd.device import Precision
from embedkd.errors import InputError
from embedkd.models.backends import Backend, Quantize
from embedkd.staging import remove_orphans


class LogLevel(str, Enum):
    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"
    DEBUG = "debug"


@app.command("serve")
def serve_command(
    index: Annotated[Path | None, typer.Option("--index", "-x", help="Index folder [env: EMBEDKD_INDEX_DIR].")] = None,
    student: Annotated[
        str | None, typer.Option(help="Trained student folder for asymmetric search [env: EMBEDKD_STUDENT].")
    ] = None,
    teacher: Annotated[
        str | None, typer.Option(help="Teacher model [env: EMBEDKD_TEACHER; default: the index's].")
    ] = None,
    load_teacher: Annotated[
        bool | None,
        typer.Option(
            "--load-teacher/--no-load-teacher",
            help="Load the teacher (document writes, mode=teacher) [env: EMBEDKD_LOAD_TEACHER; default on].",
        ),
    ] = None,
    read_only: Annotated[
        bool,
        typer.Option(
            "--read-only",
            help="Serve the index without writing it: runs beside the process that writes the folder and serves "
            "its commits; /documents writes answer 403 [env: EMBEDKD_READ_ONLY].",
        ),
    ] = False,
    host: Annotated[
        str | None, typer.Option(help="Interface to listen on [env: EMBEDKD_HOST; default 127.0.0.1].")
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Port to listen on [env: EMBEDKD_PORT; default 8000].")
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda[:N] or mps [env: EMBEDKD_DEVICE].")] = None,
    precision: Annotated[
        Precision | None,
        typer.Option(
            case_sensitive=False,
            help="Query-encoding precision [env: EMBEDKD_PRECISION; default fp32: bf16 is slower at batch 1 on CPUs].",
        ),
    ] = None,
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            "--api-key",
            help="Require this bearer token (repeatable). Prefer EMBEDKD_API_KEYS=k1,k2: options show in `ps`.",
        ),
    ] = None,
    backend: Annotated[
        Backend | None,
        typer.Option(
            case_sensitive=False, help="Student inference backend: torch, onnx or openvino [env: EMBEDKD_BACKEND]."
        ),
    ] = None,
    quantize: Annotated[
        Quantize | None, typer.Option(case_sensitive=False, help="none or int8 [env: EMBEDKD_QUANTIZE].")
    ] = None,
    max_batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            "--max-batch-size",
            min=1,
            help="Most texts per forward pass of the micro-batcher [env: EMBEDKD_MAX_BATCH_SIZE; default 32].",
        ),
    ] = None,
    max_wait_ms: Annotated[
        float | None, typer.Option(min=0, help="Extra wait for a batch while the model is idle [default 0].")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="Server processes on one port, each with its own models and its share of the cores; they write "
            "the index together [env: EMBEDKD_WORKERS; default 1].",
        ),
    ] = None,
    fuse_index: Annotated[
        Path | None,
        typer.Option(
            help="A second index of the same documents built by another model, e.g. the student's base "
            "(`embedkd index build --teacher minilm-l6`): /search rescores its candidates with that model's score "
            "added, /documents writes both [env: EMBEDKD_FUSE_INDEX; default: the one the index remembers, "
            "`embedkd index link`].",
        ),
    ] = None,
    fuse: Annotated[
        bool | None,
        typer.Option(
            "--fuse/--no-fuse",
            help="--no-fuse: serve the index alone, without the fusion index it remembers (`embedkd index link`) "
            "or --fuse-index [env: EMBEDKD_FUSE; on].",
        ),
    ] = None,
    fuse_weight: Annotated[
        float | None, typer.Option(min=0.0, help="Weight of the --fuse-index score [env: EMBEDKD_FUSE_WEIGHT; 1].")
    ] = None,
    fuse_candidates: Annotated[
        int | None,
        typer.Option(min=1, max=10000, help="Documents per query rescored [env: EMBEDKD_FUSE_CANDIDATES; 100]."),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Serve a student aligned to another teacher [env: EMBEDKD_FORCE_ALIGNMENT]."),
    ] = False,
    log_level: Annotated[LogLevel, typer.Option(case_sensitive=False, help="Server log level.")] = LogLevel.INFO,
) -> None:
    """Serve /search, /v1/embeddings (OpenAI), /embed + /info (TEI), /encode, /documents, /models, /health,
    /ready and /metrics.

    Every setting not given here comes from its EMBEDKD_* environment variable (see embedkd/service/settings.py).
    """
    import uvicorn

    from embedkd.service.app import create_app, preflight
    from embedkd.service.settings import Settings

    given: dict[str, object] = {
        "student": student,
        "teacher": teacher,
        "load_teacher": load_teacher,
        "host": host,
        "port": port,
        "force_alignment": force or None,
        "device": device,
        "precision": precision,
        "backend": backend,
        "quantize": quantize,
        "api_keys": list(api_key) if api_key else None,
        "max_batch_size": max_batch_size,
        "max_wait_ms": max_wait_ms,
        "read_only": read_only or None,
        "workers": workers,
        "fuse_index": fuse_index,
        "fuse": fuse,
        "fuse_weight": fuse_weight,
        "fuse_candidates": fuse_candidates,
    }
    # Only what the user set: an explicit value beats the environment, so defaults must not be passed.
    if index is None and "EMBEDKD_INDEX_DIR" not in os.environ:
        raise InputError("no index to serve: pass --index DIR or set EMBEDKD_INDEX_DIR")
    given["index_dir"] = index
    values: dict[str, object] = {k: v for k, v in given.items() if v is not None}
    settings = Settings.checked(**values)
    level = LogLevel(log_level).value
    logging.getLogger("embedkd").setLevel(level.upper())
    preflight(settings)
    common: dict[str, Any] = dict(
        host=settings.host,
        port=settings.port,
        log_level=level,
        access_log=False,
        timeout_graceful_shutdown=int(max(1, settings.shutdown_timeout_s)),
    )
    if settings.workers == 1:
        uvicorn.run(create_app(settings), **common)
        return
    # Several processes: each worker builds its app from the environment (uvicorn starts them afresh).
    for key, value in values.items():
        if value is not None:
            os.environ[f"EMBEDKD_{key.upper()}"] = _env_value(value)
    threads = max(1, len(os.sched_getaffinity(0)) // settings.workers)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))  # each worker's kernels on its share of the cores
    remove_stale_metrics(Path(tempfile.gettempdir()))
    metrics = tempfile.mkdtemp(prefix=f"embedkd-metrics-{os.getpid()}-")  # the pid: see remove_stale_metrics
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics  # /metrics adds every worker's values up
    try:
        uvicorn.run("embedkd.service.app:create_app", factory=True, workers=settings.workers, **common)
    finally:
        shutil.rmtree(metrics, ignore_errors=True)


def remove_stale_metrics(root: Path) -> list[Path]:
    """Remove the metrics folders (``embedkd-metrics-PID-*``) that servers killed outright left in ``root``.

    A server that exits normally removes its own; one killed with SIGKILL cannot. A folder whose process is
    still running, or whose name holds no pid, is kept. Returns the folders removed."""
    return remove_orphans(root, "embedkd-metrics-")


def _env_value(value: object) -> str:
    """A setting as its EMBEDKD_* variable spells it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)
