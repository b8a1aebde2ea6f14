from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from embedkd.data.documents import Document, read_documents
from embedkd.errors import InputError
from embedkd.index import Index, IndexKind, IndexParams, build_index
from embedkd.index.exact import exact_search

from .conftest import make_docs

ALL_KINDS = ["flat", "hnsw", "ivf-flat", "ivf-pq", "sq8", "binary"]


def params_for(kind: str) -> IndexParams:
    if kind.startswith("ivf"):
        return IndexParams(kind=kind, nlist=8, nprobe=8, pq_m=8)  # type: ignore[arg-type]
    return IndexParams(kind=kind)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_build_save_reopen_search_round_trip(kind: str, teacher, embed, tmp_path: Path) -> None:
    docs = make_docs(300)
    folder = tmp_path / kind
    index = build_index(folder, docs, teacher=teacher.ref, embed=embed, params=params_for(kind), progress=False)
    queries = embed(["apple river music", "tiger violin"])
    before = [[h.id for h in hits] for hits in index.search(queries, 5)]
    info = index.info()
    index.close()
    assert info["counts"]["documents"] == 300 and info["counts"]["vectors"] == info["counts"]["chunks"]
    assert info["params"]["kind"] == kind and info["teacher"]["fingerprint"] == teacher.ref.fingerprint

    reopened = Index.open(folder)
    after = [[h.id for h in hits] for hits in reopened.search(queries, 5)]
    assert after == before and all(len(ids) == 5 for ids in after)
    hit = reopened.search(queries[:1], 1, include_text=True)[0][0]
    stored = reopened.store.document(hit.id)
    assert stored is not None and hit.text == stored.text and hit.passage in stored.text
    reopened.close()


def test_flat_matches_numpy_exactly(teacher, embed, tmp_path: Path) -> None:
    docs = make_docs(200, max_words=20)  # one chunk per document
    index = build_index(tmp_path / "flat", docs, teacher=teacher.ref, embed=embed, chunking=False, progress=False)

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    doc_vectors = unit(embed([f"{d.title} {d.text}" for d in docs]))  # float16 storage, renormalised
    queries = unit(embed([d.text for d in make_docs(20, seed=5)]))
    scores, rows = exact_search(queries, doc_vectors, 100)
    hits = index.search(queries, 100)
    reference = {d.id: v for d, v in zip(docs, doc_vectors, strict=True)}
    for q in range(len(queries)):
        np.testing.assert_allclose([h.score for h in hits[q]], scores[q], atol=1e-5)
        expected = [docs[r].id for r in rows[q]]
        for got, want in zip([h.id for h in hits[q]], expected, strict=True):
            if got != want:  # only exact ties may swap (tiny random models make many)
                assert abs(float(reference[got] @ queries[q]) - float(reference[want] @ queries[q])) < 1e-6
    index.close()


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_upsert_and_delete_keep_ids_consistent(kind: str, teacher, embed, tmp_path: Path) -> None:
    docs = make_docs(50)
    folder = tmp_path / "idx"
    index = build_index(folder, docs, teacher=teacher.ref, embed=embed, params=IndexParams(kind=kind), progress=False)  # type: ignore[arg-type]
    q = embed(["zebra quartz"])
    new = Document(id="d7", title="zebra", text="zebra quartz zebra quartz", metadata={"lang": "xx"})
    assert index.upsert([new], embed) == {"inserted": 0, "replaced": 1, "chunks": 1}
    top = index.search(q, 3)[0]
    assert top[0].id == "d7" and top[0].metadata == {"lang": "xx"}
    assert sum(h.id == "d7" for h in index.search(q, 50)[0]) == 1  # old chunks of d7 are gone
    result = index.delete(["d7", "d3", "nope"])
    assert result["deleted"] == 2 and result["missing"] == ["nope"]
    ids = {h.id for h in index.search(q, 100)[0]}
    assert "d7" not in ids and "d3" not in ids
    assert len(ids) == 48 if kind == "flat" else len(ids) >= 45  # hnsw is approximate even at k = all
    with pytest.raises(InputError, match="already exist"):
        index.add([Document(id="d1", text="x")], embed)
    assert index.add([Document(id="brand-new", text="zebra quartz")], embed)["inserted"] == 1
    index.save()
    index.close()
    reopened = Index.open(folder)
    assert len(reopened) == 49 and reopened.store.document("d3") is None
    assert reopened.store.stored_ids(["d3", "d7", "brand-new", "d1", "d1", "nope"]) == {"brand-new", "d1"}
    assert reopened.store.stored_ids([f"d{i}" for i in range(50)] * 12) == {f"d{i}" for i in range(50)} - {"d3", "d7"}
    assert reopened.search(q, 1)[0][0].id in {"brand-new"}
    assert reopened.info()["counts"]["vectors"] == reopened.info()["counts"]["chunks"]
    reopened.close()


