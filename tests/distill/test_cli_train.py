from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .conftest import BowData


def base_args(bow: BowData, student: Path, out: Path) -> list[object]:
    return ["train", "--student-base", student, "--out", out, "--max-steps", "2", "--no-progress", "--eval-texts", "10"]


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
    streams: list[str] = []

    def run(*args: object) -> tuple[int, str, str]:
        code, stdout, stderr = run_cli(*args)
        streams.extend([stdout, stderr])
        return code, stdout, stderr

    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    code, _, err = run(*common, "--teacher", tiny_model_dir, "--data", empty)
    assert code == 2 and ("no text" in err.lower() or "no usable" in err), err

    code, _, err = run(*common, "--teacher", tiny_model_dir)
    assert code == 2 and "no training data" in err

    code, _, err = run(*common, "--teacher", "./no/such/teacher", "--data", bow_teacher.texts_path)
    assert code == 3 and "no/such/teacher" in err

    wide = tiny_model_factory(hidden=48)  # a real model whose dimension (48) differs from the .npy's (24)
    code, _, err = run(
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
    code, _, err = run(
        *common, "--teacher", "bow", "--teacher-embeddings", short, "--teacher-texts", bow_teacher.texts_path
    )
    assert code == 2 and "rows" in err

    code, _, err = run(*common, "--teacher", tiny_model_dir, "--data", bow_teacher.texts_path, "--loss", "l3")
    assert code == 2 and "unknown loss 'l3'" in err

    code, _, err = run(*common, "--teacher", tiny_model_dir, "--data", bow_teacher.texts_path, "--l2sp-weight", "-1")
    assert code == 2 and "l2sp_weight must be 0 or more" in err

    for steps in ("0", "-1"):  # 0 once trained the whole schedule, -1 no step at all
        code, _, err = run(*common, "--teacher", tiny_model_dir, "--data", bow_teacher.texts_path, "--max-steps", steps)
        assert code == 2 and "max_steps must be at least 1" in err, err

    assert len(streams) == 18  # every command's stdout and stderr
    for stream in streams:
        assert "Traceback" not in stream
    assert not (out / "modules.json").exists()


def test_out_refuses_a_folder_that_is_not_a_student_and_keeps_its_files(
    run_cli, bow_teacher: BowData, tiny_model_dir: Path, tmp_path: Path, isolated_cache: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    precious = work / "notes.txt"
    precious.write_text("do not delete")
    args = [*base_args(bow_teacher, tiny_model_dir, work), "--teacher", "bow-teacher"]
    args += ["--teacher-embeddings", bow_teacher.embeddings_path, "--teacher-texts", bow_teacher.texts_path]
    code, _, err = run_cli(*args)
    assert code == 2 and "not empty" in err and "Traceback" not in err
    assert precious.read_text() == "do not delete"

    student = tmp_path / "student"  # an existing student folder is replaced whole, atomically
    args[args.index(work)] = student
    assert run_cli(*args)[0] == 0
    first = (student / "embedkd.json").read_text()
    assert run_cli(*args)[0] == 0
    assert (student / "embedkd.json").is_file() and (student / "modules.json").is_file()
    assert json.loads((student / "embedkd.json").read_text())["teacher"] == json.loads(first)["teacher"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".student")]


def test_every_config_field_is_an_option_with_help_and_the_same_default() -> None:
    import dataclasses
    from enum import Enum

    from embedkd.cli.train import train_command
    from embedkd.distill import DataOptions, DistillConfig

    params = train_command.__signature__.parameters  # type: ignore[attr-defined]
    for cls in (DistillConfig, DataOptions):
        for field in dataclasses.fields(cls):
            if field.name == "data_options":
                continue
            name = "data_seed" if cls is DataOptions and field.name == "seed" else field.name
            assert name in params, name
            assert field.metadata.get("help"), f"{cls.__name__}.{field.name} has no help"
            if field.default is not dataclasses.MISSING:
                default = field.default.value if isinstance(field.default, Enum) else field.default
                assert params[name].default == default, name
