import random

import numpy as np

from benchmarks.word_replacement import neighbours, replace_words


def test_neighbours_are_the_nearest_other_words() -> None:
    words = ["cat", "dog", "car", "bus"]
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]], dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    near = neighbours(vectors, k=1)
    assert [words[int(i)] for i in near[:, 0]] == ["dog", "cat", "bus", "car"]


def test_replace_words_keeps_unknown_words_punctuation_and_case() -> None:
    words = ["cat", "dog"]
    index = {w: i for i, w in enumerate(words)}
    near = np.array([[1], [0]])
    out = replace_words("The Cat, the dog & 42 zebras?", index, words, near, 1.0, random.Random(0))
    assert out == "The Dog, the cat & 42 zebras?"
    assert replace_words("The Cat", index, words, near, 0.0, random.Random(0)) == "The Cat"
