from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from embedkd.staging import remove_stale_staging, staging_dir


def gone_pid() -> int:
    """A pid no process has now (a killed writer's)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_staging_folders_of_killed_processes_are_removed_and_no_others(tmp_path: Path) -> None:
    dest = tmp_path / "index"
    own = staging_dir(dest)  # names this machine and this process
    prefix = own.name[: own.name.index(f"-{os.getpid()}-")]
    dead = tmp_path / f"{prefix}-{gone_pid()}-abc"
    alive = tmp_path / f"{prefix}-{os.getpid()}-def"
    other_host = tmp_path / f".index.tmp-elsewhere-{gone_pid()}-ghi"  # a shared disk: not ours to judge
    old_name = tmp_path / ".index.tmp-x1y2z3"  # an older embedkd's name, without a pid
    other_tag = tmp_path / f"{prefix.replace('.tmp-', '.building-')}-{gone_pid()}-jkl"
    other_dest = tmp_path / f"{prefix.replace('.index.', '.other.')}-{gone_pid()}-mno"
    for folder in (dead, alive, other_host, old_name, other_tag, other_dest):
        folder.mkdir()
        (folder / "part.bin").write_bytes(b"x")
    assert remove_stale_staging(dest) == [dead]
    assert not dead.exists()
    assert all(f.is_dir() for f in (own, alive, other_host, old_name, other_tag, other_dest))
    assert remove_stale_staging(dest, "building") == [other_tag]


def test_a_new_staging_folder_clears_its_destination_s_stale_ones(tmp_path: Path) -> None:
    dest = tmp_path / "student"
    first = staging_dir(dest, "saving")
    stale = first.with_name(first.name.replace(f"-{os.getpid()}-", f"-{gone_pid()}-"))
    os.rename(first, stale)  # as if the process that made it had been killed
    second = staging_dir(dest, "saving")
    assert second.is_dir() and not any(second.iterdir())
    assert not stale.exists()
    assert second.name.startswith(".student.saving-") and f"-{os.getpid()}-" in second.name