def die(index: Index) -> None:
    """What a kill -9 leaves: no save, the connections gone, and the kernel drops the writer's flock."""
    index.store.close()
    assert index._writer is not None
    index._writer.release()


def test_unsaved_changes_are_replayed_after_a_crash(teacher, embed, tmp_path: Path) -> None:
    folder = tmp_path / "idx"
    index = build_index(folder, make_docs(40), teacher=teacher.ref, embed=embed, progress=False)
    index.upsert([Document(id="late", text="zebra quartz zebra")], embed)
    index.delete(["d0"])
    # No save(): simulate a kill -9 by dropping the object without closing it.
    die(index)
    reopened = Index.open(folder)
    assert reopened.store.document("late") is not None and reopened.store.document("d0") is None
    hit_ids = [h.id for h in reopened.search(embed(["zebra quartz"]), 40)[0]]
    assert hit_ids[0] == "late" and "d0" not in hit_ids
    reopened.close()


def test_crash_between_write_and_rename_leaves_a_readable_index(
    teacher, embed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "idx"
    index = build_index(folder, make_docs(40), teacher=teacher.ref, embed=embed, progress=False)
    index.upsert([Document(id="late", text="zebra quartz")], embed)

    real_replace = os.replace

    def crash(src: object, dst: object) -> None:
        if str(dst).endswith(".faiss"):
            raise OSError("simulated power cut before rename")
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", crash)  # the save's atomic write renames with os.replace
    with pytest.raises(OSError, match="power cut"):
        index.save()
    monkeypatch.undo()
    die(index)
    assert not list(folder.glob(".index.*.tmp"))
    reopened = Index.open(folder)
    assert len(reopened) == 41
    assert reopened.search(embed(["zebra quartz"]), 1)[0][0].id == "late"
    reopened.close()


def test_metadata_filters(teacher, embed, tmp_path: Path) -> None:
    index = build_index(tmp_path / "i", make_docs(60), teacher=teacher.ref, embed=embed, progress=False)
    q = embed(["apple"])
    french = index.search(q, 10, filters={"lang": "fr"})[0]
    assert len(french) == 10 and all(h.metadata["lang"] == "fr" for h in french)
    both = index.search(q, 50, filters={"lang": "en", "group": 1})[0]
    assert both and all(h.metadata == {"lang": "en", "group": 1} for h in both)
    assert index.search(q, 5, filters={"lang": "de"})[0] == []
    with pytest.raises(InputError):
        index.search(q, 5, filters={"bad key'": 1})
    with pytest.raises(InputError, match="outside 64 bits"):  # SQLite cannot bind it: an OverflowError before
        index.search(q, 5, filters={"group": 2**63})
    with pytest.raises(InputError, match="at most 64"):  # SQLite refuses an expression tree that deep
        index.search(q, 5, filters={f"k{i}": 1 for i in range(2000)})
    index.close()


def test_bad_input_leaves_the_index_unchanged(teacher, embed, tmp_path: Path) -> None:
    folder = tmp_path / "idx"
    index = build_index(folder, make_docs(20), teacher=teacher.ref, embed=embed, progress=False)
    generation = index.store.generation()
    bad_batches = {
        "no documents": [],
        "duplicate": [Document(id="x", text="a"), Document(id="x", text="b")],
        "neither title nor text": [Document(id="y", text="  ")],
        # stored, each would break every filtered search, or every answer that returns the document
        "not a finite number": [Document(id="n", text="a", metadata={"score": float("nan")})],
        "outside 64 bits": [Document(id="b", text="a", metadata={"ids": [1, 2**64]})],
        "not a JSON value": [Document(id="o", text="a", metadata={"when": object()})],
        "lone UTF-16 surrogate": [Document(id="s\ud800", text="a")],
        "document 't' metadata.k holds a lone": [Document(id="t", text="a", metadata={"k": "v\udc00"})],
    }
    for message, batch in bad_batches.items():
        with pytest.raises(InputError, match=message):
            index.upsert(batch, embed)
    with pytest.raises(InputError, match="embedder returned shape"):
        index.upsert([Document(id="z", text="hello")], lambda texts: np.ones((len(texts), 7), np.float32))
    with pytest.raises(InputError, match="dimension"):
        index.search(np.ones((1, 7), np.float32), 3)
    assert index.store.generation() == generation and len(index) == 20
    index.close()


def test_document_readers_reject_bad_files(tmp_path: Path) -> None:
    missing_text = tmp_path / "a.jsonl"
    missing_text.write_text('{"_id": "1", "title": "t"}\n')
    with pytest.raises(InputError, match="no string field 'text'"):
        read_documents(missing_text)
    dup = tmp_path / "b.jsonl"
    dup.write_text('{"id": 1, "text": "a"}\n{"id": "1", "text": "b"}\n')
    with pytest.raises(InputError, match="duplicate document id '1'"):
        read_documents(dup)
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "good.md").write_text("# Heading\nbody text")
    (folder / "bad.txt").write_bytes(b"\xff\xfe caf\xe9")
    with pytest.raises(InputError, match="not valid UTF-8"):
        read_documents(folder)
    (folder / "bad.txt").unlink()
    docs = read_documents(folder)
    assert [(d.id, d.title) for d in docs] == [("good.md", "Heading")]
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(InputError, match="no documents"):
        read_documents(empty)


