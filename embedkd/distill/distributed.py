"""Training on several processes (``torchrun``/``accelerate launch``): data-parallel gradient averaging.

Each rank computes the loss of its own share of every global batch, the gradients are averaged across
ranks with one all-reduce (what ``DistributedDataParallel`` does; done here after the backward pass, since
the layer cache and the ranking term call the student's modules directly rather than one ``forward``),
and every rank then takes the same optimiser step, so the weights stay identical. Rank 0 alone evaluates,
writes checkpoints, fits the time budget (and tells the others) and saves the student. gloo on CPU,
nccl on CUDA; the group is set up from torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` variables.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["Ranks", "init_ranks"]


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank."""
        if not self.active:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def sync_parameters(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Make every rank start from rank 0's weights."""
        if self.active:
            for param in parameters:
                dist.broadcast(param.data, src=0)

    def average_gradients(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Replace each gradient by its mean over the ranks (a rank with no batch this step adds zeros)."""
        if not self.active:
            return
        for param in parameters:
            if not param.requires_grad:
                continue
            if param.grad is None:
                param.grad = torch.zeros_like(param)
            dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
            param.grad /= self.world


def init_ranks(device: str) -> Ranks:
    """The ranks of this run: torchrun's environment, or a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Ranks(rank=rank, world=world, local_rank=local_rank)
