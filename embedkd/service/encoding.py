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

from embedkd.device import autocast
from embedkd.models.encoder import Encoder

__all__ = ["EncoderStages", "Tokens", "postprocess", "to_base64"]


@dataclass
class Tokens:
    features: dict[str, Any]
    counts: list[int]


class EncoderStages:
    def __init__(self, encoder: Encoder, *, role: str) -> None:
        from sentence_transformers.sentence_transformer.modules import Normalize

        self.encoder = encoder
        self.role = role
        self.prompt = encoder.prompts.get(role, "") or None
        modules = list(encoder.model)
        if modules and isinstance(modules[-1], Normalize):
            modules = modules[:-1]  # normalisation is a post-processing choice of each request
        self._modules = modules

    @property
    def dimension(self) -> int:
        return self.encoder.dimension

    def pre(self, texts: list[str]) -> Tokens:
        features = self.encoder.model.preprocess(texts, prompt=self.prompt)
        mask = features.get("attention_mask")
        counts = mask.sum(dim=1).tolist() if isinstance(mask, torch.Tensor) else [len(t.split()) for t in texts]
        return Tokens(features=features, counts=[int(c) for c in counts])

    @property
    def max_tokens(self) -> int:
        """Longest input the model reads, in tokens (special tokens and the role's prompt included)."""
        return int(self.encoder.max_seq_length or 512)

    def token_lengths(self, texts: list[str]) -> list[int]:
        """Untruncated token count of each text as the model would see it (prompt and special tokens in)."""
        tokenizer = self.encoder.model.tokenizer
        prefix = self.prompt or ""
        ids = tokenizer([prefix + t for t in texts], add_special_tokens=True, truncation=False)["input_ids"]
        return [len(row) for row in ids]

    def keep_end(self, texts: list[str]) -> list[str]:
        """Left truncation: cut each text at the character where its last ``max_tokens`` tokens begin."""
        tokenizer = self.encoder.model.tokenizer
        budget = self.max_tokens - (self.token_lengths([""])[0])  # room left after the prompt and specials
        out = []
        for text in texts:
            enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, truncation=False)
            offsets = enc["offset_mapping"]
            out.append(text if len(offsets) <= budget else text[offsets[len(offsets) - max(budget, 1)][0] :])
        return out

    def core(self, tokens: Tokens) -> np.ndarray:
        device = self.encoder.model.device
        features = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in tokens.features.items()}
        with self.encoder.forward_lock, torch.inference_mode(), autocast(self.encoder.precision, self.encoder.device):
            for module in self._modules:
                features = module(features)
        return features["sentence_embedding"].float().cpu().numpy()


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
