from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from benchmarks import seed_spread
from embedkd.errors import InputError


def curve(cpu: str, points: dict[float, tuple[float, float]]) -> dict:
    """A learning-curve JSON with ``{budget: (asym, student/student)}`` points."""
    return {
        "machine": f"{cpu} (no native bf16), 2 threads, torch 2.13.0+cpu, no GPU, 2026-12-05",
        "points": [
            {"train_minutes_budget": b, "steps": int(b * 700), "asym_ndcg10": a, "sym_ndcg10": s,
             "teacher_agreement10": 0.68, "heldout_cosine": None, "dev_ndcg10": 0.66, "last_step": int(b * 750)}
            for b, (a, s) in points.items()
        ],
    }  # fmt: skip


def test_spread_pools_seeds_per_budget_and_counts_targets() -> None:
    out = seed_spread.spread(
        {
            "7": curve("AMD EPYC", {30.0: (0.6494, 0.6323), 120.0: (0.6634, 0.6475)}),
            "1": curve("AMD EPYC", {30.0: (0.6548, 0.6307), 120.0: (0.6532, 0.6256)}),
            "3": curve("AMD EPYC", {30.0: (0.6440, 0.6376)}),
        }
    )
    thirty, one_twenty = out["budgets"]
    assert out["cpu"] == "AMD EPYC (no native bf16)" and thirty["train_minutes_budget"] == 30.0
    asym = thirty["summary"]["asym_ndcg10"]
    assert asym["n"] == 3 and asym["mean"] == pytest.approx((0.6494 + 0.6548 + 0.6440) / 3)
    assert asym["min"] == 0.6440 and asym["max"] == 0.6548 and asym["sd"] == pytest.approx(0.0054, abs=1e-4)
    met = list(thirty["targets_met"].values())
    assert met == [2, 2, 1]  # ≥ 0.6451 and ≥ 0.6491 (0.99x): seeds 7 and 1; student/student ≥ 0.6360: seed 3
    assert set(one_twenty["seeds"]) == {"7", "1"} and one_twenty["summary"]["sym_ndcg10"]["n"] == 2
    assert thirty["summary"]["heldout_cosine"] == {"n": 0, "mean": None, "sd": None, "min": None, "max": None}


def test_the_cpu_keeps_a_comma_inside_its_bf16_note() -> None:
    stamp = "AMD EPYC (AVX512-BF16, no AMX), 2 threads, torch 2.13.0+cpu, no GPU, 2026-12-07"
    assert seed_spread.cpu_of(stamp) == "AMD EPYC (AVX512-BF16, no AMX)"
    assert seed_spread.cpu_of("Intel Xeon (AMX), 2 threads") == "Intel Xeon (AMX)"
    assert seed_spread.cpu_of("a CPU without a note") == "a CPU without a note"


def test_spread_refuses_curves_from_different_cpus() -> None:
    with pytest.raises(InputError, match="different CPUs"):
        seed_spread.spread(
            {"1": curve("AMD EPYC", {30.0: (0.65, 0.63)}), "2": curve("Intel Xeon", {30.0: (0.65, 0.63)})}
        )


def test_cli_writes_report_and_keeps_a_reading_only_for_the_same_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, points in {"a": {30.0: (0.6494, 0.6323)}, "b": {30.0: (0.6548, 0.6307)}}.items():
        (tmp_path / f"learning_curve_{name}.json").write_text(json.dumps(curve("AMD EPYC", points)))
    argv = ["seed_spread", "--out", str(tmp_path), "--name", "x", "--curve", "7=a", "--curve", "1=b"]
    monkeypatch.setattr(sys, "argv", [*argv, "--reading", "Two seeds."])
    seed_spread.main()
    text = (tmp_path / "seed_spread_x.md").read_text()
    assert "| seed 7 | 21,000 | 0.6494 | 0.6323 |" in text and "| **mean** |  | 0.6521 |" in text
    assert "asym ≥ MiniLM-L6 (0.6451): 2 of 2" in text and text.rstrip().endswith("Two seeds.")
    monkeypatch.setattr(sys, "argv", argv)  # rerun on the same numbers: the reading stays
    seed_spread.main()
    assert (tmp_path / "seed_spread_x.md").read_text().rstrip().endswith("Two seeds.")
    (tmp_path / "learning_curve_b.json").write_text(json.dumps(curve("AMD EPYC", {30.0: (0.6400, 0.6307)})))
    seed_spread.main()  # new numbers: the old reading no longer describes them, so it is dropped
    assert "Two seeds." not in (tmp_path / "seed_spread_x.md").read_text()


def test_cli_rejects_a_malformed_or_missing_curve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["seed_spread", "--out", str(tmp_path), "--name", "x", "--curve", "7"])
    with pytest.raises(InputError, match="SEED=NAME"):
        seed_spread.main()
    monkeypatch.setattr(sys, "argv", ["seed_spread", "--out", str(tmp_path), "--name", "x", "--curve", "7=none"])
    with pytest.raises(InputError, match="no learning curve"):
        seed_spread.main()


def test_cli_rejects_a_seed_given_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["seed_spread", "--out", str(tmp_path), "--name", "x", "--curve", "7=a", "--curve", "7=b"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(InputError, match="given twice"):
        seed_spread.main()
    assert not list(tmp_path.iterdir())  # nothing written
