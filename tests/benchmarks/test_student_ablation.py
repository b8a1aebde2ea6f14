from __future__ import annotations

from typing import Any

from benchmarks.student_ablation import report


def default_row() -> dict[str, Any]:
    return {
        "student": "default",
        "kept_step": 16000,
        "heldout_cosine": 0.77,
        "teacher_agreement10": 0.68,
        **{f"{k}_ndcg10": 0.6 for k in ("dev", "test", "sts", "docstrings")},
        "sts_x_teacher": 0.95,
        "docstrings_x_teacher": 0.77,
        **{f"{k}_vs_reference": [0.0, 0.0, 0.0] for k in ("dev", "test", "sts", "docstrings")},
    }


def test_report_lists_each_student_with_its_intervals() -> None:
    row = default_row()
    other = {**row, "student": "change", "dev_vs_reference": [0.0095, 0.0053, 0.0142], "heldout_cosine": None}
    text = report(
        {"machine": "m", "concurrent": "nothing", "recipe": "r", "reference": "default=x", "rows": [row, other]},
        "## Reading\nok",
    )
    assert "| change | 16000 | 0.6000 | +0.0095 [+0.0053, +0.0142] |" in text
    assert text.rstrip().endswith("## Reading\nok") and "Ran beside: nothing" in text


def test_report_marks_a_checkpoint_without_a_manifest() -> None:
    row = {
        "student": "last step",
        "kept_step": None,
        "heldout_cosine": None,
        "teacher_agreement10": 0.7,
        **{f"{k}_ndcg10": 0.6 for k in ("dev", "test", "sts", "docstrings")},
        "sts_x_teacher": 0.95,
        "docstrings_x_teacher": 0.8,
        **{f"{k}_vs_reference": [0.0, 0.0, 0.0] for k in ("dev", "test", "sts", "docstrings")},
    }
    text = report({"machine": "m", "concurrent": "nothing", "recipe": "r", "reference": "x=y", "rows": [row]})
    line = next(line for line in text.splitlines() if line.startswith("| last step |"))
    assert "None" not in line and line.startswith("| last step | – | 0.6000 |")
    assert "| 0.700 | – | 0.950 |" in line


def test_report_adds_student_student_columns_only_when_every_row_has_them() -> None:
    row = default_row()
    symmetric = {"sym_dev_ndcg10": 0.64, "sym_dev_x_teacher": 0.97, "sym_test_ndcg10": 0.63, "sym_test_x_teacher": 0.96}
    both = report(
        {"machine": "m", "concurrent": "-", "recipe": "r", "reference": "x=y", "rows": [{**row, **symmetric}]}
    )
    line = next(line for line in both.splitlines() if line.startswith("| default |"))
    assert line.endswith("| 0.6400 (0.970) | 0.6300 (0.960) |") and "student/student dev (x teacher)" in both
    mixed = report(
        {"machine": "m", "concurrent": "-", "recipe": "r", "reference": "x=y", "rows": [{**row, **symmetric}, row]}
    )
    assert "student/student" not in mixed
