"""embedkd: distil a big embedding model into a small query encoder, search the big model's index."""

from __future__ import annotations

from embedkd._version import __version__
from embedkd.models import load_model, resolve_model_path

__all__ = ["__version__", "load_model", "resolve_model_path"]
