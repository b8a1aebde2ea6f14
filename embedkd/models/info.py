"""Facts about a model folder read from its files, without loading the model."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from embedkd.errors import ModelNotFoundError
from embedkd.models.assemble import MARKER_FILE, sha256_file
from embedkd.paths import cache_dir

__all__ = ["FolderInfo", "describe_folder", "fingerprint"]

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class FolderInfo:
    dimension: int | None
    parameters: int | None
    max_seq_length: int | None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _module_dirs(folder: Path) -> list[Path]:
    modules = _read_json(folder / "modules.json")
    if not isinstance(modules, list):
        return [folder]
    return [folder / m.get("path", "") for m in modules]


def _output_dimension(folder: Path) -> int | None:
    dimension = None
    for module_dir in _module_dirs(folder):
        config = _read_json(module_dir / "config.json") if module_dir != folder else {}
        for key in ("out_features", "embedding_dimension", "word_embedding_dimension"):
            if isinstance(config.get(key), int):
                dimension = config[key]
                break
    if dimension is None:
        hidden = _read_json(folder / "config.json").get("hidden_size")
        dimension = hidden if isinstance(hidden, int) else None
    return dimension


def _count_parameters(folder: Path) -> int | None:
    from safetensors import safe_open

    total = 0
    files = sorted({p for d in _module_dirs(folder) for p in d.glob("*.safetensors")})
    if not files:
        return None
    for file in files:
        with safe_open(str(file), framework="numpy") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open has no __iter__
                count = 1
                for size in handle.get_slice(key).get_shape():
                    count *= size
                total += count
    return total


def describe_folder(folder: Path) -> FolderInfo:
    """Output dimension, parameter count and max sequence length of a sentence-transformers folder."""
    # sentence-transformers < 6 writes max_seq_length to sentence_bert_config.json; 6.x keeps it as
    # the tokenizer's model_max_length.
    max_len = _read_json(folder / "sentence_bert_config.json").get("max_seq_length")
    if not isinstance(max_len, int):
        max_len = _read_json(folder / "tokenizer_config.json").get("model_max_length")
    if isinstance(max_len, int) and max_len > 1_000_000:  # transformers' "no limit" sentinel
        max_len = None
    return FolderInfo(
        dimension=_output_dimension(folder),
        parameters=_count_parameters(folder),
        max_seq_length=max_len if isinstance(max_len, int) else None,
    )


def _weights_files(folder: Path) -> list[Path]:
    files: list[Path] = []
    for module_dir in _module_dirs(folder):
        for name in _WEIGHT_FILES:
            if (module_dir / name).is_file():
                files.append(module_dir / name)
                break
    return sorted(set(files))


def _file_sha256(weights: Path) -> str:
    """sha256 of one file, from the assembly marker or a memo keyed by path, size and mtime."""
    stat = weights.stat()
    marker = _read_json(weights.parent / MARKER_FILE)
    if marker.get("size") == stat.st_size and isinstance(marker.get("sha256"), str):
        return str(marker["sha256"])
    memo_path = cache_dir() / "fingerprints.json"
    memo = _read_json(memo_path)
    key = f"{weights.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    if isinstance(memo.get(key), str):
        return str(memo[key])
    digest = sha256_file(weights)
    memo[key] = digest
    try:
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo_path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo, indent=1))
        os.replace(tmp, memo_path)
    except OSError:
        pass  # the memo is an optimisation only
    return digest


def fingerprint(folder: Path) -> str:
    """The identity that indexes and students record for a model: a sha256 of its weights.

    For a folder with one weights file (most models, the teacher included) it is that file's sha256, so it
    can be compared with published checksums. When modules carry weights of their own (a student's
    ``2_Dense``), it is the sha256 of the sorted ``relative/path:sha256`` lines of all of them.
    """
    folder = Path(folder).resolve()
    files = _weights_files(folder)
    if not files:
        raise ModelNotFoundError(f"no weights file ({', '.join(_WEIGHT_FILES)}) in {folder}")
    if len(files) == 1:
        return _file_sha256(files[0])
    lines = "".join(f"{f.relative_to(folder)}:{_file_sha256(f)}\n" for f in files)
    return hashlib.sha256(lines.encode()).hexdigest()
