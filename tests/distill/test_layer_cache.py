from __future__ import annotations

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
