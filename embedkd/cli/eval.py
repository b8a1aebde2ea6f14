"""``embedkd eval``: BEIR-exact nDCG@10 / Recall@100 for any query model against any document model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from embedkd.cli._app import app
from embedkd.cli._options import BatchSize, Device, FuseWeight, PrecisionOpt
from embedkd.data import load_beir
from embedkd.device import Precision
from embedkd.evaluation import score_retrieval
from embedkd.models.encoder import Encoder


@app.command("eval")
def eval_command(
    data: Annotated[
        Path, typer.Option("--input", "-i", "--data", help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/).")
    ],
    query_model: Annotated[
        str,
        typer.Option(help="Model that embeds the queries: a student folder, the teacher, or any model. Required."),
    ],
    doc_model: Annotated[
        str | None,
        typer.Option(
            help="Model that embeds the documents, e.g. the teacher for asymmetric search (default: the "
            "query model, symmetric)."
        ),
    ] = None,
    split: Annotated[str, typer.Option(help="qrels split to score.")] = "test",
    fuse_model: Annotated[
        str | None,
        typer.Option(
            help="Also score every document in this model's own space (e.g. the student's base, minilm-l6) and add "
            "it, times --fuse-weight: the fusion `embedkd search --fuse-index` does, over all documents instead of "
            "the top candidates (benchmarks/results/dual_space_*.md).",
        ),
    ] = None,
    fuse_weight: FuseWeight = 1.0,
    batch_size: BatchSize = 64,
    device: Device = "auto",
    precision: PrecisionOpt = Precision.FP32,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Score retrieval on a BEIR folder; document embeddings are cached, so re-runs are fast."""
    dataset = load_beir(data, split)
    doc_name = doc_model or query_model
    value = Precision(precision).value
    doc_encoder = Encoder.load(doc_name, device=device, precision=value)
    query_encoder = (
        doc_encoder if doc_name == query_model else Encoder.load(query_model, device=device, precision=value)
    )
    if query_encoder.dimension != doc_encoder.dimension:
        from embedkd.errors import InputError

        raise InputError(
            f"{query_model} writes {query_encoder.dimension}-d vectors, {doc_name} writes "
            f"{doc_encoder.dimension}-d vectors: they do not share a space"
        )
    docs = doc_encoder.encode_cached(dataset.doc_texts(), role="document", batch_size=batch_size)
    queries = query_encoder.encode_query(list(dataset.queries.values()), batch_size=batch_size)
    if fuse_model is not None:  # [q, sqrt(w) q'] . [d, sqrt(w) d'] = q.d + w q'.d': the fused score, exactly
        fuser = Encoder.load(fuse_model, device=device, precision=value)
        root = np.float32(np.sqrt(fuse_weight))
        fused_docs = fuser.encode_cached(dataset.doc_texts(), role="document", batch_size=batch_size)
        docs = np.concatenate([docs, root * fused_docs], axis=1)
        fused_queries = fuser.encode_query(list(dataset.queries.values()), batch_size=batch_size)
        queries = np.concatenate([queries, root * fused_queries], axis=1)
    scores = score_retrieval(dataset, queries, docs, device=doc_encoder.device)
    mode = "symmetric" if query_encoder.fingerprint == doc_encoder.fingerprint else "asymmetric"
    result = {
        "dataset": str(data),
        "split": split,
        "query_model": query_model,
        "doc_model": doc_name,
        "mode": mode,
        **({"fused_with": fuse_model, "fuse_weight": fuse_weight} if fuse_model else {}),
        **scores.to_dict(),
    }
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        typer.echo(
            f"{mode}{f' + {fuse_model} (weight {fuse_weight:g})' if fuse_model else ''}: queries {query_model} / "
            f"documents {doc_name} on {data.name} ({split}, "
            f"{scores.queries} queries)\n  nDCG@10 {scores.ndcg_at_10:.4f}   Recall@100 {scores.recall_at_100:.4f}"
            f"   MRR {scores.mrr:.4f}"
        )
