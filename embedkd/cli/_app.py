from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    name="embedkd",
    help="Distil a big embedding model into a small query encoder and search the big model's index.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        from embedkd._version import __version__

        typer.echo(f"embedkd {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Distil a big embedding model into a small query encoder and search the big model's index."""
