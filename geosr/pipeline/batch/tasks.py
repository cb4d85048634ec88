"""The tasks a batch runs in its Dask workers, and the models each worker process keeps.

One task per job, or per band of window rows when a job is split plus a task that assembles the bands.
Every task resumes from upscale's journal, so a retried task or a re-run batch continues where it stopped.
Bad input fails a task the same way every time (reported, not retried); anything else is raised for Dask
to retry, as a :class:`~geosr.pipeline.batch.results.TaskError`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from geosr.errors import GPU_OUT_OF_MEMORY, GeoSRError, InputError, OutputExistsError, ResumeError, gpu_out_of_memory
from geosr.io.lock import OutputBusyError
from geosr.io.paths import gdal_sidecars, pam_path, sidecar_paths
from geosr.pipeline.batch.manifest import JobSpec
from geosr.pipeline.batch.records import appeared, comparable, found_at, output_matches, read_record, write_record
from geosr.pipeline.batch.results import TaskError, utc_now
from geosr.pipeline.fingerprints import made_by

log = logging.getLogger(__name__)

EVENT_TOPIC = "geosr-batch"

_MODELS: dict[tuple, Any] = {}  # (model, device, visible GPUs, sampler but seed, thread) -> the model, here
_MODELS_LOCK = threading.Lock()


def worker_model(name: str, *, device: str, sampler=None):
    """The model ``name`` on ``device`` with ``sampler``, loaded once per worker thread and kept. Per thread: a
    model is not safe to call from two threads at once (the lite experts blend their weights into one module for
    each scene), and a worker of 3 threads sharing one wrote wrong pixels into half a scene, exit 0."""
    from geosr.models.device import resolve_device
    from geosr.models.registry import load_model

    dev = str(resolve_device(device))
    # the seed is not the model's (each run passes its own): one model serves every seed
    key = (name, dev, os.environ.get("CUDA_VISIBLE_DEVICES"), unseeded(sampler), threading.get_ident())
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = load_model(name, device=dev, sampler=key[3])
        return _MODELS[key]


def unseeded(sampler):
    """``sampler`` (a SamplerConfig or None) with seed 0: what a loaded model depends on."""
    return replace(sampler, seed=0) if sampler is not None else None


def warm_worker() -> str:
    """Import the pipeline (torch, GDAL) in a worker before its first task, so job timings are the jobs'."""
    import geosr.pipeline.upscale  # noqa: F401
    from geosr._version import __version__

    return __version__


def run_job_task(spec: JobSpec, device: str, run_id: str, replaces: tuple[tuple[str, int, int], ...] = (),
                 batch: str = "") -> dict:
    """A whole job in one task: plan, run every window row (resuming), assemble, record. ``replaces``: the files
    at the output's and its sidecars' paths that the plan lets it replace (:attr:`PlannedJob.replaces`); ``batch``:
    the batch process the task runs for, as its job's lock names it to a run it refuses."""
    t0, started = time.perf_counter(), utc_now()

    def work() -> dict:
        if _done_in_this_run(spec, run_id):
            return dict(ok=True, id=spec.id, seconds=0.0, started=started, finished=utc_now(), resumed_rows=None,
                        worker=_worker_address(), note="finished by an earlier attempt")
        with _open_job(spec, device) as job, job.lock(holder=batch):
            if job.keep_detection is not None:  # for a retry of this job
                job.keep_detection()
            before = getattr(job.sr, "ran_away", 0)
            chunks, resumed = _rows(job, (0, job.plan.n_rows), _reporter(run_id))
            _finish(job, chunks, spec, run_id, started, t0, replaces)
            told = _warnings([_said(job, before)])
        return dict(ok=True, id=spec.id, seconds=time.perf_counter() - t0, started=started, finished=utc_now(),
                    resumed_rows=resumed, worker=_worker_address(), warnings=told)

    return _guarded(spec, started, t0, work)


