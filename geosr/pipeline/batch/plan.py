"""Planning a batch, in the calling process: every job checked before anything runs.

:func:`plan_batch` reads a manifest (:mod:`geosr.pipeline.batch.manifest`) and checks every job: options,
unique outputs, and a dry-run :func:`~geosr.pipeline.upscale.plan_upscale` of each job (files exist, are
rasters, overlap, bands and scale fit the model). It decides what each job will do: ``run``, ``skip`` (its
output is complete and was made from the same inputs and options, per the record beside it) or ``fail``
(an output exists that this batch did not make; ``overwrite`` replaces it).
"""

from __future__ import annotations

import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from geosr.errors import GeoSRError, InputError, OptionError, names_too_long_are_input_errors
from geosr.options.declare import check_callable, coerce
from geosr.pipeline.batch.manifest import (
    RESULTS_SUFFIX,
    JobSpec,
    ManifestError,
    Problem,
    is_glob,
    read_manifest,
    row_number,
)
from geosr.pipeline.batch.records import (
    RECORD_SUFFIX,
    comparable,
    found_at,
    output_matches,
    read_record,
    sidecars_changed,
)
from geosr.pipeline.batch.results import BatchPlan, PlannedJob
from geosr.pipeline.batch.tasks import unseeded
from geosr.pipeline.fingerprints import made_by


@names_too_long_are_input_errors
def plan_batch(
    manifest: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    force: bool = False,
    skip_invalid: bool = False,
    make_dirs: bool = False,
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    **job_options: Any,
) -> BatchPlan:
    """Read and check every job of ``manifest``; decide which run, which are skipped, which fail at once.

    ``make_dirs``: an output folder that does not exist is made when its job runs (not by the check)."""
    t0 = time.perf_counter()
    # checked here, not only by batch(): overwrite="no" is true to Python, and replaced the outputs it named
    overwrite, force, skip_invalid, make_dirs = (
        bool(coerce(name, value, bool)) for name, value in (("overwrite", overwrite), ("force", force),
                                                            ("skip_invalid", skip_invalid), ("make_dirs", make_dirs)))
    check_callable(progress, "progress", "(done, total)")
    if manifest is None:  # read as a file named "None"
        raise OptionError("manifest is required: the manifest file, or a glob of LR files", param="manifest")
    threads = coerce("threads", threads, int)
    if threads is not None and threads < 1:
        raise OptionError(f"threads {threads} must be at least 1 (or left out)", param="threads")
    m = read_manifest(manifest, defaults=job_options)
    problems = list(m.problems)
    models = _ClientModels()
    specs = m.jobs
    total = len(specs)
    if progress:
        progress(0, total)
    done = 0
    checked: list[PlannedJob | Problem] = []
    with ThreadPoolExecutor(max_workers=threads or min(4, os.cpu_count() or 1)) as pool:
        def check(spec: JobSpec) -> PlannedJob | Problem:
            return _check_job(spec, models, overwrite=overwrite, force=force, make_dirs=make_dirs)

        for item in pool.map(check, specs):
            checked.append(item)
            done += 1
            if progress:
                progress(done, total)
    checked = _in_work_folders(_read_through(checked, m.jobs), m.jobs)
    jobs = [c for c in checked if isinstance(c, PlannedJob)]
    problems += [c for c in checked if isinstance(c, Problem)]
    problems.sort(key=_row_number)  # in the manifest's order: those refused as read were listed first
    if problems and not skip_invalid:
        raise ManifestError(m.source, problems)
    return BatchPlan(source=m.source, jobs=jobs, invalid=problems, results=_default_results(m.source),
                     seconds=time.perf_counter() - t0, make_dirs=make_dirs)


