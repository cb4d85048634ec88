"""``geosr batch``: many upscale jobs on a Dask cluster, resumable, with a manifest of results.

Three steps, each usable alone:

- :func:`plan_batch` reads a manifest (:mod:`geosr.io.manifest`) and checks every job before anything runs:
  options, unique outputs, and a dry-run :func:`~geosr.pipeline.upscale.plan_upscale` of each job (files
  exist, are rasters, overlap, bands and scale fit the model). It decides what each job will do: ``run``,
  ``skip`` (its output is complete and was made from the same inputs and options, per the record beside
  it) or ``fail`` (an output exists that this batch did not make; ``overwrite`` replaces it).
- :func:`run_batch` runs the ``run`` jobs on a Dask cluster (a local one sized to the machine by default),
  one task per job, or per band of window rows when a job is split (``split_windows``) plus a task that
  assembles the bands. Every task resumes from upscale's journal, so a retried task or a re-run batch
  continues where it stopped; a task that raises is retried, a task whose worker dies is rescheduled.
  Results stream into a JSON-lines results manifest.
- :func:`batch` does both: the Python form of the command.

A finished job leaves ``<out>.geosr.json`` beside its output: the job's fingerprint (inputs with size and
mtime, every option, geosr's version) and the output's size, mtime and SHA-256. It is written after the
output is in place and before the work folder is removed, so a task that finds it knows the job is done.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import math
import os
import shutil
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from geosr.errors import InputError, ResumeError
from geosr.io.manifest import JobSpec, ManifestError, Problem, is_glob, read_manifest
from geosr.io.outputs import atomic_output, check_output_path

log = logging.getLogger(__name__)

RECORD_SUFFIX = ".geosr.json"
EVENT_TOPIC = "geosr-batch"
EXIT_OK, EXIT_FAILED = 0, 1


# ---- what a batch plans and returns ----------------------------------------------------------------------------
@dataclass(frozen=True)
class PlannedJob:
    """One checked job and what the batch will do with it."""

    spec: JobSpec
    action: str  # "run", "skip" or "fail"
    reason: str | None = None
    windows: int = 0
    window_rows: int = 0
    parts: tuple[tuple[int, int], ...] = ()  # ranges of window rows, one task each
    replace: bool = False  # the output exists and is replaced (--overwrite / --force)
    memory_mb: float = 0.0


@dataclass
class BatchPlan:
    """A checked manifest: every job planned; invalid rows kept only when asked to skip them."""

    source: str
    jobs: list[PlannedJob]
    invalid: list[Problem] = field(default_factory=list)
    results: str | None = None  # default results manifest path
    seconds: float = 0.0

    @property
    def to_run(self) -> list[PlannedJob]:
        return [j for j in self.jobs if j.action == "run"]

    @property
    def tasks(self) -> int:
        return sum(len(j.parts) for j in self.to_run)


@dataclass(frozen=True)
class JobResult:
    """One line of the results manifest."""

    id: str
    status: str  # "ok", "skipped", "failed", "cancelled"; "planned" in a dry run
    output: str | None
    lr: str | None = None
    where: str | None = None
    stage: str | None = None  # where a failure happened: "check" (before running) or "run"
    error: str | None = None
    error_type: str | None = None
    seconds: float | None = None  # compute time of its tasks
    started: str | None = None
    finished: str | None = None
    windows: int | None = None
    window_rows: int | None = None
    resumed_rows: int | None = None
    parts: int | None = None
    worker: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class BatchResult:
    """What a batch did. ``exit_code`` is the command's: 0 when no job failed, else 1."""

    source: str
    jobs: list[JobResult]
    results: str | None
    seconds: float
    workers: int = 0
    scheduler: str | None = None
    dashboard: str | None = None
    dry_run: bool = False

    def count(self, status: str) -> int:
        return sum(j.status == status for j in self.jobs)

    @property
    def failed(self) -> list[JobResult]:
        return [j for j in self.jobs if j.status in ("failed", "cancelled")]

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.ok else EXIT_FAILED

    def to_dict(self) -> dict:
        counts = {s: self.count(s) for s in ("ok", "skipped", "failed", "cancelled", "planned")}
        return dict(
            source=self.source, results=self.results, seconds=self.seconds, workers=self.workers,
            scheduler=self.scheduler, dashboard=self.dashboard, dry_run=self.dry_run, counts=counts,
            exit_code=self.exit_code, jobs=[j.to_dict() for j in self.jobs],
        )


