"""Pick a torch device and a numeric precision from user-facing strings."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from enum import Enum
from typing import Any

import torch

from embedkd.errors import InputError

__all__ = ["Precision", "autocast", "native_bf16", "resolve_device", "resolve_precision", "to_device"]


class Precision(str, Enum):
    AUTO = "auto"  # bf16 autocast where the hardware has native bf16 (most GPUs, AVX512-BF16/AMX CPUs), else fp32
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"  # CUDA only


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


def native_bf16(device: str) -> bool:
    """Whether bf16 autocast is fast here: a bf16-capable GPU, or a CPU with AVX512-BF16 or AMX."""
    if device.startswith("cuda"):
        return bool(torch.cuda.is_bf16_supported())
    if device == "cpu":
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in checks)
    return False


def resolve_precision(precision: Precision | str | None, device: str) -> Precision:
    """``auto`` becomes bf16 where it is native and fp32 elsewhere; explicit choices are validated."""
    try:
        value = Precision(precision or Precision.AUTO)
    except ValueError as exc:
        choices = ", ".join(m.value for m in Precision)
        raise InputError(f"unknown precision {precision!r}; choose one of {choices}") from exc
    if value is Precision.AUTO:
        return Precision.BF16 if native_bf16(device) else Precision.FP32
    if value is Precision.FP16 and not device.startswith("cuda"):
        raise InputError("fp16 needs a CUDA device; use bf16 or fp32")
    return value


def autocast(precision: Precision | str, device: str) -> AbstractContextManager[object]:
    """The autocast context for an already resolved precision (a no-op for fp32)."""
    value = Precision(precision)
    if value in (Precision.FP32, Precision.AUTO):
        return nullcontext()
    dtype = torch.bfloat16 if value is Precision.BF16 else torch.float16
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype)


def to_device(features: Mapping[str, Any], device: str | torch.device) -> dict[str, Any]:
    """A tokenised batch (``model.preprocess``'s output) with its tensors on ``device``; other values as they are."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
