"""An async micro-batcher: concurrent requests share forward passes, and the event loop never blocks.

Requests put their texts on a queue. A collector takes what is waiting, up to ``max_batch_size`` texts;
when the model is busy it keeps gathering until the model frees up or the batch is full (so batches grow
with load), and when the model is idle it waits at most ``max_wait_ms`` for more (default 0: an idle server
adds no delay). It sleeps on events, never polls.
Tokenising runs in a thread pool while the previous batch is in the forward pass, which runs on the
server's one compute thread (:mod:`embedkd.service.compute`), shared by every model. Past ``max_queue``
queued texts, new requests are refused with :class:`Overloaded`.

A failing batch fails only its own requests: when tokenising a batch fails, each request in it is
tokenised alone, so one bad input cannot fail its neighbours, and neither loop ever dies of an error.
Every request waits at most ``timeout_s``; :meth:`MicroBatcher.stop` fails whatever is still in flight,
so a shutdown never waits on a stuck request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from embedkd.service.compute import ComputeThread, name_os_thread
from embedkd.service.encoding import EncoderStages, Tokens
from embedkd.service.metrics import Metrics

__all__ = ["BatchTimeout", "EncodeFailed", "MicroBatcher", "Overloaded"]

logger = logging.getLogger("embedkd.service")


class Overloaded(Exception):
    """The queue is full; the caller should answer 503 and ask the client to retry."""


class BatchTimeout(Exception):
    """A request waited longer than the batcher's timeout (answered 503, retryable)."""


class EncodeFailed(Exception):
    """Encoding a request failed. ``bad_input`` tells a rejected input (4xx) from an internal error (500)."""

    def __init__(self, message: str, *, bad_input: bool) -> None:
        super().__init__(message)
        self.bad_input = bad_input


@dataclass(eq=False)  # hashed by identity: requests in flight are kept in a set
class _Request:
    texts: list[str]
    future: asyncio.Future[tuple[np.ndarray, list[int]]]
    rows: list[np.ndarray] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)


