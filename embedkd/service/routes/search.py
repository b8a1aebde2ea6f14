"""POST /search: asymmetric (student) or teacher queries against the teacher's index."""

from __future__ import annotations

import time
from dataclasses import asdict

import orjson
from fastapi import APIRouter, HTTPException, Response
from starlette.concurrency import run_in_threadpool

from embedkd.index.base import SearchParams
from embedkd.retrieval import RetrievalMode
from embedkd.service.encoding import postprocess
from embedkd.service.routes._deps import State, pick_student
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
    retriever, prefix = state.retriever, "student"
    if body.student is not None or body.max_latency_ms is not None:
        if body.mode == "teacher":
            raise HTTPException(
                status_code=422, detail="student and max_latency_ms choose a student: not with mode teacher"
            )
        name = pick_student(state, body.student, body.max_latency_ms)
        retriever, prefix = state.retrievers[name], state.student_prefix(name)
    mode = RetrievalMode(body.mode) if body.mode else (retriever.mode if retriever else RetrievalMode.ASYM)
    if retriever is None or retriever.encoder(mode) is None:
        detail = retriever.unavailable(mode) if retriever else "no model is loaded"
        raise HTTPException(status_code=422, detail=detail)
    fusion = retriever.fusion if body.fuse is not False else None
    if body.fuse and fusion is None:
        raise HTTPException(status_code=422, detail="this server has no fusion index (EMBEDKD_FUSE_INDEX)")
    batcher = state.batchers[f"{'teacher' if mode is RetrievalMode.TEACHER else prefix}:query"]
    second = None
    shared = state.batchers.get(f"{prefix}:fused") if mode is not RetrievalMode.TEACHER else None
    if fusion is not None and shared is not None:  # both query vectors in one pass (SharedTrunk)
        both, _ = await shared.encode(queries)
        first, rest = both[:, : batcher.stages.dimension], both[:, batcher.stages.dimension :]
        vectors, second = postprocess(first), postprocess(rest)
    else:
        raw, _ = await batcher.encode(queries)
        vectors = postprocess(raw)
    params = SearchParams(nprobe=body.nprobe, ef_search=body.ef_search)
    filters = body.filter or None
    search = retriever.search_vectors
    if fusion is None:
        hits = await run_in_threadpool(
            search, vectors, body.k, filters=filters, include_text=body.include_text, params=params
        )
    else:  # the candidates (without their texts), rescored in the fusion index's space
        pool = await run_in_threadpool(search, vectors, max(body.k, fusion.candidates), filters=filters, params=params)
        if second is None:
            raw_second, _ = await state.batchers["fusion:query"].encode(queries)
            second = postprocess(raw_second)
        hits = await run_in_threadpool(fusion.rescore_vectors, second, pool, body.k)
        if body.include_text:
            hits = await run_in_threadpool(retriever.index.with_text, hits)
    payload = {
        "mode": mode.value,
        "model": batcher.stages.encoder.name,
        "fused_with": fusion.encoder.name if fusion is not None else None,
        "results": [
            {"query": query, "hits": [asdict(hit) for hit in query_hits]}
            for query, query_hits in zip(queries, hits, strict=True)
        ],
        "took_ms": round((time.perf_counter() - started) * 1000, 3),
    }
    return Response(orjson.dumps(payload), media_type="application/json")
