"""Everything that defines a distillation run, in one serialisable dataclass."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from embedkd.device import Precision
from embedkd.distill.data import DataOptions
from embedkd.distill.losses import LossName
from embedkd.errors import InputError

__all__ = ["DistillConfig", "Precision"]


@dataclass
class DistillConfig:
    """A distillation run. The defaults are the recipe measured in ``benchmarks/results/``."""

    out: Path
    data: list[Path] = field(default_factory=list)
    teacher: str = "mpnet-base"
    student: str = "minilm-l6"
    layers: int | None = None  # keep this many evenly spaced layers of the student base
    # Black-box teacher input: .npy files whose rows align with the texts of the matching --teacher-texts.
    teacher_embeddings: list[Path] = field(default_factory=list)
    teacher_texts: list[Path] = field(default_factory=list)
    # Cross-encoder (or any) pair scores for the dse loss: jsonl with "left", "right", "score".
    pairs: Path | None = None

    loss: LossName = LossName.LEAF
    anchor_weight: float = 0.0  # weight of the score loss against teacher document anchors
    rank_weight: float = 0.0  # weight of the listwise KL over the teacher's scores of the anchors
    rank_temperature: float = 0.05
    anchor_data: Path | None = None  # BEIR folder / jsonl whose teacher document embeddings are the anchors
    max_anchors: int = 4096

    epochs: float = 3.0
    max_steps: int | None = None
    max_minutes: float | None = None  # shorten the schedule so training ends within this budget
    freeze_embeddings: bool = True  # keep the word-embedding matrix fixed (half of MiniLM's weights)
    # Freeze the lowest N transformer layers and compute their output once per text (embedding/layer_cache.py):
    # each step then runs only the top layers, and the base keeps its lower-level knowledge.
    frozen_layers: int = 0
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 2e-4  # backbone
    head_lr: float = 2e-3  # projection
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    min_lr_ratio: float = 0.0  # the learning rate decays linearly to lr * min_lr_ratio (LEAF: 1e-4 -> 1e-5)
    max_grad_norm: float = 1.0
    max_seq_length: int = 128  # truncation while training; the saved student keeps the base's limit
    precision: Precision = Precision.AUTO
    # The teacher's precision for new targets: auto = bf16 where native (mean cosine 0.99998 to fp32, 1.6-2.5x
    # faster, benchmarks/results/teacher_precision.md). Each precision has its own embedding cache.
    teacher_precision: Precision = Precision.AUTO
    seed: int = 42
    device: str = "auto"

    init_sample: int = 4096  # texts for the ridge fit of the initial projection
    ridge: float = 0.01

    eval_every: int = 500
    eval_texts: int = 1000  # held-out texts for the alignment measurement
    eval_beir: Path | None = None  # optional BEIR folder for dev nDCG@10 during training
    eval_split: str = "dev"
    select_by: str = "auto"  # metric that picks the best checkpoint: auto, cosine, ndcg
    resume: bool = False  # continue from out/checkpoints/last; a larger --max-minutes starts a new lr cycle
    keep_checkpoints: bool = False  # keep out/checkpoints after saving, so a later --resume can extend the run

    data_options: DataOptions = field(default_factory=DataOptions)
    teacher_batch_size: int = 64
    progress: bool = True

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.data = [Path(p) for p in self.data]
        self.teacher_embeddings = [Path(p) for p in self.teacher_embeddings]
        self.teacher_texts = [Path(p) for p in self.teacher_texts]
        try:
            self.loss = LossName(self.loss)
        except ValueError as exc:
            choices = ", ".join(m.value for m in LossName)
            raise InputError(f"unknown loss {self.loss!r}; choose one of {choices}") from exc
        try:
            self.precision = Precision(self.precision)
            self.teacher_precision = Precision(self.teacher_precision)
        except ValueError as exc:
            choices = ", ".join(m.value for m in Precision)
            raise InputError(f"unknown precision {self.precision!r}; choose one of {choices}") from exc
        if len(self.teacher_embeddings) != len(self.teacher_texts):
            raise InputError("give one --teacher-texts file for each --teacher-embeddings file")
        if not self.data and not self.teacher_texts and self.pairs is None:
            raise InputError("no training data given (pass --data FILE at least once)")
        if self.select_by not in {"auto", "cosine", "ndcg"}:
            raise InputError("--select-by must be auto, cosine or ndcg")
        if self.select_by == "ndcg" and self.eval_beir is None:
            raise InputError("--select-by ndcg needs --eval-beir")
        if self.frozen_layers < 0:
            raise InputError("frozen_layers must be 0 or more")
        if not 0 <= self.min_lr_ratio <= 1:
            raise InputError("min_lr_ratio must be between 0 and 1")
        if self.rank_temperature <= 0:
            raise InputError("rank_temperature must be positive")
        for name in ("batch_size", "grad_accum", "max_seq_length", "eval_every"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1")
        if self.epochs <= 0 and not self.max_steps:
            raise InputError("epochs must be positive")
        if self.lr <= 0 or self.head_lr <= 0:
            raise InputError("learning rates must be positive")

    def to_dict(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            if isinstance(value, Path):
                return str(value)
            if isinstance(value, Enum):
                return value.value
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, list):
                return [plain(v) for v in value]
            return value

        return {k: plain(v) for k, v in asdict(self).items()}
