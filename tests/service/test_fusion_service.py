"""The service with a fusion index: /search rescores in the second space, /documents writes both indexes."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from embedkd.data.documents import Document
from embedkd.distill.teacher import Teacher
from embedkd.errors import InputError
from embedkd.index import Index, build_index
from embedkd.models import Encoder
from embedkd.retrieval import AsymmetricRetriever, Fusion
from embedkd.service.app import preflight
from embedkd.service.settings import Settings

from .conftest import DOCS


@pytest.fixture
def fusion_dir(tiny_model_factory: Callable[..., Path], tmp_path: Path) -> Path:
    """A second index of the service's five documents, built by another (32-d) model."""
    other = Teacher.from_model(str(tiny_model_factory(hidden=32, seed=9)))
    docs = [Document(id=i, title=t, text=x, metadata=m) for i, t, x, m in DOCS]
    embed = lambda texts: other.embeddings(texts, progress=False)  # noqa: E731
    build_index(tmp_path / "fusion", docs, teacher=other.ref, embed=embed, progress=False).close()
    return tmp_path / "fusion"


TEXT = "music orchestra river"
QUERY = {"query": TEXT, "k": 3, "include_text": False}


def test_search_rescores_with_the_fusion_index_as_the_library_does(
    make_client: Callable[..., TestClient], fusion_dir: Path, service_files: dict[str, Path], tmp_path: Path
) -> None:
    client = make_client(fuse_index=fusion_dir, fuse_weight=2.0)
    described = client.get("/models").json()["fusion"]
    assert described["weight"] == 2.0 and described["candidates"] == 100
    assert described["index"]["counts"]["documents"] == len(DOCS)
    body = client.post("/search", json=QUERY).json()
    plain = client.post("/search", json={**QUERY, "fuse": False}).json()
    assert plain["fused_with"] is None

    # the private copy of the index the client serves, and the fusion index, read beside the server
    with Index.open(tmp_path / "index", readonly=True) as index, Index.open(fusion_dir, readonly=True) as second:
        student = Encoder.load(service_files["student"], device="cpu")
        other = Encoder.load(second.teacher.name, device="cpu")
        fusion = Fusion(second, other, weight=2.0)
        expected = AsymmetricRetriever(index, student=student, fusion=fusion).search([TEXT], 3)[0]
        alone = AsymmetricRetriever(index, student=student).search([TEXT], 3)[0]
    assert body["fused_with"] == other.name
    hits = body["results"][0]["hits"]
    assert [h["id"] for h in hits] == [h.id for h in expected]
    np.testing.assert_allclose([h["score"] for h in hits], [h.score for h in expected], atol=1e-4)
    assert [h["id"] for h in plain["results"][0]["hits"]] == [h.id for h in alone]
    assert [h["score"] for h in hits] != [h["score"] for h in plain["results"][0]["hits"]]
    texts = {doc_id: text for doc_id, _, text, _ in DOCS}
    full = client.post("/search", json={**QUERY, "include_text": True}).json()["results"][0]["hits"]
    assert [h["id"] for h in full] == [h["id"] for h in hits]
    assert [h["text"] for h in full] == [texts[h["id"]] for h in full] and all(h["text"] is None for h in hits)


def test_fuse_true_without_a_fusion_index_is_a_422(client: TestClient) -> None:
    assert client.get("/models").json()["fusion"] is None
    response = client.post("/search", json={**QUERY, "fuse": True})
    assert response.status_code == 422 and "fusion index" in response.json()["detail"]


def test_document_writes_and_deletes_reach_both_indexes(
    make_client: Callable[..., TestClient], fusion_dir: Path
) -> None:
    client = make_client(fuse_index=fusion_dir)
    doc = {"id": "glacier", "title": "Ice", "text": "glacier ice melt cold mountain"}
    assert client.post("/documents", json={"documents": [doc]}).status_code == 200
    with Index.open(fusion_dir, readonly=True) as second:
        assert second.store.document("glacier") is not None
    hits = client.post("/search", json={"query": "glacier ice", "k": 6}).json()["results"][0]["hits"]
    assert "glacier" in [h["id"] for h in hits]
    assert client.delete("/documents/glacier").status_code == 200
    with Index.open(fusion_dir, readonly=True) as second:
        assert second.store.document("glacier") is None


def test_preflight_names_a_missing_or_self_fusion_index(service_files: dict[str, Path], tmp_path: Path) -> None:
    base = {"index_dir": service_files["index"], "student": str(service_files["student"]), "device": "cpu"}
    with pytest.raises(InputError, match="not an embedkd index"):
        preflight(Settings(**base, fuse_index=tmp_path / "nowhere"))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="second index folder"):
        preflight(Settings(**base, fuse_index=service_files["index"]))  # type: ignore[arg-type]
    copy = tmp_path / "copy"  # the same model's index: fusing it adds nothing
    shutil.copytree(service_files["index"], copy)
    with pytest.raises(InputError, match="same model"):
        preflight(Settings(**base, fuse_index=copy))  # type: ignore[arg-type]


