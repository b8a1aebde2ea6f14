from __future__ import annotations

import json
from pathlib import Path

from embedkd.data.beir import load_qrels
from embedkd.data.jsonl import file_lines, iter_jsonl
from embedkd.errors import InputError


def test_lines_split_at_newlines_only(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    # U+2028 and U+0085 are legal inside a JSON string; str.splitlines() would cut the record in two
    records = [{"text": "one\u2028line"}, {"text": "next\u0085line"}]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    assert [r for _, r in iter_jsonl(path)] == records
    path.write_text("a\r\nb\n")
    assert file_lines(path) == ["a", "b"]
    path.write_text("a\nb")
    assert file_lines(path) == ["a", "b"]
    path.write_text("")
    assert file_lines(path) == []
    path.write_bytes('\ufeff{"text": "first"}\n'.encode())  # a byte-order mark, as Windows editors write
    assert [r for _, r in iter_jsonl(path)] == [{"text": "first"}]
    assert file_lines(path) == ['{"text": "first"}']


def test_a_lone_surrogate_escape_is_refused_with_its_line_and_a_pair_is_kept(tmp_path: Path) -> None:
    from embedkd.errors import InputError

    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "fine"}\n{"text": "smile \\ud83d\\ude00"}\n')  # an escaped pair is one character
    assert [r["text"] for _, r in iter_jsonl(path)] == ["fine", "smile \U0001f600"]
    path.write_text('{"text": "fine"}\n{"text": "half \\ud800 a pair"}\n')
    with __import__("pytest").raises(InputError, match=r"t.jsonl:2.* lone UTF-16 surrogate at character 5"):
        list(iter_jsonl(path))


def test_qrels_with_a_final_newline(tmp_path: Path) -> None:
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    assert load_qrels(tmp_path, "test") == {"q1": {"d1": 1}}
    (tmp_path / "qrels" / "dev.tsv").mkdir()  # once "not found; available splits: dev, test"
    with __import__("pytest").raises(InputError, match="dev.tsv is a folder"):
        load_qrels(tmp_path, "dev")
    with __import__("pytest").raises(InputError, match="available splits: test$"):
        load_qrels(tmp_path, "train")


def test_documents_read_from_parquet(tmp_path) -> None:
    pa = __import__("pytest").importorskip("pyarrow")
    import pyarrow.parquet as pq

    from embedkd.data.documents import read_documents
    from embedkd.errors import InputError

    table = pa.table({"_id": ["a", "b"], "title": ["T", ""], "text": ["first text", "second"]})
    pq.write_table(table, tmp_path / "docs.parquet")
    docs = read_documents(tmp_path / "docs.parquet")
    assert [(d.id, d.title, d.text) for d in docs] == [("a", "T", "first text"), ("b", "", "second")]
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with __import__("pytest").raises(InputError, match="not a readable parquet"):
        read_documents(tmp_path / "bad.parquet")
