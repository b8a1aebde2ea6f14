"""Token-level teacher targets: the teacher's last-layer state of every token, for students that read its tokens.

A student cut from the teacher's own layers (`--student-base teacher`) shares the teacher's tokenizer and hidden width,
so it can be taught the teacher's contextual vector of each token, not only their mean: a 20-token text
then gives 20 targets of 768 numbers instead of one. The pooled embedding is the mean of those states, so
matching them is consistent with the embedding loss, and it tells every step much more about the teacher.

The states are computed once per (teacher weights, precision, training length, set of texts), at the
training length (the student never sees more), and kept on disk as float16 rows, one per token, with an
offsets table. Like the embedding cache they are the teacher's cost, paid once and reused by every run on
the same texts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from embedkd.device import autocast, resolve_device, to_device
from embedkd.distill import losses
from embedkd.embedding_cache import EmbeddingCache, text_key
from embedkd.errors import InputError
from embedkd.paths import cache_dir
from embedkd.staging import staging_dir

if TYPE_CHECKING:
    from embedkd.distill.teacher import Teacher

__all__ = ["TokenTargets", "check_student", "teacher_token_targets", "tokenizer_fingerprint"]

logger = logging.getLogger(__name__)

_FORMAT = 1


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of a tokenizer's vocabulary and special tokens: equal for tokenizers that give the same ids."""
    vocab = sorted(tokenizer.get_vocab().items())
    special = sorted(str(t) for t in getattr(tokenizer, "all_special_tokens", []))
    payload = json.dumps([vocab, special, type(tokenizer).__name__.removesuffix("Fast")]).encode("utf-8")
    return hashlib.blake2b(payload, digest_size=16).hexdigest()