@dataclass(frozen=True)
class BatchProgress:
    """Overall progress, as handed to a ``progress`` callback (about twice a second)."""

    jobs_done: int
    jobs_total: int
    windows_done: int
    windows_total: int
    failed: int
    running: int


class TaskError(RuntimeError):
    """An exception raised in a worker, carried back as its type's name and a message that includes its
    cause (GDAL puts the useful part, such as which block of which file, in the cause)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(kind, message)
        self.kind, self.message = kind, message

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"

    @classmethod
    def from_exception(cls, exc: BaseException) -> "TaskError":
        message = str(exc)
        cause = exc.__cause__ or exc.__context__
        if cause is not None and str(cause) and str(cause) not in message:
            message = f"{message} ({cause})" if message else str(cause)
        return cls(type(exc).__name__, message)


def _task_error(spec: JobSpec, exc: BaseException) -> TaskError:
    # the original chain stays in the worker's log: GDAL's exceptions in it do not always unpickle
    log.warning("geosr batch job %s failed", spec.id, exc_info=exc)
    return TaskError.from_exception(exc)


# ---- the Python form of the command ----------------------------------------------------------------------------
def batch(
    manifest: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    force: bool = False,
    skip_invalid: bool = False,
    dry_run: bool = False,
    results: str | os.PathLike[str] | None = None,
    client: Any = None,
    scheduler: str | None = None,
    workers: int | None = None,
    device: str = "auto",
    retries: int = 2,
    dashboard: str | None = ":8787",
    progress: Callable[[BatchProgress], None] | None = None,
    check_progress: Callable[[int, int], None] | None = None,
    on_start: Callable[[dict], None] | None = None,
    **job_options: Any,
) -> BatchResult:
    """Run every job of ``manifest`` (a YAML/JSON/JSON-lines/CSV file, or a glob of LR files).

    ``job_options`` (``x``, ``model``, ``out``, ``ref``, ``split_windows``, ... as in a manifest) apply to
    every job that does not set them. Raises :class:`~geosr.io.manifest.ManifestError` (an InputError)
    listing every invalid row, before anything runs, unless ``skip_invalid``. See ``geosr batch --help``.
    """
    plan = plan_batch(manifest, overwrite=overwrite, force=force, skip_invalid=skip_invalid,
                      progress=check_progress, **job_options)
    if dry_run:
        return BatchResult(source=plan.source, jobs=[_planned_result(j) for j in plan.jobs] + _invalid_results(plan),
                           results=None, seconds=plan.seconds, dry_run=True)
    return run_batch(plan, results=results, client=client, scheduler=scheduler, workers=workers, device=device,
                     retries=retries, dashboard=dashboard, progress=progress, on_start=on_start)


# ---- planning (in the calling process) -------------------------------------------------------------------------
def plan_batch(
    manifest: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    force: bool = False,
    skip_invalid: bool = False,
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    **job_options: Any,
) -> BatchPlan:
    """Read and check every job of ``manifest``; decide which run, which are skipped, which fail at once."""
    t0 = time.perf_counter()
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
        for item in pool.map(lambda s: _check_job(s, models, overwrite=overwrite, force=force), specs):
            checked.append(item)
            done += 1
            if progress:
                progress(done, total)
    jobs = [c for c in checked if isinstance(c, PlannedJob)]
    problems += [c for c in checked if isinstance(c, Problem)]
    if problems and not skip_invalid:
        raise ManifestError(m.source, problems)
    return BatchPlan(source=m.source, jobs=jobs, invalid=problems, results=_default_results(m.source),
                     seconds=time.perf_counter() - t0)


class _ClientModels:
    """Models loaded once in the calling process to check jobs (on the CPU; nothing runs through them)."""

    def __init__(self) -> None:
        self._models: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, name: str, *, device: str = "cpu", sampler=None):
        with self._lock:
            if name not in self._models:
                from geosr.models.registry import load_model

                try:
                    self._models[name] = load_model(name, device="cpu")
                except InputError as exc:
                    self._models[name] = exc
            got = self._models[name]
        if isinstance(got, Exception):
            raise got
        return got


def _check_job(spec: JobSpec, models: _ClientModels, *, overwrite: bool, force: bool) -> PlannedJob | Problem:
    from geosr.pipeline.upscale import plan_upscale, resolve_model

    try:
        check_output_path(spec.out, overwrite=True)
        opts = spec.upscale_options(device="cpu")
        opts.update(output=None, model=resolve_model(spec.model, spec.x, "cpu", loader=models.get), dry_run=True)
        with plan_upscale(spec.lr, **opts) as job:
            fingerprint = _comparable(job.fingerprint)
            n_rows, n_cols, windows = job.plan.n_rows, job.plan.n_cols, len(job.plan)
            memory_mb = float(job.summary["memory_mb"])
    except InputError as exc:
        return Problem(spec.where, str(exc), spec.id)
    except Exception as exc:  # noqa: BLE001 - a raster GDAL chokes on is still this row's problem
        return Problem(spec.where, f"{type(exc).__name__}: {exc}", spec.id)
    parts = split_rows(n_rows, n_cols, spec.split_windows)
    base = dict(spec=spec, windows=windows, window_rows=n_rows, parts=parts, memory_mb=memory_mb)
    out = Path(spec.out)
    if force:
        return PlannedJob(action="run", replace=out.exists(), **base)
    if not out.exists():
        return PlannedJob(action="run", **base)
    record = read_record(out)
    if record is not None and record.get("fingerprint") == fingerprint and output_matches(out, record):
        return PlannedJob(action="skip", reason="its output is complete and its inputs and options are unchanged", **base)
    if overwrite or spec.overwrite or _left_by_this_job(out, fingerprint):
        return PlannedJob(action="run", replace=True, **base)
    return PlannedJob(action="fail", reason=_exists_reason(out, record, fingerprint), **base)


def _left_by_this_job(out: Path, fingerprint: dict) -> bool:
    """The output was put in place by this very job, killed before its record: its journals are still there."""
    from geosr.io.journal import work_dir_for

    for job_json in work_dir_for(out).glob("rows_*/job.json"):
        try:
            recorded = json.loads(job_json.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(recorded, dict):
            recorded.pop("rows", None)
            if _comparable(recorded) == fingerprint:
                return True
    return False


def split_rows(n_rows: int, n_cols: int, split_windows: int) -> tuple[tuple[int, int], ...]:
    """Ranges of whole window rows of about ``split_windows`` windows each (one range when 0 or small)."""
    if split_windows <= 0 or n_rows * n_cols <= split_windows or n_rows < 2:
        return ((0, n_rows),)
    per = max(1, split_windows // max(1, n_cols))
    k = min(n_rows, math.ceil(n_rows / per))
    cuts = [round(i * n_rows / k) for i in range(k + 1)]
    return tuple((a, b) for a, b in zip(cuts, cuts[1:]) if b > a)


def _exists_reason(out: Path, record: dict | None, fingerprint: dict) -> str:
    tail = "; use --overwrite to replace it"
    if record is None:
        return f"{out}: already exists and was not made by geosr batch (no {out.name}{RECORD_SUFFIX}){tail}"
    old = record.get("fingerprint") or {}
    if old == fingerprint:
        return f"{out}: already exists but was changed after geosr batch wrote it{tail}"
    what = []
    if old.get("version") != fingerprint.get("version"):
        what.append(f"geosr {old.get('version')}")
    changed = [
        Path(new[0]).name
        for a, new in zip(old.get("inputs") or [None] * 4, fingerprint.get("inputs") or [])
        if a != new and new is not None
    ]
    if changed or len(old.get("inputs") or []) != len(fingerprint.get("inputs") or []):
        what.append("other inputs" + (f" ({', '.join(changed)} changed)" if changed else ""))
    oo, no = old.get("options") or {}, fingerprint.get("options") or {}
    keys = sorted(k for k in set(oo) | set(no) if oo.get(k) != no.get(k))
    if keys:
        what.append(f"other options ({', '.join(keys)})")
    return f"{out}: already exists, made with {' and '.join(what) or 'another job'}{tail}"


def _comparable(fingerprint: dict) -> dict:
    """A job fingerprint without what does not change the output's pixels (whether it may replace a file)."""
    fp = json.loads(json.dumps(fingerprint))
    output = (fp.get("options") or {}).get("output")
    if isinstance(output, dict):
        output.pop("overwrite", None)
    return fp


