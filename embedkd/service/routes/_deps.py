"""Shared helpers for routes: the app state and mapping library errors onto HTTP errors."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from embedkd.service.batching import MicroBatcher
from embedkd.service.state import AppState

__all__ = ["State", "batcher_for", "get_state"]


def get_state(request: Request) -> AppState:
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


State = Annotated[AppState, Depends(get_state)]
