"""``embedkd encode --engine ray``: the teacher's pass over a corpus on a Ray Data actor pool.

The driver reads the documents and cuts them into the chunks an index makes; Ray Data runs the teacher in
an actor pool (one actor per GPU, or per ``cpus_per_worker`` CPUs) over the chunks of the shards not
written yet; the driver writes each shard as soon as all its rows are back (the stream keeps the input
order), so a killed run keeps its finished shards and a rerun encodes only the rest. ``ray.init`` joins
the cluster in ``RAY_ADDRESS`` when it is set, and starts a local one otherwise.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from embedkd.data.documents import Document
from embedkd.errors import InputError
from embedkd.index.chunking import chunk_overlap
from embedkd.index.shards import ShardManifest, ShardSet, chunk_for_index, text_sha

__all__ = ["encode_with_ray"]

logger = logging.getLogger(__name__)


class _TeacherActor:
    """One teacher per actor, loaded once; a batch of chunk texts in, their vectors out."""

    def __init__(self, teacher: str, precision: str, threads: int, device: str) -> None:
        import torch

        from embedkd.models.encoder import Encoder

        torch.set_num_threads(max(1, threads))
        self.encoder = Encoder.load(teacher, device=device, precision=precision)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        vectors = self.encoder.encode(list(batch["text"]), role="document", batch_size=len(batch["text"]))
        return {
            "shard": batch["shard"],
            "id": batch["id"],
            "ordinal": batch["ordinal"],
            "text_sha": batch["text_sha"],
            "vector": list(vectors),
        }


def encode_with_ray(
    docs: list[Document],
    out: Path,
    *,
    teacher: str,
    workers: int = 1,
    cpus_per_worker: int = 1,
    batch_size: int = 32,
    shard_size: int = 1000,
    precision: str = "fp32",
    chunking: dict[str, Any] | None = None,
    max_shards: int | None = None,
    source: str = "",
) -> dict[str, int]:
    """Write the teacher's vectors of every chunk of ``docs`` into ``out`` as shards; returns counts."""
    try:
        import ray
    except ImportError as exc:
        raise InputError("--engine ray needs Ray Data: pip install 'embedkd[scale]'") from exc
    from embedkd.distill.teacher import Teacher

    ref = Teacher.from_model(teacher).ref
    # Index.create's defaults for what is not given: chunk at the teacher's limit, chunk_overlap's overlap
    chunking = {"enabled": True, **(chunking or {})}
    chunking["max_tokens"] = chunking.get("max_tokens") or ref.max_seq_length or 512
    chunking["overlap"] = chunk_overlap(chunking.get("overlap"), int(chunking["max_tokens"]))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    wanted = ShardManifest(ref, ref.dimension, precision, chunking, len(docs), shard_size, source, "ray")
    if (out / "manifest.json").is_file():
        have = ShardManifest.read(out)
        for key in ("dimension", "precision", "chunking", "documents", "shard_size"):
            if getattr(have, key) != getattr(wanted, key) or have.teacher.fingerprint != ref.fingerprint:
                raise InputError(f"{out} holds other embeddings ({key} differs); choose a new folder")
        wanted = have
    else:
        wanted.write(out)
    shards = ShardSet(out, wanted)
    todo = shards.missing()[: max_shards if max_shards is not None else None]
    if not todo:
        return {"shards_written": 0, "shards_total": wanted.shard_count(), "chunks": 0}
    rows: list[dict[str, Any]] = []
    expected: dict[int, int] = {}
    for shard in todo:
        part = docs[shard * shard_size : (shard + 1) * shard_size]
        chunks = chunk_for_index(part, ref, chunking)
        for doc, doc_chunks in zip(part, chunks, strict=True):
            for chunk in doc_chunks:
                rows.append(
                    {
                        "shard": shard,
                        "id": doc.id,
                        "ordinal": chunk.ordinal,
                        "text": chunk.encode_text,
                        "text_sha": text_sha(chunk.encode_text),
                    }
                )
        expected[shard] = sum(len(c) for c in chunks)

    import torch

    gpu = torch.cuda.is_available()
    ray.init(
        address=os.environ.get("RAY_ADDRESS") or None,
        num_cpus=None if os.environ.get("RAY_ADDRESS") else max(workers * cpus_per_worker, 1),
        ignore_reinit_error=True,
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=False,
    )
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # shards complete in order, so each is written early
    dataset = ray.data.from_items(rows).map_batches(
        _TeacherActor,
        fn_constructor_kwargs={
            "teacher": str(teacher),
            "precision": precision,
            "threads": cpus_per_worker,
            "device": "cuda" if gpu else "cpu",
        },
        batch_size=batch_size,
        concurrency=workers,
        num_cpus=cpus_per_worker,
        num_gpus=1 if gpu else 0,
    )
    pending: dict[int, list[dict[str, Any]]] = defaultdict(list)
    written = 0
    for row in dataset.iter_rows():
        shard = int(row["shard"])
        pending[shard].append(row)
        if len(pending[shard]) == expected[shard]:
            shards.write_shard(shard, pending.pop(shard))
            written += 1
            logger.info("shard %d written (%d of %d left)", shard, len(expected) - written, len(expected))
    return {"shards_written": written, "shards_total": wanted.shard_count(), "chunks": len(rows)}
