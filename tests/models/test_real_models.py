"""End-to-end checks on the real packaged models (no network)."""

from __future__ import annotations

import numpy as np
import pytest

from embedkd.models import load_model

pytestmark = pytest.mark.slow


def test_packaged_minilm_encodes_sensibly() -> None:
    model = load_model("minilm-l6", device="cpu")
    sentences = [
        "How do I reset my password?",
        "What are the steps to change my password?",
        "The volcano erupted for three days.",
    ]
    embeddings = model.encode(sentences, convert_to_numpy=True, normalize_embeddings=True)
    assert embeddings.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    paraphrase = float(embeddings[0] @ embeddings[1])
    unrelated = float(embeddings[0] @ embeddings[2])
    assert paraphrase > unrelated + 0.3, (paraphrase, unrelated)
