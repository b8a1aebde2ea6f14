"""benchmarks/serving_processes.py's report: embedkd's rows next to the peer's, and the ratios between them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks import serving_processes
from benchmarks.serving_processes import add_in_process, write_markdown


def ours(workers: int, rate: float, batch: float, inprocess: float) -> dict[str, Any]:
    return {
        "round": 1, "workers": workers, "connections": 32, "requests/s": rate, "p50 ms": 10.0, "p99 ms": 20.0,
        "effective batch": batch, "model busy": 0.8, "forward ms": 5.0, "in-process texts/s": inprocess,
    }  # fmt: skip


def test_the_means_divide_by_in_process_and_by_the_peer(tmp_path: Path) -> None:
    peer = {"round": 1, "workers": "infinity-emb", "connections": 32, "requests/s": 250.0, "p50 ms": 90.0,
            "p99 ms": 200.0}  # fmt: skip
    results = {
        "machine": "test", "concurrent": "nothing", "load_generator": "wrk", "seconds": 15, "student": "s",
        "backend": "torch", "peer": "infinity-emb 0.0.78", "in_process": {"16": 500.0, "32": 800.0},
        "rows": [ours(1, 400.0, 16, 500.0), ours(2, 600.0, 16, 500.0), peer],
    }  # fmt: skip
    path = tmp_path / "report.md"
    write_markdown(results, path)
    means = path.read_text().split("## Means over the rounds")[1]
    assert "| 1 | 32 | 1 | 400 | 10.0 | 20.0 | 0.80 | 0.50 | 1.60x |" in means
    assert "| 2 | 32 | 1 | 600 | 10.0 | 20.0 | 1.20 | 0.75 | 2.40x |" in means
    assert "| infinity-emb | 32 | 1 | 250 | 90.0 | 200.0 |  |  |  |" in means
    assert "Peer: infinity-emb 0.0.78" in path.read_text()


def test_without_a_peer_the_infinity_column_stays_empty(tmp_path: Path) -> None:
    results = {
        "machine": "test", "concurrent": "nothing", "load_generator": "wrk", "seconds": 15, "student": "s",
        "backend": "torch", "in_process": {"16": 500.0}, "rows": [ours(1, 400.0, 16, 500.0)],
    }  # fmt: skip
    path = tmp_path / "report.md"
    write_markdown(results, path)
    assert "| 1 | 32 | 1 | 400 | 10.0 | 20.0 | 0.80 | 0.80 |  |" in path.read_text()
    assert "Peer:" not in path.read_text()


def test_in_process_is_measured_at_our_batches_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serving_processes, "inprocess_throughput", lambda encoder, batch: 100.0 * batch)
    peer = {"round": 1, "workers": "infinity-emb", "connections": 32, "requests/s": 250.0}
    results: dict[str, Any] = {"rows": [{"workers": 1, "effective batch": 7.6}, peer]}
    add_in_process(results, encoder=None)  # type: ignore[arg-type]
    assert results["in_process"] == {"8": 800.0, "32": 3200.0}
    assert results["rows"][0]["in-process texts/s"] == 800.0
    assert "in-process texts/s" not in results["rows"][1]
