from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from embedkd.distill.layer_cache import LayerCache
from embedkd.models.student import build_student, encoder_layers


@pytest.mark.parametrize("architecture", ["bert", "mpnet"])
def test_cached_lower_layers_give_the_full_forward(tiny_model_factory, architecture: str) -> None:
    model, _ = build_student(str(tiny_model_factory(layers=3, architecture=architecture)), teacher_dimension=24)
    model.eval()
    if architecture == "mpnet":  # attention strong enough that leaving out the position bias would show
        encoder = model[0].auto_model.encoder
        torch.nn.init.normal_(encoder.relative_attention_bias.weight, std=10.0)
        with torch.no_grad():
            for layer in encoder.layer:
                layer.attention.attn.v.weight.mul_(30)
                layer.attention.attn.o.weight.mul_(30)
    texts = ["apple", "a much longer sentence about rivers and tigers", "tiger river"]
    cache = LayerCache(model, texts, frozen=2, device="cpu", progress=False)
    assert cache.lengths() == [len(ids) for ids in model.tokenizer(texts)["input_ids"]]
    with torch.no_grad():
        got = torch.nn.functional.normalize(cache.forward(model, [0, 1, 2]), dim=-1)
        want = model.encode(texts, convert_to_tensor=True, normalize_embeddings=True)
    torch.testing.assert_close(got, want, atol=5e-3, rtol=0)  # float16 storage of the cached states


def test_only_the_layers_above_the_frozen_ones_train(tiny_model_factory) -> None:
    model, _ = build_student(str(tiny_model_factory(layers=3)), teacher_dimension=24)
    LayerCache(model, ["apple", "tiger"], frozen=2, device="cpu", progress=False)
    layers = encoder_layers(model[0])
    assert not any(p.requires_grad for layer in list(layers)[:2] for p in layer.parameters())
    assert all(p.requires_grad for p in layers[2].parameters())
    assert not any(p.requires_grad for p in model[0].auto_model.embeddings.parameters())


def test_a_stored_cache_is_reused_only_under_the_same_key(tiny_model_factory, tmp_path, monkeypatch) -> None:
    model, _ = build_student(str(tiny_model_factory(layers=3)), teacher_dimension=24)
    model.eval()
    texts = ["apple", "a much longer sentence about rivers and tigers", "tiger river"]
    store = tmp_path / "store"

    def cache(items: list[str], precision: str = "fp32") -> LayerCache:
        return LayerCache(model, items, frozen=2, device="cpu", progress=False, store=store, precision=precision)

    first = cache(texts)
    assert (store / "hidden.f16.npy").is_file()
    computed: list[int] = []
    real = LayerCache._compute

    def counting(self: LayerCache, *args: object, **kwargs: object) -> None:
        computed.append(1)
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(LayerCache, "_compute", counting)
    with torch.no_grad():  # training moves the layer above the frozen ones: its outputs stay valid
        encoder_layers(model[0])[2].output.dense.weight.add_(1.0)
    again = cache(texts)
    assert computed == []
    assert again.lengths() == first.lengths()
    with torch.no_grad():
        torch.testing.assert_close(again.forward(model, [0, 1, 2]), first.forward(model, [0, 1, 2]))
    for items, precision in ((texts + ["new"], "fp32"), (texts[::-1], "fp32"), (texts, "bf16")):
        computed.clear()
        cache(items, precision)
        assert computed == [1], (items, precision)
    computed.clear()
    cache(texts)  # the previous key again: the store holds only the latest
    with torch.no_grad():  # a frozen layer that changed is a different cache
        encoder_layers(model[0])[0].output.dense.weight.add_(1.0)
    cache(texts)
    assert computed == [1, 1]


def test_an_unreadable_store_is_computed_again(tiny_model_factory, tmp_path) -> None:
    model, _ = build_student(str(tiny_model_factory(layers=3)), teacher_dimension=24)
    texts = ["apple", "tiger river"]
    store = tmp_path / "store"
    LayerCache(model, texts, frozen=2, device="cpu", progress=False, store=store)
    (store / "offsets.npy").write_bytes(b"not numpy")
    cache = LayerCache(model, texts, frozen=2, device="cpu", progress=False, store=store)
    assert cache.lengths() == [len(ids) for ids in model.tokenizer(texts)["input_ids"]]
    assert LayerCache(model, texts, frozen=2, device="cpu", progress=False, store=store).lengths() == cache.lengths()


def test_a_store_that_cannot_be_written_only_warns(tiny_model_factory, tmp_path, monkeypatch, caplog) -> None:
    model, _ = build_student(str(tiny_model_factory(layers=3)), teacher_dimension=24)

    def full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np.lib.format, "write_array_header_1_0", full)
    cache = LayerCache(model, ["apple", "tiger"], frozen=2, device="cpu", progress=False, store=tmp_path / "store")
    assert len(cache.lengths()) == 2
    assert "could not keep the layer cache" in caplog.text
    assert list(tmp_path.iterdir()) == []  # no store and no half-written folder


def test_a_store_replaces_what_a_killed_save_left(tiny_model_factory, tmp_path) -> None:
    from embedkd.staging import staging_dir

    from ..test_staging import gone_pid

    model, _ = build_student(str(tiny_model_factory(layers=3)), teacher_dimension=24)
    own = staging_dir(tmp_path / "store")
    killed = own.with_name(own.name.replace(f"-{os.getpid()}-", f"-{gone_pid()}-"))
    os.rename(own, killed)  # a run killed while writing its layer cache
    LayerCache(model, ["apple", "tiger"], frozen=2, device="cpu", progress=False, store=tmp_path / "store")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]
