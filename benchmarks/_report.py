"""What every benchmark report shares: the machine stamp and markdown tables."""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from embedkd.errors import EmbedkdError, InputError
from embedkd.logs import configure_logging


def machine() -> str:
    """CPU model, torch threads and version, the GPU (or its absence) and the date, as measured now."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu} ({cpu_bf16()}), {torch.get_num_threads()} threads, torch {torch.__version__}, {gpu}, "
        f"{time.strftime('%Y-%m-%d')}"
    )


def cpu_bf16() -> str:
    """The CPU's native bf16 support, which sets the speed of bf16 autocast (the ``auto`` precision): CPUs
    with one model name (e.g. "Intel(R) Xeon(R) Processor") differ here, and their results differ with it."""
    import torch

    from embedkd.device import native_bf16

    if not native_bf16("cpu"):
        return "no native bf16"
    return "AMX" if getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)() else "AVX512-BF16, no AMX"


def stamp(results: dict[str, Any], module: str, student: str = "") -> str:
    """A report's provenance line: machine, what ran beside it, the student (if any) and the command."""
    about = f" Student: `{results['student']}`{student}." if "student" in results else ""
    return (
        f"Machine: {results['machine']}. Ran beside: {results['concurrent']}.{about} "
        f"Command: `python -m benchmarks.{module}` (see its docstring)."
    )


def student_report_parser(doc: str | None, stem: str, *, data_root: bool = True) -> argparse.ArgumentParser:
    """The options the reports on students share: ``--data-root`` (unless ``data_root=False``), repeatable
    ``--student LABEL=FOLDER`` (parse it with ``labelled``), ``--out``, ``--name`` (writes ``STEM_NAME.{md,json}``)
    and ``--concurrent``. Each report adds its own options after these."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if data_root:
        parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument(
        "--student",
        action="append",
        default=[],
        help='LABEL=FOLDER (repeatable); a LABEL that starts with - needs --student="LABEL=FOLDER".',
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", default="", help=f"Write {stem}_NAME.{{md,json}}.")
    parser.add_argument("--concurrent", default="nothing else")
    return parser


def recipe_overrides(text: str, where: str) -> dict[str, Any]:
    """Overrides of the recipe given as JSON: an object whose keys are recipe options (``DistillConfig``
    fields), or an InputError that names ``where`` they came from, before anything trains."""
    try:
        overrides = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not JSON ({exc})") from exc
    if not isinstance(overrides, dict):
        raise InputError(f"{where}: give a JSON object of recipe overrides")
    from embedkd.distill import DistillConfig  # here, not at the top: most reports never train (torch)

    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(DistillConfig)})
    if unknown:
        raise InputError(f"{where}: {', '.join(unknown)} is not a recipe option (DistillConfig)")
    return overrides


def labelled(specs: Sequence[str], option: str = "--student", form: str = "LABEL=FOLDER") -> list[tuple[str, str]]:
    """Repeated ``LABEL=FOLDER`` options, parsed in order before any work starts: one without ``=``, with an
    empty side, or whose label was already given is an input error (exit 2), not a traceback or a silently
    overwritten row minutes later."""
    pairs: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for spec in specs:
        label, sep, value = (part.strip() for part in spec.partition("="))
        if not sep or not label or not value:
            raise InputError(f"{option} takes {form}, got {spec!r}")
        if label in seen:
            raise InputError(f"label {label!r} is given twice ({seen[label]!r} and {spec!r}); label each once")
        seen[label] = spec
        pairs.append((label, value))
    return pairs


def cell(value: object, spec: str = "") -> str:
    """A table cell: ``value`` formatted with ``spec``, or – where it is missing (``None``)."""
    return "–" if value is None else format(value, spec)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """Lines of a markdown table; cells are written with ``str``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def write_report(
    path: Path,
    title: str,
    results: dict[str, Any],
    intro: Sequence[str],
    header: Sequence[str],
    table: Iterable[Sequence[object]],
) -> None:
    """A results file: the title, the machine and what ran beside, ``intro``, the table and the reading."""
    lines = [f"# {title}", "", f"Machine: {results['machine']}. Running at the same time: {results['concurrent']}."]
    lines += ["", *intro, "", *markdown_table(header, table)]
    if results.get("reading"):
        lines += ["", results["reading"]]
    path.write_text("\n".join(lines) + "\n")


def write_json(path: Path, results: Any) -> None:
    """A results file's raw numbers, the one way every benchmark writes them: indented, paths and other
    objects as strings, the folder created if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")


def save_results(
    results: dict[str, Any], out: Path, stem: str, write_markdown: Callable[[dict[str, Any], Path], None]
) -> None:
    """``out/stem.json`` (the raw results) and ``out/stem.md`` (``write_markdown``'s report of them)."""
    write_json(out / f"{stem}.json", results)
    write_markdown(results, out / f"{stem}.md")


def write_sections(path: Path, lines: Sequence[str]) -> None:
    """Write ``lines`` (a ``# title`` and ``## sections``) into ``path``, keeping the sections of ``path``
    that ``lines`` does not have: several benchmarks share ``load.md``, and each replaces only its own."""
    mine = _split_sections(list(lines))
    old = _split_sections(path.read_text().splitlines()) if path.is_file() else {}
    head = mine.pop("", None) or old.get("", [])
    merged = {**old, **mine}
    merged.pop("", None)
    out = [*head]
    for body in merged.values():
        while out and not out[-1].strip():
            out.pop()
        out += ["", *body]
    path.write_text("\n".join(out).rstrip() + "\n")


def _split_sections(lines: list[str]) -> dict[str, list[str]]:
    """``{"": lines before the first "## " heading, heading: its lines (heading included)}``, in order."""
    sections: dict[str, list[str]] = {"": []}
    key = ""
    for line in lines:
        if line.startswith("## "):
            key = line
            sections[key] = []
        sections[key].append(line)
    return sections


def run_main(main: Callable[[], int | None]) -> NoReturn:
    """Run a benchmark's ``main``: embedkd's progress is logged (a long training run shows its steps), and
    an expected failure (a missing folder, an unknown model) ends with its message and exit code, not a
    traceback."""
    configure_logging("%(asctime)s %(message)s")
    try:
        code = main()
    except EmbedkdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