def test_ivf_refuses_too_few_vectors(teacher, embed, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="needs at least 256 vectors"):
        build_index(
            tmp_path / "i", make_docs(10), teacher=teacher.ref, embed=embed, params=IndexParams(kind=IndexKind.IVF_PQ)
        )
    assert not (tmp_path / "i").exists() and not list(tmp_path.glob(".i.building-*"))


def test_search_params_set_nprobe_and_ef_search_per_call(teacher, embed, tmp_path: Path) -> None:
    from embedkd.index import SearchParams

    docs = make_docs(400, max_words=20)
    queries = embed([d.text for d in make_docs(30, seed=9)])
    flat = build_index(tmp_path / "flat", docs, teacher=teacher.ref, embed=embed, chunking=False, progress=False)
    exact = [[h.id for h in hits] for hits in flat.search(queries, 10)]
    flat.close()

    params = IndexParams(kind="ivf-flat", nlist=16, nprobe=1)  # type: ignore[arg-type]
    ivf = build_index(tmp_path / "ivf", docs, teacher=teacher.ref, embed=embed, params=params, chunking=False)

    def recall(hits: list[list]) -> float:
        return float(
            np.mean([len({h.id for h in row} & set(want)) / 10 for row, want in zip(hits, exact, strict=True)])
        )

    narrow = recall(ivf.search(queries, 10))
    wide = recall(ivf.search(queries, 10, params=SearchParams(nprobe=16)))  # every list: exact
    assert wide == 1.0 and narrow < wide
    assert recall(ivf.search(queries, 10)) == narrow  # the override did not change the index
    assert ivf.info()["params"]["nprobe"] == 1
    ivf.close()

    hnsw = build_index(
        tmp_path / "hnsw",
        docs,
        teacher=teacher.ref,
        embed=embed,
        params=IndexParams(kind="hnsw"),
        chunking=False,  # type: ignore[arg-type]
    )
    assert recall(hnsw.search(queries, 10, params=SearchParams(ef_search=400))) == 1.0
    hnsw.close()
    with pytest.raises(InputError, match="nprobe"):
        SearchParams(nprobe=0)