def _default_results(source: str) -> str:
    p = Path(source)
    if p.is_file():
        p = p.resolve()
        return str(p.with_name(p.stem + ".results.jsonl"))
    return str(Path.cwd() / "geosr-batch.results.jsonl") if is_glob(source) else str(p) + ".results.jsonl"


# ---- the record beside each finished output --------------------------------------------------------------------
def record_path(output: str | os.PathLike[str]) -> Path:
    out = Path(output)
    return out.with_name(out.name + RECORD_SUFFIX)


def read_record(output: str | os.PathLike[str]) -> dict | None:
    try:
        rec = json.loads(record_path(output).read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def output_matches(output: Path, record: dict) -> bool:
    """The output is the file the record describes (same size and mtime, else same SHA-256)."""
    meta = record.get("output") or {}
    try:
        st = output.stat()
    except OSError:
        return False
    if st.st_size != meta.get("size"):
        return False
    return st.st_mtime_ns == meta.get("mtime_ns") or _sha256(output) == meta.get("sha256")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_record(output: Path, fingerprint: dict, *, job_id: str, run_id: str) -> None:
    st = output.stat()
    record = dict(
        geosr_batch=1, job_id=job_id, run_id=run_id, written=_now(), fingerprint=_comparable(fingerprint),
        output=dict(size=st.st_size, mtime_ns=st.st_mtime_ns, sha256=_sha256(output)),
    )
    with atomic_output(record_path(output)) as tmp:
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True))


