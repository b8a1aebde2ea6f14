"""Reading plain texts to embed or to train on, from .txt, .jsonl or a BEIR folder."""

from __future__ import annotations

from pathlib import Path

from embedkd.data.beir import doc_text, is_beir_folder, load_corpus
from embedkd.data.jsonl import file_lines, iter_jsonl
from embedkd.errors import InputError

__all__ = ["folder_documents", "read_texts"]


def folder_documents(path: Path) -> list[tuple[str, str]]:
    """(title, text) of the documents of a BEIR folder or an embedkd index folder."""
    from embedkd.index.manifest import index_documents, is_index_folder

    if is_index_folder(path):
        return index_documents(path)
    if not is_beir_folder(path):
        raise InputError(f"{path} is a folder but neither a BEIR folder (no corpus.jsonl) nor an embedkd index")
    return [(d["title"], d["text"]) for d in load_corpus(path).values()]


def read_texts(path: Path, *, field: str = "text") -> list[str]:
    """Texts from a file or folder, in order.

    - ``.txt``: one text per non-blank line.
    - ``.jsonl``: the ``field`` of each object; when the object also has a ``title``, the text is
      ``title + " " + text`` as BEIR builds documents.
    - a BEIR folder or an embedkd index folder: its documents, built the same way.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        texts = [doc_text(title, text) for title, text in folder_documents(path)]
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
