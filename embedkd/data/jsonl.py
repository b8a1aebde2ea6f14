"""Strict JSON-lines and text-file reading with errors that name the file and line."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from embedkd.errors import InputError

__all__ = ["file_lines", "iter_jsonl", "read_text_file", "reject_surrogates"]

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def read_text_file(path: Path) -> str:
    """The whole file as UTF-8 text (a leading byte-order mark dropped, as Windows editors write one), or an
    :class:`InputError` that says where decoding failed."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not valid UTF-8 (byte {exc.start}); re-encode the file as UTF-8") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from exc


def file_lines(path: Path) -> list[str]:
    """The file's lines, split at newlines only (``\\n``, ``\\r\\n``).

    Not ``str.splitlines()``: that also splits at U+2028, U+0085 and other characters that are valid inside
    a JSON string or a line of text.
    """
    text = read_text_file(path)
    if not text:
        return []
    lines = text[:-1].split("\n") if text.endswith("\n") else text.split("\n")
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; every line must be a JSON object."""
    for number, line in enumerate(file_lines(path), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}: invalid JSON ({exc.msg})") from exc
        if not isinstance(record, dict):
            raise InputError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        if _SURROGATE_ESCAPE.search(line):  # valid UTF-8 can still escape half a surrogate pair
            reject_surrogates(record, f"{path}:{number}")
        yield number, record


def reject_surrogates(value: Any, where: str = "") -> None:
    """Raise an :class:`InputError` (a ``ValueError``) for text that is not valid Unicode, in ``value`` or
    any string inside it: a lone UTF-16 surrogate (JSON ``"\\ud800"``) cannot be encoded as UTF-8, so no
    tokenizer or database can take it."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InputError(
                f"{where or 'text'} holds a lone UTF-16 surrogate at character {exc.start}; use valid Unicode"
            ) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            reject_surrogates(key, where)
            reject_surrogates(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            reject_surrogates(item, f"{where}[{i}]")
