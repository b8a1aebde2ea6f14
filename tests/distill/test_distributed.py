"""torchrun on two CPU processes (gloo): identical weights on both ranks, equal to one process with the
same global batch, the loss falls, and a resumed run goes on from the checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from embedkd.testing import free_port

from .conftest import BowData

SCRIPT = """
import json, sys, torch
from embedkd.distill import DistillConfig, distill
settings = json.loads(sys.argv[1])
result = distill(DistillConfig(**settings))
rank = int(__import__("os").environ.get("RANK", "0"))
torch.save({k: v.detach().cpu() for k, v in result.model.state_dict().items()}, settings["out"] + f".rank{rank}.pt")
if rank == 0:
    json.dump(result.history, open(settings["out"] + ".history.json", "w"))
"""


def run(settings: dict, nproc: int, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    cmd = [sys.executable, str(script), json.dumps(settings)]
    if nproc > 1:
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
            "--master-port", str(free_port()), str(script), json.dumps(settings),
        ]  # fmt: skip
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # torchrun's torchelastic_* folders go here, not to /tmp
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.slow
def test_two_ranks_match_one_process_with_the_same_global_batch(
    bow_teacher: BowData, tiny_model_factory, tmp_path: Path, isolated_cache: Path
) -> None:
    student = tiny_model_factory(hidden=32, seed=0, dropout=0)  # no dropout: its masks differ by process
    base = {
        "teacher": "bow-teacher",
        "student": str(student),
        "teacher_embeddings": [str(bow_teacher.embeddings_path)],
        "teacher_texts": [str(bow_teacher.texts_path)],
        "max_steps": 30,
        "batch_size": 8,
        "lr": 1e-3,
        "head_lr": 1e-2,
        "eval_every": 10,
        "eval_texts": 40,
        "progress": False,
        "seed": 0,
        "freeze_embeddings": False,
        "frozen_layers": 0,
        "precision": "fp32",
        "device": "cpu",
    }
    ddp = {**base, "out": str(tmp_path / "ddp")}
    single = {**base, "out": str(tmp_path / "single"), "grad_accum": 2}  # the same 16 texts per step
    proc = run(ddp, 2, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run(single, 1, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]

    rank0 = torch.load(tmp_path / "ddp.rank0.pt")
    rank1 = torch.load(tmp_path / "ddp.rank1.pt")
    one = torch.load(tmp_path / "single.rank0.pt")
    for name, weight in rank0.items():
        assert torch.equal(weight, rank1[name]), f"ranks differ in {name}"
        assert torch.allclose(weight, one[name], atol=1e-4), f"{name}: max diff {(weight - one[name]).abs().max()}"
    history = json.loads((tmp_path / "ddp.history.json").read_text())
    assert [h["step"] for h in history] == [0, 10, 20, 30]
    assert history[-1]["mse"] < history[1]["mse"], history  # the loss falls as training goes on
    assert (tmp_path / "ddp" / "embedkd.json").is_file()

    # resume: two more steps from the checkpoint, on two ranks again
    more = {**ddp, "resume": True, "max_steps": 10, "keep_checkpoints": True}
    proc = run({**ddp, "keep_checkpoints": True, "out": str(tmp_path / "ddp2")}, 2, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run({**more, "out": str(tmp_path / "ddp2")}, 2, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    history = json.loads((tmp_path / "ddp2.history.json").read_text())
    steps = [h["step"] for h in history]
    assert steps[-1] == 40 and 30 in steps  # a new 10-step cycle on top of the finished 30, not from 0
