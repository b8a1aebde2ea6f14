"""Frozen lower layers, computed once: each training step then runs only the student's top layers.

With the embeddings and the lowest ``frozen`` transformer layers frozen, their output for a text never
changes during training. :class:`LayerCache` computes it once per text (inference mode, autocast) and
keeps it in memory as float16, one ``(tokens, hidden)`` array per text. A training step gathers a batch,
pads it, and runs the remaining layers, mean pooling and the projection. On a CPU this removes the
frozen layers' forward and backward passes from every step, and freezing them also keeps the base
model's lower-level knowledge intact.

Given a :class:`~embedkd.distill.layer_store.LayerStore` (the trainer uses the shared one in
``<EMBEDKD_CACHE_DIR>/layers``), each text's output is read from it when an earlier run computed it, and the
texts computed here are added to it: a rerun, a ``--resume``, another seed or ``embedkd adapt`` computes only
the texts no earlier run of the same frozen layers had (MiniLM-L6, the default recipe's 178k texts: about
7 minutes of a 2-core CPU against seconds to read 2.5 GB back).

Works with encoders whose Hugging Face model returns ``hidden_states`` and whose layers take
``(hidden_states, additive_attention_mask)``: BERT-style models such as MiniLM, and MPNet (whose layers
also take the encoder's relative-position bias, recomputed per batch from the encoder's own table).
Others raise :class:`~embedkd.errors.InputError` at set-up.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from embedkd.distill.layer_store import LayerStore
from embedkd.errors import InputError
from embedkd.models.student import encoder_layers, layer_list_owner

__all__ = ["LayerCache", "default_frozen_layers", "freeze_lower_layers"]

logger = logging.getLogger(__name__)

# Encoders whose layers the layer cache drives directly (hidden states per layer, additive attention mask).
_LAYER_CACHE_MODELS = frozenset({"bert"})  # tested; others train every layer unless told otherwise


def default_frozen_layers(model: Any, frozen_layers: int | None) -> int:
    """--frozen-layers, or all but the student's top layer by default (0 where the layer cache cannot work).

    On MiniLM-L6 with every training text, 3, 4 and 5 frozen layers gave the same dev nDCG@10 at 30 minutes
    (0.6311-0.6323) and 0.926x, 0.934x and 0.954x of the teacher on a domain never trained on
    (benchmarks/results/unseen_alignment_minilm_alltexts*_amd.md); 5 frozen also runs 2.2x the steps.
    """
    if frozen_layers is not None:
        return frozen_layers
    if not hasattr(model[0], "auto_model"):  # a static student: no layers
        return 0
    try:
        total = len(encoder_layers(model[0]))
    except InputError:
        return 0
    auto_model = getattr(model[0], "auto_model", None)
    if getattr(getattr(auto_model, "config", None), "model_type", "") not in _LAYER_CACHE_MODELS:
        return 0
    return max(0, total - 1)


def freeze_lower_layers(model: Any, frozen: int) -> nn.ModuleList:
    """Freeze the embeddings and the lowest ``frozen`` layers of a student; returns its layer list."""
    transformer = model[0]
    layers = encoder_layers(transformer)
    if not 0 <= frozen < len(layers):
        raise InputError(f"--frozen-layers must be between 0 and {len(layers) - 1} for a {len(layers)}-layer student")
    for param in transformer.auto_model.get_input_embeddings().parameters():
        param.requires_grad_(False)
    embeddings = getattr(transformer.auto_model, "embeddings", None)
    if frozen and embeddings is not None:  # position/type embeddings and their LayerNorm too
        for param in embeddings.parameters():
            param.requires_grad_(False)
    for layer in list(layers)[:frozen]:
        for param in layer.parameters():
            param.requires_grad_(False)
    return layers


class LayerCache:
    """The output of a student's lowest ``frozen`` layers for every training text, computed once."""

    def __init__(
        self,
        model: Any,
        texts: Sequence[str],
        *,
        frozen: int,
        device: str,
        batch_size: int = 128,
        autocast: AbstractContextManager[object] | None = None,
        progress: bool = True,
        store: LayerStore | None = None,
        save: bool = True,
    ) -> None:
        """``store``: where to read the outputs of texts an earlier run computed, and (with ``save``) to add the
        ones computed here."""
        if frozen < 1:
            raise InputError("a layer cache needs at least one frozen layer")
        self.frozen = frozen
        self.device = device
        self.layers = freeze_lower_layers(model, frozen)
        self.hidden: list[np.ndarray] = [np.zeros(0)] * len(texts)
        transformer = model[0]
        owner, _ = layer_list_owner(transformer)
        # MPNet: the relative-position bias every layer adds, recomputed per batch from the encoder's table
        self._position_bias = getattr(owner, "compute_position_bias", None)
        found = store.read(texts) if store is not None else {}
        for i, rows in found.items():
            self.hidden[i] = rows
        first: dict[str, int] = {}  # a text given twice is computed (and stored) once
        for i in range(len(texts)):
            if i not in found:
                first.setdefault(texts[i], i)
        missing = list(first.values())
        self._compute(model, texts, missing, batch_size=batch_size, autocast=autocast, progress=progress)
        for i in range(len(texts)):
            if i not in found:
                self.hidden[i] = self.hidden[first[texts[i]]]
        self.tokens = sum(len(h) for h in self.hidden)
        logger.info(
            "cached layer-%d outputs of %d texts (%d tokens, %.0f MiB): %d read from %s, %d computed",
            self.frozen,
            len(texts),
            self.tokens,
            self.tokens * self.hidden[0].shape[-1] * 2 / 2**20 if texts else 0,
            len(found),
            store if store is not None else "no store",
            len(missing),
        )
        if store is not None and save and missing:
            store.add(list(first), [self.hidden[i] for i in missing])

    def _compute(
        self,
        model: Any,
        texts: Sequence[str],
        indices: Sequence[int],
        *,
        batch_size: int,
        autocast: AbstractContextManager[object] | None,
        progress: bool,
    ) -> None:
        """Compute the outputs of ``texts[i]`` for each of ``indices``."""
        if not indices:
            return
        frozen, device = self.frozen, self.device
        transformer = model[0]
        auto_model = transformer.auto_model
        was_training = auto_model.training
        auto_model.eval()
        order = sorted(indices, key=lambda i: len(texts[i]))  # little padding per batch
        owner, attr = layer_list_owner(transformer)
        setattr(owner, attr, nn.ModuleList(list(self.layers)[:frozen]))  # run only the layers being cached
        try:
            with (
                torch.inference_mode(),
                tqdm(
                    total=len(order), desc=f"caching {frozen} frozen layers", unit="text", disable=not progress
                ) as bar,
            ):
                for start in range(0, len(order), batch_size):
                    idx = order[start : start + batch_size]
                    features = model.preprocess([texts[i] for i in idx])
                    inputs = {
                        k: v.to(device)
                        for k, v in features.items()
                        if isinstance(v, torch.Tensor) and k in ("input_ids", "attention_mask", "token_type_ids")
                    }
                    with autocast if autocast is not None else torch.autocast("cpu", enabled=False):
                        out = auto_model(**inputs, output_hidden_states=True)
                    states = getattr(out, "hidden_states", None)
                    if states is None or len(states) <= frozen:
                        raise InputError(f"{type(auto_model).__name__} does not return hidden states per layer")
                    hidden = states[frozen].float().cpu().numpy().astype(np.float16)
                    lengths = inputs["attention_mask"].sum(1).tolist()
                    for row, i in enumerate(idx):
                        self.hidden[i] = hidden[row, : int(lengths[row])]
                    bar.update(len(idx))
        finally:
            setattr(owner, attr, self.layers)
            auto_model.train(was_training)

    def lengths(self) -> list[int]:
        return [len(h) for h in self.hidden]

    def forward(self, model: Any, indices: Sequence[int]) -> torch.Tensor:
        """The student's sentence embedding (before normalisation) of cached texts ``indices``."""
        rows = [self.hidden[i] for i in indices]
        width = max(len(r) for r in rows)
        dim = rows[0].shape[-1]
        batch = np.zeros((len(rows), width, dim), dtype=np.float16)
        mask = torch.zeros((len(rows), width), dtype=torch.bool)
        for j, r in enumerate(rows):
            batch[j, : len(r)] = r
            mask[j, : len(r)] = True
        hidden = torch.from_numpy(batch).to(self.device).float()
        mask = mask.to(self.device)
        additive = torch.zeros(mask.shape, dtype=hidden.dtype, device=self.device)
        additive = additive.masked_fill(~mask, torch.finfo(hidden.dtype).min)[:, None, None, :]
        extra = {} if self._position_bias is None else {"position_bias": self._position_bias(hidden)}
        for layer in list(self.layers)[self.frozen :]:
            out = layer(hidden, additive, **extra)
            hidden = out[0] if isinstance(out, tuple) else out
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        features = {"sentence_embedding": pooled}
        for module in list(model)[2:]:
            if type(module).__name__ == "Normalize":
                break
            features = module(features)
        return features["sentence_embedding"].float()
