"""Encoding in three stages, so a batcher can overlap them: pre (tokenise), core (forward), post.

- ``pre``: texts -> token tensors (+ token counts for usage reporting); CPU-only, releases the GIL.
- ``core``: the model's modules up to, not including, a final ``Normalize``: one batch at a time.
- ``post``: per request: truncate to ``dimensions``, normalise if asked, encode as float or base64.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from embedkd.models.encoder import Encoder
from embedkd.models.shared_trunk import SharedTrunk

__all__ = ["EncoderStages", "SharedTrunkStages", "Tokens", "postprocess", "to_base64"]


@dataclass
class Tokens:
    features: dict[str, Any]
    counts: list[int]


class EncoderStages:
    """One encoder on one side (query or document), split into the stages a micro-batcher overlaps."""

    def __init__(self, encoder: Encoder, *, role: str) -> None:
        self.encoder = encoder
        self.role = role

    @property
    def dimension(self) -> int:
        return self.encoder.dimension

    @property
    def concurrent(self) -> bool:
        """Whether forward passes of this model may run at once on several threads."""
        return self.encoder.concurrent_forwards

    @property
    def max_tokens(self) -> int:
        """Longest input the model reads, in tokens (special tokens and the role's prompt included)."""
        return self.encoder.max_seq_length or 1_000_000  # None: a static model reads any length

    def pre(self, texts: list[str]) -> Tokens:
        features = self.encoder.tokenize(texts, role=self.role)
        mask = features.get("attention_mask")
        counts = mask.sum(dim=1).tolist() if isinstance(mask, torch.Tensor) else [len(t.split()) for t in texts]
        return Tokens(features=features, counts=[int(c) for c in counts])

    def core(self, tokens: Tokens) -> np.ndarray:
        return self.encoder.embed_tokens(tokens.features)

    def token_lengths(self, texts: list[str]) -> list[int]:
        return self.encoder.token_counts(texts, role=self.role)

    def keep_end(self, texts: list[str]) -> list[str]:
        return self.encoder.keep_last_tokens(texts, role=self.role)


class SharedTrunkStages(EncoderStages):
    """A student and its base's query vectors in one pass (:class:`~embedkd.models.shared_trunk.SharedTrunk`):
    the student's tokens, and both unit vectors side by side as the core's rows, the student's first."""

    def __init__(self, trunk: SharedTrunk) -> None:
        super().__init__(trunk.first, role="query")
        self.trunk = trunk

    @property
    def dimension(self) -> int:
        return sum(self.trunk.dimensions)

    @property
    def concurrent(self) -> bool:
        return False

    def core(self, tokens: Tokens) -> np.ndarray:
        return self.trunk.embed_tokens(tokens.features)


def postprocess(raw: np.ndarray, *, normalize: bool = True, dimensions: int | None = None) -> np.ndarray:
    """Truncate to the first ``dimensions`` coordinates, then L2-normalise if asked (Matryoshka order)."""
    out = np.asarray(raw, dtype=np.float32)
    if dimensions is not None:
        out = out[:, :dimensions]
    if normalize:
        out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(out, dtype=np.float32)


def to_base64(rows: np.ndarray) -> list[str]:
    """OpenAI's base64 encoding: little-endian float32 bytes of each row."""
    little = np.ascontiguousarray(rows, dtype="<f4")
    return [base64.b64encode(row.tobytes()).decode("ascii") for row in little]
