"""Two processes on one index, a failure between the store commit and faiss, searches during a save."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embedkd.data.documents import Document
from embedkd.errors import InputError
from embedkd.index import Index, IndexParams, build_index
from embedkd.index.faiss import FaissIndex
from embedkd.testing import durable_document

from .conftest import make_docs

WRITER = textwrap.dedent(
    """
    import json, sys
    from embedkd.distill.teacher import Teacher
    from embedkd.index import Index
    from embedkd.data.documents import Document
    from embedkd.testing import durable_document

    folder, teacher_dir, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    teacher = Teacher.from_model(teacher_dir)
    embed = lambda texts: teacher.embeddings(texts, progress=False)
    index = Index.open(folder)
    print("open", flush=True)
    for i in range(n):
        index.upsert([Document(**durable_document(i))], embed)
        print(json.dumps({"acked": f"durable-{i}"}), flush=True)
        if i % 7 == 0:
            index.save()
    index.close()
    """
)


@pytest.mark.slow
def test_a_writer_process_beside_readers_loses_nothing_and_writes_no_zero_vector(
    teacher, embed, tmp_path: Path, tiny_model_factory
) -> None:
    folder = tmp_path / "idx"
    build_index(folder, make_docs(20), teacher=teacher.ref, embed=embed, progress=False).close()
    teacher_dir = str(tiny_model_factory(hidden=48, seed=1))
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(folder), teacher_dir, "60"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "open"
    with pytest.raises(InputError, match="open for writing"):  # a second writer is refused, not interleaved
        Index.open(folder)
    reads = 0
    while proc.poll() is None:  # what `embedkd index info` and `embedkd search` do, meanwhile
        with Index.open(folder, readonly=True) as reader:
            reader.info()
            reader.search(embed(["field note on the survey"]), 5)
        reads += 1
    acked = [json.loads(line)["acked"] for line in proc.stdout if line.startswith("{")]
    assert proc.returncode == 0 and reads >= 3
    assert len(acked) == 60

    with Index.open(folder) as index:
        vectors = index.store.vectors()
        live = index.store.live_chunk_ids()
        assert not np.any(np.all(vectors[live] == 0, axis=1))  # no zero-filled row
        for i in range(60):
            doc = durable_document(i)
            assert index.store.document(doc["id"]) is not None
            hits = index.search(embed([f"{doc['title']} {doc['text']}"]), 1)[0]
            assert hits[0].id == doc["id"]
        assert index.vectors.ntotal == index.store.counts()["chunks"]


def test_a_failure_between_the_store_commit_and_faiss_is_replayed(
    teacher, embed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "idx"
    index = build_index(folder, make_docs(20), teacher=teacher.ref, embed=embed, progress=False)
    real_add = FaissIndex.add

    def broken(self: FaissIndex, vectors: np.ndarray, ids: np.ndarray) -> None:
        raise RuntimeError("faiss failed after the commit")

    monkeypatch.setattr(FaissIndex, "add", broken)
    with pytest.raises(RuntimeError, match="after the commit"):
        index.upsert([Document(id="late", text="zebra quartz zebra")], embed)
    monkeypatch.setattr(FaissIndex, "add", real_add)
    index.save()  # must record the generation faiss has applied, not the store's
    index.close()

    with Index.open(folder) as reopened:
        assert reopened.search(embed(["zebra quartz zebra"]), 1)[0][0].id == "late"

    # In the same process, the next write replays the gap too.
    index = Index.open(folder)
    monkeypatch.setattr(FaissIndex, "add", broken)
    with pytest.raises(RuntimeError):
        index.upsert([Document(id="gap", text="umbrella vortex umbrella")], embed)
    monkeypatch.setattr(FaissIndex, "add", real_add)
    index.upsert([Document(id="next", text="lantern meadow")], embed)
    assert index.search(embed(["umbrella vortex umbrella"]), 1)[0][0].id == "gap"
    index.close()


def test_info_and_search_open_read_only_and_change_nothing(teacher, embed, tmp_path: Path) -> None:
    folder = tmp_path / "idx"
    index = build_index(folder, make_docs(20), teacher=teacher.ref, embed=embed, progress=False)
    index.upsert([Document(id="unsaved", text="comet harbor")], embed)  # committed, faiss file not saved
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    with Index.open(folder, readonly=True) as reader:
        assert reader.search(embed(["comet harbor"]), 1)[0][0].id == "unsaved"  # replayed in memory
        with pytest.raises(InputError, match="read-only"):
            reader.delete(["d1"])
    after = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert {k: v for k, v in after.items() if not k.startswith("docstore.sqlite")} == {
        k: v for k, v in before.items() if not k.startswith("docstore.sqlite")
    }
    index.close()


def test_searches_are_answered_while_a_save_runs(teacher, embed, tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "idx"
    index = build_index(
        folder, make_docs(50), teacher=teacher.ref, embed=embed, params=IndexParams(kind="hnsw"), progress=False
    )  # type: ignore[arg-type]
    index.upsert([Document(id="x", text="apple")], embed)
    release = threading.Event()
    real_serialize = FaissIndex.serialize

    def slow_serialize(self: FaissIndex) -> bytes:
        data = real_serialize(self)
        release.wait(10)  # a save that takes as long as the test wants
        return data

    monkeypatch.setattr(FaissIndex, "serialize", slow_serialize)
    saver = threading.Thread(target=index.save)
    saver.start()
    time.sleep(0.2)
    answered = 0
    started = time.monotonic()
    while answered < 20 and time.monotonic() - started < 5:
        assert index.search(embed(["apple river"]), 3)[0]
        answered += 1
    release.set()
    saver.join()
    assert answered == 20  # all while the save was still holding its snapshot
    index.close()


def test_a_damaged_state_file_is_an_error_that_says_how_to_recover(teacher, embed, tmp_path: Path) -> None:
    folder = tmp_path / "idx"
    build_index(folder, make_docs(10), teacher=teacher.ref, embed=embed, progress=False).close()
    (folder / "index.state.json").write_text("{not json")
    with pytest.raises(InputError, match="delete index.state.json"):
        Index.open(folder)
    (folder / "index.state.json").unlink()  # the documented recovery: rebuilt from the store
    with Index.open(folder) as index:
        assert len(index) == 10 and index.vectors.ntotal == index.store.counts()["chunks"]


def test_hnsw_compaction_rebuilds_outside_the_lock_and_keeps_concurrent_writes(
    teacher, embed, tmp_path: Path, monkeypatch
) -> None:
    folder = tmp_path / "idx"
    index = build_index(
        folder, make_docs(40), teacher=teacher.ref, embed=embed, params=IndexParams(kind="hnsw"), progress=False
    )  # type: ignore[arg-type]
    index.delete([f"d{i}" for i in range(20)])  # half the graph tombstoned: the next save compacts
    assert index.vectors.needs_compaction
    building = threading.Event()
    release = threading.Event()
    real_build = FaissIndex.build_from

    def slow_build(self: FaissIndex, fetch: Any, ids: np.ndarray, **kwargs: Any) -> None:
        building.set()
        release.wait(10)
        real_build(self, fetch, ids, **kwargs)

    monkeypatch.setattr(FaissIndex, "build_from", slow_build)
    saver = threading.Thread(target=index.save)
    saver.start()
    assert building.wait(5)
    hits = index.search(embed(["apple river"]), 3)[0]  # answered while the new graph is being built
    assert hits and all(int(h.id[1:]) >= 20 for h in hits)
    index.upsert([Document(id="during", text="written during compaction")], embed)  # lands in the old graph
    release.set()
    saver.join()
    assert not index.vectors.needs_compaction
    assert index.search(embed(["written during compaction"]), 1)[0][0].id == "during"  # caught up after the swap
    assert index.vectors.ntotal == index.store.counts()["chunks"]
    index.close()


def test_shared_opens_write_one_folder_together_and_save_the_newest(teacher, embed, tmp_path: Path) -> None:
    folder = tmp_path / "idx"
    build_index(folder, make_docs(6), teacher=teacher.ref, embed=embed, progress=False).close()
    a, b = Index.open(folder, shared=True), Index.open(folder, shared=True)  # two workers of one server
    with pytest.raises(InputError, match="the workers of a running server"):
        Index.open(folder)  # a single writer is refused beside them
    with pytest.raises(InputError, match="not both"):
        Index.open(folder, shared=True, readonly=True)
    docs = make_docs(12, seed=5)[6:]
    for i, doc in enumerate(docs):
        (a if i % 2 else b).upsert([Document(id=f"new{i}", text=doc.text)], embed)
    queries = embed([docs[0].text, docs[1].text])
    for index in (a, b):  # each serves what the other committed
        assert [hits[0].id for hits in index.search(queries, 1)] == ["new0", "new1"]
    b.delete(["new0"])
    assert "new0" not in {h.id for h in a.search(queries[:1], 20)[0]}
    b.save()
    a.save()  # b's save is as new as a's view: a writes nothing over it
    a.close()
    b.close()
    with Index.open(folder) as index:
        assert len(index) == 6 + 5 and index.vectors.ntotal == index.store.counts()["chunks"]
        assert [hits[0].id for hits in index.search(queries[1:], 1)] == ["new1"]
        with pytest.raises(InputError, match="open for writing by pid"):
            Index.open(folder, shared=True)  # and they are refused beside a single writer


def test_a_hit_deleted_by_another_worker_between_grouping_and_lookup_is_left_out(
    teacher, embed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "idx"
    docs = make_docs(6)
    build_index(folder, docs, teacher=teacher.ref, embed=embed, progress=False).close()
    a, b = Index.open(folder, shared=True), Index.open(folder, shared=True)
    try:
        query = embed([docs[0].text])
        assert a.search(query, 1)[0][0].id == docs[0].id
        group = a._group

        def group_then_b_deletes(*args: Any) -> Any:  # b's delete lands between a's grouping and its lookup
            grouped = group(*args)
            b.delete([docs[0].id])
            return grouped

        monkeypatch.setattr(a, "_group", group_then_b_deletes)
        assert a.search(query, 1) == [[]]  # the chunk was grouped; its document is gone: no hit, and no error
        monkeypatch.undo()
        assert docs[0].id not in {h.id for h in a.search(query, 3)[0]}
    finally:
        a.close()
        b.close()
