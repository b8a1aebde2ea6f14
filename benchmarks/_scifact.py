"""SciFact as the benchmarks read it: the dev / test splits and the teacher with its precomputed corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embedkd.data.beir import BeirDataset, load_beir
from embedkd.distill import Teacher
from embedkd.distill.teacher import read_aligned_texts
from embedkd.models import Encoder


def scifact_splits(data_root: Path) -> dict[str, BeirDataset]:
    """``dev`` (the train qrels, which choose) and ``test`` (recorded only)."""
    beir = data_root / "beir" / "scifact"
    return {"dev": load_beir(beir, "train"), "test": load_beir(beir, "test")}


def scifact_teacher(data_root: Path) -> Teacher:
    """The fp32 teacher, with the SciFact corpus's precomputed vectors imported into its cache when present."""
    teacher = Teacher.from_model("mpnet-base", precision="fp32")
    beir = data_root / "beir" / "scifact"
    precomputed = data_root / "embeddings" / "scifact-mpnet-base" / "corpus.f16.npy"
    if precomputed.is_file():
        teacher.import_embeddings(read_aligned_texts(beir, precomputed), precomputed)
    return teacher


def corpus_vectors(splits: dict[str, BeirDataset], teacher: Teacher, base: Encoder) -> tuple[np.ndarray, np.ndarray]:
    """The SciFact corpus (the same in every split) as the teacher and as ``base`` embed it, both cached."""
    docs = splits["dev"].doc_texts()
    return teacher.embeddings(docs, role="document"), base.encode_cached(docs, role="document", progress=False)
