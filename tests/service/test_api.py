from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from embedkd.errors import InputError
from embedkd.service.settings import Settings


def test_health_ready_models_metrics(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    models = client.get("/models").json()
    assert models["student"]["dimension"] == 48 and models["teacher"]["dimension"] == 48
    assert models["student"]["aligned_to"]["fingerprint"] == models["teacher"]["fingerprint"]
    assert models["student"]["alignment"]["mean_cosine"] == pytest.approx(0.93)
    assert models["index"]["counts"]["documents"] == 5
    client.post("/encode", json={"inputs": "warm"})
    text = client.get("/metrics").text
    assert 'embedkd_requests_total{method="POST",route="/encode",status="200"}' in text
    assert "embedkd_batch_size_bucket" in text and "embedkd_index_documents 5.0" in text
    assert "embedkd_encode_seconds_count" in text and "embedkd_queue_depth" in text
    client.get("/documents/apple")
    client.get("/documents/no-such-doc")  # 404 from the route: still its template, not each id
    client.get("/no/such/route")
    text = client.get("/metrics").text
    assert 'embedkd_requests_total{method="GET",route="/documents/{doc_id:path}",status="200"} 1.0' in text
    assert 'embedkd_requests_total{method="GET",route="/documents/{doc_id:path}",status="404"} 1.0' in text
    assert 'route="unmatched",status="404"' in text and "/documents/apple" not in text


def test_embed_shapes_options_and_formats(client: TestClient) -> None:
    one = client.post("/encode", json={"inputs": "hello world"}).json()
    assert one["dimensions"] == 48 and len(one["embeddings"]) == 1 and one["usage"]["prompt_tokens"] > 0
    vec = np.array(one["embeddings"][0])
    assert np.linalg.norm(vec) == pytest.approx(1.0, abs=1e-5)

    many = client.post("/encode", json={"inputs": ["hello world", "other text", "third"]}).json()
    np.testing.assert_allclose(many["embeddings"][0], vec, atol=1e-5)  # batching does not change results

    short = client.post("/encode", json={"inputs": ["hello world"], "dimensions": 16}).json()
    assert short["dimensions"] == 16
    np.testing.assert_allclose(short["embeddings"][0], vec[:16] / np.linalg.norm(vec[:16]), atol=1e-5)

    raw = client.post("/encode", json={"inputs": "hello world", "normalize": False}).json()
    raw_vec = np.array(raw["embeddings"][0])
    np.testing.assert_allclose(raw_vec / np.linalg.norm(raw_vec), vec, atol=1e-5)

    packed = client.post("/encode", json={"inputs": "hello world", "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(packed["embeddings"][0]), dtype="<f4")
    np.testing.assert_allclose(decoded, vec, atol=1e-6)

    teacher = client.post("/encode", json={"inputs": "hello world", "model": "teacher", "input_type": "document"})
    assert teacher.status_code == 200 and teacher.json()["model"] != one["model"]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"inputs": []}, 422, "at least one"),
        ({"inputs": ["x"] * 2049}, 413, "at most 2048"),
        ({"inputs": "x" * 20_000}, 413, "characters"),
        ({"inputs": "x", "dimensions": 49}, 422, "between 1 and 48"),
        ({"inputs": "x", "dimensions": 0}, 422, ""),
        ({"inputs": "x", "model": "gpt-4"}, 422, ""),
        ({"inputs": "x", "encoding_format": "int8"}, 422, ""),
        ({"inputs": 5}, 422, ""),
        ({"inputs": "x", "surprise": 1}, 422, ""),
    ],
)
def test_embed_rejects_bad_input(client: TestClient, body: dict, status: int, fragment: str) -> None:
    response = client.post("/encode", json=body)
    assert response.status_code == status, response.text
    assert fragment in response.text


