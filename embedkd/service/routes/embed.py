"""POST /embed: embeddings from the student (queries) or the teacher."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, HTTPException, Response

from embedkd.service.encoding import postprocess, to_base64
from embedkd.service.routes._deps import State, batcher_for
from embedkd.service.schemas import EmbedRequest, EmbedResponse
from embedkd.service.state import AppState

router = APIRouter(tags=["embeddings"])


def check_inputs(texts: list[str], state: AppState) -> None:
    limits = state.settings
    if not texts:
        raise HTTPException(status_code=422, detail="inputs must hold at least one text")
    if len(texts) > limits.max_inputs:
        raise HTTPException(status_code=413, detail=f"{len(texts)} inputs; at most {limits.max_inputs} per request")
    for i, text in enumerate(texts):
        if len(text) > limits.max_input_chars:
            raise HTTPException(
                status_code=413, detail=f"input {i} has {len(text)} characters; the limit is {limits.max_input_chars}"
            )


def check_dimensions(dimensions: int | None, full: int) -> None:
    if dimensions is not None and not 1 <= dimensions <= full:
        raise HTTPException(status_code=422, detail=f"dimensions must be between 1 and {full}, got {dimensions}")


@router.post("/embed", response_model=EmbedResponse)
async def embed(body: EmbedRequest, state: State) -> Response:
    texts = [body.inputs] if isinstance(body.inputs, str) else list(body.inputs)
    check_inputs(texts, state)
    batcher = batcher_for(state, f"{body.model}:{body.input_type}")
    check_dimensions(body.dimensions, batcher.stages.dimension)
    raw, counts = await batcher.encode(texts)
    vectors = postprocess(raw, normalize=body.normalize, dimensions=body.dimensions)
    payload = {
        "model": batcher.stages.encoder.name,
        "dimensions": int(vectors.shape[1]),
        "embeddings": to_base64(vectors) if body.encoding_format == "base64" else vectors,
        "usage": {"prompt_tokens": sum(counts), "total_tokens": sum(counts)},
    }
    return Response(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")
