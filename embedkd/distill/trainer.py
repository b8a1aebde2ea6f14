"""The distillation loop: texts -> cached teacher embeddings -> student fitted to them.

Kept thin on purpose: data comes from :mod:`embedkd.distill.data`, targets from
:mod:`embedkd.distill.teacher`, the objective from :mod:`embedkd.distill.losses`; this module only
schedules, steps, evaluates and checkpoints.
"""

from __future__ import annotations

import logging
import math
import os
import random
import shutil
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from tqdm.auto import tqdm

from embedkd.data.beir import BeirDataset, load_beir
from embedkd.device import autocast, resolve_device, resolve_precision, to_device
from embedkd.distill import losses
from embedkd.distill.averaging import WeightAverage
from embedkd.distill.batching import bucketed_batches
from embedkd.distill.budget import fit_budget
from embedkd.distill.checkpoint import (
    check_init_teacher,
    check_out_folder,
    check_resumable,
    copy_checkpoint,
    damaged_checkpoint,
    init_manifest,
    load_init_student,
    load_state,
    publish_student,
    save_checkpoint,
    set_rng_state,
    training_lock,
    training_manifest,
)
from embedkd.distill.config import DistillConfig, Precision
from embedkd.distill.data import TextKind, TrainingText, describe, kind_of, load_training_texts, split_holdout
from embedkd.distill.distributed import init_ranks
from embedkd.distill.layer_cache import LayerCache, default_frozen_layers
from embedkd.distill.layer_store import LayerStore
from embedkd.distill.optim import CycleBounds, build_optimizer, cycle_schedule
from embedkd.distill.targets import (
    anchor_source,
    anchor_texts,
    base_rank_inputs,
    centred_anchors,
    check_base_space,
    default_base_relation_weight,
    default_rank_base_mix,
    load_anchors,
    load_pairs,
    load_teacher,
    source_rows,
    vocabulary_texts,
)
from embedkd.distill.teacher import Teacher, read_aligned_texts
from embedkd.distill.token_targets import TokenTargets, check_student, teacher_token_targets
from embedkd.errors import EmbedkdError, InputError
from embedkd.evaluation import alignment_scores, score_retrieval
from embedkd.models.manifest import StudentManifest
from embedkd.models.static import static_base
from embedkd.models.student import (
    TEACHER_BASE,
    build_student,
    fit_ridge_projection,
    is_static_base,
    pooled_embeddings,
    set_max_seq_length,
    set_projection,
)
from embedkd.paths import check_parent_is_folder

__all__ = ["DistillResult", "TrainingDivergedError", "distill"]

logger = logging.getLogger(__name__)


class TrainingDivergedError(EmbedkdError):
    """The loss became NaN or infinite."""

    exit_code = 6


@dataclass
class DistillResult:
    out: Path
    manifest: StudentManifest
    history: list[dict[str, Any]] = field(default_factory=list)
    model: Any = None  # the weights at the last step (the saved student is the best checkpoint)


def _role(kind: TextKind) -> str:
    return "document" if kind is TextKind.DOCUMENT else "query"


