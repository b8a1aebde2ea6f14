"""ONNX Runtime and OpenVINO backends: export into the model folder, reproduce torch, guard alignment."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from embedkd.errors import AlignmentError
from embedkd.models.backends import export_file
from embedkd.models.encoder import Encoder
from embedkd.models.info import fingerprint
from embedkd.models.manifest import Alignment, StudentManifest

pytest.importorskip("onnxruntime")
TEXTS = ["apple orchard harvest", "river delta water flow", "violin concert music hall", "a much longer text " * 5]


@pytest.fixture
def model_dir(tiny_model_factory: Callable[..., Path], tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_factory(hidden=32, seed=4), folder)
    return folder


@pytest.mark.parametrize(("backend", "quantize", "floor"), [("onnx", "none", 0.9999), ("openvino", "none", 0.9999)])
def test_exported_backend_reproduces_torch(model_dir: Path, backend: str, quantize: str, floor: float) -> None:
    if backend == "openvino":
        pytest.importorskip("openvino")
    before = fingerprint(model_dir)
    reference = Encoder.load(model_dir, device="cpu").encode_query(TEXTS)
    exported = Encoder.load(model_dir, device="cpu", backend=backend, quantize=quantize)
    assert exported.backend == backend
    out = exported.encode_query(TEXTS)
    assert out.shape == reference.shape and np.all((out * reference).sum(axis=1) > floor)
    assert export_file(model_dir, backend, quantize).is_file()
    assert fingerprint(model_dir) == before  # the export does not change the model's identity
    # sentence-transformers' layout: the transformer's last_hidden_state, loadable by onnxruntime directly
    if backend == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(model_dir / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
        assert [o.name for o in session.get_outputs()] == ["last_hidden_state"]


def test_a_server_encoder_can_let_its_onnx_threads_sleep(model_dir: Path) -> None:
    spinning = Encoder.load(model_dir, device="cpu", backend="onnx")
    sleeping = Encoder.load(model_dir, device="cpu", backend="onnx", busy_wait=False)

    def spin_setting(encoder: Encoder) -> str:
        runner = next(iter(encoder.model._modules.values())).runner
        try:
            return runner._session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")
        except RuntimeError:  # not set: ONNX Runtime's default
            return "default"

    assert spin_setting(sleeping) == "0"
    assert spin_setting(spinning) == "default"  # ONNX Runtime's own default: spin
    np.testing.assert_allclose(sleeping.encode_query(TEXTS), spinning.encode_query(TEXTS), atol=1e-6)


def test_int8_is_close_and_every_variant_has_its_own_cache_key(model_dir: Path, isolated_cache: Path) -> None:
    fp32 = Encoder.load(model_dir, device="cpu")
    int8 = Encoder.load(model_dir, device="cpu", backend="onnx", quantize="int8")
    assert int8.backend == "onnx-int8" and (model_dir / "onnx" / "model_qint8.onnx").is_file()
    cosine = (fp32.encode_query(TEXTS) * int8.encode_query(TEXTS)).sum(axis=1)
    assert np.all(cosine > 0.9), cosine
    assert fp32.cache(role="query").folder != int8.cache(role="query").folder
    # a teacher around the int8 encoder reads and fills the int8 cache, never the fp32 one
    from embedkd.distill import Teacher

    teacher = Teacher.from_encoder(int8)
    assert teacher.cache.folder == int8.cache().folder != fp32.cache().folder
    teacher.encode_document(TEXTS)
    assert teacher.cache.missing(TEXTS) == [] and set(fp32.cache().missing(TEXTS)) == set(TEXTS)


def test_a_stale_export_is_replaced_when_the_weights_change(model_dir: Path, tiny_model_factory) -> None:
    Encoder.load(model_dir, device="cpu", backend="onnx")
    first = (model_dir / "onnx" / "model.onnx").read_bytes()
    other = tiny_model_factory(hidden=32, seed=5)  # same architecture, other weights
    shutil.copy(other / "model.safetensors", model_dir / "model.safetensors")
    reference = Encoder.load(model_dir, device="cpu").encode_query(TEXTS)
    out = Encoder.load(model_dir, device="cpu", backend="onnx").encode_query(TEXTS)
    assert (model_dir / "onnx" / "model.onnx").read_bytes() != first
    np.testing.assert_allclose(out, reference, atol=1e-4)
    sidecar = json.loads((model_dir / "onnx" / "embedkd-export.json").read_text())
    assert sidecar["model.onnx"] == fingerprint(model_dir)


def test_a_damaged_export_is_a_clear_error_and_deleting_it_exports_again(model_dir: Path) -> None:
    from embedkd.errors import InputError

    Encoder.load(model_dir, device="cpu", backend="onnx")
    exported = model_dir / "onnx" / "model.onnx"
    exported.write_bytes(exported.read_bytes()[:1000])  # truncated: an onnxruntime traceback before
    with pytest.raises(InputError, match=r"model.onnx cannot be loaded .*delete .*onnx and the next load"):
        Encoder.load(model_dir, device="cpu", backend="onnx")
    shutil.rmtree(model_dir / "onnx")
    out = Encoder.load(model_dir, device="cpu", backend="onnx").encode_query(TEXTS)
    np.testing.assert_allclose(out, Encoder.load(model_dir, device="cpu").encode_query(TEXTS), atol=1e-4)


def test_measure_backend_records_it_and_the_retriever_applies_the_rule(
    model_dir: Path, tiny_model_factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from embedkd.distill.teacher import Teacher
    from embedkd.evaluation.backends import measure_backend
    from embedkd.index import build_index
    from embedkd.retrieval import RetrievalMode, check_alignment

    teacher = Teacher.from_model(str(tiny_model_factory(hidden=32, seed=1)))
    StudentManifest(teacher=teacher.ref, base="tiny", alignment=Alignment(0.9, 0.2, 10, "test")).write(model_dir)
    from embedkd.data.documents import Document

    docs = [Document(id=str(i), title="", text=t) for i, t in enumerate(TEXTS)]
    index = build_index(
        tmp_path / "index",
        docs,
        teacher=teacher.ref,
        embed=lambda t: teacher.embeddings(t, progress=False),
        progress=False,
    )

    onnx = Encoder.load(model_dir, device="cpu", backend="onnx")
    with caplog.at_level(logging.WARNING):
        check_alignment(onnx, index, RetrievalMode.ASYM)  # never measured: a warning, not a refusal
    assert "never measured" in caplog.text

    result = measure_backend(model_dir, "onnx", texts=TEXTS * 3)
    assert result["cosine_to_torch_fp32"] > 0.9999 and "mean_cosine" in result and "torch_mean_cosine" in result
    manifest = StudentManifest.read(model_dir)
    assert manifest is not None and manifest.backends["onnx"] == result
    check_alignment(Encoder.load(model_dir, device="cpu", backend="onnx"), index, RetrievalMode.ASYM)

    manifest.backends["onnx"]["cosine_to_torch_fp32"] = 0.5  # a broken export is refused
    manifest.write(model_dir)
    with pytest.raises(AlignmentError, match="export is broken"):
        check_alignment(Encoder.load(model_dir, device="cpu", backend="onnx"), index, RetrievalMode.ASYM)
    index.close()


def test_on_an_exported_backend_torch_runs_pooling_on_one_thread(model_dir: Path, monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # as on a 2-core machine, whatever this one has
    calls: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    onnx = Encoder.load(model_dir, device="cpu", backend="onnx")
    calls.clear()
    onnx.encode_query(TEXTS)
    onnx.embed_tokens(onnx.tokenize(TEXTS, role="query"))
    assert calls == [1, 2, 1, 2]  # one thread during each call, then the setting as it was
    plain = Encoder.load(model_dir, device="cpu")
    calls.clear()
    plain.encode_query(TEXTS)
    plain.embed_tokens(plain.tokenize(TEXTS, role="query"))
    assert calls == []  # a torch model keeps every thread
