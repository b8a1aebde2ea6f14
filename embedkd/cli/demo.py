"""``embedkd demo``: the whole pipeline on a built-in corpus, then a running server."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from embedkd.cli._app import app
from embedkd.quickstart import prepare

logger = logging.getLogger("embedkd")


def curl_examples(host: str, port: int, model: str = "student") -> str:
    base = f"http://{host}:{port}"
    return f"""
Ready. Try it (paste into another terminal):

  curl -s {base}/search -H 'content-type: application/json' \\
       -d '{{"query": "how do I parse command line arguments", "k": 3, "include_text": false}}'

  curl -s {base}/v1/embeddings -H 'content-type: application/json' \\
       -d '{{"input": "read a file line by line", "model": "{model}"}}' | head -c 300; echo

  curl -s {base}/ready     # what is served now, and what is still being built
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
    student_base: Annotated[
        str,
        typer.Option(
            help="Base model of the student to train (teacher: a cut of 3 of its own layers). With the fusion model "
            "as base, a fused query runs their shared lower layers once."
        ),
    ] = "minilm-l6",
    fuse_model: Annotated[
        str,
        typer.Option(
            help="Also index the documents in this model's own space and add its scores to /search's "
            "(embedkd.retrieval.Fusion; benchmarks/results/dual_space_*.md); none: the teacher's index alone."
        ),
    ] = "minilm-l6",
    student: Annotated[Path | None, typer.Option(help="Use this trained student instead of training one.")] = None,
    generic_text: Annotated[
        str,
        typer.Option(
            help="Query-like training text added to the corpus: a .jsonl/.txt file, auto "
            "(../shared/data/train/queries.jsonl when it exists) or none."
        ),
    ] = "auto",
    train_minutes: Annotated[float, typer.Option(min=0.05, help="Training budget of the short recipe.")] = 5.0,
    first_slice: Annotated[
        int,
        typer.Option(
            min=0,
            help="Serve after indexing this many documents; the server adds the rest and the student trains in "
            "the background, then takes over without a restart (0: build and train everything first).",
        ),
    ] = 256,
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
        fuse_model=None if fuse_model.lower() == "none" else fuse_model,
        corpus=corpus,
        max_docs=max_docs,
        train_minutes=train_minutes,
        generic_text=generic_text,
        first_slice=first_slice if serve else None,
        progress=progress,
    )
    started = time.monotonic()
    typer.echo(
        f"index   {paths.index} ({paths.corpus_size} of {paths.corpus_total} documents"
        f"{', built now' if paths.built else ', cached'})\n"
        + (f"fusion  {paths.fuse_index} ({paths.fuse_size} documents)\n" if paths.fuse_index else "")
        + f"student {paths.student}"
        + (" (trained now)" if paths.trained else " (training in the background)" if paths.training else " (cached)")
    )
    if not serve:
        return
    import uvicorn

    from embedkd.service.app import create_app, preflight
    from embedkd.service.settings import Settings

    pending = paths.training is not None
    settings = Settings.checked(
        index_dir=paths.index,
        student=None if pending else str(paths.student),
        student_pending=paths.student if pending else None,
        grow_from=paths.corpus_file if paths.partial else None,
        fuse_index=paths.fuse_index,
        teacher=teacher,
        host=host,
        port=port,
    )
    preflight(settings)
    app = create_app(settings)
    watcher = threading.Thread(
        target=_narrate, args=(app.state.embedkd, paths, host, port, started), daemon=True, name="demo"
    )
    watcher.start()
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def _narrate(state: Any, paths: Any, host: str, port: int, started: float) -> None:
    """Print each ready-to-paste command as soon as it works, and start the student's training once the
    index is complete (one CPU-heavy job at a time)."""
    from embedkd.quickstart import train_in_background

    def elapsed() -> str:
        return f"[+{time.monotonic() - started:.0f}s]"

    while not state.ready:
        time.sleep(0.2)
    mode = state.retriever.mode.value if state.retriever else "teacher"
    fused = f", fused with {state.fusion.encoder.name}" if state.fusion is not None else ""
    typer.echo(
        f"{elapsed()} serving in {mode} mode{fused}"
        + curl_examples(host, port, "student" if state.student else "teacher")
    )
    index_done = "index" not in state.progress
    child = None
    while True:
        index = state.progress.get("index", {})
        if not index_done and index.get("state") == "complete":
            index_done = True
            typer.echo(f"{elapsed()} index complete: {index.get('documents')} documents")
        if index_done and paths.training is not None and child is None:
            log = paths.workdir / "train.log"
            child = train_in_background(paths.training, log)
            typer.echo(f"{elapsed()} training the student in the background (log: {log})")
        student = state.progress.get("student", {})
        if student.get("state") == "live":
            typer.echo(f"{elapsed()} student {student.get('name')} is live: /search now answers asymmetrically")
            typer.echo(curl_examples(host, port, "student"))
            return
        if student.get("state") == "refused" or (child is not None and child.poll() not in (None, 0)):
            typer.echo(f"{elapsed()} the student did not take over; the teacher keeps serving (see the log)")
            return
        if paths.training is None and index_done:
            return
        time.sleep(1.0)
