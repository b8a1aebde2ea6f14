from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

WORDS = (
    "apple river stone cloud music engine doctor garden window planet silver market "
    "winter yellow forest coffee bridge rocket ocean violin castle desert tiger pencil"
).split()


@dataclass
class BowData:
    texts_path: Path
    embeddings_path: Path
    texts: list[str]
    embeddings: np.ndarray


@pytest.fixture
def bow_teacher(tmp_path: Path) -> BowData:
    """A black-box teacher with real structure: the normalised sum of random word vectors."""
    rng = random.Random(0)
    vectors = {w: v for w, v in zip(WORDS, np.random.default_rng(0).normal(size=(len(WORDS), 24)), strict=True)}
    texts = sorted({" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6))) for _ in range(400)})
    emb = np.stack([sum(vectors[w] for w in t.split()) for t in texts]).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    texts_path = tmp_path / "bow.txt"
    texts_path.write_text("\n".join(texts) + "\n")
    embeddings_path = tmp_path / "bow.npy"
    np.save(embeddings_path, emb)
    return BowData(texts_path, embeddings_path, texts, emb)
