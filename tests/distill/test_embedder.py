"""Every way of turning text into vectors is one `Embedder`: a loaded model, a cached teacher, a black box."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedkd.distill import Teacher
from embedkd.errors import InputError
from embedkd.models import Encoder
from embedkd.models.embedder import Embedder

from .conftest import BowData


def test_model_and_teacher_and_black_box_are_one_embedder(
    tiny_model_dir: Path, bow_teacher: BowData, isolated_cache: Path
) -> None:
    encoder = Encoder.load(tiny_model_dir, device="cpu")
    teacher = Teacher.from_model(str(tiny_model_dir), device="cpu")
    black_box = Teacher.black_box("bow", dimension=24)
    for embedder in (encoder, teacher, black_box):
        assert isinstance(embedder, Embedder)
    assert not isinstance(object(), Embedder)

    # a model-backed teacher is the encoder behind its cache: same weights, same vectors (a folder teacher
    # keeps its full path as its name, so that an index manifest can load it again)
    assert (teacher.dimension, teacher.fingerprint) == (encoder.dimension, encoder.fingerprint)
    assert teacher.name == str(tiny_model_dir)
    texts = ["a first text", "another text"]
    np.testing.assert_allclose(
        teacher.encode_document(texts), encoder.encode_document(texts), atol=1e-3
    )  # cache stores fp16
    assert teacher.cache.missing(texts) == []  # filled on the way

    # a black box is the same embedder with no model: it answers from imported vectors only
    assert black_box.is_black_box and not teacher.is_black_box
    black_box.import_embeddings(bow_teacher.texts, bow_teacher.embeddings_path)
    got = black_box.encode_query(bow_teacher.texts[:5])
    np.testing.assert_allclose(got, bow_teacher.embeddings[:5], atol=1e-3)
    assert black_box.dimension == got.shape[1] == 24
    with pytest.raises(InputError, match="no precomputed embedding"):
        black_box.encode_document(["a text nobody embedded"])
