"""``manifest.json`` of an index folder: the teacher it belongs to, how it is built, what it holds."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from embedkd._version import __version__
from embedkd.errors import InputError
from embedkd.models.manifest import TeacherRef
from embedkd.npy import atomic_write_bytes

__all__ = ["IndexManifest"]

_FILE = "manifest.json"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class IndexManifest:
    teacher: TeacherRef
    dimension: int  # of the teacher's vectors (before any --dims truncation)
    params: dict[str, Any]  # IndexParams.to_dict()
    chunking: dict[str, Any]  # {"max_tokens": .., "overlap": .., "enabled": ..}
    metric: str = "inner_product"
    normalized: bool = True
    precision: str = "fp32"  # what the teacher computed the vectors in; later writes use the same

    counts: dict[str, int] = field(default_factory=dict)
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    embedkd_version: str = __version__

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "embedkd-index", **asdict(self)}

    def write(self, folder: Path) -> None:
        self.updated_at = _now()
        atomic_write_bytes(Path(folder) / _FILE, json.dumps(self.to_dict(), indent=2).encode())

    @classmethod
    def read(cls, folder: Path) -> IndexManifest:
        path = Path(folder) / _FILE
        if not path.is_file():
            raise InputError(f"{folder} is not an embedkd index (no {_FILE}); build one with `embedkd index build`")
        try:
            data = json.loads(path.read_text())
            return cls(
                teacher=TeacherRef(**data["teacher"]),
                dimension=int(data["dimension"]),
                params=dict(data["params"]),
                chunking=dict(data["chunking"]),
                metric=data.get("metric", "inner_product"),
                normalized=bool(data.get("normalized", True)),
                precision=str(data.get("precision", "fp32")),
                counts=dict(data.get("counts") or {}),
                created_at=data.get("created_at", ""),
                updated_at=data.get("updated_at", ""),
                embedkd_version=data.get("embedkd_version", ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: malformed index manifest ({exc})") from exc
