"""The frozen layers' outputs on disk, one entry per text, shared by every run of the same frozen weights.

A run with frozen lower layers computes their output for each training text once (:mod:`layer_cache`), and
the first run of a recipe spends minutes on it (about 7 for the default recipe's 178k texts on a 2-core
CPU). What a text's output is depends only on the text and on the frozen part of the student: the
embeddings' and the frozen layers' weights, the tokenizer, the truncation length and the precision. So the
outputs are kept under ``<EMBEDKD_CACHE_DIR>/layers/<digest of those>/`` (``EMBEDKD_LAYERS_DIR`` moves it)
and looked up per text: a rerun with another seed, a longer ``--resume``, a sweep of settings above the frozen
layers, or ``embedkd adapt`` (whose student keeps its base's frozen layers) reads back whatever texts it
shares with any earlier run and computes only the new ones.

The store only grows: each run that computes new texts adds one *segment* (its texts' digests, their
outputs as float16, and the offsets between them), written beside the store and renamed into place when
complete, so two runs writing at once each add their own and a reader never sees half of one. A text found
in two segments is read from the first. About 14 KiB a text for MiniLM-L6 (2.5 GB for the default recipe's
texts); ``embedkd cache list`` shows each store's size, ``embedkd cache purge-layers`` removes them all, and
deleting a store's folder is always safe (the next run computes again).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embedkd.distill.token_targets import tokenizer_fingerprint
from embedkd.models.student import encoder_layers
from embedkd.paths import layers_dir
from embedkd.staging import staging_dir

__all__ = ["LayerStore", "layer_weights_key", "store_summaries"]

logger = logging.getLogger(__name__)

_KEY_VERSION = 2  # bump when what a stored output is changes (1: one store per run, keyed by its text list)
_STORE_META, _SEGMENT_META = "store.json", "segment.json"
_KEYS, _HIDDEN, _OFFSETS = "keys.npy", "hidden.f16.npy", "offsets.npy"
_DIGEST_BYTES = 16


def layer_weights_key(model: Any, *, frozen: int, precision: str) -> str:
    """A digest of everything the lowest ``frozen`` layers' output for a text depends on, besides the text:
    the embeddings' and those layers' weights, the tokenizer, the truncation length and the precision."""
    return _weights_key(model, _settings(model, frozen=frozen, precision=precision))


def _weights_key(model: Any, settings: dict[str, Any]) -> str:
    transformer = model[0]
    digest = hashlib.sha256()
    digest.update(json.dumps(settings, sort_keys=True).encode())
    frozen = int(settings["frozen"])
    auto_model = transformer.auto_model
    modules = [getattr(auto_model, "embeddings", None) or auto_model.get_input_embeddings()]
    modules += list(encoder_layers(transformer))[:frozen]
    for module in modules:
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def _settings(model: Any, *, frozen: int, precision: str) -> dict[str, Any]:
    return {
        "version": _KEY_VERSION,
        "frozen": frozen,
        "precision": precision,
        "max_seq_length": model.max_seq_length,
        "tokenizer": tokenizer_fingerprint(model[0].tokenizer),
    }


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=_DIGEST_BYTES).digest()


class LayerStore:
    """The stored outputs of one frozen part of a student (one folder), read and extended per text."""

    def __init__(self, folder: Path, *, describe: dict[str, Any] | None = None) -> None:
        """``describe``: what the store holds, written once to its ``store.json`` for ``embedkd cache list``."""
        self.folder = Path(folder)
        self._describe = describe or {}

    @classmethod
    def for_model(
        cls, model: Any, *, frozen: int, precision: str, base: str = "", root: Path | None = None
    ) -> LayerStore:
        """The store of ``model``'s lowest ``frozen`` layers at ``precision``, under ``root`` (default
        ``<EMBEDKD_CACHE_DIR>/layers``, or ``EMBEDKD_LAYERS_DIR``). ``base``: the name of the base model those
        layers come from, for ``embedkd cache list`` (default: where the model was loaded from)."""
        settings = _settings(model, frozen=frozen, precision=precision)  # the tokenizer's fingerprint once
        key = _weights_key(model, settings)
        name = base or getattr(getattr(model[0].auto_model, "config", None), "_name_or_path", "") or ""
        describe = {"model": str(name), **settings}
        return cls((root if root is not None else layers_dir()) / key[:32], describe=describe)

    def segments(self) -> list[Path]:
        """The complete segments, oldest first: renamed into place (not a hidden staging folder, even a
        finished one whose writer was killed before the rename), with their ``segment.json``."""
        if not self.folder.is_dir():
            return []
        return sorted(
            p
            for p in self.folder.iterdir()
            if not p.name.startswith(".") and p.is_dir() and (p / _SEGMENT_META).is_file()
        )

    def read(self, texts: Sequence[str]) -> dict[int, np.ndarray]:
        """The stored output of each of ``texts`` that the store holds, by position in ``texts``; an unreadable
        segment is skipped with a warning (its texts are then computed again)."""
        wanted: dict[bytes, list[int]] = {}
        for i, text in enumerate(texts):
            wanted.setdefault(_digest(text), []).append(i)
        found: dict[int, np.ndarray] = {}
        for segment in self.segments():
            if len(wanted) == 0:
                break
            try:
                keys = np.load(segment / _KEYS)
                offsets = np.load(segment / _OFFSETS)
                hidden = np.load(segment / _HIDDEN, mmap_mode="r")
                if keys.ndim != 2 or keys.shape[1] != _DIGEST_BYTES or len(offsets) != len(keys) + 1:
                    raise ValueError("keys and offsets do not match")
                if int(offsets[-1]) != hidden.shape[0] or np.any(np.diff(offsets) < 1):
                    raise ValueError("offsets do not match the stored outputs")
            except (OSError, ValueError) as exc:
                logger.warning("layer store segment %s is unreadable (%s): its texts are computed again", segment, exc)
                continue
            raw, size = keys.tobytes(), _DIGEST_BYTES
            for row in range(len(keys)):
                positions = wanted.pop(raw[row * size : (row + 1) * size], None)
                if positions is None:
                    continue
                rows = np.array(hidden[int(offsets[row]) : int(offsets[row + 1])])  # into memory: no page faults later
                for i in positions:
                    found[i] = rows
        return found

    def add(self, texts: Sequence[str], hidden: Sequence[np.ndarray]) -> None:
        """Add a segment holding ``hidden[i]`` as the output of ``texts[i]``. A full disk only costs a later
        run the recomputation, so it is a warning, not an error."""
        if not texts:
            return
        tmp: Path | None = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if not (self.folder / _STORE_META).is_file():
                (self.folder / _STORE_META).write_text(json.dumps(self._describe, sort_keys=True))
            tmp = staging_dir(self.folder / "segment")  # also removes the ones killed writers left
            keys = np.frombuffer(b"".join(_digest(t) for t in texts), dtype=np.uint8).reshape(len(texts), -1)
            offsets = np.zeros(len(hidden) + 1, dtype=np.int64)
            np.cumsum([len(h) for h in hidden], out=offsets[1:])
            header = {"descr": "<f2", "fortran_order": False, "shape": (int(offsets[-1]), hidden[0].shape[-1])}
            with (tmp / _HIDDEN).open("wb") as f:  # plain writes: a full disk is an OSError, not a memory-map fault
                np.lib.format.write_array_header_1_0(f, header)
                for rows in hidden:
                    f.write(np.ascontiguousarray(rows, dtype="<f2").tobytes())
            np.save(tmp / _KEYS, keys)
            np.save(tmp / _OFFSETS, offsets)
            (tmp / _SEGMENT_META).write_text(json.dumps({"texts": len(texts), "tokens": int(offsets[-1])}))
            os.rename(tmp, self.folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:12]}")
            tmp = None
        except OSError as exc:
            logger.warning("could not add to the layer store %s (%s); later runs compute these texts again", self, exc)
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)

    def __str__(self) -> str:
        return str(self.folder)


def store_summaries(root: Path | None = None) -> list[dict[str, Any]]:
    """One line's worth per store under ``root`` (default ``<EMBEDKD_CACHE_DIR>/layers``), for ``cache list``."""
    root = root if root is not None else layers_dir()
    summaries = []
    for folder in sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []:
        store = LayerStore(folder)
        if not (folder / _STORE_META).is_file() and not store.segments():
            continue  # not a store: nothing embedkd wrote
        texts = 0
        for segment in store.segments():
            try:
                texts += int(json.loads((segment / _SEGMENT_META).read_text()).get("texts", 0))
            except (OSError, ValueError):
                continue
        try:
            describe = json.loads((folder / _STORE_META).read_text())
        except (OSError, ValueError):
            describe = {}
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        summaries.append({"folder": str(folder), "texts": texts, "bytes": size, **describe})
    return summaries
