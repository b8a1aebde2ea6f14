"""The real `embedkd serve` process: environment settings, a freezing request, SIGTERM and kill -9."""

from __future__ import annotations

import shutil
import signal
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from embedkd.testing import LiveServer, free_port, kill9_under_mixed_load

pytestmark = pytest.mark.slow


@pytest.fixture
def index_copy(service_files: dict[str, Path], tmp_path: Path) -> Path:
    folder = tmp_path / "index"
    shutil.copytree(service_files["index"], folder)
    return folder


def serve(files: dict[str, Path], index: Path, *args: str, **kwargs: object) -> LiveServer:
    extra = ["--teacher", str(files["teacher"]), *args]
    return LiveServer(index, files["student"], free_port(), extra=extra, **kwargs)  # type: ignore[arg-type]


def metric_total(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + "{"))


def test_the_cli_server_honours_api_keys_from_the_environment(service_files, index_copy: Path) -> None:
    server = serve(service_files, index_copy, env={"EMBEDKD_API_KEYS": "s3cret"}, api_key="s3cret")
    try:
        assert httpx.post(f"{server.url}/embed", json={"inputs": "x"}).status_code == 401
        wrong = httpx.post(f"{server.url}/embed", json={"inputs": "x"}, headers={"Authorization": "Bearer no"})
        assert wrong.status_code == 403
        assert httpx.post(f"{server.url}/embed", json={"inputs": "x"}, headers=server.headers).status_code == 200
        assert "s3cret" not in " ".join(server.proc.args)  # the key never reached the command line
    finally:
        server.stop()


def test_a_lone_surrogate_gets_a_4xx_and_the_server_keeps_serving(service_files, index_copy: Path) -> None:
    server = serve(service_files, index_copy)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            raw = {"content-type": "application/json"}
            bad = client.post("/encode", content=b'{"inputs": "ab\\ud800cd"}', headers=raw)
            assert bad.status_code == 422 and "surrogate" in bad.text
            bad = client.post("/v1/embeddings", content=b'{"input": ["\\udfff"], "model": "student"}', headers=raw)
            assert bad.status_code in (400, 422) and "surrogate" in bad.text
            bad = client.post("/search", content=b'{"query": "x\\ud800"}', headers=raw)
            assert bad.status_code == 422
            assert client.post("/encode", json={"inputs": "still alive"}).status_code == 200
            assert client.post("/search", json={"query": "apple"}).status_code == 200
            assert client.get("/ready").status_code == 200
    finally:
        server.stop()
    # the stopped server's temporary log is removed, and what it printed is still readable
    assert not Path(server.log.name).exists() and isinstance(server.output(), str)


def test_sigterm_ends_the_server_in_bounded_time_with_requests_in_flight(service_files, index_copy: Path) -> None:
    server = serve(service_files, index_copy, env={"EMBEDKD_SHUTDOWN_TIMEOUT_S": "3"})
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                try:
                    client.post("/encode", json={"inputs": ["some text"] * 64})
                except httpx.HTTPError:
                    return

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    time.sleep(1)
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(timeout=20)  # a hang, not a slow machine, would exceed this
    finally:
        stop.set()
        for worker in workers:
            worker.join()
        server.stop()
    assert server.proc.returncode is not None
    assert time.monotonic() - started < 20


def test_kill9_under_mixed_load_loses_no_acknowledged_write(service_files, index_copy: Path) -> None:
    result = kill9_under_mixed_load(lambda: serve(service_files, index_copy), index_copy, min_acked=40, min_deleted=5)
    assert result["server errors"] == 0, result
    assert result["acknowledged upserts"] >= 40 and result["acknowledged deletes"] >= 5, result
    assert result["lost"] == 0 and result["unsearchable"] == 0 and result["phantoms"] == 0, result
    assert result["faiss vectors"] == result["store chunks"], result


def test_two_workers_write_one_index_together_and_add_up_their_metrics(service_files, index_copy: Path) -> None:
    server = serve(service_files, index_copy, "--workers", "2")
    try:
        # A new connection per request, so that requests spread over the workers.
        with httpx.Client(base_url=server.url, timeout=30, limits=httpx.Limits(max_keepalive_connections=0)) as client:
            deadline = time.monotonic() + 120
            while len(children(server.proc.pid)) < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert len(children(server.proc.pid)) == 2
            answered: set[int] = set()
            while len(answered) < 2 and time.monotonic() < deadline:
                ready = client.get("/ready")
                if ready.status_code == 200:
                    answered.add(ready.json()["worker_pid"])
            assert answered == set(children(server.proc.pid))  # both workers serve
            texts = {
                f"w{i}": f"worker test document {i} " + " ".join(["lorem", "ipsum", "kayak"][: 1 + i % 3] * (i + 2))
                for i in range(8)
            }
            for doc_id, text in texts.items():  # each write lands on whichever worker accepts it
                assert client.post("/documents", json={"documents": [{"id": doc_id, "text": text}]}).status_code == 200
            for doc_id, text in texts.items():
                for _ in range(3):  # either worker answers, and each sees every acknowledged write
                    hits = client.post("/search", json={"query": text, "mode": "teacher", "k": 1}).json()
                    assert hits["results"][0]["hits"][0]["id"] == doc_id
            for doc_id in list(texts)[:4]:
                assert client.delete(f"/documents/{doc_id}").status_code == 200
            for doc_id in list(texts)[:4]:
                for _ in range(3):
                    hits = client.post("/search", json={"query": texts[doc_id], "mode": "teacher", "k": 20}).json()
                    assert doc_id not in {h["id"] for h in hits["results"][0]["hits"]}
            sent = len(texts) * 4 + 4 + 4 * 3
            seen = metric_total(client.get("/metrics").text, "embedkd_requests_total")
            assert seen >= sent  # every worker's requests, whichever worker answers /metrics
    finally:
        server.stop()
    from embedkd.index import Index

    with Index.open(index_copy) as index:  # one writer again: the store and faiss agree
        assert len(index) == 5 + 4
        assert index.vectors.ntotal == index.store.counts()["chunks"]