class MicroBatcher:
    def __init__(
        self,
        stages: EncoderStages,
        *,
        name: str,
        max_batch_size: int,
        max_wait_ms: float,
        max_queue: int,
        metrics: Metrics,
        timeout_s: float = 60.0,
        compute: ComputeThread | None = None,
    ) -> None:
        self.stages = stages
        self.timeout_s = timeout_s
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self.metrics = metrics
        self.pending = 0  # texts accepted and not yet answered
        self._queue: asyncio.Queue[tuple[_Request, int]] = asyncio.Queue()
        self._ready: asyncio.Queue[tuple[list[tuple[_Request, int]], Tokens]] = asyncio.Queue(maxsize=1)
        self._core_idle = asyncio.Event()  # set while a forward pass could start now
        self._core_idle.set()
        self._busy = 0
        self._arrived = asyncio.Event()
        self._pre_pool = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"{name}-pre", initializer=name_os_thread, initargs=("ekd-tokenize",)
        )
        self._own_compute = compute is None  # a batcher alone (tests) gets a compute thread of its own
        self._compute = compute or ComputeThread(f"{name}-core")
        # With several compute workers, as many batches run at once as the model allows (torch: any number).
        self.parallel = self._compute.workers if stages.concurrent else 1
        self._tasks: list[asyncio.Task[None]] = []
        self._inflight: set[_Request] = set()
        self._stopping = False

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._collect())]
        self._tasks += [asyncio.create_task(self._run_core()) for _ in range(self.parallel)]

    @property
    def healthy(self) -> bool:
        """Both loops are running (``/ready`` answers 503 otherwise)."""
        return bool(self._tasks) and not any(task.done() for task in self._tasks)

    async def stop(self) -> None:
        """Stop the loops and fail every request still waiting, without waiting on a running forward."""
        self._stopping = True
        for request in list(self._inflight):
            if not request.future.done():
                request.future.set_exception(Overloaded("the server is shutting down"))
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._pre_pool.shutdown(wait=False, cancel_futures=True)
        if self._own_compute:
            self._compute.shutdown()

    async def encode(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        """Raw (un-normalised) embeddings of ``texts`` and their token counts."""
        if self._stopping:
            raise Overloaded("the server is shutting down")
        if not self.healthy:
            raise EncodeFailed(f"the {self.name} batcher is not running", bad_input=False)
        if self.pending + len(texts) > self.max_queue:
            self.metrics.rejected.labels(self.name).inc()
            raise Overloaded(f"{self.pending} texts are queued for the {self.name} model (limit {self.max_queue})")
        request = _Request(texts, asyncio.get_running_loop().create_future())
        self.pending += len(texts)
        self.metrics.queue_depth.labels(self.name).set(self.pending)
        for position in range(len(texts)):
            self._queue.put_nowait((request, position))
        self._arrived.set()
        self._inflight.add(request)
        try:
            return await asyncio.wait_for(asyncio.shield(request.future), timeout=self.timeout_s)
        except asyncio.TimeoutError as exc:
            request.future.cancel()  # the collector skips it if it has not been batched yet
            self.metrics.rejected.labels(self.name).inc()
            raise BatchTimeout(
                f"the {self.name} model did not answer within {self.timeout_s:g} s; retry shortly"
            ) from exc
        finally:
            self._inflight.discard(request)
            self.pending -= len(texts)
            self.metrics.queue_depth.labels(self.name).set(self.pending)

    async def _collect(self) -> None:
        while True:
            batch = [await self._queue.get()]
            try:
                await self._collect_once(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - never let the loop die: fail this batch only
                logger.exception("the %s batcher failed a batch", self.name)
                self._fail(batch, EncodeFailed(f"encoding failed: {exc}", bad_input=False))

    async def _collect_once(self, batch: list[tuple[_Request, int]]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while len(batch) < self.max_batch_size:
            while len(batch) < self.max_batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            if len(batch) >= self.max_batch_size:
                break
            remaining = deadline - loop.time()
            if self._core_idle.is_set() and remaining <= 0:
                break  # the model is free and the wait is over: do not hold the batch back
            # Sleep until a text arrives, the model frees up, or the wait ends; never poll.
            self._arrived.clear()
            waits = [asyncio.ensure_future(self._arrived.wait())]
            if not self._core_idle.is_set():
                waits.append(asyncio.ensure_future(self._core_idle.wait()))
            _, pending = await asyncio.wait(
                waits, timeout=remaining if remaining > 0 else None, return_when=asyncio.FIRST_COMPLETED
            )
            for waiter in pending:
                waiter.cancel()
        batch = [(r, p) for r, p in batch if not r.future.done()]
        if not batch:
            return
        texts = [request.texts[position] for request, position in batch]
        try:
            tokens = await loop.run_in_executor(self._pre_pool, self.stages.pre, texts)
        except Exception:  # noqa: BLE001 - find the request(s) at fault, then go on with the rest
            batch, tokens = await self._isolate(batch)
            if not batch:
                return
        await self._ready.put((batch, tokens))

    async def _isolate(self, batch: list[tuple[_Request, int]]) -> tuple[list[tuple[_Request, int]], Tokens]:
        """Tokenise each request of a failed batch alone; fail those that still fail (bad input)."""
        loop = asyncio.get_running_loop()
        requests = list(dict.fromkeys(r for r, _ in batch))
        kept: list[tuple[_Request, int]] = []
        for request in requests:
            items = [(r, p) for r, p in batch if r is request]
            try:
                await loop.run_in_executor(self._pre_pool, self.stages.pre, [request.texts[p] for _, p in items])
            except Exception as exc:  # noqa: BLE001
                self._fail(items, EncodeFailed(f"cannot tokenise the input: {exc}", bad_input=True))
            else:
                kept.extend(items)
        texts = [r.texts[p] for r, p in kept]
        tokens = await loop.run_in_executor(self._pre_pool, self.stages.pre, texts) if kept else Tokens({}, [])
        return kept, tokens

    @staticmethod
    def _fail(batch: list[tuple[_Request, int]], exc: Exception) -> None:
        for request, _ in batch:
            if not request.future.done():
                request.future.set_exception(exc)

    async def _run_core(self) -> None:
        while True:
            batch, tokens = await self._ready.get()
            self._busy += 1
            if self._busy >= self.parallel:
                self._core_idle.clear()
            started = time.perf_counter()
            try:
                raw = await self._compute.run(self.stages.core, tokens)
                self.metrics.encode_seconds.labels(self.name).observe(time.perf_counter() - started)
                self.metrics.batch_size.labels(self.name).observe(len(batch))
                self._post(batch, raw, tokens.counts)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - hand the failure to this batch's requests only
                logger.exception("the %s model failed a batch of %d texts", self.name, len(batch))
                self._fail(batch, EncodeFailed(f"encoding failed: {exc}", bad_input=False))
            finally:
                self._busy -= 1
                self._core_idle.set()

    @staticmethod
    def _post(batch: list[tuple[_Request, int]], raw: np.ndarray, counts: list[int]) -> None:
        for (request, position), row, count in zip(batch, raw, counts, strict=True):
            if request.future.done():
                continue
            if not request.rows:
                request.rows = [np.empty(0)] * len(request.texts)
                request.counts = [0] * len(request.texts)
            request.rows[position] = row
            request.counts[position] = count
            if all(r.size for r in request.rows):
                request.future.set_result((np.stack(request.rows), request.counts))
