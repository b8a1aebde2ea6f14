"""POST /v1/embeddings: the OpenAI embeddings API, so OpenAI clients work unchanged."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Response

from embedkd.service.encoding import postprocess, to_base64
from embedkd.service.routes._deps import State
from embedkd.service.routes.embed import check_dimensions, check_inputs, input_texts
from embedkd.service.schemas import OpenAIEmbeddingsRequest, OpenAIEmbeddingsResponse
from embedkd.service.state import AppState

router = APIRouter(prefix="/v1", tags=["openai"])


def resolve_model(state: AppState, requested: str) -> tuple[str, str]:
    """Map an OpenAI ``model`` string onto a loaded model: ``(role, batcher prefix)``. A role (``student``,
    ``teacher``) or a model's name; every student of the family answers to its own name."""
    for role, name in state.model_names().items():
        if requested in {role, name, f"embedkd-{role}"}:
            return role, role
    if requested in state.students:
        return "student", state.student_prefix(requested)
    names = {**state.model_names(), **{n: n for n in state.students}}
    available = ", ".join(sorted(set(names.values())))
    raise HTTPException(status_code=404, detail=f"model {requested!r} not found; available: {available}")


@router.post("/embeddings", response_model=OpenAIEmbeddingsResponse)
async def embeddings(body: OpenAIEmbeddingsRequest, state: State) -> Response:
    role, prefix = resolve_model(state, body.model)
    # The student embeds queries and the teacher documents, unless the request names the side it wants.
    side = body.input_type or ("query" if role == "student" else "document")
    batcher = state.batchers[f"{prefix}:{side}"]
    texts = input_texts(body.input, batcher.stages.encoder)
    check_inputs(texts, state)
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


@router.get("/models")
async def list_models(state: State) -> dict[str, Any]:
    """OpenAI's model list: what ``client.models.list()``, Open WebUI and LiteLLM call."""
    created = int(state.started_at)
    data = [
        {"id": name, "object": "model", "created": created, "owned_by": "embedkd", "role": role}
        for role, name in state.model_names().items()
    ]
    data += [
        {"id": name, "object": "model", "created": created, "owned_by": "embedkd", "role": "student"}
        for name in state.students
        if state.student is None or name != state.student.name
    ]
    return {"object": "list", "data": data}
