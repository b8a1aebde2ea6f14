"""Pick a torch device from a user-facing string."""

from __future__ import annotations

import torch

from embedkd.errors import InputError

__all__ = ["resolve_device"]


def resolve_device(device: str | None = None) -> str:
    """Map ``None``/``"auto"`` to the best available device and validate explicit choices."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device!r} was requested but CUDA is not available on this machine")
    if device not in {"cpu", "mps"} and not device.startswith("cuda"):
        raise InputError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")
    return device
