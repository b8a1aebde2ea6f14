"""The frontier benchmark runs end to end on tiny models (what `make bench` runs on real ones)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_frontier_smoke(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.frontier", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "frontier.json").read_text())
    rows = {row["name"]: row for row in data["rows"]}
    assert any(row["is_teacher"] for row in rows.values())
    assert "SMOKE RUN" in data["stamp"]
    for row in rows.values():
        assert row["p50_ms"] > 0 and row["qps_b64"] > 0
        for key in ("ndcg_asym", "ndcg_sym", "sts"):
            assert row[key] is None or math.isfinite(row[key])
    names = " ".join(rows)
    assert "@24 dims" in names and "@12 dims" in names and "binary" in names and "undistilled" in names
    png = (tmp_path / "frontier.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "| model / index |" in (tmp_path / "frontier.md").read_text()


def test_labels_of_coincident_points_are_spread_apart() -> None:
    from benchmarks.frontier import spread_labels

    points = [(12.4, 0.6214), (12.4, 0.6214), (12.5, 0.6202), (57.0, 0.6557), (6.9, 0.5985)]
    heights = spread_labels(points, min_gap=0.004)
    column = sorted(heights[:3])
    assert all(b - a >= 0.004 - 1e-9 for a, b in zip(column, column[1:], strict=False))
    assert heights[3] == 0.6557 and heights[4] == 0.5985  # alone in their columns: labels stay on the point
    assert abs(sum(heights[:3]) / 3 - (0.6214 * 2 + 0.6202) / 3) < 1e-9  # the cluster stays centred on its points
