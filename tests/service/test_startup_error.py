"""A start-up that fails inside the server's lifespan: one line for an embedkd error, a traceback otherwise."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

import pytest
from uvicorn import Config
from uvicorn.lifespan.on import LifespanOn

import embedkd.service.app as app_module
from embedkd.errors import InputError
from embedkd.locks import FolderLock
from embedkd.service.app import create_app
from embedkd.service.settings import Settings


def _start(settings: Settings) -> LifespanOn:
    config = Config(create_app(settings), lifespan="on", log_config=None)
    config.load()
    lifespan = LifespanOn(config)
    asyncio.run(lifespan.startup())
    return lifespan


def test_a_start_up_that_fails_on_an_embedkd_error_is_reported_as_its_line(
    service_files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    index = tmp_path / "index"
    shutil.copytree(service_files["index"], index)
    settings = Settings(index_dir=index, student=str(service_files["student"]), device="cpu")  # type: ignore[arg-type]

    def damaged(state: object) -> None:  # what preflight cannot see without loading the models
        raise InputError("export /runs/student/onnx/model.onnx is damaged; delete the export folder to re-export")

    monkeypatch.setattr(app_module, "_load", damaged)
    with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
        lifespan = _start(settings)
    assert lifespan.should_exit and lifespan.startup_failed
    assert "error: export /runs/student/onnx/model.onnx is damaged" in caplog.text
    assert "Traceback" not in caplog.text and "Application startup failed" in caplog.text
    writer = FolderLock(index, what="index")
    assert writer.acquire_within(0)  # nothing is left open
    writer.release()

    caplog.clear()
    monkeypatch.setattr(app_module, "_load", lambda state: 1 / 0)  # a bug keeps its traceback
    with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
        lifespan = _start(settings)
    assert lifespan.should_exit and "ZeroDivisionError" in caplog.text and "Traceback" in caplog.text
