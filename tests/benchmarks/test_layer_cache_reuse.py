from pathlib import Path

from benchmarks.layer_cache_reuse import folder_bytes, write


def test_report_has_one_row_per_run_with_its_seconds_and_store(tmp_path: Path) -> None:
    run = {"texts": 198167, "teacher_seconds": 30.0, "train_seconds": 2.0, "wall_seconds": 500.0}
    results = {
        "machine": "test CPU",
        "concurrent": "nothing else",
        "steps": 20,
        "runs": [
            {**run, "run": "first", "layer_cache_seconds": 459.8, "store_bytes": 2509 * 2**20},
            {**run, "run": "resume", "layer_cache_seconds": 3.2, "store_bytes": 2509 * 2**20},
        ],
    }
    write(results, tmp_path / "r.md")
    text = (tmp_path / "r.md").read_text()
    assert "| first | 198,167 | 459.8 | 30.0 | 2.0 | 500.0 | 2,509 |" in text
    assert "| resume | 198,167 | 3.2 |" in text
    assert "test CPU" in text and "20 steps per run" in text


def test_folder_bytes_adds_up_every_file_below(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x").write_bytes(b"12345")
    (tmp_path / "y").write_bytes(b"67")
    assert folder_bytes(tmp_path) == 7
