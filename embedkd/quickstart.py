"""The main job in one call: models, a teacher index over a default corpus, an aligned student.

Every step is cached: the models are assembled once, the index folder is keyed by a hash of the corpus,
teacher embeddings live in the shared embedding cache, and a student is trained only when none aligned to
this teacher exists. A second run therefore goes straight to serving.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from embedkd.data.documents import Document, read_documents
from embedkd.data.stdlib import stdlib_corpus
from embedkd.distill import DataOptions, DistillConfig, Teacher, distill
from embedkd.errors import AlignmentError, InputError
from embedkd.index import Index, IndexKind, IndexParams, build_index
from embedkd.logs import configure_logging
from embedkd.models.manifest import StudentManifest
from embedkd.models.registry import find_spec

__all__ = ["QuickstartPaths", "default_data_root", "prepare"]

logger = logging.getLogger(__name__)


@dataclass
class QuickstartPaths:
    workdir: Path
    index: Path
    student: Path
    corpus_size: int
    trained: bool
    built: bool
    corpus_file: Path | None = None  # every document, for the server to grow a partial index from
    corpus_total: int = 0
    training: DistillConfig | None = None  # set when the student is still to be trained (in the background)
    fuse_index: Path | None = None  # the same documents in the fusion model's own space (Fusion's second index)
    fuse_size: int = 0

    @property
    def partial(self) -> bool:
        """Whether the index, or the fusion index, still lacks documents of the corpus (the server grows both)."""
        sizes = [self.corpus_size, *([self.fuse_size] if self.fuse_index is not None else [])]
        return min(sizes) < self.corpus_total


def default_data_root() -> Path | None:
    """``../shared/data`` next to the current directory, used only when it is there."""
    for candidate in (Path.cwd().parent / "shared" / "data", Path.cwd() / "shared" / "data"):
        if (candidate / "train" / "queries.jsonl").is_file():
            return candidate
    return None


def resolve_generic_text(choice: str | Path) -> Path | None:
    """``auto`` -> the shared queries file if present, ``none`` -> None, else the file, which must exist."""
    if str(choice) == "auto":
        root = default_data_root()
        return root / "train" / "queries.jsonl" if root is not None else None
    if str(choice).lower() == "none":
        return None
    path = Path(choice)
    if not path.is_file():
        raise InputError(f"--generic-text {path}: no such file")
    return path


def _corpus_key(docs: list[Document], teacher_fingerprint: str) -> str:
    digest = hashlib.sha256(teacher_fingerprint.encode())
    for doc in docs:
        digest.update(json.dumps([doc.id, doc.title, doc.text, doc.metadata], sort_keys=True).encode())
    return digest.hexdigest()[:12]


def _write_corpus(docs: list[Document], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for doc in docs:
            row = {"_id": doc.id, "title": doc.title, "text": doc.text, "metadata": doc.metadata}
            handle.write(json.dumps(row) + "\n")
    return path


def _build_once(folder: Path, docs: list[Document], source: Teacher, *, progress: bool) -> bool:
    """Index ``docs`` with ``source`` into ``folder`` (a flat index), unless it is already built there."""
    if (folder / "manifest.json").is_file():
        logger.info("index %s already built: reusing it", folder)
        return False
    logger.info("indexing %d documents with %s into %s", len(docs), source.ref.name, folder)
    build_index(
        folder,
        docs,
        teacher=source.ref,
        embed=lambda texts: source.embeddings(texts, role="document", progress=progress),
        params=IndexParams(kind=IndexKind.FLAT),
        progress=progress,
        precision=source.precision,
    ).close()
    return True


def prepare(
    workdir: Path,
    *,
    teacher: str = "mpnet-base",
    student_base: str = "minilm-l6",
    student: Path | None = None,
    fuse_model: str | None = "minilm-l6",
    corpus: Path | None = None,
    max_docs: int | None = None,
    train_minutes: float = 5.0,
    generic_texts: int = 10_000,
    generic_text: str | Path = "auto",
    first_slice: int | None = None,
    progress: bool = True,
) -> QuickstartPaths:
    """Run steps 1-3 of the main job and return where everything is.

    ``generic_text``: query-like training text added to the corpus for the student: a .jsonl/.txt file,
    ``"auto"`` (``../shared/data/train/queries.jsonl`` when it is there) or ``"none"``.

    ``first_slice``: index only the first N documents now and train no student; the caller serves at once
    (teacher mode), grows the index from ``corpus_file`` and trains ``training`` in the background.

    ``fuse_model``: also index the documents with this model in its own space, the second index of
    ``embedkd.retrieval.Fusion`` (``None``: no second index). MiniLM-L6 embeds them in about 7% of the teacher's
    time, and fusing its scores with the student's put SciFact and an unseen domain past the teacher
    (benchmarks/results/dual_space_*.md). The student base defaults to the same model, whose lower layers the
    student keeps, so a fused query runs them once.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    # 1. models: assemble / locate the teacher and the student base once.
    for name in (teacher, student_base, *([fuse_model] if fuse_model else [])):
        spec = find_spec(name)
        if spec is not None:
            logger.info("model %s: %s", spec.name, spec.path())
    # bf16 where the hardware has it natively (1.7x faster on abstracts here, same nDCG): the first run's
    # expensive step is the teacher's pass over the corpus.
    teacher_source = Teacher.from_model(teacher, precision="auto")
    logger.info("teacher %s (sha256 %s…)", teacher_source.ref.name, teacher_source.ref.fingerprint[:12])

    # 2. a teacher index over the corpus, keyed by the corpus content.
    docs = read_documents(corpus) if corpus else stdlib_corpus(max_docs)
    if corpus is None:
        logger.info("default corpus: %d docstrings of the installed Python standard library", len(docs))
    index_dir = workdir / f"index-{_corpus_key(docs, teacher_source.ref.fingerprint)}"
    corpus_file = _write_corpus(docs, workdir / "corpus.jsonl")
    first = docs[:first_slice] if first_slice else docs
    if first_slice and len(first) < len(docs) and not (index_dir / "manifest.json").is_file():
        logger.info("indexing the first %d of %d documents now; the server adds the rest", len(first), len(docs))
    built = _build_once(index_dir, first, teacher_source, progress=progress)

    # 2b. the same documents in the fusion model's own space: the index Fusion rescores candidates with.
    fuse_dir = None
    if fuse_model is not None:
        fuse_source = Teacher.from_model(fuse_model, precision="auto")
        fuse_dir = workdir / f"fuse-{_corpus_key(docs, fuse_source.ref.fingerprint)}"
        _build_once(fuse_dir, first, fuse_source, progress=progress)

    # 3. a student aligned to this teacher: the given one, a cached one, or a short recipe.
    student_dir = Path(student) if student else workdir / "student"
    manifest = StudentManifest.read(student_dir) if (student_dir / "modules.json").is_file() else None
    trained = False
    training: DistillConfig | None = None
    if manifest is not None and manifest.teacher.fingerprint == teacher_source.ref.fingerprint:
        logger.info("student %s is aligned to %s: reusing it", student_dir, manifest.teacher.name)
    elif student is not None:
        raise AlignmentError(f"{student} is not a student aligned to {teacher_source.ref.name}")
    else:
        data = [corpus_file]
        generic = resolve_generic_text(generic_text)
        if generic is not None:
            data.append(generic)
            logger.info(
                "training text: the corpus plus up to %d generic query-like texts from %s (--generic-text to change)",
                generic_texts,
                generic,
            )
        else:
            logger.info("training text: the corpus only (--generic-text FILE adds query-like text)")
        config = DistillConfig(
            out=student_dir,
            data=data,
            teacher=teacher,
            student=student_base,  # the trainer's epochs: the budget, not a step limit, ends the 5 minutes
            batch_size=32,
            max_minutes=train_minutes,
            eval_every=250,
            eval_texts=500,
            precision="auto",  # type: ignore[arg-type]
            # titles and sentences, as demo.md measured: whole documents would add a teacher pass to 5 minutes
            data_options=DataOptions(max_texts_per_source=generic_texts, seed=0, documents=False),
            progress=progress,
            resume=(student_dir / "checkpoints" / "last").is_dir(),
        )
        if first_slice:
            training = config
        else:
            distill(config)
            trained = True
    with Index.open(index_dir, readonly=True) as index:
        size = len(index)
    paths = QuickstartPaths(workdir, index_dir, student_dir, size, trained, built, corpus_file, len(docs))
    if fuse_dir is not None:
        with Index.open(fuse_dir, readonly=True) as fused:
            paths.fuse_index, paths.fuse_size = fuse_dir, len(fused)
    if first_slice and not trained and manifest is None:
        paths.training = training
    return paths


def train_in_background(config: DistillConfig, log: Path) -> subprocess.Popen[bytes]:
    """Run ``config`` in a child process at low CPU priority (``python -m embedkd.quickstart CONFIG``), so the
    server keeps the cores it needs; its output goes to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    spec = log.with_suffix(".json")
    spec.write_text(json.dumps({**config.to_dict(), "progress": False}))
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "embedkd.quickstart", str(spec)],
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: os.nice(10),  # noqa: PLW1509  # only sets the child's priority
        )


def _train_from_json(path: Path) -> None:
    data = json.loads(Path(path).read_text())
    options = DataOptions(**data.pop("data_options"))
    distill(DistillConfig(**data, data_options=options))


if __name__ == "__main__":
    configure_logging("%(asctime)s %(message)s")
    _train_from_json(Path(sys.argv[1]))
