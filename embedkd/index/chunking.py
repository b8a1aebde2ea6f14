"""Split long documents into overlapping token windows.

Chunk 0 is always the whole document as BEIR embeds it (``title + " " + text``, truncated by the model to
its max length), so a short document is exactly one chunk and evaluation matches BEIR. Documents longer
than one window get more chunks that cover the rest of the text with ``overlap`` tokens of overlap; each
of those is embedded with the title in front, and its passage is the exact original substring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from embedkd.data.beir import doc_text
from embedkd.data.documents import Document
from embedkd.errors import InputError

__all__ = ["Chunk", "chunk_document", "chunk_overlap"]


@dataclass(frozen=True)
class Chunk:
    ordinal: int
    encode_text: str  # what the teacher embeds
    passage: str  # the part of the document text this chunk stands for
    start: int  # character offsets of the passage in the document text
    end: int


def chunk_overlap(overlap: int | None, max_tokens: int) -> int:
    """The tokens neighbouring chunks share: ``overlap`` as given, or by default 64 (a quarter of a chunk
    shorter than 256 tokens). An overlap of a whole chunk or more is refused: each chunk would move on by a
    single token, and a short corpus would become thousands of chunks."""
    if overlap is None:
        return min(64, max_tokens // 4)
    if not 0 <= overlap < max_tokens:
        raise InputError(f"--overlap {overlap} must be at least 0 and less than the chunk length ({max_tokens})")
    return overlap


def _offsets(tokenizer: Any, text: str) -> list[tuple[int, int]]:
    if not text:
        return []
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, truncation=False)
    return [tuple(span) for span in encoded["offset_mapping"]]


def _text_start(title: str, text: str) -> int:
    """Index in ``doc_text(title, text)`` where ``text[0]`` sits (negative if leading spaces were stripped)."""
    raw = f"{title} {text}"
    return len(title) + 1 - (len(raw) - len(raw.lstrip()))


def chunk_document(
    doc: Document,
    tokenizer: Any,
    *,
    max_tokens: int,
    overlap: int = 64,
    max_chunks: int | None = None,
) -> list[Chunk]:
    """Chunks of ``doc`` for a model that reads at most ``max_tokens`` tokens (special tokens included)."""
    window = max(8, max_tokens - 2)  # [CLS] ... [SEP]
    full = doc_text(doc.title, doc.text)
    full_offsets = _offsets(tokenizer, full)
    if len(full_offsets) <= window:
        return [Chunk(0, full, doc.text, 0, len(doc.text))]
    covered = min(len(doc.text), max(0, full_offsets[window - 1][1] - _text_start(doc.title, doc.text)))
    chunks = [Chunk(0, full, doc.text[:covered], 0, covered)]

    body_offsets = _offsets(tokenizer, doc.text)
    title_tokens = len(_offsets(tokenizer, doc.title)) + 1 if doc.title.strip() else 0
    body_window = max(8, window - title_tokens)
    start_token = next((i for i, (s, _) in enumerate(body_offsets) if s >= covered), len(body_offsets))
    start_token = max(0, start_token - overlap)
    while start_token < len(body_offsets) and (max_chunks is None or len(chunks) < max_chunks):
        stop_token = min(len(body_offsets), start_token + body_window)
        start_char, end_char = body_offsets[start_token][0], body_offsets[stop_token - 1][1]
        passage = doc.text[start_char:end_char]
        chunks.append(Chunk(len(chunks), doc_text(doc.title, passage), passage, start_char, end_char))
        if stop_token >= len(body_offsets):
            break
        start_token = max(stop_token - overlap, start_token + 1)
    return chunks
