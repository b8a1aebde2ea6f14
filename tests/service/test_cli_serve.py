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


def _capture_start(monkeypatch) -> dict:  # type: ignore[no-untyped-def]
    """Stop `embedkd serve` where it would start uvicorn, keeping the settings and options it would run with."""
    import uvicorn

    import embedkd.service.app as app_module

    started: dict = {}
    monkeypatch.setattr(app_module, "create_app", lambda settings: started.__setitem__("settings", settings))
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: started.update(options))
    return started


def test_serve_takes_every_setting_it_is_not_given_from_the_environment(
    run_cli, service_files: dict[str, Path], monkeypatch
) -> None:
    started = _capture_start(monkeypatch)
    monkeypatch.setenv("EMBEDKD_STUDENT", str(service_files["student"]))
    monkeypatch.setenv("EMBEDKD_LOAD_TEACHER", "false")
    monkeypatch.setenv("EMBEDKD_HOST", "0.0.0.0")
    monkeypatch.setenv("EMBEDKD_PORT", "8799")
    monkeypatch.setenv("EMBEDKD_FORCE_ALIGNMENT", "true")
    code, _, err = run_cli("serve", "--index", service_files["index"])
    assert code == 0, err
    settings = started["settings"]
    assert settings.student == str(service_files["student"]) and not settings.load_teacher
    assert settings.force_alignment and (started["host"], started["port"]) == ("0.0.0.0", 8799)
    code, _, err = run_cli("serve", "--index", service_files["index"], "--port", "8798", "--load-teacher")
    assert code == 0 and started["port"] == 8798 and started["settings"].load_teacher, err  # an option wins

    monkeypatch.delenv("EMBEDKD_INDEX_DIR", raising=False)
    code, _, err = run_cli("serve")
    assert code == 2 and "pass --index DIR or set EMBEDKD_INDEX_DIR" in err, err
    monkeypatch.setenv("EMBEDKD_INDEX_DIR", " ")  # once the working folder
    code, _, err = run_cli("serve")
    assert code == 2 and "EMBEDKD_INDEX_DIR" in err and "is empty" in err, err
    monkeypatch.setenv("EMBEDKD_INDEX_DIR", str(service_files["index"]))  # once --index was required anyway
    code, _, err = run_cli("serve", "--port", "8797")
    assert code == 0 and started["settings"].index_dir == service_files["index"] and started["port"] == 8797, err


def test_serve_refuses_what_would_fail_at_start_up_or_serve_without_a_usable_key(
    run_cli, service_files: dict[str, Path], tmp_path: Path, monkeypatch
) -> None:
    from embedkd.locks import FolderLock

    started = _capture_start(monkeypatch)
    index = service_files["index"]
    code, _, err = run_cli("serve", "--index", index, "--api-key", " ")  # no client could ever match it
    assert code == 2 and "an API key is empty or blank" in err, err
    monkeypatch.setenv("EMBEDKD_API_KEYS", " , ")  # dropped, it turned auth off unnoticed
    code, _, err = run_cli("serve", "--index", index)
    assert code == 2 and "EMBEDKD_API_KEYS" in err and "no key" in err, err
    monkeypatch.delenv("EMBEDKD_API_KEYS")
    code, _, err = run_cli("serve", "--index", index, "--device", "tpu")
    assert code == 2 and "tpu" in err and "Traceback" not in err, err
    monkeypatch.setenv("EMBEDKD_STUDENTS", str(tmp_path / "no-such-student"))
    code, _, err = run_cli("serve", "--index", index)
    assert code == 3 and "no-such-student" in err, err
    monkeypatch.delenv("EMBEDKD_STUDENTS")
    monkeypatch.setenv("EMBEDKD_GROW_FROM", str(tmp_path / "no-such-corpus.jsonl"))
    code, _, err = run_cli("serve", "--index", index)
    assert code == 2 and "no-such-corpus.jsonl" in err, err  # it once started, and never grew, silently
    monkeypatch.delenv("EMBEDKD_GROW_FROM")
    writer = FolderLock(index, what="index")  # a CLI write in progress
    writer.acquire()
    try:
        code, _, err = run_cli("serve", "--index", index)
        assert code == 2 and "open for writing" in err, err
        code, _, err = run_cli("serve", "--index", index, "--read-only")  # a reader runs beside it
        assert code == 0, err
    finally:
        writer.release()
    assert "settings" in started
