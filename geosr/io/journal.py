"""The resume journal: a work folder beside the output holding finished row bands and blending state.

``<output>.geosr-work/`` holds one journal folder per range of window rows (``rows_SSSSS_EEEEE/``: the
whole plan in a plain run, several when a scene is split across workers). Each holds ``job.json`` (the
fingerprint of the job), ``journal.jsonl`` (one line per finished window row, appended and fsynced only
after its files are on disk), ``chunk_NNNNN.tif`` (the finished HR rows of that window row) and
``carry_NNNNN.npz`` (the accumulator state of the rows still open after it). The folder also holds the
job's lock (:mod:`geosr.io.lock`); only its holder changes the folder.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from geosr.errors import OutputExistsError, OutputLocationError, ResumeError
from geosr.io.outputs import WORK_SUFFIX, atomic_output


def clear_work_dir(folder: Path, *, keep: tuple[str, ...] = (), keep_prefixes: tuple[str, ...] = ()) -> None:
    """Empty a work folder (a fresh start), keeping the files named in ``keep`` (the held lock) and those whose
    names begin with one of ``keep_prefixes`` (what the job's planning left there for its later runs)."""
    if folder.is_symlink():  # never the folder a link points to (an input's, say)
        raise OutputLocationError(f"{folder}: is a link; geosr keeps its work in a folder of that name and clears it, "
                                  "so move it away first")
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.name in keep or entry.name.startswith(keep_prefixes):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink(missing_ok=True)


def work_dir_for(output: Path) -> Path:
    return output.with_name(output.name + WORK_SUFFIX)


def refuse_unfinished_upscale(output: Path, *, overwrite: bool) -> None:
    """For a command that writes ``output`` in one go (detect-changes, rasterize-osm) and clears its work folder:
    refuse, unless ``overwrite``, where that folder holds the finished window rows of an interrupted upscale into
    the same name, which its `resume` continues from (they were deleted without a word; found in review)."""
    folder = work_dir_for(output)
    if overwrite or folder.is_symlink() or not folder.is_dir():
        return
    rows = 0
    for journal in folder.glob("rows_*/journal.jsonl"):
        try:
            rows += sum(1 for line in journal.read_bytes().splitlines() if line.strip())
        except OSError:
            continue
    if rows:
        raise OutputExistsError(f"{output}: an interrupted geosr upscale into it left {rows} finished window "
                                f"row{'s' * (rows != 1)} in {folder.name}, which its `resume` continues from; "
                                "finish that run, or use `overwrite` to replace it")


def staged_mb(work: Path) -> float:
    """Megabytes the files in the work folder ``work`` take (an earlier run's rows: a `resume` keeps them, a fresh
    start removes them; either way they are no space the run has yet to take); 0 without one."""
    total = 0
    for path in work.rglob("*") if work.is_dir() else ():
        try:
            total += path.stat().st_size if path.is_file() else 0
        except OSError:  # removed meanwhile
            continue
    return total / 2**20


def journal_of(work: Path, fingerprint: dict, n_rows: int) -> bool:
    """Whether the work folder ``work`` holds a journal, finished or not, of the undivided job ``fingerprint`` of
    ``n_rows`` window rows."""
    try:
        return json.loads((work / f"rows_{0:05d}_{n_rows:05d}" / "job.json").read_text()) == {
            **fingerprint, "rows": [0, n_rows]}
    except (OSError, ValueError):
        return False


def finished_journal(work: Path, fingerprint: dict, n_rows: int) -> bool:
    """Whether the work folder ``work`` holds the finished journal of the undivided job ``fingerprint`` of
    ``n_rows`` window rows: every row journaled, every chunk on disk (a run stopped after its output was in
    place, before its sidecars were, or before its work folder was removed)."""
    folder = work / f"rows_{0:05d}_{n_rows:05d}"
    if not journal_of(work, fingerprint, n_rows):
        return False
    try:
        entries = [json.loads(line) for line in (folder / "journal.jsonl").read_bytes().splitlines()]
    except (OSError, ValueError):
        return False
    chunks = [e.get("chunk") for e in entries if isinstance(e, dict)]
    return (len(chunks) == n_rows == len(entries) and [e.get("row") for e in entries] == list(range(n_rows))
            and all(c is None or (folder / str(c)).is_file() for c in chunks))


def recorded_jobs(work: Path) -> Iterator[dict]:
    """The fingerprint of the job each journal in the work folder ``work`` belongs to (its row range left out);
    unreadable ones are skipped."""
    for job in sorted(work.glob("rows_*/job.json")):
        try:
            recorded = json.loads(job.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(recorded, dict):
            recorded.pop("rows", None)
            yield recorded


def _check_recorded(folder: Path, fingerprint: dict, explain: Callable[[dict, dict], list[str]] | None) -> None:
    """Refuse to resume the journal in ``folder`` unless it was started for ``fingerprint``, saying (``explain``)
    what differs."""
    job = folder / "job.json"
    try:
        recorded = json.loads(job.read_text())
    except (ValueError, OSError) as exc:
        raise ResumeError(f"{job}: the journal is unreadable; run again without `resume`") from exc
    if recorded != fingerprint:
        output = folder.parent.with_name(folder.parent.name.removesuffix(WORK_SUFFIX))
        raise other_run(output, explain(recorded, fingerprint) if explain and isinstance(recorded, dict) else [])


def other_run(output: Path, changed: list[str]) -> ResumeError:
    """The refusal to resume ``output``'s unfinished run with other inputs or options (``changed``: which)."""
    return ResumeError(f"{output}: its unfinished run was started with other inputs or options"
                       + (f" ({'; '.join(changed)})" if changed else "")
                       + "; give the same ones to continue it, or run again without `resume` to start over")


class Journal:
    """Finished window rows of one job, and where their files are."""

    def __init__(self, folder: Path, fingerprint: dict) -> None:
        self.folder = folder
        self.fingerprint = fingerprint
        self.rows: list[dict] = []

    @classmethod
    def start(cls, folder: Path, fingerprint: dict, *, resume: bool,
              explain: Callable[[dict, dict], list[str]] | None = None) -> "Journal":
        """Open the journal in ``folder``: continue a matching one when ``resume``, else start afresh. ``explain``
        says what differs between a recorded fingerprint and this one, for the refusal."""
        job = folder / "job.json"
        if resume and job.exists():
            _check_recorded(folder, fingerprint, explain)
            journal = cls(folder, fingerprint)
            journal._load()
            journal._check_files()
            for partial in folder.glob("*.partial*"):  # a chunk or carry a killed run was writing
                partial.unlink(missing_ok=True)
            return journal
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        with atomic_output(job) as tmp:
            tmp.write_text(json.dumps(fingerprint, sort_keys=True))
        return cls(folder, fingerprint)

    @classmethod
    def peek(cls, folder: Path, fingerprint: dict, explain: Callable[[dict, dict], list[str]] | None = None) -> int:
        """What :meth:`start` with ``resume`` would find, changing nothing (a dry run): the window rows finished,
        0 without a journal; raises the ResumeError it would."""
        if not (folder / "job.json").exists():
            return 0
        _check_recorded(folder, fingerprint, explain)
        try:
            lines = (folder / "journal.jsonl").read_bytes().splitlines(keepends=True)
        except FileNotFoundError:
            return 0
        done = 0
        for line in lines:  # whole entries (a torn last one is redone)
            try:
                json.loads(line)
            except ValueError:
                break
            if not line.endswith(b"\n"):
                break
            done += 1
        return done

    def _load(self) -> None:
        path = self.folder / "journal.jsonl"
        if not path.exists():
            return
        good = 0  # bytes of whole lines read
        for line in path.read_bytes().splitlines(keepends=True):
            try:
                entry = json.loads(line)
            except ValueError:
                entry = None
            if entry is None or not line.endswith(b"\n"):  # a torn last line: the row it describes is redone,
                with open(path, "r+b") as fh:  # and the next commit must start on a line of its own
                    fh.truncate(good)
                break
            good += len(line)
            if not (isinstance(entry, dict) and isinstance(entry.get("row"), int)
                    and isinstance(entry.get("hr_row"), int) and isinstance(entry.get("chunk"), (str, type(None)))):
                raise ResumeError(f"{path}: line {len(self.rows) + 1} is not a journal entry; the work folder is "
                                  "damaged, run again without `resume`")
            self.rows.append(entry)

    def _check_files(self) -> None:
        """Every chunk the journal lists, and the last carry, must be on disk (a damaged folder is refused)."""
        for path, _ in self.chunks():
            if path.parent != self.folder or not path.is_file():
                raise ResumeError(f"{path}: is listed in the journal but missing; the work folder is damaged, run "
                                  "again without `resume`")

    @property
    def done(self) -> int:
        """Number of window rows finished."""
        return len(self.rows)

    def chunk_path(self, row: int) -> Path:
        return self.folder / f"chunk_{row:05d}.tif"

    def chunks(self) -> list[tuple[Path, int]]:
        """(chunk file, first HR row) of every finished row that produced rows."""
        return [(self.folder / e["chunk"], e["hr_row"]) for e in self.rows if e.get("chunk")]

    def _carry_path(self, row: int) -> Path:
        return self.folder / f"carry_{row:05d}.npz"

    def load_carry(self) -> dict[str, np.ndarray] | None:
        """The accumulator state saved with the last finished row (None before the first)."""
        if not self.rows:
            return None
        path = self._carry_path(self.done - 1)
        if not path.exists():
            raise ResumeError(f"{path}: is missing; run again without `resume` to start over")
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ResumeError(f"{path}: is unreadable ({exc}); the work folder is damaged, run again without "
                              "`resume`") from exc

    def commit(self, row: int, hr_row: int, has_chunk: bool, carry: dict[str, np.ndarray]) -> None:
        """Record window row ``row`` as finished; its chunk must already be on disk."""
        with atomic_output(self._carry_path(row)) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **carry)  # type: ignore[arg-type]  # numpy's stub types **kwds as its ``allow_pickle``
        entry = {"row": row, "hr_row": hr_row, "chunk": self.chunk_path(row).name if has_chunk else None}
        with open(self.folder / "journal.jsonl", "a") as fh:
            fh.write(json.dumps(entry) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.rows.append(entry)
        self._carry_path(row - 1).unlink(missing_ok=True)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
