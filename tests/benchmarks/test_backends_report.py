"""benchmarks/backends.py's report: timed-only models get no score; the 'fastest' line is the default's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.backends import write_markdown


def row(model: str, backend: str, p50: float, ndcg: float | None) -> dict[str, Any]:
    return {
        "model": model,
        "backend": backend,
        "b1 p50 ms": p50,
        "b1 p99 ms": p50 * 2,
        "b64 texts/s": 1000 / p50,
        "ndcg@10": ndcg,
        "cosine to fp32": 1.0,
    }


def test_a_timing_only_model_is_timed_and_compared_but_not_scored(tmp_path: Path) -> None:
    results = {
        "machine": "test machine",
        "concurrent": "nothing else",
        "default": "student",
        "rows": [
            row("teacher", "torch fp32", 60.0, 0.6557),
            row("student", "torch fp32", 12.0, 0.6342),
            row("student", "openvino", 5.0, 0.6353),
            row("student", "openvino int8", 3.0, 0.6200),  # faster, but loses more than 0.003
            row("minilm", "torch fp32", 11.0, None),
            row("minilm", "openvino", 2.0, None),  # the fastest row of all, but not the default student's
        ],
    }
    path = tmp_path / "backends_layers.md"
    write_markdown(results, path)
    text = path.read_text()
    assert "| minilm | torch fp32 | 11.0 | 22.0 | 91 | – | 1.00000 |" in text
    assert "| minilm | torch fp32 | 5.5x |" in text  # the speed ratio still uses the teacher on the same backend
    assert "Fastest student backend within 0.003 nDCG@10 of torch fp32: **openvino**, batch-1 p50 5.0 ms" in text