def test_a_student_of_the_fusion_model_is_served_in_one_pass(
    make_client: Callable[..., TestClient],
    fusion_dir: Path,
    tiny_model_factory: Callable[..., Path],
    service_files: dict[str, Path],
    tmp_path: Path,
) -> None:
    from embedkd.models.manifest import StudentManifest
    from embedkd.testing import build_student_of

    student_dir = build_student_of(tiny_model_factory(hidden=32, seed=9), tmp_path / "student-of-fusion-model")
    StudentManifest(teacher=Teacher.from_model(str(service_files["teacher"])).ref, base="tiny").write(student_dir)
    client = make_client(student=str(student_dir), fuse_index=fusion_dir)
    assert "student:fused" in client.app.state.embedkd.batchers  # type: ignore[attr-defined]
    body = client.post("/search", json=QUERY).json()
    with Index.open(tmp_path / "index", readonly=True) as index, Index.open(fusion_dir, readonly=True) as second:
        fusion = Fusion(second, Encoder.load(second.teacher.name, device="cpu"))
        retriever = AsymmetricRetriever(index, student=Encoder.load(student_dir, device="cpu"), fusion=fusion)
        retriever.trunk = None  # the library's two passes, as the reference
        expected = retriever.search([TEXT], 3)[0]
    hits = body["results"][0]["hits"]
    assert body["fused_with"] is not None and [h["id"] for h in hits] == [h.id for h in expected]
    np.testing.assert_allclose([h["score"] for h in hits], [h.score for h in expected], atol=1e-4)


def test_growth_fills_a_fusion_index_that_lags_behind_the_main_one(
    make_client: Callable[..., TestClient], tiny_model_factory: Callable[..., Path], tmp_path: Path
) -> None:
    """A fusion index built after the main one was complete (or cut short) holds fewer documents: the
    server's growth writes every document missing from either index, to both."""
    import json
    import time

    other = Teacher.from_model(str(tiny_model_factory(hidden=32, seed=9)))
    docs = [Document(id=i, title=t, text=x, metadata=m) for i, t, x, m in DOCS]
    embed = lambda texts: other.embeddings(texts, progress=False)  # noqa: E731
    build_index(tmp_path / "fusion", docs[:2], teacher=other.ref, embed=embed, progress=False).close()
    more = tmp_path / "more.jsonl"
    rows = [{"_id": d.id, "title": d.title, "text": d.text, "metadata": d.metadata} for d in docs]
    rows += [{"_id": f"new{i}", "title": f"New {i}", "text": f"lighthouse harbour ship {i}"} for i in range(3)]
    more.write_text("".join(json.dumps(r) + "\n" for r in rows))
    client = make_client(fuse_index=tmp_path / "fusion", grow_from=more)
    deadline = time.monotonic() + 60
    while client.get("/ready").json().get("building", {}).get("index", {}).get("state") != "complete":
        assert time.monotonic() < deadline, client.get("/ready").json()
        time.sleep(0.1)
    counts = client.get("/models").json()
    assert counts["index"]["counts"]["documents"] == 8
    assert counts["fusion"]["index"]["counts"]["documents"] == 8
    with Index.open(tmp_path / "fusion", readonly=True) as second:
        assert second.store.document(docs[4].id) is not None and second.store.document("new2") is not None


def test_the_server_fuses_with_the_index_it_remembers_unless_fuse_is_off(
    make_client: Callable[..., TestClient], fusion_dir: Path, tmp_path: Path
) -> None:
    with Index.open(tmp_path / "index") as index:  # the private copy make_client serves
        index.link_fusion(fusion_dir)
    client = make_client()
    assert client.get("/models").json()["fusion"]["index"]["counts"]["documents"] == len(DOCS)
    assert client.post("/search", json=QUERY).json()["fused_with"] is not None
    doc = {"id": "glacier", "title": "Ice", "text": "glacier ice melt cold mountain"}
    assert client.post("/documents", json={"documents": [doc]}).status_code == 200
    with Index.open(fusion_dir, readonly=True) as second:
        assert second.store.stored_ids(["glacier"]) == {"glacier"}
    client.__exit__(None, None, None)  # release the writer's lock before the next server opens the index
    alone = make_client(fuse=False)
    assert alone.get("/models").json()["fusion"] is None
    assert alone.post("/search", json=QUERY).json()["fused_with"] is None
