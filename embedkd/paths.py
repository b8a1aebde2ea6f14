"""Where embedkd keeps its caches.

``EMBEDKD_CACHE_DIR`` (default ``~/.cache/embedkd``) is the root; assembled models live in
``<root>/models`` unless ``EMBEDKD_MODELS_DIR`` says otherwise, and the frozen layers' outputs that training
keeps (gigabytes) in ``<root>/layers`` unless ``EMBEDKD_LAYERS_DIR`` does. All are read at call time, never
at import time, so tests and services can point them elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "check_parent_is_folder", "layers_dir", "models_dir"]


def cache_dir() -> Path:
    """Root of every embedkd cache."""
    root = os.environ.get("EMBEDKD_CACHE_DIR")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "embedkd"


def models_dir() -> Path:
    """Directory holding models that embedkd assembles from packages."""
    override = os.environ.get("EMBEDKD_MODELS_DIR")
    return Path(override).expanduser() if override else cache_dir() / "models"


def layers_dir() -> Path:
    """Directory holding the frozen layers' outputs that training runs share (:mod:`embedkd.distill.layer_store`)."""
    override = os.environ.get("EMBEDKD_LAYERS_DIR")
    return Path(override).expanduser() if override else cache_dir() / "layers"


def check_parent_is_folder(path: Path, option: str) -> None:
    """Refuse an output ``path`` that lies inside a file (``--out notes.txt/x``, ``/dev/null/x``): its
    closest existing ancestor must be a folder, or creating it fails half-way with an OS error."""
    from embedkd.errors import InputError

    ancestor = Path(path).parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"{option} {path}: {ancestor} is a file, not a folder")