def children(pid: int) -> list[int]:
    """The server's worker processes (multiprocessing's resource tracker is a child too, and left out)."""
    found = Path(f"/proc/{pid}/task/{pid}/children")
    pids = [int(c) for c in found.read_text().split()] if found.exists() else []
    return [c for c in pids if b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()]


def test_kill9_of_two_workers_under_mixed_load_loses_no_acknowledged_write(service_files, index_copy: Path) -> None:
    result = kill9_under_mixed_load(
        lambda: serve(service_files, index_copy, "--workers", "2"), index_copy, min_acked=40, min_deleted=5
    )
    assert result["server errors"] == 0, result
    assert result["lost"] == 0 and result["unsearchable"] == 0 and result["phantoms"] == 0, result
    assert result["faiss vectors"] == result["store chunks"], result


def test_the_official_openai_client_works_unchanged(service_files, index_copy: Path) -> None:
    openai = pytest.importorskip("openai")
    from transformers import AutoTokenizer

    server = serve(service_files, index_copy, env={"EMBEDKD_API_KEYS": "k"}, api_key="k")
    try:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="k", max_retries=0)
        one = client.embeddings.create(input="apple orchard", model="student")
        assert len(one.data) == 1 and len(one.data[0].embedding) == 48
        several = client.embeddings.create(input=["apple orchard", "river delta"], model="student")
        assert [d.index for d in several.data] == [0, 1]
        ids = AutoTokenizer.from_pretrained(str(service_files["student"]))("apple orchard", add_special_tokens=False)
        tokens = client.embeddings.create(input=[ids["input_ids"]], model="student")
        assert tokens.data[0].embedding == pytest.approx(one.data[0].embedding, abs=1e-5)
        names = {m.id for m in client.models.list()}
        assert len(names) == 2  # the student and the teacher, by name
        with pytest.raises(openai.NotFoundError):
            client.embeddings.create(input="x", model="text-embedding-3-small")
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0).models.list()
    finally:
        server.stop()


def test_huggingface_hub_inference_client_works_unchanged(service_files, index_copy: Path, monkeypatch) -> None:
    """TEI's client: ``InferenceClient.feature_extraction`` against ``/embed`` (bare lists, TEI errors)."""
    hub = pytest.importorskip("huggingface_hub")
    # The suite runs with HF_HUB_OFFLINE=1, which makes the hub client refuse every URL, even this local one.
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", False)
    server = serve(service_files, index_copy, env={"EMBEDKD_API_KEYS": "k"}, api_key="k")
    try:
        client = hub.InferenceClient(model=f"{server.url}/embed", token="k")
        one = client.feature_extraction("apple orchard")
        assert one.shape == (1, 48) and one.dtype == np.float32
        several = client.feature_extraction(["apple orchard", "river delta"], normalize=True, truncate=True)
        np.testing.assert_allclose(several[0], one[0], atol=1e-5)
        document = client.feature_extraction("apple orchard", prompt_name="document")
        assert not np.allclose(document, one, atol=1e-3)  # the teacher's document side
        with pytest.raises(hub.errors.HfHubHTTPError) as refused:
            client.feature_extraction("word " * 500)
        assert refused.value.response.status_code == 413
        info = httpx.get(f"{server.url}/info", headers={"Authorization": "Bearer k"}).json()
        assert info["max_input_length"] == 64
    finally:
        server.stop()


def test_langchain_openai_embeddings_work(service_files, index_copy: Path) -> None:
    """LangChain's ``OpenAIEmbeddings`` against /v1, with its default chunk of 1,000 inputs per request.

    ``check_embedding_ctx_length=False`` is LangChain's documented setting for OpenAI-compatible servers: its
    default tokenises with tiktoken (OpenAI's vocabulary, downloaded on first use) and sends those ids.
    """
    lc = pytest.importorskip("langchain_openai")
    server = serve(service_files, index_copy, env={"EMBEDKD_API_KEYS": "k"}, api_key="k")
    try:
        embeddings = lc.OpenAIEmbeddings(
            model="student", base_url=f"{server.url}/v1", api_key="k", check_embedding_ctx_length=False, max_retries=0
        )
        docs = embeddings.embed_documents([f"document number {i}" for i in range(1500)])  # two requests
        assert len(docs) == 1500 and len(docs[0]) == 48
        query = embeddings.embed_query("document number 3")
        assert np.dot(query, docs[3]) == pytest.approx(1.0, abs=1e-5)
    finally:
        server.stop()
