"""``embedkd serve``: run the HTTP service with uvicorn."""

from __future__ import annotations

import logging
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from embedkd.cli._app import app


class LogLevel(str, Enum):
    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"
    DEBUG = "debug"


@app.command("serve")
def serve_command(
    index: Annotated[Path, typer.Option("--index", "-x", help="Index folder.")],
    student: Annotated[str | None, typer.Option(help="Student folder for asymmetric search.")] = None,
    teacher: Annotated[str | None, typer.Option(help="Teacher model (default: the index's).")] = None,
    load_teacher: Annotated[bool, typer.Option(help="Load the teacher (document writes, mode=teacher).")] = True,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda[:N] or mps [env: EMBEDKD_DEVICE].")] = None,
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            "--api-key",
            help="Require this bearer token (repeatable). Prefer EMBEDKD_API_KEYS=k1,k2: options show in `ps`.",
        ),
    ] = None,
    max_batch_size: Annotated[
        int | None, typer.Option(min=1, help="Texts per forward pass [env: EMBEDKD_MAX_BATCH_SIZE; default 32].")
    ] = None,
    max_wait_ms: Annotated[
        float | None, typer.Option(min=0, help="Extra wait for a batch while the model is idle [default 0].")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Serve a student aligned to another teacher.")] = False,
    log_level: Annotated[LogLevel, typer.Option(case_sensitive=False, help="Server log level.")] = LogLevel.INFO,
) -> None:
    """Serve /embed, /v1/embeddings, /search, /documents, /models, /health, /ready and /metrics.

    Every setting not given here comes from its EMBEDKD_* environment variable (see embedkd/service/settings.py).
    """
    import uvicorn

    from embedkd.service.app import create_app, preflight
    from embedkd.service.settings import Settings

    given: dict[str, object] = {
        "device": device,
        "api_keys": list(api_key) if api_key else None,
        "max_batch_size": max_batch_size,
        "max_wait_ms": max_wait_ms,
    }
    # Only what the user set: an explicit value beats the environment, so defaults must not be passed.
    settings = Settings(
        index_dir=index,
        student=student,
        teacher=teacher,
        load_teacher=load_teacher,
        host=host,
        port=port,
        force_alignment=force,
        **{k: v for k, v in given.items() if v is not None},  # type: ignore[arg-type]
    )
    level = LogLevel(log_level).value
    logging.getLogger("embedkd").setLevel(level.upper())
    preflight(settings)
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=level,
        access_log=False,
        timeout_graceful_shutdown=int(max(1, settings.shutdown_timeout_s)),
    )
