from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from benchmarks import step_rate
from embedkd.errors import InputError


def test_parse_options_reads_json_overrides_and_refuses_what_is_not_an_object() -> None:
    options = step_rate.parse_options(['with={"base_relation_weight": 0.1}', "without={}"])
    assert options == {"with": {"base_relation_weight": 0.1}, "without": {}}
    with pytest.raises(InputError, match="not JSON"):
        step_rate.parse_options(["a={base_relation_weight: 0.1}"])
    with pytest.raises(InputError, match="JSON object"):
        step_rate.parse_options(["a=[1, 2]"])
    with pytest.raises(InputError, match="base_relation_wieght is not a recipe option"):
        step_rate.parse_options(['a={"base_relation_wieght": 0.1}'])


def test_summarise_pools_each_options_runs_against_the_first() -> None:
    runs = [
        {"option": "with", "steps_per_s": 21.0},
        {"option": "without", "steps_per_s": 20.0},
        {"option": "with", "steps_per_s": 23.0},
        {"option": "without", "steps_per_s": 24.0},
    ]
    first, second = step_rate.summarise(runs)
    assert (first["option"], first["runs"], first["mean_steps_per_s"]) == ("with", 2, 22.0)
    assert (second["min_steps_per_s"], second["max_steps_per_s"]) == (20.0, 24.0)
    assert first["relative_to_first"] == 1.0 and second["relative_to_first"] == pytest.approx(1.0)


def test_cli_interleaves_the_options_and_reports_each_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []
    seconds = iter([100.0, 125.0, 100.0, 125.0])

    def fake_distill(config: Any) -> SimpleNamespace:
        seen.append({"weight": config.base_relation_weight, "steps": config.max_steps, "out": config.out})
        config.out.mkdir(parents=True)  # as the trainer does
        return SimpleNamespace(manifest=SimpleNamespace(training={"timings": {"train_seconds_total": next(seconds)}}))

    monkeypatch.setattr(step_rate, "distill", fake_distill)
    argv = ["step_rate", "--name", "x", "--out", str(tmp_path), "--work", str(tmp_path / "work"), "--repeats", "2"]
    argv += ["--steps", "500", "--option", 'with={"base_relation_weight": 0.1}', "--option", "without={}"]
    monkeypatch.setattr(sys, "argv", argv)
    step_rate.main()
    assert [s["weight"] for s in seen] == [0.1, None, 0.1, None]  # A, B, A, B; {} keeps the recipe's default
    assert all(s["steps"] == 500 for s in seen) and len({s["out"] for s in seen}) == 4
    results = json.loads((tmp_path / "step_rate_x.json").read_text())
    assert [s["mean_steps_per_s"] for s in results["summary"]] == [5.0, 4.0]
    text = (tmp_path / "step_rate_x.md").read_text()
    assert "| without | 2 | 4.00 | 4.00–4.00 | 0.800x |" in text and "| 3 | without | 125.0 | 4.00 |" in text
    assert list((tmp_path / "work").iterdir()) == []  # each run's student removed once timed


def test_cli_refuses_a_work_folder_that_holds_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "keep.txt").write_text("a user's file")
    argv = ["step_rate", "--name", "x", "--work", str(tmp_path), "--option", "a={}", "--option", "b={}"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(InputError, match="not empty"):
        step_rate.main()
    assert (tmp_path / "keep.txt").read_text() == "a user's file"


def test_cli_refuses_a_single_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["step_rate", "--name", "x", "--option", "a={}"])
    with pytest.raises(InputError, match="two or more"):
        step_rate.main()
