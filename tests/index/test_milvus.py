"""The Milvus backend on a real Milvus Lite engine: the same answers, writes and guard as faiss."""

from __future__ import annotations

from pathlib import Path

import pytest

from embedkd.index import Index, IndexParams, build_index

from .conftest import make_docs

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")


def ids(hits: list[list]) -> list[list[str]]:
    return [[h.id for h in row] for row in hits]


def test_milvus_answers_like_faiss_and_keeps_writes_across_reopen(teacher, embed, tmp_path: Path) -> None:
    docs = make_docs(120, max_words=20)
    queries = embed(["apple river music", "tiger violin", "stone cloud"])
    faiss_index = build_index(tmp_path / "faiss", docs, teacher=teacher.ref, embed=embed, progress=False)
    params = IndexParams(extra={"backend": "milvus", "uri": str(tmp_path / "milvus.db")})
    milvus_index = build_index(
        tmp_path / "milvus", docs, teacher=teacher.ref, embed=embed, params=params, progress=False
    )
    assert milvus_index.info()["params"]["extra"]["collection"].startswith("embedkd_")
    assert ids(milvus_index.search(queries, 10)) == ids(faiss_index.search(queries, 10))
    filtered = {"lang": "en"}
    assert ids(milvus_index.search(queries, 5, filters=filtered)) == ids(
        faiss_index.search(queries, 5, filters=filtered)
    )

    # upsert and delete by document id, then reopen: Milvus kept the vectors, the store generation replays
    new = make_docs(3, seed=7, max_words=10)
    for index in (faiss_index, milvus_index):
        index.upsert([type(new[0])(id="d5", title="replaced", text=new[0].text)], embed)
        index.delete(["d7", "d8"])
    assert ids(milvus_index.search(queries, 10)) == ids(faiss_index.search(queries, 10))
    faiss_index.close()
    milvus_index.close()
    reopened = Index.open(tmp_path / "milvus")
    again = Index.open(tmp_path / "faiss", readonly=True)
    assert ids(reopened.search(queries, 10)) == ids(again.search(queries, 10))
    assert reopened.info()["counts"]["vectors"] == again.info()["counts"]["vectors"] == len(docs) - 2
    hit = reopened.search(queries[:1], 1, include_text=True)[0][0]
    assert hit.text  # documents still come from embedkd's store
    reopened.close()
    again.close()


def test_milvus_refuses_kinds_it_does_not_have(teacher, embed, tmp_path: Path) -> None:
    from embedkd.errors import InputError

    params = IndexParams(kind="binary", extra={"backend": "milvus", "uri": str(tmp_path / "m.db")})  # type: ignore[arg-type]
    with pytest.raises(InputError, match="milvus backend supports"):
        build_index(tmp_path / "x", make_docs(5), teacher=teacher.ref, embed=embed, params=params, progress=False)
    assert not (tmp_path / "x").exists()


def test_a_uri_milvus_cannot_open_is_an_input_error_and_the_file_is_kept(teacher, embed, tmp_path: Path) -> None:
    from embedkd.errors import InputError

    notes = tmp_path / "notes.db"  # an existing file that is not Milvus Lite's
    notes.write_text("my notes\n")
    for uri in (notes, tmp_path):
        params = IndexParams(kind="flat", extra={"backend": "milvus", "uri": str(uri)})  # type: ignore[arg-type]
        with pytest.raises(InputError, match="Milvus cannot open it"):
            build_index(tmp_path / "x", make_docs(5), teacher=teacher.ref, embed=embed, params=params, progress=False)
    assert notes.read_text() == "my notes\n" and not (tmp_path / "x").exists()
