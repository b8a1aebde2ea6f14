"""Named offline models, model loading, students, and facts about model folders."""

from __future__ import annotations

from embedkd.models.embedder import Embedder
from embedkd.models.encoder import Encoder
from embedkd.models.info import FolderInfo, describe_folder, fingerprint
from embedkd.models.loading import load_model, resolve_model_path
from embedkd.models.manifest import Alignment, StudentManifest, TeacherRef
from embedkd.models.registry import KNOWN_MODELS, ModelSpec, ModelStatus, find_spec

__all__ = [
    "KNOWN_MODELS",
    "Alignment",
    "Embedder",
    "Encoder",
    "FolderInfo",
    "ModelSpec",
    "ModelStatus",
    "StudentManifest",
    "TeacherRef",
    "describe_folder",
    "find_spec",
    "fingerprint",
    "load_model",
    "resolve_model_path",
]
