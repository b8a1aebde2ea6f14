"""The ``embedkd.json`` manifest saved next to a student: which teacher it is aligned to, and how well.

It is plain JSON inside an ordinary sentence-transformers folder, so the folder still loads with
``SentenceTransformer(path)`` alone; embedkd reads the manifest to check a student against an index.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from embedkd._version import __version__
from embedkd.errors import InputError
from embedkd.npy import atomic_write_bytes

__all__ = ["MANIFEST_FILE", "Alignment", "StudentManifest", "TeacherRef"]

MANIFEST_FILE = "embedkd.json"


@dataclass
class TeacherRef:
    """The identity of a teacher: what indexes and students are checked against."""

    name: str
    fingerprint: str
    dimension: int
    max_seq_length: int | None = None
    prompts: dict[str, str] = field(default_factory=dict)


@dataclass
class Alignment:
    """Measured agreement between a student and its teacher on held-out texts."""

    mean_cosine: float
    mse: float
    texts: int
    held_out: str  # what the texts were
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. per-kind cosines, BEIR dev nDCG


@dataclass
class StudentManifest:
    teacher: TeacherRef
    base: str
    layers: list[int] | None = None
    alignment: Alignment | None = None
    training: dict[str, Any] = field(default_factory=dict)
    # per inference backend (onnx, onnx-int8, openvino, ...): its measured fidelity and alignment
    backends: dict[str, dict[str, Any]] = field(default_factory=dict)
    embedkd_version: str = __version__
    created_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "embedkd-student", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudentManifest:
        try:
            teacher = TeacherRef(**data["teacher"])
            alignment = Alignment(**data["alignment"]) if data.get("alignment") else None
        except (KeyError, TypeError) as exc:
            raise InputError(f"malformed student manifest: {exc}") from exc
        return cls(
            teacher=teacher,
            base=str(data.get("base", "")),
            layers=data.get("layers"),
            alignment=alignment,
            training=dict(data.get("training") or {}),
            backends={str(k): dict(v) for k, v in (data.get("backends") or {}).items()},
            embedkd_version=str(data.get("embedkd_version", "")),
            created_at=str(data.get("created_at", "")),
        )

    def write(self, folder: Path) -> Path:
        path = Path(folder) / MANIFEST_FILE
        atomic_write_bytes(path, json.dumps(self.to_dict(), indent=2).encode())
        return path

    @classmethod
    def read(cls, folder: Path) -> StudentManifest | None:
        """The manifest in ``folder``, or None for a model embedkd did not train."""
        path = Path(folder) / MANIFEST_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            raise InputError(f"{path}: invalid JSON ({exc})") from exc
        return cls.from_dict(data)
