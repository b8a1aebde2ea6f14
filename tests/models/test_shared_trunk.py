"""SharedTrunk: a student and its base in one pass, where the student's lower layers are the base's own."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embedkd.models.encoder import Encoder
from embedkd.models.shared_trunk import SharedTrunk
from embedkd.testing import build_student_of

TEXTS = ["apple", "river delta water flow estuary and the sea beyond it", "violin concert", "x y", "stone " * 20]


def test_one_pass_gives_both_encoders_vectors_on_padded_batches(
    tiny_model_factory: Callable[..., Path], tmp_path: Path
) -> None:
    base_dir = tiny_model_factory(hidden=32, layers=3, seed=5)
    base = Encoder.load(base_dir, device="cpu")
    student = Encoder.load(build_student_of(base_dir, tmp_path / "student"), device="cpu")
    trunk = SharedTrunk.find(student, base)
    assert trunk is not None and trunk.shared == 2
    own, other = trunk.encode_query(TEXTS, batch_size=2)  # texts of different lengths: padded batches
    assert own.shape == (5, 48) and other.shape == (5, 32)
    np.testing.assert_allclose(np.sum(own * student.encode_query(TEXTS), axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.sum(other * base.encode_query(TEXTS), axis=1), 1.0, atol=1e-5)
    empty = trunk.encode_query([])
    assert empty[0].shape == (0, 48) and empty[1].shape == (0, 32)


def test_no_shared_pass_between_unrelated_models(tiny_model_factory: Callable[..., Path]) -> None:
    a = Encoder.load(tiny_model_factory(hidden=32, seed=5), device="cpu")
    b = Encoder.load(tiny_model_factory(hidden=32, seed=6), device="cpu")
    assert SharedTrunk.find(a, b) is None


def test_no_shared_pass_when_the_word_embeddings_differ(
    tiny_model_factory: Callable[..., Path], tmp_path: Path
) -> None:
    from sentence_transformers import SentenceTransformer

    base_dir = tiny_model_factory(hidden=32, layers=3, seed=5)
    folder = build_student_of(base_dir, tmp_path / "student")
    model = SentenceTransformer(str(folder), device="cpu")
    backbone: Any = model[0].auto_model
    with torch.no_grad():
        backbone.embeddings.word_embeddings.weight.add_(0.01)
    model.save(str(folder))
    assert SharedTrunk.find(Encoder.load(folder, device="cpu"), Encoder.load(base_dir, device="cpu")) is None
