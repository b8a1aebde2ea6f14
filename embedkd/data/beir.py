"""Reading datasets in BEIR's folder format: corpus.jsonl, queries.jsonl and qrels/<split>.tsv."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from embedkd.data.jsonl import file_lines, iter_jsonl
from embedkd.errors import InputError

__all__ = ["BeirDataset", "doc_text", "is_beir_folder", "load_beir"]


def is_beir_folder(path: Path) -> bool:
    return path.is_dir() and (path / "corpus.jsonl").is_file()


def doc_text(title: str, text: str) -> str:
    """The text BEIR embeds for a document: ``title + " " + text``, stripped."""
    return f"{title} {text}".strip()


@dataclass
class BeirDataset:
    corpus: dict[str, dict[str, str]]  # doc id -> {"title", "text"}
    queries: dict[str, str]  # query id -> text (only queries with qrels in the split)
    qrels: dict[str, dict[str, int]]  # query id -> {doc id: relevance}
    split: str

    def doc_ids(self) -> list[str]:
        return list(self.corpus)

    def doc_texts(self) -> list[str]:
        return [doc_text(d["title"], d["text"]) for d in self.corpus.values()]


def load_corpus(folder: Path) -> dict[str, dict[str, str]]:
    corpus: dict[str, dict[str, str]] = {}
    path = folder / "corpus.jsonl"
    for number, record in iter_jsonl(path):
        doc_id = record.get("_id")
        if doc_id is None or "text" not in record:
            raise InputError(f"{path}:{number}: a BEIR corpus line needs '_id' and 'text'")
        corpus[str(doc_id)] = {"title": str(record.get("title") or ""), "text": str(record["text"])}
    if not corpus:
        raise InputError(f"{path}: the corpus is empty")
    return corpus


def load_qrels(folder: Path, split: str) -> dict[str, dict[str, int]]:
    path = folder / "qrels" / f"{split}.tsv"
    if path.is_dir():
        raise InputError(f"{path} is a folder; the split's qrels must be a tab-separated file")
    if not path.is_file():
        available = sorted(p.stem for p in (folder / "qrels").glob("*.tsv") if p.is_file())
        raise InputError(f"{path} not found; available splits: {', '.join(available) or 'none'}")
    qrels: dict[str, dict[str, int]] = {}
    rows = csv.reader(file_lines(path), delimiter="\t")
    for number, row in enumerate(rows, start=1):
        if number == 1 and row and not row[-1].lstrip("-").isdigit():
            continue  # header
        if len(row) < 3:
            raise InputError(f"{path}:{number}: expected 'query-id<TAB>corpus-id<TAB>score'")
        query_id, doc_id, score = row[0], row[1], row[-1]
        try:
            qrels.setdefault(query_id, {})[doc_id] = int(score)
        except ValueError as exc:
            raise InputError(f"{path}:{number}: score {score!r} is not an integer") from exc
    return qrels


def load_beir(folder: Path, split: str = "test") -> BeirDataset:
    """Load a BEIR folder; only the queries that have qrels in ``split`` are kept, as BEIR does."""
    folder = Path(folder)
    if not is_beir_folder(folder):
        raise InputError(f"{folder} is not a BEIR folder (no corpus.jsonl)")
    corpus = load_corpus(folder)
    qrels = load_qrels(folder, split)
    queries: dict[str, str] = {}
    for _, record in iter_jsonl(folder / "queries.jsonl"):
        query_id = str(record.get("_id"))
        if query_id in qrels:
            queries[query_id] = str(record.get("text", ""))
    qrels = {qid: rels for qid, rels in qrels.items() if qid in queries}
    if not queries:
        raise InputError(f"{folder}: no query in queries.jsonl has qrels in split {split!r}")
    return BeirDataset(corpus=corpus, queries=queries, qrels=qrels, split=split)
