"""Run MTEB 2.x on embedkd models, fully offline, on local BEIR folders and an STS file.

    python benchmarks/mteb_run.py --query-model runs/student --doc-model mpnet-base \\
        --beir ../shared/data/beir/scifact --sts ../shared/data/sts/stsb-test.tsv --out benchmarks/results/mteb

- ``--query-model`` encodes queries (and both sides of STS pairs); ``--doc-model`` encodes the corpus. When
  ``--doc-model`` is left out or is the same model, one model does everything (:class:`SymmetricEncoder`);
  otherwise the student/teacher pair is evaluated as one asymmetric system (:class:`AsymmetricEncoder`).
- Each ``--beir`` folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``) becomes a retrieval task
  (main score nDCG@10) and ``--sts`` (``sentence1<TAB>sentence2<TAB>score``, gold 0-5) an STS task (main score
  Spearman of cosine similarity). The data is read from disk: mteb never touches the Hugging Face hub.
- The tasks run through ``mteb.evaluate`` and the results are written by mteb's own ``ResultCache`` in its JSON
  format: ``<out>/results/<model name>/<revision>/<task>.json`` plus ``model_meta.json`` and ``run_settings.jsonl``.
  The model revision is the weights' sha256 fingerprint, so a retrained student gets a folder of its own.

Retrieval follows BEIR as embedkd's own evaluator does: a document is ``title + " " + text`` stripped (mteb 2.x
builds the same string), only queries with qrels in the split are scored, and a query's own id is dropped from
its results (BEIR's ``ignore_identical_ids``). ``run()`` is importable for other scripts.
"""

from __future__ import annotations

import os

# Nothing may download: set before huggingface_hub / datasets / transformers read their settings.
for _variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import hashlib  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING, Any, get_args  # noqa: E402

import numpy as np  # noqa: E402
from datasets import Dataset  # noqa: E402
from mteb.abstasks.retrieval import AbsTaskRetrieval  # noqa: E402
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData  # noqa: E402
from mteb.abstasks.sts import AbsTaskSTS  # noqa: E402
from mteb.abstasks.task_metadata import TaskMetadata  # noqa: E402
from mteb.models.abs_encoder import AbsEncoder  # noqa: E402
from mteb.models.model_meta import ModelMeta, ScoringFunction  # noqa: E402
from mteb.types import PromptType  # noqa: E402
from mteb.types._metadata import Licenses  # noqa: E402

from benchmarks._report import run_main  # noqa: E402
from embedkd.data import load_beir  # noqa: E402
from embedkd.errors import InputError  # noqa: E402
from embedkd.evaluation import load_sts  # noqa: E402
from embedkd.models import Encoder, find_spec  # noqa: E402

if TYPE_CHECKING:
    from mteb.abstasks.abstask import AbsTask
    from mteb.results import ModelResult
    from torch.utils.data import DataLoader

__all__ = [
    "AsymmetricEncoder",
    "LocalBeirRetrieval",
    "LocalSTS",
    "SymmetricEncoder",
    "beir_task",
    "evaluate",
    "format_table",
    "load_model",
    "main",
    "main_scores",
    "model_meta",
    "read_beir_split",
    "read_sts",
    "result_folder",
    "run",
    "sts_task",
]

DEFAULT_BEIR = Path("../shared/data/beir/scifact")
DEFAULT_STS = Path("../shared/data/sts/stsb-test.tsv")
DEFAULT_OUT = Path("benchmarks/results/mteb")
# embedkd's models (MiniLM, MPNet) and the students distilled from them are English.
DEFAULT_LANGUAGES = ["eng-Latn"]
_KNOWN_LICENSES = frozenset(get_args(Licenses))


# ---------------------------------------------------------------------------------------------- encoders
def _texts(inputs: DataLoader[Any]) -> list[str]:
    """The texts of an mteb dataloader, in order (as mteb's own sentence-transformers wrapper collects them)."""
    return [text for batch in inputs for text in batch["text"]]


def _encode(encoder: Encoder, texts: list[str], prompt_type: PromptType | None, batch_size: int) -> np.ndarray:
    """Queries and documents with the model's query/document prompt; anything else (STS) without one.

    Documents go through the embedding cache that training, indexing and ``embedkd eval`` share.
    """
    if not texts:
        return np.zeros((0, encoder.dimension), dtype=np.float32)
    if prompt_type == PromptType.query:
        return encoder.encode_query(texts, batch_size=batch_size)
    if prompt_type == PromptType.document:
        # Through embedkd's shared embedding cache: a corpus is embedded once per model, whoever asks.
        return encoder.encode_cached(texts, role="document", batch_size=batch_size, progress=False)
    return encoder.encode(texts, batch_size=batch_size)


