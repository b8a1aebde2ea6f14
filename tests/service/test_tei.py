"""text-embeddings-inference compatibility: POST /embed answers as TEI does, GET /info, and /encode's truncation."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

LONG = " ".join(f"word{i}" for i in range(200))  # far past the tiny model's 64 tokens


def test_embed_answers_a_bare_list_like_tei(client: TestClient) -> None:
    one = client.post("/embed", json={"inputs": "hello world"})
    assert one.status_code == 200, one.text
    body = one.json()
    assert isinstance(body, list) and len(body) == 1 and len(body[0]) == 48  # a single text is still [[...]]
    rich = client.post("/encode", json={"inputs": "hello world"}).json()
    np.testing.assert_allclose(body[0], rich["embeddings"][0], atol=1e-5)  # the student, query side

    many = client.post("/embed", json={"inputs": ["hello world", "river"], "normalize": False, "dimensions": 8})
    assert np.array(many.json()).shape == (2, 8)

    document = client.post("/embed", json={"inputs": "hello world", "prompt_name": "document"}).json()
    teacher = client.post("/encode", json={"inputs": "hello world", "model": "teacher", "input_type": "document"})
    np.testing.assert_allclose(document[0], teacher.json()["embeddings"][0], atol=1e-5)

    # TEI's clients may send fields TEI ignores; token ids decode with the model's tokenizer
    extra = client.post("/embed", json={"inputs": "hello world", "encoding_format": "float", "user": "u"})
    assert extra.status_code == 200
    from transformers import AutoTokenizer

    student_path = client.get("/models").json()["student"]["path"]
    ids = AutoTokenizer.from_pretrained(student_path)("hello world", add_special_tokens=False)["input_ids"]
    np.testing.assert_allclose(client.post("/embed", json={"inputs": ids}).json()[0], body[0], atol=1e-5)


def test_embed_refuses_over_long_input_unless_truncate(client: TestClient) -> None:
    refused = client.post("/embed", json={"inputs": ["short", LONG]})
    assert refused.status_code == 413
    error = refused.json()
    assert error["error_type"] == "Validation" and "must have less than 64 tokens" in error["error"]

    text = "alpha " * 100 + "omega " * 100  # one token per word in BERT's vocabulary
    right = client.post("/embed", json={"inputs": text, "truncate": True})
    left = client.post("/embed", json={"inputs": text, "truncate": True, "truncation_direction": "Left"})
    assert right.status_code == left.status_code == 200
    head = client.post("/embed", json={"inputs": "alpha " * 62}).json()  # 62 words + [CLS] + [SEP] = 64
    tail = client.post("/embed", json={"inputs": "omega " * 62}).json()
    np.testing.assert_allclose(right.json()[0], head[0], atol=1e-5)
    np.testing.assert_allclose(left.json()[0], tail[0], atol=1e-5)


def test_auto_truncate_setting(make_client) -> None:
    client = make_client(auto_truncate=True)
    assert client.post("/embed", json={"inputs": LONG}).status_code == 200
    assert client.post("/embed", json={"inputs": LONG, "truncate": False}).status_code == 413
    assert client.get("/info").json()["auto_truncate"] is True


@pytest.mark.parametrize(
    ("body", "status", "error_type"),
    [
        ({"inputs": "x", "prompt_name": "summary"}, 413, "Validation"),
        ({"inputs": []}, 400, "Empty"),
        ({"inputs": ["x"] * 2049}, 413, "Validation"),
        ({"inputs": "x", "truncation_direction": "middle"}, 422, "Tokenizer"),
        ({"normalize": True}, 422, "Tokenizer"),
        ({"inputs": [10**9]}, 400, "Empty"),
    ],
)
def test_embed_errors_in_tei_shape(client: TestClient, body: dict, status: int, error_type: str) -> None:
    response = client.post("/embed", json=body)
    assert response.status_code == status, response.text
    error = response.json()
    assert set(error) == {"error", "error_type"} and error["error"] and error["error_type"] == error_type


def test_info_describes_the_served_model(client: TestClient) -> None:
    info = client.get("/info").json()
    models = client.get("/models").json()
    assert info["model_id"] == models["student"]["name"] and info["model_sha"] == models["student"]["fingerprint"]
    assert info["max_input_length"] == 64 and info["max_client_batch_size"] == 2048
    assert info["model_type"] == {"embedding": {"pooling": "mean"}}
    assert info["auto_truncate"] is False and isinstance(info["version"], str)


def test_encode_reports_truncation_and_can_refuse_it(client: TestClient) -> None:
    cut = client.post("/encode", json={"inputs": ["short", LONG]}).json()
    assert cut["truncated"] == [1]
    refused = client.post("/encode", json={"inputs": ["short", LONG], "truncate": False})
    assert refused.status_code == 413 and "input 1 has" in refused.json()["detail"]
