"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import os

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from embedkd.service.state import AppState

router = APIRouter(tags=["operations"])


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process answers. Needs no API key."""
    return {"status": "ok"}


@router.get("/ready")
async def ready(request: Request, response: Response) -> dict[str, object]:
    """Readiness: models and index are loaded, and every micro-batcher is running."""
    state: AppState = request.app.state.embedkd
    failed = sorted({b.name for b in state.batchers.values() if not b.healthy})
    ready = state.ready and not failed
    if not ready:
        response.status_code = 503
    body: dict[str, object] = {"ready": ready, "models": state.model_names()}
    if state.settings.workers > 1:
        body["worker_pid"] = os.getpid()  # which of the server's processes answered
    if state.retriever is not None:
        body["search_mode"] = state.retriever.mode.value  # what /search answers with by default, now
    if state.progress:
        body["building"] = state.progress
    if failed:
        body["failed_batchers"] = failed
    return body


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    state: AppState = request.app.state.embedkd
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
