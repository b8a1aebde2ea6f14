"""Frozen lower layers, computed once: each training step then runs only the student's top layers.

With the embeddings and the lowest ``frozen`` transformer layers frozen, their output for a text never
changes during training. :class:`LayerCache` computes it once per text (inference mode, autocast) and
keeps it in memory as float16, one ``(tokens, hidden)`` array per text. A training step gathers a batch,
pads it, and runs the remaining layers, mean pooling and the projection. On a CPU this removes the
frozen layers' forward and backward passes from every step, and freezing them also keeps the base
model's lower-level knowledge intact.

Given a ``store`` folder (the trainer uses its run's ``checkpoints/layer_cache``), the outputs are also written
there with a key of everything they depend on (the texts in order, the frozen layers' weights, the truncation
length, the precision), and a later run with the same key, such as ``--resume``, reads them back instead of
recomputing them: on MiniLM-L6 with the default recipe's 178k texts that is 2.5 GB of disk against about
7 minutes of a 2-core CPU. The store lives and goes with the run's checkpoints.

Works with encoders whose Hugging Face model returns ``hidden_states`` and whose layers take
``(hidden_states, additive_attention_mask)``: BERT-style models such as MiniLM, and MPNet (whose layers
also take the encoder's relative-position bias, recomputed per batch from the encoder's own table).
Others raise :class:`~embedkd.errors.InputError` at set-up.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from embedkd.distill.token_targets import tokenizer_fingerprint
from embedkd.errors import InputError
from embedkd.models.student import encoder_layers, layer_list_owner
from embedkd.staging import staging_dir

__all__ = ["STORE_NAME", "LayerCache", "default_frozen_layers", "freeze_lower_layers", "layer_cache_key"]

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


STORE_NAME = "layer_cache"  # the store's folder in a run's checkpoints
_META, _HIDDEN, _OFFSETS = "layer_cache.json", "hidden.f16.npy", "offsets.npy"
_KEY_VERSION = 1  # bump when what a cached output is changes


def layer_cache_key(model: Any, texts: Sequence[str], *, frozen: int, precision: str) -> str:
    """A digest of everything the lowest ``frozen`` layers' outputs depend on: the texts in order, the
    embeddings' and those layers' weights, the tokenizer, the truncation length and the precision."""
    transformer = model[0]
    digest = hashlib.sha256()
    settings = {
        "version": _KEY_VERSION,
        "frozen": frozen,
        "precision": precision,
        "max_seq_length": model.max_seq_length,
        "tokenizer": tokenizer_fingerprint(transformer.tokenizer),
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    auto_model = transformer.auto_model
    modules = [getattr(auto_model, "embeddings", None) or auto_model.get_input_embeddings()]
    modules += list(encoder_layers(transformer))[:frozen]
    for module in modules:
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()


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
        store: Path | None = None,
        precision: str = "",
        save: bool = True,
    ) -> None:
        """``store``: a folder to reuse outputs from when its key matches (``precision`` names what ``autocast``
        computes in, for the key), and to write them to when it does not and ``save`` is set."""
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
        key = layer_cache_key(model, texts, frozen=frozen, precision=precision) if store is not None else ""
        if store is not None and self._load(store, key, len(texts)):
            self._log(texts, f"reused from {store}")
            return
        self._compute(model, texts, batch_size=batch_size, autocast=autocast, progress=progress)
        self._log(texts, "computed")
        if store is not None and save:
            self._save(store, key)

    def _compute(
        self,
        model: Any,
        texts: Sequence[str],
        *,
        batch_size: int,
        autocast: AbstractContextManager[object] | None,
        progress: bool,
    ) -> None:
        frozen, device = self.frozen, self.device
        transformer = model[0]
        auto_model = transformer.auto_model
        was_training = auto_model.training
        auto_model.eval()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # little padding per batch
        owner, attr = layer_list_owner(transformer)
        setattr(owner, attr, nn.ModuleList(list(self.layers)[:frozen]))  # run only the layers being cached
        try:
            with (
                torch.inference_mode(),
                tqdm(
                    total=len(texts), desc=f"caching {frozen} frozen layers", unit="text", disable=not progress
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

    def _log(self, texts: Sequence[str], how: str) -> None:
        self.tokens = sum(len(h) for h in self.hidden)
        logger.info(
            "cached layer-%d outputs of %d texts (%d tokens, %.0f MiB), %s",
            self.frozen,
            len(texts),
            self.tokens,
            self.tokens * self.hidden[0].shape[-1] * 2 / 2**20 if texts else 0,
            how,
        )

    def _load(self, store: Path, key: str, count: int) -> bool:
        """Read the outputs in ``store`` if they were written under ``key``; False (and a log line) if not."""
        try:
            meta = json.loads((store / _META).read_text())
        except (OSError, ValueError):
            return False
        if meta.get("key") != key or meta.get("texts") != count:
            logger.info("layer cache in %s is of other texts or weights: computing it again", store)
            return False
        try:
            offsets = np.load(store / _OFFSETS)
            hidden = np.load(store / _HIDDEN)  # into memory, as computed ones are: no page faults in timed steps
        except (OSError, ValueError) as exc:
            logger.warning("layer cache in %s is unreadable (%s): computing it again", store, exc)
            return False
        if len(offsets) != count + 1 or int(offsets[-1]) != hidden.shape[0]:
            logger.warning("layer cache in %s is incomplete: computing it again", store)
            return False
        self.hidden = [hidden[int(a) : int(b)] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
        return True

    def _save(self, store: Path, key: str) -> None:
        """Write the outputs to ``store`` (a folder of their own, replaced whole); a full disk only costs the
        next run the recomputation, so it is a warning, not an error."""
        if not self.hidden:
            return
        tmp: Path | None = None
        try:
            store.parent.mkdir(parents=True, exist_ok=True)
            tmp = staging_dir(store)
            offsets = np.zeros(len(self.hidden) + 1, dtype=np.int64)
            np.cumsum([len(h) for h in self.hidden], out=offsets[1:])
            header = {"descr": "<f2", "fortran_order": False, "shape": (int(offsets[-1]), self.hidden[0].shape[-1])}
            with (tmp / _HIDDEN).open("wb") as f:  # plain writes: a full disk is an OSError, not a memory-map fault
                np.lib.format.write_array_header_1_0(f, header)
                for rows in self.hidden:
                    f.write(np.ascontiguousarray(rows, dtype="<f2").tobytes())
            np.save(tmp / _OFFSETS, offsets)
            (tmp / _META).write_text(json.dumps({"key": key, "texts": len(self.hidden), "frozen": self.frozen}))
            if store.exists():
                shutil.rmtree(store)
            os.rename(tmp, store)
            tmp = None
        except OSError as exc:
            logger.warning("could not keep the layer cache in %s (%s); a resumed run computes it again", store, exc)
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)

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
