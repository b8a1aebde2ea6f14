from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


def test_models_lists_known_models(run_cli) -> None:
    code, out, _ = run_cli("models", "--json")
    assert code == 0
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["minilm-l6"]["status"] == "installed"
    assert rows["minilm-l6"]["dimension"] == 384
    assert rows["minilm-l6"]["parameters"] > 20_000_000
    assert rows["mpnet-base"]["role"] == "teacher"


def test_encode_jsonl_and_txt(run_cli, tiny_model_dir: Path, tmp_path: Path) -> None:
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text('{"text": "first"}\n\n{"title": "T", "text": "second"}\n')
    out = tmp_path / "out.npy"
    code, stdout, stderr = run_cli("encode", "--model", tiny_model_dir, "--input", jsonl, "--output", out)
    assert code == 0, stderr
    embeddings = np.load(out)
    assert embeddings.shape == (2, 32) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)

    txt = tmp_path / "lines.txt"
    txt.write_text("one\ntwo\nthree\n")
    code, _, stderr = run_cli("encode", "-m", tiny_model_dir, "-i", txt, "--float16")
    assert code == 0, stderr
    assert np.load(tmp_path / f"lines.{tiny_model_dir.name}.npy").shape == (3, 32)


def test_encode_bad_inputs_exit_cleanly(run_cli, tiny_model_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    code, _, err = run_cli("encode", "-m", tiny_model_dir, "-i", empty)
    assert code == 2 and "contains no text" in err and "Traceback" not in err

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"txt": "typo"}\n')
    code, _, err = run_cli("encode", "-m", tiny_model_dir, "-i", bad)
    assert code == 2 and "bad.jsonl:2" in err

    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9\n".encode("latin-1"))
    code, _, err = run_cli("encode", "-m", tiny_model_dir, "-i", latin)
    assert code == 2 and "UTF-8" in err

    code, _, err = run_cli("encode", "-m", "acme/no-such-model", "-i", tmp_path / "bad.jsonl")
    assert code == 2  # the input is checked before the model is loaded

    good = tmp_path / "good.txt"
    good.write_text("hello\n")
    code, _, err = run_cli("encode", "-m", "acme/no-such-model", "-i", good)
    assert code == 3 and "acme/no-such-model" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ([], "Usage"),
        (["search", "q"], "Missing option"),
        (["--bogus"], "No such option"),
        (["serve", "--index", "x", "--port", "abc"], "Invalid value"),
        (["index", "build", "--nope"], "No such option"),
    ],
)
def test_usage_errors_of_the_real_entry_point_are_short(args: list[str], fragment: str) -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "embedkd.cli", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert fragment in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) < 15


def test_version_and_a_bad_log_level(run_cli) -> None:
    from embedkd._version import __version__

    code, out, _ = run_cli("--version")
    assert code == 0 and out.strip() == f"embedkd {__version__}"
    code, out, err = run_cli("serve", "--index", "x", "--log-level", "loud")
    assert code == 2 and "loud" in out + err and "Traceback" not in err


def test_serve_removes_the_metrics_folders_of_killed_servers_only(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from embedkd.cli.serve import remove_stale_metrics

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid no process has now (a killed server's)
    dead = tmp_path / f"embedkd-metrics-{gone.pid}-abc"
    alive = tmp_path / f"embedkd-metrics-{os.getpid()}-def"
    unnamed = tmp_path / "embedkd-metrics-xyz_12"  # the old naming, without a pid: not ours to judge
    for folder in (dead, alive, unnamed):
        folder.mkdir()
        (folder / "counter_1.db").write_bytes(b"x")
    assert remove_stale_metrics(tmp_path) == [dead]
    assert not dead.exists() and alive.is_dir() and unnamed.is_dir()
