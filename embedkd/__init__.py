"""embedkd: distil a big embedding model into a small query encoder, search the big model's index.

What a notebook needs, in one import::

    from pathlib import Path
    from embedkd import AsymmetricRetriever, DistillConfig, Encoder, Index, distill

    distill(DistillConfig(out=Path("runs/student"), data=[Path("texts.jsonl")]))  # align a student
    student = Encoder.load("runs/student")                  # an ordinary sentence-transformers folder
    with Index.open(Path("runs/index")) as index:           # the teacher's document index
        hits = AsymmetricRetriever(index, student=student).search(["what causes tides?"], k=5)

Names are imported on first use, so ``import embedkd`` stays cheap (torch loads only when a model does).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from embedkd._version import __version__

if TYPE_CHECKING:
    from embedkd.data import load_beir
    from embedkd.distill import DataOptions, DistillConfig, DistillResult, Teacher, distill
    from embedkd.evaluation import evaluate_run, score_retrieval
    from embedkd.index import Index, IndexKind, IndexParams, build_index
    from embedkd.models import Embedder, Encoder, load_model, resolve_model_path
    from embedkd.retrieval import AsymmetricRetriever, RetrievalMode

_EXPORTS = {
    "Embedder": "embedkd.models",
    "Encoder": "embedkd.models",
    "load_model": "embedkd.models",
    "resolve_model_path": "embedkd.models",
    "Index": "embedkd.index",
    "IndexKind": "embedkd.index",
    "IndexParams": "embedkd.index",
    "build_index": "embedkd.index",
    "AsymmetricRetriever": "embedkd.retrieval",
    "RetrievalMode": "embedkd.retrieval",
    "DataOptions": "embedkd.distill",
    "DistillConfig": "embedkd.distill",
    "DistillResult": "embedkd.distill",
    "Teacher": "embedkd.distill",
    "distill": "embedkd.distill",
    "load_beir": "embedkd.data",
    "evaluate_run": "embedkd.evaluation",
    "score_retrieval": "embedkd.evaluation",
}

__all__ = [
    "AsymmetricRetriever",
    "DataOptions",
    "DistillConfig",
    "DistillResult",
    "Embedder",
    "Encoder",
    "Index",
    "IndexKind",
    "IndexParams",
    "RetrievalMode",
    "Teacher",
    "__version__",
    "build_index",
    "distill",
    "evaluate_run",
    "load_beir",
    "load_model",
    "resolve_model_path",
    "score_retrieval",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'embedkd' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