def run_part_task(spec: JobSpec, device: str, run_id: str, rows: tuple[int, int], batch: str = "") -> dict:
    """One band of window rows of a split job; its chunks stay in the job's work folder."""
    t0, started = time.perf_counter(), utc_now()

    def work() -> dict:
        if _done_in_this_run(spec, run_id):
            return dict(ok=True, rows=list(rows), chunks=[], seconds=0.0, started=started, resumed_rows=0)
        # (shared: the job's other bands may run beside it)
        with _open_job(spec, device) as job, job.lock(shared=True, holder=batch):
            if job.keep_detection is not None:  # for its later tasks and retries
                job.keep_detection()
            before = getattr(job.sr, "ran_away", 0) - job.ran_away_recomputed
            chunks, resumed = _rows(job, rows, _reporter(run_id))
            said = _said(job, before)
        return dict(ok=True, rows=list(rows), chunks=[(str(p), int(r)) for p, r in chunks],
                    seconds=time.perf_counter() - t0, started=started, resumed_rows=resumed,
                    worker=_worker_address(), said=said)

    return _guarded(spec, started, t0, work)


def run_finish_task(spec: JobSpec, device: str, run_id: str, parts: list[dict],
                    replaces: tuple[tuple[str, int, int], ...] = (), batch: str = "") -> dict:
    """Assemble the bands of a split job into its COG (after every band task finished); ``replaces``: as for
    :func:`run_job_task`."""
    t0 = time.perf_counter()
    bad = [p for p in parts if not p.get("ok")]
    if bad:
        return {**bad[0], "id": spec.id}
    first = min((p["started"] for p in parts), default=utc_now())
    part_seconds = sum(p.get("seconds", 0.0) for p in parts)
    resumed = sum(p.get("resumed_rows") or 0 for p in parts)

    def work() -> dict:
        if not _done_in_this_run(spec, run_id):
            with _open_job(spec, device) as job, job.lock(holder=batch):
                chunks = [(Path(c), r) for p in parts for c, r in p["chunks"]]
                if not all(c.exists() for c, _ in chunks):  # removed under us: redo the bands (from journals)
                    chunks = [c for p in parts for c in _rows(job, tuple(p["rows"]), None)[0]]
                _finish(job, chunks, spec, run_id, first, t0 - part_seconds, replaces)
        return dict(ok=True, id=spec.id, seconds=part_seconds + time.perf_counter() - t0, started=first,
                    finished=utc_now(), resumed_rows=resumed, worker=_worker_address(),
                    warnings=_warnings([p["said"] for p in parts if p.get("said")]))

    return _guarded(spec, first, t0, work)


# ---- inside a task ---------------------------------------------------------------------------------------------
def _said(job, ran_away_before: int) -> dict:
    """What a task's job had to say: its plan's warnings (bands, settings it ignores), and on how many windows the
    model's output ran away in this task (bicubic written there), not counting the warm-up rows a band of rows
    recomputes (``ran_away_before``: the model's count less those, before the task). A batch dropped them (found in
    review)."""
    return {"warnings": list(job.summary.get("warnings") or []), "model": job.sr.name,
            "ran_away": getattr(job.sr, "ran_away", 0) - job.ran_away_recomputed - ran_away_before}


def _warnings(said: list[dict]) -> list[str] | None:
    """The warnings of a job from what its tasks said (:func:`_said`), once each; None when there are none."""
    from geosr.pipeline.upscale import ran_away_warning

    out = list(dict.fromkeys(w for s in said for w in s["warnings"]))
    ran_away = sum(s["ran_away"] for s in said)
    if ran_away:
        out.append(ran_away_warning(said[0]["model"], ran_away))
    return out or None


def _open_job(spec: JobSpec, device: str):
    from geosr.pipeline.upscale import plan_upscale, resolve_model

    # overwrite=True: the calling process decided this job runs (its output was absent, or is replaced); what
    # may be replaced as the output goes into place is decided then (_may_replace)
    opts = spec.options_on(device=device, overwrite=True)
    model = resolve_model(spec.model, spec.x, device, opts.sampler, loader=worker_model)
    return plan_upscale(spec.lr, output=spec.out, options=replace(opts, model=model))


def _rows(job, rows: tuple[int, int], progress) -> tuple[list, int]:
    from geosr.pipeline.upscale import run_rows

    try:
        return run_rows(job, rows, resume=True, progress=progress)
    except ResumeError:  # a journal of another job (other inputs or options) or a damaged one: start over
        return run_rows(job, rows, resume=False, progress=progress)


