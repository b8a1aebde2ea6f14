"""The layer cache inside training runs: kept with the checkpoints, read back by --resume, never left behind."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from embedkd.distill import distill
from embedkd.distill import trainer as trainer_module
from embedkd.distill.layer_cache import LayerCache

from .conftest import BowData
from .test_trainer import bow_config


def test_a_resumed_run_reads_its_layer_cache_back(
    bow_teacher: BowData, tiny_model_dir: Path, tmp_path: Path, isolated_cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "s"
    config = bow_config(
        bow_teacher, tiny_model_dir, out, frozen_layers=1, max_steps=4, eval_every=2, keep_checkpoints=True
    )
    distill(config)
    assert (out / "checkpoints" / "layer_cache" / "layer_cache.json").is_file()
    config.resume = True
    with caplog.at_level(logging.INFO, logger="embedkd.distill.layer_cache"):
        second = distill(config)
    assert "reused from" in caplog.text
    assert [h["step"] for h in second.history][-1] == 8

    plain = distill(bow_config(bow_teacher, tiny_model_dir, tmp_path / "plain", frozen_layers=1, max_steps=2))
    assert not (plain.out / "checkpoints").exists()  # no --keep-checkpoints: no cache is left behind either


def test_a_run_that_fails_after_caching_leaves_no_folder(
    bow_teacher: BowData, tiny_model_dir: Path, tmp_path: Path, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("stop")

    built: list[int] = []
    real = LayerCache._save

    def save(self: LayerCache, *args: object) -> None:
        real(self, *args)  # type: ignore[arg-type]
        built.append(1)

    monkeypatch.setattr(LayerCache, "_save", save)
    monkeypatch.setattr(trainer_module._Distiller, "_evaluate", fail)  # the first evaluation, before any checkpoint
    with pytest.raises(RuntimeError, match="stop"):
        distill(bow_config(bow_teacher, tiny_model_dir, tmp_path / "f", frozen_layers=1, max_steps=2))
    assert built == [1]  # the cache was written, and went with the folder
    assert not (tmp_path / "f").exists()