@pytest.mark.parametrize("kind", ["ivf-pq", "hnsw"])
def test_a_build_in_small_blocks_equals_a_build_in_one(kind: str, teacher, embed, tmp_path: Path) -> None:
    docs = make_docs(300)
    calls: list[int] = []

    def counting_embed(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return embed(texts)

    params = params_for(kind)
    whole = build_index(tmp_path / "whole", docs, teacher=teacher.ref, embed=embed, params=params, progress=False)
    blocks = build_index(
        tmp_path / "blocks", docs, teacher=teacher.ref, embed=counting_embed, params=params, progress=False,
        embed_block=40, batch_docs=7,
    )  # fmt: skip
    longest = max(len(whole.chunk(doc)) for doc in docs)  # a document is never split across blocks
    assert len(calls) > 5 and max(calls) <= max(40, longest) and sum(calls) == whole.info()["counts"]["chunks"]
    queries = embed(["apple river music", "tiger violin", "quiet harbour"])
    assert [[(h.id, h.chunk) for h in row] for row in blocks.search(queries, 10)] == [
        [(h.id, h.chunk) for h in row] for row in whole.search(queries, 10)
    ]
    whole.close()
    blocks.close()


def test_faiss_build_from_fetches_block_by_block_and_equals_build(teacher, embed) -> None:
    from embedkd.index import FaissIndex

    vectors = embed([f"text {i} apple river" for i in range(500)])
    ids = np.arange(1000, 1500, dtype=np.int64)
    asked: list[int] = []

    def fetch(rows: np.ndarray) -> np.ndarray:
        asked.append(len(rows))
        return vectors[rows]

    params = params_for("ivf-flat")
    one, blocks = FaissIndex(vectors.shape[1], params), FaissIndex(vectors.shape[1], params)
    one.build(vectors, ids)
    blocks.build_from(fetch, ids, block=64)
    assert max(asked) <= max(64, 64 * 8) and sum(asked[1:]) == 500  # a training sample, then the blocks
    np.testing.assert_array_equal(one.search(vectors[:5], 10)[1], blocks.search(vectors[:5], 10)[1])


def test_a_build_removes_what_a_killed_build_left(teacher, embed, tmp_path: Path) -> None:
    from embedkd.staging import staging_dir

    from ..test_staging import gone_pid

    own = staging_dir(tmp_path / "i", "building")
    killed = own.with_name(own.name.replace(f"-{os.getpid()}-", f"-{gone_pid()}-"))
    os.rename(own, killed)  # a build killed outright leaves its half-written folder
    (killed / "vectors.f32").write_bytes(b"\0" * 1024)
    build_index(tmp_path / "i", make_docs(10), teacher=teacher.ref, embed=embed)
    with Index.open(tmp_path / "i") as index:
        assert len(index) == 10
    assert not list(tmp_path.glob(".i.building-*"))


def test_a_missing_or_damaged_document_store_is_refused_and_left_as_it_is(teacher, embed, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "idx"
    build_index(folder, make_docs(10), teacher=teacher.ref, embed=embed, progress=False).close()
    gone = tmp_path / "gone"
    shutil.copytree(folder, gone)
    for name in os.listdir(gone):
        if name.startswith("docstore.sqlite"):
            os.remove(gone / name)
    for readonly in (False, True):  # a writer once started an empty store beside the 10 documents' vectors
        with pytest.raises(InputError, match="no docstore.sqlite"):
            Index.open(gone, readonly=readonly)
    assert not (gone / "docstore.sqlite").exists()

    damaged = tmp_path / "damaged"
    shutil.copytree(folder, damaged)
    (damaged / "docstore.sqlite").write_bytes(b"not a database at all" * 100)
    for readonly in (False, True):
        with pytest.raises(InputError, match="docstore.sqlite is damaged"):
            Index.open(damaged, readonly=readonly)
    assert (damaged / "docstore.sqlite").read_bytes() == b"not a database at all" * 100