def test_openai_contract(client: TestClient) -> None:
    # The payload the official `openai` Python client sends (it asks for base64 by default).
    response = client.post(
        "/v1/embeddings", json={"input": ["first text", "second"], "model": "student", "encoding_format": "base64"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list" and body["model"] == "student"
    assert [d["index"] for d in body["data"]] == [0, 1] and body["data"][0]["object"] == "embedding"
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0
    first = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    floats = client.post("/v1/embeddings", json={"input": "first text", "model": "student"}).json()
    np.testing.assert_allclose(floats["data"][0]["embedding"], first, atol=1e-6)
    name = client.get("/models").json()["teacher"]["name"]
    by_name = client.post("/v1/embeddings", json={"input": "x", "model": name, "dimensions": 8, "user": "u1"})
    assert by_name.status_code == 200 and len(by_name.json()["data"][0]["embedding"]) == 8

    missing = client.post("/v1/embeddings", json={"input": "x", "model": "text-embedding-3-large"})
    assert missing.status_code == 404
    error = missing.json()["error"]
    assert "text-embedding-3-large" in error["message"] and error["code"] == "model_not_found"
    invalid = client.post("/v1/embeddings", json={"model": "student"})
    assert invalid.status_code == 400 and invalid.json()["error"]["code"] == "invalid_request_error"
    assert invalid.json()["error"]["param"] == "input"


def test_openai_token_ids_input_type_and_model_list(client: TestClient) -> None:
    from transformers import AutoTokenizer

    student_path = client.get("/models").json()["student"]["path"]
    ids = AutoTokenizer.from_pretrained(student_path)("apple orchard harvest", add_special_tokens=False)["input_ids"]
    as_text = client.post("/v1/embeddings", json={"input": "apple orchard harvest", "model": "student"}).json()
    for body in ({"input": ids, "model": "student"}, {"input": [ids, ids], "model": "student"}):
        got = client.post("/v1/embeddings", json=body)  # what LangChain's OpenAIEmbeddings sends by default
        assert got.status_code == 200, got.text
        for row in got.json()["data"]:
            np.testing.assert_allclose(row["embedding"], as_text["data"][0]["embedding"], atol=1e-5)
    bad = client.post("/v1/embeddings", json={"input": [10**9], "model": "student"})
    assert bad.status_code == 400 and "outside" in bad.json()["error"]["message"]
    for body in ({"input": [True], "model": "student"}, {"input": [[True, False]], "model": "student"}):
        assert client.post("/v1/embeddings", json=body).status_code == 400, body  # not token ids 1 and 0
    one = client.post("/v1/embeddings", json={"input": "x", "model": "student", "dimensions": True})
    assert one.status_code == 400  # it answered a 1-dimensional [1.0]

    teacher = client.get("/models").json()["teacher"]["name"]
    query = client.post("/v1/embeddings", json={"input": "x", "model": teacher, "input_type": "query"})
    document = client.post("/v1/embeddings", json={"input": "x", "model": teacher, "input_type": "document"})
    assert query.status_code == document.status_code == 200
    wrong = client.post("/v1/embeddings", json={"input": "x", "model": teacher, "input_type": "passage"})
    assert wrong.status_code == 400

    many = client.post("/v1/embeddings", json={"input": ["short text"] * 1000, "model": "student"})
    assert many.status_code == 200 and len(many.json()["data"]) == 1000  # LangChain's default chunk

    listed = client.get("/v1/models").json()
    assert listed["object"] == "list"
    assert {m["id"] for m in listed["data"]} == set(client.get("/ready").json()["models"].values())
    assert all(m["object"] == "model" and isinstance(m["created"], int) for m in listed["data"])


def test_search_modes_filters_and_limits(client: TestClient) -> None:
    body = client.post("/search", json={"query": "apple orchard", "k": 3}).json()
    assert body["mode"] == "asym" and len(body["results"]) == 1
    hits = body["results"][0]["hits"]
    assert len(hits) == 3 and hits[0]["text"] and {"id", "score", "title", "passage", "metadata"} <= set(hits[0])
    exact = ["Apples apple orchard harvest apple pie", "Space rocket launch orbit planet engine"]  # title + text
    teacher = client.post("/search", json={"queries": exact, "mode": "teacher", "k": 1}).json()
    assert [r["hits"][0]["id"] for r in teacher["results"]] == ["apple", "rocket"]
    geo = client.post("/search", json={"query": "water", "k": 5, "filter": {"kind": "geo"}}).json()
    assert {h["id"] for h in geo["results"][0]["hits"]} == {"river", "desert"}
    both = client.post("/search", json={"query": "water", "filter": {"kind": "geo", "year": 2022}}).json()
    assert [h["id"] for h in both["results"][0]["hits"]] == ["desert"]
    lean = client.post("/search", json={"query": "water", "include_text": False}).json()
    assert lean["results"][0]["hits"][0]["text"] is None
    tuned = client.post("/search", json={"query": "water", "k": 5, "nprobe": 4, "ef_search": 64}).json()
    plain = client.post("/search", json={"query": "water", "k": 5}).json()
    assert tuned["results"][0]["hits"] == plain["results"][0]["hits"]  # a flat index ignores both, as faiss does
    own = client.post("/search", json={"query": "water", "mode": "student"})
    assert own.status_code == 422 and "use mode 'asym'" in own.json()["detail"]  # this index is the teacher's

    for bad in (
        {"query": "x", "k": 0},
        {"query": "x", "k": 5000},
        {"query": "x", "queries": ["y"]},
        {},
        {"query": "x", "mode": "bm25"},
        {"query": "x", "filter": {"kind": ["geo"]}},
        {"query": "x", "nprobe": 0},
        {"query": "x", "ef_search": 10**6},
        {"query": "x", "filter": {"year": 2**63}},  # SQLite cannot compare it: a 500 before
        {"query": "x", "filter": {f"k{i}": 1 for i in range(2000)}},
    ):
        assert client.post("/search", json=bad).status_code == 422, bad


def test_documents_upsert_get_delete_and_search_visibility(client: TestClient) -> None:
    doc = {"id": "zebra", "title": "Zebras", "text": "zebra stripes savanna zebra", "metadata": {"kind": "animal"}}
    written = client.post("/documents", json={"documents": [doc]})
    assert written.status_code == 200 and written.json()["inserted"] == 1 and written.json()["documents"] == 6
    exact = "Zebras zebra stripes savanna zebra"
    found = client.post("/search", json={"query": exact, "mode": "teacher", "k": 1}).json()
    assert found["results"][0]["hits"][0]["id"] == "zebra"
    fetched = client.get("/documents/zebra").json()
    assert fetched["metadata"] == {"kind": "animal"} and fetched["chunks"] == 1

    replaced = client.post("/documents", json={"documents": [{**doc, "metadata": {"kind": "mammal"}}]}).json()
    assert replaced["replaced"] == 1 and replaced["documents"] == 6
    assert client.get("/documents/zebra").json()["metadata"] == {"kind": "mammal"}

    assert client.delete("/documents/zebra").json() == {"deleted": "zebra"}
    assert client.get("/documents/zebra").status_code == 404
    assert client.delete("/documents/zebra").status_code == 404
    after = client.post("/search", json={"query": "zebra stripes", "k": 10}).json()
    assert "zebra" not in {h["id"] for h in after["results"][0]["hits"]}

    assert client.post("/documents", json={"documents": []}).status_code == 422
    assert client.post("/documents", json={"documents": [doc, doc]}).status_code == 422
    assert client.post("/documents", json={"documents": [{"id": "x"}]}).status_code == 422
    assert client.post("/documents", json={"documents": [{**doc, "id": ""}]}).status_code == 422
    for metadata in ('{"score": NaN}', '{"score": -Infinity}', '{"n": 18446744073709551616}'):  # Python's json reads
        body = '{"documents": [{"id": "zebra", "text": "stripes", "metadata": ' + metadata + "}]}"
        refused = client.post("/documents", content=body, headers={"Content-Type": "application/json"})
        assert refused.status_code == 422 and "metadata" in refused.text, metadata
    everything = client.post("/search", json={"query": "zebra", "k": 50, "filter": {"kind": "mammal"}})
    assert everything.status_code == 200  # nothing unstorable was kept to break a later search


def test_a_read_only_server_runs_beside_the_writer_and_serves_its_commits(make_client) -> None:
    writer = make_client()  # holds the folder's writer lock
    reader = make_client(read_only=True)  # takes no lock: starts beside it
    doc = {"id": "glacier", "title": "Glaciers", "text": "glacier ice moraine crevasse glacier"}
    refused = reader.post("/documents", json={"documents": [doc]})
    assert refused.status_code == 403 and "read-only" in refused.json()["detail"]
    assert reader.delete("/documents/apple").status_code == 403
    assert reader.get("/documents/apple").status_code == 200  # reads are served

    exact = "Glaciers glacier ice moraine crevasse glacier"
    assert writer.post("/documents", json={"documents": [doc]}).status_code == 200
    found = reader.post("/search", json={"query": exact, "mode": "teacher", "k": 1}).json()
    assert found["results"][0]["hits"][0]["id"] == "glacier"  # the writer's commit, without a restart
    assert writer.delete("/documents/glacier").status_code == 200
    after = reader.post("/search", json={"query": exact, "mode": "teacher", "k": 10}).json()
    assert "glacier" not in {h["id"] for h in after["results"][0]["hits"]}


def test_read_only_refuses_settings_that_write(service_files, tmp_path) -> None:
    with pytest.raises(InputError, match="grow_from writes to the index") as raised:
        Settings.checked(index_dir=service_files["index"], read_only=True, grow_from=tmp_path / "more.jsonl")
    assert "EMBEDKD_SETTINGS" not in str(raised.value)  # the rule's own message, not a dump of every setting
    with pytest.raises(InputError, match="grow_from needs one worker"):
        Settings.checked(index_dir=service_files["index"], workers=2, grow_from=tmp_path / "more.jsonl")


def test_documents_survive_a_graceful_restart(make_client) -> None:
    # A crash (kill -9) under load is covered by tests/service/test_live_server.py.
    first = make_client()
    doc = {"id": "persist", "text": "persistent document about glaciers"}
    assert first.post("/documents", json={"documents": [doc]}).status_code == 200
    first.__exit__(None, None, None)
    second = make_client()
    assert second.get("/documents/persist").json()["text"] == doc["text"]


def test_auth(make_client) -> None:
    client = make_client(api_keys="k1,k2")
    assert client.get("/health").status_code == 200
    missing = client.post("/encode", json={"inputs": "x"})
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert client.post("/encode", json={"inputs": "x"}, headers={"Authorization": "Bearer nope"}).status_code == 403
    assert client.get("/metrics", headers={"Authorization": "Basic k1"}).status_code == 401
    ok = client.post("/encode", json={"inputs": "x"}, headers={"Authorization": "Bearer k2"})
    assert ok.status_code == 200
    openai = client.post("/v1/embeddings", json={"input": "x", "model": "student"})
    assert openai.status_code == 401 and openai.json()["error"]["type"] == "authentication_error"
    for path in ("/models", "/ready", "/metrics", "/documents/apple"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers={"Authorization": "Bearer k1"}).status_code == 200, path


def test_body_limit_and_overload(make_client) -> None:
    client = make_client(max_body_bytes=2048, max_queue=2)
    big = client.post(
        "/encode", content=b'{"inputs": "' + b"x" * 5000 + b'"}', headers={"content-type": "application/json"}
    )
    assert big.status_code == 413
    busy = client.post("/encode", json={"inputs": ["a", "b", "c"]})
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    assert "overloaded" in busy.json()["detail"]


def test_malformed_json_is_422(client: TestClient) -> None:
    response = client.post("/encode", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_student_aligned_to_another_teacher_is_refused(service_files: dict[str, Path], tmp_path: Path) -> None:
    from embedkd.errors import AlignmentError
    from embedkd.service.app import create_app
    from embedkd.service.settings import Settings

    other = tmp_path / "student"
    import shutil

    shutil.copytree(service_files["student"], other)
    text = (other / "embedkd.json").read_text().replace('"fingerprint": "', '"fingerprint": "0000')
    (other / "embedkd.json").write_text(text)
    app = create_app(Settings(index_dir=service_files["index"], student=str(other), load_teacher=False))
    with pytest.raises(AlignmentError), TestClient(app):
        pass
    from embedkd.locks import FolderLock

    writer = FolderLock(service_files["index"], what="index")  # the failed start-up released the index
    writer.acquire()
    writer.release()


def test_every_route_but_health_needs_the_key(make_client) -> None:
    from starlette.routing import Route

    client = make_client(api_keys="k1")
    app = client.app  # type: ignore[attr-defined]
    # Every route the app serves: its API routes (from its OpenAPI schema, which FastAPI builds from the routers
    # it includes) and its plain routes (/docs, /openapi.json, ...).
    routes = [(m.upper(), path) for path, ops in app.openapi()["paths"].items() for m in ops]
    routes += [(m, r.path) for r in app.routes if isinstance(r, Route) for m in sorted(r.methods or ()) if m != "HEAD"]
    assert len(routes) >= 14
    for method, template in routes:
        path = template.replace("{doc_id}", "apple")
        response = client.request(method, path)
        expected = 200 if path == "/health" else 401
        assert response.status_code == expected, (method, path, response.status_code)


def test_a_chunked_oversize_body_is_413(make_client) -> None:
    client = make_client(max_body_bytes=2048)

    def chunks():  # no Content-Length: the body arrives chunked
        yield b'{"inputs": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    response = client.post("/encode", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and "larger than 2048" in response.text
    small = client.post(
        "/encode", content=iter([b'{"inputs": ', b'"ok"}']), headers={"content-type": "application/json"}
    )
    assert small.status_code == 200


def test_the_periodic_saver_survives_a_failing_save_and_shutdown_still_closes(make_client, monkeypatch) -> None:
    import time

    from embedkd.index import Index

    failures = {"n": 0}
    real_save = Index.save

    def flaky(self: Index) -> None:
        if failures["n"] < 2:
            failures["n"] += 1
            raise RuntimeError("faiss could not write")  # faiss raises RuntimeError, not OSError
        real_save(self)

    monkeypatch.setattr(Index, "save", flaky)
    client = make_client(save_interval_s=0.05)
    state = client.app.state.embedkd  # type: ignore[attr-defined]
    assert client.post("/documents", json={"documents": [{"id": "s", "text": "saved later"}]}).status_code == 200
    deadline = time.monotonic() + 10
    while state.index.unsaved and time.monotonic() < deadline:
        time.sleep(0.05)
    assert failures["n"] == 2 and state.index.unsaved == 0  # it failed twice, kept going, then saved
    metrics = client.get("/metrics").text
    assert "embedkd_index_save_failures_total 2.0" in metrics


def test_the_student_can_run_on_onnx(make_client, service_files: dict[str, Path]) -> None:
    pytest.importorskip("onnxruntime")
    import shutil

    from embedkd.models.encoder import Encoder

    reference = Encoder.load(service_files["student"], device="cpu").encode_query(["apple orchard", "river"])
    client = make_client(backend="onnx")
    shutil.rmtree(service_files["student"] / "onnx")  # leave the shared student folder as other tests expect
    assert client.get("/models").json()["student"]["backend"] == "onnx"
    got = client.post("/encode", json={"inputs": ["apple orchard", "river"]}).json()["embeddings"]
    np.testing.assert_allclose(got, reference, atol=1e-4)
    hits = client.post("/search", json={"query": "apple orchard", "k": 2}).json()["results"][0]["hits"]
    assert len(hits) == 2
