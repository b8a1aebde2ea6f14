"""Folders written beside their destination and renamed into place, and the ones killed processes left.

Every folder embedkd writes whole (an index, a student, a checkpoint, a cache) is first written to a hidden
staging folder beside it and renamed into place when complete, so a reader never sees half of one. A
process killed outright (SIGKILL, the OOM killer, a power cut) cannot remove its staging folder, and those
can be large: a partial index, or the layer cache's 2.5 GB. :func:`staging_dir` names each staging folder
after this machine and the writing process, and removes the ones whose process has gone before it makes a
new one beside the same destination.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import tempfile
from pathlib import Path

__all__ = ["process_running", "remove_orphans", "remove_stale_staging", "staging_dir"]


def process_running(pid: int) -> bool:
    """Whether a process with ``pid`` runs on this machine (another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: running
        pass
    return True


def _host() -> str:
    return "".join(c if c.isalnum() else "_" for c in socket.gethostname()) or "host"


def _prefix(dest: Path, tag: str) -> str:
    return f".{dest.name}.{tag}-{_host()}-"


def remove_orphans(parent: Path, prefix: str) -> list[Path]:
    """Remove the folders in ``parent`` named ``PREFIX<pid>-...`` whose process no longer runs. A folder of a
    running process, or whose name holds no pid after ``prefix``, is kept. Returns the folders removed."""
    removed = []
    for name in glob.glob(glob.escape(str(parent / prefix)) + "*"):
        folder = Path(name)
        pid = folder.name[len(prefix) :].split("-", 1)[0]
        if not pid.isdigit() or process_running(int(pid)) or not folder.is_dir():
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def remove_stale_staging(dest: Path, tag: str = "tmp") -> list[Path]:
    """Remove the staging folders of ``dest`` (made by :func:`staging_dir` with ``tag``) whose process no
    longer runs. Folders of a running process, of another machine (a shared disk), or with a name that holds
    no pid (an older embedkd's) are kept. Returns the folders removed."""
    return remove_orphans(dest.parent, _prefix(dest, tag))


def staging_dir(dest: Path, tag: str = "tmp") -> Path:
    """A new empty folder beside ``dest`` to write it in, then rename into place (``.NAME.TAG-HOST-PID-*``).

    First removes the staging folders of the same ``dest`` and ``tag`` that killed processes left."""
    remove_stale_staging(dest, tag)
    return Path(tempfile.mkdtemp(prefix=f"{_prefix(dest, tag)}{os.getpid()}-", dir=dest.parent))
