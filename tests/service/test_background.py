"""Serving while building: the index grows in the background and a student is swapped in without a restart."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from .conftest import DOCS


def _wait(client, predicate, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get("/ready").json()
        if predicate(body):
            return body
        time.sleep(0.1)
    raise AssertionError(f"timed out; last /ready: {body}")


def test_the_index_grows_in_the_background_and_resumes(make_client, tmp_path: Path) -> None:
    more = tmp_path / "more.jsonl"
    rows = [{"_id": i, "title": t, "text": x, "metadata": m} for i, t, x, m in DOCS]  # all 5 already there
    rows += [{"_id": f"new{i}", "title": f"New {i}", "text": f"lighthouse harbour ship number {i}"} for i in range(20)]
    more.write_text("".join(json.dumps(r) + "\n" for r in rows))
    client = make_client(grow_from=more)
    assert client.post("/search", json={"query": "apple", "k": 1}).status_code == 200  # serving at once
    body = _wait(client, lambda b: b.get("building", {}).get("index", {}).get("state") == "complete")
    assert body["building"]["index"]["total"] == 25
    assert client.get("/models").json()["index"]["counts"]["documents"] == 25
    hits = client.post("/search", json={"query": "lighthouse harbour ship", "k": 3, "mode": "teacher"}).json()
    assert all(h["id"].startswith("new") for h in hits["results"][0]["hits"])


def test_documents_to_grow_from_that_cannot_be_read_stop_the_growth_visibly(make_client, tmp_path: Path) -> None:
    broken = tmp_path / "more.jsonl"
    broken.write_text('{"_id": "x", "text": "fine"}\n{not json\n')  # e.g. changed after the server checked it
    client = make_client(grow_from=broken)
    body = _wait(client, lambda b: b.get("building", {}).get("index", {}).get("state") == "stopped")
    assert "more.jsonl:2: invalid JSON" in body["building"]["index"]["error"]  # it used to fail unseen
    assert client.post("/search", json={"query": "apple", "k": 1}).status_code == 200  # still serving


def test_a_student_is_swapped_in_without_failing_a_request(
    make_client, service_files: dict[str, Path], tmp_path: Path
) -> None:
    pending = tmp_path / "student"
    client = make_client(student=None, student_pending=pending)
    first = client.post("/search", json={"query": "apple orchard", "k": 2}).json()
    assert first["mode"] == "teacher"  # no student yet: the teacher answers
    assert client.get("/ready").json()["building"]["student"]["state"] == "waiting"

    statuses: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            statuses.append(client.post("/search", json={"query": "river water", "k": 2}).status_code)

    worker = threading.Thread(target=hammer)
    worker.start()
    try:
        staged = tmp_path / ".student-staged"
        shutil.copytree(service_files["student"], staged)
        staged.rename(pending)  # a finished student appears at once, as `embedkd train` writes it
        body = _wait(client, lambda b: b.get("search_mode") == "asym")
        time.sleep(0.3)
    finally:
        stop.set()
        worker.join()
    assert body["building"]["student"]["state"] == "live" and body["models"]["student"]
    assert statuses and set(statuses) == {200}, statuses
    after = client.post("/search", json={"query": "apple orchard", "k": 2}).json()
    assert after["mode"] == "asym" and after["model"] == body["models"]["student"]
    assert _coverage(client)["compared"] == len(DOCS)  # a student swapped in is checked too


def test_a_student_of_another_teacher_is_refused_and_the_teacher_keeps_serving(
    make_client, tiny_model_factory, tmp_path: Path
) -> None:
    pending = tmp_path / "student"
    shutil.copytree(tiny_model_factory(hidden=48, seed=9), pending)
    (pending / "embedkd.json").write_text(
        json.dumps({"teacher": {"name": "other", "fingerprint": "0" * 64, "dimension": 48}, "base": "x"})
    )
    client = make_client(student=None, student_pending=pending)
    body = _wait(client, lambda b: b.get("building", {}).get("student", {}).get("state") == "refused")
    assert "other" in body["building"]["student"]["error"]
    assert client.post("/search", json={"query": "apple", "k": 1}).json()["mode"] == "teacher"


@pytest.mark.parametrize("mode", ["asym", "student"])
def test_an_explicit_student_mode_without_a_student_is_a_4xx(make_client, mode: str) -> None:
    client = make_client(student=None)
    response = client.post("/search", json={"query": "apple", "mode": mode})
    assert response.status_code == 422 and "student" in response.json()["detail"]


def _coverage(client, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        students = client.get("/models").json()["students"]
        if students and students[0]["index_coverage"] is not None:
            return students[0]["index_coverage"]
        time.sleep(0.1)
    raise AssertionError(f"no coverage check after {timeout} s: {students}")


def test_each_student_is_checked_against_the_index_in_the_background(make_client) -> None:
    client = make_client()
    coverage = _coverage(client)
    # the fixture's student is a random model that only claims the teacher: far less aligned than it records
    assert coverage["compared"] == coverage["chunks"] == len(DOCS)
    assert coverage["covered"] is False and coverage["ratio"] < 0.8 and "not covered" in coverage["verdict"]
    assert "embedkd_student_coverage_ratio{" in client.get("/metrics").text

    off = make_client(coverage_sample=0, read_only=True)  # beside the first, which writes the folder
    assert off.post("/search", json={"query": "apple", "k": 1}).status_code == 200
    time.sleep(0.5)
    assert off.get("/models").json()["students"][0]["index_coverage"] is None
