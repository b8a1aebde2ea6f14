"""A family of students on one teacher index: pick by name or by a latency budget."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from embedkd.models.encoder import Encoder
from embedkd.models.manifest import Alignment, StudentManifest


@pytest.fixture
def second_student(service_files: dict[str, Path], tiny_model_factory, tmp_path: Path) -> Path:
    folder = tmp_path / "student-b"
    shutil.copytree(tiny_model_factory(hidden=48, seed=5), folder)
    teacher = StudentManifest.read(service_files["student"])
    assert teacher is not None
    StudentManifest(
        teacher=teacher.teacher, base="tiny", alignment=Alignment(mean_cosine=0.95, mse=0.1, texts=10, held_out="t")
    ).write(folder)
    return folder


def test_students_are_listed_with_their_measured_latency(make_client, second_student: Path) -> None:
    client = make_client(students=[str(second_student)])
    students = {s["name"]: s for s in client.get("/models").json()["students"]}
    assert set(students) == {"student-b", client.get("/models").json()["student"]["name"]}
    assert all(s["batch1_p50_ms"] > 0 and s["alignment"]["mean_cosine"] > 0.9 for s in students.values())
    listed = {m["id"] for m in client.get("/v1/models").json()["data"]}
    assert "student-b" in listed and len(listed) == 3


def test_requests_pick_a_student_by_name_or_latency(make_client, second_student: Path) -> None:
    client: TestClient = make_client(students=[str(second_student)])
    default = client.post("/search", json={"query": "apple orchard", "k": 2}).json()
    named = client.post("/search", json={"query": "apple orchard", "k": 2, "student": "student-b"}).json()
    assert named["model"] == "student-b" and default["model"] != "student-b" and named["mode"] == "asym"
    assert client.post("/search", json={"query": "x", "student": "nope"}).status_code == 404

    roomy = client.post("/search", json={"query": "apple orchard", "max_latency_ms": 1e6}).json()
    assert roomy["model"] == "student-b"  # both fit: the better aligned one (0.95 against 0.93)
    tight = client.post("/search", json={"query": "apple orchard", "max_latency_ms": 1e-6})
    assert tight.status_code == 422 and "fastest" in tight.json()["detail"]

    encoded = client.post("/encode", json={"inputs": ["apple orchard"], "student": "student-b"}).json()
    expected = Encoder.load(second_student, device="cpu").encode_query(["apple orchard"])
    np.testing.assert_allclose(encoded["embeddings"], expected, atol=1e-5)
    openai = client.post("/v1/embeddings", json={"input": "apple orchard", "model": "student-b"})
    assert openai.status_code == 200
    np.testing.assert_allclose(openai.json()["data"][0]["embedding"], expected[0], atol=1e-5)


def test_a_student_of_another_teacher_cannot_join_the_family(make_client, tiny_model_factory, tmp_path: Path) -> None:
    from embedkd.errors import AlignmentError

    stranger = tmp_path / "stranger"
    shutil.copytree(tiny_model_factory(hidden=48, seed=9), stranger)
    (stranger / "embedkd.json").write_text(
        json.dumps({"teacher": {"name": "other", "fingerprint": "0" * 64, "dimension": 48}, "base": "x"})
    )
    with pytest.raises(AlignmentError, match="other"):
        make_client(students=[str(stranger)])


def test_the_official_openai_client_lists_and_uses_every_student(
    make_client, service_files: dict[str, Path], second_student: Path
) -> None:
    openai = pytest.importorskip("openai")
    client: TestClient = make_client(students=[str(second_student)])
    oai = openai.OpenAI(base_url=f"{client.base_url}/v1", api_key="unused", http_client=client, max_retries=0)
    default = client.get("/models").json()["student"]["name"]
    listed = {m.id for m in oai.models.list()}
    assert {default, "student-b"} <= listed
    for name, folder in ((default, service_files["student"]), ("student-b", second_student)):
        got = oai.embeddings.create(input=["apple orchard"], model=name).data[0].embedding
        want = Encoder.load(folder, device="cpu").encode_query(["apple orchard"])[0]
        np.testing.assert_allclose(got, want, atol=1e-5)
