"""Distillation losses: pure functions of embeddings and scores, no model and no state.

All embeddings are ``(batch, dim)`` tensors; student and teacher rows correspond one to one. Every
function returns a scalar tensor that is differentiable with respect to the student's inputs only: the
teacher side (targets, scores, anchors) is detached, so no gradient ever reaches it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import Enum

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "LossName",
    "anchor_score_loss",
    "cosine_loss",
    "dse_loss",
    "l2_sp_penalty",
    "leaf_loss",
    "listwise_kl_loss",
    "pair_score_loss",
    "relation_kl_loss",
    "token_state_loss",
]


class LossName(str, Enum):
    """The main distillation objective."""

    LEAF = "leaf"  # squared L2 distance between normalised embeddings
    COSINE = "cosine"  # 1 - cosine similarity
    DSE = "dse"  # in-batch pair-score matrix regressed onto the teacher's


def leaf_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """LEAF: mean squared L2 distance between the L2-normalised embeddings (equals 2 - 2 cos)."""
    s = F.normalize(student, dim=-1)
    t = F.normalize(teacher.detach(), dim=-1)
    return (s - t).pow(2).sum(-1).mean()


def cosine_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """Mean of ``1 - cos(student, teacher)``."""
    return (1 - F.cosine_similarity(student, teacher.detach(), dim=-1)).mean()


def dse_loss(student: Tensor, teacher_scores: Tensor) -> Tensor:
    """DSE: mean squared error between the student's in-batch cosine matrix and the teacher's scores.

    ``teacher_scores`` is ``(batch, batch)``: the teacher's cosine matrix of the same texts (``t @ t.T``
    of normalised teacher embeddings) or any other pair scores on the same scale.
    """
    s = F.normalize(student, dim=-1)
    if teacher_scores.shape != (s.shape[0], s.shape[0]):
        raise ValueError(f"teacher_scores must be {(s.shape[0], s.shape[0])}, got {tuple(teacher_scores.shape)}")
    return (s @ s.T - teacher_scores.detach()).pow(2).mean()


def pair_score_loss(left: Tensor, right: Tensor, scores: Tensor) -> Tensor:
    """Regress the student's cosine of each (left, right) pair onto a target score (e.g. a cross-encoder's)."""
    return (F.cosine_similarity(left, right, dim=-1) - scores.detach()).pow(2).mean()


def anchor_score_loss(student: Tensor, teacher: Tensor, anchors: Tensor) -> Tensor:
    """Match the scores the student and teacher give to fixed teacher-space anchors (e.g. documents).

    With ``anchors`` the teacher's document embeddings, this is the quantity asymmetric retrieval ranks
    by: ``cos(student_query, doc)`` against ``cos(teacher_query, doc)``. It weights the embedding error by
    the directions the documents actually span. Centre the anchors to ignore the common direction, which
    shifts every document's score alike.
    """
    s = F.normalize(student, dim=-1)
    t = F.normalize(teacher.detach(), dim=-1)
    return ((s - t) @ anchors.detach().T).pow(2).mean()


def listwise_kl_loss(
    student: Tensor,
    teacher: Tensor,
    documents: Tensor,
    *,
    temperature: float = 0.05,
    base: Tensor | None = None,
    base_documents: Tensor | None = None,
    base_mix: float = 0.0,
    source: Tensor | None = None,
    source_mix: float = 0.0,
) -> Tensor:
    """KL(target || student) between softmax distributions over the scores of fixed documents.

    EmbedDistill-style ranking term: ``documents`` are the teacher's document embeddings, so each query's
    teacher distribution puts its mass on the teacher's top documents, and the student is pushed to rank
    them the same way. A low ``temperature`` focuses on the top of the list.

    With ``base_mix`` > 0 the target is a mixture: ``(1 - base_mix)`` of the teacher's distribution plus
    ``base_mix`` of the distribution that a second model (``base``, the student's own starting model, with
    ``base_documents``, its embeddings of the same documents in its own space) gives the same documents.
    The student still scores the teacher's ``documents``; it learns to rank them as the two models agree.

    With ``source_mix`` > 0, each row whose ``source`` (a ``documents`` row index, or -1 for none) names the
    document the text was cut from moves that share of its target's mass onto that document (inverse-cloze
    self-supervision: a sentence should find its own abstract). Rows with -1 keep their target.
    """
    documents = documents.detach()
    s = F.normalize(student, dim=-1) @ documents.T / temperature
    target = F.log_softmax(F.normalize(teacher.detach(), dim=-1) @ documents.T / temperature, dim=-1)
    if base_mix > 0:
        if base is None or base_documents is None:
            raise ValueError("base_mix needs base and base_documents")
        if not base_mix < 1:
            raise ValueError("base_mix must be below 1")
        own = F.log_softmax(F.normalize(base.detach(), dim=-1) @ base_documents.detach().T / temperature, dim=-1)
        target = torch.logaddexp(target + math.log(1 - base_mix), own + math.log(base_mix))
    if source_mix > 0:
        if source is None:
            raise ValueError("source_mix needs source")
        if not source_mix < 1:
            raise ValueError("source_mix must be below 1")
        known = source >= 0
        onehot = torch.full_like(target, -math.inf)
        onehot[known, source[known]] = 0.0
        mixed = torch.logaddexp(target + math.log(1 - source_mix), onehot + math.log(source_mix))
        target = torch.where(known[:, None], mixed, target)
    return F.kl_div(F.log_softmax(s, dim=-1), target, log_target=True, reduction="batchmean")


def relation_kl_loss(student: Tensor, reference: Tensor, *, temperature: float = 0.05) -> Tensor:
    """KL(reference || student) between each text's softmax over its cosines to the rest of the batch.

    Similarity-preserving distillation within a batch: ``reference`` is another model's embedding of the same
    texts (e.g. the student's own undistilled base, in its own space, of any width), and the student learns to
    rank every other text of the batch the way that model does. Only relations are compared, so the two spaces
    need not share a dimension or a scale. A text's cosine to itself is left out. Needs a batch of 2 or more.
    """
    if student.shape[0] != reference.shape[0]:
        raise ValueError(f"{student.shape[0]} student rows but {reference.shape[0]} reference rows")
    if student.shape[0] < 2:
        raise ValueError("relation_kl_loss needs at least two texts in the batch")
    if temperature <= 0:
        raise ValueError("temperature must be positive")
    s = F.normalize(student, dim=-1)
    r = F.normalize(reference.detach(), dim=-1)
    self_mask = torch.eye(s.shape[0], dtype=torch.bool, device=s.device)
    logits = (s @ s.T / temperature).masked_fill(self_mask, -math.inf)
    target = (r @ r.T / temperature).masked_fill(self_mask, -math.inf)
    log_p = F.log_softmax(logits, dim=-1)
    log_q = F.log_softmax(target, dim=-1)
    terms = (log_q.exp() * (log_q - log_p)).masked_fill(self_mask, 0.0)  # the diagonal is 0 * (-inf - -inf)
    return terms.sum(-1).mean()


def token_state_loss(student: Tensor, teacher: Tensor, mask: Tensor | None = None, *, scale: float = 1.0) -> Tensor:
    """Squared distance between the student's and the teacher's state of each token, over real tokens.

    ``student`` and ``teacher`` are last-layer token states of the same tokens: ``(tokens, dim)`` rows, or
    ``(batch, tokens, dim)`` with ``mask`` the ``(batch, tokens)`` attention mask (padding is ignored). The
    mean squared distance per token is divided by ``scale``, the teacher's mean squared token norm, so 1.0
    means "as far as zero". Mean pooling turns the mean of these states into the embedding, so this loss
    bounds the pooled error from above.
    """
    if student.shape != teacher.shape or (mask is not None and student.shape[:-1] != mask.shape):
        shapes = f"student {tuple(student.shape)}, teacher {tuple(teacher.shape)}"
        raise ValueError(f"shapes differ: {shapes}" + (f", mask {tuple(mask.shape)}" if mask is not None else ""))
    if scale <= 0:
        raise ValueError("scale must be positive")
    squared = (student - teacher.detach()).pow(2).sum(-1)
    if mask is None:
        return squared.mean() / scale
    weights = mask.to(student.dtype)
    return (squared * weights).sum() / (weights.sum().clamp_min(1.0) * scale)


def l2_sp_penalty(params: Sequence[Tensor], reference: Sequence[Tensor]) -> Tensor:
    """L2-SP (Li et al., 2018): the squared distance of the trained weights from their starting point.

    A pull towards the base's weights rather than towards zero, so fine-tuning keeps more of what the base
    knew where the training text does not reach. ``reference`` holds the starting values, one tensor per
    parameter in the same order; it is detached.
    """
    if len(params) != len(reference):
        raise ValueError(f"{len(params)} parameters but {len(reference)} reference tensors")
    if not params:
        raise ValueError("l2_sp_penalty needs at least one parameter")
    return sum(((p - r.detach()).pow(2).sum() for p, r in zip(params, reference, strict=True)), params[0].new_zeros(()))
