"""POST /search: asymmetric (student) or teacher queries against the teacher's index."""

from __future__ import annotations

import time
from dataclasses import asdict

import orjson
from fastapi import APIRouter, HTTPException, Response
from starlette.concurrency import run_in_threadpool

from embedkd.service.encoding import postprocess
from embedkd.service.routes._deps import State
from embedkd.service.routes.embed import check_inputs
from embedkd.service.schemas import SearchRequest, SearchResponse

router = APIRouter(tags=["search"])


@router.post("/search", response_model=SearchResponse)
async def search(body: SearchRequest, state: State) -> Response:
    started = time.perf_counter()
    if (body.query is None) == (body.queries is None):
        raise HTTPException(status_code=422, detail="give exactly one of 'query' or 'queries'")
    queries = [body.query] if body.query is not None else list(body.queries or [])
    check_inputs(queries, state)
    if body.k > state.settings.max_k:
        raise HTTPException(status_code=422, detail=f"k must be at most {state.settings.max_k}")
    role = "student" if body.mode == "asym" else "teacher"
    batcher = state.batchers.get(f"{role}:query")
    if batcher is None:
        raise HTTPException(status_code=422, detail=f"mode {body.mode!r} needs the {role} model, which is not loaded")
    raw, _ = await batcher.encode(queries)
    vectors = postprocess(raw)
    assert state.index is not None
    hits = await run_in_threadpool(
        state.index.search, vectors, body.k, filters=body.filter or None, include_text=body.include_text
    )
    payload = {
        "mode": body.mode,
        "model": batcher.stages.encoder.name,
        "results": [
            {"query": query, "hits": [asdict(hit) for hit in query_hits]}
            for query, query_hits in zip(queries, hits, strict=True)
        ],
        "took_ms": round((time.perf_counter() - started) * 1000, 3),
    }
    return Response(orjson.dumps(payload), media_type="application/json")
