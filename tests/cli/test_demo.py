"""The main job end to end on tiny models: first run builds everything, second run reuses it."""

from __future__ import annotations

import json
from pathlib import Path

from embedkd.data.stdlib import stdlib_corpus
from embedkd.index import Index
from embedkd.models.manifest import StudentManifest


def test_stdlib_corpus_is_offline_and_deterministic() -> None:
    docs = stdlib_corpus(50)
    assert len(docs) == 50 and len({d.id for d in docs}) == 50
    assert all(len(d.text) >= 80 and d.metadata["kind"] in {"module", "class", "function", "method"} for d in docs)
    assert [d.id for d in docs] == [d.id for d in stdlib_corpus(50)]
    assert any(d.id == "argparse" for d in stdlib_corpus(None))


def test_demo_pipeline_builds_then_reuses(run_cli, tiny_model_factory, tmp_path: Path) -> None:
    teacher = tiny_model_factory(hidden=48, seed=1)
    student_base = tiny_model_factory(hidden=32, seed=2)
    corpus = tmp_path / "corpus.jsonl"
    rows = [
        {"_id": f"d{i}", "title": f"Doc {i}", "text": f"Sentence one about topic {i}. Another one here {i}."}
        for i in range(30)
    ]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = [
        "demo",
        "--workdir",
        tmp_path / "work",
        "--corpus",
        corpus,
        "--teacher",
        teacher,
        "--student-base",
        student_base,
        "--fuse-model",
        student_base,
        "--train-minutes",
        "0.1",
        "--no-serve",
        "--no-progress",
    ]

    code, out, err = run_cli(*args)
    assert code == 0, err
    assert "built now" in out and "trained now" in out
    manifest = StudentManifest.read(tmp_path / "work" / "student")
    assert manifest is not None and manifest.teacher.dimension == 48
    # the second index of the fusion: every document, in the student base's own (32-d) space
    (fuse_dir,) = (tmp_path / "work").glob("fuse-*")
    with Index.open(fuse_dir, readonly=True) as fused:
        assert len(fused) == 30 and fused.teacher.dimension == 32
    assert f"fusion  {fuse_dir} (30 documents)" in out

    code, out, err = run_cli(*args)
    assert code == 0, err
    assert "cached" in out and "built now" not in out and "trained now" not in out
    assert f"fusion  {fuse_dir} (30 documents)" in out and len(list((tmp_path / "work").glob("fuse-*"))) == 1

    code, out, err = run_cli(*args, "--fuse-model", "none")  # the last value of an option wins
    assert code == 0, err
    assert "fusion" not in out


def test_serving_early_indexes_a_slice_and_trains_in_a_child_process(
    tiny_model_factory, tmp_path: Path, isolated_cache: Path
) -> None:
    from embedkd.index import Index
    from embedkd.quickstart import prepare, train_in_background

    teacher = tiny_model_factory(hidden=48, seed=1)
    corpus = tmp_path / "corpus.jsonl"
    rows = [
        {"_id": f"d{i}", "title": f"Doc {i}", "text": f"Topic {i} sentence. More words here {i}."} for i in range(30)
    ]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    paths = prepare(
        tmp_path / "work",
        teacher=str(teacher),
        student_base=str(tiny_model_factory(hidden=32, seed=2)),
        fuse_model=str(tiny_model_factory(hidden=32, seed=2)),
        corpus=corpus,
        train_minutes=0.05,
        generic_text="none",
        first_slice=8,
        progress=False,
    )
    assert paths.corpus_size == 8 and paths.corpus_total == 30 and paths.corpus_file is not None
    assert paths.training is not None and not paths.trained and not paths.student.exists()
    with Index.open(paths.index, readonly=True) as index:
        assert len(index) == 8
    assert paths.fuse_index is not None and paths.fuse_size == 8 and paths.partial  # the server grows both

    child = train_in_background(paths.training, tmp_path / "work" / "train.log")
    assert child.wait(timeout=300) == 0, (tmp_path / "work" / "train.log").read_text()[-2000:]
    manifest = StudentManifest.read(paths.student)
    assert manifest is not None and manifest.teacher.dimension == 48
