"""The FastAPI app factory.

``create_app(settings)`` builds an app; its lifespan loads the index and models once, starts the
micro-batchers and a periodic index save, and shuts everything down cleanly. Settings are read here,
never at import time, so ``uvicorn embedkd.service.app:create_app --factory`` and tests both work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from embedkd._version import __version__
from embedkd.data.documents import read_documents
from embedkd.device import resolve_device
from embedkd.distill.teacher import Teacher
from embedkd.errors import AlignmentError, EmbedkdError, InputError, ModelNotFoundError
from embedkd.index.document_index import Index
from embedkd.locks import FolderLock
from embedkd.models.encoder import Encoder
from embedkd.models.shared_trunk import SharedTrunk
from embedkd.retrieval import (
    AsymmetricRetriever,
    Fusion,
    RetrievalMode,
    alignment_problem,
    raise_or_warn,
    student_mode,
)
from embedkd.service.background import check_coverage, grow_index, watch_student
from embedkd.service.batching import BatchTimeout, EncodeFailed, MicroBatcher, Overloaded
from embedkd.service.compute import ComputeThread, name_os_thread
from embedkd.service.encoding import EncoderStages, SharedTrunkStages
from embedkd.service.metrics import Metrics
from embedkd.service.middleware import (
    TEI_PATHS,
    AuthMiddleware,
    BodyLimitMiddleware,
    MetricsMiddleware,
    StartupErrorMiddleware,
    error_body,
)
from embedkd.service.routes import documents, embed, health, models, openai, search, tei
from embedkd.service.settings import Settings
from embedkd.service.state import AppState

__all__ = ["create_app", "preflight"]

logger = logging.getLogger("embedkd.service")


def preflight(settings: Settings) -> None:
    """Cheap checks before a server starts (no model weights loaded), so a bad setting ends with a
    clear message instead of a failed start-up: the index exists and no other writer holds it, the device
    is known, the students resolve and the student is aligned to the index's teacher, the documents to grow
    from are readable, and a fusion index exists and its model resolves."""
    from embedkd.index.manifest import IndexManifest, check_fusion_pair
    from embedkd.models.info import fingerprint
    from embedkd.models.loading import resolve_model_path
    from embedkd.models.manifest import StudentManifest

    manifest = IndexManifest.read(settings.index_dir)
    resolve_device(settings.device)  # an unknown device, before any model loads
    if not settings.read_only:  # a CLI write or another server holds the index: say so now, not at start-up
        lock = FolderLock(settings.index_dir, what="index", shared=settings.workers > 1)
        lock.acquire()
        lock.release()
    for name in settings.students:
        resolve_model_path(name)
    if settings.grow_from is not None:
        read_documents(settings.grow_from)  # every line the server will add, checked before it starts
    if settings.student:
        path = resolve_model_path(settings.student)
        own = fingerprint(path)
        mode = student_mode(own, manifest.teacher)
        problem = alignment_problem(
            name=str(settings.student),
            fingerprint=own,
            dimension=None,  # known only once loaded; the full check runs again at start-up
            manifest=StudentManifest.read(path),
            indexed_by=manifest.teacher,
            mode=mode,
            where=f"index {settings.index_dir}",
        )
        raise_or_warn(problem, force=settings.force_alignment)
    if settings.teacher:
        resolve_model_path(settings.teacher)
    fusion_dir = settings.fusion_dir()
    if fusion_dir is not None:
        check_fusion_pair(settings.index_dir, fusion_dir, strict=settings.fuse_index is not None)
        resolve_model_path(IndexManifest.read(fusion_dir).teacher.name)  # the model that built it


async def _release(state: AppState) -> None:
    """Stop the compute thread and close what the server opened: its metrics and its indexes (and their
    writer locks), after a shutdown or a start-up that failed part-way."""
    state.compute.shutdown()
    state.metrics.close()
    for index in state.indexes():
        await run_in_threadpool(index.close)


def _load(state: AppState) -> None:
    """Load the index and models (blocking; runs on the compute thread during start-up)."""
    settings = state.settings
    device = resolve_device(settings.device)
    shared = settings.workers > 1 and not settings.read_only  # the workers of one server write it together
    index = Index.open(settings.index_dir, device=device, readonly=settings.read_only, shared=shared)
    state.index = index
    if settings.student:
        student = Encoder.load(
            settings.student,
            device=device,
            precision=settings.precision.value,
            backend=settings.backend.value,
            quantize=settings.quantize.value,
            busy_wait=settings.busy_wait,
        )
        state.student = student
    if settings.load_teacher:
        teacher = Encoder.load(
            settings.teacher or index.teacher.name, device=device, precision=settings.precision.value
        )
        state.teacher = teacher
        # The index's precision for new document vectors; the loaded weights are shared, not loaded twice.
        cache = Teacher.from_encoder(teacher, precision=index.manifest.precision)
        state.teacher_cache = cache
    fusion_dir = settings.fusion_dir()
    if fusion_dir is not None:
        fused = Index.open(fusion_dir, device=device, readonly=settings.read_only, shared=shared)
        try:
            encoder = Encoder.load(fused.teacher.name, device=device, precision=settings.precision.value)
        except BaseException:
            fused.close()
            raise
        state.fusion = Fusion(fused, encoder, weight=settings.fuse_weight, candidates=settings.fuse_candidates)
    if state.student is not None or state.teacher is not None:
        # One retriever, one alignment check (the same as the CLI's): every loaded model against the index.
        default = student_mode(state.student.fingerprint, index.teacher) if state.student else RetrievalMode.TEACHER
        state.retriever = AsymmetricRetriever(
            index,
            student=state.student,
            teacher=state.teacher,
            mode=default,
            force=settings.force_alignment,
            fusion=state.fusion,
        )
    if state.student is not None and state.retriever is not None:
        state.students[state.student.name] = state.student
        state.retrievers[state.student.name] = state.retriever
    for folder in settings.students:
        extra = Encoder.load(
            folder,
            device=device,
            precision=settings.precision.value,
            backend=settings.backend.value,
            quantize=settings.quantize.value,
            busy_wait=settings.busy_wait,
        )
        if extra.name in state.students or extra.name in {"student", "teacher"}:
            raise InputError(f"two students are named {extra.name!r}; rename a folder")
        state.retrievers[extra.name] = AsymmetricRetriever(
            index,
            student=extra,
            teacher=state.teacher,
            mode=student_mode(extra.fingerprint, index.teacher),
            force=settings.force_alignment,
            fusion=state.fusion,
        )
        state.students[extra.name] = extra
    for encoder in [*state.students.values(), *([state.teacher] if state.teacher else [])]:
        state.latency_ms[encoder.name] = measure_latency(encoder)
    counts = index.store.counts()
    state.metrics.index_documents.set(counts["documents"])
    state.metrics.index_chunks.set(counts["chunks"])


def measure_latency(encoder: Encoder, repeats: int = 15) -> float:
    """Batch-1 p50 of one short query on this machine, in ms (what ``max_latency_ms`` is compared with)."""
    query = ["how do I read a file line by line"]
    encoder.encode_query(query)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        encoder.encode_query(query)
        times.append((time.perf_counter() - start) * 1000)
    return round(float(sorted(times)[len(times) // 2]), 2)


def batchers_for(
    state: AppState, role: str, encoder: Encoder, *, trunk: SharedTrunk | None = None
) -> dict[str, MicroBatcher]:
    """The micro-batchers of one model: ``ROLE:query`` and ``ROLE:document`` (one shared when the two
    sides use the same prompt), and with a ``trunk`` (a fused search's student and the fusion model in one
    pass) ``ROLE:fused``."""
    settings = state.settings

    def make(input_type: str, stages: EncoderStages | None = None, name: str = role) -> MicroBatcher:
        return MicroBatcher(
            stages or EncoderStages(encoder, role=input_type),
            name=name,
            max_batch_size=settings.max_batch_size,
            max_wait_ms=settings.max_wait_ms,
            answer_wait_ms=settings.answer_wait_ms,
            max_queue=settings.max_queue,
            metrics=state.metrics,
            timeout_s=settings.request_timeout_s,
            compute=state.compute,
        )

    out = {f"{role}:query": make("query")}
    prompts = encoder.prompts
    same = prompts.get("query", "") == prompts.get("document", "")
    out[f"{role}:document"] = out[f"{role}:query"] if same else make("document")
    if trunk is not None:
        out[f"{role}:fused"] = make("query", SharedTrunkStages(trunk), name=f"{role}+fusion")
    return out


def _batchers(state: AppState) -> dict[str, MicroBatcher]:
    out: dict[str, MicroBatcher] = {}
    if state.student is not None:
        trunk = state.retriever.trunk if state.retriever is not None else None
        out.update(batchers_for(state, "student", state.student, trunk=trunk))
    if state.teacher is not None:
        out.update(batchers_for(state, "teacher", state.teacher))
    for name, encoder in state.students.items():
        if encoder is not state.student:
            out.update(batchers_for(state, name, encoder, trunk=state.retrievers[name].trunk))
    if state.fusion is not None:
        out.update(batchers_for(state, "fusion", state.fusion.encoder))
    return out


def _background_priority() -> None:
    """Run this (saver) thread at the lowest CPU priority, so searches win the cores while it saves."""
    name_os_thread("ekd-saver")
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


async def _save_periodically(state: AppState) -> None:
    """Re-save the faiss file now and then, on a low-priority thread of its own. A failed save is logged and
    retried at the next tick: it never ends the loop (faiss raises RuntimeError, not OSError), and committed
    writes stay safe in the store."""
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="saver", initializer=_background_priority) as pool:
        while True:
            await asyncio.sleep(state.settings.save_interval_s)
            for index in state.indexes():
                if index.readonly or not index.unsaved:
                    continue
                try:
                    await loop.run_in_executor(pool, index.save)
                except Exception:  # noqa: BLE001
                    state.metrics.save_failures.inc()
                    logger.exception("saving index %s failed; committed writes stay safe in its store", index.folder)


def _startup_summary(state: AppState) -> str:
    assert state.index is not None
    info = state.index.info()
    parts = [
        f"index {info['folder']} ({info['counts']['documents']} documents, {info['counts']['chunks']} chunks, "
        f"{info['params']['kind']}, teacher {info['teacher']['name']})"
    ]
    if state.student is not None:
        alignment = state.student.manifest.alignment if state.student.manifest else None
        aligned = f", mean cosine to teacher {alignment.mean_cosine:.3f}" if alignment else ""
        parts.append(f"student {state.student.name} ({state.student.dimension}-d{aligned})")
    if state.teacher is not None:
        parts.append(f"teacher {state.teacher.name} ({state.teacher.dimension}-d)")
    if state.fusion is not None:
        fusion = state.fusion
        parts.append(
            f"fusion index {fusion.index.folder} ({fusion.encoder.name}, weight {fusion.weight:g}, "
            f"{fusion.candidates} candidates)"
        )
    loaded = state.student or state.teacher
    parts.append(f"device {loaded.device if loaded is not None else 'cpu'}")
    parts.append(f"auth {'on' if state.settings.api_keys else 'off'}")
    return "embedkd ready: " + "; ".join(parts) + f" at http://{state.settings.host}:{state.settings.port}"


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the embedkd service. ``settings`` defaults to ``Settings()`` (``EMBEDKD_*`` variables)."""
    settings = settings or Settings()  # type: ignore[call-arg]  # index_dir comes from the environment
    state = AppState(
        settings=settings, metrics=Metrics(), writes=None, compute=ComputeThread(workers=settings.compute_workers)
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await state.compute.run(_load, state)  # models load on the thread that will run them
        except BaseException as exc:  # e.g. a student refused after the index opened: release what is open
            if isinstance(exc, EmbedkdError):
                state.startup_error = f"error: {exc}"  # the server prints this line, not a traceback
            await _release(state)
            raise
        state.batchers = _batchers(state)
        for batcher in {id(b): b for b in state.batchers.values()}.values():
            await batcher.start()
        saver = asyncio.create_task(_save_periodically(state))
        chores = []
        if settings.grow_from is not None:
            chores.append(asyncio.create_task(grow_index(state, settings.grow_from)))
        if settings.student_pending is not None and state.student is None:
            chores.append(asyncio.create_task(watch_student(state, settings.student_pending)))
        if state.students:
            chores.append(asyncio.create_task(check_coverage(state, list(state.students))))
        state.ready = True
        logger.info(_startup_summary(state))
        try:
            yield
        finally:
            state.ready = False
            for task in (saver, *chores):
                task.cancel()
            for task in (saver, *chores):
                with contextlib.suppress(BaseException):  # whatever a task died of, the index still closes
                    await task
            try:
                for batcher in {id(b): b for b in state.batchers.values()}.values():
                    await batcher.stop()
            finally:
                await _release(state)

    app = FastAPI(
        title="embedkd",
        version=__version__,
        summary="Asymmetric embedding search: student queries against a teacher's index.",
        lifespan=lifespan,
    )
    app.state.embedkd = state
    for module in (embed, tei, openai, search, documents, models, health):
        app.include_router(module.router)
    _install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(AuthMiddleware, api_keys=settings.api_keys)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics, routes=app.routes)
    app.add_middleware(StartupErrorMiddleware, failure=lambda: state.startup_error)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    def reply(
        request: Request,
        status: int,
        message: str,
        kind: str,
        headers: dict[str, str] | None = None,
        param: str | None = None,
    ) -> Any:
        openai = request.url.path.startswith("/v1/")
        if openai and status == 422:
            status = 400  # OpenAI answers 400 for any request it cannot process
        body = error_body(request.url.path, status, message, kind, param)
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Any:
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return reply(request, exc.status_code, str(exc.detail), kind, dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Any:
        if request.url.path.startswith("/v1/"):
            first = exc.errors()[0] if exc.errors() else {}
            where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
            message = f"{where}: {first.get('msg', 'invalid request')}"
            return reply(request, 400, message, "invalid_request_error", param=where.split(".")[0] or None)
        if request.url.path in TEI_PATHS:
            first = exc.errors()[0] if exc.errors() else {}
            where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
            return reply(request, 422, f"{where}: {first.get('msg', 'invalid request')}", "invalid_request_error")
        return JSONResponse({"detail": jsonable_errors(exc)}, status_code=422)

    @app.exception_handler(Overloaded)
    async def overloaded(request: Request, exc: Overloaded) -> Any:
        return reply(request, 503, f"server overloaded: {exc}; retry shortly", "overloaded", {"Retry-After": "1"})

    @app.exception_handler(BatchTimeout)
    async def timed_out(request: Request, exc: BatchTimeout) -> Any:
        return reply(request, 503, str(exc), "timeout", {"Retry-After": "1"})

    @app.exception_handler(EncodeFailed)
    async def encode_failed(request: Request, exc: EncodeFailed) -> Any:
        if exc.bad_input:  # OpenAI answers 400 for a request it cannot process
            status = 400 if request.url.path.startswith("/v1/") else 422
            return reply(request, status, str(exc), "invalid_request_error")
        return reply(request, 500, str(exc), "server_error")

    @app.exception_handler(EmbedkdError)
    async def library_error(request: Request, exc: EmbedkdError) -> Any:
        status = 404 if isinstance(exc, ModelNotFoundError) else 409 if isinstance(exc, AlignmentError) else 422
        if not isinstance(exc, InputError | ModelNotFoundError | AlignmentError):
            status = 500
        return reply(request, status, str(exc), "invalid_request_error" if status < 500 else "server_error")


def jsonable_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Validation errors without the raw input (which may be huge or not JSON-serialisable)."""
    return [{k: v for k, v in error.items() if k in {"loc", "msg", "type"}} for error in exc.errors()]
