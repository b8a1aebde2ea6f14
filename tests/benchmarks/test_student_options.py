"""Every benchmark that takes ``--student LABEL=FOLDER`` refuses a malformed or repeated one before any work."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from embedkd.errors import InputError

MODULES = [
    "benchmarks.backends",
    "benchmarks.document_map",
    "benchmarks.dual_space",
    "benchmarks.frontier",
    "benchmarks.fusion_index",
    "benchmarks.index_coverage",
    "benchmarks.student_ablation",
    "benchmarks.student_ensemble",
    "benchmarks.unseen_alignment",
    "benchmarks.unseen_docstrings",
]
EXTRA = {  # what each needs besides --student; a --data-root that does not exist, where there is one
    "benchmarks.backends": ["--beir", "/nowhere/beir"],
    "benchmarks.student_ablation": ["--data-root", "/nowhere/data", "--name", "x"],
    "benchmarks.unseen_docstrings": [],
}


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize(
    ("students", "message"),
    [
        (["a=/nowhere/a", "/nowhere/b"], "takes LABEL=FOLDER"),
        (["a=/nowhere/a", "a=/nowhere/b"], "'a' is given twice"),
    ],
)
def test_a_bad_student_option_fails_before_any_model_or_data_is_read(
    module: str, students: list[str], message: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    argv = [module, *EXTRA.get(module, ["--data-root", str(tmp_path / "no-data")])]
    for spec in students:
        argv += ["--student", spec]
    argv += ["--out", str(tmp_path / "out")]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(InputError, match=message):
        importlib.import_module(module).main()
    assert not (tmp_path / "out").exists()  # nothing written


def test_student_ablation_refuses_a_reference_that_is_no_student(monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["x", "--name", "x", "--student", "a=/nowhere/a", "--student", "b=/nowhere/b", "--reference", "c"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(InputError, match="--reference 'c' is none of the students' labels"):
        importlib.import_module("benchmarks.student_ablation").main()
