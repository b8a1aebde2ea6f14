"""Fitting a run into ``--max-minutes`` (the pure arithmetic; the trainer's use is in test_trainer.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from embedkd.distill import DistillConfig
from embedkd.distill.budget import fit_budget


def _fit(config: DistillConfig, *, planned: int, announce: bool = False) -> int:
    # 100 steps in 10 s, no evaluation yet: 0.1 s per step.
    return fit_budget(
        config, [], planned=planned, step=100, done=100, train_s=10.0, eval_s=0.0, already=0.0, announce=announce
    )


def test_a_budget_shortens_the_cycle_to_what_fits(tmp_path: Path) -> None:
    # 60 s: 50 s left, 500 more steps
    config = DistillConfig(out=tmp_path / "s", data=[tmp_path / "t.txt"], max_minutes=1.0)
    assert _fit(config, planned=10_000) == 600
    assert _fit(config, planned=300) == 300  # the step limit comes first


def test_the_first_fit_warns_when_the_step_limit_ends_the_cycle_long_before_the_budget(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = DistillConfig(out=tmp_path / "s", data=[tmp_path / "t.txt"], max_minutes=10.0, epochs=3)
    with caplog.at_level(logging.WARNING, logger="embedkd.distill.trainer"):
        _fit(config, planned=1_300)  # not the first fit: quiet
        assert not caplog.records
        _fit(config, planned=5_500, announce=True)  # 6,000 fit: within 10%, quiet
        assert not caplog.records
        assert _fit(config, planned=1_300, announce=True) == 1_300
    (record,) = caplog.records
    assert "--epochs 3" in record.getMessage() and "about 2 of its 10 budgeted minutes" in record.getMessage()
