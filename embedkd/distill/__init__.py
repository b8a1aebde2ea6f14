"""Distillation: align a small student to a big teacher's embedding space with unlabeled text."""

from __future__ import annotations

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
