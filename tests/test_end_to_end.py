"""The real path, end to end: the packaged MiniLM is aligned to precomputed mpnet embeddings (a black-box
teacher), saved, and queries an index of those embeddings. Needs ../shared/data (skipped without it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embedkd.data import load_beir
from embedkd.data.documents import Document
from embedkd.distill import DistillConfig, Teacher, distill
from embedkd.distill.teacher import read_aligned_texts
from embedkd.index import build_index
from embedkd.models import Encoder
from embedkd.retrieval import AsymmetricRetriever

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
BEIR = SHARED / "beir" / "scifact"
EMBEDDINGS = SHARED / "embeddings" / "scifact-mpnet-base" / "corpus.f16.npy"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not EMBEDDINGS.is_file(), reason="needs ../shared/data (SciFact and its mpnet embeddings)"),
]


def test_packaged_student_aligns_to_a_black_box_teacher_and_searches(tmp_path: Path) -> None:
    texts = read_aligned_texts(BEIR, EMBEDDINGS)
    vectors = np.load(EMBEDDINGS)
    keep = 400  # the first 400 abstracts: enough for a real run, quick on a CPU
    # jsonl keeps each text byte for byte (abstracts contain newlines), so the cache keys match the index's
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[:keep]))
    np.save(tmp_path / "docs.npy", vectors[:keep])

    result = distill(
        DistillConfig(
            out=tmp_path / "student",
            teacher="mpnet-precomputed",  # not a model here: a black box known only by its embeddings
            student="minilm-l6",
            teacher_embeddings=[tmp_path / "docs.npy"],
            teacher_texts=[tmp_path / "docs.jsonl"],
            max_steps=4,
            batch_size=8,
            max_seq_length=64,
            eval_every=2,
            eval_texts=40,
            init_sample=360,
            progress=False,
        )
    )
    manifest = result.manifest
    assert manifest.teacher.dimension == 768 and manifest.alignment is not None
    assert 0.3 < manifest.alignment.mean_cosine <= 1.0  # ridge init alone lands well above chance
    student = Encoder.load(result.out, device="cpu")
    assert student.dimension == 768 and student.max_seq_length == 256  # the base's limit is restored

    teacher = Teacher.black_box("mpnet-precomputed", dimension=768)
    dataset = load_beir(BEIR, "test")
    order = list(dataset.corpus)  # read_aligned_texts follows ids.txt; rebuild documents in that order
    ids = (EMBEDDINGS.parent / "ids.txt").read_text().split()[:keep]
    docs = [Document(id=i, title=dataset.corpus[i]["title"], text=dataset.corpus[i]["text"]) for i in ids]
    assert set(ids) <= set(order)
    index = build_index(
        tmp_path / "index",
        docs,
        teacher=teacher.ref,
        embed=lambda batch: teacher.embeddings(batch, progress=False),
        chunking=False,
        progress=False,
    )
    retriever = AsymmetricRetriever(index, student=student)
    hits = retriever.search([texts[7]], 10)[0]  # a training text, so the wiring is what is tested
    assert len(hits) == 10 and docs[7].id in {h.id for h in hits}
    index.close()
