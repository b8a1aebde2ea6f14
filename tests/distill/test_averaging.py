from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from embedkd.distill import DistillConfig, distill
from embedkd.distill.averaging import WeightAverage
from embedkd.errors import InputError

from .conftest import BowData
from .test_trainer import _interrupted_at_step_four, bow_config


def _model() -> torch.nn.Sequential:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 2))
    model[0].bias.requires_grad_(False)  # frozen: never averaged
    return model


def test_the_average_follows_the_weights_with_a_capped_decay() -> None:
    model = _model()
    average = WeightAverage(model, decay=0.9)
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    average.update()  # first update: decay capped at 2/11
    expected = start + (1 - 2 / 11) * 1.0
    with average.applied():
        torch.testing.assert_close(model[0].weight, expected)
    torch.testing.assert_close(model[0].weight, start + 1.0)  # the raw weights are back
    for _ in range(200):
        average.update()
    with average.applied():
        torch.testing.assert_close(model[0].weight, start + 1.0, atol=1e-6, rtol=0)  # converged to the raw


def test_a_frozen_parameter_is_left_alone_and_nesting_is_refused() -> None:
    model = _model()
    average = WeightAverage(model, decay=0.5)
    frozen = model[0].bias.detach().clone()
    with torch.no_grad():
        model[0].bias.add_(3.0)
    average.update()
    with average.applied():
        torch.testing.assert_close(model[0].bias, frozen + 3.0)
        with pytest.raises(RuntimeError), average.applied():
            pass
    with pytest.raises(ValueError):
        WeightAverage(model, decay=1.0)


def test_state_dict_round_trip_restores_the_raw_weights_and_the_average() -> None:
    model = _model()
    average = WeightAverage(model, decay=0.5)
    with torch.no_grad():
        model[1].weight.mul_(-2.0)
    average.update()
    average.update()
    raw = model[1].weight.detach().clone()
    with average.applied():
        averaged = model[1].weight.detach().clone()
        state = average.state_dict()  # taken inside, as the trainer's checkpoint does
        saved = {k: v.clone() for k, v in model.state_dict().items()}  # the checkpoint folder: the average
    assert not torch.equal(raw, averaged)

    again = _model()
    again.load_state_dict(saved)
    resumed = WeightAverage(again, decay=0.5)
    resumed.load_state_dict(state)
    assert resumed.updates == 2
    torch.testing.assert_close(again[1].weight, raw)
    with resumed.applied():
        torch.testing.assert_close(again[1].weight, averaged)


def test_ema_decay_is_checked(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="ema_decay"):
        DistillConfig(out=tmp_path / "s", data=[tmp_path / "t.txt"], ema_decay=1.0)


def test_the_saved_student_holds_the_average_and_a_resumed_run_matches_an_unbroken_one(
    bow_teacher: BowData, tiny_model_dir: Path, tmp_path: Path, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = dict(max_steps=6, eval_every=2, ema_decay=0.9, select_by="cosine")
    unbroken = distill(bow_config(bow_teacher, tiny_model_dir, tmp_path / "unbroken", **settings))
    saved = load_file(str(unbroken.out / "model.safetensors"))
    raw = {k: v.detach() for k, v in unbroken.model[0].auto_model.state_dict().items()}
    trained = [k for k in saved if "layer.1." in k and k in raw]
    assert trained and any(not torch.equal(saved[k], raw[k]) for k in trained)  # the average, not the last step
    assert unbroken.manifest.training["config"]["ema_decay"] == 0.9

    out = tmp_path / "resumed"
    config = bow_config(bow_teacher, tiny_model_dir, out, **settings)
    _interrupted_at_step_four(config, monkeypatch)
    last = out / "checkpoints" / "last"
    state = torch.load(last / "trainer_state.pt", weights_only=True)["weight_average"]
    assert state["updates"] == 4
    folder = load_file(str(last / "model.safetensors"))
    key = next(k for k in trained if k.endswith("dense.weight"))
    assert not torch.equal(folder[key], state["raw"][f"0.model.{key}"])  # folder: the average; state: the raw

    loaded: list[int] = []
    real = WeightAverage.load_state_dict

    def spy(self: WeightAverage, given: dict[str, Any]) -> None:
        real(self, given)
        loaded.append(self.updates)

    monkeypatch.setattr(WeightAverage, "load_state_dict", spy)
    config.resume = True
    resumed = distill(config)
    assert loaded == [4]
    assert [h["step"] for h in resumed.history] == [0, 2, 4, 6]
    # the same run as the unbroken one: the raw weights, the average and the training mode all carry over
    assert [h["cosine"] for h in resumed.history] == pytest.approx([h["cosine"] for h in unbroken.history], abs=1e-5)
    again = load_file(str(resumed.out / "model.safetensors"))
    for key in trained:
        torch.testing.assert_close(again[key], saved[key], atol=1e-5, rtol=0)
    assert all(torch.isfinite(t).all() for t in again.values())
