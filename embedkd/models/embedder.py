"""The one protocol every way of turning text into vectors implements.

A loaded model (:class:`~embedkd.models.encoder.Encoder`, on any backend) implements it, and so does a
teacher (:class:`~embedkd.distill.teacher.Teacher`): through its cache, with the model loaded only on a
miss, or a black box backed only by precomputed vectors. Index builds, evaluation and training targets
take an ``Embedder``, so any of them can stand behind each.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Embedder"]


@runtime_checkable
class Embedder(Protocol):
    """Normalised float32 vectors for queries and documents, and the identity that guards an index."""

    @property
    def name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    @property
    def fingerprint(self) -> str: ...

    def encode_query(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray: ...

    def encode_document(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray: ...
