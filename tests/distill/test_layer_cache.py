from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from embedkd.distill.layer_cache import LayerCache
from embedkd.distill.layer_store import LayerStore, store_summaries
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


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many texts each LayerCache computed (rather than read from its store)."""
    computed: list[int] = []
    real = LayerCache._compute

    def counting(self: LayerCache, model: object, texts: object, indices: list[int], **kwargs: object) -> None:
        computed.append(len(indices))
        real(self, model, texts, indices, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(LayerCache, "_compute", counting)
    return computed


def test_the_store_is_shared_per_text_by_runs_of_the_same_frozen_layers(
    tiny_model_factory, tmp_path, monkeypatch
) -> None:
    model, _ = build_student(str(tiny_model_factory(layers=3)), teacher_dimension=24)
    model.eval()
    texts = ["apple", "a much longer sentence about rivers and tigers", "tiger river"]
    root = tmp_path / "layers"

    def cache(items: list[str], precision: str = "fp32") -> LayerCache:
        store = LayerStore.for_model(model, frozen=2, precision=precision, root=root)
        return LayerCache(model, items, frozen=2, device="cpu", progress=False, store=store)

    computed = _counting(monkeypatch)
    first = cache(texts)
    with torch.no_grad():  # training moves the layer above the frozen ones: the stored outputs stay valid
        encoder_layers(model[0])[2].output.dense.weight.add_(1.0)
        want = first.forward(model, [0, 1, 2])
    again = cache(texts[::-1])  # another order, as another seed's or run's text list
    assert computed == [3, 0]
    assert again.lengths() == first.lengths()[::-1]
    with torch.no_grad():
        torch.testing.assert_close(again.forward(model, [2, 1, 0]), want)
    mixed = cache(["new text", texts[1], "new text"])  # only the text no run had is computed, and stored once
    assert computed == [3, 0, 1]
    assert mixed.lengths()[0] == mixed.lengths()[2]
    assert cache(["new text"]).lengths() == mixed.lengths()[:1]
    assert computed == [3, 0, 1, 0]
    assert [s["texts"] for s in store_summaries(root)] == [4]
    cache(texts, "bf16")  # another precision: another store
    with torch.no_grad():  # a frozen layer that changed is another store
        encoder_layers(model[0])[0].output.dense.weight.add_(1.0)
    cache(texts)
    assert computed == [3, 0, 1, 0, 3, 3]
    summaries = store_summaries(root)
    assert sorted(s["texts"] for s in summaries) == [3, 3, 4]
    assert {s["precision"] for s in summaries} == {"fp32", "bf16"}
    assert all(s["bytes"] > 0 and s["frozen"] == 2 for s in summaries)


def test_an_unreadable_segment_is_computed_again(tiny_model_factory, tmp_path, monkeypatch, caplog) -> None:
    model, _ = build_student(str(tiny_model_factory(layers=3)), teacher_dimension=24)
    texts = ["apple", "tiger river"]
    store = LayerStore.for_model(model, frozen=2, precision="fp32", root=tmp_path)
    LayerCache(model, texts, frozen=2, device="cpu", progress=False, store=store)
    [segment] = store.segments()
    (segment / "offsets.npy").write_bytes(b"not numpy")
    computed = _counting(monkeypatch)
    cache = LayerCache(model, texts, frozen=2, device="cpu", progress=False, store=store)
    assert "unreadable" in caplog.text
    assert cache.lengths() == [len(ids) for ids in model.tokenizer(texts)["input_ids"]]
    assert LayerCache(model, texts, frozen=2, device="cpu", progress=False, store=store).lengths() == cache.lengths()
    assert computed == [2, 0]  # the second read found the segment the first one added


def test_a_store_that_cannot_be_written_only_warns(tiny_model_factory, tmp_path, monkeypatch, caplog) -> None:
    model, _ = build_student(str(tiny_model_factory(layers=3)), teacher_dimension=24)

    def full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np.lib.format, "write_array_header_1_0", full)
    store = LayerStore(tmp_path / "store")
    cache = LayerCache(model, ["apple", "tiger"], frozen=2, device="cpu", progress=False, store=store)
    assert len(cache.lengths()) == 2
    assert "could not add to the layer store" in caplog.text
    assert store.segments() == []
    assert [p.name for p in (tmp_path / "store").iterdir()] == ["store.json"]  # no half-written segment


def test_a_segment_replaces_what_a_killed_writer_left(tiny_model_factory, tmp_path) -> None:
    from embedkd.staging import staging_dir

    from ..test_staging import gone_pid

    model, _ = build_student(str(tiny_model_factory(layers=3)), teacher_dimension=24)
    store = LayerStore(tmp_path / "store")
    (tmp_path / "store").mkdir()
    own = staging_dir(tmp_path / "store" / "segment")
    killed = own.with_name(own.name.replace(f"-{os.getpid()}-", f"-{gone_pid()}-"))
    (own / "segment.json").write_text("{}")  # killed after writing everything, before the rename
    os.rename(own, killed)  # a run killed while writing its segment
    assert store.segments() == []
    LayerCache(model, ["apple", "tiger"], frozen=2, device="cpu", progress=False, store=store)
    assert [p.name for p in (tmp_path / "store").iterdir() if p.is_dir()] == [store.segments()[0].name]


def test_embedkd_layers_dir_moves_the_stores(tiny_model_factory, tmp_path, monkeypatch) -> None:
    model, _ = build_student(str(tiny_model_factory(layers=3)), teacher_dimension=24)
    monkeypatch.setenv("EMBEDKD_LAYERS_DIR", str(tmp_path / "big-disk"))
    store = LayerStore.for_model(model, frozen=2, precision="fp32")
    LayerCache(model, ["apple"], frozen=2, device="cpu", progress=False, store=store)
    assert store.folder.parent == tmp_path / "big-disk"
    assert [s["texts"] for s in store_summaries()] == [1]


def test_purge_layers_removes_the_stores_and_nothing_else(tiny_model_factory, tmp_path, monkeypatch, run_cli) -> None:
    model, _ = build_student(str(tiny_model_factory(layers=3)), teacher_dimension=24)
    monkeypatch.setenv("EMBEDKD_LAYERS_DIR", str(tmp_path / "layers"))
    for precision in ("fp32", "bf16"):
        store = LayerStore.for_model(model, frozen=2, precision=precision)
        LayerCache(model, ["apple", "tiger"], frozen=2, device="cpu", progress=False, store=store)
    (tmp_path / "layers" / "notes").mkdir()  # not a store
    (tmp_path / "layers" / "notes" / "keep.txt").write_text("mine")
    assert len(store_summaries()) == 2
    code, out, _ = run_cli("cache", "purge-layers")
    assert code == 0 and "removed 2 layer store(s)" in out
    assert store_summaries() == []
    assert (tmp_path / "layers" / "notes" / "keep.txt").read_text() == "mine"
