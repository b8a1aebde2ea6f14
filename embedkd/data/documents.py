"""Documents to index: from jsonl, a BEIR folder, or a folder of .txt/.md files, validated up front."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedkd.data.beir import is_beir_folder
from embedkd.data.jsonl import iter_jsonl, read_text_file, reject_surrogates
from embedkd.errors import InputError

__all__ = ["Document", "check_metadata_value", "read_documents", "validate_documents"]

_INT64 = (-(2**63), 2**63 - 1)

_TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst"}


@dataclass
class Document:
    id: str
    text: str
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


def _from_record(record: dict[str, Any], where: str) -> Document:
    doc_id = record.get("_id", record.get("id"))
    if doc_id is None or (isinstance(doc_id, str) and not doc_id.strip()):
        raise InputError(f"{where}: missing document id ('_id' or 'id')")
    if not isinstance(doc_id, str | int):
        raise InputError(f"{where}: document id must be a string or an integer")
    text = record.get("text")
    if not isinstance(text, str):
        raise InputError(f"{where}: document {doc_id!r} has no string field 'text'")
    title = record.get("title") or ""
    if not isinstance(title, str):
        raise InputError(f"{where}: document {doc_id!r} has a non-string 'title'")
    metadata = record.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InputError(f"{where}: document {doc_id!r} has 'metadata' that is not an object")
    return Document(id=str(doc_id), text=text, title=title, metadata=metadata)


def _markdown_title(text: str, fallback: str) -> str:
    for line in text.splitlines()[:20]:
        if line.startswith("# "):
            return line[2:].strip()
    return fallback


def _read_folder(folder: Path) -> list[Document]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in _TEXT_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: no .txt or .md files (and no corpus.jsonl)")
    docs = []
    for path in files:
        relative = path.relative_to(folder).as_posix()
        text = read_text_file(path)
        docs.append(
            Document(
                id=relative,
                text=text,
                title=_markdown_title(text, path.stem) if path.suffix.lower() != ".txt" else path.stem,
                metadata={"path": relative},
            )
        )
    return docs


def _read_parquet(path: Path) -> list[Document]:
    """Documents from a parquet file with the jsonl fields as columns (``_id``/``id``, ``title``, ``text``,
    optional ``metadata``), read with pyarrow (the ``scale`` extra)."""
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise InputError(f"{path}: reading parquet needs pyarrow: pip install 'embedkd[scale]'") from exc
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        raise InputError(f"{path}: not a readable parquet file ({exc})") from exc
    return [_from_record(row, f"{path}:row {i}") for i, row in enumerate(rows, start=1)]


def read_documents(path: Path) -> list[Document]:
    """Documents from a ``.jsonl`` or ``.parquet`` (``_id``/``id``, ``title``, ``text``, optional ``metadata``),
    a BEIR folder (its ``corpus.jsonl``) or a folder of ``.txt``/``.md`` files (id = relative path)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        if is_beir_folder(path):
            path = path / "corpus.jsonl"
        else:
            return validate_documents(_read_folder(path), source=str(path))
    if path.suffix == ".parquet":
        return validate_documents(_read_parquet(path), source=str(path))
    if path.suffix != ".jsonl":
        raise InputError(
            f"{path}: documents must be a .jsonl or .parquet file, a BEIR folder or a folder of .txt/.md files"
        )
    docs = [_from_record(record, f"{path}:{number}") for number, record in iter_jsonl(path)]
    return validate_documents(docs, source=str(path))


def check_metadata_value(value: Any, where: str) -> None:
    """Refuse a metadata value (or filter value) that the index's store cannot keep as JSON and compare:
    anything but valid Unicode strings, booleans, null, finite numbers, integers within 64 bits, and lists
    and objects of them. NaN or an integer of 2**63 would be stored, then break every filtered search or
    every answer that returns the document."""
    if isinstance(value, str):
        reject_surrogates(value, where)
    elif value is None or isinstance(value, bool):
        return
    elif isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise InputError(f"{where}: the integer {value} is outside 64 bits; store it as a string")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InputError(f"{where}: {value} is not a finite number, which JSON cannot hold")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InputError(f"{where}: key {key!r} is not a string")
            reject_surrogates(key, where)
            check_metadata_value(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_metadata_value(item, f"{where}[{i}]")
    else:
        raise InputError(f"{where}: a {type(value).__name__} is not a JSON value")


def validate_documents(docs: Sequence[Document] | Iterable[Document], *, source: str = "input") -> list[Document]:
    """Reject an empty batch, duplicate ids, documents with no text at all, text that is not valid Unicode,
    and metadata the store cannot keep (:func:`check_metadata_value`)."""
    docs = list(docs)
    if not docs:
        raise InputError(f"{source}: no documents")
    seen: set[str] = set()
    for doc in docs:
        if doc.id in seen:
            raise InputError(f"{source}: duplicate document id {doc.id!r} in one batch")
        seen.add(doc.id)
        if not (doc.title.strip() or doc.text.strip()):
            raise InputError(f"{source}: document {doc.id!r} has neither title nor text")
        reject_surrogates([doc.id, doc.title, doc.text], f"{source}: document {doc.id!r}")
        check_metadata_value(doc.metadata, f"{source}: document {doc.id!r} metadata")
    return docs
