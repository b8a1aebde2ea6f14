"""Training on a GPU in bf16 autocast (`pytest -m gpu`); skipped on CPU-only machines such as CI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from embedkd.distill import distill
from embedkd.distill import trainer as trainer_module

from .conftest import BowData
from .test_trainer import bow_config

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("frozen_layers", [None, 0])  # the default (lower layers from the layer cache), none
def test_bf16_training_on_gpu(
    bow_teacher: BowData,
    tiny_model_dir: Path,
    tmp_path: Path,
    isolated_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    frozen_layers: int | None,
) -> None:
    dtypes: list[torch.dtype] = []
    real_batch_loss = trainer_module._Distiller._batch_loss

    # Every step's loss, whether its forward starts from the layer cache or from the tokens, goes through here.
    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        dtypes.append(torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else torch.float32)
        return real_batch_loss(self, *args, **kwargs)

    monkeypatch.setattr(trainer_module._Distiller, "_batch_loss", spy)
    config = bow_config(
        bow_teacher, tiny_model_dir, tmp_path / "s", precision="bf16", device="cuda", frozen_layers=frozen_layers
    )
    result = distill(config)
    assert result.manifest.training["device"].startswith("cuda")
    assert dtypes == [torch.bfloat16] * config.max_steps  # every step's forward ran under bf16 autocast
    # and it learnt (the projection starts as a ridge fit, so the first evaluation is already close)
    assert result.history[-1]["mse"] < result.history[0]["mse"], result.history
