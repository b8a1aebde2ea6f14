"""Logging for embedkd's own entry points (the CLI, the demo's training subprocess, the benchmarks)."""

from __future__ import annotations

import logging

__all__ = ["configure_logging"]

# Libraries whose INFO lines (every weight file loaded, every HTTP request) would bury embedkd's own.
NOISY = ("sentence_transformers", "transformers", "httpx", "huggingface_hub")


def configure_logging(fmt: str = "%(message)s") -> None:
    """INFO for embedkd (training steps, cache hits, checks), WARNING for the noisy libraries."""
    logging.basicConfig(level=logging.INFO, format=fmt)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
