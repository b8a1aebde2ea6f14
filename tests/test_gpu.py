"""GPU paths: run with CUDA present (`pytest -m gpu`); skipped on CPU-only machines such as CI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from embedkd.index import FaissIndex, IndexParams

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("kind", ["flat", "ivf-flat", "sq8"])
def test_gpu_search_matches_cpu(kind: str) -> None:
    rng = np.random.default_rng(0)
    docs = rng.standard_normal((5000, 64)).astype(np.float32)
    queries = rng.standard_normal((50, 64)).astype(np.float32)
    params = IndexParams(kind=kind, nlist=32, nprobe=32)  # type: ignore[arg-type]  # nprobe = nlist: exhaustive
    from embedkd.index.faiss import faiss_has_gpu

    if kind != "flat" and not faiss_has_gpu():
        pytest.skip("faiss-cpu is installed: only flat has a GPU path (torch); `make install-gpu` for the rest")
    cpu = FaissIndex(64, params, device="cpu")
    cpu.build(docs, np.arange(5000))
    gpu = FaissIndex(64, params, device="cuda")
    gpu.build(docs, np.arange(5000))
    cpu_scores, cpu_ids = cpu.search(queries, 10)
    gpu_scores, gpu_ids = gpu.search(queries, 10)
    # The search really ran on the GPU: a faiss GPU copy, or the torch mirror on the device.
    assert gpu._gpu is not None or (gpu._torch_mirror is not None and gpu._torch_mirror[0].is_cuda)
    np.testing.assert_allclose(gpu_scores, cpu_scores, atol=2e-2 if kind == "sq8" else 1e-4)
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(cpu_ids, gpu_ids, strict=True)])
    assert overlap >= (0.9 if kind == "sq8" else 0.999)


@pytest.mark.parametrize("frozen_layers", [None, 0])  # the default (lower layers from the layer cache), none
def test_bf16_training_on_gpu(
    tiny_model_dir: Path,
    tmp_path: Path,
    isolated_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    frozen_layers: int | None,
) -> None:
    from embedkd.distill import DistillConfig, distill
    from embedkd.distill import trainer as trainer_module

    dtypes: list[torch.dtype] = []
    real_batch_loss = trainer_module._Distiller._batch_loss

    # Every step's loss, whether its forward starts from the layer cache or from the tokens, goes through here.
    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        dtypes.append(torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else torch.float32)
        return real_batch_loss(self, *args, **kwargs)

    monkeypatch.setattr(trainer_module._Distiller, "_batch_loss", spy)

    words = ["apples", "rivers", "music", "stone"] * 50
    texts = [f"text {i} about {w}" for i, w in enumerate(words)]
    (tmp_path / "t.txt").write_text("\n".join(texts))
    # A teacher that can be learnt: each text's vector is its word's (plus a little noise).
    rng = np.random.default_rng(0)
    by_word = {w: rng.standard_normal(24) for w in sorted(set(words))}
    teacher = np.stack([by_word[w] + 0.1 * rng.standard_normal(24) for w in words]).astype(np.float32)
    np.save(tmp_path / "t.npy", teacher)
    result = distill(
        DistillConfig(
            out=tmp_path / "s",
            teacher="random-teacher",
            student=str(tiny_model_dir),
            teacher_embeddings=[tmp_path / "t.npy"],
            teacher_texts=[tmp_path / "t.txt"],
            precision="bf16",  # type: ignore[arg-type]
            device="cuda",
            frozen_layers=frozen_layers,
            max_steps=60,
            batch_size=16,
            lr=1e-3,
            head_lr=1e-2,
            eval_every=20,
            eval_texts=40,
            progress=False,
            seed=0,
        )
    )
    assert result.manifest.training["device"].startswith("cuda")
    assert dtypes == [torch.bfloat16] * 60  # every step's forward ran under bf16 autocast
    # and it learnt (the projection starts as a ridge fit, so the first evaluation is already close)
    assert result.history[-1]["mse"] < result.history[0]["mse"], result.history
