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


def test_encode_never_overwrites_its_input_a_folder_or_a_file_that_is_not_npy(
    run_cli, tiny_model_dir: Path, tmp_path: Path
) -> None:
    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"id": "a", "text": "first"}\n')
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    (tmp_path / "folder").mkdir()
    for output, fragment in ((texts, "is the input file"), (notes, "not a .npy"), (tmp_path / "folder", "folder")):
        code, _, err = run_cli("encode", "-m", tiny_model_dir, "-i", texts, "-o", output)
        assert code == 2 and fragment in err and "Traceback" not in err, err
    assert texts.read_text() == '{"id": "a", "text": "first"}\n' and notes.read_text() == "my notes\n"
    code, _, err = run_cli("encode", "-m", tiny_model_dir, "-i", texts, "-o", notes / "x.npy")
    assert code == 2 and f"{notes} is a file, not a folder" in err and "Traceback" not in err, err
    code, _, err = run_cli("index", "build", "--teacher", tiny_model_dir, "-i", texts, "--out", notes)
    assert code == 2 and "is a file" in err and notes.read_text() == "my notes\n", err
    half = tmp_path / "half.jsonl"  # valid UTF-8 that escapes half a surrogate pair: no tokenizer takes it
    half.write_text('{"text": "a \\udc80 b"}\n')
    code, _, err = run_cli("encode", "-m", tiny_model_dir, "-i", half)
    assert code == 2 and "half.jsonl:1" in err and "surrogate" in err, err


def test_a_zero_or_overflowing_row_is_never_imported_into_the_cache(
    run_cli, tmp_path: Path, isolated_cache: Path
) -> None:
    texts = tmp_path / "texts.jsonl"
    texts.write_text("".join(f'{{"text": "text {i}"}}\n' for i in range(3)))
    for row, fill in ((1, 0.0), (2, 1e30)):  # 1e30 squared overflowed float32 and normalised to zero
        embeddings = np.ones((3, 8), np.float32)
        embeddings[row] = fill
        path = tmp_path / f"emb{row}.npy"
        np.save(path, embeddings)
        code, _, err = run_cli("cache", "import", "--embeddings", path, "--texts", texts, "--model", "box")
        if fill == 0.0:
            assert code == 2 and f"row {row}" in err and "length 0" in err, err
        else:
            assert code == 0, err
    from embedkd.distill import Teacher

    kept = Teacher.black_box("box", dimension=8).encode_document(["text 1", "text 2"])  # the import of emb2
    np.testing.assert_allclose(kept, np.full((2, 8), 8**-0.5), atol=1e-3)  # row 2 kept its direction


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