class _Distiller:
    def __init__(self, config: DistillConfig) -> None:
        self._init: StudentManifest | None = None
        if config.init_from is not None:  # the student's own base: its base terms compare with the same space
            self._init = init_manifest(config.init_from, config.out)
            config = replace(config, student=self._init.base)
        self.config = replace(  # recorded as resolved
            config,
            rank_base_mix=default_rank_base_mix(config),
            base_relation_weight=default_base_relation_weight(config),
        )
        if config.base_relation_weight:  # asked for: before the teacher's targets, which can take an hour
            check_base_space(config)
        self.device = resolve_device(config.device)
        self.ranks = init_ranks(self.device)
        if self.ranks.active and self.device.startswith("cuda"):
            self.device = f"cuda:{self.ranks.local_rank}"
        self.checkpoints = config.out / "checkpoints"
        self.history: list[dict[str, Any]] = []
        self.timings: dict[str, float] = {}
        self._kept_layers: list[int] | None = None
        self._base_max_len: int | None = None
        self._layer_cache: LayerCache | None = None
        self._centred: torch.Tensor | None = None
        self._base: np.ndarray | None = None  # the base's own embedding of each training text (its own space)
        self._base_anchors: torch.Tensor | None = None
        self._sources: np.ndarray | None = None  # each training text's own document among the anchors, or -1
        self._tokens: TokenTargets | None = None
        self._token_rows: list[int] = []

    # ------------------------------------------------------------------ set-up
    def _texts(self, teacher: Teacher) -> list[TrainingText]:
        config = self.config
        texts = load_training_texts(config.data, config.data_options) if config.data else []
        seen = {t.text for t in texts}
        for npy, source in zip(config.teacher_embeddings, config.teacher_texts, strict=True):
            aligned = read_aligned_texts(source, npy)
            teacher.import_embeddings(aligned, npy)
            for text in aligned:
                if text not in seen:
                    seen.add(text)
                    texts.append(TrainingText(text, kind_of(text), str(source)))
        if not texts:
            raise InputError("the training data contains no text")
        return texts

    def _targets(self, teacher: Teacher, texts: Sequence[TrainingText]) -> np.ndarray:
        targets = np.zeros((len(texts), teacher.ref.dimension), dtype=np.float16)
        for role in ("query", "document"):
            idx = [i for i, t in enumerate(texts) if _role(t.kind) == role]
            if idx:
                emb = teacher.embeddings(
                    [texts[i].text for i in idx],
                    role=role,
                    batch_size=self.config.teacher_batch_size,
                    progress=self.config.progress,
                )
                targets[idx] = emb.astype(np.float16)
        return targets

    def _autocast(self) -> Any:
        return autocast(resolve_precision(self.config.precision, self.device), self.device)

    # ------------------------------------------------------------------ evaluation
    @torch.inference_mode()
    def _encode(self, model: SentenceTransformer, texts: Sequence[str], batch_size: int = 128) -> np.ndarray:
        """The student's vectors for an evaluation, in the training precision.

        bf16 halves the evaluations' share of a time budget on a 2-core CPU (17 against 8 s for 1,809
        texts) at a mean cosine of 0.9999 to fp32; the vectors are renormalised in fp32.
        """
        model.eval()
        with self._autocast():
            out = model.encode(list(texts), batch_size=batch_size, convert_to_tensor=True)
        vectors = torch.nn.functional.normalize(out.float(), dim=-1)
        return vectors.cpu().numpy()

    def _evaluate(
        self,
        model: SentenceTransformer,
        holdout: Sequence[TrainingText],
        holdout_targets: np.ndarray,
        beir: tuple[BeirDataset, np.ndarray] | None,
    ) -> dict[str, Any]:
        metrics: dict[str, Any] = {}
        started = time.perf_counter()
        if holdout:
            scores = alignment_scores(
                self._encode(model, [t.text for t in holdout]),
                holdout_targets.astype(np.float32),
                [t.kind.value for t in holdout],
            )
            metrics.update(cosine=scores.mean_cosine, mse=scores.mse, cosine_by_kind=scores.by_kind)
        if beir is not None:
            dataset, doc_embeddings = beir
            queries = self._encode(model, list(dataset.queries.values()))
            metrics["ndcg_at_10"] = score_retrieval(dataset, queries, doc_embeddings).ndcg_at_10
        metrics["eval_seconds"] = round(time.perf_counter() - started, 2)
        model.train(self.config.dropout)
        return metrics

    def _select_value(self, metrics: dict[str, Any]) -> float:
        key = self.config.select_by
        if key == "auto":
            key = "ndcg" if "ndcg_at_10" in metrics else "cosine"
        return float(metrics.get("ndcg_at_10" if key == "ndcg" else "cosine", -math.inf))

    # ------------------------------------------------------------------ the run
    def run(self) -> DistillResult:
        config = self.config
        random.seed(config.seed)
        np.random.seed(config.seed)
        torch.manual_seed(config.seed)

        teacher = load_teacher(config)
        if self._init is not None:
            assert config.init_from is not None
            check_init_teacher(config.init_from, self._init, teacher.ref)
        texts = self._texts(teacher)
        train, holdout = split_holdout(texts, config.eval_texts, seed=config.seed)
        if config.vocabulary:  # never held out: the held-out cosine measures the texts given
            train += vocabulary_texts(config, teacher, exclude={t.text for t in texts})
        logger.info("training texts: %s", describe(train)["by_kind"])

        started = time.perf_counter()
        if not self.ranks.main:
            self.ranks.barrier()  # rank 0 fills the shared teacher cache first; the others then read it
        if config.token_weight > 0:  # first: its pass also gives the embedding of every text it reads whole
            self._tokens = teacher_token_targets(
                teacher, [t.text for t in texts], max_length=config.max_seq_length, progress=config.progress
            )
            self._token_rows = self._tokens.rows([t.text for t in train])
        targets = self._targets(teacher, train)
        holdout_targets = self._targets(teacher, holdout) if holdout else np.zeros((0, 0))
        beir = None
        if config.eval_beir is not None:
            dataset = load_beir(config.eval_beir, config.eval_split)
            beir = (
                dataset,
                teacher.embeddings(dataset.doc_texts(), role="document", progress=config.progress),
            )
        anchors, anchor_docs = None, []
        if config.anchor_weight > 0 or (config.rank_weight > 0 and anchor_source(config) is not None):
            anchor_docs = anchor_texts(config)  # read and sampled once: the ranking inputs below index into it
            anchors = load_anchors(config, teacher, self.device, anchor_docs)
        elif config.rank_weight > 0:
            logger.info(
                "no corpus to rank against (no BEIR folder in --data, no --anchor-data): ranking term off. The student "
                "aligns where its training text reaches: give the documents you will index as a BEIR folder "
                "(benchmarks/results/unseen_docstrings_corpus_text_*.md)"
            )
        rank_base = anchors is not None and config.rank_weight > 0 and bool(config.rank_base_mix)
        if rank_base or config.base_relation_weight:
            roles = [(t.text, _role(t.kind)) for t in train]
            self._base, base_anchors = base_rank_inputs(config, roles, anchor_docs if rank_base else [])
            if rank_base:
                self._base_anchors = torch.from_numpy(base_anchors).to(self.device, torch.float32)
        if anchors is not None and config.rank_weight > 0 and config.rank_source_mix > 0:
            self._sources = source_rows(train, anchor_docs)
            logger.info(
                "ranking term: %d of %d training texts rank their own document", (self._sources >= 0).sum(), len(train)
            )
        pairs = load_pairs(config.pairs) if config.pairs else None
        self.timings["teacher_seconds"] = time.perf_counter() - started
        if self.ranks.main:
            self.ranks.barrier()

        state = load_state(self.checkpoints / "last") if config.resume else None
        legacy = self.checkpoints / "layer_cache"  # embedkd before the shared layer store kept one per run
        if config.resume and legacy.is_dir():
            logger.warning("%s is an older embedkd's layer cache, no longer read: it may be deleted", legacy)
        if config.resume and state is None:
            logger.info("no checkpoint in %s: starting from scratch", self.checkpoints)
        model, kept_layers = self._student(teacher, train, targets, state)
        self._kept_layers = kept_layers
        if self._tokens is not None:
            check_student(model, self._tokens)
        base_max_len = state["base_max_seq_length"] if state else model.max_seq_length
        self._base_max_len = base_max_len
        set_max_seq_length(model, min(config.max_seq_length, base_max_len or config.max_seq_length))
        self.ranks.sync_parameters(model.parameters())

        trained = self._train(model, train, targets, holdout, holdout_targets, beir, anchors, pairs, state)
        self.timings["train_seconds"] = trained
        if not self.ranks.main:  # rank 0 saves the student; the others wait for it and report the same result
            self.ranks.barrier()
            saved = StudentManifest.read(config.out)
            assert saved is not None
            return DistillResult(out=config.out, manifest=saved, history=self.history, model=model)

        best_dir = self.checkpoints / "best"
        best_state = load_state(best_dir) or {}
        best = SentenceTransformer(str(best_dir), device=self.device)
        set_max_seq_length(best, base_max_len)
        final_metrics = best_state.get("metrics") or self._evaluate(best, holdout, holdout_targets, beir)
        manifest = training_manifest(
            config, teacher, train, holdout, kept_layers, final_metrics, best_state, self.timings, self.device
        )
        publish_student(best, manifest, self.history, config.out, self.checkpoints if config.keep_checkpoints else None)
        self.ranks.barrier()
        return DistillResult(out=config.out, manifest=manifest, history=self.history, model=model)

    def _student(
        self,
        teacher: Teacher,
        train: Sequence[TrainingText],
        targets: np.ndarray,
        state: dict[str, Any] | None,
    ) -> tuple[SentenceTransformer, list[int] | None]:
        config = self.config
        if state is not None:
            last = self.checkpoints / "last"
            try:
                model = SentenceTransformer(str(last), device=self.device)
            except Exception as exc:  # noqa: BLE001 - a missing or truncated file raises any of several types
                raise damaged_checkpoint(last, exc) from exc
            return model, state.get("kept_layers")
        if self._init is not None:
            assert config.init_from is not None
            return load_init_student(config.init_from, teacher.ref.dimension, self.device), self._init.layers
        base, layers = config.student, config.layers
        if is_static_base(base):  # static[:MODEL]: model2vec of the teacher (or MODEL)
            base = str(static_base(base.partition(":")[2] or config.teacher))
        elif base == TEACHER_BASE:  # the teacher's own lower layers (QED): same tokenizer and embeddings
            if teacher.is_black_box:
                raise InputError(
                    f"teacher {config.teacher} is a black box: a student cannot be cut from it; choose "
                    "--student-base (e.g. minilm-l6)"
                )
            base, layers = str(teacher.model_path), layers or 3
        model, kept = build_student(base, teacher_dimension=teacher.ref.dimension, layers=layers, device=self.device)
        rng = np.random.default_rng(config.seed)
        sample = rng.choice(len(train), size=min(config.init_sample, len(train)), replace=False)
        base_max_len = model.max_seq_length  # the caller truncates for training and restores this on save
        set_max_seq_length(model, min(config.max_seq_length, base_max_len or config.max_seq_length))
        x = pooled_embeddings(model, [train[i].text for i in sample])
        set_max_seq_length(model, base_max_len)
        weight, bias = fit_ridge_projection(x, targets[sample].astype(np.float32), ridge=config.ridge)
        set_projection(model, weight, bias)
        logger.info(
            "projection initialised by ridge regression on %d texts (largest singular value %.2f)",
            len(sample),
            float(np.linalg.svd(weight, compute_uv=False)[0]),
        )
        return model, kept

    def _train(
        self,
        model: SentenceTransformer,
        train: Sequence[TrainingText],
        targets: np.ndarray,
        holdout: Sequence[TrainingText],
        holdout_targets: np.ndarray,
        beir: tuple[BeirDataset, np.ndarray] | None,
        anchors: torch.Tensor | None,
        pairs: list[tuple[str, str, float]] | None,
        state: dict[str, Any] | None,
    ) -> float:
        config = self.config
        self._layer_cache = None
        frozen = default_frozen_layers(model, config.frozen_layers)
        if frozen and self._tokens is not None:
            raise InputError("token targets do not work with the layer cache yet: set --frozen-layers 0")
        if frozen:
            started = time.perf_counter()
            self._layer_cache = LayerCache(
                model,
                [t.text for t in train],
                frozen=frozen,
                device=self.device,
                autocast=self._autocast(),
                progress=config.progress,
                store=LayerStore.for_model(
                    model,
                    frozen=frozen,
                    precision=resolve_precision(config.precision, self.device).value,
                    base=config.student,  # an --init-from run's is its student's base: the frozen layers' origin
                )
                if config.layer_store
                else None,
                save=self.ranks.main,
            )
            self.timings["layer_cache_seconds"] = time.perf_counter() - started
            lengths = self._layer_cache.lengths()
        elif not hasattr(model[0], "auto_model"):  # a static student: its cost grows with the words
            lengths = [len(t.text.split()) for t in train]
        else:
            lengths = [
                len(ids)
                for ids in model.tokenizer(
                    [t.text for t in train],
                    truncation=True,
                    max_length=model.max_seq_length,
                )["input_ids"]
            ]
        self._centred = centred_anchors(anchors) if anchors is not None and config.anchor_weight > 0 else None
        batches_per_epoch = math.ceil(len(train) / config.batch_size)
        cycle_steps = config.max_steps or max(1, math.ceil(config.epochs * batches_per_epoch / config.grad_accum))
        bounds = CycleBounds(start=0, total=cycle_steps)  # the schedule reads it late: a budget may shorten it
        optimizer, backbone = build_optimizer(model, config)
        reference = [p.detach().clone() for p in backbone] if config.l2sp_weight > 0 else None  # L2-SP's start
        average = WeightAverage(model, config.ema_decay) if config.ema_decay > 0 else None
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cycle_schedule(config, bounds))
        use_scaler = config.precision is Precision.FP16
        scaler = torch.amp.GradScaler("cuda") if use_scaler else None

        step, epoch, cursor = 0, 0, 0
        best_value = -math.inf
        if state is not None:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            step, epoch, cursor = state["step"], state["epoch"], state["cursor"]
            bounds.total = int(state.get("total_steps", bounds.total))
            bounds.start = int(state.get("cycle_start", 0))
            if step >= bounds.total:  # a finished run, extended: a new learning-rate cycle (LEAF's restarts)
                bounds.start, bounds.total = step, step + cycle_steps
                logger.info("extending a finished run: new cycle of up to %d steps from step %d", cycle_steps, step)
            best_value = state.get("best_value", -math.inf)
            self.history = list(state.get("history", []))
            set_rng_state(state["rng"])
            if reference is not None and state.get("l2sp_reference") is not None:  # the first run's start
                reference = list(state["l2sp_reference"])
            if average is not None and state.get("weight_average"):  # the folder held the average
                average.load_state_dict(state["weight_average"])
            logger.info("resumed at step %d of %d", step, bounds.total)

        def checkpoint(metrics: dict[str, Any]) -> None:
            nonlocal best_value
            value = self._select_value(metrics)
            improved = value > best_value or not (self.checkpoints / "best").exists()
            if improved:
                best_value = value
            payload = {
                "step": step,
                "epoch": epoch,
                "cursor": cursor,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "best_value": best_value,
                "history": self.history,
                "metrics": metrics,
                "kept_layers": self._kept_layers,
                "train_seconds": resumed_seconds + time.perf_counter() - start,
                "total_steps": bounds.total,
                "cycle_start": bounds.start,
                "l2sp_reference": reference,
                "base_max_seq_length": self._base_max_len,
                "weight_average": average.state_dict() if average is not None else None,
                "config": config.to_dict(),
            }
            save_checkpoint(model, payload, self.checkpoints / "last", max_seq_length=self._base_max_len)
            if improved:
                copy_checkpoint(self.checkpoints / "last", self.checkpoints / "best")

        def record(metrics: dict[str, Any], elapsed: float) -> None:
            entry = {"step": step, "epoch": epoch, "seconds": round(elapsed, 1), **metrics}
            self.history.append(entry)
            summary = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
            logger.info("step %d: %s", step, summary)

        resumed_seconds = float(state.get("train_seconds", 0.0)) if state else 0.0
        budget_check = step + 20  # first fit after 20 steps, then again at every evaluation
        planned_steps = bounds.total
        first_step = step
        eval_elapsed = 0.0
        start = time.perf_counter()
        if state is None and self.ranks.main:
            metrics = self._evaluate(model, holdout, holdout_targets, beir)
            record(metrics, 0.0)
            checkpoint(metrics)
            eval_elapsed = time.perf_counter() - start
        self.ranks.barrier()

        model.train(config.dropout)  # dropout on or off; checkpoints and evaluations keep it as set
        pair_rng = random.Random(config.seed + 7)
        bar = tqdm(total=bounds.total, initial=step, desc="distilling", unit="step", disable=not config.progress)
        loss_ema: float | None = None
        seen_texts = 0
        epoch_batches = bucketed_batches(lengths, config.batch_size, seed=config.seed + epoch)
        while step < bounds.total:
            if cursor >= len(epoch_batches):
                epoch, cursor = epoch + 1, 0
                epoch_batches = bucketed_batches(lengths, config.batch_size, seed=config.seed + epoch)
                continue
            # every rank takes its own share of the global batch: ranks x grad_accum micro-batches per step
            share = cursor + self.ranks.rank * config.grad_accum
            micro = epoch_batches[share : share + config.grad_accum]
            cursor += config.grad_accum * self.ranks.world
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for indices in micro:
                with self._autocast():
                    loss = self._batch_loss(model, train, targets, indices, anchors, pairs, pair_rng)
                loss = loss / len(micro)
                if not torch.isfinite(loss):
                    bar.close()
                    raise TrainingDivergedError(
                        f"the loss became {loss.item()} at step {step}; the last good checkpoint is "
                        f"{self.checkpoints / 'last'} — lower --lr/--head-lr, then rerun with --resume"
                    )
                if scaler is not None:
                    scaler.scale(loss).backward()
                else:
                    loss.backward()
                step_loss += float(loss.detach())
                seen_texts += len(indices)
            if reference is not None:  # L2-SP, once per step: the pull towards the starting weights
                penalty = config.l2sp_weight * losses.l2_sp_penalty(backbone, reference)
                (scaler.scale(penalty) if scaler is not None else penalty).backward()
            self.ranks.average_gradients(model.parameters())
            if scaler is not None:
                scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            if average is not None:
                average.update()
            step += 1
            loss_ema = step_loss if loss_ema is None else 0.95 * loss_ema + 0.05 * step_loss
            elapsed = time.perf_counter() - start
            if config.max_minutes and (step == budget_check or step % config.eval_every == 0):
                fitted = fit_budget(
                    config,
                    self.history,
                    planned=planned_steps,
                    step=step,
                    done=step - first_step,
                    train_s=elapsed - eval_elapsed,
                    eval_s=eval_elapsed,
                    already=resumed_seconds,
                    announce=step == budget_check,
                )
                bounds.total = self.ranks.broadcast(fitted)  # rank 0's clock decides for every rank
                bar.total = bounds.total
            bar.set_postfix(loss=f"{loss_ema:.4f}", texts_s=f"{seen_texts / max(elapsed, 1e-9):.0f}")
            bar.update(1)
            if (step % config.eval_every == 0 or step == bounds.total) and self.ranks.main:
                eval_started = time.perf_counter()
                with average.applied() if average is not None else nullcontext():  # saved as evaluated
                    metrics = self._evaluate(model, holdout, holdout_targets, beir)
                    metrics["loss"] = loss_ema
                    record(metrics, elapsed)
                    checkpoint(metrics)
                eval_elapsed += time.perf_counter() - eval_started
            if step % config.eval_every == 0 or step == bounds.total:
                self.ranks.barrier()
        bar.close()
        self.timings["train_seconds_total"] = resumed_seconds + time.perf_counter() - start  # across --resume
        return time.perf_counter() - start

    def _batch_loss(
        self,
        model: SentenceTransformer,
        train: Sequence[TrainingText],
        targets: np.ndarray,
        indices: list[int],
        anchors: torch.Tensor | None,
        pairs: list[tuple[str, str, float]] | None,
        pair_rng: random.Random,
    ) -> torch.Tensor:
        config = self.config
        if self._layer_cache is not None:
            student = self._layer_cache.forward(model, indices)
        else:
            features = self._forward(model, [train[i].text for i in indices])
            student = features["sentence_embedding"].float()
        teacher = torch.from_numpy(targets[indices].astype(np.float32)).to(student.device)
        # the base's own vectors of these texts, read once for the ranking target and the relation term
        base = (
            None if self._base is None else torch.from_numpy(self._base[indices].astype(np.float32)).to(student.device)
        )
        if config.loss is losses.LossName.LEAF:
            loss = losses.leaf_loss(student, teacher)
        elif config.loss is losses.LossName.COSINE:
            loss = losses.cosine_loss(student, teacher)
        else:
            loss = losses.dse_loss(student, teacher @ teacher.T)
        if self._centred is not None:
            loss = loss + config.anchor_weight * losses.anchor_score_loss(student, teacher, self._centred)
        if anchors is not None and config.rank_weight > 0:  # anchors exist only when a corpus was found
            kl = losses.listwise_kl_loss(
                student,
                teacher,
                anchors,
                temperature=config.rank_temperature,
                base=base,
                base_documents=self._base_anchors,
                base_mix=config.rank_base_mix or 0.0 if self._base_anchors is not None else 0.0,
                source=None if self._sources is None else torch.from_numpy(self._sources[indices]).to(student.device),
                source_mix=config.rank_source_mix if self._sources is not None else 0.0,
            )
            loss = loss + config.rank_weight * kl
        if config.base_relation_weight and base is not None and len(indices) > 1:
            relation = losses.relation_kl_loss(student, base, temperature=config.rank_temperature)
            loss = loss + config.base_relation_weight * relation
        if self._tokens is not None:  # no layer cache here (refused at set-up)
            loss = loss + config.token_weight * self._tokens.loss(features, [self._token_rows[i] for i in indices])
        if pairs:
            batch = pair_rng.sample(pairs, min(len(pairs), max(1, len(indices) // 2)))
            left = self._forward(model, [p[0] for p in batch])["sentence_embedding"].float()
            right = self._forward(model, [p[1] for p in batch])["sentence_embedding"].float()
            scores = torch.tensor([p[2] for p in batch], device=left.device)
            loss = loss + losses.pair_score_loss(left, right, scores)
        return loss

    def _forward(self, model: SentenceTransformer, texts: list[str]) -> dict[str, torch.Tensor]:
        """The student's forward pass: ``sentence_embedding``, and ``token_embeddings`` before pooling."""
        features = model.preprocess(texts)
        features = to_device(features, self.device)
        return dict(model(features))


def distill(config: DistillConfig) -> DistillResult:
    """Train a student on ``config`` and save it (sentence-transformers folder + embedkd.json) to ``config.out``."""
    config.out = Path(os.path.abspath(config.out))  # `--out .` has a name and a parent to save beside
    check_parent_is_folder(config.out, "--out")
    config.out.parent.mkdir(parents=True, exist_ok=True)
    with training_lock(config.out):  # before anything reads the folder
        check_out_folder(config.out)
        if config.resume:
            check_resumable(config.out)
        created = not config.out.exists()
        config.out.mkdir(exist_ok=True)
        try:
            return _Distiller(config).run()
        except BaseException:
            if created and not any(p.is_file() for p in config.out.rglob("*")):
                shutil.rmtree(config.out, ignore_errors=True)  # a run that failed before saving leaves no folder
            raise
