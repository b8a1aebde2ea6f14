"""Token-level targets: the teacher's state of each token, stored once, and the term that teaches them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from embedkd.distill import DistillConfig, distill, losses
from embedkd.distill.token_targets import TokenTargets, check_student, tokenizer_fingerprint
from embedkd.errors import InputError
from embedkd.models.loading import load_model

from .conftest import BowData
from .test_trainer import bow_config

TEXTS = ["apple river", "a much longer text about a stone bridge over the river", "tiger", "ocean violin castle"]


def test_the_token_loss_is_relative_to_the_teacher_s_norm_and_ignores_padding() -> None:
    teacher = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    real = mask.bool()
    scale = float(teacher[real].pow(2).sum(-1).mean())
    zeros = torch.zeros(2, 5, 8, requires_grad=True)
    assert losses.token_state_loss(zeros, teacher, mask, scale=scale).item() == pytest.approx(1.0, rel=1e-6)
    assert losses.token_state_loss(teacher.clone(), teacher, mask, scale=scale).item() == 0.0

    student = teacher + 0.1 * torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(1))
    noisy = student.clone()
    noisy[0, 3:] = 1e3  # padding: whatever the student writes there counts for nothing
    expected = (student - teacher)[real].pow(2).sum(-1).mean() / scale
    got = losses.token_state_loss(noisy.requires_grad_(), teacher, mask, scale=scale)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    got.backward()
    assert noisy.grad is not None and noisy.grad[0, 3:].abs().sum() == 0 and noisy.grad[0, :3].abs().sum() > 0
    with pytest.raises(ValueError, match="shapes differ"):
        losses.token_state_loss(zeros[:, :4], teacher, mask)


def test_token_targets_are_the_teacher_s_token_states_and_are_computed_once(
    tiny_model_factory: Callable[..., Path], isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    teacher = tiny_model_factory(architecture="mpnet", layers=4, seed=3)
    identity = {"name": "tiny", "fingerprint": "f" * 64}
    targets = TokenTargets.for_texts(teacher, TEXTS, identity=identity, max_length=8, precision="fp32", device="cpu")
    model = load_model(teacher, device="cpu")
    model.max_seq_length = 8
    model.eval()
    rows = targets.rows(TEXTS)
    for text, row in zip(TEXTS, rows, strict=True):
        features = model.preprocess([text])
        with torch.inference_mode():
            own = model[0](features)["token_embeddings"][0].numpy()
        stored = np.asarray(targets.states[targets.offsets[row] : targets.offsets[row + 1]], dtype=np.float32)
        assert stored.shape == own.shape and stored.shape[0] <= 8  # cut at the training length
        np.testing.assert_allclose(stored, own, atol=2e-3, rtol=2e-3)  # float16 storage
    tokens = np.concatenate([targets.states[targets.offsets[r] : targets.offsets[r + 1]] for r in rows]).astype(float)
    assert targets.scale == pytest.approx(float((tokens**2).sum(1).mean()), rel=1e-3)

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("the teacher was loaded again")

    monkeypatch.setattr("embedkd.models.loading.load_model", no_model)
    again = TokenTargets.for_texts(teacher, TEXTS[::-1], identity=identity, max_length=8, precision="fp32")
    assert again.folder == targets.folder  # the same set of texts, in any order: read from disk
    with pytest.raises(AssertionError, match="loaded again"):  # another length is another set of targets
        TokenTargets.for_texts(teacher, TEXTS, identity=identity, max_length=6, precision="fp32")
    with pytest.raises(InputError, match="no teacher token states"):
        targets.rows(["a text never encoded"])


def test_the_token_pass_also_caches_the_embedding_of_every_text_it_read_whole(
    tiny_model_factory: Callable[..., Path], isolated_cache: Path
) -> None:
    from embedkd.distill.teacher import Teacher
    from embedkd.distill.token_targets import teacher_token_targets

    teacher = Teacher.from_model(str(tiny_model_factory(architecture="mpnet", layers=4, seed=3)), device="cpu")
    targets = teacher_token_targets(teacher, TEXTS, max_length=8, progress=False)
    lengths = np.diff(targets.offsets)[targets.rows(TEXTS)]
    whole = [t for t, n in zip(TEXTS, lengths, strict=True) if n < 8]
    cut = [t for t, n in zip(TEXTS, lengths, strict=True) if n == 8]
    assert whole and cut  # the long text is cut at 8 tokens: its embedding needs the teacher's full length
    cache = teacher.cache_for("query")
    assert all(t in cache for t in whole) and not any(t in cache for t in cut)
    assert teacher.cache_for("document").folder == cache.folder  # no prompts: one cache for both roles
    own = teacher.encoder().encode(whole, role="query")  # the teacher's own path, cache bypassed
    np.testing.assert_allclose(cache.get(whole), own, atol=2e-3)  # float16 storage
    np.testing.assert_allclose(teacher.embeddings(whole, role="query"), own, atol=2e-3)


@pytest.fixture
def tiny_targets(tiny_model_factory: Callable[..., Path], isolated_cache: Path) -> tuple[Path, TokenTargets]:
    """A tiny MPNet teacher and its token states for TEXTS at 16 tokens."""
    teacher = tiny_model_factory(architecture="mpnet", layers=4, seed=3)
    identity = {"name": "tiny", "fingerprint": "0" * 64}
    return teacher, TokenTargets.for_texts(teacher, TEXTS, identity=identity, max_length=16, precision="fp32")


def test_the_targets_of_a_batch_line_up_with_the_student_s_real_tokens(
    tiny_targets: tuple[Path, TokenTargets],
) -> None:
    teacher, targets = tiny_targets
    model = load_model(teacher, device="cpu")
    model.max_seq_length = 16
    model.eval()
    with torch.inference_mode():
        features = model(model.preprocess(TEXTS[:3]))
    mask = features["attention_mask"].bool()
    flat = targets.gather(targets.rows(TEXTS[:3]), mask.sum(dim=1).tolist())
    assert flat.dtype == torch.float16 and flat.shape == (int(mask.sum()), targets.dimension)
    # the same model is its own teacher: its real tokens, flattened in order, are the targets
    torch.testing.assert_close(flat.float(), features["token_embeddings"][mask], atol=3e-3, rtol=3e-3)
    assert targets.loss(dict(features), targets.rows(TEXTS[:3])).item() < 1e-5
    padded = torch.zeros((*mask.shape, targets.dimension))
    padded[mask] = flat.float()
    flat_loss = losses.token_state_loss(features["token_embeddings"][mask], flat.float(), scale=targets.scale)
    padded_loss = losses.token_state_loss(features["token_embeddings"], padded, mask, scale=targets.scale)
    assert flat_loss.item() == pytest.approx(padded_loss.item(), rel=1e-6, abs=1e-9)
    with pytest.raises(InputError, match="teacher's tokenizer and the same training length"):
        targets.gather(targets.rows(TEXTS[:3]), [2, 2, 2])  # a student that reads other tokens


def test_only_a_student_with_the_teacher_s_tokens_and_width_can_learn_them(
    tiny_model_factory: Callable[..., Path], tiny_targets: tuple[Path, TokenTargets]
) -> None:
    teacher, targets = tiny_targets
    check_student(load_model(teacher, device="cpu"), targets)
    with pytest.raises(InputError, match="as wide as the teacher"):
        check_student(load_model(tiny_model_factory(hidden=16), device="cpu"), targets)
    other = load_model(teacher, device="cpu")
    same = tokenizer_fingerprint(other.tokenizer)
    other.tokenizer.add_tokens(["zzqxword"])
    assert tokenizer_fingerprint(other.tokenizer) != same
    with pytest.raises(InputError, match="teacher's tokenizer"):
        check_student(other, targets)


def _token_error(model: torch.nn.Module, targets: TokenTargets, texts: list[str]) -> float:
    model.eval()
    with torch.inference_mode():
        out = model(model.preprocess(texts))  # type: ignore[operator]
    return targets.loss(dict(out), targets.rows(texts)).item()


def test_the_token_term_brings_a_cut_student_s_token_states_to_the_teacher_s(
    bow_teacher: BowData, tiny_model_factory: Callable[..., Path], tmp_path: Path, isolated_cache: Path
) -> None:
    teacher = tiny_model_factory(architecture="mpnet", layers=4, seed=3, dropout=0.0)
    common = dict(
        teacher=str(teacher), teacher_embeddings=[], teacher_texts=[], data=[bow_teacher.texts_path],
        max_steps=40, eval_every=40, max_seq_length=16, freeze_embeddings=True,
    )  # fmt: skip
    plain = distill(bow_config(bow_teacher, Path("teacher"), tmp_path / "plain", **common))
    taught = distill(bow_config(bow_teacher, Path("teacher"), tmp_path / "tokens", token_weight=1.0, **common))
    folders = list((isolated_cache / "token_targets").iterdir())
    assert len(folders) == 1  # one set of targets for the run's texts, at its training length
    targets = TokenTargets(folders[0])
    assert targets.manifest["max_length"] == 16 and targets.manifest["texts"] == len(bow_teacher.texts)
    texts = bow_teacher.texts[:64]
    # the same seed and steps: only the token term differs, and it halves the token error at least
    assert _token_error(taught.model, targets, texts) < 0.5 * _token_error(plain.model, targets, texts)
    assert taught.manifest.training["config"]["token_weight"] == 1.0


def test_token_targets_are_refused_where_they_cannot_work(
    bow_teacher: BowData, tiny_model_factory: Callable[..., Path], tmp_path: Path, isolated_cache: Path
) -> None:
    with pytest.raises(InputError, match="black box"):  # precomputed vectors have no token states
        distill(bow_config(bow_teacher, tiny_model_factory(), tmp_path / "a", token_weight=1.0))
    teacher = tiny_model_factory(architecture="mpnet", layers=4, seed=3)
    from_teacher = dict(teacher=str(teacher), teacher_embeddings=[], teacher_texts=[], data=[bow_teacher.texts_path])
    with pytest.raises(InputError, match="as wide as the teacher"):
        distill(
            bow_config(bow_teacher, tiny_model_factory(hidden=16), tmp_path / "b", token_weight=1.0, **from_teacher)
        )
    with pytest.raises(InputError, match="layer cache"):
        distill(
            bow_config(bow_teacher, Path("teacher"), tmp_path / "c", token_weight=1.0, frozen_layers=1, **from_teacher)
        )
    with pytest.raises(InputError, match="token_weight"):
        DistillConfig(out=tmp_path / "d", data=[bow_teacher.texts_path], token_weight=-1.0)
