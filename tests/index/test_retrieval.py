from __future__ import annotations

import logging
from pathlib import Path

import pytest

from embedkd.distill.teacher import Teacher
from embedkd.errors import AlignmentError
from embedkd.index import build_index
from embedkd.models import Encoder
from embedkd.models.manifest import Alignment, StudentManifest, TeacherRef
from embedkd.retrieval import LOOSE_COSINE, AsymmetricRetriever, RetrievalMode, check_alignment

from .conftest import make_docs


def fake_student(folder: Path, teacher: TeacherRef) -> Encoder:
    """A 48-d encoder whose manifest says it was aligned to ``teacher``."""
    StudentManifest(teacher=teacher, base="tiny").write(folder)
    return Encoder.load(folder, device="cpu")


@pytest.mark.parametrize(("cosine", "warned"), [(0.781, False), (LOOSE_COSINE - 0.01, True)])
def test_a_loosely_aligned_student_is_warned_about(
    cosine: float, warned: bool, tiny_model_factory, teacher: Teacher, embed, tmp_path: Path, caplog
) -> None:
    """The default recipe's 30-minute student (held-out cosine 0.781, 0.99x the teacher) is not warned
    about; a student below the measured line is, and still serves."""
    index = build_index(tmp_path / "i", make_docs(10), teacher=teacher.ref, embed=embed, progress=False)
    folder = tiny_model_factory(hidden=48, seed=7)
    alignment = Alignment(mean_cosine=cosine, mse=0.4, texts=1000, held_out="held-out training texts")
    StudentManifest(teacher=teacher.ref, base="tiny", alignment=alignment).write(folder)
    with caplog.at_level(logging.WARNING, logger="embedkd.retrieval"):
        check_alignment(Encoder.load(folder, device="cpu"), index, RetrievalMode.ASYM)
    assert ("loosely aligned" in caplog.text) is warned, caplog.text
    index.close()


def test_asym_retriever_checks_the_teacher(tiny_model_factory, teacher: Teacher, embed, tmp_path: Path) -> None:
    index = build_index(tmp_path / "i", make_docs(30), teacher=teacher.ref, embed=embed, progress=False)
    student_dir = tiny_model_factory(hidden=48, seed=7)
    aligned = fake_student(student_dir, teacher.ref)
    retriever = AsymmetricRetriever(index, student=aligned)
    assert len(retriever.search(["apple river"], 3)[0]) == 3

    other = TeacherRef(name="someone-else", fingerprint="f" * 64, dimension=48)
    misaligned = fake_student(student_dir, other)
    with pytest.raises(AlignmentError, match="someone-else"):
        AsymmetricRetriever(index, student=misaligned)
    AsymmetricRetriever(index, student=misaligned, force=True)  # an explicit override works

    (student_dir / "embedkd.json").unlink()
    with pytest.raises(AlignmentError, match="no embedkd.json"):
        check_alignment(Encoder.load(student_dir), index, RetrievalMode.ASYM)

    teacher_encoder = Encoder.load(teacher.model_path)
    retriever = AsymmetricRetriever(index, teacher=teacher_encoder, mode="teacher")
    assert retriever.search(["apple"], 2)[0][0].score > 0
    narrow = Encoder.load(tiny_model_factory(hidden=32))
    with pytest.raises(AlignmentError, match="32-d"):
        check_alignment(narrow, index, "student")
    index.close()
