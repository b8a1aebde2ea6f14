"""CPU inference backends for a sentence-transformers folder: ONNX Runtime and OpenVINO, optionally int8.

Only the transformer runs on the backend; pooling, the student's projection and normalisation stay in
torch (they are a few small matrix products), as in sentence-transformers' own ``backend="onnx"``. The
files follow its layout, inside the model folder:

- ``onnx/model.onnx`` (inputs ``input_ids``, ``attention_mask``, [``token_type_ids``]; output
  ``last_hidden_state``) and ``onnx/model_qint8.onnx`` (dynamic int8 quantisation of the weights);
- ``openvino/openvino_model.xml`` (+ ``.bin``), converted from the ONNX graph, and
  ``openvino/openvino_model_qint8.xml`` from the int8 one.

sentence-transformers exports through ``optimum``, which pins ``transformers<5`` and cannot be installed
beside this project's stack, so the graph is exported with ``torch.onnx.export`` and quantised with ONNX
Runtime's own ``quantize_dynamic`` (the call optimum's int8 helper makes). Each export records the weights
fingerprint it came from (``embedkd-export.json`` beside it); a stale export is replaced, never reused.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from embedkd.errors import InputError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["Backend", "Quantize", "attach_backend", "backend_label", "ensure_export", "export_file"]

logger = logging.getLogger(__name__)

_SIDECAR = "embedkd-export.json"
_INSTALL_HINT = "install the CPU backends with: pip install 'embedkd[backends]' (onnxruntime, onnx, openvino)"


class Backend(str, Enum):
    TORCH = "torch"
    ONNX = "onnx"
    OPENVINO = "openvino"


class Quantize(str, Enum):
    NONE = "none"
    INT8 = "int8"


def backend_label(backend: Backend | str, quantize: Quantize | str = Quantize.NONE) -> str:
    """``torch``, ``onnx``, ``onnx-int8``, ``openvino``, ``openvino-int8``: the key under which a
    student's ``embedkd.json`` records a backend's measured alignment."""
    backend, quantize = Backend(backend), Quantize(quantize)
    return backend.value if quantize is Quantize.NONE else f"{backend.value}-{quantize.value}"


def export_file(folder: Path, backend: Backend | str, quantize: Quantize | str = Quantize.NONE) -> Path:
    backend, quantize = Backend(backend), Quantize(quantize)
    suffix = "_qint8" if quantize is Quantize.INT8 else ""
    if backend is Backend.ONNX:
        return Path(folder) / "onnx" / f"model{suffix}.onnx"
    if backend is Backend.OPENVINO:
        return Path(folder) / "openvino" / f"openvino_model{suffix}.xml"
    raise InputError("the torch backend has no exported file")


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError as exc:
        raise InputError(f"the {module} package is missing: {_INSTALL_HINT}") from exc


def _is_current(path: Path, fingerprint: str) -> bool:
    sidecar = path.parent / _SIDECAR
    if not path.is_file() or not sidecar.is_file():
        return False
    try:
        return json.loads(sidecar.read_text()).get(path.name) == fingerprint
    except (OSError, ValueError):
        return False


def _record(path: Path, fingerprint: str) -> None:
    sidecar = path.parent / _SIDECAR
    try:
        data = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    except ValueError:
        data = {}
    data[path.name] = fingerprint
    tmp = sidecar.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, sidecar)


class _LastHiddenState(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        names = self.input_names
        return self.model(**dict(zip(names, inputs, strict=True)), return_dict=True).last_hidden_state

    input_names: list[str] = []


def _input_names(model: SentenceTransformer) -> list[str]:
    features = model.preprocess(["probe"])
    return [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in features]


def _export_onnx(model: SentenceTransformer, target: Path) -> None:
    _require("onnx")
    names = _input_names(model)
    hf_model: Any = model[0].model
    wrapper = _LastHiddenState(hf_model).eval()
    wrapper.input_names = names
    features = model.preprocess(["a probe sentence for export", "short"])
    inputs = tuple(features[n].cpu() for n in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"last_hidden_state": {0: "batch", 1: "sequence"}}
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp, torch.inference_mode(False), torch.no_grad():
        staged = Path(tmp) / target.name
        torch.onnx.export(
            wrapper,
            inputs,
            str(staged),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
        os.replace(staged, target)


def _quantize_onnx(source: Path, target: Path) -> None:
    _require("onnxruntime")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        staged = Path(tmp) / target.name
        quantize_dynamic(str(source), str(staged), weight_type=QuantType.QInt8, per_channel=True)
        os.replace(staged, target)


def _convert_openvino(source: Path, target: Path) -> None:
    ov = _require("openvino")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        staged = Path(tmp) / target.name
        ov.save_model(ov.convert_model(str(source)), str(staged), compress_to_fp16=False)
        for produced in Path(tmp).iterdir():
            os.replace(produced, target.parent / produced.name)


_EXPORT_LOCK = threading.Lock()


def ensure_export(
    model: SentenceTransformer, folder: Path, fingerprint: str, backend: Backend | str, quantize: Quantize | str
) -> Path:
    """The exported file for ``backend``/``quantize``, exported now if missing or made from other weights."""
    backend, quantize = Backend(backend), Quantize(quantize)
    target = export_file(folder, backend, quantize)
    with _EXPORT_LOCK:
        if _is_current(target, fingerprint):
            return target
        onnx_fp32 = export_file(folder, Backend.ONNX)
        if not _is_current(onnx_fp32, fingerprint):
            logger.info("exporting %s to ONNX (%s)", folder, onnx_fp32)
            _export_onnx(model, onnx_fp32)
            _record(onnx_fp32, fingerprint)
        onnx_source = onnx_fp32
        if quantize is Quantize.INT8:
            onnx_source = export_file(folder, Backend.ONNX, Quantize.INT8)
            if not _is_current(onnx_source, fingerprint):
                logger.info("quantising %s to int8", onnx_fp32)
                _quantize_onnx(onnx_fp32, onnx_source)
                _record(onnx_source, fingerprint)
        if backend is Backend.OPENVINO and not _is_current(target, fingerprint):
            logger.info("converting %s to OpenVINO", onnx_source)
            _convert_openvino(onnx_source, target)
            _record(target, fingerprint)
        return target


class _Runner:
    """One compiled backend model: numpy inputs by name in, ``last_hidden_state`` out."""

    def __init__(self, path: Path, backend: Backend, threads: int | None, busy_wait: bool = True) -> None:
        self.backend = backend
        try:
            self._load(path, backend, threads, busy_wait)
        except InputError:  # the runtime is not installed: its install hint
            raise
        except Exception as exc:  # noqa: BLE001 - each runtime raises its own types for a damaged file
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(
                f"the exported model {path} cannot be loaded ({reason}); delete {path.parent} and the next load "
                "exports it again"
            ) from exc

    def _load(self, path: Path, backend: Backend, threads: int | None, busy_wait: bool) -> None:
        if backend is Backend.ONNX:
            ort = _require("onnxruntime")
            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
            if not busy_wait:  # idle worker threads sleep instead of spinning, leaving the cores to others
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            self.input_names = [i.name for i in self._session.get_inputs()]
        else:
            ov = _require("openvino")
            config = {"INFERENCE_NUM_THREADS": threads} if threads else {}
            self._compiled = ov.Core().compile_model(str(path), "CPU", config)
            self.input_names = [port.any_name for port in self._compiled.inputs]

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        if self.backend is Backend.ONNX:
            return np.asarray(self._session.run(["last_hidden_state"], feeds)[0])
        request = self._compiled.create_infer_request()  # one per call: safe across threads
        return np.asarray(request.infer(feeds)[self._compiled.output(0)])


class BackendTransformer(torch.nn.Module):
    """Stands in for a sentence-transformers ``Transformer`` module: tokenisation and settings come from
    the original module, the forward pass from the exported model."""

    def __init__(self, inner: torch.nn.Module, runner: _Runner) -> None:
        super().__init__()
        self.inner = inner
        self.runner = runner

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["inner"], name)

    @property
    def max_seq_length(self) -> int:
        inner: Any = self._modules["inner"]
        return int(inner.max_seq_length)

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        inner: Any = self._modules["inner"]
        inner.max_seq_length = value

    def forward(self, features: dict[str, Any], **_: Any) -> dict[str, Any]:
        feeds = {n: features[n].detach().cpu().numpy().astype(np.int64) for n in self.runner.input_names}
        hidden = self.runner(feeds)
        device = features["input_ids"].device
        features["token_embeddings"] = torch.from_numpy(hidden).to(device=device, dtype=torch.float32)
        return features


def attach_backend(
    model: SentenceTransformer,
    path: Path,
    backend: Backend | str,
    *,
    threads: int | None = None,
    busy_wait: bool = True,
) -> None:
    """Run ``model``'s transformer on the exported file from now on (in place).

    ``busy_wait=False`` makes ONNX Runtime's idle threads sleep rather than spin between calls: slower for a
    lone batch job, better for a server whose HTTP stack shares the same few cores."""
    backend = Backend(backend)
    key = next(iter(model._modules))
    inner: Any = model._modules[key]
    if isinstance(inner, BackendTransformer):
        inner = inner._modules["inner"]
    model._modules[key] = BackendTransformer(inner, _Runner(path, backend, threads, busy_wait))
