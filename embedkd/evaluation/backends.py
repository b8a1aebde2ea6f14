"""Measure an inference backend against the model's own torch fp32 output and against its teacher."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from embedkd.errors import EmbedkdError
from embedkd.models.encoder import Encoder

__all__ = ["FIDELITY_FLOOR", "measure_backend", "probe_texts"]

logger = logging.getLogger(__name__)

# Below this mean cosine to the model's own fp32 output an export is treated as broken and refused.
FIDELITY_FLOOR = 0.98


def probe_texts(n: int = 512) -> list[str]:
    """Offline probe texts: the first sentence of standard-library docstrings (deterministic per Python)."""
    from embedkd.data.stdlib import stdlib_corpus

    texts = []
    for doc in stdlib_corpus(n * 2):
        first = doc.text.strip().split("\n\n")[0].split(". ")[0].strip()
        if 3 <= len(first.split()) <= 40:
            texts.append(first)
        if len(texts) == n:
            break
    return texts


def measure_backend(
    folder: Path, backend: str, quantize: str = "none", *, texts: list[str] | None = None, record: bool = True
) -> dict[str, Any]:
    """Cosine of ``backend``'s output to the torch fp32 output on probe texts and, for a student whose
    teacher is available, both outputs' mean cosine to the teacher. Recorded in ``embedkd.json``."""
    texts = texts or probe_texts()
    reference = Encoder.load(folder, device="cpu")
    other = Encoder.load(folder, device="cpu", backend=backend, quantize=quantize)
    ref = reference.encode_query(texts)
    out = other.encode_query(texts)
    fidelity = (ref * out).sum(axis=1)
    result: dict[str, Any] = {
        "texts": len(texts),
        "cosine_to_torch_fp32": float(fidelity.mean()),
        "min_cosine_to_torch_fp32": float(fidelity.min()),
    }
    manifest = reference.manifest
    if manifest is not None:
        try:
            from embedkd.distill.teacher import Teacher

            teacher = Teacher.from_model(manifest.teacher.name)
            if teacher.ref.fingerprint == manifest.teacher.fingerprint:
                target = teacher.embeddings(texts, role="query", progress=False)
                result["mean_cosine"] = float((out * target).sum(axis=1).mean())
                result["torch_mean_cosine"] = float((ref * target).sum(axis=1).mean())
        except EmbedkdError as exc:  # the teacher is not on this machine: fidelity alone is still recorded
            logger.info("teacher %s unavailable (%s): recording fidelity only", manifest.teacher.name, exc)
        if record:
            manifest.backends[other.backend] = result
            manifest.write(Path(folder))
    return result
