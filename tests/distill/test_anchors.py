"""The ranking term's anchor documents: --anchor-data, else every BEIR folder given as training data."""

from __future__ import annotations

import random
from pathlib import Path

from embedkd.data.texts import read_texts
from embedkd.distill import DistillConfig
from embedkd.distill.targets import anchor_source, anchor_sources, anchor_texts
from embedkd.testing import build_tiny_beir


def _config(tmp_path: Path, data: list[Path], **extra: object) -> DistillConfig:
    return DistillConfig(out=tmp_path / "out", data=data, teacher="t", student="s", **extra)  # type: ignore[arg-type]


def test_every_beir_folder_in_the_data_gives_anchors(tmp_path: Path) -> None:
    first = build_tiny_beir(tmp_path / "a", docs=30, seed=1)
    second = build_tiny_beir(tmp_path / "b", docs=12, seed=2)
    queries = tmp_path / "queries.txt"
    queries.write_text("a query\nanother query\n")
    config = _config(tmp_path, [queries, first, second])
    assert anchor_sources(config) == [first, second] and anchor_source(config) == first
    texts = anchor_texts(config)
    assert sorted(texts) == sorted(read_texts(first) + read_texts(second))  # 42 <= --max-anchors: all of both

    sampled = anchor_texts(_config(tmp_path, [queries, first, second], max_anchors=20))
    assert len(sampled) == 20 and set(sampled) <= set(texts)
    assert set(sampled) & set(read_texts(second)) and set(sampled) & set(read_texts(first))  # from the pool


def test_one_folder_samples_as_before_and_anchor_data_replaces_the_folders(tmp_path: Path) -> None:
    first = build_tiny_beir(tmp_path / "a", docs=30, seed=1)
    second = build_tiny_beir(tmp_path / "b", docs=12, seed=2)
    one = anchor_texts(_config(tmp_path, [first], max_anchors=10, seed=3))
    assert one == random.Random(3).sample(read_texts(first), 10)
    only = _config(tmp_path, [first], anchor_data=second)
    assert anchor_sources(only) == [second] and sorted(anchor_texts(only)) == sorted(read_texts(second))
    assert anchor_sources(_config(tmp_path, [tmp_path / "queries.txt"])) == []
