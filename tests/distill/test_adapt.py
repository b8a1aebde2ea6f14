"""`embedkd adapt`: a trained student, started from, trained on an index's documents beside its own text."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from embedkd.data.documents import Document
from embedkd.distill import DistillConfig, Teacher, distill
from embedkd.distill.adapt import adapt_config
from embedkd.distill.layer_store import store_summaries
from embedkd.errors import InputError
from embedkd.index import build_index
from embedkd.models.manifest import StudentManifest
from embedkd.testing import build_tiny_beir

WORDS = "glacier basalt magma tectonic sediment quartz erosion fault".split()


@pytest.fixture
def trained(tiny_model_factory: Callable[..., Path], tmp_path: Path, isolated_cache: Path) -> dict[str, Path]:
    """A tiny teacher, a student trained on a tiny BEIR corpus, and an index of other documents by the teacher."""
    teacher_dir = tiny_model_factory(hidden=48, seed=3)
    corpus = build_tiny_beir(tmp_path / "beir", docs=30, queries=4)
    student = tmp_path / "student"
    common = dict(max_steps=6, batch_size=8, eval_every=3, eval_texts=10, progress=False, seed=5)
    distill(
        DistillConfig(
            out=student,
            data=[corpus],
            teacher=str(teacher_dir),
            student=str(tiny_model_factory()),
            base_relation_weight=0.0,
            **common,  # type: ignore[arg-type]
        )
    )
    teacher = Teacher.from_model(str(teacher_dir))
    docs = [
        Document(id=f"g{i}", title="", text=f"{WORDS[i % 8]} {WORDS[(i * 3) % 8]}. The {WORDS[(i + 1) % 8]} moved.")
        for i in range(12)
    ]
    embed = lambda texts: teacher.embeddings(texts, progress=False)  # noqa: E731
    build_index(tmp_path / "index", docs, teacher=teacher.ref, embed=embed, progress=False).close()
    return {"student": student, "index": tmp_path / "index", "corpus": corpus, "teacher": teacher_dir}


def test_adapt_starts_from_the_student_and_trains_on_the_index_beside_its_own_data(
    trained: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = adapt_config(trained["student"], [trained["index"]], tmp_path / "adapted", steps=4, progress=False)
    assert config.init_from == trained["student"] and config.teacher == str(trained["teacher"])
    assert config.data == [trained["corpus"], trained["index"]]  # the student's own data, then the index
    assert config.seed == 5 and config.data_options.max_texts_per_source == 20_000
    config.eval_every = 2
    monkeypatch.setenv("EMBEDKD_LAYERS_DIR", str(tmp_path / "layers"))  # a store this run writes first
    result = distill(config)
    student_manifest = StudentManifest.read(trained["student"])
    assert student_manifest is not None  # the store is named after the base its frozen layers come from
    assert [s["model"] for s in store_summaries()] == [student_manifest.base]
    manifest = StudentManifest.read(result.out)
    assert manifest is not None
    assert str(trained["index"]) in manifest.training["data"]["by_source"]
    assert manifest.training["config"]["init_from"] == str(trained["student"])
    assert [h["step"] for h in result.history] == [0, 2, 4]
    again = adapt_config(result.out, [trained["index"]], tmp_path / "again")  # the index once, not twice
    assert again.data == [trained["corpus"], trained["index"]] and again.init_from == result.out


def test_adapt_finds_relative_data_from_the_folder_the_student_was_trained_in(
    trained: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = json.loads((trained["student"] / "embedkd.json").read_text())
    assert manifest["training"]["working_dir"] == os.getcwd()
    manifest["training"]["config"]["data"] = ["beir"]  # as `embedkd train --data beir` run in tmp_path records it
    manifest["training"]["working_dir"] = str(tmp_path)
    (trained["student"] / "embedkd.json").write_text(json.dumps(manifest))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    config = adapt_config(trained["student"], [trained["index"]], tmp_path / "a")
    assert config.data == [trained["corpus"], trained["index"]]


def test_adapt_leaves_out_data_it_cannot_find_and_refuses_another_teachers_index(
    trained: dict[str, Path],
    tiny_model_factory: Callable[..., Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    manifest = json.loads((trained["student"] / "embedkd.json").read_text())
    manifest["training"]["config"]["data"] = [str(tmp_path / "gone.jsonl")]  # trained on another machine
    (trained["student"] / "embedkd.json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING, logger="embedkd.distill.adapt"):
        config = adapt_config(trained["student"], [trained["index"]], tmp_path / "a")
    assert config.data == [trained["index"]]
    assert "gone.jsonl" in caplog.text and "no other training text" in caplog.text
    given = tmp_path / "more.txt"
    given.write_text("glacier basalt\n")
    assert adapt_config(trained["student"], [trained["index"]], tmp_path / "a", data=[given]).data == [
        given,
        trained["index"],
    ]

    other = Teacher.from_model(str(tiny_model_factory(hidden=40, seed=4)))
    docs = [Document(id="x", title="", text="quartz erosion")]
    embed = lambda texts: other.embeddings(texts, progress=False)  # noqa: E731
    build_index(tmp_path / "other", docs, teacher=other.ref, embed=embed, progress=False).close()
    with pytest.raises(InputError, match="a student only serves its own teacher's index"):
        adapt_config(trained["student"], [tmp_path / "other"], tmp_path / "b")
    with pytest.raises(InputError, match="not an embedkd index"):
        adapt_config(trained["student"], [trained["corpus"]], tmp_path / "b")
    with pytest.raises(InputError, match="--student .* not an embedkd student"):
        adapt_config(trained["index"], [trained["index"]], tmp_path / "b")


def test_the_adapt_command_reports_the_student_and_the_check_to_run(
    trained: dict[str, Path], tmp_path: Path, run_cli: Callable[..., tuple[int, str, str]]
) -> None:
    out = tmp_path / "adapted"
    code, stdout, err = run_cli(
        "adapt", "--student", trained["student"], "--index", trained["index"], "--out", out, "--steps", "3",
        "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert f"adapted student saved to {out}" in stdout
    assert f"embedkd index check --index {trained['index']} --student {out}" in stdout
    code, _, err = run_cli("adapt", "--student", trained["student"], "--index", tmp_path / "nope", "--out", out)
    assert code == 2 and "not an embedkd index" in err
