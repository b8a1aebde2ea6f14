"""GET /models: what is loaded, which teacher everything is aligned to, and how well."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter

from embedkd.models.encoder import Encoder
from embedkd.service.routes._deps import State

router = APIRouter(tags=["models"])


def describe(encoder: Encoder) -> dict[str, Any]:
    info: dict[str, Any] = {
        "name": encoder.name,
        "path": str(encoder.path),
        "dimension": encoder.dimension,
        "fingerprint": encoder.fingerprint,
        "max_seq_length": encoder.max_seq_length,
        "parameters": encoder.parameters(),
        "device": encoder.device,
        "backend": encoder.backend,
        "precision": encoder.precision,
    }
    if encoder.manifest is not None:
        info["aligned_to"] = asdict(encoder.manifest.teacher)
        info["alignment"] = asdict(encoder.manifest.alignment) if encoder.manifest.alignment else None
    return info


def describe_student(state: Any, name: str) -> dict[str, Any]:
    info = describe(state.students[name])
    alignment = info.get("alignment") or {}
    ndcg = {k: v for k, v in (alignment.get("extra") or {}).items() if k.startswith("beir_") and "ndcg" in k}
    return {
        **info,
        "dev_ndcg": ndcg or None,
        "batch1_p50_ms": state.latency_ms.get(name),
        "index_coverage": state.coverage.get(name),  # None until the background check has run
    }


@router.get("/models")
async def models(state: State) -> dict[str, Any]:
    return {
        "students": [describe_student(state, name) for name in state.students],
        "student": describe(state.student) if state.student else None,
        "teacher": describe(state.teacher) if state.teacher else None,
        "index": state.index.info() if state.index else None,
        "fusion": (
            {
                **describe(state.fusion.encoder),
                "index": state.fusion.index.info(),
                "weight": state.fusion.weight,
                "candidates": state.fusion.candidates,
            }
            if state.fusion
            else None
        ),
        "search_mode": state.retriever.mode.value if state.retriever else None,
        "building": state.progress,
    }
