"""GPU paths: run with CUDA present (`pytest -m gpu`); skipped on CPU-only machines such as CI."""

from __future__ import annotations

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
