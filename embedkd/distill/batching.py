"""Length-bucketed batches, so 10-token queries are not padded to the length of long sentences."""

from __future__ import annotations

import random
from collections.abc import Sequence

__all__ = ["bucketed_batches"]


def bucketed_batches(
    lengths: Sequence[int], batch_size: int, *, seed: int, bucket_batches: int = 64
) -> list[list[int]]:
    """One epoch of batches of indices.

    Indices are shuffled, cut into windows of ``bucket_batches * batch_size``, sorted by length inside each
    window and cut into batches; the batch order is shuffled again. Every index appears exactly once.
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * bucket_batches
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches
