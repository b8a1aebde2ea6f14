from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedkd.embedding_cache import EmbeddingCache
from embedkd.errors import InputError


def make(folder: Path, dim: int = 4) -> EmbeddingCache:
    return EmbeddingCache(folder, model_name="m", fingerprint="f" * 64, dimension=dim, max_seq_length=32)


def fake_encoder(calls: list[list[str]], dim: int = 4, fail_after: int | None = None):
    def encode(texts: list[str]) -> np.ndarray:
        if fail_after is not None and len(calls) >= fail_after:
            raise KeyboardInterrupt
        calls.append(list(texts))
        rows = [np.frombuffer(t.encode().ljust(dim, b"x")[:dim], dtype=np.uint8).astype(np.float32) for t in texts]
        return np.stack(rows)

    return encode


def test_add_get_and_reopen(tmp_path: Path) -> None:
    cache = make(tmp_path / "c")
    texts = ["alpha", "beta", "gamma", "alpha"]
    calls: list[list[str]] = []
    out = cache.ensure(texts, fake_encoder(calls), progress=False)
    assert out.shape == (4, 4) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-3)
    np.testing.assert_array_equal(out[0], out[3])
    assert sum(len(c) for c in calls) == 3  # duplicates encoded once
    reopened = make(tmp_path / "c")
    assert len(reopened) == 3 and "beta" in reopened
    np.testing.assert_array_equal(reopened.get(["gamma"]), out[2:3])
    assert reopened.ensure(texts, fake_encoder(calls), progress=False).shape == (4, 4)
    assert sum(len(c) for c in calls) == 3  # nothing re-encoded


def test_interrupted_fill_resumes(tmp_path: Path) -> None:
    texts = [f"text number {i}" for i in range(10)]
    calls: list[list[str]] = []
    with pytest.raises(KeyboardInterrupt):
        make(tmp_path / "c").ensure(texts, fake_encoder(calls, fail_after=2), chunk_size=3, progress=False)
    assert len(make(tmp_path / "c")) == 6  # two committed chunks survive
    calls.clear()
    make(tmp_path / "c").ensure(texts, fake_encoder(calls), chunk_size=3, progress=False)
    assert sorted(t for c in calls for t in c) == sorted(sorted(texts, key=len)[6:])


def test_crash_mid_append_is_truncated(tmp_path: Path) -> None:
    cache = make(tmp_path / "c")
    cache.add(["a", "b"], np.eye(2, 4, dtype=np.float32))
    # A crash after writing vectors and keys but before the manifest: the extra row is not trusted.
    with open(tmp_path / "c" / "vectors.f16", "ab") as handle:
        handle.write(np.ones(4, dtype=np.float16).tobytes()[:5])
    with open(tmp_path / "c" / "keys.txt", "a") as handle:
        handle.write("deadbeef\n")
    reopened = make(tmp_path / "c")
    assert len(reopened) == 2 and (tmp_path / "c" / "vectors.f16").stat().st_size == 2 * 4 * 2
    reopened.add(["c"], np.ones((1, 4), dtype=np.float32))
    assert len(make(tmp_path / "c")) == 3


def test_rejects_other_model_and_bad_rows(tmp_path: Path) -> None:
    make(tmp_path / "c")
    with pytest.raises(InputError, match="another model"):
        EmbeddingCache(tmp_path / "c", model_name="m", fingerprint="0" * 64, dimension=4, max_seq_length=32)
    cache = make(tmp_path / "c")
    with pytest.raises(InputError, match="dimension 3"):
        cache.add(["a"], np.ones((1, 3)))
    with pytest.raises(InputError, match="2 texts"):
        cache.add(["a", "b"], np.ones((1, 4)))
    with pytest.raises(InputError, match="NaN"):
        cache.add(["a"], np.full((1, 4), np.nan))
    assert len(cache) == 0


def test_overwrite_replaces_rows_and_survives_reopening(tmp_path: Path) -> None:
    cache = make(tmp_path / "c")
    cache.add(["a", "b"], np.eye(2, 4, dtype=np.float32))
    assert cache.add(["a"], np.ones((1, 4), dtype=np.float32)) == 0
    assert cache.add(["a"], np.ones((1, 4), dtype=np.float32), overwrite=True) == 1
    np.testing.assert_allclose(make(tmp_path / "c").get(["a", "b"]), [[0.5] * 4, [0, 1, 0, 0]], atol=1e-3)


def test_opening_and_adding_never_rewrite_the_key_table(tmp_path: Path) -> None:
    cache = make(tmp_path / "c", dim=8)
    cache.add(["a", "b"], np.eye(2, 8, dtype=np.float32))
    keys = tmp_path / "c" / "keys.txt"
    inode, size = keys.stat().st_ino, keys.stat().st_size
    reopened = make(tmp_path / "c", dim=8)
    reopened.add(["c"], np.eye(1, 8, dtype=np.float32))
    assert keys.stat().st_ino == inode  # appended in place, not rewritten
    assert keys.stat().st_size == size + 33
    assert make(tmp_path / "c", dim=8).missing(["a", "b", "c", "d"]) == ["d"]
