"""POST /encode: embedkd's embedding route (the student for queries, or the teacher), with its details.

TEI's ``POST /embed`` (a bare list of vectors) lives in ``routes/tei.py``; OpenAI's in ``routes/openai.py``.
The input checks below are shared by all three.
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, HTTPException, Response
from starlette.concurrency import run_in_threadpool

from embedkd.models.encoder import Encoder
from embedkd.service.encoding import EncoderStages, postprocess, to_base64
from embedkd.service.routes._deps import State, batcher_for, pick_student
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


def decode_tokens(encoder: Encoder, rows: list[list[int]]) -> list[str]:
    """Token-id inputs back to text, with the model's own tokenizer (ids outside its vocabulary are a 400)."""
    tokenizer = encoder.model.tokenizer
    size = len(tokenizer)
    for i, row in enumerate(rows):
        bad = next((t for t in row if not 0 <= t < size), None)
        if bad is not None:
            raise HTTPException(status_code=400, detail=f"input[{i}] holds token id {bad}, outside 0..{size - 1}")
    return encoder.decode(rows)


def input_texts(raw: str | list[str] | list[int] | list[list[int]], encoder: Encoder) -> list[str]:
    """One text, a list of texts, one token-id list or a list of them (OpenAI's and TEI's input shapes)."""
    if isinstance(raw, str):
        return [raw]
    if not raw:
        raise HTTPException(status_code=400, detail="inputs must not be empty")
    if all(isinstance(x, str) for x in raw):
        return [str(x) for x in raw]
    if all(isinstance(x, int) for x in raw):
        return decode_tokens(encoder, [[x for x in raw if isinstance(x, int)]])
    return decode_tokens(encoder, [[int(t) for t in row] for row in raw if isinstance(row, list)])


# Room for special tokens and a role prompt: a text whose UTF-8 bytes plus this fit cannot exceed the limit,
# since no tokenizer in use makes more tokens than bytes (WordPiece, SentencePiece and byte-level BPE alike).
_SPECIALS = 16


async def too_long(stages: EncoderStages, texts: list[str]) -> list[tuple[int, int]]:
    """(index, token count) of every input longer than the model reads. Only texts that could be too long
    are tokenised here, so short queries (the common case) are not tokenised twice."""
    budget = stages.max_tokens - _SPECIALS - len((stages.encoder.prompts.get(stages.role) or "").encode())
    suspects = [i for i, text in enumerate(texts) if len(text.encode("utf-8")) > budget]
    if not suspects:
        return []
    lengths = await run_in_threadpool(stages.token_lengths, [texts[i] for i in suspects])
    return [(i, n) for i, n in zip(suspects, lengths, strict=True) if n > stages.max_tokens]


@router.post("/encode", response_model=EmbedResponse)
async def encode(body: EmbedRequest, state: State) -> Response:
    texts = [body.inputs] if isinstance(body.inputs, str) else list(body.inputs)
    check_inputs(texts, state)
    prefix: str = body.model
    if body.student is not None:
        if body.model != "student":
            raise HTTPException(status_code=422, detail="student names a student: not with model teacher")
        prefix = state.student_prefix(pick_student(state, body.student))
    batcher = batcher_for(state, f"{prefix}:{body.input_type}")
    check_dimensions(body.dimensions, batcher.stages.dimension)
    long = await too_long(batcher.stages, texts)
    if long and not body.truncate:
        i, n = long[0]
        raise HTTPException(
            status_code=413,
            detail=f"input {i} has {n} tokens; the model reads {batcher.stages.max_tokens} "
            "(send truncate: true to cut it)",
        )
    raw, counts = await batcher.encode(texts)
    vectors = postprocess(raw, normalize=body.normalize, dimensions=body.dimensions)
    payload = {
        "model": batcher.stages.encoder.name,
        "dimensions": int(vectors.shape[1]),
        "embeddings": to_base64(vectors) if body.encoding_format == "base64" else vectors,
        "truncated": [i for i, _ in long],
        "usage": {"prompt_tokens": sum(counts), "total_tokens": sum(counts)},
    }
    return Response(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")
