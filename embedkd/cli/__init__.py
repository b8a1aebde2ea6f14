"""The ``embedkd`` command line.

Each command lives in its own module and registers itself on :data:`app`. :func:`main` is the one
place that turns expected errors into a message and an exit code instead of a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

# Importing the command modules registers their commands on `app`.
from embedkd.cli import cache, demo, encode, eval, export, index, models, search, serve, train  # noqa: E402,F401,I001
from embedkd.cli._app import app
from embedkd.errors import EmbedkdError
from embedkd.logs import configure_logging

__all__ = ["app", "main"]


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``embedkd`` script."""
    configure_logging()
    try:
        # Standalone mode: typer itself prints a usage error (bad option, missing argument, bare `embedkd`)
        # as its usual short message and exits 2. Its exceptions come from its own vendored click, so
        # catching `click.ClickException` here would miss them.
        result = app(args=list(argv) if argv is not None else None, prog_name="embedkd")
    except EmbedkdError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except OSError as exc:
        if exc.filename is None:  # not about a path the user gave: a bug, and its traceback helps
            raise
        where = f"{exc.filename} -> {exc.filename2}" if exc.filename2 else f"{exc.filename}"
        typer.secho(f"error: {where}: {exc.strerror or exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    sys.exit(result if isinstance(result, int) else 0)