# ---- running (in the workers) ----------------------------------------------------------------------------------
_MODELS: dict[tuple, Any] = {}
_MODELS_LOCK = threading.Lock()
MODEL_LOADS: dict[tuple, int] = {}  # (model, device, visible GPUs) -> times loaded in this process (always 1)


def worker_model(name: str, *, device: str, sampler=None):
    """The model ``name`` on ``device`` with ``sampler``, loaded once per worker process and kept."""
    from geosr.models.registry import load_model
    from geosr.pipeline.device import resolve_device

    dev = str(resolve_device(device))
    key = (name, dev, os.environ.get("CUDA_VISIBLE_DEVICES"), sampler)
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = load_model(name, device=dev, sampler=sampler)
            MODEL_LOADS[key] = MODEL_LOADS.get(key, 0) + 1
        return _MODELS[key]


def _open_job(spec: JobSpec, device: str):
    from geosr.pipeline.upscale import plan_upscale, resolve_model

    # overwrite=True: the calling process decided this job runs (its output was absent, or is replaced);
    # an output found now was written by an earlier attempt of this job that died before its record
    opts = spec.upscale_options(device=device, overwrite=True)
    opts["model"] = resolve_model(spec.model, spec.x, device, opts.get("sampler"), loader=worker_model)
    return plan_upscale(spec.lr, **opts)


def _rows(job, rows: tuple[int, int], progress) -> tuple[list, int]:
    from geosr.pipeline.upscale import run_rows

    try:
        return run_rows(job, rows, resume=True, progress=progress)
    except ResumeError:  # a journal of another job (other inputs or options) or a damaged one: start over
        return run_rows(job, rows, resume=False, progress=progress)


def _finish(job, chunks: list, spec: JobSpec, run_id: str) -> None:
    """upscale's finish, with the record written before the work folder goes (so retries see it)."""
    from geosr.pipeline.upscale import finish

    finish(job, chunks, before_cleanup=lambda: _write_record(job.out_path, job.fingerprint, job_id=spec.id, run_id=run_id))


