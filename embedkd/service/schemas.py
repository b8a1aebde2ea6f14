"""Request and response bodies of every route."""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, model_validator

from embedkd.data.documents import check_metadata_value
from embedkd.data.jsonl import reject_surrogates
from embedkd.index.store import MAX_FILTER_KEYS

__all__ = [
    "DeleteResponse",
    "DocumentIn",
    "DocumentOut",
    "DocumentsRequest",
    "DocumentsResponse",
    "EmbedRequest",
    "EmbedResponse",
    "Hit",
    "OpenAIEmbedding",
    "OpenAIEmbeddingsRequest",
    "OpenAIEmbeddingsResponse",
    "SearchRequest",
    "SearchResponse",
    "SearchResult",
    "TEIEmbedRequest",
    "Usage",
]


def _storable(metadata: dict[str, Any]) -> dict[str, Any]:
    check_metadata_value(metadata, "metadata")  # no NaN or Infinity, no integer beyond 64 bits
    return metadata


Metadata = Annotated[dict[str, str | int | float | bool | None], AfterValidator(_storable)]


class _ValidText(BaseModel):
    """Request bodies whose every string is valid Unicode."""

    @model_validator(mode="after")
    def _valid_unicode(self) -> _ValidText:
        for name in type(self).model_fields:
            reject_surrogates(getattr(self, name), name)
        return self


class _Strict(_ValidText):
    model_config = ConfigDict(extra="forbid")


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbedRequest(_Strict):
    """``POST /encode``: embedkd's own embedding request (TEI's shape is ``POST /embed``)."""

    inputs: str | list[str] = Field(description="One text or a list of texts.")
    model: Literal["student", "teacher"] = "student"
    student: str | None = Field(default=None, description="Which loaded student, by name (default: the default one).")
    input_type: Literal["query", "document"] = "query"
    normalize: bool = True
    dimensions: StrictInt | None = Field(default=None, ge=1, description="Keep the first N dimensions.")
    encoding_format: Literal["float", "base64"] = "float"
    truncate: bool = Field(
        default=True,
        description="Cut inputs longer than the model's max_seq_length (listed in `truncated`); false: 413 instead.",
    )


class EmbedResponse(BaseModel):
    model: str
    dimensions: int
    embeddings: list[list[float]] | list[str]
    truncated: list[int] = Field(description="Indices of the inputs that were cut to the model's token limit.")
    usage: Usage


class TEIEmbedRequest(_ValidText):
    """text-embeddings-inference's ``POST /embed`` request; unknown fields are ignored, as TEI does."""

    inputs: str | list[str] | list[StrictInt] | list[list[StrictInt]]
    normalize: bool = True
    truncate: bool | None = Field(default=None, description="Default: the server's auto_truncate setting.")
    truncation_direction: Literal["Left", "Right", "left", "right"] = "Right"
    prompt_name: str | None = Field(
        default=None, description="query (the student, the default) or document (the teacher, when loaded)."
    )
    dimensions: StrictInt | None = Field(default=None, ge=1)  # true is not 1, nor a token id


class OpenAIEmbeddingsRequest(_ValidText):
    """OpenAI's embeddings request; unknown fields (``user``, ...) are accepted and ignored.

    ``input`` may be token ids (one list, or a list of lists), as LangChain's ``OpenAIEmbeddings`` sends by
    default; they are decoded with the model's own tokenizer. ``input_type`` (an extension, as in Cohere's
    and Voyage's APIs) picks the query or document side; without it the student embeds queries and the
    teacher documents.
    """

    input: str | list[str] | list[StrictInt] | list[list[StrictInt]]
    model: str
    input_type: Literal["query", "document"] | None = None
    dimensions: StrictInt | None = Field(default=None, ge=1)  # true is not 1, nor a token id
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None


class OpenAIEmbedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class OpenAIEmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIEmbedding]
    model: str
    usage: Usage


class SearchRequest(_Strict):
    query: str | None = None
    queries: list[str] | None = None
    k: int = Field(default=10, ge=1)
    mode: Literal["asym", "teacher", "student"] | None = Field(
        default=None,
        description="asym: student queries on the teacher's index; teacher: teacher queries (the ceiling); "
        "student: student queries on an index the student built itself. Default: asym once a student is "
        "loaded, teacher until then.",
    )
    filter: Metadata | None = Field(
        default=None, max_length=MAX_FILTER_KEYS, description="Metadata equality on every key."
    )
    include_text: bool = True
    student: str | None = Field(default=None, description="Which loaded student embeds the query (GET /models).")
    max_latency_ms: float | None = Field(
        default=None, gt=0, description="Pick the best aligned student whose measured batch-1 latency fits."
    )
    nprobe: int | None = Field(default=None, ge=1, le=65_536, description="IVF lists searched (ivf kinds).")
    ef_search: int | None = Field(default=None, ge=1, le=65_536, description="HNSW candidate list (hnsw kind).")
    fuse: bool | None = Field(
        default=None,
        description="Rescore the candidates with the server's fusion index (EMBEDKD_FUSE_INDEX). Default: on when "
        "the server has one; false searches the main index alone.",
    )


class Hit(BaseModel):
    id: str
    score: float
    title: str
    passage: str
    chunk: int
    metadata: dict[str, Any]
    text: str | None = None


class SearchResult(BaseModel):
    query: str
    hits: list[Hit]


class SearchResponse(BaseModel):
    mode: str
    model: str
    fused_with: str | None = Field(default=None, description="The fusion index's model, when it rescored.")
    results: list[SearchResult]
    took_ms: float


class DocumentIn(_Strict):
    id: str = Field(min_length=1, max_length=512, description="Any text but '.' and '..' (unreachable in URLs).")
    text: str
    title: str = ""
    metadata: Metadata = Field(default_factory=dict)

    @model_validator(mode="after")
    def _addressable_id(self) -> DocumentIn:
        if self.id in {".", ".."}:  # clients normalise /documents/. and /documents/.. away
            raise ValueError(f"document id {self.id!r} cannot be addressed in a URL; choose another id")
        if any(unicodedata.category(c) == "Cc" for c in self.id):  # newlines, tabs, NUL: no route can match them
            raise ValueError(f"document id {self.id!r} holds a control character; ids must be printable")
        return self


class DocumentsRequest(_Strict):
    documents: list[DocumentIn] = Field(min_length=1)


class DocumentsResponse(BaseModel):
    upserted: int
    inserted: int
    replaced: int
    chunks: int
    documents: int


class DocumentOut(BaseModel):
    id: str
    title: str
    text: str
    metadata: dict[str, Any]
    chunks: int
    created_at: float
    updated_at: float


class DeleteResponse(BaseModel):
    deleted: str
