"""The optimiser and the learning-rate schedule of a distillation run.

Two parameter groups (the backbone and the projection head, each with its own learning rate), and a
schedule of warm-up then linear decay that restarts when a finished run is extended (LEAF's cycles).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from sentence_transformers import SentenceTransformer

from embedkd.distill.config import DistillConfig
from embedkd.models.student import projection

__all__ = ["CycleBounds", "build_optimizer", "cycle_schedule"]

_FUSED_DEVICES = frozenset({"cpu", "cuda"})  # where torch's fused AdamW runs


def build_optimizer(model: SentenceTransformer, config: DistillConfig) -> tuple[torch.optim.AdamW, list[Any]]:
    """AdamW over the trainable backbone (``lr``) and the head (``head_lr``); returns it and the backbone.

    With ``freeze_embeddings`` the word-embedding matrix of a transformer student stays fixed (a static
    student's table is all it has, so it always trains).
    """
    head = projection(model)
    head_params = list(head.parameters())
    head_ids = {id(p) for p in head_params}
    if config.freeze_embeddings and hasattr(model[0], "auto_model"):
        transformer: Any = model[0]
        embeddings = transformer.auto_model.get_input_embeddings()
        for param in embeddings.parameters():
            param.requires_grad_(False)
    backbone = [p for p in model.parameters() if id(p) not in head_ids and p.requires_grad]
    # The fused kernel updates every tensor in one pass, the same AdamW update: on a 2-core AMD EPYC the
    # default student's steps ran 3% faster (benchmarks/results/no_amx/default_student/train_throughput.md).
    devices = {p.device.type for p in backbone + head_params}
    fused = bool(devices) and devices <= _FUSED_DEVICES
    optimizer = torch.optim.AdamW(
        [
            {"params": backbone, "lr": config.lr},
            {"params": head_params, "lr": config.head_lr},
        ],
        weight_decay=config.weight_decay,
        fused=fused or None,
    )
    return optimizer, backbone


@dataclass
class CycleBounds:
    """The current learning-rate cycle: it starts at ``start`` and ends at ``total`` steps.

    Mutable on purpose: a time budget may shorten ``total`` mid-run, and extending a finished run moves
    both; the schedule reads them at every step.
    """

    start: int
    total: int


def cycle_schedule(config: DistillConfig, bounds: CycleBounds) -> Callable[[int], float]:
    """The learning-rate factor at a step: linear warm-up, then linear decay to ``min_lr_ratio``."""

    def schedule(step: int) -> float:
        step -= bounds.start
        length = bounds.total - bounds.start
        warmup = int(config.warmup_ratio * length)
        if step < warmup:
            return (step + 1) / (warmup + 1)
        decay = max(0.0, (length - step) / max(1, length - warmup))
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * decay

    return schedule