class _EmbedkdEncoder(AbsEncoder):
    """An mteb 2.x encoder (``EncoderProtocol``) over embedkd :class:`Encoder` objects; cosine similarity."""

    mteb_model_meta: ModelMeta

    def _encoder_for(self, prompt_type: PromptType | None) -> Encoder:
        raise NotImplementedError

    def encode(
        self,
        inputs: DataLoader[Any],
        *,
        task_metadata: TaskMetadata,
        hf_split: str,
        hf_subset: str,
        prompt_type: PromptType | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        batch_size = int(kwargs.get("batch_size") or 32)
        return _encode(self._encoder_for(prompt_type), _texts(inputs), prompt_type, batch_size)


class SymmetricEncoder(_EmbedkdEncoder):
    """One model for queries, documents and STS sentences."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        self.model = encoder.model
        self.mteb_model_meta = model_meta([encoder], name=f"embedkd/{_slug(encoder.name)}")

    def _encoder_for(self, prompt_type: PromptType | None) -> Encoder:
        return self.encoder


class AsymmetricEncoder(_EmbedkdEncoder):
    """Queries with the student, documents (corpus, passages) with the teacher; STS (no prompt type) with the student.

    The student must embed into the teacher's space: both produce vectors of the same dimension.
    """

    def __init__(self, query_encoder: Encoder, doc_encoder: Encoder) -> None:
        if query_encoder.dimension != doc_encoder.dimension:
            raise ValueError(
                f"{query_encoder.name} embeds into {query_encoder.dimension} dimensions but {doc_encoder.name} "
                f"into {doc_encoder.dimension}: an asymmetric pair needs one shared space"
            )
        self.query_encoder = query_encoder
        self.doc_encoder = doc_encoder
        name = f"embedkd/asym-{_slug(query_encoder.name)}-{_slug(doc_encoder.name)}"
        self.mteb_model_meta = model_meta([query_encoder, doc_encoder], name=name)

    def _encoder_for(self, prompt_type: PromptType | None) -> Encoder:
        return self.doc_encoder if prompt_type == PromptType.document else self.query_encoder


# ---------------------------------------------------------------------------------------------- model meta
def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def _registered(name: str) -> ModelMeta | None:
    """mteb's own (offline, in-package) metadata for a packaged embedkd model name, e.g. ``mpnet-base``."""
    spec = find_spec(name)
    if spec is None:
        return None
    from mteb.models.model_implementations import MODEL_REGISTRY

    return MODEL_REGISTRY.get(spec.hub_id)


def _registered_meta(encoder: Encoder) -> ModelMeta | None:
    return _registered(encoder.name)


def _card_license(folder: Path) -> str | None:
    """The ``license:`` of the model card's front matter, when it is one mteb knows."""
    readme = folder / "README.md"
    if not readme.is_file():
        return None
    lines = readme.read_text(encoding="utf-8", errors="replace").splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    for line in lines[1:]:
        if line.strip() == "---":
            break
        key, _, value = line.partition(":")
        if key.strip() == "license" and value.strip().strip("'\"") in _KNOWN_LICENSES:
            return value.strip().strip("'\"")
    return None


def _license(encoder: Encoder) -> str:
    """The model card's license, else mteb's record of the model, else that of the base a student was cut from."""
    candidates = [_registered_meta(encoder), _registered(encoder.manifest.base) if encoder.manifest else None]
    registered = next((meta.license for meta in candidates if meta is not None and meta.license), None)
    return _card_license(encoder.path) or registered or "not specified"


def _release_date(encoder: Encoder) -> str:
    """The published release date of a packaged model, the training date of a student, else the weights' date."""
    registered = _registered_meta(encoder)
    if registered and registered.release_date:
        return str(registered.release_date)
    if encoder.manifest is not None:
        return encoder.manifest.created_at[:10]
    newest = max((p.stat().st_mtime for p in encoder.path.rglob("*") if p.is_file()), default=0.0)
    return datetime.datetime.fromtimestamp(newest, tz=datetime.timezone.utc).date().isoformat()


def _languages(encoder: Encoder) -> list[str]:
    registered = _registered_meta(encoder)
    return list(registered.languages) if registered and registered.languages else list(DEFAULT_LANGUAGES)


def _memory_mb(encoder: Encoder) -> float:
    return sum(p.numel() * p.element_size() for p in encoder.model.parameters()) / 2**20


def _training_datasets(encoders: Sequence[Encoder]) -> set[str] | None:
    """Union of mteb's known training data of each model; None (unknown) as soon as one model is unknown."""
    found: set[str] = set()
    for encoder in encoders:
        registered = _registered_meta(encoder)
        if registered is None or registered.training_datasets is None:
            return None
        found |= set(registered.training_datasets)
    return found


def model_meta(encoders: Sequence[Encoder], *, name: str) -> ModelMeta:
    """mteb metadata for one model or a query/document pair, built from local facts only (no hub lookup)."""
    licenses = {_license(e) for e in encoders}
    languages = [lang for lang in _languages(encoders[0]) if all(lang in _languages(e) for e in encoders[1:])]
    max_tokens = [e.max_seq_length for e in encoders if e.max_seq_length]
    return ModelMeta(
        loader=None,
        name=name,
        revision="_".join(e.fingerprint[:16] for e in encoders),
        release_date=max(_release_date(e) for e in encoders),
        languages=languages or None,
        n_parameters=sum(e.parameters() for e in encoders),
        memory_usage_mb=round(sum(_memory_mb(e) for e in encoders), 1),
        # the shortest input that every side of the system reads in full
        max_tokens=min(max_tokens) if max_tokens else None,
        embed_dim=encoders[0].dimension,
        license=licenses.pop() if len(licenses) == 1 else "multiple",
        open_weights=True,
        public_training_code=None,
        public_training_data=None,
        framework=["Sentence Transformers", "PyTorch"],
        similarity_fn_name=ScoringFunction.COSINE,
        use_instructions=any(prompt for e in encoders for prompt in e.prompts.values()),
        training_datasets=_training_datasets(encoders),
        modalities=["text"],
        model_type=["dense"],
    )


def load_model(query_model: str, doc_model: str | None = None, *, device: str = "cpu") -> _EmbedkdEncoder:
    """The symmetric wrapper when ``doc_model`` is absent or the same weights, else the asymmetric one."""
    query_encoder = Encoder.load(query_model, device=device)
    if doc_model is None or doc_model == query_model:
        return SymmetricEncoder(query_encoder)
    doc_encoder = Encoder.load(doc_model, device=device)
    if doc_encoder.fingerprint == query_encoder.fingerprint:
        return SymmetricEncoder(query_encoder)
    return AsymmetricEncoder(query_encoder, doc_encoder)


# ---------------------------------------------------------------------------------------------- tasks
def _content_revision(*paths: Path) -> str:
    """A dataset revision for local files: sha256 of their contents (first 16 hex digits)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def read_beir_split(folder: Path, split: str = "test") -> RetrievalSplitData:
    """One split of a BEIR folder in mteb 2.x's retrieval format, read by embedkd's own BEIR loader.

    Only queries with qrels in ``split`` are kept. The corpus keeps ``title`` and ``text`` apart: mteb joins them
    itself, as ``(title + " " + text).strip()`` (``text.strip()`` when the title is empty), which is exactly
    BEIR's ``title + " " + text``.
    """
    dataset = load_beir(Path(folder), split)
    return RetrievalSplitData(
        corpus=Dataset.from_dict(
            {
                "id": list(dataset.corpus),
                "title": [d["title"] for d in dataset.corpus.values()],
                "text": [d["text"] for d in dataset.corpus.values()],
            }
        ),
        queries=Dataset.from_dict({"id": list(dataset.queries), "text": list(dataset.queries.values())}),
        relevant_docs=dataset.qrels,
        top_ranked=None,
    )


class LocalBeirRetrieval(AbsTaskRetrieval):
    """A retrieval task over a BEIR folder on disk; :func:`beir_task` makes one (a subclass) per folder.

    ``metadata``, ``folder`` and ``split`` are class attributes: mteb's ``unload_data`` drops instance metadata.
    """

    folder: Path
    split: str
    # BEIR's EvaluateRetrieval default (and embedkd's evaluator): a query never retrieves itself.
    ignore_identical_ids = True

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        """Read the folder instead of ``datasets.load_dataset`` from the hub."""
        if self.data_loaded:
            return
        self.dataset = {"default": {self.split: read_beir_split(self.folder, self.split)}}
        self.data_loaded = True


class LocalSTS(AbsTaskSTS):
    """An STS task over a ``sentence1<TAB>sentence2<TAB>score`` file (gold 0-5); :func:`sts_task` makes one."""

    path: Path
    min_score = 0
    max_score = 5

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        if self.data_loaded:
            return
        self.dataset = {"default": {"test": read_sts(self.path)}}
        self.data_loaded = True


def read_sts(path: Path) -> Dataset:
    """The pairs and gold scores of an STS TSV, read by embedkd's own STS loader."""
    pairs = load_sts(Path(path))
    return Dataset.from_dict({"sentence1": pairs.left, "sentence2": pairs.right, "score": pairs.gold.tolist()})


def _task_metadata(*, name: str, description: str, path: Path, revision: str, **fields: Any) -> TaskMetadata:
    return TaskMetadata(
        name=name,
        description=description,
        dataset={"path": str(path.resolve()), "revision": revision},
        category="t2t",
        modalities=["text"],
        eval_langs=list(DEFAULT_LANGUAGES),
        license="not specified",
        annotations_creators="derived",
        dialect=[],
        sample_creation="found",
        bibtex_citation="",
        **fields,
    )


def beir_task(folder: Path, split: str = "test", name: str | None = None) -> LocalBeirRetrieval:
    """A retrieval task for any BEIR folder (main score nDCG@10), read from disk."""
    folder = Path(folder)
    files = [folder / "corpus.jsonl", folder / "queries.jsonl", folder / "qrels" / f"{split}.tsv"]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise InputError(f"not a BEIR folder with a {split!r} split; missing: {', '.join(missing)}")
    task_name = name or f"BEIR-{folder.name}"
    metadata = _task_metadata(
        name=task_name,
        description=f"BEIR retrieval on the local folder {folder} ({split} qrels), read without the hub.",
        path=folder,
        revision=_content_revision(*files),
        type="Retrieval",
        eval_splits=[split],
        main_score="ndcg_at_10",
    )
    attributes = {"metadata": metadata, "folder": folder, "split": split}
    return type(f"LocalBeirRetrieval_{_slug(task_name)}", (LocalBeirRetrieval,), attributes)()


def sts_task(tsv_path: Path, name: str | None = None) -> LocalSTS:
    """An STS task (main score: Spearman of cosine similarity against gold scores normalised to 0-1)."""
    tsv_path = Path(tsv_path)
    if not tsv_path.is_file():
        raise InputError(f"{tsv_path} not found")
    task_name = name or f"STS-{tsv_path.stem}"
    metadata = _task_metadata(
        name=task_name,
        description=f"Semantic textual similarity on the local file {tsv_path} (gold 0-5).",
        path=tsv_path,
        revision=_content_revision(tsv_path),
        type="STS",
        eval_splits=["test"],
        main_score="cosine_spearman",
    )
    attributes = {"metadata": metadata, "path": tsv_path}
    return type(f"LocalSTS_{_slug(task_name)}", (LocalSTS,), attributes)()


# ---------------------------------------------------------------------------------------------- running
def evaluate(model: _EmbedkdEncoder, tasks: Sequence[AbsTask], out: Path, *, batch_size: int = 32) -> ModelResult:
    """Run ``tasks`` with ``mteb.evaluate`` and let mteb's ``ResultCache`` write its JSON under ``out``."""
    import mteb

    return mteb.evaluate(
        model,
        list(tasks),
        cache=mteb.ResultCache(cache_path=out),  # local folder only: no remote results are fetched
        overwrite_strategy="always",  # a rerun replaces the old files instead of returning them
        co2_tracker=False,  # codecarbon would look up the machine's location online
        encode_kwargs={"batch_size": batch_size, "show_progress_bar": False},
        show_progress_bar=False,
    )


def main_scores(result: ModelResult) -> dict[str, float]:
    return {r.task_name: float(r.get_score()) for r in result.task_results}


def format_table(result: ModelResult, tasks: Sequence[AbsTask]) -> str:
    """Task, main score (name and value), and nDCG@10 (retrieval) or cosine Spearman (STS)."""
    main_names = {task.metadata.name: task.metadata.main_score for task in tasks}
    rows = [("task", "main score", "value", "nDCG@10 / Spearman")]
    for task_result in result.task_results:
        scores = next(iter(task_result.scores.values()))[0]
        metric = scores.get("ndcg_at_10", scores.get("cosine_spearman", math.nan))
        main = main_names.get(task_result.task_name, "main_score")
        rows.append((task_result.task_name, main, f"{scores['main_score']:.4f}", f"{metric:.4f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def result_folder(model: _EmbedkdEncoder, out: Path) -> Path:
    """Where mteb's ResultCache writes this model's task JSON files."""
    meta = model.mteb_model_meta
    return Path(out) / "results" / meta.model_name_as_path() / str(meta.revision)


def run(
    query_model: str,
    doc_model: str | None,
    beir_folders: list[Path],
    sts: Path | None,
    split: str,
    out: Path,
    *,
    device: str = "cpu",
    batch_size: int = 32,
    verbose: bool = False,
) -> dict[str, float]:
    """Evaluate the model (pair) on every BEIR folder and the STS file; returns ``{task name: main score}``."""
    model = load_model(query_model, doc_model, device=device)
    tasks: list[AbsTask] = [beir_task(Path(folder), split) for folder in beir_folders]
    if sts is not None:
        tasks.append(sts_task(Path(sts)))
    result = evaluate(model, tasks, Path(out), batch_size=batch_size)
    if result.exceptions:
        raise RuntimeError(f"mteb failed on: {result.exceptions}")
    if verbose:
        print(f"model: {model.mteb_model_meta.name} (revision {model.mteb_model_meta.revision})")
        print(format_table(result, tasks))
        print(f"mteb results: {result_folder(model, Path(out))}")
    return main_scores(result)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--query-model", required=True, help="model name or folder that encodes queries")
    parser.add_argument("--doc-model", default=None, help="model that encodes documents (default: the query model)")
    parser.add_argument("--beir", type=Path, nargs="*", default=[DEFAULT_BEIR], help="BEIR folders (none: skip)")
    parser.add_argument("--sts", type=Path, default=DEFAULT_STS, help="STS TSV file")
    parser.add_argument("--no-sts", action="store_true", help="skip the STS task")
    parser.add_argument("--split", default="test", help="qrels split of the BEIR folders")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for mteb's result files")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    return parser.parse_args(argv)


def embedkd_scores(query_model: str, doc_model: str | None, beir_folders: list[Path], split: str) -> dict[str, float]:
    """nDCG@10 from embedkd's own BEIR evaluator for the same models, keyed like the mteb tasks."""
    from embedkd.evaluation import score_retrieval

    query = Encoder.load(query_model, device="cpu")
    docs = Encoder.load(doc_model, device="cpu") if doc_model else query
    out = {}
    for folder in beir_folders:
        dataset = load_beir(Path(folder), split)
        q = query.encode_query(list(dataset.queries.values()))
        d = docs.encode_cached(dataset.doc_texts(), role="document", progress=False)
        out[beir_task(Path(folder), split).metadata.name] = score_retrieval(dataset, q, d).ndcg_at_10
    return out


AGREEMENT_HEADER = (
    "# MTEB 2.x (local tasks) against embedkd's own BEIR evaluator\n\n"
    "| query model | doc model | task | mteb | embedkd nDCG@10 | difference |\n"
    "|---|---|---|---|---|---|\n"
)


def record_agreement(
    out: Path, query_model: str, doc_model: str | None, mteb: dict[str, float], own: dict[str, float]
) -> None:
    """Write the mteb-vs-embedkd comparison into ``<out>/agreement.md``: one row per model pair and task,
    replacing the rows of an earlier run of the same pair. Tasks embedkd does not score (STS) show mteb's
    Spearman alone."""
    table = Path(out) / "agreement.md"
    pair = f"| {query_model} | {doc_model or query_model} |"
    kept = []
    if table.is_file():
        kept = [line for line in table.read_text().splitlines()[4:] if line and not line.startswith(pair)]
    rows = []
    for task, score in mteb.items():
        if task in own:
            rows.append(f"{pair} {task} | nDCG@10 {score:.4f} | {own[task]:.4f} | {abs(score - own[task]):.4f} |")
        else:
            rows.append(f"{pair} {task} | Spearman {score:.4f} | | |")
    table.parent.mkdir(parents=True, exist_ok=True)
    table.write_text(AGREEMENT_HEADER + "".join(line + "\n" for line in kept + rows))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    scores = run(
        args.query_model,
        args.doc_model,
        list(args.beir),
        None if args.no_sts else args.sts,
        args.split,
        args.out,
        device=args.device,
        batch_size=args.batch_size,
        verbose=True,
    )
    own = embedkd_scores(args.query_model, args.doc_model, list(args.beir), args.split)
    for task, score in own.items():
        print(f"{task}: mteb {scores[task]:.4f} vs embedkd {score:.4f} (difference {abs(scores[task] - score):.4f})")
    record_agreement(args.out, args.query_model, args.doc_model, scores, own)
    return 0


if __name__ == "__main__":
    run_main(main)
