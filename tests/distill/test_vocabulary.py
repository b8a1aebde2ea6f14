"""--vocabulary: the student base's whole words as one-word training texts, never held out."""

from __future__ import annotations

from pathlib import Path

import pytest

from embedkd.distill import distill
from embedkd.distill.data import load_training_texts, split_holdout, vocabulary_words
from embedkd.errors import InputError

from .conftest import BowData
from .test_trainer import bow_config


def test_vocabulary_words_keeps_whole_words_of_any_tokenizer_once() -> None:
    tokens = ["##ing", "hello", "Hello", "▁world", "Ġcat", "[CLS]", "<s>", "ab", "x1y", "naïve", "de", "##ly"]
    assert vocabulary_words(tokens) == ["cat", "hello", "naïve", "world"]
    assert vocabulary_words(tokens, min_letters=2) == ["ab", "cat", "de", "hello", "naïve", "world"]


def test_a_run_trains_on_the_base_vocabulary_and_holds_none_of_it_out(
    bow_teacher: BowData, tiny_model_dir: Path, tiny_model_factory, tmp_path: Path, isolated_cache: Path
) -> None:
    teacher = tiny_model_factory(hidden=32, seed=1)  # a model, not a black box: it embeds the words
    common = dict(teacher=str(teacher), teacher_embeddings=[], teacher_texts=[], data=[bow_teacher.texts_path])
    common.update(max_steps=4, eval_every=4)
    config = bow_config(bow_teacher, tiny_model_dir, tmp_path / "words", vocabulary=True, **common)
    manifest = distill(config).manifest

    by_kind = manifest.training["data"]["by_kind"]
    given = set(bow_teacher.texts)
    expected = [w for w in vocabulary_words(_minilm_vocab(tiny_model_dir)) if w not in given]
    assert by_kind["word"] == len(expected) > 20_000  # MiniLM-L6's tokenizer: about 21k whole words
    assert manifest.training["data"]["by_source"][f"vocabulary:{tiny_model_dir}"] == len(expected)
    assert manifest.training["config"]["vocabulary"] is True
    # the held-out texts are those the given texts alone give: the alignment measured stays comparable
    given_texts = load_training_texts(config.data, config.data_options)
    _, holdout = split_holdout(given_texts, config.eval_texts, seed=config.seed)
    assert manifest.alignment is not None and manifest.alignment.texts == len(holdout) > 0
    assert set(manifest.alignment.extra["cosine_by_kind"]) == {t.kind.value for t in holdout}


def test_a_black_box_teacher_cannot_have_vocabulary_words(
    bow_teacher: BowData, tiny_model_dir: Path, tmp_path: Path, isolated_cache: Path
) -> None:
    with pytest.raises(InputError, match="black box"):
        distill(bow_config(bow_teacher, tiny_model_dir, tmp_path / "s", vocabulary=True))
    assert not (tmp_path / "s" / "embedkd.json").exists()


def _minilm_vocab(folder: Path) -> list[str]:
    from transformers import AutoTokenizer

    return list(AutoTokenizer.from_pretrained(str(folder)).get_vocab())
