"""benchmarks/base_interpolation.py: interpolating a student's backbone towards its base, and the report."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmarks.base_interpolation import interpolate, write_markdown


def test_interpolation_mixes_float_weights_and_keeps_the_rest() -> None:
    student = {"w": torch.tensor([1.0, 3.0]), "ids": torch.tensor([5, 6])}
    base = {"w": torch.tensor([3.0, -1.0]), "ids": torch.tensor([0, 0])}
    mixed = interpolate(student, base, 0.25)
    torch.testing.assert_close(mixed["w"], torch.tensor([2.5, 0.0]))
    assert torch.equal(mixed["ids"], student["ids"])  # integer buffers (position ids) are not averaged
    torch.testing.assert_close(interpolate(student, base, 1.0)["w"], student["w"])
    torch.testing.assert_close(interpolate(student, base, 0.0)["w"], base["w"])


def test_interpolation_refuses_a_different_architecture() -> None:
    with pytest.raises(ValueError, match="architecture"):
        interpolate({"w": torch.zeros(2)}, {"w": torch.zeros(3)}, 0.5)
    with pytest.raises(ValueError, match="architecture"):
        interpolate({"w": torch.zeros(2)}, {"v": torch.zeros(2)}, 0.5)


def test_the_report_scales_paraphrase_ndcg_by_the_teacher(tmp_path: Path) -> None:
    row = {"dev_ndcg10": 0.6, "teacher_agreement10": 0.7, "test_ndcg10": 0.61, "sts_cosine": 0.65}
    results = {
        "machine": "test box",
        "concurrent": "nothing else",
        "student": "/s",
        "base": "minilm-l6",
        "refit_texts": 16000,
        "teacher_paraphrase_ndcg10": 0.8,
        "rows": [
            {"alpha": 1.0, "head": "trained", **row, "paraphrase_ndcg10": 0.72},
            {"alpha": 0.0, "head": "refit", **row, "paraphrase_ndcg10": 0.76},
        ],
        "reading": "A reading.",
    }
    path = tmp_path / "interp.md"
    write_markdown(results, path)
    text = path.read_text()
    assert "| 1 | trained | 0.6000 |" in text and "| 0 | refit |" in text
    assert "0.7200 (0.900x)" in text and "0.7600 (0.950x)" in text and "16,000" in text
    assert text.rstrip().endswith("A reading.")
