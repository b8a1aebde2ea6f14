"""A static-embedding base distilled from the teacher with model2vec: a token table, no transformer.

``model2vec`` passes every token of the teacher's vocabulary through the teacher once and keeps the
outputs as a table; a sentence is the mean of its tokens' rows. With ``pca_dims=None`` the table keeps
the teacher's width. embedkd then trains it like any student (a Dense head, the LEAF loss on the same
unlabeled text and teacher cache), so it can query the teacher's index in well under a millisecond.
The folder is an ordinary sentence-transformers model (``StaticEmbedding``), cached per teacher weights.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from embedkd.errors import InputError
from embedkd.models.info import fingerprint
from embedkd.models.loading import resolve_model_path
from embedkd.paths import models_dir
from embedkd.staging import staging_dir

__all__ = ["static_base"]

logger = logging.getLogger(__name__)


def static_base(teacher: str, *, device: str | None = None) -> Path:
    """A sentence-transformers folder holding model2vec's static distillation of ``teacher`` (made once)."""
    path = resolve_model_path(teacher)
    target = models_dir() / f"static-{fingerprint(path)[:16]}"
    if (target / "modules.json").is_file():
        return target
    try:
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import StaticEmbedding

        logger.info("distilling a static model from %s with model2vec (once)", teacher)
        module = StaticEmbedding.from_distillation(str(path), pca_dims=None, device=device or "cpu")
    except ImportError as exc:
        raise InputError("a static student needs model2vec: pip install 'embedkd[static]'") from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = staging_dir(target)
    try:
        SentenceTransformer(modules=[module], device="cpu").save(str(staged))
        os.replace(staged, target)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return target
