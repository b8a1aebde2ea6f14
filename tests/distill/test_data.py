from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedkd.distill.data import DataOptions, TextKind, load_training_texts, random_crops
from embedkd.errors import InputError

ABSTRACT = (
    "Aspirin lowers the risk of a second heart attack in adults. The effect was measured in 4000 patients "
    "over five years. Bleeding was the main harm."
)


def _beir(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    docs = [
        {"_id": "d1", "title": "Aspirin after infarction", "text": ABSTRACT},
        {"_id": "d2", "title": "", "text": "Short."},
    ]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    return folder


def test_crops_are_spans_of_the_text_and_repeatable() -> None:
    crops = random_crops(ABSTRACT, 6, seed=3)
    assert len(crops) == 6
    words = ABSTRACT.split()
    for crop in crops:
        size = len(crop.split())
        assert 4 <= size <= 12
        assert any(words[i : i + size] == crop.split() for i in range(len(words) - size + 1))
    assert crops == random_crops(ABSTRACT, 6, seed=3)
    assert crops != random_crops(ABSTRACT, 6, seed=4)
    assert random_crops("too short here", 3) == []
    assert random_crops(ABSTRACT, 0) == []


def test_a_beir_folder_gives_each_kind_and_crops_only_when_asked(tmp_path: Path) -> None:
    folder = _beir(tmp_path)
    plain = load_training_texts([folder])
    kinds = {t.kind for t in plain}
    assert kinds == {TextKind.TITLE, TextKind.SENTENCE, TextKind.DOCUMENT}
    assert sum(t.kind is TextKind.SENTENCE for t in plain) == 3  # "Short." is under min_words
    cropped = load_training_texts([folder], DataOptions(crops=3))
    crops = [t.text for t in cropped if t.kind is TextKind.CROP]
    assert 1 <= len(crops) <= 3  # only d1 is long enough; identical spans are deduplicated
    assert all(c in ABSTRACT for c in crops)
    assert {t.text for t in plain} <= {t.text for t in cropped}


def test_each_text_cut_from_a_document_knows_it_and_finds_its_anchor_row(tmp_path: Path) -> None:
    from embedkd.distill.config import DistillConfig
    from embedkd.distill.targets import anchor_texts, source_rows

    folder = _beir(tmp_path)
    queries = tmp_path / "q.txt"
    queries.write_text("a generic question\n")
    texts = load_training_texts([queries, folder], DataOptions(crops=2))
    whole = "Aspirin after infarction " + ABSTRACT
    assert {t.document for t in texts if t.kind is not TextKind.QUERY} == {whole, "Short."}
    config = DistillConfig(out=tmp_path / "out", data=[queries, folder])
    anchors = anchor_texts(config)
    rows = source_rows(texts, anchors)
    for text, row in zip(texts, rows, strict=True):
        assert row == (anchors.index(text.document) if text.document else -1)
    assert (rows == -1).sum() == 1  # the generic question
    # a document that was not sampled as an anchor gives -1
    one_anchor = anchor_texts(DistillConfig(out=tmp_path / "o2", data=[queries, folder], max_anchors=1))
    assert set(source_rows(texts, one_anchor)) <= {0, -1}


def test_a_negative_crop_count_is_refused() -> None:
    with pytest.raises(InputError, match="crops must be 0 or more"):
        DataOptions(crops=-1)


def test_an_index_folder_trains_on_its_documents_as_a_beir_folder_does(tmp_path: Path) -> None:
    import numpy as np

    from embedkd.data.documents import Document
    from embedkd.data.texts import read_texts
    from embedkd.index import build_index
    from embedkd.models.manifest import TeacherRef

    beir = _beir(tmp_path)
    records = [json.loads(line) for line in (beir / "corpus.jsonl").read_text().splitlines()]
    docs = [Document(id=r["_id"], title=r["title"], text=r["text"]) for r in records]
    rng = np.random.default_rng(0)

    def embed(texts: list[str]) -> np.ndarray:
        v = rng.normal(size=(len(texts), 8)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    ref = TeacherRef(name="t", fingerprint="blackbox:t", dimension=8)
    build_index(tmp_path / "index", docs, teacher=ref, embed=embed, progress=False).close()
    from_index = load_training_texts([tmp_path / "index"])
    from_beir = load_training_texts([beir])
    assert sorted((t.text, t.kind, t.document) for t in from_index) == sorted(
        (t.text, t.kind, t.document) for t in from_beir
    )
    assert {t.source for t in from_index} == {str(tmp_path / "index")}
    assert sorted(read_texts(tmp_path / "index")) == sorted(read_texts(beir))
    (tmp_path / "plain").mkdir()
    with pytest.raises(InputError, match="neither a BEIR folder .* nor an embedkd index"):
        load_training_texts([tmp_path / "plain"])
