"""Running a batch, in the calling process: tasks submitted, results streamed into the results manifest.

:func:`run_batch` runs the ``run`` jobs of a plan on a Dask cluster (a local one sized to the machine by
default); a task that raises is retried, a task whose worker dies is rescheduled. Results stream into a
JSON-lines results manifest, rewritten in manifest order at the end. :func:`batch` plans and runs: the
Python form of ``geosr batch``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable

from geosr.config import DEVICE_NAME, device_name
from geosr.errors import OptionError, names_too_long_are_input_errors
from geosr.options.declare import check_callable, coerce
from geosr.pipeline.batch.cluster import check_dashboard, check_scheduler, cluster_info, connect, warm
from geosr.pipeline.batch.manifest import input_files, row_number
from geosr.pipeline.batch.plan import in_work_folder, plan_batch, plan_count, work_folders
from geosr.pipeline.batch.results import (
    BatchPlan,
    BatchProgress,
    BatchResult,
    JobResult,
    PlannedJob,
    TaskError,
    invalid_results,
    job_result,
    planned_result,
    utc_now,
)
from geosr.pipeline.batch.tasks import EVENT_TOPIC, run_finish_task, run_job_task, run_part_task

MAX_RETRIES = 100  # times a task is retried at most


@dataclass(frozen=True)
class RunSettings:
    """How a plan runs. Each field is also a keyword of :func:`run_batch` and of :func:`batch`."""

    results: str | os.PathLike[str] | None = None  # the results manifest (default: the plan's)
    client: Any = None  # a Dask client the caller manages
    scheduler: str | None = None  # else the address of a running Dask scheduler
    workers: int | None = None  # else a local cluster: its workers (default: one per GPU, or per core)
    device: str = "auto"
    retries: int = 2  # times a task that raised is retried (it resumes from its journal)
    dashboard: str | None = ":8787"  # the local cluster's dashboard address (None or "none": off)
    progress: Callable[[BatchProgress], None] | None = None
    on_start: Callable[[dict], None] | None = None  # told the cluster and the counts once it is up

    def __post_init__(self) -> None:
        # (a number for `results` or a string for `client` failed deep in the run, a raw TypeError; review)
        if self.results is not None and not isinstance(self.results, (str, os.PathLike)):
            raise OptionError(f"results {self.results!r}: give the path of a results manifest", param="results")
        if self.client is not None:
            from distributed import Client

            if not isinstance(self.client, Client):
                raise OptionError(f"client {self.client!r}: give a dask.distributed Client (or a scheduler "
                                  "address as scheduler)", param="client")
        if self.scheduler is not None:
            check_scheduler(self.scheduler)  # and taken as checked (" tcp://..." passed, then failed the run; review)
            object.__setattr__(self, "scheduler", self.scheduler.strip())
        if self.workers is not None:
            object.__setattr__(self, "workers", coerce("workers", self.workers, int))
            if self.workers < 1:
                raise OptionError(f"workers {self.workers} must be at least 1 (or left out: one per GPU or core)",
                                  param="workers")
        if self.workers is not None and (self.client is not None or self.scheduler is not None):
            # (it was taken and ignored: the cluster there has the workers it has)
            where = "`client`" if self.client is not None else "`scheduler`"
            raise OptionError(f"workers applies to the local cluster only; the cluster behind {where} has its own",
                              param="workers")
        local = self.client is None and self.scheduler is None
        if local and self.workers is not None and self.workers > (most := 4 * (os.cpu_count() or 1)):
            # (a huge number was handed to Dask, which started workers until the machine's memory was gone)
            raise OptionError(f"workers {self.workers}: a local cluster runs at most {most} (4 per core of this "
                              "machine); a cluster of more machines is reached with `scheduler`", param="workers")
        # the name checked as a run checks it (a dry run said nothing of `tpu`); whether this machine has CUDA is
        # the workers' to say
        object.__setattr__(self, "device", device_name(self.device))
        if not isinstance(self.device, str) or not re.fullmatch(DEVICE_NAME, self.device.strip().lower(), re.ASCII):
            raise OptionError(f"device {self.device!r}: use auto, cpu, cuda or cuda:N", param="device")
        object.__setattr__(self, "device", self.device.strip().lower())  # as used and recorded (" cuda " was kept)
        object.__setattr__(self, "retries", coerce("retries", self.retries, int))
        if not 0 <= self.retries <= MAX_RETRIES:  # (2**64 and above: Dask could not send the task, and hung)
            raise OptionError(f"retries must be from 0 (no retry) to {MAX_RETRIES}, not {self.retries}",
                              param="retries")
        if self.client is None and self.scheduler is None:  # a local cluster serves the dashboard
            check_dashboard(self.dashboard)
        # (`progress=True` was a TypeError once the cluster was up, the jobs still pending "cancelled"; review)
        check_callable(self.progress, "progress", "(BatchProgress)")
        check_callable(self.on_start, "on_start", "(dict)")

    @classmethod
    def take(cls, options: dict[str, Any]) -> "RunSettings":
        """The settings among ``options``, removed from it (what is left are job options)."""
        return cls(**{f.name: options.pop(f.name) for f in fields(cls) if f.name in options})


@names_too_long_are_input_errors
def batch(
    manifest: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    force: bool = False,
    skip_invalid: bool = False,
    make_dirs: bool = False,
    dry_run: bool = False,
    check_progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> BatchResult:
    """Run every job of ``manifest`` (a YAML/JSON/JSON-lines/CSV file, or a glob of LR files).

    ``options`` are :class:`RunSettings` (``results``, ``client``, ``scheduler``, ``workers``, ``device``,
    ``retries``, ``dashboard``, ``progress``, ``on_start``, as in :func:`run_batch`) and job options (``x``,
    ``model``, ``out``, ``ref``, ``split_windows``, ... as in a manifest), which apply to every job that does
    not set them. Raises :class:`~geosr.pipeline.batch.manifest.ManifestError` (an InputError) listing every
    invalid row, before anything runs, unless ``skip_invalid``. ``make_dirs``: missing output folders are made
    as their jobs start (a dry run makes none). See ``geosr batch --help``.
    """
    overwrite, force, skip_invalid, make_dirs, dry_run = (
        coerce(name, value, bool) for name, value in (("overwrite", overwrite), ("force", force),
                                                      ("skip_invalid", skip_invalid), ("make_dirs", make_dirs),
                                                      ("dry_run", dry_run)))
    check_callable(check_progress, "check_progress", "(done, total)")
    settings = RunSettings.take(options)
    plan = plan_batch(manifest, overwrite=overwrite, force=force, skip_invalid=skip_invalid, make_dirs=make_dirs,
                      progress=check_progress, **options)
    if dry_run:
        if settings.results or plan.results:  # refused as the run would refuse it (nothing made)
            check_results_path(Path(settings.results or plan.results), plan, given=bool(settings.results))
        if settings.client is None and settings.scheduler is None:  # a local cluster's device, checked as the run
            # would check it (`device` cuda on a machine without one was "planned", then refused; found in review)
            from geosr.pipeline.batch.cluster import gpu_ids

            gpu_ids(settings.device)
        return BatchResult(source=plan.source, jobs=manifest_order([planned_result(j) for j in plan.jobs]
                                                                   + invalid_results(plan)),
                           results=None, seconds=plan.seconds, dry_run=True)
    return run_batch(plan, settings)


@names_too_long_are_input_errors
def run_batch(plan: BatchPlan, settings: RunSettings | None = None, **kw: Any) -> BatchResult:
    """Run the planned jobs on ``client``, on the cluster at ``scheduler``, or on a new local cluster.

    ``kw``: the fields of :class:`RunSettings` (``results=``, ``client=``, ``scheduler=``, ``workers=``,
    ``device=``, ``retries=``, ``dashboard=``, ``progress=``, ``on_start=``), over ``settings``.
    """
    if not isinstance(plan, BatchPlan):
        raise OptionError(f"plan {plan!r}: give the BatchPlan that plan_batch returned", param="plan")
    if settings is not None and not isinstance(settings, RunSettings):
        raise OptionError(f"settings {settings!r}: give a RunSettings, or its fields as keywords", param="settings")
    known = {f.name for f in fields(RunSettings)}
    unknown = sorted(set(kw) - known)
    if unknown:
        raise OptionError(f"unknown run_batch setting {unknown[0]!r} (settings: {', '.join(sorted(known))})")
    s = replace(settings or RunSettings(), **kw)
    results_path = Path(s.results or plan.results) if (s.results or plan.results) else None
    if results_path is None:
        return _run_plan(plan, s, None)
    check_results_path(results_path, plan, given=bool(s.results))
    if not results_path.parent.exists():  # with make_dirs (checked), once every check has passed
        from geosr.io.outputs import make_output_folder

        make_output_folder(results_path)
    with results_lock(results_path):
        return _run_plan(plan, s, results_path)


@contextlib.contextmanager
def results_lock(path: Path):
    """One live batch per results manifest (two runs of one manifest would write their results into one file,
    the last to end replacing the other's): a lock on a hidden file beside it, removed at the end. Raises
    :class:`~geosr.io.lock.OutputBusyError` naming the other run."""
    from geosr.io.lock import JobLock

    with JobLock(path.parent / f".{path.name}.lock", output=path) as lock:
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                lock.path.unlink()  # while held: a run that opened it meanwhile finds it gone and makes its own


def _run_plan(plan: BatchPlan, s: RunSettings, results_path: Path | None) -> BatchResult:
    t0 = time.perf_counter()
    writer = _ResultsWriter(results_path)
    done: dict[str, JobResult] = {}
    for pj in plan.jobs:
        if pj.action == "skip":
            done[pj.spec.id] = job_result(pj, "skipped")
        elif pj.action == "fail":
            done[pj.spec.id] = job_result(pj, "failed", stage="check", error=pj.reason,
                                          error_type=pj.error_type or "OutputExistsError")
    invalid = invalid_results(plan)
    for r in [*done.values(), *invalid]:
        writer.write(r)
    to_run: list[PlannedJob] = []
    info: dict[str, Any] = dict(workers=0, scheduler=None, dashboard=None)
    run_id = uuid.uuid4().hex
    stopped: KeyboardInterrupt | None = None
    try:
        if not plan.to_run:
            writer.start()
        else:
            with connect(s.client, s.scheduler, s.workers, s.device, s.dashboard, plan) as (cl, task_device):
                to_run = _with_folders(plan, done, writer)  # once the cluster is up: a batch that cannot start
                info.update(cluster_info(cl, s.scheduler is None and s.client is None, s.dashboard))  # makes none
                if s.on_start:
                    tasks = sum(len(j.parts) for j in to_run)  # a job whose folder could not be made is not one
                    s.on_start(dict(info, jobs=len(to_run), tasks=tasks, skipped=plan_count(plan, "skip"),
                                    results=str(results_path) if results_path else None))
                warm(cl, s.scheduler)
                writer.start()
                _run_on(cl, to_run, task_device, s.retries, done, writer, s.progress, run_id)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM
        stopped = exc
        raise
    finally:
        _finished_while_stopping(to_run, done, run_id)
        ordered = manifest_order([done[j.spec.id] for j in plan.jobs if j.spec.id in done] + invalid)
        writer.close(ordered)
        if stopped is not None:  # what the batch did before it stopped goes with the error (the CLI's --json)
            report = BatchResult(source=plan.source, jobs=ordered, results=str(results_path) if results_path else None,
                                 seconds=time.perf_counter() - t0, **info).to_dict()
            report.pop("exit_code")  # (the error's: 130, 143)
            stopped.geosr_report = report  # type: ignore[attr-defined]
    return BatchResult(source=plan.source, jobs=ordered, results=str(results_path) if results_path else None,
                       seconds=time.perf_counter() - t0, **info)


def _with_folders(plan: BatchPlan, done: dict[str, JobResult], writer: "_ResultsWriter") -> list[PlannedJob]:
    """The jobs to run, their output folders made first where the plan asks for it (``make_dirs``); a job whose
    folder cannot be made fails, the others run."""
    from geosr.errors import OutputLocationError
    from geosr.io.outputs import make_output_folder

    if not plan.make_dirs:
        return plan.to_run
    ready = []
    for pj in plan.to_run:
        try:
            make_output_folder(pj.spec.out)
        except OutputLocationError as exc:
            done[pj.spec.id] = job_result(pj, "failed", stage="check", error=str(exc),
                                          error_type="OutputLocationError")
            writer.write(done[pj.spec.id])
            continue
        ready.append(pj)
    return ready


def _submit(client, jobs: list[PlannedJob], device: str, retries: int, run_id: str) -> tuple[list, dict[str, int]]:
    """Submit every job's tasks: [(final future, planned job, part futures)] and each task key's windows."""
    tag = run_id[:8]
    by = f"geosr batch, process {os.getpid()} on {socket.gethostname()}"  # named by a refused run (not the worker)
    windows_of: dict[str, int] = {}  # task key -> its windows
    finals = []  # (future, planned job, part futures)
    for i, pj in enumerate(jobs):
        spec = pj.spec
        n_cols = pj.windows // max(1, pj.window_rows)
        common = dict(retries=retries, pure=False, priority=-i, batch=by)
        if len(pj.parts) == 1:
            key = f"geosr-upscale-{spec.id}-{tag}"
            fut = client.submit(run_job_task, spec, device, run_id, pj.replaces, key=key, **common)
            windows_of[key] = pj.windows
            finals.append((fut, pj, []))
            continue
        parts = []
        for a, b in pj.parts:
            key = f"geosr-rows-{spec.id}-{a}-{b}-{tag}"
            parts.append(client.submit(run_part_task, spec, device, run_id, (a, b), key=key, **common))
            windows_of[key] = (b - a) * n_cols
        fut = client.submit(run_finish_task, spec, device, run_id, parts, pj.replaces,
                            key=f"geosr-finish-{spec.id}-{tag}", **common)
        finals.append((fut, pj, parts))
    return finals, windows_of


def manifest_order(results: list[JobResult]) -> list[JobResult]:
    """Results in the order of their manifest rows (``jobs.yaml job 3``, ``jobs.csv line 4``; a glob's jobs after
    the listed ones, in their own order), the invalid rows among the others."""
    def key(item: tuple[int, JobResult]) -> tuple[int, int, str, int]:
        i, r = item
        n = row_number(r.where)
        # a glob's row is "WHERE PATH", its paths in the glob's sorted order: by that, not by where it came in the
        # results (refused rows came last, after the jobs that ran)
        return (0, n, "", i) if n is not None else (1, 0, r.where or "", i)

    return [r for _, r in sorted(enumerate(results), key=key)]


def _finished_while_stopping(jobs: list[PlannedJob], done: dict, run_id: str) -> None:
    """A job reported cancelled by an interrupted batch whose worker finished it while the cluster stopped (its
    record of this run is beside its output, written once the output was complete) is reported done."""
    from geosr.pipeline.batch.records import read_record

    for pj in jobs:
        r = done.get(pj.spec.id)
        if r is None or r.status != "cancelled":
            continue
        record = read_record(pj.spec.out)
        if record and record.get("run_id") == run_id and record.get("job_id") == pj.spec.id:
            done[pj.spec.id] = job_result(pj, "ok", finished=record.get("written"), started=record.get("started"),
                                          seconds=record.get("seconds"))


def _run_on(client, jobs: list[PlannedJob], device: str, retries: int, done: dict, writer, progress,
            run_id: str) -> None:
    finals, windows_of = _submit(client, jobs, device, retries, run_id)
    live: dict[str, int] = {}
    lock = threading.Lock()

    def on_event(event) -> None:
        msg = event[1] if isinstance(event, tuple) else event
        if isinstance(msg, dict) and msg.get("run") == run_id:
            with lock:
                live[msg["key"]] = int(msg.get("done", 0))

    with contextlib.suppress(Exception):
        client.subscribe_topic(EVENT_TOPIC, on_event)
    credited: set[str] = set()
    windows_total = sum(pj.windows for pj in jobs)
    pending = list(finals)
    pre_done = len(done)
    try:
        while pending:
            still = []
            for fut, pj, parts in pending:
                for p in parts:
                    if p.done() and p.key not in credited:
                        credited.add(p.key)
                if not fut.done():
                    still.append((fut, pj, parts))
                    continue
                credited.add(fut.key)
                credited.update(p.key for p in parts)
                r = _collect(fut, pj)
                done[pj.spec.id] = r
                writer.write(r)
            pending = still
            if progress:
                with lock:
                    running = {k: v for k, v in live.items() if k not in credited}
                w_done = sum(windows_of.get(k, 0) for k in credited if k in windows_of)
                w_done += sum(min(v, windows_of.get(k, 0)) for k, v in running.items())
                progress(BatchProgress(
                    jobs_done=len(done) - pre_done, jobs_total=len(jobs), windows_done=min(w_done, windows_total),
                    windows_total=windows_total, failed=sum(r.status == "failed" for r in done.values()),
                    running=len(running),
                ))
            if pending:
                time.sleep(0.2)
    except BaseException:  # Ctrl-C (or the client lost): stop what is left, report it as cancelled
        for fut, pj, parts in pending:
            if fut.done() and fut.status == "finished":  # finished since the last look
                done[pj.spec.id] = _collect(fut, pj)
                continue
            for f in (fut, *parts):
                with contextlib.suppress(Exception):
                    f.cancel()
            if pj.spec.id not in done:
                done[pj.spec.id] = job_result(pj, "cancelled", stage="run", error="the batch was interrupted")
        raise
    finally:
        with contextlib.suppress(Exception):
            client.unsubscribe_topic(EVENT_TOPIC)


def _collect(fut, pj: PlannedJob) -> JobResult:
    """The JobResult of a finished task (its returned dict, or its exception after the last retry)."""
    if fut.status == "finished":
        try:
            out = fut.result()
        except Exception as exc:  # noqa: BLE001
            return job_result(pj, "failed", stage="run", error=str(exc), error_type=type(exc).__name__)
        if out.get("ok"):
            return job_result(pj, "ok", seconds=out.get("seconds"), started=out.get("started"),
                              finished=out.get("finished"), resumed_rows=out.get("resumed_rows"),
                              worker=out.get("worker"), warnings=out.get("warnings"))
        return job_result(pj, "failed", stage="run", error=out.get("error"), error_type=out.get("error_type"),
                          seconds=out.get("seconds"), started=out.get("started"), finished=out.get("finished"),
                          worker=out.get("worker"))
    if fut.status == "cancelled":
        return job_result(pj, "cancelled", stage="run", error="its task was cancelled")
    exc = fut.exception()
    name = exc.kind if isinstance(exc, TaskError) else type(exc).__name__
    if isinstance(exc, TaskError):
        message = str(exc)
    elif name == "KilledWorker":
        last = getattr(getattr(exc, "last_worker", None), "address", None)
        message = ("the workers running it died repeatedly (out of memory? see the worker logs)"
                   + (f"; the last was {last}" if last else ""))
    else:
        message = f"{name}: {exc}" if str(exc) else name
    return job_result(pj, "failed", stage="run", error=message, error_type=name, finished=utc_now())


def check_results_path(path: Path, plan: BatchPlan, given: bool = False) -> None:
    """Refuse a results manifest path that would replace what is not an earlier results manifest: the manifest,
    a job's input or output, a folder, any other file (one sentence, before anything runs)."""
    from geosr.errors import OutputLocationError
    from geosr.io.outputs import same_file

    if path.is_dir():
        raise OutputLocationError(f"{path}: is a folder; give the results manifest's file path (`results`)")
    if not path.parent.exists() and not plan.make_dirs:  # a typo would otherwise make folders
        raise OutputLocationError(f"{path}: the folder {path.parent} does not exist; make it, or give `make_dirs` "
                                  "(`results`)")
    if not path.parent.exists():
        from geosr.io.outputs import check_output_path

        check_output_path(path, overwrite=True, make_folder=True)  # a folder that can be made
    elif not os.access(path.parent, os.W_OK | os.X_OK):  # (a dry run passed it, the run refused it; found in review)
        raise OutputLocationError(f"{path}: the folder {path.parent} is not writable (`results`)")
    from geosr.io.paths import sidecar_paths
    from geosr.pipeline.batch.records import record_path

    named = [("the manifest", plan.source)]
    for pj in plan.jobs:  # what each job reads and what it will write, whether it exists yet or not
        named += [(f"an input of job {pj.spec.id}", f) for p in pj.spec.inputs() for f in input_files(p)]
        named += [(f"the output of job {pj.spec.id}", pj.spec.out),
                  (f"the batch record of job {pj.spec.id}", record_path(pj.spec.out))]
        named += [(f"the {what} of job {pj.spec.id}", side) for what, side in sidecar_paths(pj.spec.out).items()]
    for bad in plan.invalid:  # a refused row's files stay untouched as well
        named += [(f"an input of {bad.where}", f) for f in input_files(bad.lr or "")]
        named += [(f"the output of {bad.where}", bad.output)] if bad.output else []
    for role, other in named:
        if other and same_file(path, other):
            raise OutputLocationError(f"{path}: is {role}; give the results manifest another path (`results`)")
    found = in_work_folder(path, work_folders([pj.spec for pj in plan.jobs]))
    if found:  # cleared as that job ends: the batch's results went with it (an internal error at the end)
        raise OutputLocationError(f"{path}: lies in {found[0]}, the work folder of the output of {found[1]}, which "
                                  "geosr clears; give the results manifest another path (`results`)")
    if not path.exists() or path.stat().st_size == 0:
        return
    try:
        with open(path, "rb") as fh:
            first = json.loads(fh.readline())
    except (OSError, ValueError):
        first = None
    if not (isinstance(first, dict) and {"id", "status"} <= set(first)):
        raise OutputLocationError(f"{path}: exists and is not a geosr batch results manifest, which would replace "
                                  "it; give another path (`results`) or remove it")
    where = first.get("where")
    other = _manifest_named(where)
    source = Path(plan.source)
    ours = isinstance(where, str) and re.fullmatch(rf"{re.escape(source.name)} (?:(?:line|job) \d+|glob .+)", where,
                                                   re.DOTALL) is not None  # (its own glob: "x glob.yaml glob a.tif")
    if other is not None and source.is_file() and not ours:
        # jobs.yaml and jobs.csv beside it both default to jobs.results.jsonl: one replaced the other's records
        raise OutputLocationError(f"{path}: holds the results of another manifest ({other}), which this batch would "
                                  "replace; give its results another path (`results`)")
    if not source.is_file() and not given:  # a glob's default (every glob run from one folder has it), not one
        # named with `results`, which the user chose to replace
        earlier = _outputs_in(path)
        ours = {str(pj.spec.out) for pj in plan.jobs} | {str(bad.output) for bad in plan.invalid if bad.output}
        if earlier and not earlier & ours:  # (a batch of other scenes replaced it without a word; found in review)
            raise OutputLocationError(f"{path}: holds the results of another batch (of {len(earlier)} other "
                                      f"output{'s' * (len(earlier) != 1)}, e.g. {min(earlier)}), which this batch "
                                      "would replace; give its results another path with `results` (or this "
                                      "one, to replace it)")


def _outputs_in(path: Path) -> set[str]:
    """The outputs a results manifest lists."""
    found = set()
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and isinstance(row.get("output"), str):
                found.add(row["output"])
    return found


def _manifest_named(where: object) -> str | None:
    """The manifest file a result's ``where`` names ("jobs.yaml job 3", "jobs.csv line 2", "jobs.yaml glob a.tif");
    None for another (a glob given on the command line: "the glob a.tif"). (A manifest of globs alone went unnamed:
    jobs.csv beside it replaced its results; found in review.)"""
    if not isinstance(where, str):
        return None
    # a row's number ends it (the last " job N": a manifest "my glob jobs.yaml" is no glob's); else a glob follows
    m = re.fullmatch(r"(.+) (?:line|job) \d+", where, re.DOTALL) or re.fullmatch(r"(?!the glob )(.+?) glob .+",
                                                                                  where, re.DOTALL)
    return m.group(1) if m else None


class _ResultsWriter:
    """Streams results (one JSON line per job, as they come), then rewrites the file in manifest order. The file is
    opened by :meth:`start`, once the batch runs (its cluster up, geosr imported on the workers): a batch that could
    not start (no scheduler answers, Ctrl-C while the workers start) leaves an earlier results manifest as it was."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._fh = None
        self._early: list[str] = []  # lines written before start

    def start(self) -> None:
        if self.path is not None and self._fh is None:
            self._fh = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - open for the whole run, closed by close()
            self._fh.write("".join(self._early))
            self._fh.flush()

    def write(self, r: JobResult) -> None:
        line = json.dumps(r.to_dict()) + "\n"
        if self._fh:
            self._fh.write(line)
            self._fh.flush()
        else:
            self._early.append(line)

    def close(self, ordered: list[JobResult]) -> None:
        if not self._fh:
            return
        self._fh.close()
        from geosr.io.outputs import atomic_output

        with atomic_output(self.path) as tmp:
            tmp.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in ordered))
