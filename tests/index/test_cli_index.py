from __future__ import annotations

import json
from pathlib import Path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_index_lifecycle_through_the_cli(run_cli, teacher, tiny_model_factory, tmp_path: Path) -> None:
    teacher_dir = str(teacher.model_path)
    docs = write_jsonl(
        tmp_path / "docs.jsonl",
        [
            {"_id": "a", "title": "Apples", "text": "apple orchard harvest apple", "metadata": {"kind": "fruit"}},
            {"_id": "b", "title": "Rivers", "text": "river delta water flow", "metadata": {"kind": "geo"}},
            {"_id": "c", "title": "Music", "text": "violin concert music hall", "metadata": {"kind": "art"}},
        ],
    )
    out = tmp_path / "idx"
    code, stdout, err = run_cli(
        "index", "build", "--teacher", teacher_dir, "--docs", docs, "--out", out, "--no-progress"
    )
    assert code == 0, err
    assert "3 documents" in stdout

    code, stdout, err = run_cli("index", "info", "--index", out, "--json")
    info = json.loads(stdout)
    assert code == 0 and info["counts"]["documents"] == 3 and info["teacher"]["dimension"] == 48

    more = write_jsonl(tmp_path / "more.jsonl", [{"id": "d", "text": "desert sand dune"}])
    code, stdout, err = run_cli("index", "add", "--index", out, "--docs", more, "--no-progress")
    assert code == 0 and json.loads(stdout)["inserted"] == 1, err
    code, _, err = run_cli("index", "add", "--index", out, "--docs", more, "--no-progress")
    assert code == 2 and "already exist" in err
    code, stdout, err = run_cli("index", "upsert", "--index", out, "--docs", more, "--no-progress")
    assert code == 0 and json.loads(stdout)["replaced"] == 1
    code, stdout, err = run_cli("index", "delete", "--index", out, "b", "zz", "b")  # an id given twice is one
    assert code == 0 and json.loads(stdout) == {"deleted": 1, "missing": ["zz"], "chunks": 1}

    # Teacher mode needs no student; the teacher is found from the index manifest.
    code, stdout, err = run_cli("search", "--index", out, "--mode", "teacher", "apple orchard", "--json")
    assert code == 0, err
    result = json.loads(stdout)[0]
    assert result["query"] == "apple orchard" and result["mode"] == "teacher" and result["model"]
    hits = result["hits"]
    assert hits[0]["id"] == "a" and {h["id"] for h in hits} == {"a", "c", "d"}
    code, stdout, _ = run_cli("search", "-x", out, "--mode", "teacher", "--filter", "kind=art", "apple", "--json")
    assert [h["id"] for h in json.loads(stdout)[0]["hits"]] == ["c"]

    # A student aligned to another teacher is refused with a clear message, unless forced.
    student = tiny_model_factory(hidden=48, seed=9)
    (student / "embedkd.json").write_text(
        json.dumps({"teacher": {"name": "other", "fingerprint": "0" * 64, "dimension": 48}, "base": "x"})
    )
    code, _, err = run_cli("search", "-x", out, "--student", student, "apple")
    assert code == 5 and "other" in err and "Traceback" not in err
    code, _, err = run_cli("search", "-x", out, "apple")
    assert code == 2 and "mode asym needs --student" in err, err
    code, _, err = run_cli("search", "-x", out, "--mode", "teacher", "caf\udce9")  # argv bytes that are not UTF-8
    assert code == 2 and "query[0] holds a lone UTF-16 surrogate" in err and "Traceback" not in err, err
    code, stdout, err = run_cli("search", "-x", out, "--student", student, "--force", "apple")
    assert code == 0, err


def test_cli_index_errors(run_cli, teacher, tmp_path: Path) -> None:
    teacher_dir = str(teacher.model_path)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    code, _, err = run_cli("index", "build", "--teacher", teacher_dir, "--docs", empty, "--out", tmp_path / "i")
    assert code == 2 and "no documents" in err
    docs = tmp_path / "docs.jsonl"  # valid documents: only the index type is wrong
    docs.write_text('{"id": "a", "text": "apple orchard"}\n')
    code, _, err = run_cli(
        "index", "build", "--teacher", teacher_dir, "--docs", docs, "--out", tmp_path / "i", "--type", "annoy"
    )
    assert code == 2 and "annoy" in err and not (tmp_path / "i").exists()
    code, _, err = run_cli(
        "index",
        "build",
        "--teacher",
        teacher_dir,
        "--docs",
        docs,
        "--out",
        tmp_path / "i",
        "--chunk-tokens",
        "16",
        "--overlap",
        "16",
    )  # every chunk would move on by one token
    assert code == 2 and "--overlap 16 must be" in err and not (tmp_path / "i").exists(), err
    code, _, err = run_cli("index", "info", "--index", tmp_path)
    assert code == 2 and "not an embedkd index" in err
    code, _, err = run_cli("search", "--index", tmp_path / "nope", "q")
    assert code == 2
    assert not (tmp_path / "i").exists()


def test_index_records_the_teacher_precision_and_later_writes_use_it(run_cli, teacher, tmp_path: Path) -> None:
    from embedkd.index.manifest import IndexManifest

    docs = tmp_path / "docs.jsonl"
    docs.write_text('{"id": "a", "text": "apple orchard"}\n')
    out = tmp_path / "i"
    code, _, err = run_cli(
        "index", "build", "--teacher", str(teacher.model_path), "--docs", docs, "--out", out, "--precision", "bf16"
    )
    assert code == 0, err
    assert IndexManifest.read(out).precision == "bf16"
    more = tmp_path / "more.jsonl"
    more.write_text('{"id": "b", "text": "river delta"}\n')
    assert run_cli("index", "add", "--index", out, "--docs", more)[0] == 0
    # the added document went through the bf16 cache of the teacher, the one the index was built with
    bf16 = teacher.cache_for("document", precision="bf16")
    assert "river delta" in bf16
    assert "river delta" not in teacher.cache_for("document", precision="fp32")
