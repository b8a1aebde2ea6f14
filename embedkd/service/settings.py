"""Service settings, read from ``EMBEDKD_*`` environment variables (or a .env file) inside ``create_app``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from embedkd.device import Precision
from embedkd.errors import InputError
from embedkd.models.backends import Backend, Quantize

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Everything the server needs; every field can be set as ``EMBEDKD_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="EMBEDKD_", env_file=".env", extra="ignore")

    index_dir: Path = Field(description="Index folder built by `embedkd index build`.")
    student: str | None = Field(default=None, description="Student folder for asymmetric queries.")
    students: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="More students aligned to the same teacher (comma-separated folders): requests pick one by "
        "name (`student`) or by a latency budget (`max_latency_ms`).",
    )
    teacher: str | None = Field(
        default=None, description="Teacher model; defaults to the one named in the index manifest."
    )
    load_teacher: bool = Field(default=True, description="Load the teacher for /documents and mode=teacher.")
    read_only: bool = Field(
        default=False,
        description="Serve the index without writing to it: no writer lock, so it runs beside a process that "
        "writes the folder (another server, `embedkd index add`) and serves what that writer has committed, "
        "checked before each search; /documents writes answer 403.",
    )
    grow_from: Path | None = Field(
        default=None,
        description="Documents file whose documents the server adds to the index in the background (skipping "
        "ids it holds): serve a first slice at once, grow the rest.",
    )
    student_pending: Path | None = Field(
        default=None,
        description="Student folder being trained elsewhere: swapped in, without a restart, once it is saved and "
        "passes the alignment check.",
    )
    force_alignment: bool = Field(default=False, description="Serve a student aligned to another teacher.")
    coverage_sample: int = Field(
        default=256,
        ge=0,
        description="Chunks of the index each student encodes once, in the background after it goes live, to "
        "measure whether it is as aligned on this index's documents as on its own held-out texts (`embedkd index "
        "check`; /models shows it, a warning is logged when it is not). 0 turns the check off.",
    )
    fuse_index: Path | None = Field(
        default=None,
        description="A second index of the same documents built by another model, e.g. the student's base "
        "(`embedkd index build --teacher minilm-l6`): /search rescores each query's fuse_candidates best documents "
        "with that model's score added, times fuse_weight (benchmarks/results/fusion_index_*.md), and /documents "
        "writes go to both indexes. Default: the fusion index the index remembers (`embedkd index link`), if any.",
    )
    fuse: bool = Field(
        default=True,
        description="Fuse with the fusion index the index remembers (`embedkd index link`) when fuse_index is not "
        "given; false serves the index alone, even with fuse_index.",
    )
    fuse_weight: float = Field(default=1.0, ge=0, description="Weight of the fuse_index score.")
    fuse_candidates: int = Field(default=100, ge=1, le=10_000, description="Documents per query rescored.")
    device: str = "auto"
    backend: Backend = Field(
        default=Backend.TORCH,
        description="Student inference backend: torch, onnx or openvino (exported into the student folder on first "
        "use; the teacher stays on torch, so document vectors match the index's).",
    )
    quantize: Quantize = Field(default=Quantize.NONE, description="none or int8 weights for an onnx/openvino student.")
    busy_wait: bool = Field(
        default=False,
        description="Let an onnx student's idle inference threads spin between batches (ONNX Runtime's default). "
        "Off: they sleep, which leaves the cores to the HTTP stack (benchmarks/results/serving_busy_wait.md).",
    )
    precision: Precision = Field(
        default=Precision.FP32,
        description="Compute precision of query encoding: fp32 (default: bf16 autocast is slower at batch 1 on CPUs), "
        "bf16, fp16 (CUDA) or auto. Document vectors written to the index keep the index's own precision.",
    )

    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Server processes (`embedkd serve` starts them as uvicorn workers on one port), each with its "
        "own models, micro-batcher and event loop on its share of the cores; they write the index together and "
        "/metrics adds them up (benchmarks/results/serving_processes.md).",
    )
    compute_workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Threads that run the models; with more than one, a torch model runs that many batches at once, "
        "each on its share of the kernel threads (slower on 2 cores: benchmarks/results/serving_workers.md).",
    )
    max_batch_size: int = Field(default=32, ge=1, le=4096, description="Texts per forward pass.")
    max_wait_ms: float = Field(
        default=0.0, ge=0, le=1000, description="Extra wait for a batch to fill while the model is idle."
    )
    answer_wait_ms: float = Field(
        default=20.0,
        ge=0,
        le=1000,
        description="Under load, a forward pass first waits up to this long for the previous batch's answers to be "
        "sent, so the two do not share the cores (0: off; benchmarks/results/serving_yield.md).",
    )
    max_queue: int = Field(default=2048, ge=1, description="Queued texts per model before answering 503.")
    max_inputs: int = Field(
        default=2048, ge=1, description="Texts per /embed, /encode or /v1/embeddings request (OpenAI accepts 2,048)."
    )
    max_input_chars: int = Field(default=16_384, ge=1, description="Characters per input text.")
    auto_truncate: bool = Field(
        default=False, description="TEI's /embed cuts over-long inputs instead of answering 413 (TEI's flag)."
    )
    max_documents: int = Field(default=256, ge=1, description="Documents per /documents request.")
    max_document_chars: int = Field(default=1_000_000, ge=1)
    max_body_bytes: int = Field(default=8 * 2**20, ge=1024, description="Largest request body accepted.")
    max_k: int = Field(default=1000, ge=1)
    max_pending_writes: int = Field(default=4, ge=1, description="Concurrent /documents writes before 503.")
    save_interval_s: float = Field(default=30.0, gt=0, description="How often the faiss file is re-saved.")
    request_timeout_s: float = Field(
        default=60.0, gt=0, description="Longest a request waits for the model before a 503 (retryable)."
    )
    shutdown_timeout_s: float = Field(
        default=10.0, gt=0, description="Longest a graceful shutdown waits for requests in flight."
    )

    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated bearer tokens; empty disables auth."
    )
    host: str = "127.0.0.1"
    port: int = 8000

    @classmethod
    def checked(cls, **values: Any) -> Settings:
        """Settings from ``values`` and the environment. A bad value is an :class:`InputError` that names
        the setting and its ``EMBEDKD_*`` variable (the CLI prints it and exits 2), not a pydantic traceback."""
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = []
            for error in exc.errors():
                if not error["loc"]:  # a rule across settings: its message names them
                    problems.append(str(error["msg"]).removeprefix("Value error, "))
                    continue
                field = str(error["loc"][0])
                if error["type"] == "missing":
                    problems.append(f"{field} (EMBEDKD_{field.upper()}) is required")
                    continue
                problems.append(f"{field} (EMBEDKD_{field.upper()}): {error['msg']}, got {error.get('input')!r}")
            raise InputError("invalid server settings: " + "; ".join(problems)) from None

    def fusion_dir(self) -> Path | None:
        """The fusion index served: fuse_index, else the one the index remembers; None when fuse is off."""
        if not self.fuse:
            return None
        from embedkd.index.manifest import remembered_fusion

        return self.fuse_index or remembered_fusion(self.index_dir)

    @model_validator(mode="after")
    def _writes_need_a_writer(self) -> Settings:
        if self.read_only and self.grow_from is not None:
            raise ValueError("grow_from writes to the index, which read_only serves without writing")
        if self.workers > 1 and self.grow_from is not None:
            raise ValueError("grow_from needs one worker (each would grow the index); start with workers=1")
        return self

    @field_validator("index_dir", mode="before")
    @classmethod
    def _no_blank_index(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():  # Path("") is the working folder
            raise ValueError("is empty; give the index folder")
        return value

    @field_validator("students", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _no_blank_key(cls, value: object) -> object:
        """Keys are comma-separated; empty (or unset) serves without auth. A blank key would either lock
        every client out (no token matches it) or, dropped, turn auth off unnoticed: both are refused."""
        if isinstance(value, str):
            keys = [k.strip() for k in value.split(",") if k.strip()]
            if value.strip() and not keys:
                raise ValueError("holds commas and blanks but no key; give keys, or leave it empty for no auth")
            return keys
        if isinstance(value, list):
            if any(not str(k).strip() for k in value):
                raise ValueError("an API key is empty or blank; give keys separated by commas, or none for no auth")
            return [str(k).strip() for k in value]
        return value
