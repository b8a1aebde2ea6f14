"""benchmarks/student_ensemble.py: the mean of students' query vectors, and its report."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.student_ensemble import MeanEncoder, write_markdown


class Fixed:
    """A stand-in student that returns fixed unit vectors, whatever the texts."""

    def __init__(self, rows: list[list[float]]) -> None:
        self.rows = np.asarray(rows, dtype=np.float32)
        self.batch_sizes: list[int] = []

    def encode_query(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        self.batch_sizes.append(batch_size)
        return self.rows[: len(texts)]


def test_the_mean_of_two_students_is_their_normalized_bisector() -> None:
    a, b = Fixed([[1.0, 0.0], [0.0, 1.0]]), Fixed([[0.0, 1.0], [0.0, 1.0]])
    mean = MeanEncoder([a, b]).encode_query(["q1", "q2"], batch_size=1)  # type: ignore[list-item]
    np.testing.assert_allclose(mean, [[2**-0.5, 2**-0.5], [0.0, 1.0]], rtol=1e-6)
    assert a.batch_sizes == b.batch_sizes == [1]  # the batch size reaches every member (batch-1 latency)


def test_opposite_students_do_not_divide_by_zero() -> None:
    mean = MeanEncoder([Fixed([[1.0, 0.0]]), Fixed([[-1.0, 0.0]])]).encode_query(["q"])  # type: ignore[list-item]
    assert np.all(np.isfinite(mean))


def test_the_report_scales_paraphrase_ndcg_by_the_teacher(tmp_path: Path) -> None:
    row = {"dev_ndcg10": 0.6, "teacher_agreement10": 0.7, "test_ndcg10": 0.61, "sts_cosine": 0.65}
    results = {
        "machine": "test box",
        "concurrent": "nothing else",
        "students": {"cut": "/a", "minilm": "/b"},
        "teacher_paraphrase_ndcg10": 0.8,
        "rows": [
            {"row": "cut", **row, "paraphrase_ndcg10": 0.72},
            {"row": "cut+minilm", **row, "paraphrase_ndcg10": 0.76, "batch1_p50_ms": 12.0, "batch1_p99_ms": 15.5},
        ],
        "reading": "A reading.",
    }
    path = tmp_path / "ensemble.md"
    write_markdown(results, path)
    text = path.read_text()
    assert "0.7200 (0.900x)" in text and "0.7600 (0.950x)" in text
    assert "12.0 / 15.5" in text and "batch-1 p50 / p99 ms" in text
    assert text.rstrip().endswith("A reading.")
