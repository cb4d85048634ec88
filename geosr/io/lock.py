"""Job locks: one live writer per output, taken over from a process that died.

A lock is an advisory ``flock`` on a file in the job's work folder, so the kernel drops it when its
process dies, however it died: a stale lock needs no clean-up and is simply taken. The file also holds
who locked it (host, pid, command), so a refused run can name the other process. Hand-written because
the ``filelock`` package neither records the holder nor offers shared holders (the row ranges of one
job split across ``geosr batch`` workers share the job's lock; a plain run holds it alone).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from pathlib import Path

from geosr.errors import GeoSRError, OutputLocationError, OutputWriteError
from geosr.io.paths import credentials_hidden

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, runs are not guarded
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = "lock"


class OutputBusyError(OutputLocationError):
    """Another live process is writing the same output."""


class JobLock:
    """An exclusive (or shared) lock on ``path``; a context manager. Raises :class:`OutputBusyError` at once
    when another process holds it in a conflicting way."""

    def __init__(self, path: Path, *, output: Path, shared: bool = False, holder: str = "") -> None:
        self.path = Path(path)
        self.holder = holder  # whom this process works for ("geosr batch, process 12 on host"): the one to stop
        self.output = output
        self.shared = shared
        self._fd: int | None = None

    def acquire(self) -> "JobLock":
        if fcntl is None:
            return self
        for _ in range(20):  # the holder may delete the file (or its folder) as we open and lock it: try again
            made_folder = not self.path.parent.is_dir()
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # a folder the checks could not tell unwritable (a read-only share, quotas)
                raise self._cannot_write(exc) from exc
            try:
                try:  # made here (the one file this run may remove again), or found
                    fd, made_file = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
                except FileExistsError:
                    fd, made_file = os.open(self.path, os.O_RDWR), False
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise self._cannot_write(exc) from exc
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                holder, batch = self._holder()
                # (a batch's job goes on in its worker, which on a cluster of its own outlives the batch: review)
                raise OutputBusyError(f"{self.output}: is being written by another geosr run ({holder}); wait for "
                                      "it to finish or stop it" + (" and that worker" if batch else "")) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                try:
                    self._write_holder()
                except BaseException as exc:  # e.g. a full disk: never keep a lock nobody will release, nor
                    # leave the lock file (and its work folder) this run made: a full disk left `x.tif.geosr-work/`
                    self._forget(made_file, made_folder)
                    if isinstance(exc, OSError):  # (it was an "internal error" naming no file; found in review)
                        raise self._cannot_write(exc) from exc
                    raise
                return self
            os.close(fd)
        raise OutputBusyError(f"{self.output}: its lock file {self.path} keeps being replaced by another process")

    def _cannot_write(self, exc: OSError) -> GeoSRError:
        """The failure to make or write the lock, naming the output: a full disk (or a quota, a failing device) as
        :func:`geosr.io.outputs.writing` says it (exit 1), a folder refused to this user as its location (exit 2)."""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG):
            return OutputWriteError(f"{self.output}: cannot be written: {os.strerror(exc.errno).lower()}")
        return OutputLocationError(f"{self.output}: cannot write beside it in {self.output.parent} ({exc.strerror})")

    def _forget(self, made_file: bool, made_folder: bool) -> None:
        """Release the lock, removing its file and folder where this process made them and holds the lock alone
        (another process that opened the file meanwhile sees it gone and tries again; a shared holder that took it
        meanwhile keeps it: removed, a third run would have taken it as free; found in review)."""
        try:
            if made_file and self.sole():
                self.path.unlink(missing_ok=True)
                if made_folder:
                    self.path.parent.rmdir()  # (only when empty)
        except OSError:
            pass
        self.release()

    def _write_holder(self) -> None:
        info = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "command": credentials_hidden(" ".join(sys.argv[:3])), "for": self.holder}  # (no password)
        assert self._fd is not None, "the lock is held"
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, json.dumps(info).encode(), 0)

    def _holder(self) -> tuple[str, bool]:
        """Who holds the lock, in words, and whether it is a batch's worker."""
        info: dict = {}
        for _ in range(5):  # a holder that has just locked the file writes its name a moment later
            try:
                info = json.loads(self.path.read_text() or "{}")
            except (OSError, ValueError):
                info = {}
            if info.get("pid") and info.get("for"):  # a Dask worker: stopping it alone, its batch retries the job
                return (f"{info['for']}, in its worker's process {info['pid']} on {info.get('host', '?')}, since "
                        f"{info.get('since', '?')}"), True  # (the worker was named alone; found in review)
            if info.get("pid"):
                return f"process {info['pid']} on {info.get('host', '?')}, since {info.get('since', '?')}", False
            time.sleep(0.05)
        # (an empty file was said to be "a geosr batch job's", a plain run's that had not written its name yet too;
        # found in review)
        return "one that has not said which", False

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def sole(self) -> bool:
        """Whether this holder is the lock's only one (a shared holder made exclusive when no other holds it)."""
        if fcntl is None or self._fd is None:
            return False
        if not self.shared:
            return True
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    @property
    def held(self) -> bool:
        return self._fd is not None or fcntl is None

    def __enter__(self) -> "JobLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
