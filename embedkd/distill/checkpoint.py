"""Training checkpoints: a sentence-transformers folder plus the optimiser and loop state, written atomically;
and the manifest (``embedkd.json``) of the student a run keeps."""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from embedkd.distill.data import describe
from embedkd.errors import InputError
from embedkd.locks import FolderLock
from embedkd.models.manifest import MANIFEST_FILE, Alignment, StudentManifest
from embedkd.models.student import projection, save_student, set_max_seq_length
from embedkd.npy import fsync_dir
from embedkd.staging import staging_dir

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sentence_transformers import SentenceTransformer

    from embedkd.distill.config import DistillConfig
    from embedkd.distill.data import TrainingText
    from embedkd.distill.teacher import Teacher
    from embedkd.models.manifest import TeacherRef

__all__ = [
    "STATE_FILE",
    "copy_checkpoint",
    "check_init_teacher",
    "check_resumable",
    "damaged_checkpoint",
    "init_manifest",
    "load_init_student",
    "load_state",
    "publish_student",
    "replace_dir",
    "save_checkpoint",
    "training_lock",
    "training_manifest",
]

STATE_FILE = "trainer_state.pt"


def rng_state() -> dict[str, Any]:
    """Every RNG's state in plain types and tensors, so ``torch.load(weights_only=True)`` can read it."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in state["python"]))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def replace_dir(tmp: Path, dest: Path) -> None:
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


def publish_student(
    model: SentenceTransformer,
    manifest: StudentManifest,
    history: Sequence[dict[str, Any]],
    out: Path,
    checkpoints: Path | None,
) -> None:
    """Save the kept student, its training log and (given ``checkpoints``) the run's checkpoints to ``out``.

    The new student is written beside the folder, then renamed into place: the old one (if any) stays whole
    until the new one is complete, and nothing else is ever deleted.
    """
    tmp = staging_dir(out, "saving")
    try:
        save_student(model, tmp, manifest)
        (tmp / "training_log.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
        if checkpoints is not None and checkpoints.is_dir():
            os.rename(checkpoints, tmp / "checkpoints")
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_checkpoint(
    model: SentenceTransformer, state: dict[str, Any], dest: Path, *, max_seq_length: int | None = None
) -> None:
    """Save ``model`` and the trainer's ``state`` to ``dest`` atomically.

    ``max_seq_length`` is the student's own truncation length, which the folder records in place of the
    shorter one the model trains with, so that a checkpoint loads as a usable student.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_dir(dest)
    training, training_length = model.training, model.max_seq_length
    try:
        set_max_seq_length(model, max_seq_length)
        model.save(str(tmp))  # sentence-transformers' model card encodes examples, which sets eval mode
        set_max_seq_length(model, training_length)
        model.train(training)
        torch.save({**state, "rng": rng_state()}, tmp / STATE_FILE)
        _fsync_tree(tmp)  # durable before the rename makes it the checkpoint
        replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def copy_checkpoint(src: Path, dest: Path, *, with_state: bool = True) -> None:
    tmp = staging_dir(dest)
    shutil.rmtree(tmp)
    ignore = None if with_state else shutil.ignore_patterns(STATE_FILE)
    shutil.copytree(src, tmp, ignore=ignore)
    _fsync_tree(tmp)
    replace_dir(tmp, dest)


def _fsync_tree(folder: Path) -> None:
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                os.fsync(handle.fileno())
        fsync_dir(Path(root))


def load_state(folder: Path) -> dict[str, Any] | None:
    """The loop state saved in a checkpoint folder, or None when the folder has none (or is a stale .old)."""
    path = folder / STATE_FILE
    if not path.is_file():
        old = folder.with_name(folder.name + ".old")  # a crash between the two renames
        if (old / STATE_FILE).is_file():
            os.rename(old, folder)
        else:
            return None
    try:  # weights_only: a checkpoint holds tensors and plain values only, and loading never runs pickled code
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated, empty or foreign files raise any of several types
        raise damaged_checkpoint(folder, exc) from exc


def damaged_checkpoint(folder: Path, exc: BaseException) -> InputError:
    """The error for a checkpoint that cannot be read back (an empty file once ended as click's bare
    "Aborted.", since torch raised EOFError)."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return InputError(
        f"checkpoint {folder} is damaged ({reason}); delete it to resume from the start, or train without --resume"
    )


def check_resumable(out: Path) -> None:
    """Refuse ``--resume`` where nothing can be resumed but something would be lost: a checkpoint without its
    loop state, or a finished student whose checkpoints were not kept (a fresh run would replace it)."""
    last = out / "checkpoints" / "last"
    if load_state(last) is not None:
        return
    if last.is_dir() and any(last.iterdir()):
        raise damaged_checkpoint(last, FileNotFoundError(f"{STATE_FILE} is missing"))
    if (out / MANIFEST_FILE).is_file():
        raise InputError(
            f"--resume: {out} holds a finished student and no checkpoint to resume (a run keeps them only with "
            "--keep-checkpoints); to train it further give --init-from and a new --out, or leave out --resume "
            "to train it again from the start"
        )


def check_out_folder(out: Path) -> None:
    """Refuse an output folder that holds anything but an embedkd student or a run's checkpoints."""
    if not out.exists():
        return
    if not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder for the student")
    children = {child.name for child in out.iterdir()}
    if children and "embedkd.json" not in children and children != {"checkpoints"}:
        raise InputError(
            f"--out {out} is not empty and does not hold an embedkd student; choose a new or empty folder "
            "(its files would be replaced)"
        )


