"""Adapting a trained student to the documents of an index it will serve (``embedkd adapt``).

A student keeps the teacher's quality where its training text reached, and less elsewhere: the default
student keeps 0.80x of the teacher on the standard library's docstrings, which no training text reaches.
Starting from the trained student (``--init-from``), a short run on the index's own documents, beside
samples of the student's own training text, lifted three default students from 0.80-0.83x to 0.981-0.985x
there for 0.003-0.010 of SciFact dev (benchmarks/results/student_ablation_amd_bf16_adapt_cli_seed*.md; the
recipe search: student_ablation_amd_bf16_seed42_adapt.md). No queries or labels
are needed: the documents' sentences and whole documents are the training text, and the documents are the
ranking term's anchors.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from embedkd.distill.checkpoint import init_manifest
from embedkd.distill.config import DistillConfig
from embedkd.distill.data import DataOptions
from embedkd.errors import InputError
from embedkd.index.manifest import IndexManifest, is_index_folder

__all__ = ["ADAPT_STEPS", "ADAPT_TEXTS_PER_SOURCE", "adapt_config"]

logger = logging.getLogger(__name__)

ADAPT_STEPS = 4000  # measured: 0.800x -> 0.987x on the docstrings, SciFact dev -0.006 (unresolved)
ADAPT_TEXTS_PER_SOURCE = 20_000  # so a small corpus is a fair share of the texts (and the layer cache is quick)


def adapt_config(
    student: Path,
    indexes: Sequence[Path],
    out: Path,
    *,
    data: Sequence[Path] = (),
    steps: int = ADAPT_STEPS,
    texts_per_source: int = ADAPT_TEXTS_PER_SOURCE,
    seed: int | None = None,
    progress: bool = True,
) -> DistillConfig:
    """The run that adapts ``student`` to the documents of ``indexes``: the default recipe, started from the
    student, on the indexes' documents plus ``data`` (default: the student's own training data, those of its
    files still found here), at most ``texts_per_source`` texts of each, for ``steps`` steps; the best
    checkpoint is chosen by held-out cosine, which includes the new documents."""
    manifest = init_manifest(Path(student), Path(out), option="--student")
    if not indexes:
        raise InputError("give the index to adapt to (--index), at least one")
    for folder in indexes:
        if not is_index_folder(Path(folder)):
            raise InputError(f"--index {folder} is not an embedkd index (no manifest.json and docstore.sqlite)")
        built_by = IndexManifest.read(Path(folder)).teacher
        if built_by.fingerprint != manifest.teacher.fingerprint:
            raise InputError(
                f"--index {folder} was built by {built_by.name}, but {student} is aligned to "
                f"{manifest.teacher.name}: a student only serves its own teacher's index"
            )
    config = manifest.training.get("config") or {}
    if not data:
        own = [Path(p) for p in config.get("data") or []]  # an index it was adapted to before included
        trained_in = manifest.training.get("working_dir")  # relative paths were relative to it
        found = [p if p.exists() or not trained_in else Path(trained_in) / p for p in own]
        data = [p for p in found if p.exists()]
        if len(data) < len(own):
            missing = ", ".join(str(p) for p in found if not p.exists())
            logger.warning("%s's own training data not found here (left out): %s", student, missing)
        if not data:
            logger.warning(
                "no other training text: the student learns these documents only and may lose some of what it "
                "knew (pass --data, e.g. the generic query-like texts it trained on)"
            )
    return DistillConfig(
        out=Path(out),
        data=list({p.resolve(): p for p in [*map(Path, data), *map(Path, indexes)]}.values()),  # each once
        teacher=manifest.teacher.name,
        init_from=Path(student),
        max_steps=steps,
        seed=int(config.get("seed", 42)) if seed is None else seed,
        data_options=DataOptions(max_texts_per_source=texts_per_source),
        progress=progress,
    )
