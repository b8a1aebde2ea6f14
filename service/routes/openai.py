"""POST /v1/embeddings: the OpenAI embeddings API, so OpenAI clients work unchanged."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, HTTPException, Response

from service.encoding import postprocess, to_base64
from service.routes._deps import State
from service.routes.embed import check_dimensions, check_inputs
from service.schemas import OpenAIEmbeddingsRequest, OpenAIEmbeddingsResponse
from service.state import AppState

router = APIRouter(prefix="/v1", tags=["openai"])


def resolve_model(state: AppState, requested: str) -> str:
    """Map an OpenAI ``model`` string onto a loaded model: its role or its name."""
    for role, name in state.model_names().items():
        if requested in {role, name, f"embedkd-{role}"}:
            return role
    available = ", ".join(f"{role} ({name})" for role, name in state.model_names().items())
    raise HTTPException(status_code=404, detail=f"model {requested!r} not found; available: {available}")


@router.post("/embeddings", response_model=OpenAIEmbeddingsResponse)
async def embeddings(body: OpenAIEmbeddingsRequest, state: State) -> Response:
    if isinstance(body.input, str):
        texts = [body.input]
    elif all(isinstance(x, str) for x in body.input):
        texts = list(body.input)  # type: ignore[arg-type]
    else:
        raise HTTPException(status_code=422, detail="token-id inputs are not supported; send the text instead")
    check_inputs(texts, state)
    role = resolve_model(state, body.model)
    # OpenAI has no input type: the student is a query encoder, the teacher embeds documents.
    batcher = state.batchers[f"{role}:query" if role == "student" else f"{role}:document"]
    check_dimensions(body.dimensions, batcher.stages.dimension)
    raw, counts = await batcher.encode(texts)
    vectors = postprocess(raw, normalize=True, dimensions=body.dimensions)
    rows = to_base64(vectors) if body.encoding_format == "base64" else vectors
    payload = {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)],
        "model": body.model,
        "usage": {"prompt_tokens": sum(counts), "total_tokens": sum(counts)},
    }
    return Response(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")
