"""``embedkd train``: align a student to a teacher on unlabeled text."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from embedkd.cli._app import app
from embedkd.distill import DataOptions, DistillConfig, distill


@app.command("train")
def train_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the trained student.")],
    data: Annotated[
        list[Path] | None, typer.Option("--data", "-d", help="Training text: .jsonl, .txt or BEIR folder.")
    ] = None,
    teacher: Annotated[str, typer.Option(help="Teacher model name, folder or hub id.")] = "mpnet-base",
    student: Annotated[str, typer.Option(help="Student base model name, folder or hub id.")] = "minilm-l6",
    layers: Annotated[
        int | None, typer.Option(min=1, help="Keep this many evenly spaced layers of the student base.")
    ] = None,
    teacher_embeddings: Annotated[
        list[Path] | None,
        typer.Option(help="Precomputed teacher embeddings (.npy); pair each with --teacher-texts."),
    ] = None,
    teacher_texts: Annotated[
        list[Path] | None, typer.Option(help="Texts whose order matches a --teacher-embeddings file.")
    ] = None,
    pairs: Annotated[
        Path | None, typer.Option(help="jsonl of {left, right, score} pair scores (e.g. a cross-encoder's).")
    ] = None,
    loss: Annotated[str, typer.Option(help="leaf, cosine or dse.")] = "leaf",
    anchor_weight: Annotated[
        float, typer.Option(min=0.0, help="Weight of the score loss on teacher document anchors.")
    ] = 0.0,
    anchor_data: Annotated[Path | None, typer.Option(help="Documents whose embeddings are the anchors.")] = None,
    epochs: Annotated[float, typer.Option(min=0.0)] = 3.0,
    max_steps: Annotated[int | None, typer.Option(min=1)] = None,
    max_minutes: Annotated[
        float | None, typer.Option(min=0.1, help="Fit the schedule into this many minutes of training.")
    ] = None,
    freeze_embeddings: Annotated[bool, typer.Option(help="Keep the word-embedding matrix fixed.")] = True,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    grad_accum: Annotated[int, typer.Option(min=1, help="Micro-batches per optimiser step.")] = 1,
    lr: Annotated[float, typer.Option(help="Backbone learning rate.")] = 2e-4,
    head_lr: Annotated[float, typer.Option(help="Projection learning rate.")] = 2e-3,
    warmup_ratio: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.05,
    max_seq_length: Annotated[int, typer.Option(min=8, help="Token limit while training.")] = 128,
    precision: Annotated[str, typer.Option(help="auto, fp32, bf16 or fp16.")] = "auto",
    seed: Annotated[int, typer.Option()] = 42,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    eval_every: Annotated[int, typer.Option(min=1, help="Evaluate and checkpoint every N steps.")] = 500,
    eval_texts: Annotated[int, typer.Option(min=0, help="Held-out texts for alignment.")] = 1000,
    eval_beir: Annotated[Path | None, typer.Option(help="BEIR folder for dev nDCG@10 while training.")] = None,
    eval_split: Annotated[str, typer.Option(help="qrels split of --eval-beir.")] = "dev",
    select_by: Annotated[str, typer.Option(help="Best checkpoint by: auto, cosine or ndcg.")] = "auto",
    sentences: Annotated[bool, typer.Option(help="Split documents into sentences.")] = True,
    titles: Annotated[bool, typer.Option(help="Use document titles as texts.")] = True,
    documents: Annotated[bool, typer.Option(help="Also train on whole documents.")] = False,
    max_texts_per_source: Annotated[
        int | None, typer.Option(min=1, help="Sample at most N texts from each --data source.")
    ] = None,
    data_seed: Annotated[int, typer.Option(help="Seed of the per-source sampling.")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint in OUT.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Train a student whose embeddings land in the teacher's space (LEAF), or match its scores (DSE)."""
    config = DistillConfig(
        out=out,
        data=list(data or []),
        teacher=teacher,
        student=student,
        layers=layers,
        teacher_embeddings=list(teacher_embeddings or []),
        teacher_texts=list(teacher_texts or []),
        pairs=pairs,
        loss=loss,  # type: ignore[arg-type]  # validated into LossName
        anchor_weight=anchor_weight,
        anchor_data=anchor_data,
        epochs=epochs,
        max_steps=max_steps,
        max_minutes=max_minutes,
        freeze_embeddings=freeze_embeddings,
        batch_size=batch_size,
        grad_accum=grad_accum,
        lr=lr,
        head_lr=head_lr,
        warmup_ratio=warmup_ratio,
        max_seq_length=max_seq_length,
        precision=precision,  # type: ignore[arg-type]  # validated into Precision
        seed=seed,
        device=device,
        eval_every=eval_every,
        eval_texts=eval_texts,
        eval_beir=eval_beir,
        eval_split=eval_split,
        select_by=select_by,
        resume=resume,
        data_options=DataOptions(
            sentences=sentences,
            titles=titles,
            documents=documents,
            max_texts_per_source=max_texts_per_source,
            seed=data_seed,
        ),
        progress=progress,
    )
    result = distill(config)
    alignment = result.manifest.alignment
    typer.echo(f"student saved to {result.out}")
    if alignment is not None:
        typer.echo(f"held-out alignment: mean cosine {alignment.mean_cosine:.4f}, mse {alignment.mse:.4f}")
