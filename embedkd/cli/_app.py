from __future__ import annotations

import typer

app = typer.Typer(
    name="embedkd",
    help="Distil a big embedding model into a small query encoder and search the big model's index.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
