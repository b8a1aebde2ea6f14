"""Fitting a training run into ``--max-minutes``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from embedkd.distill.config import DistillConfig

__all__ = ["fit_budget"]

logger = logging.getLogger("embedkd.distill.trainer")


def fit_budget(
    config: DistillConfig,
    history: Sequence[dict[str, Any]],
    *,
    planned: int,
    step: int,
    done: int,
    train_s: float,
    eval_s: float,
    already: float,
    announce: bool = False,
) -> int:
    """The number of steps that fits ``max_minutes``, from the speed measured so far (at most ``planned``).

    Called after 20 steps and at every evaluation, so a slow start (a busy machine, warm-up) is corrected
    as soon as the speed is known better. With ``announce`` (the first call), it also warns when the step
    limit (``epochs`` or ``max_steps``) will end the cycle well before the budget: a longer budget alone
    does not train longer.
    """
    budget = float(config.max_minutes or 0) * 60 - already
    per_step = train_s / max(1, done)
    per_eval = eval_s / max(1, len(history) - 1) if len(history) > 1 else 0.0
    if not per_eval and history:
        per_eval = float(history[0].get("eval_seconds", 0.0))
    remaining = budget - train_s - eval_s - per_eval  # the final evaluation always runs
    seconds_per_step = per_step + per_eval / config.eval_every
    steps_left = remaining / seconds_per_step
    affordable = min(planned, max(step + 1, step + int(steps_left)))
    if announce and steps_left > 1.1 * (planned - step):  # this cycle's steps, not the run's so far
        flag, value = ("--max-steps", config.max_steps) if config.max_steps else ("--epochs", f"{config.epochs:g}")
        logger.warning(
            "the step limit (%d steps: %s %s) will end this cycle after about %.0f of its %.0f budgeted minutes; "
            "raise %s to train for the whole budget",
            planned,
            flag,
            value,
            (train_s + eval_s + (planned - step) * seconds_per_step) / 60,
            budget / 60,
            flag,
        )
    if affordable < planned:
        logger.info(
            "time budget %.0f min: %d of %d planned steps fit (%.2f s/step)",
            config.max_minutes,
            affordable,
            planned,
            per_step,
        )
    return affordable
