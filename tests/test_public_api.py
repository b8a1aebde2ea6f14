"""The top-level package exports what a notebook needs, and importing it stays cheap."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import embedkd


def test_every_exported_name_resolves_to_the_object_of_its_home_module() -> None:
    from embedkd.distill import DistillConfig
    from embedkd.index import Index
    from embedkd.models import Encoder
    from embedkd.retrieval import AsymmetricRetriever

    assert embedkd.Encoder is Encoder and embedkd.Index is Index and callable(embedkd.distill)
    assert embedkd.DistillConfig is DistillConfig and embedkd.AsymmetricRetriever is AsymmetricRetriever
    for name in embedkd.__all__:
        assert getattr(embedkd, name) is not None, name
    assert set(embedkd.__all__) <= set(dir(embedkd))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        embedkd.Nope  # noqa: B018


def test_importing_the_package_does_not_load_torch() -> None:
    script = "import sys, json, embedkd; print(json.dumps('torch' in sys.modules))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) is False


def test_distill_is_callable_as_a_function_even_once_the_subpackage_is_imported(monkeypatch) -> None:
    import embedkd.distill.trainer  # binds the name embedkd.distill to the subpackage

    monkeypatch.setattr(embedkd.distill.trainer, "distill", lambda config: ("trained", config))
    from embedkd import distill

    assert distill("cfg") == ("trained", "cfg")
