"""embedkd.locks.FolderLock: one writer per folder, and a lock file that can go away with its holder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from embedkd.errors import InputError
from embedkd.locks import FolderLock


def test_a_removable_lock_refuses_a_second_holder_and_leaves_no_file(tmp_path: Path) -> None:
    first = FolderLock(tmp_path, name=".out.lock", busy="busy: {holder}", remove=True)
    first.acquire()
    second = FolderLock(tmp_path, name=".out.lock", busy="busy {a path with braces}: {holder}", remove=True)
    with pytest.raises(InputError, match=f"busy {{a path with braces}}: pid {os.getpid()}"):
        second.acquire()
    first.release()
    assert not (tmp_path / ".out.lock").exists()
    second.acquire()  # free once released, in a new file
    assert (tmp_path / ".out.lock").read_text() == f"pid {os.getpid()}"
    second.release()
    assert not (tmp_path / ".out.lock").exists()


def test_a_lock_taken_on_a_file_its_holder_removed_is_taken_again_on_the_new_file(tmp_path: Path) -> None:
    path = tmp_path / ".out.lock"
    stale = open(path, "a+")  # noqa: SIM115 - opened before its holder removed it, locked after
    path.unlink()
    lock = FolderLock(tmp_path, name=".out.lock", remove=True)
    real_lock_once = lock._lock_once
    handles = iter([stale])

    def first_the_stale_one():  # type: ignore[no-untyped-def]
        return next(handles, None) or real_lock_once()

    lock._lock_once = first_the_stale_one  # type: ignore[method-assign]
    lock.acquire()
    assert stale.closed and path.is_file()  # it let the removed file go and holds the one at the path
    assert os.fstat(lock._handle.fileno()).st_ino == os.stat(path).st_ino  # type: ignore[union-attr]
    lock.release()


def test_a_plain_writer_lock_keeps_its_file(tmp_path: Path) -> None:
    lock = FolderLock(tmp_path)
    lock.acquire()
    lock.release()
    assert (tmp_path / ".writer.lock").is_file()
