"""``embedkd serve``: run the HTTP service with uvicorn."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from embedkd.cli._app import app


@app.command("serve")
def serve_command(
    index: Annotated[Path, typer.Option("--index", "-x", help="Index folder.")],
    student: Annotated[str | None, typer.Option(help="Student folder for asymmetric search.")] = None,
    teacher: Annotated[str | None, typer.Option(help="Teacher model (default: the index's).")] = None,
    load_teacher: Annotated[bool, typer.Option(help="Load the teacher (document writes, mode=teacher).")] = True,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    device: Annotated[str, typer.Option()] = "auto",
    api_key: Annotated[list[str] | None, typer.Option("--api-key", help="Require this bearer token.")] = None,
    max_batch_size: Annotated[int, typer.Option(min=1)] = 32,
    max_wait_ms: Annotated[float, typer.Option(min=0, help="Extra wait for a batch while the model is idle.")] = 0.0,
    force: Annotated[bool, typer.Option("--force", help="Serve a student aligned to another teacher.")] = False,
    log_level: Annotated[str, typer.Option()] = "info",
) -> None:
    """Serve /embed, /v1/embeddings, /search, /documents, /models, /health, /ready and /metrics."""
    import uvicorn

    from service.app import create_app, preflight
    from service.settings import Settings

    settings = Settings(
        index_dir=index,
        student=student,
        teacher=teacher,
        load_teacher=load_teacher,
        host=host,
        port=port,
        device=device,
        api_keys=list(api_key or []),
        max_batch_size=max_batch_size,
        max_wait_ms=max_wait_ms,
        force_alignment=force,
    )
    logging.getLogger("embedkd").setLevel(log_level.upper())
    preflight(settings)
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level, access_log=False)
