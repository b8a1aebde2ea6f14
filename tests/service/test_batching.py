from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from embedkd.models import Encoder
from embedkd.service.batching import MicroBatcher, Overloaded
from embedkd.service.encoding import EncoderStages, postprocess
from embedkd.service.metrics import Metrics


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


def test_a_failing_batch_fails_only_its_own_request_and_the_batcher_keeps_serving(tiny_model_dir: Path) -> None:
    from embedkd.service.batching import EncodeFailed

    batcher, _ = make_batcher(tiny_model_dir)
    real_pre = batcher.stages.pre

    def pre(texts: list[str]):  # type: ignore[no-untyped-def]
        if any("poison" in t for t in texts):
            raise ValueError("the tokenizer choked")
        return real_pre(texts)

    batcher.stages.pre = pre  # type: ignore[method-assign]

    async def run() -> list[object]:
        await batcher.start()
        try:
            together = [batcher.encode(["fine one"]), batcher.encode(["poison pill"]), batcher.encode(["fine two"])]
            results = await asyncio.gather(*together, return_exceptions=True)
            assert batcher.healthy
            after, _ = await batcher.encode(["served after the failure"])  # the loops are still alive
            assert after.shape[0] == 1
            return results
        finally:
            await batcher.stop()

    results = asyncio.run(run())
    assert isinstance(results[1], EncodeFailed) and results[1].bad_input
    assert not isinstance(results[0], Exception) and not isinstance(results[2], Exception)


def test_a_model_error_is_an_internal_error_and_a_stuck_model_times_out(tiny_model_dir: Path) -> None:
    import time as _time

    from embedkd.service.batching import BatchTimeout, EncodeFailed

    batcher, _ = make_batcher(tiny_model_dir, timeout_s=0.5)
    real_core = batcher.stages.core
    mode = {"value": "raise"}

    def core(tokens):  # type: ignore[no-untyped-def]
        if mode["value"] == "raise":
            raise RuntimeError("out of memory")
        if mode["value"] == "hang":
            _time.sleep(2)
        return real_core(tokens)

    batcher.stages.core = core  # type: ignore[method-assign]

    async def run() -> None:
        await batcher.start()
        try:
            with pytest.raises(EncodeFailed) as info:
                await batcher.encode(["x"])
            assert not info.value.bad_input
            mode["value"] = "hang"
            with pytest.raises(BatchTimeout):
                await batcher.encode(["y"])
            mode["value"] = "ok"
            await asyncio.sleep(2)  # the stuck forward finishes; the batcher goes on
            raw, _ = await batcher.encode(["z"])
            assert raw.shape[0] == 1
        finally:
            await batcher.stop()

    asyncio.run(run())


def test_with_two_compute_workers_two_batches_of_a_torch_model_run_at_once(tiny_model_dir: Path, monkeypatch) -> None:
    import threading

    from embedkd.service.compute import ComputeThread

    compute = ComputeThread(workers=2)
    batcher = MicroBatcher(
        EncoderStages(Encoder.load(tiny_model_dir, device="cpu"), role="query"),
        name="student", metrics=Metrics(), max_batch_size=1, max_wait_ms=0.0, max_queue=100, compute=compute,
    )  # fmt: skip
    assert batcher.parallel == 2
    both_inside = threading.Barrier(2, timeout=10)  # passes only if two forward passes are running together
    original = EncoderStages.core

    def core(self: EncoderStages, tokens):  # type: ignore[no-untyped-def]
        both_inside.wait()
        return original(self, tokens)

    monkeypatch.setattr(EncoderStages, "core", core)

    async def run() -> list[tuple[np.ndarray, list[int]]]:
        await batcher.start()
        try:
            return await asyncio.gather(batcher.encode(["first query"]), batcher.encode(["second query"]))
        finally:
            await batcher.stop()

    try:
        results = asyncio.run(run())
    finally:
        compute.shutdown()
    expected = Encoder.load(tiny_model_dir, device="cpu").encode(["first query", "second query"])
    np.testing.assert_allclose(np.concatenate([postprocess(raw) for raw, _ in results]), expected, atol=1e-5)


