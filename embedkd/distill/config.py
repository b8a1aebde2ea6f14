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


def opt(default: Any, help: str, *, flags: tuple[str, ...] = ()) -> Any:
    """A field with its command-line help: ``embedkd train`` is generated from these fields."""
    metadata = {"help": help, "flags": flags}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class DistillConfig:
    """A distillation run. The defaults are the recipe measured in ``benchmarks/results/``."""

    out: Path = field(
        metadata={
            "help": "Folder for the trained student (a new folder, or an existing student).",
            "flags": ("--out", "-o"),
        }
    )
    data: list[Path] = opt(
        [],
        "Training text: .jsonl, .txt, a BEIR folder, or an index folder (its documents) (repeatable).",
        flags=("--input", "-i", "--data", "-d"),
    )
    teacher: str = opt("mpnet-base", "Teacher model name, folder or hub id.")
    student: str = opt(
        "minilm-l6",
        "Base model the student starts from: a name, folder or hub id. minilm-l6 (the default, all-MiniLM-L6-v2) "
        "trains only its top layer and the projection by default, and of the recipes measured it keeps the most "
        "alignment on a domain it never trained on (benchmarks/results/unseen_alignment_*.md); it also works "
        "with a black-box teacher. `teacher`: the teacher's own layers, cut to --layers (3 by default), "
        "QED-style, which scores higher on the corpus it trains on and lower elsewhere. `static` for a "
        "static-embedding student (model2vec's distillation of the teacher, then aligned like any student; "
        "`static:MODEL` distils MODEL).",
        flags=("--student-base",),
    )
    layers: int | None = opt(
        None, "Keep this many evenly spaced layers of the student base (default: 3 when the base is the teacher)."
    )
    init_from: Path | None = opt(
        None,
        "Start from this trained embedkd student (its backbone and projection) instead of a fresh projection over "
        "--student-base, to adapt it to new text, such as the corpus of an index it will serve. Its teacher must "
        "be --teacher; its own base and layers replace --student-base and --layers.",
    )
    teacher_embeddings: list[Path] = opt(
        [], "Precomputed teacher embeddings (.npy, a black-box teacher); pair each with --teacher-texts."
    )
    teacher_texts: list[Path] = opt([], "Texts whose order matches a --teacher-embeddings file.")
    pairs: Path | None = opt(None, "jsonl of {left, right, score} pair scores (e.g. a cross-encoder's) for dse.")

    loss: LossName = opt(LossName.LEAF, "leaf (L2 to the teacher's vectors), cosine, or dse (in-batch scores).")
    anchor_weight: float = opt(0.0, "Weight of the score loss against teacher document anchors.")
    rank_weight: float = opt(
        1.0,
        "Weight of the listwise KL over the teacher's scores of the anchor documents (EmbedDistill-style); "
        "on when a corpus is given (a BEIR or index folder in --data, or --anchor-data), off otherwise.",
    )
    rank_temperature: float = opt(0.05, "Softmax temperature of the ranking term.")
    rank_base_mix: float | None = opt(
        None,
        "Share of the student base's own ranking in the ranking term's target: the base (e.g. MiniLM-L6, "
        "undistilled) ranks the anchor documents in its own space, and the student learns the mixture of its "
        "and the teacher's distributions, still scoring the teacher's vectors (fusing the two rankings scores "
        "above either alone: benchmarks/results/rank_fusion.md). The base encodes the texts and anchors once "
        "(cached). Default: 0.7 for a transformer base other than the teacher (0.5: +0.012 dev nDCG@10 at 30 "
        "minutes, 0.7: +0.003 more at equal steps; benchmarks/results/"
        "learning_curve_amd_minilm_alltexts_frozen5_basemix{30,70}.md), 0 otherwise; 0 turns it off.",
    )
    base_relation_weight: float | None = opt(
        None,
        "Weight of a term that keeps the student base's own in-batch similarities: each text's softmax over its "
        "cosines to the rest of the batch, the student's (in the teacher's space) against the undistilled base's "
        "(in its own space, computed once and cached), at --rank-temperature. Default: 0.1 for a transformer base "
        "other than the teacher (at equal steps it tied the default without it on SciFact dev in three runs, two "
        "seeds, and lifted the docstrings, a domain no training text reaches, by 0.009-0.011 in all three; "
        "benchmarks/results/student_ablation_xeon_amx_base_relation16k{,_seed7}.md), 0 otherwise; 0 turns it "
        "off. An explicit value above 0 needs a transformer base other than the teacher.",
    )
    rank_source_mix: float = opt(
        0.3,
        "Share of the ranking term's target moved onto the document a title, sentence or crop was cut from, "
        "when that document is among the anchors (inverse-cloze self-supervision from the corpus alone: on "
        "SciFact the teacher ranks a sentence's own abstract first for 69% of sentences, MiniLM-L6 for 72%). "
        "0.3: +0.0095 dev nDCG@10 at 16,000 steps, the unseen domains unchanged; 0.6 tied 0.3 on dev and "
        "kept less alignment (benchmarks/results/student_ablation_16k_corpus_xeon_nobf16.md). 0 turns it off.",
    )
    token_weight: float = opt(
        0.0,
        "Weight of a token-level term: the student's last-layer state of each token is matched to the "
        "teacher's (computed once and cached). Needs a student with the teacher's tokenizer and width, such as "
        "a cut of the teacher's layers (--student-base teacher); 0 turns it off.",
    )
    vocabulary: bool = opt(
        False,
        "Also train on every whole word of the student base's tokenizer vocabulary, one word per text (21,358 "
        "for MiniLM-L6; a few minutes of teacher time, once). Off by default: two seeds did not agree. Seed 7 at "
        "29,012 steps: STS-B paraphrase search +0.011 x the teacher, resolved; seed 1 at 16,000: +0.004, not; "
        "docstrings +0.003 and +0.004, dev -0.002 and -0.003, none resolved "
        "(benchmarks/results/student_ablation_amd_bf16_seed{7_vocab_60min,1_vocab16k}.md). The words are never "
        "held out, so the held-out cosine stays comparable with runs without them.",
    )
    anchor_data: Path | None = opt(
        None, "Documents whose teacher embeddings are the anchors (default: every BEIR folder in --data, pooled)."
    )
    max_anchors: int = opt(4096, "Anchor documents sampled at most.")

    epochs: float = opt(
        10.0, "Passes over the training texts per learning-rate cycle (a time budget may end it sooner, never later)."
    )
    max_steps: int | None = opt(None, "Stop after this many optimiser steps.")
    max_minutes: float | None = opt(None, "Fit the schedule into this many minutes of training.")
    freeze_embeddings: bool = opt(True, "Keep the word-embedding matrix fixed (half of MiniLM's weights).")
    frozen_layers: int | None = opt(
        None,
        "Freeze the lowest N transformer layers and compute their output once per text: each step then runs "
        "only the top layers, and the base keeps its lower-level knowledge. Default: all but the top layer "
        "(5 of MiniLM-L6's 6: 2.2x the steps of 3 frozen and the best unseen-domain alignment measured); "
        "0 trains every layer.",
    )
    batch_size: int = opt(32, "Texts per optimiser step.")
    grad_accum: int = opt(1, "Micro-batches per optimiser step.")
    lr: float = opt(
        4e-4,
        "Backbone learning rate (4e-4 / head 4e-3 against 2e-4 / 2e-3: +0.007 dev nDCG@10 at equal steps for "
        "the default student, learning_curve_amd_minilm_alltexts_frozen5_basemix70_lr4e-4.md).",
    )
    head_lr: float = opt(4e-3, "Projection learning rate.")
    weight_decay: float = opt(0.01, "AdamW weight decay.")
    l2sp_weight: float = opt(
        0.0,
        "Pull the trained backbone towards its starting weights (L2-SP: weight x squared distance, added to "
        "the loss) so it keeps more of the base's knowledge; 0 turns it off.",
    )
    ema_decay: float = opt(
        0.0,
        "Evaluate and save an exponential moving average of the trained weights (Polyak averaging; e.g. "
        "0.999 averages over about the last 1,000 steps); 0 uses the weights of the last step.",
    )
    dropout: bool = opt(
        False,
        "Train with the student's dropout on. Off by default, as the measured recipes trained: before this "
        "option a checkpoint's save switched dropout off for the rest of a fresh run (a resumed run kept it on).",
    )
    warmup_ratio: float = opt(0.05, "Share of each learning-rate cycle spent warming up.")
    min_lr_ratio: float = opt(0.0, "The learning rate decays linearly to lr x this (LEAF: 1e-4 -> 1e-5 is 0.1).")
    max_grad_norm: float = opt(1.0, "Gradient clipping norm.")
    max_seq_length: int = opt(
        64,
        "Token limit while training (64: the same quality per step as 128 and 1.18x the texts/s, "
        "recipe_ablation_documents.md); the saved student keeps the base's limit.",
    )
    precision: Precision = opt(Precision.AUTO, "Student training precision: auto = bf16 autocast where native.")
    teacher_precision: Precision = opt(
        Precision.AUTO,
        "Precision of new teacher targets: auto = bf16 where native (mean cosine 0.99998 to fp32, 1.6-2.5x faster); "
        "each precision has its own embedding cache.",
    )
    seed: int = opt(42, "Random seed.")
    device: str = opt("auto", "auto, cpu, cuda, cuda:N or mps.")

    init_sample: int = opt(4096, "Texts for the ridge fit of the initial projection.")
    ridge: float = opt(0.01, "Ridge strength of that fit (relative to the mean eigenvalue).")

    eval_every: int = opt(500, "Evaluate and checkpoint every N steps.")
    eval_texts: int = opt(1000, "Held-out training texts for the alignment measurement.")
    eval_beir: Path | None = opt(None, "BEIR folder for dev nDCG@10 while training (picks the best checkpoint).")
    eval_split: str = opt("dev", "qrels split of --eval-beir.")
    select_by: str = opt("auto", "Best checkpoint by: auto (ndcg with --eval-beir, else cosine), cosine or ndcg.")
    resume: bool = opt(False, "Continue from OUT/checkpoints/last; after the end, a larger --max-minutes extends it.")
    keep_checkpoints: bool = opt(False, "Keep OUT/checkpoints after saving, so a later --resume can extend the run.")
    layer_store: bool = opt(
        True,
        "Keep the frozen layers' output per text in EMBEDKD_CACHE_DIR/layers, shared by every run of the same "
        "frozen layers: a rerun, --resume, another seed or `embedkd adapt` computes only the texts no earlier run "
        "had (about 14 KiB a text on MiniLM-L6: 2.5 GB for the default recipe's 178k texts, 7 minutes to compute).",
    )

    data_options: DataOptions = field(default_factory=DataOptions)
    teacher_batch_size: int = opt(64, "Texts per teacher forward pass.")
    progress: bool = opt(True, "Show progress bars.")

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.data = [Path(p) for p in self.data]
        self.init_from = Path(self.init_from) if self.init_from is not None else None
        self.teacher_embeddings = [Path(p) for p in self.teacher_embeddings]
        self.teacher_texts = [Path(p) for p in self.teacher_texts]
        if isinstance(self.data_options, dict):  # a config read back from JSON
            self.data_options = DataOptions(**self.data_options)
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
        if self.frozen_layers is not None and self.frozen_layers < 0:
            raise InputError("frozen_layers must be 0 or more")
        if not 0 <= self.min_lr_ratio <= 1:
            raise InputError("min_lr_ratio must be between 0 and 1")
        if self.token_weight < 0:
            raise InputError("token_weight must be 0 or more")
        if self.base_relation_weight is not None and self.base_relation_weight < 0:
            raise InputError("base_relation_weight must be 0 or more")
        if self.base_relation_weight and self.batch_size < 2:
            raise InputError(
                "base_relation_weight compares each text with the rest of its batch: batch_size must be 2 or more"
            )
        if self.l2sp_weight < 0:
            raise InputError("l2sp_weight must be 0 or more")
        if not 0 <= self.ema_decay < 1:
            raise InputError("ema_decay must be at least 0 and below 1")
        if self.rank_base_mix is not None and not 0 <= self.rank_base_mix < 1:
            raise InputError("rank_base_mix must be at least 0 and below 1")
        if not 0 <= self.rank_source_mix < 1:
            raise InputError("rank_source_mix must be at least 0 and below 1")
        if self.rank_temperature <= 0:
            raise InputError("rank_temperature must be positive")
        for name in ("batch_size", "grad_accum", "max_seq_length", "eval_every"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1")
        if self.max_steps is not None and self.max_steps < 1:  # 0 once meant "no limit" silently
            raise InputError("max_steps must be at least 1 (leave it out for no step limit)")
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
