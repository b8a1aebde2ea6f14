"""The student: backbone -> mean pooling -> Dense(d_student -> d_teacher, no activation) -> Normalize.

It is an ordinary sentence-transformers model, so a saved student is an ordinary sentence-transformers
folder (``modules.json``, ``1_Pooling``, ``2_Dense``, ``3_Normalize``) plus embedkd's ``embedkd.json``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from embedkd.device import to_device
from embedkd.errors import InputError
from embedkd.models.loading import load_model
from embedkd.models.manifest import StudentManifest

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = [
    "STATIC",
    "TEACHER_BASE",
    "is_static_base",
    "build_student",
    "projection",
    "set_max_seq_length",
    "encoder_layers",
    "layer_list_owner",
    "evenly_spaced_layers",
    "fit_ridge_projection",
    "pooled_embeddings",
    "prune_layers",
    "save_student",
    "set_projection",
]


def evenly_spaced_layers(total: int, keep: int) -> list[int]:
    """Indices of ``keep`` layers spread evenly over ``total``, always keeping the first and last."""
    if not 1 <= keep <= total:
        raise InputError(f"cannot keep {keep} of {total} layers")
    if keep == 1:
        return [total - 1]
    return sorted({round(i * (total - 1) / (keep - 1)) for i in range(keep)})


def _encoder_layers(transformer: Any) -> tuple[Any, str]:
    """The module holding the transformer's layer list, and the attribute name of that list."""
    auto_model = transformer.auto_model
    for owner_name in ("encoder", "transformer", ""):
        owner = getattr(auto_model, owner_name, None) if owner_name else auto_model
        for attr in ("layer", "layers"):
            if isinstance(getattr(owner, attr, None), nn.ModuleList):
                return owner, attr
    raise InputError(f"cannot find the layer list of {type(auto_model).__name__} to prune it")


def layer_list_owner(transformer: Any) -> tuple[Any, str]:
    """The module that holds a Transformer module's layer list, and the attribute name of that list."""
    return _encoder_layers(transformer)


def encoder_layers(transformer: Any) -> nn.ModuleList:
    """The layer list of a Transformer module's model."""
    owner, attr = _encoder_layers(transformer)
    layers: nn.ModuleList = getattr(owner, attr)
    return layers


def prune_layers(transformer: Any, keep: int | Sequence[int]) -> list[int]:
    """Keep ``keep`` evenly spaced layers (or exactly the listed indices) of a Transformer module."""
    owner, attr = _encoder_layers(transformer)
    layers: nn.ModuleList = getattr(owner, attr)
    indices = evenly_spaced_layers(len(layers), keep) if isinstance(keep, int) else sorted(set(keep))
    if any(not 0 <= i < len(layers) for i in indices):
        raise InputError(f"layer indices {indices} out of range for {len(layers)} layers")
    setattr(owner, attr, nn.ModuleList([layers[i] for i in indices]))
    transformer.auto_model.config.num_hidden_layers = len(indices)
    return indices


STATIC = "static"  # the student base that means "a static-embedding student distilled from the teacher"
TEACHER_BASE = "teacher"  # the student base that means "the teacher's own lower layers" (QED)


def is_static_base(base: str) -> bool:
    """Whether a student base names a static-embedding student: ``static`` or ``static:MODEL``."""
    return base == STATIC or base.startswith(f"{STATIC}:")


def projection(model: SentenceTransformer) -> Any:
    """The student's Dense head (the projection into the teacher's space)."""
    from sentence_transformers.sentence_transformer.modules import Dense

    for module in model:
        if isinstance(module, Dense):
            return module
    raise InputError("this model has no Dense projection: it is not an embedkd student")


def _before_projection(model: SentenceTransformer) -> list[Any]:
    modules = list(model)
    head = projection(model)
    return modules[: next(i for i, m in enumerate(modules) if m is head)]


