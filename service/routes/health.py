"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.state import AppState

router = APIRouter(tags=["operations"])


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process answers. Needs no API key."""
    return {"status": "ok"}


@router.get("/ready")
async def ready(request: Request, response: Response) -> dict[str, object]:
    """Readiness: models and index are loaded."""
    state: AppState = request.app.state.embedkd
    if not state.ready:
        response.status_code = 503
    return {"ready": state.ready, "models": state.model_names()}


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    state: AppState = request.app.state.embedkd
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
