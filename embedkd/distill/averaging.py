"""An exponential moving average of the trained weights (Polyak averaging, as in timm's ``ModelEmaV3``).

Evaluation, checkpoints and the saved student use the averaged weights; the optimiser keeps stepping the raw
ones. A checkpoint folder therefore holds the averaged weights, and its state the raw ones, so that a
resumed run continues exactly where it stopped.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

__all__ = ["WeightAverage"]


class WeightAverage:
    """The running average of every trainable parameter of ``model``.

    ``decay`` is the weight of the old average at each update; early on it is capped at
    ``(1 + n) / (10 + n)`` after ``n`` updates, so the first steps, far from any good weights, fade fast.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError("decay must be between 0 and 1")
        self.decay = decay
        self.updates = 0
        self._names = [name for name, p in model.named_parameters() if p.requires_grad]
        self._params: list[torch.Tensor] = [p for p in model.parameters() if p.requires_grad]
        self._data = [p.detach() for p in self._params]  # views: they follow the optimiser's in-place steps
        self._shadow = [p.clone() for p in self._data]
        self._raw: list[torch.Tensor] | None = None  # the raw weights while the average is applied

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self._shadow, self._data, 1.0 - decay)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Within the block the model holds the averaged weights; the raw ones come back after it."""
        if self._raw is not None:
            raise RuntimeError("the average is already applied")
        with torch.no_grad():
            self._raw = [p.detach().clone() for p in self._params]
            torch._foreach_copy_(self._params, self._shadow)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self._params, self._raw)
            self._raw = None

    def state_dict(self) -> dict[str, Any]:
        """The update count and the raw weights (a checkpoint's folder holds the averaged ones)."""
        raw = self._raw if self._raw is not None else [p.detach() for p in self._params]
        return {"updates": self.updates, "raw": {n: t.clone().cpu() for n, t in zip(self._names, raw, strict=True)}}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from a model loaded from a checkpoint folder (the average) and that folder's state."""
        if self._raw is not None:
            raise RuntimeError("cannot load while the average is applied")
        raw = state["raw"]
        missing = sorted(set(self._names) - set(raw))
        if missing:
            raise ValueError(f"the checkpoint has no raw weights for {missing[:3]}")
        self._shadow = [p.detach().clone() for p in self._params]
        for name, param in zip(self._names, self._params, strict=True):
            param.copy_(raw[name].to(param.device, param.dtype))
        self.updates = int(state["updates"])
