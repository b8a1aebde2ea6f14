"""The one thread that runs every model in the server: loads, forward passes, the teacher's document batches.

Why one thread. PyTorch's CPU kernels run on OpenMP (libgomp), and every thread that starts a parallel
region gets a team of worker threads of its own. Once libgomp manages more threads than the machine has
CPUs, it stops letting idle workers spin between parallel regions, so each of the hundreds of regions in a
forward pass pays a wake-up. A server that loads its models on one thread and runs them on others crosses
that line on a 2-core machine: the default student's batch-1 forward took 14 ms on the serving thread
against 10 ms on the thread that loaded it (``benchmarks/results/serving_threads.md``). With one thread
for all model work, there is one team, and it spins as it does in-process.

``EMBEDKD_COMPUTE_WORKERS=N`` runs N such threads, each with its share of the kernel threads (so no team
outgrows the cores), and a torch model then runs up to N batches at once. On a 2-core machine two workers
were slower in the server (``benchmarks/results/serving_workers.md``), so the default is one.

Queries come first. Work is taken by priority, then in arrival order, and the teacher's document batches
are cut small (:meth:`ComputeThread.map_chunks`), so indexing delays a query by one small batch at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import itertools
import os
import queue
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

import numpy as np

__all__ = ["DOCUMENTS", "QUERIES", "ComputeThread", "name_os_thread"]

T = TypeVar("T")

QUERIES = 0  # request-driven forward passes (every batcher)
DOCUMENTS = 1  # background and bulk work: the teacher's document batches, loading a new student


def name_os_thread(name: str) -> None:
    """Give the calling thread an OS-level name (Linux; at most 15 characters), so ``top -H`` and
    ``/proc/PID/task/*/comm`` tell the server's threads apart. Threads it starts later (OpenMP's workers,
    the tokenizer's) inherit the name, so their CPU time is counted with it."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME


def _torch_threads() -> int:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        return os.cpu_count() or 1
    return int(torch.get_num_threads())


class ComputeThread:
    """``workers`` threads (default one) sharing a priority queue; started on first use, stopped by
    :meth:`shutdown`."""

    def __init__(self, name: str = "embedkd-compute", *, workers: int = 1) -> None:
        self.name = name
        self.workers = max(1, workers)
        self._queue: queue.PriorityQueue[tuple[int, int, Future[Any] | None, Callable[[], Any] | None]] = (
            queue.PriorityQueue()
        )
        self._order = itertools.count()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False
        # Several workers split the kernel threads between them (a torch team each, no team larger than its
        # share), so that together they use the cores the process was given and no more.
        self._kernel_threads = max(1, _torch_threads() // self.workers) if self.workers > 1 else 0

    def submit(self, fn: Callable[..., T], /, *args: Any, priority: int = QUERIES, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:  # a submit never lands behind the shutdown marker, where nothing would run it
            if self._closed:
                raise RuntimeError("the server is shutting down")
            if not self._threads:
                for i in range(self.workers):
                    suffix = f"-{i}" if self.workers > 1 else ""
                    thread = threading.Thread(target=self._loop, name=self.name + suffix, daemon=True)
                    self._threads.append(thread)
                    thread.start()
            self._queue.put((priority, next(self._order), future, functools.partial(fn, *args, **kwargs)))
        return future

    def call(self, fn: Callable[..., T], /, *args: Any, priority: int = QUERIES, **kwargs: Any) -> T:
        """Run ``fn`` on the compute thread and wait (from any other thread; inline on the compute thread)."""
        if self.on_thread():
            return fn(*args, **kwargs)
        return self.submit(fn, *args, priority=priority, **kwargs).result()

    async def run(self, fn: Callable[..., T], /, *args: Any, priority: int = QUERIES, **kwargs: Any) -> T:
        """Await ``fn`` run on the compute thread (from the event loop)."""
        return await asyncio.wrap_future(self.submit(fn, *args, priority=priority, **kwargs))

    async def run_aside(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Await ``fn`` on a thread of its own that ends with it, for long work that must not hold up
        queries (loading a new student, which may export it first). The thread's OpenMP team, if any,
        goes away with the thread, so the compute thread keeps spinning."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def settle(result: Any, error: BaseException | None) -> None:
            if future.done():  # the awaiting task was cancelled
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        def target() -> None:
            name_os_thread("ekd-load")
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
                loop.call_soon_threadsafe(settle, None, exc)
            else:
                loop.call_soon_threadsafe(settle, result, None)

        threading.Thread(target=target, name=f"{self.name}-aside", daemon=True).start()
        return await future

    def map_chunks(
        self,
        fn: Callable[[Sequence[str]], np.ndarray],
        texts: Sequence[str],
        *,
        chunk: int = 8,
        priority: int = DOCUMENTS,
    ) -> np.ndarray:
        """``fn(texts)`` computed ``chunk`` texts at a time, so queued queries run between the chunks."""
        if not texts:  # fn's own empty answer keeps its width
            return self.call(fn, texts, priority=priority)
        parts = [self.call(fn, texts[i : i + chunk], priority=priority) for i in range(0, len(texts), chunk)]
        return np.concatenate(parts)

    @property
    def alive(self) -> bool:
        """Not shut down, and no worker thread has ended (threads start on first use)."""
        return not self._closed and all(thread.is_alive() for thread in self._threads)

    def on_thread(self) -> bool:
        return threading.current_thread() in self._threads

    def shutdown(self) -> None:
        """Stop taking work; whatever is still queued fails (a shutdown never waits on queued work)."""
        with self._lock:
            self._closed = True
            for _ in self._threads:
                self._queue.put((-1, -1, None, None))

    def _loop(self) -> None:
        name_os_thread("ekd-compute")
        if self._kernel_threads:
            import torch

            torch.set_num_threads(self._kernel_threads)  # this thread's own OpenMP team size
        while True:
            _, _, future, work = self._queue.get()
            if future is None or work is None:
                break
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(work())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, the thread goes on
                future.set_exception(exc)
        markers = 0
        while True:  # shut down: fail what is left
            try:
                _, _, future, _ = self._queue.get_nowait()
            except queue.Empty:
                break
            if future is None:  # another worker's marker: put back below, so that it stops too
                markers += 1
            elif future.set_running_or_notify_cancel():
                future.set_exception(RuntimeError("the server is shutting down"))
        for _ in range(markers):
            self._queue.put((-1, -1, None, None))
