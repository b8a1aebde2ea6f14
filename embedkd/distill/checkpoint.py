"""Training checkpoints: a sentence-transformers folder plus the optimiser and loop state, written atomically."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from embedkd.npy import fsync_dir

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["STATE_FILE", "copy_checkpoint", "load_state", "save_checkpoint"]

STATE_FILE = "trainer_state.pt"


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _replace_dir(tmp: Path, dest: Path) -> None:
    """Move a finished folder into place; the previous one stays until the new one is complete."""
    old = dest.with_name(dest.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if dest.exists():
        os.rename(dest, old)
    os.rename(tmp, dest)
    fsync_dir(dest.parent)
    if old.exists():
        shutil.rmtree(old)


def save_checkpoint(model: SentenceTransformer, state: dict[str, Any], dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        model.save(str(tmp))
        torch.save({**state, "rng": rng_state()}, tmp / STATE_FILE)
        _replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def copy_checkpoint(src: Path, dest: Path, *, with_state: bool = True) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    shutil.rmtree(tmp)
    ignore = None if with_state else shutil.ignore_patterns(STATE_FILE)
    shutil.copytree(src, tmp, ignore=ignore)
    _replace_dir(tmp, dest)


def load_state(folder: Path) -> dict[str, Any] | None:
    """The loop state saved in a checkpoint folder, or None when the folder has none (or is a stale .old)."""
    path = folder / STATE_FILE
    if not path.is_file():
        old = folder.with_name(folder.name + ".old")  # a crash between the two renames
        if (old / STATE_FILE).is_file():
            os.rename(old, folder)
        else:
            return None
    return torch.load(path, map_location="cpu", weights_only=False)
