"""What the trainer reads besides its texts: the teacher, score pairs, and anchor documents."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from embedkd.data.jsonl import iter_jsonl
from embedkd.distill.config import DistillConfig
from embedkd.distill.data import TextKind, TrainingText, vocabulary_words
from embedkd.distill.teacher import Teacher
from embedkd.errors import InputError, ModelNotFoundError
from embedkd.models.encoder import Encoder
from embedkd.models.loading import resolve_model_path
from embedkd.models.student import TEACHER_BASE, is_static_base

__all__ = [
    "anchor_source",
    "anchor_sources",
    "anchor_texts",
    "base_rank_inputs",
    "check_base_space",
    "centred_anchors",
    "default_base_relation_weight",
    "default_rank_base_mix",
    "load_anchors",
    "load_pairs",
    "load_teacher",
    "source_rows",
    "vocabulary_texts",
]

logger = logging.getLogger(__name__)


def load_teacher(config: DistillConfig) -> Teacher:
    try:
        return Teacher.from_model(config.teacher, device=config.device, precision=config.teacher_precision.value)
    except ModelNotFoundError:
        if not config.teacher_embeddings:
            raise
    first = np.load(config.teacher_embeddings[0], mmap_mode="r")
    if first.ndim != 2:
        raise InputError(f"{config.teacher_embeddings[0]}: expected a 2-d array, got shape {first.shape}")
    logger.info("teacher %s is a black box: using precomputed embeddings only", config.teacher)
    return Teacher.black_box(config.teacher, dimension=int(first.shape[1]))


def vocabulary_texts(config: DistillConfig, teacher: Teacher, exclude: set[str]) -> list[TrainingText]:
    """For --vocabulary: the whole words of the student base's tokenizer (:func:`vocabulary_words`) that are not
    in ``exclude`` (the texts already given), as one-word training texts. The teacher embeds them like any text,
    so a black-box teacher, which embeds nothing new, cannot have them."""
    if teacher.is_black_box:
        raise InputError(
            f"--vocabulary needs a teacher that can embed new texts; {config.teacher} is a black box (precomputed "
            "embeddings only)"
        )
    base = config.student
    if is_static_base(base):  # model2vec keeps the tokenizer of the model it distils
        base = base.partition(":")[2] or config.teacher
    folder = teacher.model_path if base in (TEACHER_BASE, config.teacher) else resolve_model_path(base)
    from transformers import AutoTokenizer

    words = vocabulary_words(AutoTokenizer.from_pretrained(str(folder)).get_vocab())
    source = f"vocabulary:{base}"
    texts = [TrainingText(word, TextKind.WORD, source) for word in words if word not in exclude]
    logger.info("vocabulary: %d whole words of %s's tokenizer", len(texts), base)
    return texts


def load_pairs(path: Path) -> list[tuple[str, str, float]]:
    pairs = []
    for number, record in iter_jsonl(path):
        left = record.get("left", record.get("query"))
        right = record.get("right", record.get("document"))
        score = record.get("score")
        if not isinstance(left, str) or not isinstance(right, str) or not isinstance(score, int | float):
            raise InputError(
                f"{path}:{number}: a pair needs string 'left'/'right' (or 'query'/'document') and a numeric 'score'"
            )
        if not -1.0 <= float(score) <= 1.0:
            raise InputError(
                f"{path}:{number}: score {score} is outside the cosine scale [-1, 1]; "
                "map cross-encoder logits first (for example with a sigmoid)"
            )
        pairs.append((left, right, float(score)))
    if not pairs:
        raise InputError(f"{path}: no pairs")
    return pairs


def anchor_sources(config: DistillConfig) -> list[Path]:
    """The documents to score against: --anchor-data, else every folder (BEIR or index) among --data (a student
    trained on several corpora ranks against all of them: it aligns where its training text reaches,
    benchmarks/results/unseen_docstrings_corpus_text_*.md)."""
    return [config.anchor_data] if config.anchor_data else [p for p in config.data if p.is_dir()]


def anchor_source(config: DistillConfig) -> Path | None:
    """The first of :func:`anchor_sources`, or None when there is none."""
    return next(iter(anchor_sources(config)), None)


def anchor_texts(config: DistillConfig) -> list[str]:
    """The anchor documents' texts: --anchor-data or every BEIR folder, pooled, then sampled to --max-anchors
    (so each corpus contributes in proportion to its size)."""
    sources = anchor_sources(config)
    if not sources:
        raise InputError("--anchor-weight needs --anchor-data (a BEIR folder or document file)")
    from embedkd.data.texts import read_texts

    docs = [text for source in sources for text in read_texts(source)]
    rng = random.Random(config.seed)
    if len(docs) > config.max_anchors:
        docs = rng.sample(docs, config.max_anchors)
    return docs


def load_anchors(config: DistillConfig, teacher: Teacher, device: str, anchors: Sequence[str]) -> torch.Tensor:
    """Teacher document embeddings (normalised) of the :func:`anchor_texts` that the anchor and ranking losses
    score against."""
    emb = teacher.embeddings(list(anchors), role="document", progress=config.progress)
    return torch.from_numpy(emb.astype(np.float32)).to(device)


DEFAULT_RANK_BASE_MIX = 0.7
DEFAULT_BASE_RELATION_WEIGHT = 0.1


def _base_has_own_space(config: DistillConfig) -> bool:
    """Whether the student base is a transformer other than the teacher: a ranking and relations of its own."""
    base = config.student
    return base not in (TEACHER_BASE, config.teacher) and not is_static_base(base)


def default_rank_base_mix(config: DistillConfig) -> float:
    """--rank-base-mix, or its default: 0.7 where the student base has a ranking of its own to add (a
    transformer other than the teacher), else 0 (a static base, or a cut of the teacher's own layers)."""
    if config.rank_base_mix is not None:
        return config.rank_base_mix
    return DEFAULT_RANK_BASE_MIX if _base_has_own_space(config) else 0.0


def default_base_relation_weight(config: DistillConfig) -> float:
    """--base-relation-weight, or its default: 0.1 where the student base has a space of its own (a transformer
    other than the teacher) and a batch holds other texts to compare with, else 0."""
    if config.base_relation_weight is not None:
        return config.base_relation_weight
    return DEFAULT_BASE_RELATION_WEIGHT if _base_has_own_space(config) and config.batch_size >= 2 else 0.0


def check_base_space(config: DistillConfig) -> None:
    """Refuse a student base without a space of its own to compare with (the base's ranking or relations)."""
    if _base_has_own_space(config):
        return
    if is_static_base(config.student):
        raise InputError(
            "--rank-base-mix and --base-relation-weight need a transformer student base; a static base has no "
            "space of its own"
        )
    base = (
        "--student-base teacher"
        if config.student == TEACHER_BASE
        else f"the teacher ({config.teacher}) as the student base"
    )
    raise InputError(f"--rank-base-mix and --base-relation-weight with {base} would compare the teacher with itself")


def base_rank_inputs(
    config: DistillConfig, texts: Sequence[tuple[str, str]], anchors: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """For --rank-base-mix and --base-relation-weight: the student base's own embeddings of the training texts
    and of the anchors.

    ``texts`` are ``(text, role)`` pairs; ``anchors`` are :func:`anchor_texts`, or none (an empty ``(0, dim)``
    array comes back). The base is the student's starting model, undistilled, in its own space. Both arrays
    are normalised float16 rows, in the given orders, computed once and cached on disk like the teacher's.
    """
    check_base_space(config)
    encoder = Encoder.load(config.student, device=None if config.device == "auto" else config.device)

    def embed(items: Sequence[str], role: str) -> np.ndarray:
        return encoder.encode_cached(items, role=role, batch_size=64, progress=config.progress).astype(np.float16)

    out = np.zeros((len(texts), encoder.dimension), dtype=np.float16)
    for role in sorted({role for _, role in texts}):
        rows = [i for i, (_, r) in enumerate(texts) if r == role]
        out[rows] = embed([texts[i][0] for i in rows], role)
    documents = embed(anchors, "document") if anchors else np.zeros((0, encoder.dimension), dtype=np.float16)
    return out, documents


def source_rows(texts: Sequence[TrainingText], anchors: Sequence[str]) -> np.ndarray:
    """For --rank-source-mix: the row in ``anchors`` (:func:`anchor_texts`) of the document each text was cut
    from, or -1 (a text that is no part of a corpus document, or whose document was not sampled as an anchor)."""
    row = {text: i for i, text in enumerate(anchors)}
    return np.array([row.get(t.document, -1) if t.document else -1 for t in texts], dtype=np.int64)


def centred_anchors(documents: torch.Tensor) -> torch.Tensor:
    """Anchors for :func:`~embedkd.distill.losses.anchor_score_loss`: centred, then scaled.

    Centred, because the mean document direction moves every score alike and carries no ranking signal.
    Scaled so the anchors' covariance has trace = dimension: for an isotropic error the anchor loss then
    equals the LEAF loss, and --anchor-weight 1 only redistributes emphasis toward the directions along
    which documents differ.
    """
    emb = documents - documents.mean(0, keepdim=True)
    return emb * (emb.shape[1] * len(emb) / emb.pow(2).sum().clamp(min=1e-12)).sqrt()