class TokenTargets:
    """The teacher's token states for a fixed set of texts: ``states[offsets[i]:offsets[i + 1]]`` is text i's."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.manifest: dict[str, Any] = json.loads((self.folder / "manifest.json").read_text())
        self.offsets = np.load(self.folder / "offsets.npy")
        total, dim = int(self.offsets[-1]), int(self.manifest["dimension"])
        self.states = np.memmap(self.folder / "states.f16", dtype=np.float16, mode="r", shape=(total, dim))
        keys = (self.folder / "keys.txt").read_text().split()
        self._rows = {k: i for i, k in enumerate(keys)}
        self.scale = float(self.manifest["mean_squared_norm"])

    @property
    def dimension(self) -> int:
        return int(self.manifest["dimension"])

    @property
    def tokenizer(self) -> str:
        return str(self.manifest["tokenizer"])

    def rows(self, texts: Sequence[str]) -> list[int]:
        """The row of each text (every text must be one the targets were computed for)."""
        try:
            return [self._rows[text_key(t)] for t in texts]
        except KeyError as exc:
            raise InputError("a training text has no teacher token states; recompute them") from exc

    def gather(self, rows: Sequence[int], lengths: Sequence[int] | None = None) -> torch.Tensor:
        """The teacher's states of ``rows``, one after the other: ``(their tokens, dim)``, float16.

        ``lengths``: how many tokens the student read of each text; they must be the teacher's counts.
        """
        starts = [int(self.offsets[r]) for r in rows]
        ends = [int(self.offsets[r + 1]) for r in rows]
        if lengths is not None and [e - s for s, e in zip(starts, ends, strict=True)] != list(lengths):
            raise InputError(
                "the student reads other tokens than the teacher did: token targets need a student with the "
                "teacher's tokenizer and the same training length"
            )
        return torch.from_numpy(np.concatenate([self.states[s:e] for s, e in zip(starts, ends, strict=True)]))

    def loss(self, features: dict[str, torch.Tensor], rows: Sequence[int]) -> torch.Tensor:
        """The token-state loss of a student forward pass (its ``token_embeddings`` and ``attention_mask``).

        Only real tokens are compared, flattened in order (no padded copy of the targets is built).
        """
        mask = features["attention_mask"].bool()
        teacher = self.gather(rows, mask.sum(dim=1).tolist()).to(mask.device)
        student = features["token_embeddings"][mask].float()
        return losses.token_state_loss(student, teacher.float(), scale=self.scale)

    # ------------------------------------------------------------------ building
    @classmethod
    def for_texts(
        cls,
        model_path: Path,
        texts: Sequence[str],
        *,
        identity: dict[str, Any],
        max_length: int,
        precision: str,
        device: str | None = None,
        batch_size: int = 64,
        progress: bool = True,
        root: Path | None = None,
        pooled: EmbeddingCache | None = None,
    ) -> TokenTargets:
        """The token states of ``texts`` by the teacher in ``model_path``: from disk, else computed and saved.

        ``identity`` names the teacher (``name``, ``fingerprint``); the folder is keyed by it, the precision,
        ``max_length`` and the set of texts, so a change of any of them computes new targets. ``pooled``: the
        teacher's embedding cache, which the same forward pass fills for every text it read whole (shorter
        than ``max_length``), so those texts are not encoded a second time for their embedding.
        """
        keys = [text_key(t) for t in texts]
        if len(set(keys)) != len(keys):
            raise InputError("token targets need distinct texts")
        digest = hashlib.blake2b("\n".join(sorted(keys)).encode(), digest_size=8).hexdigest()
        label = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(str(identity["name"])).name).strip(".-") or "teacher"
        name = f"{label}-{str(identity['fingerprint'])[:12]}-{precision}-len{max_length}-{digest}"
        folder = (root or cache_dir()) / "token_targets" / name
        if (folder / "manifest.json").is_file():
            return cls(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = staging_dir(folder)
        try:
            _compute(
                tmp, model_path, texts, keys, identity=identity, max_length=max_length, precision=precision,
                device=device, batch_size=batch_size, progress=progress, pooled=pooled,
            )  # fmt: skip
            try:
                os.rename(tmp, folder)
            except OSError:  # another run finished the same targets first: theirs are as good
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return cls(folder)


@torch.inference_mode()
def _compute(
    folder: Path,
    model_path: Path,
    texts: Sequence[str],
    keys: Sequence[str],
    *,
    identity: dict[str, Any],
    max_length: int,
    precision: str,
    device: str | None,
    batch_size: int,
    progress: bool,
    pooled: EmbeddingCache | None = None,
) -> None:
    from embedkd.models.loading import load_model

    device = resolve_device(device)
    model = load_model(model_path, device=device)
    model.max_seq_length = max_length
    model.eval()
    transformer: Any = model[0]
    if not hasattr(transformer, "auto_model"):
        raise InputError(f"teacher {identity['name']} has no transformer: it has no token states to learn from")
    lengths = np.zeros(len(texts), dtype=np.int64)
    for start in range(0, len(texts), 1024):  # tokenising only: the exact lengths the forward pass will see
        mask = model.preprocess(list(texts[start : start + 1024]))["attention_mask"]
        lengths[start : start + len(mask)] = mask.sum(dim=1).numpy()
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    dim = int(transformer.get_embedding_dimension())
    states = np.memmap(folder / "states.f16", dtype=np.float16, mode="w+", shape=(int(offsets[-1]), dim))
    order = np.argsort(-lengths, kind="stable")  # long texts first: batches of equal length, no padding
    squared, count = 0.0, 0
    waiting: list[str] = []  # texts read whole, and their embeddings, not yet in the pooled cache
    vectors: list[np.ndarray] = []
    bar = tqdm(
        total=len(texts), desc=f"{identity['name']} token states ({precision})", unit="text", disable=not progress
    )
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        features = model.preprocess([texts[i] for i in batch])
        features = to_device(features, device)
        with autocast(precision, device):
            forward = model(features)  # token states, and the embedding they pool to
        out = forward["token_embeddings"].float().cpu()
        real = features["attention_mask"].bool().cpu()
        whole = [j for j, i in enumerate(batch) if lengths[i] < max_length]  # read to the end: not truncated
        if pooled is not None and whole:
            waiting.extend(texts[batch[j]] for j in whole)
            vectors.append(F.normalize(forward["sentence_embedding"][whole].float(), dim=-1).cpu().numpy())
            if len(waiting) >= 2048:  # each cache append is fsynced: not one per batch
                pooled.add(waiting, np.concatenate(vectors))
                waiting, vectors = [], []
        for j, i in enumerate(batch):
            n = int(lengths[i])
            row = out[j][real[j]]  # the real tokens, wherever the tokenizer pads
            states[offsets[i] : offsets[i] + n] = row.numpy().astype(np.float16)
            squared += float(row.pow(2).sum())
            count += n
        bar.update(len(batch))
    bar.close()
    if pooled is not None and waiting:
        pooled.add(waiting, np.concatenate(vectors))
    states.flush()
    del states
    np.save(folder / "offsets.npy", offsets)
    (folder / "keys.txt").write_text("".join(k + "\n" for k in keys))
    manifest = {
        "format": _FORMAT,
        "teacher": identity,
        "precision": precision,
        "max_length": max_length,
        "dimension": dim,
        "texts": len(texts),
        "tokens": int(offsets[-1]),
        "mean_squared_norm": squared / max(count, 1),
        "tokenizer": tokenizer_fingerprint(model.tokenizer),
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    logger.info("teacher token states: %d texts, %d tokens in %s", len(texts), int(offsets[-1]), folder)


def teacher_token_targets(
    teacher: Teacher, texts: Sequence[str], *, max_length: int, batch_size: int = 64, progress: bool = True
) -> TokenTargets:
    """A teacher model's token states for ``texts`` at the training length (a black box has none)."""
    if teacher.model_path is None:
        raise InputError(f"teacher {teacher.name} is a black box: it has no token states; set --token-weight 0")
    return TokenTargets.for_texts(
        teacher.model_path,
        texts,
        identity={"name": teacher.name, "fingerprint": teacher.fingerprint},
        max_length=max_length,
        precision=teacher.precision,
        device=teacher.device,
        batch_size=batch_size,
        progress=progress,
        root=teacher.cache_root,
        # the pass also yields the embedding of every text it reads whole; with role prompts it would not be
        # the text's embedding in either role, so such teachers encode their embeddings on their own
        pooled=None if teacher.ref.prompts else teacher.cache_for("query"),
    )


def check_student(model: Any, targets: TokenTargets) -> None:
    """A student can learn token targets only if it reads the teacher's tokens at the teacher's width."""
    transformer: Any = model[0]
    if not hasattr(transformer, "auto_model"):
        raise InputError("token targets need a transformer student (a static student has no token states)")
    width = int(transformer.get_embedding_dimension())
    if width != targets.dimension:
        raise InputError(
            f"token targets need a student as wide as the teacher ({targets.dimension}); this one is {width} "
            "wide: use a student cut from the teacher (--student-base teacher) or --token-weight 0"
        )
    if tokenizer_fingerprint(model.tokenizer) != targets.tokenizer:
        raise InputError(
            "token targets need a student with the teacher's tokenizer: use a student cut from the teacher "
            "(--student-base teacher) or --token-weight 0"
        )
