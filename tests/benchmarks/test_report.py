"""benchmarks/_report.py: the pieces every benchmark report shares."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks._report import (
    labelled,
    machine,
    markdown_table,
    run_main,
    save_results,
    write_json,
    write_sections,
)
from embedkd.errors import InputError


def test_markdown_table_has_a_header_rule_and_one_line_per_row() -> None:
    assert markdown_table(["type", "recall"], [["flat", "1.0000"], ["hnsw", 0.98]]) == [
        "| type | recall |",
        "|---|---|",
        "| flat | 1.0000 |",
        "| hnsw | 0.98 |",
    ]


def test_write_sections_replaces_its_own_sections_and_keeps_the_others(tmp_path: Path) -> None:
    path = tmp_path / "load.md"
    write_sections(path, ["# Load", "", "Machine: A.", "", "## Throughput", "", "old", "", "## Fuzzing", "", "ok"])
    write_sections(path, ["## Peers", "", "| a |", "", "### Profile", "", "p"])  # no title: the file's is kept
    write_sections(path, ["# Load", "", "Machine: B.", "", "## Throughput", "", "new"])
    assert path.read_text().splitlines() == [
        "# Load", "", "Machine: B.", "", "## Throughput", "", "new", "", "## Fuzzing", "", "ok",
        "", "## Peers", "", "| a |", "", "### Profile", "", "p",
    ]  # fmt: skip


def test_machine_stamp_states_the_gpu_it_measured() -> None:
    import torch

    stamp = machine()
    assert f"torch {torch.__version__}" in stamp
    assert ("no GPU" in stamp) != torch.cuda.is_available()


def test_machine_stamp_states_the_cpus_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert "(no native bf16)" in machine()
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert "(AVX512-BF16, no AMX)" in machine()
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert "(AMX)" in machine()


def test_bad_input_ends_with_a_message_and_the_error_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    def main() -> None:
        raise InputError("/nope is not a BEIR folder (no corpus.jsonl)")

    with pytest.raises(SystemExit) as exit_info:
        run_main(main)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == "error: /nope is not a BEIR folder (no corpus.jsonl)\n"  # a message, no traceback


def test_a_successful_main_exits_with_its_own_code() -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: 0)
    assert exit_info.value.code == 0


def test_save_results_writes_the_json_and_the_report_of_it(tmp_path: Path) -> None:
    def report(results: dict[str, Any], path: Path) -> None:
        path.write_text(f"# {results['rows'][0]}\n")

    save_results({"rows": [1]}, tmp_path / "out", "bench_x", report)
    assert json.loads((tmp_path / "out" / "bench_x.json").read_text()) == {"rows": [1]}
    assert (tmp_path / "out" / "bench_x.md").read_text() == "# 1\n"


def test_write_json_creates_the_folder_and_writes_paths_as_text(tmp_path: Path) -> None:
    path = tmp_path / "new" / "results.json"
    write_json(path, {"student": Path("a/b"), "ndcg": 0.5})
    assert json.loads(path.read_text()) == {"student": "a/b", "ndcg": 0.5}
    assert path.read_text().endswith("}\n")


def test_labelled_keeps_the_order_and_splits_at_the_first_equals_sign() -> None:
    assert labelled(["seed 5, 30 min=/tmp/a", " b = minilm-l6 ", "c=dir=with=equals"]) == [
        ("seed 5, 30 min", "/tmp/a"),
        ("b", "minilm-l6"),
        ("c", "dir=with=equals"),
    ]


@pytest.mark.parametrize("spec", ["/tmp/student", "=/tmp/student", "label=", " = "])
def test_labelled_refuses_a_spec_without_both_sides(spec: str) -> None:
    with pytest.raises(InputError, match="--teacher takes LABEL=FOLDER"):
        labelled(["ok=/tmp/x", spec], option="--teacher")


def test_labelled_refuses_a_label_given_twice() -> None:
    with pytest.raises(InputError, match="'a' is given twice"):
        labelled(["a=/tmp/x", "b=/tmp/y", "a=/tmp/z"])
