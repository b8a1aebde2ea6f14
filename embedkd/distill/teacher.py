"""The teacher as a black box: a source of normalised embeddings, computed once and cached on disk.

A teacher is either a model (loaded only when the cache misses) or a set of precomputed embeddings
(``.npy`` rows aligned with a text file), for teachers embedkd cannot run, such as a hosted API.
Both fill the same :class:`~embedkd.embedding_cache.EmbeddingCache`, which indexing reuses.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embedkd.data.beir import doc_text, is_beir_folder, load_corpus
from embedkd.data.texts import read_texts
from embedkd.device import resolve_device, resolve_precision
from embedkd.embedding_cache import EmbeddingCache, unusable_row
from embedkd.errors import InputError
from embedkd.models.encoder import Encoder
from embedkd.models.info import describe_folder, fingerprint
from embedkd.models.loading import resolve_model_path
from embedkd.models.manifest import TeacherRef
from embedkd.models.registry import find_spec

__all__ = ["Teacher", "read_aligned_texts"]

logger = logging.getLogger(__name__)


def _folder_prompts(folder: Path) -> dict[str, str]:
    try:
        config = json.loads((folder / "config_sentence_transformers.json").read_text())
    except (OSError, ValueError):
        return {}
    prompts = config.get("prompts") or {}
    return {str(k): str(v) for k, v in prompts.items() if v}


def read_aligned_texts(texts_path: Path, embeddings_path: Path) -> list[str]:
    """Texts whose order matches the rows of a precomputed embedding file.

    A BEIR folder gives its documents (``title + " " + text``), ordered by an ``ids.txt`` next to the
    embeddings when there is one, otherwise in corpus order.
    """
    texts_path = Path(texts_path)
    ids_file = Path(embeddings_path).parent / "ids.txt"
    if is_beir_folder(texts_path) and ids_file.is_file():
        corpus = load_corpus(texts_path)
        ids = [line.strip() for line in ids_file.read_text().splitlines() if line.strip()]
        missing = [i for i in ids if i not in corpus]
        if missing:
            raise InputError(f"{ids_file}: {len(missing)} ids are not in {texts_path} (e.g. {missing[0]!r})")
        return [doc_text(corpus[i]["title"], corpus[i]["text"]) for i in ids]
    return read_texts(texts_path)


class Teacher:
    """Normalised teacher embeddings for any texts, from the cache first.

    An :class:`~embedkd.models.embedder.Embedder`: ``encode_query``/``encode_document`` answer from the
    cache and encode (and cache) only what it misses. A black box (:meth:`black_box`) is the same embedder
    with no model behind it: it answers from imported vectors and refuses texts it has none for.
    """

    def __init__(
        self,
        ref: TeacherRef,
        *,
        model_path: Path | None,
        device: str | None,
        cache_root: Path | None,
        precision: str = "fp32",
    ) -> None:
        self.ref = ref
        self.model_path = model_path
        self.device = device
        self.cache_root = cache_root
        # What the teacher computes new embeddings in: "fp32", or "bf16" for ~1.7x faster encoding on
        # hardware with native bf16 (mean cosine 0.99998 to fp32, see benchmarks/results/teacher_precision.md).
        self.precision = (
            str(resolve_precision(precision, resolve_device(device)).value) if model_path is not None else "fp32"
        )
        self._encoder: Encoder | None = None

    def cache_for(self, role: str = "document", *, precision: str | None = None) -> EmbeddingCache:
        """The embedding cache of this teacher for ``role`` ("query" or "document") and ``precision``.

        Teachers without prompts share one cache for both roles. Each precision has its own cache.
        """
        # a wrapped encoder on an exported backend keys its cache by that backend, not by the precision
        variant = precision or (self._encoder.variant if self._encoder is not None else self.precision)
        return EmbeddingCache.for_ref(self.ref, role=role, variant=variant, root=self.cache_root)

    @property
    def cache(self) -> EmbeddingCache:
        return self.cache_for("document")

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def dimension(self) -> int:
        return self.ref.dimension

    @property
    def fingerprint(self) -> str:
        return self.ref.fingerprint

    @property
    def is_black_box(self) -> bool:
        return self.model_path is None

    @classmethod
    def from_model(
        cls, name: str, *, device: str | None = None, cache_root: Path | None = None, precision: str = "fp32"
    ) -> Teacher:
        """A teacher model, identified by its weights; it is loaded only if something must be encoded."""
        path = resolve_model_path(name)
        info = describe_folder(path)
        if info.dimension is None:
            raise InputError(f"cannot tell the output dimension of teacher {name}")
        spec = find_spec(name)
        ref = TeacherRef(
            name=spec.name if spec else name,
            fingerprint=fingerprint(path),
            dimension=info.dimension,
            max_seq_length=info.max_seq_length,
            prompts=_folder_prompts(path),
        )
        return cls(ref, model_path=path, device=device, cache_root=cache_root, precision=precision)

    @classmethod
    def from_encoder(cls, encoder: Encoder, *, precision: str | None = None, cache_root: Path | None = None) -> Teacher:
        """A teacher around an already loaded encoder (its weights are shared, not loaded again).

        ``precision`` (default: the encoder's) picks the cache; the shared weights then run in it.
        """
        ref = encoder.as_teacher()
        teacher = cls(
            ref,
            model_path=encoder.path,
            device=encoder.device,
            cache_root=cache_root,
            precision=precision or encoder.precision,
        )
        teacher._encoder = encoder.with_precision(teacher.precision)
        return teacher

    @classmethod
    def black_box(
        cls, name: str, *, dimension: int, fingerprint: str | None = None, cache_root: Path | None = None
    ) -> Teacher:
        """A teacher known only through precomputed embeddings (see :meth:`import_embeddings`)."""
        ref = TeacherRef(name=name, fingerprint=fingerprint or f"blackbox:{name}", dimension=dimension)
        return cls(ref, model_path=None, device=None, cache_root=cache_root)

    # ------------------------------------------------------------------ black-box input
    def import_embeddings(self, texts: Sequence[str], embeddings_path: Path, *, role: str = "document") -> int:
        """Validate a precomputed ``.npy`` against ``texts`` and this teacher, then add it to the cache.

        A ``manifest.json`` beside the file, when present, must name this teacher's weights
        (``weights_sha256``) and ``max_seq_length``. Returns the number of new rows.
        """
        embeddings_path = Path(embeddings_path)
        try:
            embeddings = np.load(embeddings_path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise InputError(f"{embeddings_path}: not a readable .npy file ({exc})") from exc
        if embeddings.ndim != 2:
            raise InputError(f"{embeddings_path}: expected a 2-d array, got shape {embeddings.shape}")
        if embeddings.shape[0] != len(texts):
            raise InputError(
                f"{embeddings_path} has {embeddings.shape[0]} rows but there are {len(texts)} texts; "
                "row i must be the embedding of text i"
            )
        if embeddings.shape[1] != self.ref.dimension:
            raise InputError(
                f"{embeddings_path} has dimension {embeddings.shape[1]}, but teacher {self.ref.name} "
                f"has dimension {self.ref.dimension}"
            )
        manifest_path = embeddings_path.parent / "manifest.json"
        if manifest_path.is_file():
            try:
                manifest = json.loads(manifest_path.read_text())
            except ValueError as exc:
                raise InputError(f"{manifest_path}: invalid JSON") from exc
            made_by = manifest.get("weights_sha256")
            if made_by and self.model_path is not None and made_by != self.ref.fingerprint:
                raise InputError(
                    f"{embeddings_path} was made by weights {made_by[:12]}…, not by teacher "
                    f"{self.ref.name} ({self.ref.fingerprint[:12]}…)"
                )
            length = manifest.get("max_seq_length")
            if length and self.ref.max_seq_length and length != self.ref.max_seq_length:
                raise InputError(
                    f"{embeddings_path} was encoded with max_seq_length {length}, "
                    f"the teacher uses {self.ref.max_seq_length}"
                )
        precision = "fp32"
        if manifest_path.is_file():
            precision = str(manifest.get("precision", "fp32"))  # float16 storage of fp32 outputs is still fp32
        for start in range(0, len(texts), 8192):  # every row checked before any is added: all or nothing
            unusable = unusable_row(embeddings[start : start + 8192])
            if unusable is not None:
                row, what = start + unusable[0], unusable[1]
                raise InputError(
                    f"{embeddings_path}: row {row} (text {texts[row][:60]!r}) has {what}; every row must be an "
                    "embedding, and a zero vector has no direction to search by"
                )
        cache = self.cache_for(role, precision=precision)
        added = 0
        for start in range(0, len(texts), 8192):
            block = np.asarray(embeddings[start : start + 8192], dtype=np.float32)
            added += cache.add(list(texts[start : start + 8192]), block)
        logger.info("imported %d new teacher embeddings from %s", added, embeddings_path)
        return added

    # ------------------------------------------------------------------ embeddings
    def encoder(self) -> Encoder:
        if self.model_path is None:
            raise InputError(f"teacher {self.ref.name} is a black box: it cannot encode new texts")
        if self._encoder is None:
            self._encoder = Encoder.load(self.model_path, device=self.device, precision=self.precision)
            self._encoder.name = self.ref.name
        return self._encoder

    def embeddings(
        self,
        texts: Sequence[str],
        *,
        role: str = "document",
        batch_size: int = 64,
        progress: bool = True,
    ) -> np.ndarray:
        """Teacher embeddings of ``texts`` (float32), encoding and caching the ones not cached yet.

        A teacher running in bf16 also reads what its fp32 cache already holds (the exact outputs, for
        instance imported precomputed documents) instead of encoding those texts again.
        """
        if self.precision != "fp32":
            exact = self.cache_for(role, precision="fp32")
            known = [i for i, t in enumerate(texts) if t in exact]
            if known:
                rest = [i for i, t in enumerate(texts) if t not in exact]
                out = np.zeros((len(texts), self.ref.dimension), dtype=np.float32)
                out[known] = exact.get([texts[i] for i in known])
                if rest:
                    out[rest] = self._own([texts[i] for i in rest], role=role, batch_size=batch_size, progress=progress)
                return out
        return self._own(texts, role=role, batch_size=batch_size, progress=progress)

    def encode_query(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return self.embeddings(texts, role="query", batch_size=batch_size, progress=progress)

    def encode_document(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return self.embeddings(texts, role="document", batch_size=batch_size, progress=progress)

    def _own(self, texts: Sequence[str], *, role: str, batch_size: int, progress: bool) -> np.ndarray:
        cache = self.cache_for(role)
        missing = cache.missing(texts)
        if missing and self.model_path is None:
            raise InputError(
                f"{len(missing)} texts have no precomputed embedding from black-box teacher "
                f"{self.ref.name} (e.g. {missing[0][:60]!r}); supply embeddings for every training text"
            )
        if missing:  # the one code path that fills a model's cache: the encoder's own
            return self.encoder().encode_cached(
                texts, role=role, batch_size=batch_size, progress=progress, root=self.cache_root
            )
        return cache.get(texts)