def test_the_next_batch_starts_without_the_event_loop(tiny_model_dir: Path, monkeypatch) -> None:
    """The compute thread takes the next batch itself: with the event loop blocked, every queued batch is
    still encoded (the loop only hands the rows back)."""
    import time as _time

    batcher, _ = make_batcher(tiny_model_dir, max_batch_size=1)
    calls: list[float] = []
    original = EncoderStages.core

    def core(self: EncoderStages, tokens):  # type: ignore[no-untyped-def]
        calls.append(_time.monotonic())
        return original(self, tokens)

    monkeypatch.setattr(EncoderStages, "core", core)

    async def run() -> tuple[int, list[tuple[np.ndarray, list[int]]]]:
        await batcher.start()
        try:
            tasks = [asyncio.ensure_future(batcher.encode([f"query {i}"])) for i in range(3)]
            await asyncio.sleep(0)  # the three requests are queued
            deadline = _time.monotonic() + 10
            while len(calls) < 3 and _time.monotonic() < deadline:
                _time.sleep(0.01)  # blocks the event loop: no batch can be handed over by it
            during = len(calls)
            return during, await asyncio.gather(*tasks)
        finally:
            await batcher.stop()

    during, results = asyncio.run(run())
    assert during == 3
    assert [raw.shape[0] for raw, _ in results] == [1, 1, 1]


def test_under_load_the_next_batch_waits_for_the_last_batch_s_answers(tiny_model_dir: Path, monkeypatch) -> None:
    """With ``answer_wait_ms``, a chained forward pass starts once the event loop has answered the batch before
    it; and a blocked loop delays it by that wait at most."""
    import time as _time

    batcher, _ = make_batcher(tiny_model_dir, max_batch_size=1, answer_wait_ms=2000.0)
    answered: list[int] = []
    seen: list[int] = []  # answers already sent when each forward pass started
    original = EncoderStages.core

    def core(self: EncoderStages, tokens):  # type: ignore[no-untyped-def]
        seen.append(len(answered))
        return original(self, tokens)

    monkeypatch.setattr(EncoderStages, "core", core)
    post = MicroBatcher._post

    def slow_post(*args):  # type: ignore[no-untyped-def]
        _time.sleep(0.05)  # a busy event loop: without the wait, the next forward pass would start meanwhile
        post(*args)

    monkeypatch.setattr(MicroBatcher, "_post", staticmethod(slow_post))

    async def one(i: int) -> None:
        await batcher.encode([f"query {i}"])
        answered.append(i)

    async def run() -> None:
        await batcher.start()
        try:
            await asyncio.gather(*(one(i) for i in range(4)))
        finally:
            await batcher.stop()

    asyncio.run(run())
    assert seen == [0, 1, 2, 3]
    monkeypatch.setattr(MicroBatcher, "_post", staticmethod(post))

    blocked, _ = make_batcher(tiny_model_dir, max_batch_size=1, answer_wait_ms=50.0)
    calls: list[float] = []
    monkeypatch.setattr(
        EncoderStages, "core", lambda self, tokens: calls.append(_time.monotonic()) or original(self, tokens)
    )

    async def run_blocked() -> int:
        await blocked.start()
        try:
            tasks = [asyncio.ensure_future(blocked.encode([f"query {i}"])) for i in range(3)]
            await asyncio.sleep(0)
            deadline = _time.monotonic() + 10
            while len(calls) < 3 and _time.monotonic() < deadline:
                _time.sleep(0.01)  # the loop answers nothing: each chained batch waits 50 ms, then runs
            during = len(calls)
            await asyncio.gather(*tasks)
            return during
        finally:
            await blocked.stop()

    assert asyncio.run(run_blocked()) == 3


def test_an_idle_model_waits_max_wait_ms_for_more_texts(tiny_model_dir: Path) -> None:
    batcher, metrics = make_batcher(tiny_model_dir, max_wait_ms=500.0)

    async def run() -> None:
        await batcher.start()
        try:
            first = asyncio.ensure_future(batcher.encode(["first"]))
            await asyncio.sleep(0.05)  # well inside the wait: joins the first text's batch
            await asyncio.gather(first, batcher.encode(["second"]))
        finally:
            await batcher.stop()

    asyncio.run(run())
    family = next(m for m in metrics.registry.collect() if m.name == "embedkd_batch_size")
    counts = {x.name.rsplit("_", 1)[1]: x.value for x in family.samples if x.name.endswith(("_sum", "_count"))}
    assert counts == {"sum": 2, "count": 1}


def test_the_batcher_is_unhealthy_once_its_compute_thread_has_stopped(tiny_model_dir: Path) -> None:
    from embedkd.service.batching import EncodeFailed
    from embedkd.service.compute import ComputeThread

    compute = ComputeThread()
    batcher = MicroBatcher(
        EncoderStages(Encoder.load(tiny_model_dir, device="cpu"), role="query"),
        name="student", metrics=Metrics(), max_batch_size=4, max_wait_ms=0.0, max_queue=100, compute=compute,
    )  # fmt: skip

    async def run() -> None:
        await batcher.start()
        try:
            await batcher.encode(["a query"])
            assert batcher.healthy
            compute.shutdown()
            assert not batcher.healthy
            with pytest.raises(EncodeFailed, match="not running"):
                await batcher.encode(["after the shutdown"])
        finally:
            await batcher.stop()

    asyncio.run(run())