def _read_through(checked: list[PlannedJob | Problem], specs: list[JobSpec]) -> list[PlannedJob | Problem]:
    """``checked`` with every job refused whose output (or a file written beside it) another job reads through one
    of its inputs: a VRT's source, the archive of a /vsizip/ path, a file of a STAC item, a Sentinel-2 product or a
    folder of band files (their cloud masks too), or a new band of such a folder (the manifest compares the paths
    themselves). One job's own are its check's (geosr.io.outputs.check_output_path)."""
    from geosr.io.paths import file_key, sidecar_paths
    from geosr.io.sources import band_folders, files_of, gdal_files, is_composite, joins_band_folder
    from geosr.pipeline.batch.manifest import input_files

    read: dict[tuple, tuple[str, str]] = {}
    folders: dict[str, tuple[str, str]] = {}  # a folder of band files read -> (job, input)
    for spec in specs:
        for p in spec.inputs():
            for part in input_files(p):
                try:
                    members = files_of(part) if is_composite(part) else []
                except GeoSRError:  # a bad input, or its server down: its own job is refused or failed for it
                    members = []
                for behind in [*gdal_files(part), *members]:
                    read.setdefault(file_key(behind), (spec.where, part))
                for folder in band_folders(part):
                    folders.setdefault(folder, (spec.where, part))
    out: list[PlannedJob | Problem] = []
    for c in checked:
        spec = c.spec if isinstance(c, PlannedJob) else None
        written = [] if spec is None else [spec.out, *map(str, sidecar_paths(spec.out).values())]
        hit = next(((path, read[key]) for path in written
                    if (key := file_key(path)) in read and read[key][0] != spec.where), None) or \
            next(((path, f) for path in written
                  if (f := folders.get(os.path.realpath(Path(path).parent))) and f[0] != spec.where
                  and joins_band_folder(f[1], path)), None)
        if hit is None:
            out.append(c)
            continue
        path, (where, src) = hit
        what = "out" if path == spec.out else "a file written beside out"
        out.append(Problem(spec.where, f"{what} {path} is read by an input of {where} ({src}); write the output to "
                                       "another path", spec.id, spec.lr, spec.out))
    return out


def work_folders(specs: list[JobSpec]) -> dict[str, str]:
    """{the real path of each job's work folder (``OUT.geosr-work``, which its run clears): the job's row}."""
    from geosr.io.journal import work_dir_for

    return {os.path.realpath(work_dir_for(Path(s.out))): s.where for s in specs if s.out}


def in_work_folder(path: str | Path, works: dict[str, str]) -> tuple[str, str] | None:
    """(work folder, its job's row) of ``works`` that ``path`` lies in, if any."""
    for parent in Path(os.path.realpath(path)).parents:
        if str(parent) in works:
            return str(parent), works[str(parent)]
    return None


def _in_work_folders(checked: list[PlannedJob | Problem], specs: list[JobSpec]) -> list[PlannedJob | Problem]:
    """``checked`` with every job refused that reads or writes a file inside another job's work folder, which that
    job's run clears as it ends: another job's input there was deleted, its output reported `ok` and gone (found
    in review). A job's own work folder is its check's (geosr.io.outputs)."""
    from geosr.io.paths import sidecar_paths
    from geosr.pipeline.batch.manifest import input_files

    works = work_folders(specs)
    out: list[PlannedJob | Problem] = []
    for c in checked:
        if not isinstance(c, PlannedJob):
            out.append(c)
            continue
        spec = c.spec
        paths = [("an input", f) for p in spec.inputs() for f in input_files(p)]
        paths += [("out", spec.out), *(("a file written beside out", str(f)) for f in sidecar_paths(spec.out).values())]
        hit = next(((what, path, found) for what, path in paths
                    if (found := in_work_folder(path, works)) and found[1] != spec.where), None)
        if hit is None:
            out.append(c)
            continue
        what, path, (work, where) = hit
        out.append(Problem(spec.where, f"{what} {path} lies in {work}, the work folder of the output of {where}, which "
                                       "geosr clears; move it out of that folder", spec.id, spec.lr, spec.out))
    return out


def _row_number(problem: Problem) -> int:
    """A problem's line or job number in its manifest; -1 for the others (kept first, in their order: the sort is
    stable)."""
    n = row_number(problem.where)
    return -1 if n is None else n


def plan_count(plan: BatchPlan, action: str) -> int:
    return sum(j.action == action for j in plan.jobs)


