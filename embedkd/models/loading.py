"""Resolve any model name to a local folder and load it with sentence-transformers.

A name is, in order: a known embedkd model (or one of its aliases), a local folder, or a
Hugging Face hub id. Hub ids are looked up in the local hub cache first; only when they are
missing there is the hub contacted, after a quick reachability probe so that an offline machine
fails in seconds with a message instead of retrying for minutes.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from embedkd.device import resolve_device
from embedkd.errors import ModelNotFoundError
from embedkd.models.registry import KNOWN_MODELS, find_spec

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["load_model", "resolve_model_path"]

logger = logging.getLogger(__name__)


class _StalePositionIdsFilter(logging.Filter):
    """Drops transformers' load report when its only finding is an unexpected ``embeddings.position_ids``:
    older BERT checkpoints (all-MiniLM-L6-v2's, which the default student and fusion index use) carry that
    buffer, which current transformers computes instead. The table is harmless and buried the demo's output;
    any other finding still prints the whole report."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "LOAD REPORT" not in message:
            return True
        findings = [line for line in message.splitlines() if "|" in line and line.split("|")[0].strip() != "Key"]
        findings = [line for line in findings if line.strip("-+| ")]
        return not findings or not all("position_ids" in f and "UNEXPECTED" in f for f in findings)


logging.getLogger("transformers.modeling_utils").addFilter(_StalePositionIdsFilter())


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes", "on"}


def _hub_reachable(timeout: float = 3.0) -> bool:
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _missing_model_message(name: str, reason: str) -> str:
    known = ", ".join(KNOWN_MODELS)
    return (
        f"model {name!r} not found: {reason}. Pass a local sentence-transformers folder, "
        f"one of the packaged offline models ({known}), or a hub id on a machine with internet "
        f"access (to prepare one offline: `huggingface-cli download {name}` elsewhere, then copy "
        "the folder here and pass its path)."
    )


def _is_model_folder(path: Path) -> bool:
    return (path / "modules.json").is_file() or (path / "config.json").is_file()


def resolve_model_path(name_or_path: str | os.PathLike[str]) -> Path:
    """Local folder for a model name, assembling packaged models or downloading hub ids if needed.

    Raises:
        ModelNotFoundError: with a message naming the model and how to get it.
    """
    name = str(name_or_path)
    spec = find_spec(name)
    if spec is not None:
        return spec.path()
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir() or not _is_model_folder(path):
            raise ModelNotFoundError(f"{path} is not a model folder (expected modules.json or config.json inside it)")
        return path
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelNotFoundError(_missing_model_message(name, "no such folder"))

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        return Path(snapshot_download(name, local_files_only=True))
    except HFValidationError as exc:
        raise ModelNotFoundError(_missing_model_message(name, "not a valid hub id or folder")) from exc
    except Exception:  # noqa: BLE001 - any miss in the local cache means "go to the hub"
        pass
    if _hub_offline():
        raise ModelNotFoundError(_missing_model_message(name, "HF_HUB_OFFLINE is set and it is not cached"))
    if not _hub_reachable():
        raise ModelNotFoundError(_missing_model_message(name, "the Hugging Face hub cannot be reached"))
    try:
        logger.info("downloading %s from the Hugging Face hub", name)
        return Path(snapshot_download(name))
    except Exception as exc:
        raise ModelNotFoundError(_missing_model_message(name, f"download failed ({exc})")) from exc


def load_model(
    name_or_path: str | os.PathLike[str],
    *,
    device: str | None = None,
    trust_remote_code: bool = False,
) -> SentenceTransformer:
    """Load a sentence-transformers model from any name :func:`resolve_model_path` accepts."""
    from sentence_transformers import SentenceTransformer

    path = resolve_model_path(name_or_path)
    try:
        return SentenceTransformer(
            str(path),
            device=resolve_device(device),
            local_files_only=True,
            trust_remote_code=trust_remote_code,
        )
    except OSError as exc:
        raise ModelNotFoundError(f"could not load the model in {path}: {exc}") from exc
    except json.JSONDecodeError as exc:  # a damaged modules.json, config.json, ...: not a usable model folder
        raise ModelNotFoundError(f"could not load the model in {path}: a JSON file is damaged ({exc})") from exc