def _done_in_this_run(spec: JobSpec, run_id: str) -> bool:
    """An earlier attempt of this task (in this batch run) finished the job before its worker died."""
    rec = read_record(spec.out)
    return rec is not None and rec.get("run_id") == run_id and output_matches(Path(spec.out), rec)


def _reporter(run_id: str):
    """A throttled ``progress(done, total)`` that tells the client how many windows this task has done."""
    try:
        from distributed import get_worker

        worker = get_worker()
        key = worker.get_current_task()
    except (ImportError, ValueError):
        return None
    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - last[0] >= 0.5:
            last[0] = now
            with contextlib.suppress(Exception):  # progress is best effort; never fail a job for it
                worker.log_event(EVENT_TOPIC, {"run": run_id, "key": str(key), "done": int(done)})

    return report


def _worker_address() -> str | None:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return None


def _failure(spec: JobSpec, exc: BaseException, started: str, t0: float) -> dict:
    return dict(ok=False, id=spec.id, error=str(exc), error_type=type(exc).__name__, started=started,
                finished=_now(), seconds=time.perf_counter() - t0, worker=_worker_address())


def _guarded(spec: JobSpec, started: str, t0: float, work: Callable[[], dict]) -> dict:
    """Run a task's work. Bad input fails the same way every time: reported, not retried. Anything else is
    raised for Dask to retry (the job resumes from its journal), as a TaskError raised outside the handler,
    so no unpicklable GDAL exception rides along as its context."""
    try:
        return work()
    except InputError as exc:
        return _failure(spec, exc, started, t0)
    except Exception as exc:  # noqa: BLE001
        error = _task_error(spec, exc)
    raise error


def run_job_task(spec: JobSpec, device: str, run_id: str) -> dict:
    """A whole job in one task: plan, run every window row (resuming), assemble, record."""
    t0, started = time.perf_counter(), _now()

    def work() -> dict:
        if _done_in_this_run(spec, run_id):
            return dict(ok=True, id=spec.id, seconds=0.0, started=started, finished=_now(), resumed_rows=None,
                        worker=_worker_address(), note="finished by an earlier attempt")
        with _open_job(spec, device) as job, job.lock():
            chunks, resumed = _rows(job, (0, job.plan.n_rows), _reporter(run_id))
            _finish(job, chunks, spec, run_id)
        return dict(ok=True, id=spec.id, seconds=time.perf_counter() - t0, started=started, finished=_now(),
                    resumed_rows=resumed, worker=_worker_address())

    return _guarded(spec, started, t0, work)


def run_part_task(spec: JobSpec, device: str, run_id: str, rows: tuple[int, int]) -> dict:
    """One band of window rows of a split job; its chunks stay in the job's work folder."""
    t0, started = time.perf_counter(), _now()

    def work() -> dict:
        if _done_in_this_run(spec, run_id):
            return dict(ok=True, rows=list(rows), chunks=[], seconds=0.0, started=started, resumed_rows=0)
        with _open_job(spec, device) as job, job.lock(shared=True):  # the job's other bands may run beside it
            chunks, resumed = _rows(job, rows, _reporter(run_id))
        return dict(ok=True, rows=list(rows), chunks=[(str(p), int(r)) for p, r in chunks],
                    seconds=time.perf_counter() - t0, started=started, resumed_rows=resumed,
                    worker=_worker_address())

    return _guarded(spec, started, t0, work)


def run_finish_task(spec: JobSpec, device: str, run_id: str, parts: list[dict]) -> dict:
    """Assemble the bands of a split job into its COG (after every band task finished)."""
    t0 = time.perf_counter()
    bad = [p for p in parts if not p.get("ok")]
    if bad:
        return {**bad[0], "id": spec.id}
    first = min((p["started"] for p in parts), default=_now())
    part_seconds = sum(p.get("seconds", 0.0) for p in parts)
    resumed = sum(p.get("resumed_rows") or 0 for p in parts)

    def work() -> dict:
        if not _done_in_this_run(spec, run_id):
            with _open_job(spec, device) as job, job.lock():
                chunks = [(Path(c), r) for p in parts for c, r in p["chunks"]]
                if not all(c.exists() for c, _ in chunks):  # removed under us: redo the bands (from journals)
                    chunks = [c for p in parts for c in _rows(job, tuple(p["rows"]), None)[0]]
                _finish(job, chunks, spec, run_id)
        return dict(ok=True, id=spec.id, seconds=part_seconds + time.perf_counter() - t0, started=first,
                    finished=_now(), resumed_rows=resumed, worker=_worker_address())

    return _guarded(spec, first, t0, work)


