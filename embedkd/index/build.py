"""Building a new index folder in one go: chunk, embed block by block, build faiss, rename into place."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from embedkd.data.documents import Document, validate_documents
from embedkd.errors import InputError
from embedkd.index.document_index import Embed, Index
from embedkd.index.faiss import IndexParams
from embedkd.models.manifest import TeacherRef
from embedkd.npy import fsync_dir
from embedkd.paths import check_parent_is_folder
from embedkd.staging import staging_dir

__all__ = ["build_index"]


def build_index(
    folder: Path,
    docs: Sequence[Document],
    *,
    teacher: TeacherRef,
    embed: Embed,
    params: IndexParams | None = None,
    chunking: bool = True,
    chunk_tokens: int | None = None,
    overlap: int | None = None,
    batch_docs: int = 2048,
    embed_block: int = 65_536,
    progress: bool = True,
    device: str = "cpu",
    precision: str = "fp32",
) -> Index:
    """Build a new index folder atomically: everything is written to a temp folder, then renamed.

    ``embed`` is called in order on blocks of at most ``embed_block`` chunk texts (a document is never split
    across blocks), so neither the vectors nor the faiss build need the whole corpus in memory at once.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} is a file; give a new folder for the index")
    check_parent_is_folder(folder, "the index folder")
    if folder.exists() and any(folder.iterdir()):
        raise InputError(f"{folder} exists and is not empty; choose a new folder or delete it first")
    docs = validate_documents(docs)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_dir(folder, "building")
    try:
        index = Index.create(
            tmp,
            teacher=teacher,
            params=params,
            chunking=chunking,
            chunk_tokens=chunk_tokens,
            overlap=overlap,
            device=device,
            precision=precision,
        )
        chunks = [index.chunk(doc) for doc in tqdm(docs, desc="chunking", unit="doc", disable=not progress)]
        start = 0
        while start < len(docs):  # embed and store a block at a time: memory stays bounded for any corpus
            stop, n = start, 0
            while stop < len(docs) and (stop == start or n + len(chunks[stop]) <= embed_block):
                n += len(chunks[stop])
                stop += 1
            texts = [c.encode_text for doc_chunks in chunks[start:stop] for c in doc_chunks]
            vectors = np.asarray(embed(texts), dtype=np.float32)  # cached and resumable on the teacher's side
            offset = 0
            for first in range(start, stop, batch_docs):
                last = min(first + batch_docs, stop)
                count = sum(len(c) for c in chunks[first:last])
                index.store.upsert(docs[first:last], chunks[first:last], vectors[offset : offset + count])
                offset += count
            start = stop
        index._rebuild()  # trains on a sample, then adds block by block from the store's memory map
        index.save()
        index.close()
        if folder.exists():
            folder.rmdir()
        os.rename(tmp, folder)
        fsync_dir(folder.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Index.open(folder, device=device)
