"""Reading plain texts to embed or to train on, from .txt, .jsonl or a BEIR folder."""

from __future__ import annotations

from pathlib import Path

from embedkd.data.beir import doc_text, is_beir_folder, load_corpus
from embedkd.data.jsonl import file_lines, iter_jsonl
from embedkd.errors import InputError

__all__ = ["read_texts"]


def read_texts(path: Path, *, field: str = "text") -> list[str]:
    """Texts from a file or folder, in order.

    - ``.txt``: one text per non-blank line.
    - ``.jsonl``: the ``field`` of each object; when the object also has a ``title``, the text is
      ``title + " " + text`` as BEIR builds documents.
    - a BEIR folder: its corpus documents, built the same way.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        if not is_beir_folder(path):
            raise InputError(f"{path} is a folder but not a BEIR folder (no corpus.jsonl)")
        texts = [doc_text(d["title"], d["text"]) for d in load_corpus(path).values()]
    elif path.suffix == ".jsonl":
        texts = []
        for number, record in iter_jsonl(path):
            value = record.get(field)
            if not isinstance(value, str):
                raise InputError(f"{path}:{number}: missing string field {field!r}")
            title = record.get("title")
            texts.append(doc_text(title, value) if isinstance(title, str) else value)
    elif path.suffix in {".txt", ".text", ".md", ""}:
        texts = [line.strip() for line in file_lines(path) if line.strip()]
    else:
        raise InputError(f"{path}: unsupported file type {path.suffix!r}; use .jsonl, .txt or a BEIR folder")
    if not texts:
        raise InputError(f"{path}: contains no text")
    return texts