# ---- running (in the calling process) --------------------------------------------------------------------------
def run_batch(
    plan: BatchPlan,
    *,
    results: str | os.PathLike[str] | None = None,
    client: Any = None,
    scheduler: str | None = None,
    workers: int | None = None,
    device: str = "auto",
    retries: int = 2,
    dashboard: str | None = ":8787",
    progress: Callable[[BatchProgress], None] | None = None,
    on_start: Callable[[dict], None] | None = None,
) -> BatchResult:
    """Run the planned jobs on ``client``, on the cluster at ``scheduler``, or on a new local cluster."""
    t0 = time.perf_counter()
    results_path = Path(results or plan.results) if (results or plan.results) else None
    writer = _ResultsWriter(results_path)
    done: dict[str, JobResult] = {}
    for pj in plan.jobs:
        if pj.action == "skip":
            done[pj.spec.id] = _result(pj, "skipped")
        elif pj.action == "fail":
            done[pj.spec.id] = _result(pj, "failed", stage="check", error=pj.reason, error_type="OutputExistsError")
    invalid = _invalid_results(plan)
    for r in [*done.values(), *invalid]:
        writer.write(r)
    to_run = plan.to_run
    info: dict[str, Any] = dict(workers=0, scheduler=None, dashboard=None)
    try:
        if to_run:
            with _connect(client, scheduler, workers, device, dashboard, plan) as (cl, task_device):
                info.update(_cluster_info(cl, scheduler is None and client is None))
                if on_start:
                    on_start(dict(info, jobs=len(to_run), tasks=plan.tasks, skipped=plan_count(plan, "skip"),
                                  results=str(results_path) if results_path else None))
                _warm(cl, scheduler)
                _run_on(cl, to_run, task_device, retries, done, writer, progress)
    finally:
        ordered = [done[j.spec.id] for j in plan.jobs if j.spec.id in done] + invalid
        writer.close(ordered)
    return BatchResult(source=plan.source, jobs=ordered, results=str(results_path) if results_path else None,
                       seconds=time.perf_counter() - t0, **info)


def plan_count(plan: BatchPlan, action: str) -> int:
    return sum(j.action == action for j in plan.jobs)


def _run_on(client, jobs: list[PlannedJob], device: str, retries: int, done: dict, writer, progress) -> None:
    run_id = uuid.uuid4().hex
    tag = run_id[:8]
    windows_of: dict[str, int] = {}  # task key -> its windows
    finals = []  # (future, planned job, part futures)
    for i, pj in enumerate(jobs):
        spec = pj.spec
        n_cols = pj.windows // max(1, pj.window_rows)
        common = dict(retries=retries, pure=False, priority=-i)
        if len(pj.parts) == 1:
            key = f"geosr-upscale-{spec.id}-{tag}"
            fut = client.submit(run_job_task, spec, device, run_id, key=key, **common)
            windows_of[key] = pj.windows
            finals.append((fut, pj, []))
            continue
        parts = []
        for a, b in pj.parts:
            key = f"geosr-rows-{spec.id}-{a}-{b}-{tag}"
            parts.append(client.submit(run_part_task, spec, device, run_id, (a, b), key=key, **common))
            windows_of[key] = (b - a) * n_cols
        fut = client.submit(run_finish_task, spec, device, run_id, parts, key=f"geosr-finish-{spec.id}-{tag}", **common)
        finals.append((fut, pj, parts))

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
            for f in (fut, *parts):
                with contextlib.suppress(Exception):
                    f.cancel()
            if pj.spec.id not in done:
                done[pj.spec.id] = _result(pj, "cancelled", stage="run", error="the batch was interrupted")
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
            return _result(pj, "failed", stage="run", error=str(exc), error_type=type(exc).__name__)
        if out.get("ok"):
            return _result(pj, "ok", seconds=out.get("seconds"), started=out.get("started"),
                           finished=out.get("finished"), resumed_rows=out.get("resumed_rows"), worker=out.get("worker"))
        return _result(pj, "failed", stage="run", error=out.get("error"), error_type=out.get("error_type"),
                       seconds=out.get("seconds"), started=out.get("started"), finished=out.get("finished"),
                       worker=out.get("worker"))
    if fut.status == "cancelled":
        return _result(pj, "cancelled", stage="run", error="its task was cancelled")
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
    return _result(pj, "failed", stage="run", error=message, error_type=name, finished=_now())


