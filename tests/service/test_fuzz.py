"""Property-based fuzzing of the write and encode routes: no 5xx and no hang, whatever the text."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EDGE = [
    "\ud800",  # lone surrogates
    "\udfff",
    "\x00",  # NUL
    "\u200f\u202e",  # RTL marks
    "\u2028",  # line separator
    "\ufeff",  # BOM
    "e\u0301" * 50,  # combining marks
    "\U0001f600" * 10,
    "x" * 100_000,  # longer than max_input_chars
    "",
    " ",
]
texts = st.one_of(st.sampled_from(EDGE), st.text(max_size=64), st.text(alphabet=st.characters(), max_size=300))
text_lists = st.lists(texts, min_size=0, max_size=5)

# EMBEDKD_FUZZ_EXAMPLES raises the count for the reliability benchmark; EMBEDKD_FUZZ_REPORT names a JSON file
# that receives the number of requests sent and of 5xx answers (benchmarks/results/load.md).
FUZZ = settings(
    max_examples=int(os.environ.get("EMBEDKD_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


SENT = {"requests": 0, "server_errors": 0}


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    yield
    if os.environ.get("EMBEDKD_FUZZ_REPORT"):
        Path(os.environ["EMBEDKD_FUZZ_REPORT"]).write_text(json.dumps(SENT))


def post(client, path: str, body: object):  # type: ignore[no-untyped-def]
    # json.dumps writes surrogates as \\ud800 escapes, as a hostile client would.
    raw = json.dumps(body).encode()
    response = client.post(path, content=raw, headers={"content-type": "application/json"})
    SENT["requests"] += 1
    SENT["server_errors"] += response.status_code >= 500
    assert response.status_code < 500, (path, body if len(raw) < 500 else raw[:500], response.text[:500])
    return response


@pytest.fixture
def fuzz_client(make_client):  # type: ignore[no-untyped-def]
    return make_client(request_timeout_s=30)


@FUZZ
@given(inputs=st.one_of(texts, text_lists), model=st.sampled_from(["student", "teacher"]))
def test_embed(fuzz_client, inputs, model) -> None:  # type: ignore[no-untyped-def]
    post(fuzz_client, "/encode", {"inputs": inputs, "model": model})


@FUZZ
@given(inputs=st.one_of(texts, text_lists, st.lists(st.integers(-5, 40_000), max_size=5)))
def test_openai_embeddings(fuzz_client, inputs) -> None:  # type: ignore[no-untyped-def]
    post(fuzz_client, "/v1/embeddings", {"input": inputs, "model": "student"})


@FUZZ
@given(query=texts, k=st.integers(-2, 2000), filters=st.dictionaries(texts, texts, max_size=2))
def test_search(fuzz_client, query, k, filters) -> None:  # type: ignore[no-untyped-def]
    post(fuzz_client, "/search", {"query": query, "k": k, "filter": filters or None})


@FUZZ
@given(doc_id=texts, text=texts, title=texts, metadata=st.dictionaries(texts, texts, max_size=2))
def test_documents(fuzz_client, doc_id, text, title, metadata) -> None:  # type: ignore[no-untyped-def]
    response = post(
        fuzz_client, "/documents", {"documents": [{"id": doc_id, "text": text, "title": title, "metadata": metadata}]}
    )
    if response.status_code == 200:  # stored: it reads back under its own id
        got = fuzz_client.get(f"/documents/{quote(doc_id, safe='')}")
        assert got.status_code == 200 and got.json()["text"] == text, repr(doc_id)
    assert fuzz_client.get("/ready").status_code == 200  # nothing took a batcher down
