"""The one workflow: plan the HR grid, run the model window by window, blend, write a COG."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from rasterio.windows import Window

from geosr.conditioning.radiometry import to_raw
from geosr.errors import ClassTableError, ResumeError, names_too_long_are_input_errors
from geosr.io.journal import Journal, clear_work_dir, other_run, recorded_jobs, work_dir_for
from geosr.io.lock import LOCK_NAME, JobLock
from geosr.io.outputs import WORK_SUFFIX, completing, remove_partials, remove_work_dir, still_free, writing
from geosr.io.paths import gdal_sidecars, pam_path, sidecar_paths
from geosr.io.stac import write_stac_item
from geosr.io.writer import OutputMeta, assemble, write_chunk
from geosr.options import UpscaleOptions
from geosr.options.declare import check_callable
from geosr.pipeline.fingerprints import fingerprint_changes
from geosr.pipeline.job import DETECTION_PREFIX, UpscaleJob, plan_upscale, resolve_model  # noqa: F401 - public names
from geosr.pipeline.provenance import provenance_path, write_provenance
from geosr.pipeline.resources import release_freed_memory
from geosr.pipeline.scene import Scene
from geosr.pipeline.tensors import from_output, to_batch
from geosr.sampling.schedules import SamplerPreset
from geosr.tiling.blend import RowBandAccumulator, weighted_mean, window_weights
from geosr.tiling.windows import WindowPlan

Progress = Callable[[int, int], None]
CONVERT_ROWS = 16  # HR rows converted to the output's values at a time: a band that stays in the CPU's cache


@dataclass(frozen=True)
class UpscaleResult:
    """What an upscale did (or, with ``dry_run``, would do)."""

    output: str | None
    model: str
    scale: int
    crs: str
    bounds: tuple[float, float, float, float]
    width: int
    height: int
    count: int
    dtype: str
    windows: int
    window_rows: int
    window_size: int
    overlap: int
    resumed_rows: int
    seconds: float
    memory_mb: float
    output_mb: float
    dry_run: bool
    estimate_s: float | None = None  # --dry-run: model time from one timed batch, times the batches
    resources: dict | None = None  # needs against what the machine has (memory, disk), and whether they fit
    coregistration: dict | None = None  # the reference's offset from the LR (geosr.conditioning.coregistration)
    change_detection: dict | None = None  # --cd auto: the changes found against the reference (share, thresholds)
    change_mask: str | None = None  # a change mask of one's own (--cd FILE) that says where the reference is used
    sensor_mask: dict | None = None  # {"masks": [...]}: the inputs' own cloud masks taken as changed (io.sensor_masks)
    provenance: dict | None = None  # the provenance sidecar's path and the share of each class (with a reference)
    nodata_share: float | None = None  # of the output's pixels (None: a dry run)
    warnings: list[str] | None = None  # e.g. bands that are not what the model was trained on
    stac: str | None = None  # the output's STAC item (<stem>.stac.json)
    sources: dict[str, str] | None = None  # role -> what a multi-file input (STAC item, .SAFE, band files) stacks

    def to_dict(self) -> dict:
        return asdict(self)


def run_rows(
    job: UpscaleJob,
    rows: tuple[int, int] | None = None,
    *,
    resume: bool = False,
    progress: Progress | None = None,
) -> tuple[list[tuple[Path, int]], int]:
    """Process window rows [start, stop) (all by default) into finished row-band chunks.

    Each row range keeps its own journal under the job's work folder, so ranges can run in separate
    processes and be assembled by :func:`finish`. Returns the chunks (path, first HR row) and how many
    window rows were already done by an earlier, interrupted run.
    """
    start, stop = rows if rows is not None else (0, job.plan.n_rows)
    folder = job.work_dir / f"rows_{start:05d}_{stop:05d}"
    with JobLock(folder.with_name(folder.name + ".lock"), output=job.out_path):  # one writer per range
        journal = Journal.start(folder, {**job.fingerprint, "rows": [start, stop]}, resume=resume,
                                explain=fingerprint_changes)
        resumed = journal.done
        _run_rows(job, journal, start, stop, progress)
    return journal.chunks(), resumed


def finish(
    job: UpscaleJob, chunks: list[tuple[Path, int]], *, before_cleanup: Callable[[], None] | None = None
) -> None:
    """Stitch the chunks of every row range into the COG, rename it into place, drop the work folder.

    ``before_cleanup`` runs once the COG is in place but while the journal still exists (``geosr batch``
    records the finished job there, so a retried task knows it is done).
    """
    missing = [c for c, _ in chunks if not c.exists()]
    if missing:
        raise ResumeError(f"{missing[0]}: a finished part of the job is missing from its work folder; "
                          "run again without `resume` to start over")
    remove_partials(job.out_path)  # what a killed earlier run left beside the output
    share = nodata_share(job.scene)
    job.summary["nodata_share"] = round(share, 6)
    job.meta = replace(job.meta, tags={**job.meta.tags, "GEOSR_NODATA_SHARE": f"{share:.6f}"})
    staged = _write_provenance(job) if job.provenance is not None else None
    sides = sidecar_paths(job.out_path)
    # the provenance raster's own GDAL files too, which it removes as it puts its own in place (one that appeared
    # meanwhile was deleted without `overwrite`, where the output's were answered; found in review)
    free = still_free(job.out_path, overwrite=job.overwrite,
                      also=[*sides.values(), *gdal_sidecars(sides["provenance raster"]).values()],
                      then="; with `resume` the run then goes on from its work")

    def ready() -> None:  # the output's name was free when the run was planned: still free, without overwrite?
        free()
        hold()

    # once the output is in place, an interrupt waits for the job's last steps (io.outputs.completing): cut off
    # there, it left a finished output without its sidecars beside a work folder that --resume could not continue
    with completing() as hold:
        assemble(chunks, job.scene.hr, job.meta, job.out_path, job.work_dir, before_rename=ready)
        if staged is not None:  # in place only with the output: a kill before leaves nothing that blocks --resume
            for side in gdal_sidecars(job.provenance).values():  # an earlier sidecar's never describe this one
                side.unlink(missing_ok=True)
            os.replace(staged, job.provenance)
            if pam_path(staged).exists():
                os.replace(pam_path(staged), pam_path(job.provenance))  # its class names (geosr.io.writer)
        else:
            remove_stale_provenance(job.out_path)
        _write_stac(job)
        if before_cleanup is not None:
            before_cleanup()
        remove_work_dir(job.work_dir)


def remove_stale_provenance(output: Path) -> None:
    """Remove the provenance sidecar an earlier run with a reference left beside ``output`` (``--overwrite``
    without one): it describes pixels that are gone. Only geosr's own sidecar (its classes in its tags) goes."""
    import rasterio

    path = provenance_path(output)
    if not path.is_file():
        return
    try:
        with rasterio.open(path) as ds:
            ours = "GEOSR_PROVENANCE_CLASSES" in ds.tags()
    except rasterio.errors.RasterioIOError:
        return
    if ours:
        path.unlink(missing_ok=True)
        for side in gdal_sidecars(path).values():
            side.unlink(missing_ok=True)


