from __future__ import annotations

import json
import shutil
from pathlib import Path


def test_serve_refuses_bad_settings_before_starting(run_cli, service_files: dict[str, Path], tmp_path: Path) -> None:
    code, _, err = run_cli("serve", "--index", tmp_path / "missing", "--port", "8765")
    assert code == 2 and "not an embedkd index" in err and "Traceback" not in err

    other = tmp_path / "student"
    shutil.copytree(service_files["student"], other)
    manifest = json.loads((other / "embedkd.json").read_text())
    manifest["teacher"]["fingerprint"] = "0" * 64
    manifest["teacher"]["name"] = "another-teacher"
    (other / "embedkd.json").write_text(json.dumps(manifest))
    code, _, err = run_cli("serve", "--index", service_files["index"], "--student", other, "--port", "8765")
    assert code == 5 and "another-teacher" in err and "Traceback" not in err

    code, _, err = run_cli("serve", "--index", service_files["index"], "--student", tmp_path / "nope")
    assert code == 3 and "nope" in err

    code, _, err = run_cli("serve", "--index", service_files["index"], "--fuse-index", tmp_path / "gone")
    assert code == 2 and "gone" in err and "not an embedkd index" in err and "Traceback" not in err
    code, _, err = run_cli("serve", "--index", service_files["index"], "--fuse-index", service_files["index"])
    assert code == 2 and "second index folder" in err


def test_serve_names_a_bad_environment_setting_instead_of_a_traceback(run_cli, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("EMBEDKD_COMPUTE_WORKERS", "0")
    monkeypatch.setenv("EMBEDKD_MAX_QUEUE", "lots")
    code, _, err = run_cli("serve", "--index", tmp_path / "missing", "--port", "8765")
    assert code == 2 and "Traceback" not in err
    assert "EMBEDKD_COMPUTE_WORKERS" in err and "EMBEDKD_MAX_QUEUE" in err and "'lots'" in err
