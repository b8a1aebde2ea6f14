"""Distillation: align a small student to a big teacher's embedding space with unlabeled text."""

from __future__ import annotations

import sys
import types
from typing import Any

from embedkd.distill.config import DistillConfig, Precision
from embedkd.distill.data import DataOptions, TextKind, TrainingText, load_training_texts
from embedkd.distill.losses import LossName
from embedkd.distill.teacher import Teacher
from embedkd.distill.trainer import DistillResult, TrainingDivergedError, distill

__all__ = [
    "DataOptions",
    "DistillConfig",
    "DistillResult",
    "LossName",
    "Precision",
    "Teacher",
    "TextKind",
    "TrainingDivergedError",
    "TrainingText",
    "distill",
    "load_training_texts",
]


class _DistillPackage(types.ModuleType):
    """``embedkd.distill`` names both this package and its main function, and Python binds the package
    to that name once anything imports it; calling the package runs the function, so
    ``from embedkd import distill; distill(config)`` works whichever of the two the name holds."""

    def __call__(self, config: DistillConfig, /) -> Any:
        from embedkd.distill import trainer

        return trainer.distill(config)


sys.modules[__name__].__class__ = _DistillPackage