def _finish(job, chunks: list, spec: JobSpec, run_id: str, started: str, t0: float,
            replaces: tuple[tuple[str, int, int], ...]) -> None:
    """upscale's finish, with the record written before the work folder goes (so retries see it); the job
    started at ``started``, its compute time counted from ``t0`` (``time.perf_counter``)."""
    from geosr.pipeline.upscale import finish

    def record() -> None:
        write_record(job.out_path, job.fingerprint, job_id=spec.id, run_id=run_id, started=started,
                     seconds=time.perf_counter() - t0)

    job.overwrite = _may_replace(job, run_id, replaces)
    try:
        finish(job, chunks, before_cleanup=record)
    except OutputExistsError as exc:  # upscale's advice names `resume`, which batch does by itself
        said = str(exc).split(" (use ", 1)[0]
        new = appeared(job.out_path, replaces)
        if new and not said.startswith(new[0] + ":"):  # the file that appeared, not the output the plan found
            said = f"{new[0]}: appeared while this run worked and is left as it is"
        raise OutputExistsError(f"{said} (another run or program wrote it; run the batch with `overwrite` to replace "
                                "it, the job going on from its work)") from exc


def _may_replace(job, run_id: str, replaces: tuple[tuple[str, int, int], ...]) -> bool:
    """Whether the files found at the output's and its sidecars' paths as the output goes into place may be
    replaced: those the plan found there (unchanged since), or this job's own output (its record says this run
    wrote it, or another run of this very job: the same fingerprint, the same bytes; or, killed before its record,
    the output's tags are this job's). Not a file another job wrote meanwhile (two batches writing one output both
    said "ok", the second's output silently in place of the first's); with nothing found, a file that appears
    before the rename is refused there."""
    if not found_at(job.out_path):
        return False
    new = appeared(job.out_path, replaces)
    if not new:  # (each the very file the plan found: same size and time)
        return True
    # external overviews or a mask made since the plan (QGIS's "Build pyramids") are no run's, whose COGs hold their
    # own: someone's, even beside this job's own output (a forced re-run deleted them; found in review)
    theirs = {str(side) for raster in (job.out_path, sidecar_paths(job.out_path)["provenance raster"])
              for side in gdal_sidecars(raster).values() if side != pam_path(raster)}
    if theirs.intersection(new):
        return False
    rec = read_record(job.out_path)
    if rec is not None:
        if rec.get("run_id") == run_id:
            return True
        if output_matches(job.out_path, rec):  # another run's output, its record beside it: its fingerprint tells
            # whether it is this very job's (the tags alone took two scenes of one name and one histogram for one
            # job: both batches said "ok"; found in review; the same job in two runs at once makes the same bytes)
            return rec.get("fingerprint") == comparable(job.fingerprint)
    return made_by(job.out_path, job.meta.tags)


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
                finished=utc_now(), seconds=time.perf_counter() - t0, worker=_worker_address())


def _guarded(spec: JobSpec, started: str, t0: float, work: Callable[[], dict]) -> dict:
    """Run a task's work. Bad input fails the same way every time: reported, not retried. Anything else is
    raised for Dask to retry (the job resumes from its journal), as a TaskError raised outside the handler,
    so no unpicklable GDAL exception rides along as its context."""
    try:
        return work()
    except OutputBusyError as exc:  # another attempt of this task still holds the output: retry, do not fail
        error = _task_error(spec, exc)
    except InputError as exc:
        return _failure(spec, exc, started, t0)
    except Exception as exc:  # noqa: BLE001
        if gpu_out_of_memory(exc):  # the same job on the same GPU runs out again: reported in one sentence, not
            log.warning("geosr batch job %s: %s", spec.id, exc)  # retried (found in review: 3 pages, 3 tries)
            return _failure(spec, GeoSRError(GPU_OUT_OF_MEMORY), started, t0) | {"error_type": "OutOfMemoryError"}
        error = _task_error(spec, exc)
    raise error


def _task_error(spec: JobSpec, exc: BaseException) -> TaskError:
    if isinstance(exc, GeoSRError):  # a condition geosr names (the network, a busy output): its sentence says it
        log.info("geosr batch job %s: %s", spec.id, exc)
    else:  # geosr's own fault: the chain stays in the worker's log (GDAL's exceptions in it do not always unpickle)
        log.warning("geosr batch job %s failed: %s: %s", spec.id, type(exc).__name__, exc)
        log.debug("geosr batch job %s failed", spec.id, exc_info=exc)  # the chain, for a worker logging debug
    return TaskError.from_exception(exc)
