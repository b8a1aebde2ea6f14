"""Work a running server does in the background: grow its index, and swap in a student once one is ready.

A server can start on a first slice of its corpus in teacher mode and answer at once, while:

- ``grow_index`` adds the rest of ``EMBEDKD_GROW_FROM`` (a documents file) in small batches through the
  same durable write path as ``POST /documents``; ids already indexed are skipped, so a restart resumes;
- ``watch_student`` waits for a student folder (``EMBEDKD_STUDENT_PENDING``) to appear, complete (its
  ``embedkd.json`` is written last, and the folder is renamed into place), loads it, runs the same
  alignment check as start-up, starts its micro-batchers and only then swaps it in: a request already in
  flight keeps the models it started with, so nothing fails during the swap.

- ``check_coverage`` measures, once per student, whether it is as aligned on this index's documents as on its
  own held-out texts (``embedkd index check``), a few chunks at a time behind the queries.

``state.progress`` says what is being built and how far along it is (``/ready`` and ``/models`` show it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool

from embedkd.data.documents import read_documents
from embedkd.errors import EmbedkdError
from embedkd.models.encoder import Encoder
from embedkd.retrieval import AsymmetricRetriever, student_mode
from embedkd.service.compute import DOCUMENTS
from embedkd.service.state import AppState

__all__ = ["check_coverage", "grow_index", "watch_student"]

logger = logging.getLogger("embedkd.service")


def _set(app: AppState, key: str, **values: Any) -> None:
    app.progress[key] = {**app.progress.get(key, {}), **values, "updated_at": time.time()}


async def grow_index(state: AppState, source: Path, *, batch: int = 16) -> None:
    """Add every document of ``source`` that the index, or the fusion index, does not hold yet, ``batch`` at a
    time (each write goes to both, as ``POST /documents`` does)."""
    index, teacher = state.index, state.teacher_cache
    if index is None or teacher is None:
        _set(state, "index", state="stopped", error="growing the index needs the teacher, which is not loaded")
        return
    try:
        docs = await run_in_threadpool(read_documents, source)
    except EmbedkdError as exc:  # changed since the server checked it: /models and the log say why it stopped
        _set(state, "index", state="stopped", error=str(exc), source=str(source))
        logger.error("growing the index stopped: %s", exc)
        return
    ids = [d.id for d in docs]
    present = await run_in_threadpool(index.store.stored_ids, ids)
    if state.fusion is not None:  # a fusion index built later, or cut short, lags behind: fill it too
        present &= await run_in_threadpool(state.fusion.index.store.stored_ids, ids)
    todo = [d for d in docs if d.id not in present]
    total = len(docs)
    done = total - len(todo)
    _set(state, "index", state="building" if todo else "complete", documents=done, total=total, source=str(source))
    started = time.perf_counter()

    for start in range(0, len(todo), batch):
        part = todo[start : start + batch]
        try:
            await run_in_threadpool(state.upsert, part)
        except EmbedkdError as exc:  # a bad document is reported and skipped; the rest still goes in
            logger.warning("growing the index: skipped %d documents (%s)", len(part), exc)
        done += len(part)
        counts = index.store.counts()
        state.metrics.index_documents.set(counts["documents"])
        state.metrics.index_chunks.set(counts["chunks"])
        rate = (done - (total - len(todo))) / max(time.perf_counter() - started, 1e-9)
        _set(state, "index", documents=done, docs_per_s=round(rate, 2))
    _set(state, "index", state="complete", documents=len(index), seconds=round(time.perf_counter() - started, 1))
    logger.info("index complete: %d documents", len(index))


async def check_coverage(state: AppState, names: list[str]) -> None:
    """``embedkd index check`` for each student in ``names``, on the compute thread a few chunks at a time at
    document priority, so queries run first: ``/models`` shows the result, ``/metrics`` its ratio, and a
    student whose training did not reach this index's documents is logged as a warning."""
    from embedkd.evaluation.alignment import index_coverage

    sample = state.settings.coverage_sample
    if sample <= 0 or state.index is None:
        return
    for name in names:
        encoder = state.students.get(name)
        if encoder is None or encoder.manifest is None:
            continue

        def encode(texts: list[str], encoder: Encoder = encoder) -> Any:
            return state.compute.map_chunks(lambda part: encoder.encode_document(list(part)), texts)

        try:
            coverage = await run_in_threadpool(
                index_coverage, encoder, state.index, encoder.manifest, sample=sample, encode=encode
            )
        except EmbedkdError as exc:  # e.g. an index with no documents yet: nothing to measure
            state.coverage[name] = {"error": str(exc)}
            continue
        except Exception as exc:  # noqa: BLE001  # a diagnosis: whatever it hits, serving goes on
            logger.warning("coverage check of student %s failed: %s", name, exc)
            state.coverage[name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        state.coverage[name] = coverage.to_dict()
        if coverage.ratio is not None:
            state.metrics.coverage_ratio.labels(model=name).set(coverage.ratio)
        log = logger.info if coverage.covered is not False else logger.warning
        log(
            "student %s on this index: cosine %.3f over %d chunks, %s",
            name,
            coverage.cosine,
            coverage.compared,
            coverage.verdict if coverage.ratio is None else f"{coverage.ratio:.3f}x its held-out; {coverage.verdict}",
        )


def _ready_folder(folder: Path) -> bool:
    return (folder / "embedkd.json").is_file() and (folder / "modules.json").is_file()


async def watch_student(state: AppState, folder: Path, *, poll_s: float = 2.0) -> None:
    """Swap in the student at ``folder`` once it exists and passes the alignment check."""
    from embedkd.service.app import batchers_for, measure_latency

    _set(state, "student", state="waiting", folder=str(folder))
    while not _ready_folder(folder):
        await asyncio.sleep(poll_s)
    settings = state.settings
    assert state.index is not None
    _set(state, "student", state="loading")
    try:
        student = await state.compute.run_aside(  # a long load (an export) must not hold up queries
            Encoder.load,
            folder,
            device=state.teacher.device if state.teacher else "cpu",
            precision=settings.precision.value,
            backend=settings.backend.value,
            quantize=settings.quantize.value,
            busy_wait=settings.busy_wait,
        )
        # on the compute thread: with a fusion index, the retriever runs a probe of its shared pass
        retriever = await state.compute.run(
            AsymmetricRetriever,
            state.index,
            student=student,
            teacher=state.teacher,
            mode=student_mode(student.fingerprint, state.index.teacher),
            force=settings.force_alignment,
            fusion=state.fusion,
            priority=DOCUMENTS,
        )
    except EmbedkdError as exc:  # refused (another teacher) or unreadable: keep serving what we have
        logger.warning("student %s not swapped in: %s", folder, exc)
        _set(state, "student", state="refused", error=str(exc))
        return
    new = batchers_for(state, "student", student, trunk=retriever.trunk)
    for batcher in {id(b): b for b in new.values()}.values():
        await batcher.start()
    old = {k: b for k, b in state.batchers.items() if k.startswith("student:")}
    # One assignment each: a request reads either the old set or the new one, never half of each.
    latency = await state.compute.run(measure_latency, student, priority=DOCUMENTS)
    kept = {k: b for k, b in state.batchers.items() if k not in old}  # a batcher of the old student never stays
    state.batchers = {**kept, **new}
    state.student = student
    state.retriever = retriever
    state.students = {**state.students, student.name: student}
    state.retrievers = {**state.retrievers, student.name: retriever}
    state.latency_ms = {**state.latency_ms, student.name: latency}
    alignment = student.manifest.alignment if student.manifest else None
    _set(
        state,
        "student",
        state="live",
        name=student.name,
        mean_cosine=alignment.mean_cosine if alignment else None,
        live_at=time.time(),
    )
    logger.info("student %s is live: /search now answers asymmetrically", student.name)
    await check_coverage(state, [student.name])
    await asyncio.sleep(settings.request_timeout_s)  # let requests that hold the old batchers finish
    for batcher in {id(b): b for b in old.values()}.values():
        await batcher.stop()
