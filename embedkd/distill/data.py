"""Unlabeled training text: read files, split long documents, deduplicate, sample, hold out.

LEAF trains on short query-like texts as well as documents, so a long document can contribute its
title and its sentences as separate texts, each with its own kind.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from embedkd.data.beir import doc_text
from embedkd.data.jsonl import file_lines, iter_jsonl
from embedkd.data.texts import folder_documents
from embedkd.errors import InputError

__all__ = [
    "DataOptions",
    "TextKind",
    "TrainingText",
    "describe",
    "kind_of",
    "load_training_texts",
    "random_crops",
    "split_holdout",
    "split_sentences",
    "vocabulary_words",
]

# A sentence ends at . ! or ? followed by whitespace and an upper-case letter, digit or bracket.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[\"'])")
_LONG_TEXT_WORDS = 64  # texts longer than this are treated as documents


class TextKind(str, Enum):
    QUERY = "query"  # a short text as given (a line of a .txt, a jsonl 'text')
    TITLE = "title"
    SENTENCE = "sentence"
    CROP = "crop"  # a random span of a document's words, query-length (Contriever-style cropping)
    DOCUMENT = "document"  # a whole document (title + text), truncated to the training max length
    WORD = "word"  # a whole word of the student base's tokenizer vocabulary (--vocabulary)


@dataclass(frozen=True)
class TrainingText:
    text: str
    kind: TextKind
    source: str
    document: str | None = None  # the whole document (title + text) a title, sentence or crop was cut from


@dataclass
class DataOptions:
    """How documents are turned into training texts."""

    sentences: bool = field(default=True, metadata={"help": "Split documents into sentences (>= min-words words)."})
    titles: bool = field(default=True, metadata={"help": "Use document titles as texts."})
    documents: bool = field(
        default=True,
        metadata={
            "help": "Also train on whole documents (title + text). The student reads each cut to the training "
            "length; the teacher's target is the whole document up to the teacher's own limit, as its index "
            "sees it, encoded once unless its vectors are cached or imported, so long documents cost the "
            "teacher far more than queries. --no-documents: titles and sentences only."
        },
    )
    crops: int = field(
        default=0,
        metadata={
            "help": "Random spans of 4-12 consecutive words to take from each document as extra query-length "
            "texts in the corpus's own domain (Contriever-style cropping; 0: none)."
        },
    )
    min_words: int = field(default=4, metadata={"help": "Shortest sentence kept, in words."})
    max_texts_per_source: int | None = field(
        default=None, metadata={"help": "Sample at most N texts from each --data source."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the per-source sampling.", "flags": ("--data-seed",)})

    def __post_init__(self) -> None:
        if self.crops < 0:
            raise InputError(f"crops must be 0 or more, got {self.crops}")


def split_sentences(text: str, *, min_words: int = 1) -> list[str]:
    """Sentences of a text, split at sentence-final punctuation; keeps those with >= ``min_words`` words."""
    parts = (s.strip() for s in _SENTENCE_END.split(text))
    return [s for s in parts if s and len(s.split()) >= min_words]


def _document_texts(title: str, text: str, source: str, options: DataOptions) -> Iterable[TrainingText]:
    whole = doc_text(title, text)
    if options.titles and title.strip():
        yield TrainingText(title.strip(), TextKind.TITLE, source, whole)
    if options.sentences:
        for sentence in split_sentences(text, min_words=options.min_words):
            yield TrainingText(sentence, TextKind.SENTENCE, source, whole)
    if options.documents:
        yield TrainingText(whole, TextKind.DOCUMENT, source, whole)
    for crop in random_crops(text, options.crops, seed=options.seed):
        yield TrainingText(crop, TextKind.CROP, source, whole)


def random_crops(text: str, count: int, *, seed: int = 0, shortest: int = 4, longest: int = 12) -> list[str]:
    """``count`` spans of ``shortest``-``longest`` consecutive words of ``text``, seeded by the text itself
    (so a document gives the same crops whatever else is read). A text shorter than a span gives none."""
    words = text.split()
    if count <= 0 or len(words) < shortest:
        return []
    rng = random.Random(f"{seed}:{text}")
    crops = []
    for _ in range(count):
        size = rng.randint(shortest, min(longest, len(words)))
        start = rng.randint(0, len(words) - size)
        crops.append(" ".join(words[start : start + size]))
    return crops


def vocabulary_words(tokens: Iterable[str], *, min_letters: int = 3) -> list[str]:
    """The whole words of a tokenizer vocabulary: pieces that start a word (SentencePiece's ``▁`` and byte-level
    BPE's ``Ġ`` markers removed; WordPiece's ``##`` continuations, special tokens and byte pieces dropped), of
    letters only and at least ``min_letters`` long, once each regardless of case, sorted."""
    words: dict[str, str] = {}
    for token in tokens:
        if token.startswith("##"):
            continue
        word = token.lstrip("▁Ġ")
        if len(word) >= min_letters and word.isalpha():
            words.setdefault(word.lower(), word)
    return sorted(words.values())


def kind_of(text: str) -> TextKind:
    """A text given as-is is a query-like text, or a document when it is long."""
    return TextKind.DOCUMENT if len(text.split()) > _LONG_TEXT_WORDS else TextKind.QUERY


def _read_source(path: Path, options: DataOptions) -> list[TrainingText]:
    source = str(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():  # a BEIR folder, or an index: the documents a student will serve
        out: list[TrainingText] = []
        for doc_title, doc_body in folder_documents(path):
            out.extend(_document_texts(doc_title, doc_body, source, options))
        return out
    if path.suffix == ".jsonl":
        out = []
        for number, record in iter_jsonl(path):
            text = record.get("text")
            if not isinstance(text, str):
                raise InputError(f"{path}:{number}: missing string field 'text'")
            title = record.get("title") if isinstance(record.get("title"), str) else ""
            if title:  # a corpus-style record: split like a BEIR document
                out.extend(_document_texts(str(title), text, source, options))
            elif text.strip():
                out.append(TrainingText(text.strip(), kind_of(text), source))
        return out
    if path.suffix in {".txt", ".text", ".md", ""}:
        out = []
        for line in file_lines(path):
            line = line.strip()
            if not line:
                continue
            out.append(TrainingText(line, kind_of(line), source))
        return out
    raise InputError(f"{path}: unsupported training data {path.suffix!r}; use .jsonl, .txt or a BEIR folder")


def load_training_texts(paths: Sequence[Path | str], options: DataOptions | None = None) -> list[TrainingText]:
    """All training texts from ``paths``, deduplicated (first occurrence wins), in a seeded shuffle.

    With ``max_texts_per_source``, each source keeps the first N texts of its own seeded shuffle, so the
    sample from one file does not depend on which other files are used.
    """
    options = options or DataOptions()
    if not paths:
        raise InputError("no training data given (pass --data FILE at least once)")
    seen: set[str] = set()
    texts: list[TrainingText] = []
    for raw in paths:
        path = Path(raw)
        unique = list({t.text: t for t in _read_source(path, options)}.values())
        if options.max_texts_per_source and len(unique) > options.max_texts_per_source:
            random.Random(options.seed).shuffle(unique)
            unique = unique[: options.max_texts_per_source]
        fresh = [t for t in unique if t.text not in seen]
        seen.update(t.text for t in fresh)
        texts.extend(fresh)
    if not texts:
        raise InputError(f"no usable training text in {', '.join(str(p) for p in paths)}")
    random.Random(options.seed).shuffle(texts)
    return texts


def split_holdout(
    texts: Sequence[TrainingText], size: int, *, seed: int = 0
) -> tuple[list[TrainingText], list[TrainingText]]:
    """Split off ``size`` texts (stratified by kind) to measure alignment on texts never trained on."""
    if size <= 0 or len(texts) < 2:
        return list(texts), []
    size = min(size, len(texts) // 5 or 1)
    rng = random.Random(seed + 1)
    by_kind: dict[TextKind, list[int]] = {}
    for i, item in enumerate(texts):
        by_kind.setdefault(item.kind, []).append(i)
    held: set[int] = set()
    for indices in by_kind.values():
        share = max(1, round(size * len(indices) / len(texts)))
        held.update(rng.sample(indices, min(share, len(indices))))
    train = [t for i, t in enumerate(texts) if i not in held]
    holdout = [t for i, t in enumerate(texts) if i in held]
    return train, holdout


def describe(texts: Sequence[TrainingText]) -> dict[str, Any]:
    """Counts by kind and by source, for the student manifest and the logs."""
    return {
        "texts": len(texts),
        "by_kind": dict(Counter(t.kind.value for t in texts)),
        "by_source": dict(Counter(t.source for t in texts)),
    }
