"""Exact maximum-inner-product search with torch: one code path for CPU and GPU."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["exact_search"]


def exact_search(
    queries: np.ndarray,
    documents: np.ndarray | torch.Tensor,
    k: int,
    *,
    device: str = "cpu",
    query_chunk: int = 1024,
    doc_chunk: int = 262_144,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` inner products of each query over all documents.

    Returns ``(scores, ids)`` arrays of shape ``(n_queries, k)``, best first, like faiss. Documents are
    scanned in chunks so memory stays bounded; ids are row numbers of ``documents``.
    """
    n_docs = documents.shape[0]
    k = min(k, n_docs)
    docs = documents if isinstance(documents, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(documents))
    docs = docs.to(device=device, dtype=torch.float32)
    all_scores, all_ids = [], []
    for q_start in range(0, queries.shape[0], query_chunk):
        q = torch.from_numpy(np.ascontiguousarray(queries[q_start : q_start + query_chunk], dtype=np.float32))
        q = q.to(device)
        best_scores = torch.full((q.shape[0], 0), -torch.inf, device=device)
        best_ids = torch.zeros((q.shape[0], 0), dtype=torch.long, device=device)
        for d_start in range(0, n_docs, doc_chunk):
            block = docs[d_start : d_start + doc_chunk]
            scores = q @ block.T
            top = torch.topk(scores, min(k, block.shape[0]), dim=1)
            best_scores = torch.cat([best_scores, top.values], dim=1)
            best_ids = torch.cat([best_ids, top.indices + d_start], dim=1)
            if best_scores.shape[1] > k:
                keep = torch.topk(best_scores, k, dim=1)
                best_scores = keep.values
                best_ids = torch.gather(best_ids, 1, keep.indices)
        all_scores.append(best_scores.cpu().numpy())
        all_ids.append(best_ids.cpu().numpy())
    return np.concatenate(all_scores), np.concatenate(all_ids).astype(np.int64)
