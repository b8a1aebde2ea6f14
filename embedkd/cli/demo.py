"""``embedkd demo``: the whole pipeline on a built-in corpus, then a running server."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from embedkd.cli._app import app
from embedkd.quickstart import prepare

logger = logging.getLogger("embedkd")


def curl_examples(host: str, port: int) -> str:
    base = f"http://{host}:{port}"
    return f"""
Ready. Try it (paste into another terminal):

  curl -s {base}/search -H 'content-type: application/json' \\
       -d '{{"query": "how do I parse command line arguments", "k": 3, "include_text": false}}'

  curl -s {base}/v1/embeddings -H 'content-type: application/json' \\
       -d '{{"input": "read a file line by line", "model": "student"}}' | head -c 300; echo

  curl -s {base}/models    # teacher, student, measured alignment, index manifest
"""


@app.command("demo")
def demo_command(
    workdir: Annotated[Path, typer.Option(help="Where the index, student and corpus are cached.")] = Path(
        ".embedkd/demo"
    ),
    corpus: Annotated[
        Path | None,
        typer.Option("--input", "-i", "--corpus", help="Your own documents instead of the stdlib docstrings."),
    ] = None,
    max_docs: Annotated[int | None, typer.Option(min=1, help="Cap the default corpus.")] = None,
    teacher: Annotated[str, typer.Option(help="Teacher model that indexes the documents.")] = "mpnet-base",
    student_base: Annotated[str, typer.Option(help="Base model of the student to train.")] = "minilm-l6",
    student: Annotated[Path | None, typer.Option(help="Use this trained student instead of training one.")] = None,
    generic_text: Annotated[
        str,
        typer.Option(
            help="Query-like training text added to the corpus: a .jsonl/.txt file, auto "
            "(../shared/data/train/queries.jsonl when it exists) or none."
        ),
    ] = "auto",
    train_minutes: Annotated[float, typer.Option(min=0.05, help="Training budget of the short recipe.")] = 5.0,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    serve: Annotated[bool, typer.Option(help="Start the server at the end.")] = True,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Prepare models, index a corpus with the teacher, align a student if needed, and serve."""
    paths = prepare(
        workdir,
        teacher=teacher,
        student_base=student_base,
        student=student,
        corpus=corpus,
        max_docs=max_docs,
        train_minutes=train_minutes,
        generic_text=generic_text,
        progress=progress,
    )
    typer.echo(
        f"index   {paths.index} ({paths.corpus_size} documents{', built now' if paths.built else ', cached'})\n"
        f"student {paths.student}{' (trained now)' if paths.trained else ' (cached)'}"
    )
    if not serve:
        return
    import uvicorn

    from embedkd.service.app import create_app, preflight
    from embedkd.service.settings import Settings

    settings = Settings(index_dir=paths.index, student=str(paths.student), teacher=teacher, host=host, port=port)
    preflight(settings)
    typer.echo(curl_examples(host, port))
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info", access_log=False)
