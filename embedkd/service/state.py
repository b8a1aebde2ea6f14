"""What the app loads once at start-up and shares between requests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embedkd.data.documents import Document
from embedkd.distill.teacher import Teacher
from embedkd.index.document_index import Index
from embedkd.models.encoder import Encoder
from embedkd.retrieval import AsymmetricRetriever, Fusion
from embedkd.service.batching import MicroBatcher
from embedkd.service.compute import DOCUMENTS, ComputeThread
from embedkd.service.metrics import Metrics
from embedkd.service.settings import Settings

__all__ = ["AppState"]


@dataclass
class AppState:
    settings: Settings
    metrics: Metrics
    index: Index | None = None
    student: Encoder | None = None
    teacher: Encoder | None = None
    teacher_cache: Teacher | None = None  # teacher embeddings through the shared disk cache
    retriever: AsymmetricRetriever | None = None  # /search: the same retriever and alignment check as the CLI
    fusion: Fusion | None = None  # a second index rescoring /search's candidates; /documents writes both
    # the family: every student by name (the default one included) and its retriever; batchers "NAME:query"
    students: dict[str, Encoder] = field(default_factory=dict)
    retrievers: dict[str, AsymmetricRetriever] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)  # batch-1 p50 measured at start-up, by model name
    coverage: dict[str, dict[str, Any]] = field(default_factory=dict)  # each student's `index check`, by name
    batchers: dict[str, MicroBatcher] = field(default_factory=dict)  # "student", "teacher"
    writes: asyncio.Semaphore | None = None
    pending_writes: int = 0
    ready: bool = False
    startup_error: str | None = None  # the one line a start-up that failed on an embedkd error reports
    started_at: float = field(default_factory=time.time)
    info: dict[str, Any] = field(default_factory=dict)
    progress: dict[str, dict[str, Any]] = field(default_factory=dict)  # what is still being built (background.py)
    compute: ComputeThread = field(default_factory=ComputeThread)  # the one thread every model runs on

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """The teacher's vectors of document texts, for index writes: on the compute thread, a few texts
        at a time, behind any queued query (call from a worker thread, never from the event loop)."""
        if self.teacher_cache is None:
            raise RuntimeError("document writes need the teacher, which is not loaded")
        teacher = self.teacher_cache
        return self.compute.map_chunks(
            lambda part: teacher.embeddings(part, role="document", progress=False), texts, priority=DOCUMENTS
        )

    def embed_fusion_documents(self, texts: Sequence[str]) -> np.ndarray:
        """The fusion model's vectors of document texts, for writes to the fusion index (as ``embed_documents``)."""
        if self.fusion is None:
            raise RuntimeError("no fusion index is loaded")
        encoder = self.fusion.encoder
        return self.compute.map_chunks(lambda part: encoder.encode_document(list(part)), texts, priority=DOCUMENTS)

    def upsert(self, docs: Sequence[Document]) -> dict[str, int]:
        """Write documents to the fusion index first, then to the main one, so a document is searchable (in
        the main index) only once its second vector exists; returns the main index's counts. Blocking."""
        if self.index is None:
            raise RuntimeError("no index is loaded")
        if self.fusion is not None:
            self.fusion.index.upsert(docs, self.embed_fusion_documents)
        return self.index.upsert(docs, self.embed_documents)

    def delete(self, doc_ids: Sequence[str]) -> dict[str, Any]:
        """Delete from the main index (no longer searchable), then from the fusion index. Blocking."""
        if self.index is None:
            raise RuntimeError("no index is loaded")
        result = self.index.delete(doc_ids)
        if self.fusion is not None:
            self.fusion.index.delete(doc_ids)
        return result

    def indexes(self) -> list[Index]:
        """The indexes this server writes: the main one, then the fusion index."""
        return [i for i in (self.index, self.fusion.index if self.fusion else None) if i is not None]

    def model_names(self) -> dict[str, str]:
        names: dict[str, str] = {}
        if self.student is not None:
            names["student"] = self.student.name
        if self.teacher is not None:
            names["teacher"] = self.teacher.name
        return names

    def student_prefix(self, name: str) -> str:
        """The batcher prefix of a student: ``student`` for the default one, its name for the others."""
        return "student" if self.student is not None and name == self.student.name else name
