from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from embedkd.models import Encoder
from service.batching import MicroBatcher, Overloaded
from service.encoding import EncoderStages, postprocess
from service.metrics import Metrics


def make_batcher(model_dir: Path, **limits: float) -> tuple[MicroBatcher, Metrics]:
    metrics = Metrics()
    settings = {"max_batch_size": 16, "max_wait_ms": 0.0, "max_queue": 1000, **limits}
    batcher = MicroBatcher(
        EncoderStages(Encoder.load(model_dir, device="cpu"), role="query"),
        name="student",
        metrics=metrics,
        **settings,  # type: ignore[arg-type]
    )
    return batcher, metrics


def test_concurrent_requests_are_batched_and_each_gets_its_own_rows(tiny_model_dir: Path) -> None:
    batcher, metrics = make_batcher(tiny_model_dir)
    texts = [f"query number {i} about topic {i % 7}" for i in range(60)]
    expected = Encoder.load(tiny_model_dir, device="cpu").encode(texts)

    async def run() -> list[tuple[np.ndarray, list[int]]]:
        await batcher.start()
        try:
            requests = [batcher.encode([t]) for t in texts[:40]] + [batcher.encode(texts[40:])]
            return await asyncio.gather(*requests)
        finally:
            await batcher.stop()

    results = asyncio.run(run())
    rows = np.concatenate([postprocess(raw) for raw, _ in results])
    np.testing.assert_allclose(rows, expected, atol=1e-5)
    assert all(count > 0 for _, counts in results for count in counts)
    family = next(m for m in metrics.registry.collect() if m.name == "embedkd_batch_size")
    texts_seen = next(x.value for x in family.samples if x.name.endswith("_sum"))
    n_batches = next(x.value for x in family.samples if x.name.endswith("_count"))
    assert texts_seen == 60 and n_batches < 60  # concurrency produced real batches
    assert batcher.pending == 0


def test_a_full_queue_refuses_new_work(tiny_model_dir: Path) -> None:
    batcher, metrics = make_batcher(tiny_model_dir, max_queue=3)

    async def run() -> None:
        await batcher.start()
        try:
            with pytest.raises(Overloaded, match="limit 3"):
                await batcher.encode(["a", "b", "c", "d"])
            raw, _ = await batcher.encode(["a", "b", "c"])  # at the limit is fine
            assert raw.shape[0] == 3
        finally:
            await batcher.stop()

    asyncio.run(run())
    rejected = [s for s in metrics.registry.collect() if s.name == "embedkd_rejected"][0]
    assert any(x.value == 1 for x in rejected.samples if x.name.endswith("_total"))
