"""The layer cache inside training runs: its store is shared by later runs, and never left in a run's folder."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from embedkd.distill import distill
from embedkd.distill import trainer as trainer_module
from embedkd.distill.layer_store import LayerStore, store_summaries

from .conftest import BowData
from .test_trainer import bow_config


def test_later_runs_read_the_layer_store_back(
    bow_teacher: BowData,
    tiny_model_dir: Path,
    tmp_path: Path,
    isolated_cache: Path,
    caplog: pytest.LogCaptureFixture,
    run_cli,
) -> None:
    out = tmp_path / "s"
    config = bow_config(
        bow_teacher, tiny_model_dir, out, frozen_layers=1, max_steps=4, eval_every=2, keep_checkpoints=True
    )
    with caplog.at_level(logging.INFO, logger="embedkd.distill.layer_cache"):
        distill(config)
    assert "0 read from" in caplog.text
    [stored] = store_summaries()
    assert stored["texts"] > 0 and stored["frozen"] == 1 and stored["model"] == str(tiny_model_dir)
    assert not (out / "checkpoints" / "layer_cache").exists()  # the store is not the run's
    config.resume = True
    caplog.clear()
    (out / "checkpoints" / "layer_cache").mkdir()  # what an older embedkd kept per run
    with caplog.at_level(logging.INFO, logger="embedkd.distill"):
        second = distill(config)
    assert f"{stored['texts']} read from" in caplog.text and ", 0 computed" in caplog.text
    assert "older embedkd's layer cache, no longer read: it may be deleted" in caplog.text
    assert [h["step"] for h in second.history][-1] == 8

    caplog.clear()  # a fresh run of another seed, with no checkpoints kept, reads it too
    with caplog.at_level(logging.INFO, logger="embedkd.distill.layer_cache"):
        plain = distill(bow_config(bow_teacher, tiny_model_dir, tmp_path / "plain", frozen_layers=1, max_steps=2))
    assert ", 0 computed" in caplog.text
    assert not (plain.out / "checkpoints").exists()
    assert [s["texts"] for s in store_summaries()] == [stored["texts"]]
    code, out, _ = run_cli("cache", "list")
    assert code == 0 and stored["folder"] in out
    assert f"{stored['texts']} texts, layers 1-1 ({stored['precision']})" in out


def test_no_layer_store_writes_none(
    bow_teacher: BowData, tiny_model_dir: Path, tmp_path: Path, isolated_cache: Path
) -> None:
    config = bow_config(bow_teacher, tiny_model_dir, tmp_path / "s", frozen_layers=1, max_steps=2, layer_store=False)
    distill(config)
    assert store_summaries() == []


def test_a_run_that_fails_after_caching_leaves_no_folder(
    bow_teacher: BowData, tiny_model_dir: Path, tmp_path: Path, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("stop")

    monkeypatch.setattr(trainer_module._Distiller, "_evaluate", fail)  # the first evaluation, before any checkpoint
    with pytest.raises(RuntimeError, match="stop"):
        distill(bow_config(bow_teacher, tiny_model_dir, tmp_path / "f", frozen_layers=1, max_steps=2))
    assert not (tmp_path / "f").exists()
    assert [len(LayerStore(Path(s["folder"])).segments()) for s in store_summaries()] == [1]  # the store stays
