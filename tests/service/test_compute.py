from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from embedkd.service.compute import DOCUMENTS, QUERIES, ComputeThread


def test_work_runs_on_one_thread_queries_first_and_errors_reach_the_caller() -> None:
    compute = ComputeThread()
    order: list[str] = []
    gate = threading.Event()
    try:
        blocker = compute.submit(gate.wait, 5)  # holds the thread while the rest queues up
        later = [
            compute.submit(order.append, "document-1", priority=DOCUMENTS),
            compute.submit(order.append, "document-2", priority=DOCUMENTS),
            compute.submit(order.append, "query", priority=QUERIES),
        ]
        gate.set()
        assert blocker.result(5) is True
        for future in later:
            future.result(5)
        assert order == ["query", "document-1", "document-2"]  # priority first, then arrival order
        names = {compute.call(lambda: threading.current_thread().name) for _ in range(3)}
        assert names == {"embedkd-compute"}
        assert compute.call(lambda: compute.call(lambda: 7)) == 7  # a call from the thread itself runs inline
        with pytest.raises(ZeroDivisionError):
            compute.call(lambda: 1 / 0)
        assert asyncio.run(compute.run(lambda x: x + 1, 1)) == 2  # the thread survives a failure
    finally:
        compute.shutdown()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="OS thread names are read from /proc")
def test_the_compute_thread_carries_an_os_name_that_its_own_threads_inherit() -> None:
    def comm() -> str:
        return Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip()

    compute = ComputeThread()
    try:
        assert compute.call(comm) == "ekd-compute"
        child: list[str] = []
        assert compute.call(lambda: _run_in_new_thread(lambda: child.append(comm()))) is None
        assert child == ["ekd-compute"]  # e.g. OpenMP's workers, started from the compute thread
        assert comm() != "ekd-compute"  # the caller's own name is untouched
    finally:
        compute.shutdown()


def _run_in_new_thread(fn: Callable[[], object]) -> None:
    thread = threading.Thread(target=fn)
    thread.start()
    thread.join()


def test_several_workers_run_work_at_once_and_all_stop_at_shutdown() -> None:
    compute = ComputeThread(workers=2)
    together = threading.Barrier(2, timeout=10)  # two calls meet only if two workers run them at once
    first, second = compute.submit(together.wait), compute.submit(together.wait)
    assert {first.result(10), second.result(10)} == {0, 1}
    assert compute.call(lambda: threading.current_thread().name) in {"embedkd-compute-0", "embedkd-compute-1"}
    gate = threading.Event()
    started = threading.Semaphore(0)

    def hold() -> bool:
        started.release()
        return gate.wait(10)

    busy = [compute.submit(hold) for _ in range(2)]
    assert started.acquire(timeout=10) and started.acquire(timeout=10)  # both workers held
    queued = compute.submit(lambda: "never")
    compute.shutdown()
    gate.set()
    assert all(f.result(10) for f in busy)
    with pytest.raises(RuntimeError, match="shutting down"):
        queued.result(10)
    for thread in compute._threads:
        thread.join(10)
        assert not thread.is_alive()


def test_map_chunks_keeps_order_and_lets_queries_in_between() -> None:
    compute = ComputeThread()
    seen: list[int] = []

    def embed(texts: list[str]) -> np.ndarray:
        seen.append(len(texts))
        time.sleep(0.01)
        return np.array([[float(t)] for t in texts], dtype=np.float32)

    try:
        texts = [str(i) for i in range(20)]
        out = compute.map_chunks(embed, texts, chunk=8)
        np.testing.assert_array_equal(out[:, 0], np.arange(20, dtype=np.float32))
        assert seen == [8, 8, 4]
        # a query submitted while the chunks run does not wait for all of them
        finished: list[str] = []
        worker = threading.Thread(
            target=lambda: (compute.map_chunks(embed, [str(i) for i in range(40)], chunk=4), finished.append("docs"))
        )
        worker.start()
        time.sleep(0.015)
        compute.call(finished.append, "query")
        worker.join(5)
        assert finished == ["query", "docs"]
    finally:
        compute.shutdown()


def test_shutdown_fails_queued_work_and_refuses_new_work() -> None:
    compute = ComputeThread()
    gate, started = threading.Event(), threading.Event()
    running = compute.submit(lambda: started.set() or gate.wait(5))
    assert started.wait(5)
    queued = compute.submit(lambda: "never")
    compute.shutdown()
    gate.set()
    assert running.result(5) is True
    with pytest.raises(RuntimeError, match="shutting down"):
        queued.result(5)
    with pytest.raises(RuntimeError, match="shutting down"):
        compute.submit(lambda: None)


def test_the_server_loads_and_runs_every_model_on_its_compute_thread(make_client, monkeypatch) -> None:
    from embedkd.models.encoder import Encoder

    threads: set[str] = set()
    for name in ("load", "embed_tokens", "encode"):
        original = getattr(Encoder, name)

        def spy(*args, __original=original, **kwargs):  # type: ignore[no-untyped-def]
            threads.add(threading.current_thread().name)
            return __original(*args, **kwargs)

        monkeypatch.setattr(Encoder, name, staticmethod(spy) if name == "load" else spy)
    client: TestClient = make_client()
    assert client.post("/v1/embeddings", json={"input": ["a query"], "model": "student"}).status_code == 200
    assert client.post("/search", json={"query": "river water", "k": 2, "mode": "teacher"}).status_code == 200
    docs = {"documents": [{"id": "new", "title": "New", "text": "a new document about rivers"}]}
    assert client.post("/documents", json=docs).status_code == 200
    assert threads == {"embedkd-compute"}


def test_run_aside_uses_a_thread_that_ends_with_the_work() -> None:
    compute = ComputeThread()
    seen: list[threading.Thread] = []

    def work(x: int) -> int:
        seen.append(threading.current_thread())
        return x * 2

    async def run() -> int:
        assert await compute.run_aside(work, 21) == 42
        with pytest.raises(ZeroDivisionError):
            await compute.run_aside(lambda: 1 / 0)
        return await compute.run(lambda: threading.current_thread().name)

    try:
        assert asyncio.run(run()) == "embedkd-compute"
        seen[0].join(5)
        assert seen[0].name == "embedkd-compute-aside" and not seen[0].is_alive()
    finally:
        compute.shutdown()
