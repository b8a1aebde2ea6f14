"""text-embeddings-inference's routes, so TEI clients work unchanged: ``POST /embed`` and ``GET /info``.

``/embed`` answers a bare list of vectors, errors are ``{"error", "error_type"}`` with TEI's status codes,
and an input longer than the model reads is refused (413) unless ``truncate`` is set (or the server's
``auto_truncate``), as TEI does. ``prompt_name`` picks the side: ``query`` (the default) embeds with the
student, ``document``/``passage`` with the teacher when one is loaded, so both land in the index's space.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Response

from embedkd import __version__
from embedkd.service.batching import MicroBatcher
from embedkd.service.encoding import postprocess
from embedkd.service.routes._deps import State
from embedkd.service.routes.embed import check_dimensions, check_inputs, input_texts, too_long
from embedkd.service.schemas import TEIEmbedRequest
from embedkd.service.state import AppState

router = APIRouter(tags=["tei"])

_SIDES = {"query": "query", "queries": "query", "document": "document", "passage": "document", "corpus": "document"}


def tei_batcher(state: AppState, prompt_name: str | None) -> MicroBatcher:
    side = _SIDES.get((prompt_name or "query").lower())
    if side is None:
        raise HTTPException(
            status_code=413, detail=f"prompt_name {prompt_name!r} not found; use query or document (or passage)"
        )
    order = ("student", "teacher") if side == "query" else ("teacher", "student")
    for role in order:
        batcher = state.batchers.get(f"{role}:{side}")
        if batcher is not None:
            return batcher
    raise HTTPException(status_code=503, detail="no model is loaded")


@router.post("/embed")
async def embed(body: TEIEmbedRequest, state: State) -> Response:
    batcher = tei_batcher(state, body.prompt_name)
    stages = batcher.stages
    texts = input_texts(body.inputs, stages.encoder)
    check_inputs(texts, state)
    check_dimensions(body.dimensions, stages.dimension)
    truncate = state.settings.auto_truncate if body.truncate is None else body.truncate
    long = await too_long(stages, texts)
    if long and not truncate:
        i, n = long[0]
        raise HTTPException(
            status_code=413,
            detail=f"Input validation error: `inputs` must have less than {stages.max_tokens} tokens. "
            f"Given: {n} (input {i}; send truncate: true to cut it)",
        )
    if long and body.truncation_direction.lower() == "left":
        cut = stages.keep_end([texts[i] for i, _ in long])
        for (i, _), text in zip(long, cut, strict=True):
            texts[i] = text
    raw, _ = await batcher.encode(texts)
    vectors = postprocess(raw, normalize=body.normalize, dimensions=body.dimensions)
    return Response(orjson.dumps(vectors, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")


def _pooling(state: AppState) -> str:
    encoder = state.student or state.teacher
    for module in list(encoder.model) if encoder is not None else []:
        mode = getattr(module, "get_pooling_mode_str", None)
        if callable(mode):
            return str(mode())
    return "mean"


@router.get("/info")
async def info(state: State) -> dict[str, Any]:
    """TEI's ``/info``: the model served by ``/embed`` by default (the student, else the teacher)."""
    stages = tei_batcher(state, None).stages
    encoder = stages.encoder
    settings = state.settings
    return {
        "model_id": encoder.name,
        "model_sha": encoder.fingerprint,
        "model_dtype": "float32",
        "model_type": {"embedding": {"pooling": _pooling(state)}},
        "max_concurrent_requests": settings.max_queue,
        "max_input_length": stages.max_tokens,
        "max_batch_tokens": settings.max_batch_size * stages.max_tokens,
        "max_batch_requests": settings.max_batch_size,
        "max_client_batch_size": settings.max_inputs,
        "auto_truncate": settings.auto_truncate,
        "tokenization_workers": 1,
        "version": __version__,
        "sha": None,
        "docker_label": None,
        "embedkd": {"models": state.model_names(), "dimension": stages.dimension},
    }
