from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from embedkd.data.documents import Document
from embedkd.distill.teacher import Teacher

WORDS = "apple river stone cloud music engine doctor garden window planet silver market tiger violin".split()


def make_docs(n: int, *, seed: int = 0, max_words: int = 120) -> list[Document]:
    rng = random.Random(seed)
    return [
        Document(
            id=f"d{i}",
            title=f"title {i}",
            text=" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, max_words))),
            metadata={"lang": "en" if i % 2 else "fr", "group": i % 3},
        )
        for i in range(n)
    ]


@pytest.fixture
def teacher(tiny_model_factory: Callable[..., Path], isolated_cache: Path) -> Teacher:
    return Teacher.from_model(str(tiny_model_factory(hidden=48, seed=1)))


@pytest.fixture
def embed(teacher: Teacher) -> Callable[[list[str]], np.ndarray]:
    return lambda texts: teacher.embeddings(texts, progress=False)
