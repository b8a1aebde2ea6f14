"""The real `embedkd serve` process: environment settings, a freezing request, SIGTERM and kill -9."""

from __future__ import annotations

import random
import shutil
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from embedkd.index import Index
from embedkd.testing import LiveServer, durable_document, free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def index_copy(service_files: dict[str, Path], tmp_path: Path) -> Path:
    folder = tmp_path / "index"
    shutil.copytree(service_files["index"], folder)
    return folder


def serve(files: dict[str, Path], index: Path, **kwargs: object) -> LiveServer:
    extra = ["--teacher", str(files["teacher"])]
    return LiveServer(index, files["student"], free_port(), extra=extra, **kwargs)  # type: ignore[arg-type]


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
            bad = client.post("/embed", content=b'{"inputs": "ab\\ud800cd"}', headers=raw)
            assert bad.status_code == 422 and "surrogate" in bad.text
            bad = client.post("/v1/embeddings", content=b'{"input": ["\\udfff"], "model": "student"}', headers=raw)
            assert bad.status_code in (400, 422) and "surrogate" in bad.text
            bad = client.post("/search", content=b'{"query": "x\\ud800"}', headers=raw)
            assert bad.status_code == 422
            assert client.post("/embed", json={"inputs": "still alive"}).status_code == 200
            assert client.post("/search", json={"query": "apple"}).status_code == 200
            assert client.get("/ready").status_code == 200
    finally:
        server.stop()


def test_sigterm_ends_the_server_in_bounded_time_with_requests_in_flight(service_files, index_copy: Path) -> None:
    server = serve(service_files, index_copy, env={"EMBEDKD_SHUTDOWN_TIMEOUT_S": "3"})
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                try:
                    client.post("/embed", json={"inputs": ["some text"] * 64})
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
    server = serve(service_files, index_copy)
    acked: dict[str, dict[str, str]] = {}
    deleted: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[int] = []

    def writer(offset: int) -> None:
        i = offset
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                doc = durable_document(i)
                try:
                    response = client.post("/documents", json={"documents": [doc]})
                except httpx.HTTPError:
                    return  # the server is gone
                if response.status_code == 200:
                    with lock:
                        acked[doc["id"]] = doc
                elif response.status_code >= 500:
                    errors.append(response.status_code)
                i += 3

    def deleter() -> None:
        rng = random.Random(0)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                with lock:
                    candidates = sorted(set(acked) - deleted)
                if len(candidates) < 4:
                    time.sleep(0.05)
                    continue
                doc_id = rng.choice(candidates)
                try:
                    response = client.delete(f"/documents/{doc_id}")
                except httpx.HTTPError:
                    return
                if response.status_code == 200:
                    with lock:
                        deleted.add(doc_id)

    def searcher() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                try:
                    response = client.post("/search", json={"query": "field note survey", "k": 5})
                except httpx.HTTPError:
                    return
                if response.status_code >= 500:
                    errors.append(response.status_code)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(3)]
    threads += [threading.Thread(target=deleter), threading.Thread(target=searcher), threading.Thread(target=searcher)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (len(acked) < 40 or len(deleted) < 5):
        time.sleep(0.2)
    server.kill9()
    stop.set()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert len(acked) >= 40 and len(deleted) >= 5, (len(acked), len(deleted))

    restarted = serve(service_files, index_copy)
    try:
        with httpx.Client(base_url=restarted.url, timeout=30) as client:
            for doc_id, doc in acked.items():
                got = client.get(f"/documents/{doc_id}")
                if doc_id in deleted:
                    assert got.status_code == 404, doc_id  # a phantom: an acknowledged delete came back
                    continue
                assert got.status_code == 200, doc_id  # a lost acknowledged write
                body = {"query": f"{doc['title']} {doc['text']}", "mode": "teacher", "k": 3}
                hits = client.post("/search", json=body).json()["results"][0]["hits"]
                assert hits and hits[0]["id"] == doc_id, (doc_id, hits[:1])
            for doc_id in deleted:
                body = {"query": f"{acked[doc_id]['title']} {acked[doc_id]['text']}", "mode": "teacher", "k": 10}
                hits = client.post("/search", json=body).json()["results"][0]["hits"]
                assert doc_id not in {h["id"] for h in hits}
    finally:
        restarted.stop()
    with Index.open(index_copy, readonly=True) as index:  # faiss agrees with the store
        assert index.vectors.ntotal == index.store.counts()["chunks"]
