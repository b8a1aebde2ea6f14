"""Locks shared by the on-disk structures: a folder's writer lock and an in-process readers-writer lock."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from embedkd.errors import InputError

__all__ = ["FolderLock", "ReadWriteLock"]


class FolderLock:
    """A ``flock`` on ``<folder>/.writer.lock``: one writing process per folder.

    Held from :meth:`acquire` until :meth:`release` (or the process exits: the kernel drops it even after
    kill -9). A second writer fails at once with a message naming the holder, instead of corrupting data.
    ``shared`` locks are held together by the worker processes of one server, which write the folder
    together (see ``Index.open(shared=True)``); they exclude a single writer, and it excludes them.
    ``name`` picks another lock file in the folder; ``busy`` replaces the message a second writer gets
    (``{holder}`` in it names the holder). ``remove`` deletes the lock file on release (an exclusive lock
    only), for a lock file that lies beside a user's folder rather than inside embedkd's own: a process that
    locked a file which its holder then removed sees that the path no longer names it, and tries again.
    """

    def __init__(
        self,
        folder: Path,
        *,
        what: str = "folder",
        shared: bool = False,
        name: str = ".writer.lock",
        busy: str | None = None,
        remove: bool = False,
    ) -> None:
        self.path = Path(folder) / name
        self.what = what
        self.shared = shared
        self.busy = busy
        self.remove = remove and not shared
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        if self._handle is not None:
            return
        while True:
            handle = self._lock_once()
            if not self.remove or self._still_linked(handle):
                break
            fcntl.flock(handle, fcntl.LOCK_UN)  # its holder removed it as we took it: take the new one
            handle.close()
        if not self.shared:  # shared holders leave the file alone: they would overwrite each other
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}")
            handle.flush()
        self._handle = handle

    def _still_linked(self, handle: IO[str]) -> bool:
        try:
            return os.fstat(handle.fileno()).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            return False

    def _lock_once(self) -> IO[str]:
        handle = open(self.path, "a+")  # noqa: SIM115 - held for the lifetime of the writer
        try:
            fcntl.flock(handle, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(handle)
            handle.close()
            if self.busy is not None:
                raise InputError(self.busy.replace("{holder}", holder)) from None  # not format: a path may hold {}
            raise InputError(
                f"{self.path.parent} is open for writing by {holder}; stop it first, "
                f"or open this {self.what} read-only (info and search do)"
            ) from None
        return handle

    def _holder(self, handle: IO[str]) -> str:
        if not self.shared:
            try:  # a shared lock is free to take: the holders are the workers of a server
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                pass
            else:
                fcntl.flock(handle, fcntl.LOCK_UN)
                return "the workers of a running server"
        handle.seek(0)
        return handle.read().strip() or "another process"

    def acquire_within(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the lock; False if another process still holds it."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                self.acquire()
                return True
            except InputError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.02)

    def release(self) -> None:
        if self._handle is not None:
            if self.remove:  # while still held: whoever opened it meanwhile sees it unlinked and retries
                self.path.unlink(missing_ok=True)
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    @property
    def held(self) -> bool:
        return self._handle is not None


class ReadWriteLock:
    """Many readers or one writer; a waiting writer blocks new readers, so writers do not starve."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer: int | None = None
        self._depth = 0
        self._waiting_writers = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        me = threading.get_ident()
        if self._writer == me:  # a writer may read what it holds
            yield
            return
        with self._cond:
            while self._writer is not None or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._cond:
            if self._writer == me:
                self._depth += 1
            else:
                self._waiting_writers += 1
                while self._writer is not None or self._readers:
                    self._cond.wait()
                self._waiting_writers -= 1
                self._writer, self._depth = me, 1
        try:
            yield
        finally:
            with self._cond:
                self._depth -= 1
                if not self._depth:
                    self._writer = None
                    self._cond.notify_all()
