"""Atomic writes for numpy arrays and small files: temp file, fsync, rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np

__all__ = ["atomic_write_bytes", "fsync_dir", "save_npy_atomic"]


def fsync_dir(path: Path) -> None:
    """Flush a directory entry so a rename inside it survives a crash."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def _atomic_file(path: Path, suffix: str) -> Iterator[BinaryIO]:
    """A handle on a temp file next to ``path`` that replaces ``path`` only once fully written and synced."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes | np.ndarray) -> None:
    """Write ``data`` (bytes, or a contiguous numpy buffer, written without a copy) to ``path`` atomically."""
    with _atomic_file(path, ".tmp") as handle:
        handle.write(np.ascontiguousarray(data).data if isinstance(data, np.ndarray) else data)


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    with _atomic_file(path, ".tmp.npy") as handle:
        np.save(handle, array)