def _result(pj: PlannedJob, status: str, **kw) -> JobResult:
    s = pj.spec
    return JobResult(
        id=s.id, status=status, output=s.out, lr=s.lr, where=s.where, windows=pj.windows,
        window_rows=pj.window_rows, parts=len(pj.parts), **kw,
    )


def _planned_result(pj: PlannedJob) -> JobResult:
    if pj.action == "run":
        return _result(pj, "planned", error=None)
    if pj.action == "skip":
        return _result(pj, "skipped")
    return _result(pj, "failed", stage="check", error=pj.reason, error_type="OutputExistsError")


def _invalid_results(plan: BatchPlan) -> list[JobResult]:
    out = []
    for i, p in enumerate(plan.invalid):
        out.append(JobResult(id=p.job_id or f"invalid-{i + 1}", status="failed", output=None, where=p.where,
                             stage="check", error=p.message, error_type="ManifestError"))
    return out


class _ResultsWriter:
    """Streams results (one JSON line per job, as they come), then rewrites the file in manifest order."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._fh = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(path, "w")

    def write(self, r: JobResult) -> None:
        if self._fh:
            self._fh.write(json.dumps(r.to_dict()) + "\n")
            self._fh.flush()

    def close(self, ordered: list[JobResult]) -> None:
        if not self._fh:
            return
        self._fh.close()
        with atomic_output(self.path) as tmp:
            tmp.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in ordered))


# ---- clusters --------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _connect(client, scheduler, workers, device, dashboard, plan: BatchPlan):
    """Yield (client, device for the tasks): the caller's client, one to ``scheduler``, or a local cluster."""
    from distributed import Client

    if client is not None:
        yield client, device
        return
    if scheduler is not None:
        try:
            cl = Client(scheduler, timeout="30s")
        except OSError as exc:
            from geosr.errors import NetworkError

            raise NetworkError(f"--scheduler {scheduler}: no Dask scheduler answers there ({exc})") from exc
        with cl:
            yield cl, device
        return
    cluster, task_device = local_cluster(workers=workers, device=device, dashboard=dashboard,
                                         tasks=plan.tasks, memory_mb=max((j.memory_mb for j in plan.to_run), default=0))
    with cluster, Client(cluster) as cl:
        cl.wait_for_workers(len(cluster.worker_spec), timeout=120)
        yield cl, task_device


def warm_worker() -> str:
    """Import the pipeline (torch, GDAL) in a worker before its first task, so job timings are the jobs'."""
    import geosr.pipeline.upscale  # noqa: F401
    from geosr._version import __version__

    return __version__


def _warm(client, scheduler: str | None) -> None:
    from geosr.errors import GeoSRError

    try:
        client.run(warm_worker)
    except ImportError as exc:
        where = f"at {scheduler}" if scheduler else ""
        raise GeoSRError(f"the Dask workers {where} cannot import geosr ({exc}); install geosr on them") from exc


