"""A loaded embedding model together with its identity (name, folder, fingerprint, student manifest)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from embedkd.device import autocast, resolve_precision, to_device
from embedkd.embedding_cache import EmbeddingCache
from embedkd.errors import InputError
from embedkd.models.info import fingerprint as folder_fingerprint
from embedkd.models.loading import load_model, resolve_model_path
from embedkd.models.manifest import StudentManifest, TeacherRef
from embedkd.models.registry import find_spec

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["Encoder"]


class Encoder:
    """An embedding model that knows who it is.

    ``encode_query`` and ``encode_document`` apply the model's ``query``/``document`` prompts when it
    defines them; every output is L2-normalised float32.
    """

    def __init__(
        self,
        model: SentenceTransformer,
        *,
        name: str,
        path: Path,
        fingerprint: str,
        manifest: StudentManifest | None = None,
        precision: str = "fp32",
        backend: str = "torch",
    ) -> None:
        self.model = model
        self.backend = backend  # torch, onnx, onnx-int8, openvino or openvino-int8 (see models/backends.py)
        # an exported backend fixes its own number format; autocast would only touch pooling and the head
        self.precision = str(resolve_precision(precision if backend == "torch" else "fp32", str(model.device)).value)
        self.name = name
        self.path = path
        self.fingerprint = fingerprint
        self.manifest = manifest
        self._lock = threading.Lock()
        # The fast tokenizer is one Rust object whose truncation settings each call sets: two threads in it at
        # once fail ("Already borrowed"). Held around every use of it (a request thread counting tokens beside
        # the compute thread's batch); inside ``_lock`` in ``encode``, never the other way round.
        self._tokenizer_lock = threading.RLock()

    @classmethod
    def load(
        cls,
        name_or_path: str | os.PathLike[str],
        *,
        device: str | None = None,
        max_seq_length: int | None = None,
        precision: str = "fp32",
        backend: str = "torch",
        quantize: str = "none",
        busy_wait: bool = True,
    ) -> Encoder:
        """Load a model; ``precision`` is fp32, bf16 (autocast), fp16 (CUDA) or auto (bf16 where native).

        ``backend`` ``onnx`` or ``openvino`` (``quantize`` ``int8`` for dynamic int8 weights) runs the
        transformer on an export kept in the model folder, made on first use (``models/backends.py``);
        ``busy_wait=False`` lets ONNX Runtime's idle threads sleep instead of spin (for a server sharing its cores).
        """
        from embedkd.models.backends import Backend, attach_backend, backend_label, ensure_export

        name = str(name_or_path)
        path = resolve_model_path(name)
        model = load_model(path, device=device)
        if max_seq_length:
            model.max_seq_length = max_seq_length
        spec = find_spec(name)
        display = spec.name if spec else (Path(name).name if Path(name).exists() else name)
        weights = folder_fingerprint(path)
        chosen = Backend(backend)
        if chosen is not Backend.TORCH:
            if str(model.device) != "cpu":
                raise InputError(f"the {chosen.value} backend runs on the CPU; pass device='cpu'")
            export = ensure_export(model, path, weights, chosen, quantize)
            attach_backend(model, export, chosen, threads=torch.get_num_threads(), busy_wait=busy_wait)
        return cls(
            model,
            name=display,
            path=path,
            fingerprint=weights,
            manifest=StudentManifest.read(path),
            precision=precision,
            backend=backend_label(chosen, quantize),
        )

    def with_precision(self, precision: str) -> Encoder:
        """This model (the same weights, not a copy) running in another precision; itself if it already does."""
        if resolve_precision(precision, self.device) == self.precision:
            return self
        other = Encoder(
            self.model,
            name=self.name,
            path=self.path,
            fingerprint=self.fingerprint,
            manifest=self.manifest,
            precision=precision,
            backend=self.backend,
        )
        other._lock = self._lock  # one forward at a time on the shared weights
        other._tokenizer_lock = self._tokenizer_lock  # and one tokenizer
        return other

    @property
    def forward_lock(self) -> threading.Lock:
        """Held around every ``encode`` (sentence-transformers' ``encode`` is not re-entrant: it tokenises on
        a shared tokenizer), and around ``embed_tokens`` unless :attr:`concurrent_forwards`."""
        return self._lock

    @property
    def concurrent_forwards(self) -> bool:
        """Whether ``embed_tokens`` may run on several threads at once. Torch modules in inference mode only
        read their weights; the ONNX Runtime and OpenVINO wrappers hold one inference request each."""
        return self.backend == "torch"

    # ------------------------------------------------------------------ facts
    @property
    def variant(self) -> str:
        """How the numbers are made: the precision on torch, else the backend (its own number format).
        Vectors of another variant never share a cache."""
        return self.precision if self.backend == "torch" else self.backend

    @property
    def dimension(self) -> int:
        dim = self.model.get_embedding_dimension()
        if dim is None:
            raise InputError(f"cannot tell the output dimension of {self.name}")
        return int(dim)

    @property
    def max_seq_length(self) -> int | None:
        value = self.model.max_seq_length
        return int(value) if value and value != float("inf") else None  # a static model reads any length

    @property
    def prompts(self) -> dict[str, str]:
        return dict(getattr(self.model, "prompts", None) or {})

    @property
    def device(self) -> str:
        return str(self.model.device)

    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def as_teacher(self) -> TeacherRef:
        return TeacherRef(
            name=self.name,
            fingerprint=self.fingerprint,
            dimension=self.dimension,
            max_seq_length=self.max_seq_length,
            prompts={k: v for k, v in self.prompts.items() if v},
        )

    # ------------------------------------------------------------------ encoding
    def _prompt(self, role: str | None) -> str:
        return self.prompts.get(role, "") if role else ""

    def encode(
        self,
        texts: Sequence[str],
        *,
        role: str | None = None,
        batch_size: int = 64,
        progress: bool = False,
    ) -> np.ndarray:
        """Normalised float32 embeddings; ``role`` is ``"query"``, ``"document"`` or None."""
        prompt = self._prompt(role)
        # one forward at a time per model; sentence-transformers is not re-entrant
        with self._lock, self._tokenizer_lock, self._torch_threads(), autocast(self.precision, self.device):
            out = self.model.encode(
                list(texts),
                prompt=prompt or None,
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=progress,
            )
        return np.asarray(out, dtype=np.float32)

    # ------------------------------------------------------------------ stages (for micro-batching)
    def tokenize(self, texts: Sequence[str], *, role: str | None = None) -> dict[str, Any]:
        """Token tensors of ``texts`` with the role's prompt, truncated to ``max_seq_length``."""
        with self._tokenizer_lock:
            return dict(self.model.preprocess(list(texts), prompt=self._prompt(role) or None))

    def embed_tokens(self, features: dict[str, Any]) -> np.ndarray:
        """Float32 embeddings of tokenised texts, *before* any final normalisation (callers choose it).

        In this encoder's precision and backend; one forward at a time (``forward_lock``) unless
        :attr:`concurrent_forwards`.
        """
        from sentence_transformers.sentence_transformer.modules import Normalize

        modules = list(self.model)
        if modules and isinstance(modules[-1], Normalize):
            modules = modules[:-1]
        device = self.model.device
        features = to_device(features, device)
        lock = contextlib.nullcontext() if self.concurrent_forwards else self._lock
        with lock, self._torch_threads(), torch.inference_mode(), autocast(self.precision, self.device):
            for module in modules:
                features = module(features)
        return np.asarray(features["sentence_embedding"].float().cpu().numpy(), dtype=np.float32)

    @contextlib.contextmanager
    def _torch_threads(self) -> Iterator[None]:
        """On an exported backend, torch runs only pooling and the projection: keep it on one thread.

        Otherwise PyTorch's OpenMP worker wakes for those small kernels and then spins, taking a core from
        ONNX Runtime's or OpenVINO's own threads (the ONNX server: 482 against 434 req/s at 32 clients,
        in-process batch 1: 214 against 96 texts/s; ``benchmarks/results/serving_threads.md``).
        """
        before = torch.get_num_threads()
        if self.backend == "torch" or before == 1:
            yield
            return
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def token_counts(self, texts: Sequence[str], *, role: str | None = None) -> list[int]:
        """Untruncated token count of each text as the model sees it (prompt and special tokens included)."""
        prefix = self._prompt(role)
        tokenizer = self.model.tokenizer
        with self._tokenizer_lock:
            if not callable(tokenizer):  # a static model's `tokenizers.Tokenizer`
                return [len(e.ids) for e in tokenizer.encode_batch([prefix + t for t in texts])]
            ids = tokenizer([prefix + t for t in texts], add_special_tokens=True, truncation=False)
        return [len(row) for row in ids["input_ids"]]

    def decode(self, rows: Sequence[Sequence[int]]) -> list[str]:
        """Token ids back to text with this model's tokenizer (special tokens left out)."""
        with self._tokenizer_lock:
            return [self.model.tokenizer.decode(list(row), skip_special_tokens=True) for row in rows]

    def keep_last_tokens(self, texts: Sequence[str], *, role: str | None = None) -> list[str]:
        """Left truncation: each text cut at the character where the last tokens that fit begin."""
        budget = max(1, int(self.max_seq_length or 512) - self.token_counts([""], role=role)[0])
        out = []
        for text in texts:
            with self._tokenizer_lock:
                enc = self.model.tokenizer(
                    text, add_special_tokens=False, return_offsets_mapping=True, truncation=False
                )
            offsets = enc["offset_mapping"]
            out.append(text if len(offsets) <= budget else text[offsets[len(offsets) - budget][0] :])
        return out

    def encode_query(self, texts: Sequence[str], **kwargs: object) -> np.ndarray:
        return self.encode(texts, role="query", **kwargs)  # type: ignore[arg-type]

    def encode_document(self, texts: Sequence[str], **kwargs: object) -> np.ndarray:
        return self.encode(texts, role="document", **kwargs)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ caching
    def cache(self, *, role: str | None = "document", root: Path | None = None) -> EmbeddingCache:
        """The on-disk cache of this model's embeddings for ``role``."""
        return EmbeddingCache.for_ref(self.as_teacher(), role=role, variant=self.variant, root=root)

    def encode_cached(
        self,
        texts: Sequence[str],
        *,
        role: str | None = "document",
        batch_size: int = 64,
        progress: bool = True,
        root: Path | None = None,
    ) -> np.ndarray:
        """Like :meth:`encode`, but reads and fills the on-disk cache (resumable)."""
        cache = self.cache(role=role, root=root)
        return cache.ensure(
            texts,
            lambda chunk: self.encode(chunk, role=role, batch_size=batch_size),
            progress=progress,
            description=f"{self.name} ({role or 'text'}, {self.variant})",
        )
