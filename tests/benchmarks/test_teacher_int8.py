"""The teacher-int8 benchmark's quantiser: NNCF static int8 of an OpenVINO export, with fp32 exceptions."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("openvino")
pytest.importorskip("nncf")

from benchmarks.teacher_int8 import quantize  # noqa: E402
from embedkd.models.backends import Backend, attach_backend, export_file  # noqa: E402
from embedkd.models.encoder import Encoder  # noqa: E402

TEXTS = ["apple orchard harvest", "river delta water flow", "violin concert music hall", "a longer text " * 6]
CALIBRATION = [f"calibration text number {i} about {w}" for i, w in enumerate(["fruit", "rivers", "music", "stone"])]


def _fake_quantizers(path: Path) -> list[str]:
    import openvino as ov

    return [
        op.get_friendly_name()
        for op in ov.Core().read_model(str(path)).get_ops()
        if op.get_type_name() == "FakeQuantize"
    ]


def test_static_int8_quantises_the_matmuls_and_keeps_the_named_ones_in_fp32(
    tiny_model_factory: Callable[..., Path], tmp_path: Path
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_factory(hidden=32, seed=4), folder)
    reference = Encoder.load(folder, device="cpu").encode_query(TEXTS)
    openvino = Encoder.load(folder, device="cpu", backend="openvino")
    source = export_file(folder, Backend.OPENVINO)

    every = tmp_path / "every.xml"
    quantize(source, every, openvino, CALIBRATION, 0.8, [])
    kept = tmp_path / "kept.xml"
    quantize(source, kept, openvino, CALIBRATION, 0.8, [r".*/output/dense/MatMul"])

    quantised, with_exceptions = _fake_quantizers(every), _fake_quantizers(kept)
    assert quantised, "nothing was quantised"
    assert len(with_exceptions) < len(quantised)  # the FFN down-projections' inputs stay fp32
    encoder = Encoder.load(folder, device="cpu", backend="openvino")
    attach_backend(encoder.model, every, Backend.OPENVINO, threads=torch.get_num_threads())
    out = encoder.encode_query(TEXTS)
    assert out.shape == reference.shape
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-4)
    assert float((out * reference).sum(axis=1).min()) > 0.9  # int8, but still the same model
