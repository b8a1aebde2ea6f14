"""embedkd/npy.py: a write either lands whole or leaves the previous file untouched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedkd.npy import atomic_write_bytes, save_npy_atomic


def test_array_round_trips_and_replaces_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "x.npy"
    save_npy_atomic(path, np.arange(6, dtype=np.float16).reshape(2, 3))
    save_npy_atomic(path, np.ones((4, 2), dtype=np.float32))
    loaded = np.load(path)
    assert loaded.dtype == np.float32 and loaded.shape == (4, 2)
    assert [p.name for p in path.parent.iterdir()] == ["x.npy"]  # no temp file left behind


def test_a_failed_write_keeps_the_old_file_and_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.npy"
    save_npy_atomic(path, np.zeros(3))

    def crash_midway(handle, array):  # half the bytes reach the disk, then the process "dies"
        handle.write(b"\x93NUMPY partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        save_npy_atomic(path, np.ones(3))
    monkeypatch.undo()
    np.testing.assert_array_equal(np.load(path), np.zeros(3))
    with pytest.raises(TypeError):
        atomic_write_bytes(tmp_path / "state.json", "not bytes")  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]
