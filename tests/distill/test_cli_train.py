from __future__ import annotations

from pathlib import Path

import numpy as np

from .conftest import BowData


def base_args(bow: BowData, student: Path, out: Path) -> list[object]:
    return ["train", "--student", student, "--out", out, "--max-steps", "2", "--no-progress", "--eval-texts", "10"]


def test_cli_trains_with_a_black_box_teacher(
    run_cli, bow_teacher: BowData, tiny_model_dir: Path, tmp_path: Path, isolated_cache: Path
) -> None:
    out = tmp_path / "s"
    args = [*base_args(bow_teacher, tiny_model_dir, out), "--teacher", "bow-teacher"]
    args += ["--teacher-embeddings", bow_teacher.embeddings_path, "--teacher-texts", bow_teacher.texts_path]
    code, stdout, stderr = run_cli(*args)
    assert code == 0, stderr
    assert "held-out alignment: mean cosine" in stdout
    assert (out / "embedkd.json").is_file()


def test_cli_errors_are_clean(
    run_cli, bow_teacher: BowData, tiny_model_dir: Path, tiny_model_factory, tmp_path: Path, isolated_cache: Path
) -> None:
    out = tmp_path / "s"
    common = base_args(bow_teacher, tiny_model_dir, out)

    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    code, _, err = run_cli(*common, "--teacher", tiny_model_dir, "--data", empty)
    assert code == 2 and ("no text" in err.lower() or "no usable" in err), err

    code, _, err = run_cli(*common, "--teacher", tiny_model_dir)
    assert code == 2 and "no training data" in err

    code, _, err = run_cli(*common, "--teacher", "./no/such/teacher", "--data", bow_teacher.texts_path)
    assert code == 3 and "no/such/teacher" in err

    wide = tiny_model_factory(hidden=48)  # a real model whose dimension (48) differs from the .npy's (24)
    code, _, err = run_cli(
        *common,
        "--teacher",
        wide,
        "--teacher-embeddings",
        bow_teacher.embeddings_path,
        "--teacher-texts",
        bow_teacher.texts_path,
    )
    assert code == 2 and "dimension 24" in err and "dimension 48" in err

    short = tmp_path / "short.npy"
    np.save(short, bow_teacher.embeddings[:-1])
    code, _, err = run_cli(
        *common, "--teacher", "bow", "--teacher-embeddings", short, "--teacher-texts", bow_teacher.texts_path
    )
    assert code == 2 and "rows" in err

    code, _, err = run_cli(*common, "--teacher", tiny_model_dir, "--data", bow_teacher.texts_path, "--loss", "l3")
    assert code == 2 and "unknown loss 'l3'" in err

    for stream in (err,):
        assert "Traceback" not in stream
    assert not (out / "modules.json").exists()
