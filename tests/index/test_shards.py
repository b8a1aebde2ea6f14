"""Reading sharded embeddings in order keeps a few shards in memory and still finds out-of-order texts."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from embedkd.index.shards import ShardReader


class Shards:
    """A ShardSet's reading interface over in-memory shards, counting reads."""

    def __init__(self, shards: list[dict[str, np.ndarray]]) -> None:
        self._shards = shards
        self.manifest = SimpleNamespace(shard_count=lambda: len(shards))
        self.reads: list[int] = []

    def shard(self, i: int) -> dict[str, np.ndarray]:
        self.reads.append(i)
        return self._shards[i]

    def rows(self):  # type: ignore[no-untyped-def]
        for i in range(len(self._shards)):
            yield from self.shard(i).items()


def test_in_order_requests_read_each_shard_once_and_duplicates_fall_back_to_a_scan() -> None:
    shards = Shards([{f"s{i}-{j}": np.full(2, 10 * i + j, np.float32) for j in range(3)} for i in range(4)])
    reader = ShardReader(shards)  # type: ignore[arg-type]
    first = reader.get(["s0-0", "s0-1", "s0-2", "s1-0"])
    assert [int(v[0]) for v in first if v is not None] == [0, 1, 2, 10] and shards.reads == [0, 1]
    assert len(reader._window) == 1  # shard 0 is behind every later request: dropped
    later = reader.get(["s1-1", "s3-2", "s0-1", "nowhere"])  # s0-1 again (a duplicate text), and a missing one
    assert [None if v is None else int(v[0]) for v in later] == [11, 32, 1, None]
    assert shards.reads[:4] == [0, 1, 2, 3] and len(shards.reads) == 8  # then one full scan for the stragglers


def test_a_damaged_manifest_or_shard_is_an_input_error_that_names_the_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    import pytest

    from embedkd.errors import InputError
    from embedkd.index.shards import ShardManifest, ShardSet
    from embedkd.models.manifest import TeacherRef

    pytest.importorskip("pyarrow")
    teacher = TeacherRef(name="t", fingerprint="f" * 64, dimension=4)
    manifest = ShardManifest(teacher, 4, "fp32", {"enabled": True, "max_tokens": 16, "overlap": 4}, 2, 1)
    shards = ShardSet(tmp_path, manifest)
    shards.write_shard(0, [{"id": "a", "ordinal": 0, "text_sha": "s0", "vector": np.ones(4)}])
    shards.write_shard(1, [{"id": "b", "ordinal": 0, "text_sha": "s1", "vector": np.full(4, np.nan)}])
    assert list(ShardManifest.read(tmp_path).shards) == ["shard-00000.parquet", "shard-00001.parquet"]
    assert list(shards.shard(0)) == ["s0"]
    with pytest.raises(InputError, match="shard-00001.parquet is damaged .*NaN"):  # built a broken index before
        shards.shard(1)
    (tmp_path / "shard-00000.parquet").write_bytes(b"garbage")
    with pytest.raises(InputError, match="shard-00000.parquet is damaged"):
        shards.shard(0)
    good = json.loads((tmp_path / "manifest.json").read_text())
    for damage in ("{not json", json.dumps({**good, "shard_size": 0}), json.dumps({**good, "teacher": None})):
        (tmp_path / "manifest.json").write_text(damage)
        with pytest.raises(InputError, match="manifest.json is damaged"):
            ShardManifest.read(tmp_path)