def nodata_share(scene: Scene) -> float:
    """The share of the output's pixels without data: those whose LR pixel has none (GDAL's dataset mask; see
    :func:`geosr.io.rasters.band_data`), counted over the processed area in bands of rows."""
    h, w = int(scene.area.height), int(scene.area.width)
    # rows of about 2M values of all bands: each is read as float64 with its model-space copy (16.7M pixels a band
    # of rows, 13 bands: 5.9 GB after the model had finished, beyond the estimate)
    rows = max(1, (1 << 21) // max(1, w * len(scene.bands)))
    missing = sum(int((~scene.lr_validity(r0, min(h, r0 + rows))).sum()) for r0 in range(0, h, rows))
    return missing / max(1, h * w)


def _write_stac(job: UpscaleJob) -> None:
    """The output's STAC item (:mod:`geosr.io.stac`): its inputs, model and lineage."""
    tags = job.meta.tags
    inputs = dict(job.inputs or {})
    model = {"name": tags.get("GEOSR_MODEL"), **json.loads(tags.get("GEOSR_MODEL_SETTINGS", "{}"))}
    lineage = (f"super-resolved x{tags.get('GEOSR_SCALE')} by geosr {tags.get('GEOSR_VERSION')} with "
               f"{tags.get('GEOSR_MODEL')} from {', '.join(inputs)}")
    path = write_stac_item(job.out_path, inputs=inputs, model=model, lineage=lineage, provenance=job.provenance)
    job.summary["stac"] = str(path)


def _write_provenance(job: UpscaleJob) -> Path:
    """The provenance sidecar (:mod:`geosr.pipeline.provenance`), written in the work folder (the caller moves it
    beside the output); its shares go into the summary and the tags."""
    folder = job.work_dir / "provenance"
    folder.mkdir(exist_ok=True)
    staged = folder / job.provenance.name
    kept = ("GEOSR_VERSION", "GEOSR_MODEL", "GEOSR_SCALE", "GEOSR_INPUTS")
    tags = {k: v for k, v in job.meta.tags.items() if k in kept}
    shares = write_provenance(job.scene, staged, folder, tags)
    job.summary["provenance"] = {"path": str(job.provenance), "shares": shares}
    # the tag names the sidecar beside the output (a path as typed would make the bytes depend on its spelling)
    tag = json.dumps({"path": job.provenance.name, "shares": shares})
    job.meta = replace(job.meta, tags={**job.meta.tags, "GEOSR_PROVENANCE": tag})
    return staged


@names_too_long_are_input_errors
def upscale(
    lr: str | os.PathLike[str],
    *,
    output: str | os.PathLike[str] | None = None,
    options: UpscaleOptions | None = None,
    resume: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
    **fields: Any,
) -> UpscaleResult:
    """Super-resolve ``lr`` into a COG at ``output`` (see ``geosr upscale --help``).

    ``options`` is an :class:`~geosr.options.UpscaleOptions`; ``fields`` set or override its fields or flat
    options as the CLI names them (``scale=4, ref="old.tif", window=6, compress="LZW"``). A second run on an
    output that a live process is writing is refused (the job lock); what a killed run left is cleared (its
    journal kept for ``resume``).
    """
    t0 = time.perf_counter()
    check_callable(progress, "progress", "(done, total)")  # else a TypeError at the first row, its work folder left
    with _nothing_to_resume(dry_run), plan_upscale(lr, output=output, options=options, dry_run=dry_run,
                                                   resume=resume, **fields) as job:
        if dry_run:  # with resume, what the run would find: the same refusal, or the rows it would not redo
            resumed = 0
            if resume and output is not None:
                work = work_dir_for(Path(output))
                refuse_another_plan(job, work)
                resumed = Journal.peek(work / f"rows_{0:05d}_{job.plan.n_rows:05d}",
                                       {**job.fingerprint, "rows": [0, job.plan.n_rows]}, fingerprint_changes)
            estimate = _estimate_seconds(job, done_rows=resumed)  # (timed before `seconds`, which includes it)
            return UpscaleResult(**job.summary, resumed_rows=resumed, seconds=time.perf_counter() - t0,
                                 estimate_s=estimate)
        dropped = 0
        with job.lock(), writing(job.out_path):
            remove_partials(job.out_path)  # a killed run's leftovers (a finished one's work folder set aside: GBs)
            if not resume:
                dropped = _unfinished_rows(job)
                clear_work_dir(job.work_dir, keep=(LOCK_NAME,), keep_prefixes=(DETECTION_PREFIX,))
            else:
                refuse_another_plan(job, job.work_dir)
            if job.keep_detection is not None:  # for a --resume of this job
                job.keep_detection()
            ran_away = getattr(job.sr, "ran_away", 0)
            try:
                chunks, resumed = run_rows(job, resume=resume, progress=progress)
            except ClassTableError:  # a value a sampled check missed, found mid-run: no resume can go on from
                shutil.rmtree(job.work_dir, ignore_errors=True)  # here (the input must change), so nothing is
                raise  # left behind, as for bad input found before the run (found in review)
            finish(job, chunks)
        ran_away = getattr(job.sr, "ran_away", 0) - ran_away
        if ran_away:  # (a scene of a few pixels, or of flat stripes: the LR-space network's output ran away)
            job.summary["warnings"] = [*job.summary.get("warnings", []), ran_away_warning(job.sr.name, ran_away)]
        if dropped:  # (its rows were thrown away without a word; found in review)
            job.summary["warnings"] = [*job.summary.get("warnings", []),
                                       f"an interrupted run of this job had finished {dropped} of {job.plan.n_rows} "
                                       "window rows; this run started over (`resume` continues from them)"]
        return UpscaleResult(**job.summary, resumed_rows=resumed, seconds=time.perf_counter() - t0)


def ran_away_warning(model: str, windows: int) -> str:
    """What a run says when the output of ``model`` ran away on ``windows`` windows (bicubic written there)."""
    return (f"model {model}: its output ran away on {windows} of the windows computed (a scene of a few pixels or "
            "of flat areas); bicubic is written there")


def _unfinished_rows(job: UpscaleJob) -> int:
    """The window rows an interrupted run of this very job left in its work folder (0: none, or another job's)."""
    try:
        return Journal.peek(job.work_dir / f"rows_{0:05d}_{job.plan.n_rows:05d}",
                            {**job.fingerprint, "rows": [0, job.plan.n_rows]})
    except (ResumeError, OSError, ValueError):
        return 0


def refuse_another_plan(job: UpscaleJob, work: Path) -> None:
    """For ``resume`` of a whole job: refuse when its work folder holds no journal of this job's window plan but
    another run's, which the resume would otherwise silently start over beside, saying what differs (a window
    size, a model...); or a geosr batch task's (its rows split among tasks), which only geosr batch continues."""
    if (work / f"rows_{0:05d}_{job.plan.n_rows:05d}" / "job.json").exists():
        return  # the same rows: Journal.start compares the rest
    for recorded in recorded_jobs(work):
        changed = fingerprint_changes(recorded, job.fingerprint)
        output = work.with_name(work.name.removesuffix(WORK_SUFFIX))
        if not changed:
            raise ResumeError(f"{output}: its unfinished run is a geosr batch job's, its rows split among tasks; "
                              "continue it with geosr batch, or run again without `resume` to start over")
        raise other_run(output, changed)


def _run_rows(job: UpscaleJob, journal: Journal, start: int, stop: int, progress: Progress | None) -> None:
    """Process window rows [start, stop) not yet in ``journal``, flushing finished HR rows as chunks.

    A range that does not begin at the top first recomputes the earlier window rows whose windows reach
    into it (without writing them), so that its blended rows are exactly those of an undivided run.
    """
    scene, plan = job.scene, job.plan
    s, hr = scene.scale, scene.hr
    carry = journal.load_carry()
    if carry is not None:
        try:
            acc = RowBandAccumulator.from_state(carry)
        except (KeyError, ValueError, TypeError) as exc:
            raise ResumeError(f"{journal.folder}: the saved blending state is damaged; run again without "
                              "`resume`") from exc
        first = start + journal.done
    else:
        first = _first_contributing_row(plan, start)
        acc = RowBandAccumulator(len(scene.bands), hr.width, max(0, plan.row_starts[first]) * s)
    total = (stop - start) * plan.n_cols
    done = journal.done * plan.n_cols
    if progress:
        progress(done, total)
    for row in range(first, stop):
        for group in _batches(plan.row_windows(row), job.batch_size):
            before = getattr(job.sr, "ran_away", 0)
            out = _run_model(job, group)
            if row < start:
                job.ran_away_recomputed += getattr(job.sr, "ran_away", 0) - before
            for w, o in zip(group, out):
                _add_within(acc, o, window_weights(plan, w, s), w, s, hr.height)
            if progress and row >= start:
                done += len(group)
                progress(done, total)
        flush_to = plan.final_rows_after(row) * s
        if row < start:  # warm-up row of a later range: its finished rows belong to the range above
            acc.pop_sums(max(acc.start, min(flush_to, plan.row_starts[start] * s)))
            continue
        hr_row = acc.start
        sums, weight = acc.pop_sums(flush_to)  # views, used before the next add
        has_chunk = flush_to > hr_row
        if has_chunk:
            data, valid = _to_output(scene, sums, weight, hr_row, job.meta)
            grid = hr.subgrid(Window(0, hr_row, hr.width, flush_to - hr_row))
            write_chunk(journal.chunk_path(row), data, valid, grid, job.meta, output=hr)
        journal.commit(row, hr_row, has_chunk, acc.state())


def _add_within(acc: RowBandAccumulator, out: np.ndarray, weight: np.ndarray, win, s: int, height: int) -> None:
    """Add a window's HR output and weights to ``acc``, cut to the area (a window of the scene's plan may begin
    before an area of interest or end after it)."""
    r0, c0 = win.row_off * s, win.col_off * s
    top, left = max(0, -r0), max(0, -c0)
    bottom = min(weight.shape[0], height - r0)
    right = min(weight.shape[1], acc.width - c0)
    if bottom <= top or right <= left:
        return
    rows, cols = slice(top, bottom), slice(left, right)
    acc.add(out[:, rows, cols], weight[rows, cols], r0 + top, c0 + left)


@contextlib.contextmanager
def _nothing_to_resume(dry_run: bool) -> Iterator[None]:
    """A dry run stopped by a signal says so, not "run again with --resume" (it wrote nothing; found in review)."""
    try:
        yield
    except KeyboardInterrupt as exc:  # (and SIGTERM's Terminated)
        if dry_run:
            exc.geosr_again = "; it was a dry run, which writes nothing"  # type: ignore[attr-defined]
        raise


PROBE_STEPS = 4  # the longer of the two sampler runs a dry run times (then scaled to the preset's steps)


def _estimate_seconds(job: UpscaleJob, done_rows: int = 0) -> float:
    """Time one batch of windows through the model and scale it to the plan's windows left to compute (those of
    the rows after ``done_rows``, which a resumed run does not redo; it estimated the whole plan, found in review)."""
    groups = _batches(job.plan.row_windows(0), job.batch_size)
    owner = job.sr  # the model that holds the preset: wrappers (LR-consistency, reference detail, rescaling) pass
    # reads through, not writes (found in review), and a DIFFUSION+BACKBONE to its diffusion model (its dry run
    # ran every step of the paper preset; found in review) unless it samples none (steps 0)
    while "preset" not in vars(owner) and vars(owner).get("steps") != 0:
        nxt = vars(owner).get("inner") or vars(owner).get("diffusion")
        if nxt is None:
            break
        owner = nxt
    preset = vars(owner).get("preset")
    if isinstance(preset, SamplerPreset) and preset.nfe > replace(preset, steps=min(PROBE_STEPS, preset.steps)).nfe:
        # a sampler of many steps is timed at one and a few (then put back): the time per network evaluation and
        # what the batch costs besides them, scaled to its evaluations (the paper preset's 511 took a dry run of
        # one 48 x 48 window past 11 minutes; found in review)
        timed = []
        try:
            for steps in (1, PROBE_STEPS):
                owner.preset = replace(preset, steps=steps)
                t0 = time.perf_counter()
                _run_model(job, groups[0])
                timed.append((owner.preset.nfe, time.perf_counter() - t0))
        finally:
            owner.preset = preset
        (n1, t1), (n2, t2) = timed
        per_nfe = max(0.0, t2 - t1) / max(1, n2 - n1) if n2 > n1 else t2 / n2
        seconds = max(t1, t1 + per_nfe * (preset.nfe - n1))
    else:
        t0 = time.perf_counter()
        _run_model(job, groups[0])
        seconds = time.perf_counter() - t0
    per_window = seconds / len(groups[0])
    return per_window * job.plan.n_cols * max(0, job.plan.n_rows - done_rows)


def _first_contributing_row(plan: WindowPlan, start: int) -> int:
    """The first window row whose windows reach LR rows at or below the top of window row ``start``."""
    if start == 0:
        return 0
    top = plan.row_starts[start]
    return next((r for r in range(start) if plan.row_starts[r] + plan.size > top), start)  # none without overlap


def _batches(windows: list, size: int) -> list[list]:
    size = max(1, size)
    return [windows[i : i + size] for i in range(0, len(windows), size)]


def _run_model(job: UpscaleJob, group: list) -> list[np.ndarray]:
    """Run the model on one batch of windows; return each window's HR core (halo cropped), model space."""
    scene, sr = job.scene, job.sr
    s, halo = scene.scale, sr.halo
    stacks = [scene.read_stack(w, halo) for w in group]
    n_change = scene.cd_table.n_classes if scene.cd_table else getattr(sr, "n_change_classes", 2)

    def run(part: list) -> np.ndarray:
        batch = to_batch(part, scale=s, halo=halo, n_change_classes=n_change, n_map_classes=scene.n_map_classes,
                         sharpness=scene.sharpness)
        with torch.inference_mode():
            return from_output(sr(batch.to(job.device), seed=job.seed))

    # Convolution kernels round differently for different batch sizes (1 DN in a few pixels of a million): a window
    # must not get other pixels for the windows that share its batch (an area of interest, a split job's part would
    # not give the whole run's pixels). A model that takes windows singly (on the CPU every learned model does) runs
    # each window through all of its steps alone; any other runs a lone window as a batch of two, which is as near
    # as batching gets.
    if getattr(sr, "one_window_at_a_time", False):
        out = [run([st])[0] for st in stacks]
    else:
        out = list(run(stacks * 2 if len(stacks) == 1 and job.batch_size > 1 else stacks))
    release_freed_memory()  # (the batch's freed activations given back: else the process grew batch by batch)
    return [o[:, halo * s : (halo + w.height) * s, halo * s : (halo + w.width) * s] for w, o in zip(group, out)]


def _to_output(scene: Scene, sums: np.ndarray, weight: np.ndarray, hr_row: int,
               meta: OutputMeta) -> tuple[np.ndarray, np.ndarray]:
    """Blended model-space rows (weighted ``sums`` over ``weight``) -> output dtype; HR pixels whose LR parent has no
    data become nodata. Worked in bands of CONVERT_ROWS rows that stay in the CPU's cache (the same values as whole
    rows at once, 3x faster)."""
    s = scene.scale
    r0, r1 = hr_row // s, hr_row // s + sums.shape[1] // s
    lr_valid, lr_bands = scene.lr_band_validity(r0, r1)
    valid = np.repeat(np.repeat(lr_valid, s, axis=0), s, axis=1)
    scales = tuple(scene.lr_info.scales[b - 1] for b in scene.bands)
    offsets = tuple(scene.lr_info.offsets[b - 1] for b in scene.bands)
    raw = np.empty(sums.shape, dtype=meta.dtype)
    for r in range(0, sums.shape[1], CONVERT_ROWS):
        rows = slice(r, r + CONVERT_ROWS)
        mean = weighted_mean(sums[:, rows], weight[rows])
        finite = np.isfinite(mean)
        valid[rows] &= finite.all(axis=0)
        if not finite.all():  # NaN where no window reached (weight 0) or a model failed: 0 in model space, as before
            mean = np.nan_to_num(mean)
        raw[:, rows] = to_raw(scene.stretch.inverse(mean), meta.dtype, scales, offsets)
    # a band without data in a valid LR pixel (others have some) is nodata in that band's HR pixels, as in the LR
    band_valid = np.repeat(np.repeat(lr_bands, s, axis=1), s, axis=2) & valid[None] if not lr_bands.all() else None
    if meta.nodata is not None:
        fill = np.asarray(meta.nodata).astype(raw.dtype)
        where = valid if band_valid is None else band_valid
        if not math.isnan(meta.nodata):  # a valid pixel must not take the nodata value by chance
            raw = np.where(where & _reads_as(raw, fill), _next_to(fill), raw)
        raw = np.where(where, raw, fill)
    return raw, valid


# GDAL reads a float value as its band's nodata within this many float32 epsilons of the two's sum (ARE_REAL_EQUAL,
# 2 ulp): valid pixels at -9998.999 beside a nodata of -9999 read as nodata in GDAL, rasterio and QGIS (found in review)
NODATA_ULP = 2


def _reads_as(raw: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """Where values of ``raw`` read as the nodata value ``fill`` (exactly for integers; as GDAL compares floats)."""
    if np.issubdtype(raw.dtype, np.integer):
        return raw == fill
    eps = float(np.finfo(np.float32).eps)
    wide = raw.astype(np.float64)
    return (raw == fill) | (np.abs(wide - float(fill)) < eps * np.abs(wide + float(fill)) * NODATA_ULP)


def _next_to(value: np.ndarray) -> np.ndarray:
    """The value next to ``value`` (towards the middle of the dtype's range) that GDAL does not read as it."""
    if np.issubdtype(value.dtype, np.integer):
        return value + 1 if value < np.iinfo(value.dtype).max else value - 1
    if value == 0 or not math.isfinite(float(value)):  # (GDAL compares these exactly)
        return np.nextafter(value, np.asarray(1 if value == 0 else 0, value.dtype))
    step = 4 * NODATA_ULP * float(np.finfo(np.float32).eps) * abs(float(value))  # twice GDAL's tolerance
    return np.asarray(float(value) - math.copysign(step, float(value)), value.dtype)