def gpu_ids(device: str) -> list[str]:
    """The CUDA devices a local cluster puts one worker on (as CUDA_VISIBLE_DEVICES entries)."""
    spec = (device or "auto").lower()
    if spec == "cpu":
        return []
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    ids = visible[:n] if visible else [str(i) for i in range(n)]
    if spec == "auto":
        return ids
    if not ids:
        from geosr.errors import OptionError

        raise OptionError(f"--device {device}: no CUDA device is available here (use --device cpu or auto)")
    if spec == "cuda":
        return ids
    if spec.startswith("cuda:"):
        idx = spec.split(":", 1)[1]
        if not idx.isdigit() or int(idx) >= len(ids):
            from geosr.errors import OptionError

            raise OptionError(f"--device {device}: this machine has {len(ids)} CUDA device(s)")
        return [ids[int(idx)]]
    from geosr.errors import OptionError

    raise OptionError(f"--device {device!r}: use auto, cpu, cuda or cuda:N")


def worker_envs(gpus: list[str], n_workers: int, cpus: int) -> list[dict[str, str]]:
    """Environment of each local GPU worker: its device (round robin) and a share of the CPU threads."""
    threads = str(max(1, cpus // max(1, n_workers)))
    return [{"CUDA_VISIBLE_DEVICES": gpus[i % len(gpus)], "OMP_NUM_THREADS": threads} for i in range(n_workers)]


def local_cluster(*, workers: int | None = None, device: str = "auto", dashboard: str | None = ":8787",
                  tasks: int | None = None, memory_mb: float = 0.0):
    """A LocalCluster of worker processes on this machine: one per GPU, each pinned to it (or ``workers``
    round robin over them); without GPUs one single-threaded worker per core, no more than there are tasks
    or than memory allows. Returns (cluster, the device string the tasks use)."""
    from distributed import LocalCluster

    cpus = os.cpu_count() or 1
    gpus = gpu_ids(device)
    common = dict(threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=dashboard,
                  silence_logs=logging.ERROR)
    if gpus:
        return pinned_cluster(gpus, workers or len(gpus), dashboard=dashboard), "cuda"
    n = workers or max(1, min(cpus, tasks or cpus, _memory_cap(memory_mb)))
    with _cluster_settings():
        cluster = LocalCluster(n_workers=n, **common)
    return cluster, "cpu" if (device or "auto").lower() in ("auto", "cpu") else device


@contextlib.contextmanager
def _cluster_settings():
    """Settings while a local cluster starts. Dask warns when the dashboard port is taken and uses another
    (the link printed says which): silenced. Dask's workers trim malloc at 64 kB (MALLOC_TRIM_THRESHOLD_),
    which makes geosr's large temporary arrays about 18 % slower: glibc's default is kept unless the
    environment sets it."""
    import warnings

    import dask

    with warnings.catch_warnings(), dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
        yield


def pinned_cluster(gpus: list[str], n_workers: int, *, dashboard: str | None = ":8787"):
    """A LocalCluster of ``n_workers`` single-threaded processes, each seeing one of ``gpus`` (round robin)
    as its only CUDA device (``CUDA_VISIBLE_DEVICES``, set before the worker process starts)."""
    from distributed import LocalCluster

    with _cluster_settings():
        cluster = LocalCluster(n_workers=0, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=dashboard, silence_logs=logging.ERROR)
    template = cluster.new_spec
    for i, env in enumerate(worker_envs(gpus, n_workers, os.cpu_count() or 1)):
        cluster.worker_spec[f"gpu-{i}"] = {"cls": template["cls"], "options": {**template["options"], "env": env}}
    cluster.scale(n_workers)
    return cluster


def _memory_cap(job_mb: float) -> int:
    """How many CPU workers fit in the available memory (about 1 GB each for torch and GDAL, plus a job)."""
    try:
        import psutil

        avail = psutil.virtual_memory().available / 2**20
    except Exception:  # noqa: BLE001
        return 1 << 30
    return max(1, int(avail // (1024 + job_mb)))


def _cluster_info(client, local: bool) -> dict:
    try:
        n = len(client.scheduler_info().get("workers", {}))
    except Exception:  # noqa: BLE001
        n = 0
    link = None
    with contextlib.suppress(Exception):
        link = client.dashboard_link
    if link and local:
        import importlib.util

        if importlib.util.find_spec("bokeh") is None:
            link += " (install bokeh to see it)"
    return dict(workers=n, scheduler=client.scheduler.address, dashboard=link)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")
