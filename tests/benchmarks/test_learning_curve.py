from __future__ import annotations

import sys
from pathlib import Path

import pytest

from benchmarks import learning_curve
from embedkd.errors import InputError


def test_recipe_overrides_are_recipe_options() -> None:
    assert learning_curve.recipe_overrides('{"seed": 7, "base_relation_weight": 0.1}', "x") == {
        "seed": 7,
        "base_relation_weight": 0.1,
    }
    with pytest.raises(InputError, match="--recipe-json: sed is not a recipe option"):
        learning_curve.recipe_overrides('{"sed": 7}', "--recipe-json")
    with pytest.raises(InputError, match="not JSON"):
        learning_curve.recipe_overrides("{seed: 7}", "--recipe-json")
    with pytest.raises(InputError, match="JSON object"):
        learning_curve.recipe_overrides("7", "--recipe-json")


def test_cli_refuses_a_misspelt_override_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["learning_curve", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")]
    monkeypatch.setattr(sys, "argv", [*argv, "--recipe-json", '{"base_relation_wieght": 0.1}'])
    with pytest.raises(InputError, match="base_relation_wieght"):
        learning_curve.main()
    assert not (tmp_path / "work").exists() and not (tmp_path / "out").exists()


def test_distill_scifact_refuses_a_misspelt_override_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks import distill_scifact

    argv = ["distill_scifact", "--work", str(tmp_path / "work"), "--recipe-json", '{"max_minute": 1}']
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(InputError, match="max_minute is not a recipe option"):
        distill_scifact.main()
    assert not (tmp_path / "work").exists()