def set_max_seq_length(model: SentenceTransformer, value: int | None) -> None:
    """Set the truncation length, where the model has one (a static model reads any length)."""
    if value is None or getattr(model[0], "max_seq_length", None) == float("inf"):
        return
    model.max_seq_length = value


def build_student(
    base: str | os.PathLike[str],
    *,
    teacher_dimension: int,
    layers: int | Sequence[int] | None = None,
    device: str | None = None,
    max_seq_length: int | None = None,
) -> tuple[SentenceTransformer, list[int] | None]:
    """A student from any sentence-transformers base: its Transformer, mean pooling, a fresh projection.

    Returns the model and the kept layer indices (None when no layer was pruned). Any Dense or Normalize
    modules of the base are dropped: the projection to the teacher's space replaces them.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import (
        Dense,
        Normalize,
        Pooling,
        StaticEmbedding,
        Transformer,
    )

    base_model = load_model(base, device="cpu")
    modules = list(base_model)
    if modules and isinstance(modules[0], StaticEmbedding):  # token table + mean: no layers, no pooling module
        if layers is not None:
            raise InputError("a static student has no layers to keep")
        static = modules[0]
        dense = Dense(static.get_embedding_dimension(), teacher_dimension, activation_function=None)
        return SentenceTransformer(modules=[static, dense, Normalize()], device=device or "cpu"), None
    if not modules or not isinstance(modules[0], Transformer):
        raise InputError(f"{base} does not start with a Transformer module; cannot build a student from it")
    transformer = modules[0]
    if max_seq_length:
        transformer.max_seq_length = max_seq_length
    kept = prune_layers(transformer, layers) if layers is not None else None
    hidden = transformer.get_embedding_dimension()
    pooling = Pooling(hidden, pooling_mode="mean")
    dense = Dense(hidden, teacher_dimension, activation_function=None)
    model = SentenceTransformer(
        modules=[transformer, pooling, dense, Normalize()],
        device=device or "cpu",
        prompts=getattr(base_model, "prompts", None) or None,
    )
    return model, kept


@torch.inference_mode()
def pooled_embeddings(model: SentenceTransformer, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
    """Mean-pooled backbone outputs (the projection's input) for ``texts``."""
    head = nn.Sequential(*_before_projection(model))
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(texts), batch_size):
        features = model.preprocess(list(texts[start : start + batch_size]))
        features = to_device(features, device)
        out.append(head(features)["sentence_embedding"].float().cpu().numpy())
    return np.concatenate(out)


def fit_ridge_projection(x: np.ndarray, y: np.ndarray, *, ridge: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Ridge regression ``y ≈ x @ w + b`` with an intercept.

    ``ridge`` is relative to the mean eigenvalue of the centred Gram matrix, so it means the same for
    inputs of any scale. A plain least-squares fit is a trap here: small students' pooled embeddings are
    rank-deficient, and the unregularised map has huge singular values that wreck fine-tuning.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc, yc = x - x_mean, y - y_mean
    gram = xc.T @ xc
    if not np.trace(gram) > 0:  # one text, or every text alike: no direction to fit, only the mean
        return np.zeros((x.shape[1], y.shape[1]), np.float32), y_mean.astype(np.float32)
    lam = ridge * np.trace(gram) / gram.shape[0]
    w = np.linalg.solve(gram + lam * np.eye(gram.shape[0]), xc.T @ yc)
    b = y_mean - x_mean @ w
    return w.astype(np.float32), b.astype(np.float32)


def set_projection(model: SentenceTransformer, weight: np.ndarray, bias: np.ndarray) -> None:
    """Load ``y = x @ weight + bias`` into the student's Dense layer."""
    dense: Any = projection(model)
    linear: nn.Linear = dense.linear
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(weight.T.copy()))
        linear.bias.copy_(torch.from_numpy(bias.copy()))


def save_student(model: SentenceTransformer, folder: Path, manifest: StudentManifest) -> Path:
    """Save a student as a sentence-transformers folder plus ``embedkd.json``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save(str(folder))
    manifest.write(folder)
    return folder
