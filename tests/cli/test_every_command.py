"""Every CLI command, generated from the click tree: a missing required option, a bad value and a missing
input path each end in a short message and an exit code, never a traceback; every option has help."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

import pytest
import typer.main

from embedkd.cli import app

# typer builds on its own copy of click, so the tree is read by duck typing.
Command = Any


def _leaves(command: Command, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Command]]:
    if hasattr(command, "commands"):
        out = []
        for name, sub in sorted(command.commands.items()):
            out += _leaves(sub, (*path, name))
        return out
    return [(path, command)]


COMMANDS = _leaves(typer.main.get_command(app))
NAMES = [" ".join(path) for path, _ in COMMANDS]


def _is_option(param: Any) -> bool:
    return param.param_type_name == "option"


def _dummies(command: Command, root: Path) -> list[str]:
    """Values for every required parameter: paths that do not exist, plain words for the rest."""
    args: list[str] = []
    for param in command.params:
        if not param.required:
            continue
        value = str(root / f"missing-{param.name}")
        if not _is_option(param):
            args.append(value)
        else:
            args += [param.opts[0], value]
    return args


def _bad_value(param: Any) -> str | None:
    if not _is_option(param) or param.is_flag:
        return None
    kind = param.type_descriptor.annotation
    if isinstance(kind, type) and issubclass(kind, Enum):
        return "no-such-choice"
    if kind in (int, float):
        return "not-a-number"
    return None


def test_the_tree_has_every_command() -> None:
    assert {"train", "encode", "eval", "search", "serve", "demo", "index build", "index add", "models"} <= set(NAMES)


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=NAMES)
def test_every_option_has_help(path: tuple[str, ...], command: Command) -> None:
    assert command.help, f"{' '.join(path)} has no description"
    for param in command.params:
        if _is_option(param) and not param.hidden:
            assert param.help, f"{' '.join(path)} {param.opts[0]} has no help text"


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=NAMES)
def test_missing_required_option_is_a_usage_error(run_cli, path: tuple[str, ...], command: Command) -> None:
    required = [p for p in command.params if p.required]
    if not required:
        pytest.skip("no required option")
    code, out, err = run_cli(*path)
    assert code == 2, err
    assert "Missing" in out + err and "Traceback" not in err


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=NAMES)
def test_every_typed_option_rejects_a_bad_value(
    run_cli, tmp_path: Path, path: tuple[str, ...], command: Command
) -> None:
    typed = [(p, v) for p in command.params if (v := _bad_value(p)) is not None]
    if not typed:
        pytest.skip("no typed option")
    for param, value in typed:
        code, out, err = run_cli(*path, *_dummies(command, tmp_path), param.opts[0], value)
        assert code == 2, f"{param.opts[0]} {value}: exit {code}\n{err}"
        assert "Invalid value" in out + err and "Traceback" not in err, err


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=NAMES)
def test_a_missing_input_path_is_a_clean_error(
    run_cli, tmp_path: Path, path: tuple[str, ...], command: Command, isolated_cache: Path
) -> None:
    if not any(p.required for p in command.params):
        pytest.skip("nothing required: the command would run its whole job")
    root = tmp_path / "args"
    root.mkdir()
    code, out, err = run_cli(*path, *_dummies(command, root))  # an exception would fail this test
    assert code != 0 and "error" in err.lower() and "Traceback" not in err, (code, out, err)
    assert not any(root.iterdir()), "a failed command left files behind"
