"""benchmarks/document_map.py: the identity-pulled ridge map, its label-free choice, and its report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.document_map import Corrected, chosen, corrections, fit_map, heldout_cosine, main, write_markdown


def _rotation(dim: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(dim, dim)))
    return q


def test_the_map_recovers_a_rotation_and_a_strong_pull_keeps_the_identity() -> None:
    rng = np.random.default_rng(0)
    student = rng.normal(size=(200, 8))
    rotation = _rotation(8, 1)
    np.testing.assert_allclose(fit_map(student, student @ rotation, lam=1e-6), rotation, atol=1e-6)
    np.testing.assert_allclose(fit_map(student, student @ rotation, lam=1e9), np.eye(8), atol=1e-4)
    np.testing.assert_allclose(fit_map(student, student, lam=10.0), np.eye(8), atol=1e-9)


def test_the_held_out_cosine_prefers_the_map_when_documents_are_rotated() -> None:
    rng = np.random.default_rng(2)
    student = rng.normal(size=(300, 8))
    teacher = student @ _rotation(8, 3) + 0.05 * rng.normal(size=(300, 8))
    fitted, pulled = heldout_cosine(student, teacher, 1e-3), heldout_cosine(student, teacher, 1e6)
    assert fitted > 0.99 > pulled


def test_corrections_list_none_offset_and_each_lambda_and_correct_queries() -> None:
    rng = np.random.default_rng(4)
    student = rng.normal(size=(100, 4))
    rows = corrections(student, student + np.array([1.0, 0.0, 0.0, 0.0]))
    assert [name for name, _, _ in rows][:2] == ["none", "offset"]
    assert all(name.startswith("lam ") for name, _, _ in rows[2:])
    query = np.array([[0.0, 0.0, 0.0, 2.0]])
    np.testing.assert_allclose(rows[0][1](query), query)  # none leaves the query as it is
    np.testing.assert_allclose(rows[1][1](query), [[5**-0.5, 0.0, 0.0, 2 * 5**-0.5]])  # offset, normalized


def test_the_choice_is_the_best_held_out_cosine_and_ties_go_to_the_stronger_pull() -> None:
    rows: list[dict[str, Any]] = [
        {"correction": "none", "heldout_doc_cos": 0.99},
        {"correction": "offset", "heldout_doc_cos": None},
        {"correction": "lam 0.1", "heldout_doc_cos": 0.80},
        {"correction": "lam 1", "heldout_doc_cos": 0.80},
        {"correction": "lam 10", "heldout_doc_cos": 0.70},
    ]
    assert chosen(rows) == "lam 1"


def test_corrected_encodes_each_text_list_once_across_corrections() -> None:
    calls: list[list[str]] = []

    class Student:
        def encode_query(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
            calls.append(texts)
            return np.ones((len(texts), 2))

    memo: dict[tuple[str, ...], np.ndarray] = {}
    first = Corrected(Student(), lambda q: q, memo)  # type: ignore[arg-type]
    second = Corrected(Student(), lambda q: 2 * q, memo)  # type: ignore[arg-type]
    assert first.encode_query(["a", "b"]).sum() == 4
    assert second.encode_query(["a", "b"]).sum() == 8
    assert calls == [["a", "b"]]


def test_the_report_marks_the_chosen_lambda_per_corpus(tmp_path: Path) -> None:
    def row(corpus: str, name: str, cos: float | None, **scores: float) -> dict[str, object]:
        return {"student": "s", "corpus": corpus, "correction": name, "heldout_doc_cos": cos, **scores}

    results = {
        "machine": "m",
        "concurrent": "nothing else",
        "docstrings_teacher_ndcg10": 0.5,
        "rows": [
            row("docstrings", "none", 0.6, query_cos=0.6, ndcg10=0.4),
            row("docstrings", "lam 1", 0.78, query_cos=0.75, ndcg10=0.45),
            row("docstrings", "lam 10", 0.73, query_cos=0.7, ndcg10=0.44),
            row("scifact", "none", 0.86, dev_ndcg10=0.68, test_ndcg10=0.66, teacher_agreement10=0.7),
            row("scifact", "lam 1", 0.89, dev_ndcg10=0.67, test_ndcg10=0.65, teacher_agreement10=0.69),
            row("scifact", "lam 10", 0.90, dev_ndcg10=0.675, test_ndcg10=0.655, teacher_agreement10=0.695),
        ],
    }
    path = tmp_path / "report.md"
    write_markdown(results, path)
    text = path.read_text()
    assert "| s | lam 1 (chosen) | 0.780 | 0.750 | 0.4500 (0.900x) |" in text
    assert "| s | lam 10 (chosen) | 0.900 | 0.6750 | 0.6550 | 0.695 |" in text
    assert "| s | none | 0.600 | 0.600 | 0.4000 (0.800x) |" in text


def test_no_student_is_a_usage_error_before_any_model_is_loaded(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(sys, "argv", ["document_map", "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert "give at least one --student" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
