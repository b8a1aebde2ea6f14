"""Shared helpers for routes: the app state and mapping library errors onto HTTP errors."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from embedkd.service.batching import MicroBatcher
from embedkd.service.state import AppState

__all__ = ["State", "batcher_for", "get_state", "pick_student"]


async def get_state(request: Request) -> AppState:
    # async on purpose: FastAPI runs a plain ``def`` dependency on its thread pool, a thread hop per request
    state: AppState = request.app.state.embedkd
    if not state.ready:
        raise HTTPException(status_code=503, detail="the server is still loading its models")
    return state


def batcher_for(state: AppState, model: str) -> MicroBatcher:
    batcher = state.batchers.get(model)
    if batcher is None:
        available = ", ".join(sorted({key.split(":")[0] for key in state.batchers})) or "none"
        name = model.split(":")[0]
        raise HTTPException(status_code=404, detail=f"model {name!r} is not loaded here (available: {available})")
    return batcher


def pick_student(state: AppState, name: str | None = None, max_latency_ms: float | None = None) -> str:
    """The student that answers: the one named, else the best aligned one whose batch-1 latency measured at
    start-up fits ``max_latency_ms``, else the default one."""
    if name is not None:
        if name not in state.students:
            available = ", ".join(state.students) or "none"
            raise HTTPException(status_code=404, detail=f"student {name!r} is not loaded (available: {available})")
        return name
    if not state.students:
        raise HTTPException(status_code=422, detail="no student is loaded yet")
    if max_latency_ms is not None:
        fits = [n for n in state.students if state.latency_ms.get(n, float("inf")) <= max_latency_ms]
        if not fits:
            fastest = min(state.students, key=lambda n: state.latency_ms.get(n, float("inf")))
            raise HTTPException(
                status_code=422,
                detail=f"no student answers within {max_latency_ms:g} ms on this machine (fastest: {fastest}, "
                f"{state.latency_ms.get(fastest, float('nan')):.1f} ms at batch 1)",
            )

        def quality(n: str) -> float:
            manifest = state.students[n].manifest
            return manifest.alignment.mean_cosine if manifest and manifest.alignment else 0.0

        return max(fits, key=quality)
    assert state.student is not None
    return state.student.name


State = Annotated[AppState, Depends(get_state)]
