"""A micro-batcher: concurrent requests share forward passes, and the event loop never blocks.

Requests put their texts on a queue that the compute thread (:mod:`embedkd.service.compute`) reads
itself: a *drain* on that thread takes what is waiting, up to ``max_batch_size`` texts, tokenises it and
runs the forward pass; when texts are still waiting afterwards, the next drain starts on the spot. So
batches grow with load, and between two batches nothing waits on the event loop. (It used to: the event
loop formed each batch, so the model sat idle while the loop answered the previous batch's requests and
handed the next batch over; ``benchmarks/results/serving_batcher.md`` measures the difference.) When the
model is idle, a new drain waits at most ``max_wait_ms`` for more texts (default 0: an idle server adds no
delay). Results go back to the event loop in one callback per batch.

Under load, a chained drain first waits (at most ``answer_wait_ms``) until the event loop has answered the
previous batch's requests. On 2 cores the loop's work would otherwise run beside the next forward pass and
slow its OpenMP team down; done first, it also lets more requests join the next batch
(``benchmarks/results/serving_yield.md``).

Past ``max_queue`` queued texts, new requests are refused with :class:`Overloaded`.

A failing batch fails only its own requests: when tokenising a batch fails, each request in it is
tokenised alone, so one bad input cannot fail its neighbours, and the batcher goes on serving.
Every request waits at most ``timeout_s``; :meth:`MicroBatcher.stop` fails whatever is still in flight,
so a shutdown never waits on a stuck request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from embedkd.service.compute import ComputeThread
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
    missing: int = -1  # rows not yet encoded (set with the first row)


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
        answer_wait_ms: float = 0.0,
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
        self.pending = 0  # texts accepted and not yet answered (event loop only)
        self._lock = threading.Lock()  # guards _waiting and _drains (event loop and compute threads)
        self._arrived = threading.Condition(self._lock)
        self._waiting: deque[tuple[_Request, int]] = deque()
        self._drains = 0  # drains submitted to the compute thread and not finished
        self._own_compute = compute is None  # a batcher alone (tests) gets a compute thread of its own
        self._compute = compute or ComputeThread(f"{name}-core")
        # With several compute workers, as many batches run at once as the model allows (torch: any number).
        self.parallel = self._compute.workers if stages.concurrent else 1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inflight: set[_Request] = set()
        self._stopping = False
        self.answer_wait = answer_wait_ms / 1000
        self._answered = threading.Event()  # cleared while a batch's answers are still on the event loop
        self._answered.set()
        self._unanswered: set[_Request] = set()  # the last batch's finished requests not yet answered (loop only)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    @property
    def healthy(self) -> bool:
        """Started, not stopped, and its compute thread alive (``/ready`` answers 503 otherwise)."""
        return self._loop is not None and not self._stopping and self._compute.alive

    async def stop(self) -> None:
        """Fail every request still waiting, without waiting on a running forward pass."""
        self._stopping = True
        with self._lock:
            self._waiting.clear()
            self._arrived.notify_all()
        for request in list(self._inflight):
            if not request.future.done():
                request.future.set_exception(Overloaded("the server is shutting down"))
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
        self._inflight.add(request)
        try:
            with self._lock:
                self._waiting.extend((request, position) for position in range(len(texts)))
                self._arrived.notify()
                try:
                    self._schedule(fresh=True)
                except RuntimeError as exc:  # the compute thread has shut down
                    raise Overloaded("the server is shutting down") from exc
            return await asyncio.wait_for(asyncio.shield(request.future), timeout=self.timeout_s)
        except asyncio.TimeoutError as exc:
            request.future.cancel()  # a drain skips it if it has not been batched yet
            self.metrics.rejected.labels(self.name).inc()
            raise BatchTimeout(
                f"the {self.name} model did not answer within {self.timeout_s:g} s; retry shortly"
            ) from exc
        finally:
            self._inflight.discard(request)
            if request in self._unanswered:
                self._unanswered.discard(request)
                if not self._unanswered:  # set once this task's step, which writes the answer, is over
                    request.future.get_loop().call_soon(self._answered.set)
            self.pending -= len(texts)
            self.metrics.queue_depth.labels(self.name).set(self.pending)

    def _schedule(self, *, fresh: bool) -> None:
        """Start a drain on the compute thread if texts wait and fewer than ``parallel`` drains are out.
        Called with ``_lock`` held."""
        if self._waiting and self._drains < self.parallel and not self._stopping:
            self._drains += 1
            try:
                self._compute.submit(self._drain, fresh)
            except RuntimeError:
                self._drains -= 1
                raise

    def _drain(self, fresh: bool) -> None:
        """On the compute thread: take a batch, encode it, hand the rows to the event loop; then start the
        next drain at once if texts are waiting."""
        batch: list[tuple[_Request, int]] = []
        try:
            if not fresh and self.answer_wait > 0 and self.parallel == 1:
                self._answered.wait(self.answer_wait)  # the loop answers the last batch first (module doc)
            batch = self._take(wait=fresh and self.max_wait > 0)
            if batch:
                self._encode(batch)
        except Exception as exc:  # noqa: BLE001 - never let a bug stall the queue: fail this batch only
            logger.exception("the %s batcher failed a batch", self.name)
            self._settle_failure(batch, EncodeFailed(f"encoding failed: {exc}", bad_input=False))
        finally:
            with self._lock:
                self._drains -= 1
                with contextlib.suppress(RuntimeError):  # shutting down: stop() fails what is left
                    self._schedule(fresh=False)

    def _take(self, *, wait: bool) -> list[tuple[_Request, int]]:
        deadline = time.monotonic() + self.max_wait
        batch: list[tuple[_Request, int]] = []
        with self._lock:
            while wait and len(self._waiting) < self.max_batch_size and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._arrived.wait(remaining):
                    break
            while self._waiting and len(batch) < self.max_batch_size:
                item = self._waiting.popleft()
                if not item[0].future.done():  # timed out or failed: skip it
                    batch.append(item)
        return batch

    def _encode(self, batch: list[tuple[_Request, int]]) -> None:
        try:
            tokens = self.stages.pre([request.texts[position] for request, position in batch])
        except Exception:  # noqa: BLE001 - find the request(s) at fault, then go on with the rest
            batch, tokens = self._isolate(batch)
            if not batch:
                return
        started = time.perf_counter()
        try:
            raw = self.stages.core(tokens)
        except Exception as exc:  # noqa: BLE001 - hand the failure to this batch's requests only
            logger.exception("the %s model failed a batch of %d texts", self.name, len(batch))
            self._settle_failure(batch, EncodeFailed(f"encoding failed: {exc}", bad_input=False))
            return
        self.metrics.encode_seconds.labels(self.name).observe(time.perf_counter() - started)
        self.metrics.batch_size.labels(self.name).observe(len(batch))
        if self.answer_wait > 0:
            self._answered.clear()
            self._call_loop(self._post_then_mark, batch, raw, tokens.counts)
        else:
            self._call_loop(self._post, batch, raw, tokens.counts)

    def _post_then_mark(self, batch: list[tuple[_Request, int]], raw: np.ndarray, counts: list[int]) -> None:
        """``_post``, then release the next forward pass once every request this batch finished has been
        answered (each leaves through :meth:`encode`'s ``finally``); requests with texts still queued do not
        hold it."""
        self._post(batch, raw, counts)
        self._unanswered = {request for request, _ in batch if request.future.done() and request in self._inflight}
        if not self._unanswered:
            self._answered.set()

    def _isolate(self, batch: list[tuple[_Request, int]]) -> tuple[list[tuple[_Request, int]], Tokens]:
        """Tokenise each request of a failed batch alone; fail those that still fail (bad input)."""
        requests = list(dict.fromkeys(r for r, _ in batch))
        kept: list[tuple[_Request, int]] = []
        for request in requests:
            items = [(r, p) for r, p in batch if r is request]
            try:
                self.stages.pre([request.texts[p] for _, p in items])
            except Exception as exc:  # noqa: BLE001
                self._settle_failure(items, EncodeFailed(f"cannot tokenise the input: {exc}", bad_input=True))
            else:
                kept.extend(items)
        tokens = self.stages.pre([r.texts[p] for r, p in kept]) if kept else Tokens({}, [])
        return kept, tokens

    def _call_loop(self, fn: Callable[..., None], *args: object) -> None:
        """Run ``fn(*args)`` on the event loop (from the compute thread)."""
        if self._loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting any more
            self._loop.call_soon_threadsafe(fn, *args)

    def _settle_failure(self, batch: list[tuple[_Request, int]], exc: Exception) -> None:
        if batch:
            self._call_loop(self._fail, batch, exc)

    @staticmethod
    def _fail(batch: list[tuple[_Request, int]], exc: Exception) -> None:
        for request, _ in batch:
            if not request.future.done():
                request.future.set_exception(exc)

    @staticmethod
    def _post(batch: list[tuple[_Request, int]], raw: np.ndarray, counts: list[int]) -> None:
        for (request, position), row, count in zip(batch, raw, counts, strict=True):
            if request.future.done():
                continue
            if not request.rows:
                request.rows = [np.empty(0)] * len(request.texts)
                request.counts = [0] * len(request.texts)
                request.missing = len(request.texts)
            request.rows[position] = row
            request.counts[position] = count
            request.missing -= 1  # each position is encoded once: a drain takes it off the queue
            if request.missing == 0:
                request.future.set_result((np.stack(request.rows), request.counts))
