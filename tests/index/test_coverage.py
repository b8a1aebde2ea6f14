"""`embedkd index check`: a student's alignment on an index's own chunks, against its held-out texts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from embedkd.distill.teacher import Teacher
from embedkd.errors import InputError
from embedkd.evaluation.alignment import coverage_of, index_coverage
from embedkd.index import build_index
from embedkd.models import Encoder
from embedkd.models.manifest import Alignment, StudentManifest

from .conftest import make_docs


def student_folder(model: Path, folder: Path, teacher: Teacher, *, document_cosine: float | None = 0.9) -> Path:
    """A copy of ``model`` whose embedkd.json names ``teacher`` and records a held-out document cosine."""
    shutil.copytree(model, folder)
    extra = {"cosine_by_kind": {"query": 0.8, "sentence": 0.8, "document": document_cosine}} if document_cosine else {}
    StudentManifest(teacher=teacher.ref, base="tiny", alignment=Alignment(0.85, 0.3, 40, "test", extra)).write(folder)
    return folder


def test_the_teacher_itself_is_aligned_on_every_chunk_and_a_stranger_is_not(
    tiny_model_factory, teacher: Teacher, embed, tmp_path: Path
) -> None:
    docs = make_docs(8, max_words=200)  # long documents: several chunks each
    index = build_index(tmp_path / "i", docs, teacher=teacher.ref, embed=embed, progress=False)
    chunks = index.store.counts()["chunks"]
    assert chunks > len(docs)

    same = Encoder.load(student_folder(teacher.model_path, tmp_path / "same", teacher))
    coverage = index_coverage(same, index, same.manifest, sample=10_000)
    assert coverage.compared == coverage.chunks == chunks  # a sample larger than the index takes every chunk once
    assert coverage.cosine > 0.99  # the text the teacher embedded, rebuilt from the store
    assert set(coverage.by_kind) <= {"document", "sentence"} and coverage.reference_cosine is not None
    assert 0.8 - 1e-9 <= coverage.reference_cosine <= 0.9 + 1e-9 and coverage.covered is True and coverage.ratio > 1.05

    stranger_dir = student_folder(tiny_model_factory(hidden=48, seed=5), tmp_path / "stranger", teacher)
    stranger = Encoder.load(stranger_dir)
    low = index_coverage(stranger, index, stranger.manifest, sample=16, seed=3)
    assert low.compared == 16 and low.cosine < 0.6
    assert low.covered is False and "embedkd adapt --student STUDENT" in low.verdict
    again = index_coverage(stranger, index, stranger.manifest, sample=16, seed=3)
    assert again.cosine == pytest.approx(low.cosine)  # the sample is seeded

    index.delete([d.id for d in docs])
    with pytest.raises(InputError, match="holds no documents"):
        index_coverage(same, index, same.manifest)
    with pytest.raises(InputError, match="at least 1"):
        index_coverage(same, index, same.manifest, sample=0)
    index.close()


def test_each_chunk_compares_with_held_out_texts_of_its_kind() -> None:
    manifest = StudentManifest.from_dict(
        {"teacher": {"name": "t", "fingerprint": "f" * 64, "dimension": 8}, "alignment": None}
    )
    cosines, kinds = np.array([0.9, 0.7, 0.7, 0.7]), ["sentence", "document", "document", "document"]
    assert coverage_of(cosines, kinds, 10, manifest).covered is None
    assert coverage_of(cosines, kinds, 10, None).verdict.startswith("no verdict")

    manifest.alignment = Alignment(0.8, 0.4, 10, "test")  # no cosine by kind: every chunk against 0.8
    coverage = coverage_of(cosines, kinds, 10, manifest)
    assert coverage.reference_cosine == pytest.approx(0.8) and coverage.ratio == pytest.approx(0.75 / 0.8)
    assert coverage.covered is False and coverage.reference == "its own held-out texts (all kinds)"

    manifest.alignment.extra = {"cosine_by_kind": {"sentence": 0.9, "document": 0.7}}
    coverage = coverage_of(cosines, kinds, 10, manifest)
    assert coverage.reference_cosine == pytest.approx(0.75) and coverage.ratio == pytest.approx(1.0)
    assert coverage.covered is True and coverage.by_kind["document"] == pytest.approx(
        {"chunks": 3, "cosine": 0.7, "reference": 0.7}
    )
    assert coverage.to_dict()["covered"] is True


def test_index_check_through_the_cli(run_cli, tiny_model_factory, teacher: Teacher, embed, tmp_path: Path) -> None:
    index = build_index(tmp_path / "i", make_docs(12), teacher=teacher.ref, embed=embed, progress=False)
    index.close()
    same = student_folder(teacher.model_path, tmp_path / "same", teacher)
    code, out, err = run_cli("index", "check", "--index", tmp_path / "i", "--student", same, "--json", "--sample", 20)
    assert code == 0, err
    report = json.loads(out)
    assert report["covered"] is True and report["compared"] == 20 and report["chunks"] > 20
    assert np.isclose(report["ratio"], report["cosine"] / report["reference_cosine"])

    stranger = student_folder(tiny_model_factory(hidden=48, seed=5), tmp_path / "stranger", teacher)
    code, out, err = run_cli("index", "check", "-x", tmp_path / "i", "--student", stranger)
    assert code == 0 and "not covered" in out  # report only, by default
    code, out, err = run_cli("index", "check", "-x", tmp_path / "i", "--student", stranger, "--min-ratio", "0.95")
    assert code == 1 and "not covered" in out

    unaligned = tmp_path / "unaligned"
    shutil.copytree(tiny_model_factory(hidden=48, seed=5), unaligned)  # no embedkd.json
    code, out, err = run_cli("index", "check", "-x", tmp_path / "i", "--student", unaligned)
    assert code != 0 and "no embedkd.json" in err and "Traceback" not in err
