"""Prometheus metrics of one app instance (its own registry, so several apps can live in one process).

When the server runs several worker processes, ``embedkd serve`` sets ``PROMETHEUS_MULTIPROC_DIR``
before it starts them: each worker writes its values there (prometheus_client's multiprocess mode), and
``/metrics``, whichever worker answers it, adds up every worker's.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30)


def _multiprocess_dir() -> str | None:
    """The folder the workers of one server share their metrics through, if there is one."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "embedkd_requests", "HTTP requests", ["route", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "embedkd_request_seconds",
            "HTTP request latency",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "embedkd_queue_depth",
            "Texts waiting to be encoded",
            ["model"],
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.batch_size = Histogram(
            "embedkd_batch_size",
            "Texts per forward pass",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=self.registry,
        )
        self.encode_seconds = Histogram(
            "embedkd_encode_seconds",
            "Forward pass time per batch",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rejected = Counter(
            "embedkd_rejected", "Requests refused because the queue was full", ["model"], registry=self.registry
        )
        self.index_documents = Gauge(
            "embedkd_index_documents",
            "Documents in the index",
            registry=self.registry,
            multiprocess_mode="livemostrecent",
        )
        self.index_chunks = Gauge(
            "embedkd_index_chunks",
            "Chunks (vectors) in the index",
            registry=self.registry,
            multiprocess_mode="livemostrecent",
        )
        self.coverage_ratio = Gauge(
            "embedkd_student_coverage_ratio",
            "A student's cosine to the index's teacher vectors over its cosine on its own held-out texts",
            ["model"],
            registry=self.registry,
            multiprocess_mode="livemostrecent",
        )
        self.save_failures = Counter(
            "embedkd_index_save_failures", "Periodic index saves that failed (retried)", registry=self.registry
        )

    def exposition(self) -> bytes:
        """The text format of every metric: this app's, or every worker's when they share a folder."""
        folder = _multiprocess_dir()
        if folder is None:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=folder)
        return generate_latest(registry)

    def close(self) -> None:
        """A worker that stops takes its live gauges (queue depth, counts) out of the sum."""
        if _multiprocess_dir() is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())
