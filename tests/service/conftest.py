from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from embedkd.data.documents import Document
from embedkd.distill.teacher import Teacher
from embedkd.index import build_index
from embedkd.models.manifest import Alignment, StudentManifest
from embedkd.service.app import create_app
from embedkd.service.settings import Settings

DOCS = [
    ("apple", "Apples", "apple orchard harvest apple pie", {"kind": "fruit", "year": 2020}),
    ("river", "Rivers", "river delta water flow estuary", {"kind": "geo", "year": 2021}),
    ("violin", "Music", "violin concert music hall orchestra", {"kind": "art", "year": 2020}),
    ("desert", "Deserts", "desert sand dune camel heat", {"kind": "geo", "year": 2022}),
    ("rocket", "Space", "rocket launch orbit planet engine", {"kind": "tech", "year": 2023}),
]


@pytest.fixture(scope="session")
def service_files(tiny_model_factory: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny teacher, a 48-d 'student' whose manifest names that teacher, and a 5-document index."""
    root = tmp_path_factory.mktemp("service")
    teacher_dir = tiny_model_factory(hidden=48, seed=1)
    student_dir = tiny_model_factory(hidden=48, seed=3)
    teacher = Teacher.from_model(str(teacher_dir))
    StudentManifest(
        teacher=teacher.ref,
        base="tiny",
        alignment=Alignment(mean_cosine=0.93, mse=0.14, texts=10, held_out="test"),
    ).write(student_dir)
    docs = [Document(id=i, title=t, text=x, metadata=m) for i, t, x, m in DOCS]
    build_index(
        root / "index",
        docs,
        teacher=teacher.ref,
        embed=lambda texts: teacher.embeddings(texts, progress=False),
        progress=False,
    ).close()
    return {"root": root, "index": root / "index", "teacher": teacher_dir, "student": student_dir}


@pytest.fixture
def make_client(service_files: dict[str, Path], tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """Start an app on a private copy of the index; extra keyword arguments override settings."""
    import shutil

    clients: list[TestClient] = []
    index_copy = tmp_path / "index"
    shutil.copytree(service_files["index"], index_copy)

    def make(**overrides: object) -> TestClient:
        values: dict[str, object] = {
            "index_dir": index_copy,
            "student": str(service_files["student"]),
            "teacher": str(service_files["teacher"]),
            "device": "cpu",
            **overrides,
        }
        settings = Settings(**values)  # type: ignore[arg-type]
        client = TestClient(create_app(settings))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


def dumps(obj: object) -> str:
    return json.dumps(obj)