def split_rows(n_rows: int, n_cols: int, split_windows: int) -> tuple[tuple[int, int], ...]:
    """Ranges of whole window rows of about ``split_windows`` windows each (one range when 0 or small)."""
    if split_windows <= 0 or n_rows * n_cols <= split_windows or n_rows < 2:
        return ((0, n_rows),)
    per = max(1, split_windows // max(1, n_cols))
    k = min(n_rows, math.ceil(n_rows / per))
    cuts = [round(i * n_rows / k) for i in range(k + 1)]
    return tuple((a, b) for a, b in zip(cuts, cuts[1:]) if b > a)


class _ClientModels:
    """Models loaded once in the calling process to check jobs (on the CPU; nothing runs through them)."""

    def __init__(self) -> None:
        self._models: dict[tuple, Any] = {}
        self._lock = threading.Lock()

    def get(self, name: str, *, device: str = "cpu", sampler=None):
        """``name`` loaded with ``sampler`` as the workers will (the job's fingerprint records how it runs)."""
        key = (name, unseeded(sampler))
        with self._lock:
            if key not in self._models:
                from geosr.models.registry import load_model

                try:
                    self._models[key] = load_model(name, device="cpu", sampler=key[1])
                except InputError as exc:
                    self._models[key] = exc
            got = self._models[key]
        if isinstance(got, Exception):
            raise got
        return got


# Seconds to wait before each new try of a job's check that a network fault stopped (an input URL whose server did
# not answer or answered 5xx, 408, 429); after the last, the job fails (exit 1, worth running the batch again), it is
# not an invalid row (exit 2)
CHECK_RETRY_DELAYS = (1.0, 4.0)


def _check_job(spec: JobSpec, models: _ClientModels, *, overwrite: bool, force: bool,
               make_dirs: bool = False) -> PlannedJob | Problem:
    from geosr.errors import NetworkError

    delays = iter(CHECK_RETRY_DELAYS)
    while True:
        try:
            return _check_job_once(spec, models, overwrite=overwrite, force=force, make_dirs=make_dirs)
        except NetworkError as exc:
            delay = next(delays, None)
            if delay is None:
                return PlannedJob(spec=spec, action="fail", reason=str(exc), error_type="NetworkError")
            time.sleep(delay)


def _check_job_once(spec: JobSpec, models: _ClientModels, *, overwrite: bool, force: bool,
                    make_dirs: bool = False) -> PlannedJob | Problem:
    from geosr.errors import NetworkError
    from geosr.pipeline.job import check_output_files
    from geosr.pipeline.upscale import plan_upscale, resolve_model

    try:  # the output and its sidecars, as paths (whether existing ones may be replaced is decided below)
        check_output_files(spec.lr, spec.out, spec.options_on(device="cpu", overwrite=True), make_folder=make_dirs)
        opts = spec.options_on(device="cpu")
        model = resolve_model(spec.model, spec.x, "cpu", opts.sampler, loader=models.get)
        with plan_upscale(spec.lr, output=None, options=replace(opts, model=model), dry_run=True) as job:
            fingerprint, tags = comparable(job.fingerprint), dict(job.meta.tags)
            n_rows, n_cols, windows = job.plan.n_rows, job.plan.n_cols, len(job.plan)
            memory_mb = float(job.summary["memory_mb"])
            warnings = tuple(dict.fromkeys(job.summary.get("warnings") or ()))
    except InputError as exc:
        return Problem(spec.where, str(exc), spec.id, spec.lr, spec.out)
    except NetworkError:
        raise
    except Exception as exc:  # noqa: BLE001 - a raster GDAL chokes on is still this row's problem
        return Problem(spec.where, f"{type(exc).__name__}: {exc}", spec.id, spec.lr, spec.out)
    parts = split_rows(n_rows, n_cols, spec.split_windows)
    base = dict(spec=spec, windows=windows, window_rows=n_rows, parts=parts, memory_mb=memory_mb, warnings=warnings)
    out = Path(spec.out)
    if not out.exists():
        foreign = None if overwrite or spec.overwrite else _foreign_sidecar(out)
        if foreign:
            return PlannedJob(action="fail", reason=foreign, error_type="OutputExistsError", **base)
        return PlannedJob(action="run", replaces=found_at(out), **base)
    record = read_record(out)
    if force and (record is not None or overwrite or spec.overwrite):  # a file batch did not make needs overwrite
        return PlannedJob(action="run", replace=True, replaces=found_at(out), **base)
    if record is not None and record.get("fingerprint") == fingerprint and output_matches(out, record):
        changed = sidecars_changed(out, record)
        if changed:  # written again with them (they describe its pixels)
            return PlannedJob(action="run", replace=True, replaces=found_at(out),
                              reason=f"its {' and '.join(changed)} {'is' if len(changed) == 1 else 'are'} gone or "
                                     "changed", **base)
        reason = "its output is complete and its inputs and options are unchanged"
        return PlannedJob(action="skip", reason=reason, **base)
    if overwrite or spec.overwrite or _left_by_this_job(out, fingerprint, tags):
        return PlannedJob(action="run", replace=True, replaces=found_at(out), **base)
    return PlannedJob(action="fail", reason=_exists_reason(out, record, fingerprint), error_type="OutputExistsError",
                      **base)


def _left_by_this_job(out: Path, fingerprint: dict, tags: dict[str, str]) -> bool:
    """The output was put in place by this very job, killed before its record: its journals are still there, and
    the output is its (a job refused as another run's output appeared left its journals: the next run took that
    output for its own and replaced it; found in review)."""
    from geosr.io.journal import recorded_jobs, work_dir_for

    record = read_record(out)
    if record is not None and output_matches(out, record):  # another job's finished output (its record says so)
        return False
    return any(comparable(recorded) == fingerprint for recorded in recorded_jobs(work_dir_for(out))) and \
        made_by(out, tags)


def _foreign_sidecar(out: Path) -> str | None:
    """Why a job whose output is absent may not run without ``overwrite``: a file it writes beside the output (its
    STAC item, its provenance raster) exists and no record says geosr batch made this output (whose sidecars those
    would be). None when it may run. (An output that exists is judged with its sidecars by its record.)"""
    from geosr.io.paths import gdal_sidecars, sidecar_paths

    if read_record(out) is not None:  # this output was made by a batch and removed since: the sidecars are its
        return None
    sides = sidecar_paths(out)  # and what GDAL reads with the rasters (metadata, overviews, mask), as upscale
    sides |= {f"GDAL {what}": p for what, p in gdal_sidecars(out).items()}
    sides |= {f"provenance raster's GDAL {what}": p for what, p in gdal_sidecars(sides["provenance raster"]).items()}
    for what, side in sides.items():
        if side.exists() or side.is_symlink():
            return (f"{side}: already exists, and the job would write {out.name}'s {what} there; it was not made by "
                    f"geosr batch (no {out.name}{RECORD_SUFFIX}); use `overwrite` to replace it")
    return None


def _exists_reason(out: Path, record: dict | None, fingerprint: dict) -> str:
    from geosr.pipeline.fingerprints import fingerprint_changes

    tail = "; use `overwrite` to replace it"  # (the CLI shows --overwrite: cli_words)
    if record is None:
        return f"{out}: already exists and was not made by geosr batch (no {out.name}{RECORD_SUFFIX}){tail}"
    old = record.get("fingerprint") or {}
    if old == fingerprint:
        return f"{out}: already exists but was changed after geosr batch wrote it{tail}"
    changed = fingerprint_changes(old, fingerprint)
    return (f"{out}: already exists, made from other inputs or options ({'; '.join(changed)}){tail}" if changed
            else f"{out}: already exists, made by another job{tail}")


def _default_results(source: str) -> str:
    p = Path(source)
    if p.is_file():
        p = p.resolve()
        return str(p.with_name(p.stem + RESULTS_SUFFIX))
    return str(Path.cwd() / f"geosr-batch{RESULTS_SUFFIX}") if is_glob(source) else str(p) + RESULTS_SUFFIX
