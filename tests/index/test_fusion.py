"""Fusion: a second index of the same documents, in another model's own space, rescoring the candidates."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from embedkd.data.documents import Document
from embedkd.distill.teacher import Teacher
from embedkd.errors import AlignmentError, InputError
from embedkd.index import build_index
from embedkd.index.document_index import Index
from embedkd.models import Encoder
from embedkd.retrieval import AsymmetricRetriever, Fusion

from .conftest import make_docs
from .test_retrieval import fake_student

QUERIES = ["apple river", "violin music cloud", "doctor garden window"]


@pytest.fixture
def setup(
    tiny_model_factory: Callable[..., Path], teacher: Teacher, embed: Callable[[list[str]], np.ndarray], tmp_path: Path
) -> tuple[Index, Index, Encoder, Encoder]:
    """The teacher's index, a second index of the same 30 documents built by another (32-d) model, a student
    aligned to the teacher, and that other model. Whole documents (no chunking), so scores can be checked."""
    docs = make_docs(30, max_words=20)
    main = build_index(tmp_path / "main", docs, teacher=teacher.ref, embed=embed, chunking=False, progress=False)
    other = Teacher.from_model(str(tiny_model_factory(hidden=32, seed=9)))
    second = build_index(
        tmp_path / "second",
        docs,
        teacher=other.ref,
        embed=lambda texts: other.embeddings(texts, progress=False),
        chunking=False,
        progress=False,
    )
    student = fake_student(tiny_model_factory(hidden=48, seed=7), teacher.ref)
    return main, second, student, Encoder.load(other.model_path, device="cpu")


def test_fusion_adds_the_weighted_second_space_score_to_each_candidate(setup) -> None:
    main, second, student, other = setup
    plain = AsymmetricRetriever(main, student=student).search(QUERIES, 30)  # every document is a candidate
    fused = AsymmetricRetriever(main, student=student, fusion=Fusion(second, other, weight=1.5)).search(QUERIES, 5)
    texts = {doc.id: f"{doc.title} {doc.text}" for doc in make_docs(30, max_words=20)}
    ids = sorted(texts)
    doc_vectors = other.encode_document([texts[i] for i in ids])
    for query, pool, hits in zip(QUERIES, plain, fused, strict=True):
        own = dict(zip(ids, (doc_vectors @ other.encode_query([query])[0]).tolist(), strict=True))
        expected = sorted(((h.score + 1.5 * own[h.id], h.id) for h in pool), reverse=True)[:5]
        assert [h.id for h in hits] == [i for _, i in expected]
        np.testing.assert_allclose([h.score for h in hits], [s for s, _ in expected], atol=2e-3)  # f16 storage
    assert [h.id for h in fused[0]] != [h.id for h in plain[0][:5]]  # the second space changed the order
    assert all(h.text is None for hits in fused for h in hits)
    with_text = AsymmetricRetriever(main, student=student, fusion=Fusion(second, other, weight=1.5))
    for hits, same in zip(with_text.search(QUERIES, 5, include_text=True), fused, strict=True):
        assert [h.id for h in hits] == [h.id for h in same]
        assert all(h.text == main.store.document(h.id).text for h in hits)  # type: ignore[union-attr]


def test_weight_zero_keeps_the_main_ranking_and_few_candidates_still_give_k(setup) -> None:
    main, second, student, other = setup
    plain = AsymmetricRetriever(main, student=student).search(QUERIES, 4)
    zero = AsymmetricRetriever(main, student=student, fusion=Fusion(second, other, weight=0.0, candidates=2))
    for a, b in zip(plain, zero.search(QUERIES, 4), strict=True):
        assert [h.id for h in a] == [h.id for h in b]  # candidates below k: the pool is k
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b])


def test_the_second_index_must_be_queried_by_the_model_that_built_it(
    setup, tiny_model_factory: Callable[..., Path]
) -> None:
    main, second, student, _ = setup
    with pytest.raises(AlignmentError, match="fusion: .*48-d vectors but fusion index"):
        AsymmetricRetriever(main, student=student, fusion=Fusion(second, student))
    same_width = Encoder.load(tiny_model_factory(hidden=32, seed=11), device="cpu")
    with pytest.raises(AlignmentError, match="fusion: .*that built it .*fusion index"):
        AsymmetricRetriever(main, student=student, fusion=Fusion(second, same_width))
    AsymmetricRetriever(main, student=student, fusion=Fusion(second, student), force=True)  # explicit override
    with pytest.raises(InputError, match="weight"):
        Fusion(second, student, weight=-1.0)
    with pytest.raises(InputError, match="candidates"):
        Fusion(second, student, candidates=0)


def test_candidates_missing_from_the_second_index_rank_by_its_lowest_score(
    setup, teacher: Teacher, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    main, _, student, other = setup
    other_teacher = Teacher.from_model(str(other.path))
    partial = build_index(
        tmp_path / "partial",
        make_docs(30, max_words=20)[:20],
        teacher=other_teacher.ref,
        embed=lambda texts: other_teacher.embeddings(texts, progress=False),
        chunking=False,
        progress=False,
    )
    with caplog.at_level(logging.WARNING, logger="embedkd.retrieval"):
        retriever = AsymmetricRetriever(main, student=student, fusion=Fusion(partial, other))
    assert "holds 20 documents" in caplog.text
    plain = AsymmetricRetriever(main, student=student).search(QUERIES, 30)
    scores = partial.document_scores(other.encode_query(QUERIES), [[h.id for h in hits] for hits in plain])
    for pool, held, hits in zip(plain, scores, retriever.search(QUERIES, 30), strict=True):
        assert len(held) == 20 and len(hits) == 30
        floor = min(held.values())
        by_id = {h.id: h.score for h in hits}
        for h in pool:
            np.testing.assert_allclose(by_id[h.id], h.score + held.get(h.id, floor), atol=1e-5)


def test_document_scores_is_the_best_chunk_and_checks_its_input(
    teacher: Teacher, embed: Callable[[list[str]], np.ndarray], tmp_path: Path
) -> None:
    docs = make_docs(6, max_words=300)
    index = build_index(tmp_path / "i", docs, teacher=teacher.ref, embed=embed, chunk_tokens=32, progress=False)
    query = teacher.embeddings(["apple stone"], progress=False)
    hits = index.search(query, 6)[0]
    scores = index.document_scores(query, [[h.id for h in hits] + ["nowhere"]])[0]
    assert "nowhere" not in scores
    for hit in hits:  # search ranks a document by its best chunk, and so does document_scores
        assert scores[hit.id] == pytest.approx(hit.score, abs=1e-4)
    with pytest.raises(InputError, match="query vectors"):
        index.document_scores(query[:, :10], [["d0"]])
    with pytest.raises(InputError, match="query vectors"):
        index.document_scores(query, [["d0"], ["d1"]])
    index.close()


def test_cli_search_fuses_with_a_second_index(setup, run_cli: Callable[..., tuple[int, str, str]]) -> None:
    main, second, student, other = setup
    main_dir, second_dir = main.folder, second.folder
    main.close()
    second.close()
    code, out, err = run_cli(
        "search", "apple river", "--index", main_dir, "--student", student.path, "--fuse-index", second_dir,
        "--fuse-weight", "1.5", "--json", "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)[0]
    assert result["fused_with"] == other.name and result["fuse_weight"] == 1.5 and len(result["hits"]) == 10
    code, _, err = run_cli(
        "search", "apple", "--index", main_dir, "--student", student.path, "--fuse-index", second_dir,
        "--fuse-weight", "-1",
    )  # fmt: skip
    assert code != 0 and "fuse-weight" in err
    with Index.open(second_dir) as writable:  # the second index no longer holds the same documents
        writable.delete(["d0"])
        writable.save()
    code, _, err = run_cli(
        "search", "apple", "--index", main_dir, "--student", student.path, "--fuse-index", second_dir
    )  # once it fused silently, every candidate missing there scored as its lowest
    assert code == 2 and "must hold the same documents (29 documents against 30)" in err, err
    code, _, err = run_cli("search", "apple", "--index", main_dir, "--student", student.path, "--fuse-index", main_dir)
    assert code == 2 and "second index folder" in err, err


def test_cli_index_writes_keep_the_fusion_index_in_step(
    setup, run_cli: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    main, second, _, _ = setup
    main_dir, second_dir = main.folder, second.folder
    main.close()
    second.close()
    new = tmp_path / "new.jsonl"
    new.write_text(
        json.dumps({"id": "n1", "title": "New", "text": "apple tiger violin"})
        + "\n"
        + json.dumps({"id": "n2", "title": "Newer", "text": "planet silver market"})
        + "\n"
    )

    def held(folder: Path) -> set[str]:
        with Index.open(folder, readonly=True) as index:
            return {d for d in ("n1", "n2", "d0") if index.store.document(d) is not None}

    code, _, err = run_cli(
        "index", "upsert", "--index", main_dir, "-i", new, "--fuse-index", second_dir, "--device", "cpu"
    )
    assert code == 0, err
    assert held(main_dir) == held(second_dir) == {"n1", "n2", "d0"}
    code, _, err = run_cli(
        "index", "add", "--index", main_dir, "-i", new, "--fuse-index", second_dir, "--device", "cpu"
    )
    assert code != 0 and "already exist" in err  # refused before either index was written
    code, _, err = run_cli("index", "delete", "--index", main_dir, "n1", "d0", "--fuse-index", second_dir)
    assert code == 0, err
    assert held(main_dir) == held(second_dir) == {"n2"}


def test_a_student_of_the_fusion_model_fuses_in_one_pass_with_the_same_hits(
    setup, tiny_model_factory: Callable[..., Path], teacher: Teacher, tmp_path: Path
) -> None:
    from embedkd.testing import build_student_of

    main, second, _, other = setup  # `other` (32-d, seed 9) built the second index
    folder = build_student_of(tiny_model_factory(hidden=32, seed=9), tmp_path / "student-of-other")
    student = fake_student(folder, teacher.ref)
    fused = AsymmetricRetriever(main, student=student, fusion=Fusion(second, other))
    assert fused.trunk is not None and fused.trunk.shared == 1  # the lower of its two layers is shared
    apart = AsymmetricRetriever(main, student=student, fusion=Fusion(second, other))
    apart.trunk = None  # encode the two apart
    for one, two in zip(fused.search(QUERIES, 5), apart.search(QUERIES, 5), strict=True):
        assert [h.id for h in one] == [h.id for h in two]
        np.testing.assert_allclose([h.score for h in one], [h.score for h in two], atol=1e-5)
    teacher_mode = AsymmetricRetriever(
        main, student=student, teacher=Encoder.load(teacher.model_path), fusion=Fusion(second, other)
    )
    assert len(teacher_mode.search(QUERIES, 3, mode="teacher")[0]) == 3  # the teacher's queries: two passes


def test_an_index_remembers_its_fusion_index_for_search_and_writes(
    setup, run_cli: Callable[..., tuple[int, str, str]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    main, second, student, other = setup
    main_dir, second_dir = main.folder, second.folder
    main.close()
    second.close()
    code, _, err = run_cli("index", "link", "--index", main_dir, "--fuse-index", main_dir)
    assert code == 2 and "not the index itself" in err
    code, _, err = run_cli("index", "link", "--index", main_dir)
    assert code == 2 and "--fuse-index FOLDER or --forget" in err
    code, out, err = run_cli("index", "link", "--index", main_dir, "--fuse-index", second_dir)
    assert code == 0, err
    assert json.loads(out)["fusion"] == "../second"  # relative: the two folders can move together
    search = ("search", "apple river", "--index", main_dir, "--student", student.path, "--json", "--device", "cpu")
    code, out, err = run_cli(*search)
    assert code == 0, err
    assert json.loads(out)[0]["fused_with"] == other.name  # no --fuse-index needed
    code, out, err = run_cli(*search, "--no-fuse")
    assert code == 0, err
    assert json.loads(out)[0].get("fused_with") is None
    new = tmp_path / "new.jsonl"
    new.write_text(json.dumps({"id": "n1", "title": "New", "text": "apple tiger violin"}) + "\n")
    code, _, err = run_cli("index", "add", "--index", main_dir, "-i", new, "--device", "cpu")
    assert code == 0, err
    with Index.open(second_dir, readonly=True) as index:  # the write reached the remembered index too
        assert index.store.stored_ids(["n1"]) == {"n1"}
    code, _, err = run_cli("index", "delete", "--index", main_dir, "n1")
    assert code == 0, err
    with Index.open(second_dir, readonly=True) as index:
        assert index.store.stored_ids(["n1"]) == set()
    with Index.open(second_dir) as index:  # a write that reached the remembered index only (a crash between)
        index.upsert([Document(id="n2", title="", text="tiger violin")], other.encode_document)
        index.save()
    with caplog.at_level(logging.WARNING, logger="embedkd.index.manifest"):
        code, out, err = run_cli(*search)  # still fused, with a warning: a restart must not fail on it
    assert code == 0 and json.loads(out)[0]["fused_with"] == other.name, err
    assert "must hold the same documents (31 documents against 30)" in caplog.text and "fusing anyway" in caplog.text
    code, _, err = run_cli(*search, "--fuse-index", second_dir)  # given explicitly: refused
    assert code == 2 and "must hold the same documents" in err
    with Index.open(second_dir) as index:
        index.delete(["n2"])
        index.save()
    # a remembered index that has gone is a clear error, not a silent unfused search
    second_dir.rename(tmp_path / "moved")
    code, _, err = run_cli(*search)
    assert code == 2 and "remembers the fusion index" in err and "index link --index" in err
    code, out, err = run_cli("index", "link", "--index", main_dir, "--forget")
    assert code == 0 and json.loads(out)["fusion"] is None
    code, out, err = run_cli(*search)
    assert code == 0 and json.loads(out)[0].get("fused_with") is None


def test_link_refuses_an_index_of_the_same_model_or_of_other_documents(
    setup, teacher: Teacher, embed: Callable[[list[str]], np.ndarray], tmp_path: Path
) -> None:
    main, second, _, other = setup
    docs = make_docs(30, max_words=20)
    same_model = build_index(tmp_path / "same", docs, teacher=teacher.ref, embed=embed, progress=False)
    same_dir = same_model.folder
    same_model.close()
    with pytest.raises(InputError, match="same model"):
        main.link_fusion(same_dir)
    second.delete(["d0"])
    second.save()
    with pytest.raises(InputError, match="29 documents against 30"):
        main.link_fusion(second.folder)
    second.upsert([Document(id="d0-other", title="x", text="apple violin")], other.encode_document)
    second.save()  # as many documents again, but not the same ones
    with pytest.raises(InputError, match=r"ids differ at \('d0', 'd0-other'\)"):
        main.link_fusion(second.folder)
    assert main.manifest.fusion is None
    main.close()
    second.close()
