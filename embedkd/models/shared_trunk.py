"""Two encoders' query vectors in one pass, when one was trained from the other with its lower layers frozen.

The default student is MiniLM-L6 with only its top layer (and a projection) trained: its word embeddings and
five lower layers are MiniLM-L6's own, unchanged. A fused search (:class:`embedkd.retrieval.Fusion`) needs
the query in both spaces, so running those shared layers once and then each model's remaining layers,
pooling and head gives both vectors for 1.12-1.17x one encoder's compute instead of 2x
(``benchmarks/results/dual_space_xeon_nobf16.md``). :meth:`SharedTrunk.find` uses it only where it is exact:
both models on torch, in fp32, BERT-style, with bit-equal shared weights, and the pass checked against the
two encoders on probe texts.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from embedkd.device import to_device
from embedkd.models.encoder import Encoder

__all__ = ["SharedTrunk"]

logger = logging.getLogger(__name__)

_PROBES = ["what causes tides", "a much longer query about the structure of proteins in the cell membrane", "x"]


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    left, right = a.state_dict(), b.state_dict()
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def _backbone(encoder: Encoder) -> Any | None:
    """The BERT-style model inside a torch fp32 sentence-transformers encoder, or None."""
    if encoder.backend != "torch" or encoder.precision != "fp32":
        return None
    modules = list(encoder.model)
    model = getattr(modules[0], "auto_model", None) if modules else None
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if model is None or layers is None or not hasattr(model, "embeddings"):
        return None
    return model


class SharedTrunk:
    """``first`` and ``second`` share their word embeddings and lowest ``shared`` layers."""

    def __init__(self, first: Encoder, second: Encoder, shared: int) -> None:
        self.first, self.second, self.shared = first, second, shared
        a, b = _backbone(first), _backbone(second)
        if a is None or b is None:
            raise ValueError("a shared pass needs two BERT-style encoders on torch in fp32 (use SharedTrunk.find)")
        self._first: Any = a
        self._second: Any = b

    @classmethod
    def find(cls, first: Encoder, second: Encoder) -> SharedTrunk | None:
        """The shared pass of two encoders, or None where it would not be exact (then encode them apart)."""
        a, b = _backbone(first), _backbone(second)
        if a is None or b is None or not _same(a.embeddings, b.embeddings):
            return None
        shared = 0
        for left, right in zip(a.encoder.layer, b.encoder.layer, strict=False):
            if not _same(left, right):
                break
            shared += 1
        if shared == 0:
            return None
        trunk = cls(first, second, shared)
        try:
            pair = trunk.encode_query(_PROBES)
            ok = all(
                float(np.min(np.sum(vectors * encoder.encode_query(_PROBES), axis=1))) > 0.9999
                for vectors, encoder in zip(pair, (first, second), strict=True)
            )
        except Exception as exc:  # noqa: BLE001  # an architecture this pass does not know: encode apart
            logger.info("no shared pass for %s and %s: %s", first.name, second.name, exc)
            return None
        return trunk if ok else None

    def _layers(self, layers: Sequence[torch.nn.Module], hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for layer in layers:
            out = layer(hidden, attention_mask=mask)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    @staticmethod
    def _head(encoder: Encoder, tokens: torch.Tensor, features: dict[str, Any]) -> np.ndarray:
        """Pooling and every later module but a final normalisation, then the unit vectors."""
        from sentence_transformers.sentence_transformer.modules import Normalize

        out: dict[str, Any] = {**features, "token_embeddings": tokens}
        for module in list(encoder.model)[1:]:
            if not isinstance(module, Normalize):
                out = module(out)
        vectors = out["sentence_embedding"].float().cpu().numpy()
        return np.asarray(vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12), np.float32)

    def encode_query(self, texts: Sequence[str], *, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Unit query vectors of ``texts`` from both encoders (first's tokenizer and prompt; the shared
        embeddings mean both read the same tokens), ``batch_size`` texts per pass."""
        parts = [self._pass(list(texts[i : i + batch_size])) for i in range(0, len(texts), batch_size)]
        if not parts:
            return np.zeros((0, self.first.dimension), np.float32), np.zeros((0, self.second.dimension), np.float32)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    @property
    def dimensions(self) -> tuple[int, int]:
        return self.first.dimension, self.second.dimension

    def embed_tokens(self, features: dict[str, Any]) -> np.ndarray:
        """Both unit vectors of tokenised queries (``first.tokenize(texts, role="query")``) side by side, first's
        then second's (the first ``first.dimension`` columns are first's): what a micro-batcher stage returns."""
        return np.concatenate(self._forward(features), axis=1)

    def _pass(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        return self._forward(self.first.tokenize(texts, role="query"))

    def _forward(self, features: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        device = self.first.model.device
        features = to_device(features, device)
        ids, mask = features["input_ids"], features["attention_mask"]
        second_lock = self.second.forward_lock
        other = second_lock if second_lock is not self.first.forward_lock else contextlib.nullcontext()
        with self.first.forward_lock, other, torch.inference_mode():  # both models' weights, in a fixed order
            hidden = self._first.embeddings(input_ids=ids, token_type_ids=features.get("token_type_ids"))
            extended = self._first.get_extended_attention_mask(mask, ids.shape)
            hidden = self._layers(self._first.encoder.layer[: self.shared], hidden, extended)
            top_first = self._layers(self._first.encoder.layer[self.shared :], hidden, extended)
            top_second = self._layers(self._second.encoder.layer[self.shared :], hidden, extended)
            return self._head(self.first, top_first, features), self._head(self.second, top_second, features)
