"""The output folder of ``geosr train`` and ``geosr evaluate``: never written into while it holds anything,
unless asked to replace it, and then only when everything in it is that command's own output."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from geosr.errors import OutputExistsError, OutputLocationError
from geosr.io.lock import JobLock
from geosr.io.paths import unwritable


@dataclass(frozen=True)
class OutputFolder:
    """``path``, written by ``command``, whose own files match ``owned`` (glob patterns)."""

    path: Path
    command: str
    owned: tuple[str, ...]
    unsaved: tuple[str, ...] = ()  # what a run writes before its first save (a killed one's leftovers)

    def _entries(self) -> list[Path]:
        """What the folder holds, but the stages of :meth:`staged`."""
        if self.path.exists() and not self.path.is_dir():
            raise OutputLocationError(f"{self.path}: is a file; the output of {self.command} is a folder")
        entries = sorted(self.path.iterdir()) if self.path.is_dir() else []
        return [e for e in entries if not (STAGE.fullmatch(e.name) and e.is_dir() and not e.is_symlink())
                and not (SAFETENSORS_TMP.fullmatch(e.name) and e.is_file() and not e.is_symlink())
                and not (e.name == LOCK and e.is_file() and not e.is_symlink())
                and not (e.name == REPLACED and e.is_dir() and not e.is_symlink())]

    def check(self, *, overwrite: bool) -> None:
        """Refuse a folder that holds anything (without ``overwrite``) or anything but this command's own files,
        or that cannot be written."""
        entries = self._entries()
        foreign = [e for e in entries if not (e.is_file() and self._owns(e.name))]
        # files named only by a pattern (val_0001.png, panel_a.png) are an earlier output's when one of the
        # command's own names is beside them; alone they may be anyone's (`overwrite` deleted a user's images)
        names = [p for p in self.owned if not any(c in p for c in "*?[")]
        if not foreign and entries and not any(e.name in names for e in entries):
            raise OutputExistsError(f"{self.path}: holds {entries[0].name}, and no earlier {self.command} output "
                                    f"is there (none of {', '.join(names)}); `overwrite` replaces only an earlier "
                                    "output, so choose another `out`")
        if entries and not overwrite and not foreign:
            # (a stopped training run's folder: `overwrite` alone threw its steps away; found in review)
            more = ", `resume` to continue the run saved there" if any(e.name == "state.safetensors"
                                                                      for e in entries) else ""
            raise OutputExistsError(f"{self.path}: the output folder is not empty; give `overwrite` to replace the "
                                    f"{self.command} output there{more}, or choose another `out`")
        if foreign:  # `overwrite` would not help: said at once
            raise OutputExistsError(f"{self.path}: holds {foreign[0].name}, which {self.command} does not write; "
                                    "`overwrite` replaces only an earlier output, so choose another `out`")
        problem = unwritable(self.path)
        if problem:
            raise OutputLocationError(f"{self.path}: {problem}; choose another `out`")

    def prepare(self, *, overwrite: bool) -> Path:
        """Check again, remove the earlier output (with ``overwrite``), and create the folder."""
        self.check(overwrite=overwrite)
        for entry in self._entries():
            entry.unlink()
        self.path.mkdir(parents=True, exist_ok=True)
        return self.path

    @contextlib.contextmanager
    def staged(self, *, overwrite: bool) -> Iterator[Path]:
        """A folder to write the whole output into, whose files replace the earlier output only once the block
        ends without an error: until then (and after a failure or a kill) the folder holds what it held before. The
        stage is a hidden folder inside the output folder (so only that folder need be writable); one a killed run
        left is removed by the next."""
        self.check(overwrite=overwrite)
        made = _missing_folders(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        # one run at a time: a second on the folder is refused at once, naming the first (it ran its whole
        # evaluation, then was refused, or with `overwrite` replaced the first's; found in review)
        lock = JobLock(self.path / LOCK, output=self.path).acquire()
        finished = False
        try:
            self._clear_stale_stages()
            stage = self.path / f".geosr-stage.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial"
            stage.mkdir()
            try:
                yield stage
                self.check(overwrite=overwrite)  # nothing foreign appeared meanwhile
                for entry in self._entries():
                    entry.unlink()
                for new in sorted(stage.iterdir()):
                    os.replace(new, self.path / new.name)
                finished = True
            finally:
                shutil.rmtree(stage, ignore_errors=True)
        finally:
            (self.path / LOCK).unlink(missing_ok=True)
            lock.release()
            if made and not finished:
                _remove_empty(made)  # the folders this run made for nothing (only if empty)

    @contextlib.contextmanager
    def claimed(self, *, saved: Callable[[], bool], resume: bool = False, overwrite: bool = False) -> Iterator[None]:
        """Hold the folder's lock while the block runs: another run on the folder meanwhile is refused at once,
        naming this one. With ``overwrite``, an earlier output is set aside (``.geosr-replaced``), not removed:
        it is dropped once the block has ``saved()`` something of its own, and put back if the block fails before
        (or if its process was killed: the next claim finds it). A failed block that saved nothing (and does not
        ``resume``) also removes the files it wrote, and the folder if it made it."""
        if self.path.exists() and not self.path.is_dir():
            raise OutputLocationError(f"{self.path}: is a file; the output of {self.command} is a folder")
        problem = unwritable(self.path)
        if problem:
            raise OutputLocationError(f"{self.path}: {problem}; choose another `out`")
        made = _missing_folders(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        had_lock = (self.path / LOCK).exists()
        aside = self.path / REPLACED
        with JobLock(self.path / LOCK, output=self.path):
            for e in self.path.iterdir():  # a killed save's (no run writes now: this one holds the lock)
                if SAFETENSORS_TMP.fullmatch(e.name) and e.is_file() and not e.is_symlink():
                    e.unlink()
            if aside.is_dir():  # set aside by a run that was killed: whether it saved decides, as below
                self._settle(aside, keep_new=saved())
            left = self._entries()
            if had_lock and not resume and not overwrite and left and not saved() and all(
                    e.is_file() and not e.is_symlink() and any(fnmatch(e.name, p) for p in self.unsaved)
                    for e in left):
                # a run killed (kill -9, out of memory) before it saved anything left its log and lock: it is run
                # again as it was, as one that failed would have cleared them (the lock shows none is running).
                # Only what a run writes before its first save: a finished run's model is never taken for it
                for e in left:
                    e.unlink()
            before = {(e.name, e.stat().st_ino) for e in self._entries() if e.is_file()}
            ok = False
            try:
                if overwrite and not resume:  # (refused: the folder is left as it was found, without a lock file)
                    self.check(overwrite=True)
                    entries = self._entries()
                    if entries:
                        aside.mkdir()
                        for e in entries:
                            os.replace(e, aside / e.name)
                yield
                ok = True
            finally:
                keep_new = ok or resume or saved()
                if not keep_new:
                    for e in self._entries():
                        if (e.is_file() and not e.is_symlink() and self._owns(e.name)
                                and (e.name, e.stat().st_ino) not in before):
                            e.unlink()
                if aside.is_dir():
                    self._settle(aside, keep_new=keep_new)
                if made and not self._entries():
                    with contextlib.suppress(OSError):
                        (self.path / LOCK).unlink()
                    _remove_empty(made)
                elif not keep_new and not had_lock:  # a folder refused or failed in: left as it was found
                    with contextlib.suppress(OSError):
                        (self.path / LOCK).unlink()

    def _owns(self, name: str) -> bool:
        return any(fnmatch(name, p) for p in self.owned)

    def _settle(self, aside: Path, *, keep_new: bool) -> None:
        """Drop the earlier output set aside in ``aside`` (``keep_new``), or put it back in place of what this
        command wrote since."""
        if not keep_new:
            for e in self._entries():
                if e.is_file() and not e.is_symlink() and self._owns(e.name):
                    e.unlink()
            for old in aside.iterdir():
                os.replace(old, self.path / old.name)
        shutil.rmtree(aside, ignore_errors=True)

    def _clear_stale_stages(self) -> None:
        """Remove the stages that killed runs left (named with their process id)."""
        for old in self.path.glob(".geosr-stage.*.partial"):
            m = STAGE.fullmatch(old.name)
            if m and old.is_dir() and not old.is_symlink() and not _alive(int(m.group(1))):
                shutil.rmtree(old, ignore_errors=True)


# The lock file of :meth:`OutputFolder.claimed` (kept: the flock, not the file, is the lock), and where it sets an
# earlier output aside until the new one has saved
LOCK = ".geosr-lock"
REPLACED = ".geosr-replaced"
# The name of a stage folder of :meth:`OutputFolder.staged` (the process id, a random part)
STAGE = re.compile(r"\.geosr-stage\.(\d+)\.[0-9a-f]{8}\.partial")
# the hidden file safetensors writes a tensor file through (then renamed onto its name): a run killed while it saved
# left one of the model's size, which the next run took for a file not its own and refused (found in review)
SAFETENSORS_TMP = re.compile(r"\.tmp[0-9A-Za-z]{6}")


def _alive(pid: int) -> bool:
    """Whether a process of that id runs on this machine (on Windows, unknown: taken as alive, its stage kept)."""
    if os.name == "nt":  # there os.kill(pid, 0) sends Ctrl-C to that process's console group, and fails as an
        return True  # OSError (not ProcessLookupError) where there is none (found in review)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's
        return True
    return True


__all__ = ["OutputFolder"]


def _missing_folders(path: Path) -> list[Path]:
    """``path`` and those of its parents that do not exist yet, deepest first: what ``mkdir(parents=True)`` makes."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first), each only while empty: a run that made them for nothing leaves none."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return