def init_manifest(folder: Path, out: Path | None = None, *, option: str = "--init-from") -> StudentManifest:
    """The manifest of the student a run starts from (``--init-from``), or a clear error; before any model loads."""
    if not folder.is_dir():
        raise InputError(f"{option} {folder}: no such student folder")
    if out is not None and folder.resolve() == out.resolve():
        raise InputError(f"{option} {folder} is also --out; write the adapted student to a new folder")
    manifest = StudentManifest.read(folder)
    if manifest is None:
        raise InputError(f"{option} {folder} is not an embedkd student (no embedkd.json)")
    return manifest


def check_init_teacher(folder: Path, manifest: StudentManifest, teacher: TeacherRef) -> None:
    """Refuse a ``--init-from`` student aligned to another teacher, before the teacher's targets are computed."""
    if manifest.teacher.fingerprint != teacher.fingerprint:
        raise InputError(
            f"--init-from {folder} was aligned to {manifest.teacher.name} ({manifest.teacher.fingerprint[:12]}…), "
            f"not to this run's teacher {teacher.name} ({teacher.fingerprint[:12]}…)"
        )


def load_init_student(folder: Path, dimension: int, device: str) -> SentenceTransformer:
    """The trained student a run starts from (``--init-from``): its backbone and its projection."""
    from sentence_transformers import SentenceTransformer

    try:
        model = SentenceTransformer(str(folder), device=device)
        width = projection(model).out_features
    except InputError as exc:
        raise InputError(f"--init-from {folder}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - a missing or truncated file raises any of several types
        raise InputError(f"--init-from {folder}: the student cannot be loaded ({type(exc).__name__}: {exc})") from exc
    if width != dimension:
        raise InputError(f"--init-from {folder} writes {width}-d vectors; the teacher's are {dimension}-d")
    return model


@contextmanager
def training_lock(out: Path) -> Iterator[None]:
    """Held by a training run on its ``--out`` for its whole life, so that a second run into the same folder
    is refused instead of overwriting this one's checkpoints: a ``flock`` on a hidden ``.NAME.training.lock``
    beside the folder (the folder itself is renamed when the student is published), which the kernel drops
    however the process ends, and whose file the run removes when it ends (a killed run's stays until the
    next run). Under torchrun only rank 0 writes the folder, and only it takes the lock."""
    if int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    lock = FolderLock(
        out.parent,
        name=f".{out.name}.training.lock",
        busy=f"--out {out} is being trained into by another run " + "({holder}); wait for it to finish, or give "
        "another --out",
        remove=True,  # nothing is left beside the student once the run ends (unless it is killed)
    )
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def training_manifest(
    config: DistillConfig,
    teacher: Teacher,
    train: Sequence[TrainingText],
    holdout: Sequence[TrainingText],
    kept_layers: list[int] | None,
    metrics: dict[str, Any],
    best_state: dict[str, Any],
    timings: dict[str, float],
    device: str,
) -> StudentManifest:
    """The ``embedkd.json`` of a trained student: its teacher, its alignment on the held-out texts (from the
    kept checkpoint's ``metrics``), and how it was trained."""
    alignment = None
    if "cosine" in metrics:
        extra = {"cosine_by_kind": metrics.get("cosine_by_kind", {}), "step": best_state.get("step")}
        if "ndcg_at_10" in metrics:
            extra[f"beir_{config.eval_split}_ndcg_at_10"] = metrics["ndcg_at_10"]
            extra["beir_folder"] = str(config.eval_beir)
        alignment = Alignment(
            mean_cosine=float(metrics["cosine"]),
            mse=float(metrics["mse"]),
            texts=len(holdout),
            held_out=f"{len(holdout)} training-distribution texts never trained on (stratified by kind)",
            extra=extra,
        )
    return StudentManifest(
        teacher=teacher.ref,
        base=config.student,
        layers=kept_layers,
        alignment=alignment,
        training={
            "data": describe(train),
            "config": config.to_dict(),
            "working_dir": os.getcwd(),  # what the config's relative paths are relative to (for `embedkd adapt`)
            "timings": {k: round(v, 1) for k, v in timings.items()},
            "device": device,
        },
    )
