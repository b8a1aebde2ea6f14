"""/documents: upsert (durable before the response), fetch and delete documents of the index."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from starlette.concurrency import run_in_threadpool

from embedkd.data.documents import Document
from embedkd.service.routes._deps import State
from embedkd.service.schemas import DeleteResponse, DocumentOut, DocumentsRequest, DocumentsResponse
from embedkd.service.state import AppState

router = APIRouter(prefix="/documents", tags=["documents"])


def _writable(state: AppState) -> None:
    if state.settings.read_only:
        raise HTTPException(
            status_code=403,
            detail="this server serves the index read-only (EMBEDKD_READ_ONLY); write through the process that "
            "writes the folder (a server without read_only, or `embedkd index add`): this one serves its "
            "documents as soon as they are committed",
        )


@router.post("", response_model=DocumentsResponse)
async def upsert_documents(body: DocumentsRequest, state: State) -> DocumentsResponse:
    settings = state.settings
    _writable(state)
    if len(body.documents) > settings.max_documents:
        raise HTTPException(
            status_code=413, detail=f"{len(body.documents)} documents; at most {settings.max_documents} per request"
        )
    for doc in body.documents:
        if len(doc.text) + len(doc.title) > settings.max_document_chars:
            raise HTTPException(
                status_code=413, detail=f"document {doc.id!r} exceeds {settings.max_document_chars} characters"
            )
    ids = [doc.id for doc in body.documents]
    if len(set(ids)) != len(ids):
        raise HTTPException(status_code=422, detail="duplicate document ids in one request")
    if state.teacher_cache is None or state.index is None:
        raise HTTPException(status_code=503, detail="document writes need the teacher, which is not loaded")
    if state.pending_writes >= settings.max_pending_writes:
        raise HTTPException(
            status_code=503, detail="too many document writes in flight; retry shortly", headers={"Retry-After": "1"}
        )
    docs = [Document(id=d.id, text=d.text, title=d.title, metadata=dict(d.metadata)) for d in body.documents]
    index = state.index
    state.pending_writes += 1
    try:
        result = await run_in_threadpool(state.upsert, docs)
    finally:
        state.pending_writes -= 1
    counts = index.store.counts()
    state.metrics.index_documents.set(counts["documents"])
    state.metrics.index_chunks.set(counts["chunks"])
    return DocumentsResponse(upserted=len(docs), documents=counts["documents"], **result)


@router.get("/{doc_id:path}", response_model=DocumentOut)
async def get_document(doc_id: str, state: State) -> DocumentOut:
    assert state.index is not None
    doc = await run_in_threadpool(state.index.store.document, doc_id)
    if doc is None:
        raise HTTPException(status_code=404, detail=f"no document with id {doc_id!r}")
    return DocumentOut(**doc.__dict__)


@router.delete("/{doc_id:path}", response_model=DeleteResponse)
async def delete_document(doc_id: str, state: State) -> DeleteResponse:
    assert state.index is not None
    _writable(state)
    result = await run_in_threadpool(state.delete, [doc_id])
    if result["missing"]:
        raise HTTPException(status_code=404, detail=f"no document with id {doc_id!r}")
    counts = state.index.store.counts()
    state.metrics.index_documents.set(counts["documents"])
    state.metrics.index_chunks.set(counts["chunks"])
    return DeleteResponse(deleted=doc_id)
