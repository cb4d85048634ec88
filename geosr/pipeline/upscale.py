"""The one workflow: plan the HR grid, run the model window by window, blend, write a COG."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from geosr._version import __version__
from geosr.conditioning.changes import load_class_table
from geosr.conditioning.radiometry import to_raw
from geosr.config import SUPPORTED_SCALES, DeviceConfig, OutputConfig, SamplerConfig, TilingConfig, to_json
from geosr.errors import BandError, ClassTableError, GeoSRError, OptionError, ResumeError, ScaleError
from geosr.io.aoi import aoi_window
from geosr.io.journal import Journal, clear_work_dir, work_dir_for
from geosr.io.lock import LOCK_NAME, JobLock
from geosr.io.outputs import check_output_path, remove_partials
from geosr.io.rasters import RasterInfo, inspect_raster, parse_bands
from geosr.io.writer import OutputMeta, stitch, to_cog, write_chunk
from geosr.models.interface import SuperResolver
from geosr.models.registry import DEFAULT_NAME, load_model
from geosr.pipeline import resources
from geosr.pipeline.device import resolve_device
from geosr.pipeline.scene import Scene
from geosr.pipeline.tensors import from_output, style_tensor, to_batch
from geosr.tiling.blend import RowBandAccumulator, window_weights
from geosr.tiling.grid import Grid, hr_grid
from geosr.tiling.windows import WindowPlan

Progress = Callable[[int, int], None]


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

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class UpscaleJob:
    """A checked, planned upscale: inputs open, model loaded, nothing written yet. A context manager."""

    scene: Scene
    sr: SuperResolver
    plan: WindowPlan
    meta: OutputMeta
    out_path: Path | None
    fingerprint: dict
    summary: dict
    seed: int
    batch_size: int
    device: torch.device

    def close(self) -> None:
        self.scene.close()

    def __enter__(self) -> "UpscaleJob":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def work_dir(self) -> Path:
        return work_dir_for(self.out_path)

    def lock(self, *, shared: bool = False) -> JobLock:
        """The job's lock: exclusive for a whole run, shared by the row ranges of a split one."""
        return JobLock(self.work_dir / LOCK_NAME, output=self.out_path, shared=shared)


def plan_upscale(
    lr: str | os.PathLike[str],
    *,
    output: str | os.PathLike[str] | None,
    scale: int,
    ref: str | os.PathLike[str] | None = None,
    cd: str | os.PathLike[str] | None = None,
    map: str | os.PathLike[str] | None = None,
    bands: str | None = None,
    ref_bands: str | None = None,
    cd_classes: str = "binary",
    aoi: str | None = None,
    aoi_crs: str = "EPSG:4326",
    model: str | SuperResolver = "default",
    style: str | None = None,
    tiling: TilingConfig = TilingConfig(),
    sampler: SamplerConfig = SamplerConfig(),
    output_config: OutputConfig = OutputConfig(),
    device: DeviceConfig = DeviceConfig(),
    dry_run: bool = False,
    force_resources: bool = False,
) -> UpscaleJob:
    """Check every input and option and plan the job; raises an InputError before anything is written.

    The output may not be any input, nor anything but a regular file; unless ``force_resources``, a job
    whose working memory or output size exceeds what the machine has is refused (:mod:`.resources`)."""
    lr, ref, cd, map = (None if p is None else str(p) for p in (lr, ref, cd, map))
    if scale not in SUPPORTED_SCALES:
        raise ScaleError(f"-x {scale}: geosr supports scale factors {_join(SUPPORTED_SCALES)}")
    out_path = None
    if not dry_run:
        if output is None:
            raise OptionError("an output path is required (-o OUT.tif)")
        inputs = [("LR", lr), ("reference", ref), ("change mask", cd), ("map", map),
                  ("style image", style if _is_style_image(style) else None),
                  ("area of interest", aoi if aoi and Path(aoi).exists() else None),
                  ("model", model if isinstance(model, str) and Path(model).is_file() else None)]
        out_path = check_output_path(output, overwrite=output_config.overwrite, inputs=inputs)
    lr_info = inspect_raster(lr)
    sel = parse_bands(bands, lr_info)
    aoi_win = aoi_window(aoi, lr_info.grid, aoi_crs=aoi_crs) if aoi else None
    hr, area = hr_grid(lr_info.grid, scale, aoi_win)
    dev = resolve_device(device.device)
    table = load_class_table(cd_classes)
    scene = Scene.open(
        lr, scale=scale, hr=hr, area=area, bands=bands, ref=ref, ref_bands=ref_bands, cd=cd,
        cd_table=table if cd else None, map=map,
    )
    try:
        style_arg = style_tensor(scene.read_style(style)) if _is_style_image(style) else style
        sr = resolve_model(model, scale, dev, sampler, style=style_arg)
        _check_model(sr, scale, len(sel), sr.name, table if cd else None)
    except BaseException:
        scene.close()
        raise
    tcfg = tiling.resolved(scale)
    plan = WindowPlan.build(int(area.width), int(area.height), tcfg.window, tcfg.overlap)
    meta = _output_meta(lr_info, sel, output_config)
    summary = dict(
        output=None if out_path is None else str(out_path),
        model=sr.name,
        scale=scale,
        crs=hr.crs.to_string(),
        bounds=hr.bounds,
        width=hr.width,
        height=hr.height,
        count=len(sel),
        dtype=meta.dtype,
        windows=len(plan),
        window_rows=plan.n_rows,
        window_size=tcfg.window,
        overlap=tcfg.overlap,
        memory_mb=_memory_mb(plan, hr, len(sel), scale, sr.halo, device.batch_size),
        output_mb=hr.width * hr.height * len(sel) * np.dtype(meta.dtype).itemsize / 2**20,
        dry_run=dry_run,
    )
    res = resources.measure(summary["memory_mb"], summary["output_mb"], None if out_path is None else out_path.parent)
    summary["resources"] = res.to_dict()
    if not dry_run and not force_resources:
        try:
            resources.check(res, output=out_path)
        except BaseException:
            scene.close()
            raise
    tags = _tags(scene, sr, sampler, tcfg, lr, ref, cd, map, style if _is_style_image(style) else None)
    meta = OutputMeta(**{**asdict(meta), "tags": {**meta.tags, **tags}})
    fingerprint = json.loads(
        to_json(
            dict(
                version=__version__,
                inputs=[_file_id(p) for p in (lr, ref, cd, map, style if _is_style_image(style) else None)],
                options=dict(scale=scale, bands=sel, ref_bands=ref_bands, cd_classes=cd_classes, aoi=aoi,
                             aoi_crs=aoi_crs, model=sr.name,
                             model_settings=json.loads(tags["GEOSR_MODEL_SETTINGS"]),  # how it runs, not only its name
                             style=style, tiling=tcfg, sampler=sampler, output=output_config),
            )
        )
    )
    return UpscaleJob(scene, sr, plan, meta, out_path, fingerprint, summary, sampler.seed, device.batch_size, dev)


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
        journal = Journal.start(folder, {**job.fingerprint, "rows": [start, stop]}, resume=resume)
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
    stage = job.work_dir / "stitched.tif"
    missing = [c for c, _ in chunks if not c.exists()]
    if missing:
        raise ResumeError(f"{missing[0]}: a finished part of the job is missing from its work folder; "
                          "run again without --resume to start over")
    remove_partials(job.out_path)  # what a killed earlier run left beside the output
    try:
        stitch(sorted(chunks, key=lambda c: c[1]), job.scene.hr, job.meta, stage)
        to_cog(stage, job.out_path, job.meta, folder=job.work_dir)
    finally:
        stage.unlink(missing_ok=True)
    if before_cleanup is not None:
        before_cleanup()
    shutil.rmtree(job.work_dir, ignore_errors=True)


def upscale(
    lr: str | os.PathLike[str],
    *,
    output: str | os.PathLike[str] | None,
    scale: int,
    resume: bool = False,
    progress: Progress | None = None,
    **options,
) -> UpscaleResult:
    """Super-resolve ``lr`` by ``scale`` into a COG at ``output`` (see ``geosr upscale --help``).

    ``options`` are those of :func:`plan_upscale` (ref, cd, map, bands, model, tiling, sampler, ...).
    A second run on an output that a live process is writing is refused (the job lock); what a killed run
    left is cleared (its journal kept for ``resume``).
    """
    t0 = time.perf_counter()
    dry_run = bool(options.get("dry_run", False))
    with plan_upscale(lr, output=output, scale=scale, **options) as job:
        if dry_run:
            return UpscaleResult(
                **job.summary, resumed_rows=0, seconds=time.perf_counter() - t0, estimate_s=_estimate_seconds(job)
            )
        with job.lock(), writing(job.out_path):
            if not resume:
                clear_work_dir(job.work_dir, keep=(LOCK_NAME,))
            chunks, resumed = run_rows(job, resume=resume, progress=progress)
            finish(job, chunks)
        return UpscaleResult(**job.summary, resumed_rows=resumed, seconds=time.perf_counter() - t0)


class OutputWriteError(GeoSRError, OSError):
    """The output could not be written for a reason of the machine's (a full disk, no permission)."""


@contextlib.contextmanager
def writing(out: Path) -> Iterator[None]:
    """Turn the machine's write failures (a full disk, a quota, permissions) into one sentence naming ``out``."""
    try:
        yield
    except GeoSRError:
        raise
    except (OSError, RasterioIOError) as exc:
        reason = _os_reason(exc)
        if reason is None:
            raise
        raise OutputWriteError(f"{out}: cannot be written: {reason}; the journal is kept for --resume") from exc


def _os_reason(exc: BaseException) -> str | None:
    """The machine's reason behind ``exc`` (also when GDAL wrapped it), or None for anything else."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _WRITE_ERRNOS:
            where = f" ({seen.filename})" if seen.filename else ""
            return f"{os.strerror(seen.errno).lower()}{where}"
        text = str(seen).lower()
        for needle, reason in _GDAL_REASONS:
            if needle in text:
                return reason
        seen = seen.__cause__ or seen.__context__
    return None


_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO, errno.EFBIG)
_GDAL_REASONS = (
    ("no space left on device", "no space left on device"),
    ("free disk space available is", "not enough free disk space"),
    ("disk full", "no space left on device"),
    ("permission denied", "permission denied"),
    ("read-only file system", "read-only file system"),
)


def _join(values) -> str:
    return ", ".join(str(v) for v in values)


def resolve_model(
    model: str | SuperResolver,
    scale: int,
    device: torch.device | str,
    sampler: SamplerConfig | None = None,
    loader: Callable[..., SuperResolver] = load_model,
    style: "str | torch.Tensor | None" = None,
) -> SuperResolver:
    """Load ``model`` with ``loader``; ``default`` is the bundled diffusion model at the scales it was
    trained for and bicubic at the others. ``style``: None/"none", "sample" (SGDM's style flow) or a style
    image tensor in model space."""
    if not isinstance(model, str):
        return model
    extra = {} if style is None or (isinstance(style, str) and style == "none") else {"style": style}
    sr = loader(model, device=str(device), sampler=sampler, **extra)
    if model == DEFAULT_NAME and sr.scales and scale not in sr.scales:
        return loader("bicubic", device=str(device), sampler=sampler)
    return sr


def _is_style_image(style: object) -> bool:
    return isinstance(style, str) and style not in ("none", "sample")


def _check_model(sr: SuperResolver, scale: int, n_bands: int, spec: str, table=None) -> None:
    if sr.scales and scale not in sr.scales:
        raise ScaleError(f"model {spec}: trained for -x {_join(sr.scales)}, not -x {scale}")
    if sr.bands is not None and sr.bands != n_bands:
        fix = f"pick {sr.bands} with --bands" if n_bands > sr.bands else "use --model bicubic or lanczos"
        raise BandError(f"model {spec}: takes {sr.bands} bands but {n_bands} {'is' if n_bands == 1 else 'are'} "
                        f"selected ({fix})")
    wanted = getattr(sr, "n_change_classes", None)
    if table is not None and wanted is not None and table.n_classes != wanted:
        raise ClassTableError(
            f"model {spec}: was trained with {wanted} change classes but --cd-classes {table.name} declares "
            f"{table.n_classes}"
        )


def _run_rows(job: UpscaleJob, journal: Journal, start: int, stop: int, progress: Progress | None) -> None:
    """Process window rows [start, stop) not yet in ``journal``, flushing finished HR rows as chunks.

    A range that does not begin at the top first recomputes the earlier window rows whose windows reach
    into it (without writing them), so that its blended rows are exactly those of an undivided run.
    """
    scene, sr, plan = job.scene, job.sr, job.plan
    s, hr = scene.scale, scene.hr
    carry = journal.load_carry()
    if carry is not None:
        try:
            acc = RowBandAccumulator.from_state(carry)
        except (KeyError, ValueError, TypeError) as exc:
            raise ResumeError(f"{journal.folder}: the saved blending state is damaged; run again without "
                              "--resume") from exc
        first = start + journal.done
    else:
        first = _first_contributing_row(plan, start)
        acc = RowBandAccumulator(len(scene.bands), hr.width, plan.row_starts[first] * s)
    total = (stop - start) * plan.n_cols
    done = journal.done * plan.n_cols
    if progress:
        progress(done, total)
    for row in range(first, stop):
        for i, group in enumerate(_batches(plan.row_windows(row), job.batch_size)):
            out = _run_model(job, group)
            for w, o in zip(group, out):
                acc.add(o, window_weights(plan, w, s), w.row_off * s, w.col_off * s)
            if progress and row >= start:
                done += len(group)
                progress(done, total)
        flush_to = plan.final_rows_after(row) * s
        if row < start:  # warm-up row of a later range: its finished rows belong to the range above
            acc.pop(min(flush_to, plan.row_starts[start] * s))
            continue
        hr_row = acc.start
        mean, _ = acc.pop(flush_to)
        has_chunk = flush_to > hr_row
        if has_chunk:
            data, valid = _to_output(scene, mean, hr_row, job.meta)
            grid = hr.subgrid(Window(0, hr_row, hr.width, flush_to - hr_row))
            write_chunk(journal.chunk_path(row), data, valid, grid, job.meta)
        journal.commit(row, hr_row, has_chunk, acc.state())


def _estimate_seconds(job: UpscaleJob) -> float:
    """Time one batch of windows through the model and scale it to the whole plan."""
    groups = _batches(job.plan.row_windows(0), job.batch_size)
    t0 = time.perf_counter()
    _run_model(job, groups[0])
    per_window = (time.perf_counter() - t0) / len(groups[0])
    return per_window * len(job.plan)


def _first_contributing_row(plan: WindowPlan, start: int) -> int:
    """The first window row whose windows reach LR rows at or below the top of window row ``start``."""
    if start == 0:
        return 0
    top = plan.row_starts[start]
    return next(r for r in range(start) if plan.row_starts[r] + plan.size > top)


def _batches(windows: list, size: int) -> list[list]:
    size = max(1, size)
    return [windows[i : i + size] for i in range(0, len(windows), size)]


def _run_model(job: UpscaleJob, group: list) -> list[np.ndarray]:
    """Run the model on one batch of windows; return each window's HR core (halo cropped), model space."""
    scene, sr = job.scene, job.sr
    s, halo = scene.scale, sr.halo
    stacks = [scene.read_stack(w, halo) for w in group]
    n_change = scene.cd_table.n_classes if scene.cd_table else getattr(sr, "n_change_classes", 2)
    batch = to_batch(stacks, scale=s, halo=halo, n_change_classes=n_change, n_map_classes=scene.n_map_classes)
    with torch.inference_mode():
        out = from_output(sr(batch.to(job.device), seed=job.seed))
    return [o[:, halo * s : (halo + w.height) * s, halo * s : (halo + w.width) * s] for w, o in zip(group, out)]


def _to_output(scene: Scene, mean: np.ndarray, hr_row: int, meta: OutputMeta) -> tuple[np.ndarray, np.ndarray]:
    """Blended model-space rows -> output dtype; HR pixels whose LR parent has no data become nodata."""
    s = scene.scale
    r0, r1 = hr_row // s, hr_row // s + mean.shape[1] // s
    lr_valid = scene.lr_validity(r0, r1)
    valid = np.repeat(np.repeat(lr_valid, s, axis=0), s, axis=1) & np.isfinite(mean).all(axis=0)
    scales = tuple(scene.lr_info.scales[b - 1] for b in scene.bands)
    offsets = tuple(scene.lr_info.offsets[b - 1] for b in scene.bands)
    raw = to_raw(scene.stretch.inverse(np.nan_to_num(mean)), meta.dtype, scales, offsets)
    if meta.nodata is not None:
        fill = np.asarray(meta.nodata).astype(raw.dtype)
        if not math.isnan(meta.nodata):  # a valid pixel must not take the nodata value by chance
            raw = np.where(valid & (raw == fill), _next_to(fill), raw)
        raw = np.where(valid, raw, fill)
    return raw, valid


def _next_to(value: np.ndarray) -> np.ndarray:
    """The representable value next to ``value`` (towards the middle of the dtype's range)."""
    if np.issubdtype(value.dtype, np.integer):
        return value + 1 if value < np.iinfo(value.dtype).max else value - 1
    return np.nextafter(value, np.asarray(0, value.dtype) if value != 0 else np.asarray(1, value.dtype))


def _output_meta(info: RasterInfo, bands: tuple[int, ...], cfg: OutputConfig) -> OutputMeta:
    """Output dtype, nodata and band metadata carried over from the LR's selected bands."""
    dtype = info.dtypes[bands[0] - 1]
    nodata, write_mask = info.nodata, False
    if nodata is None:
        if np.issubdtype(np.dtype(dtype), np.floating):
            nodata = float("nan")  # float LR without nodata: NaN inputs become declared nodata
        elif info.has_mask:
            write_mask = True
    colorinterp = tuple(info.colorinterp[b - 1] for b in bands)
    if any(c == "alpha" for c in colorinterp):
        colorinterp = ()
    return OutputMeta(
        dtype=dtype,
        count=len(bands),
        nodata=nodata,
        write_mask=write_mask,
        descriptions=tuple(info.descriptions[b - 1] for b in bands),
        scales=tuple(info.scales[b - 1] for b in bands),
        offsets=tuple(info.offsets[b - 1] for b in bands),
        colorinterp=colorinterp,
        compress=cfg.compress,
        blocksize=cfg.blocksize,
        overview_resampling=cfg.overview_resampling,
    )


def _tags(scene: Scene, sr: SuperResolver, sampler: SamplerConfig, tcfg: TilingConfig, *inputs) -> dict[str, str]:
    lr, ref, cd, map_, style = inputs
    return {
        "GEOSR_VERSION": __version__,
        "GEOSR_MODEL": sr.name,
        # how the model ran: architecture, resolved sampler, reference detail, LR-consistency
        "GEOSR_MODEL_SETTINGS": json.dumps(sr.describe() if hasattr(sr, "describe") else {"model": sr.name}, sort_keys=True),
        "GEOSR_SCALE": str(scene.scale),
        "GEOSR_SEED": str(sampler.seed),
        "GEOSR_SAMPLER": to_json(sampler),
        "GEOSR_TILING": to_json(tcfg),
        "GEOSR_INPUTS": json.dumps(
            {k: Path(v).name for k, v in (("lr", lr), ("ref", ref), ("cd", cd), ("map", map_), ("style", style)) if v},
            sort_keys=True,
        ),
        "GEOSR_BANDS": json.dumps(list(scene.bands)),
        "GEOSR_STRETCH": json.dumps(scene.stretch.to_dict()),
        "GEOSR_HARMONIZATION": json.dumps(scene.harmonization.to_dict() if scene.harmonization else None),
        "GEOSR_CHANGE_CLASSES": json.dumps(scene.cd_table.to_dict() if scene.cd_table else None, sort_keys=True),
    }


def _file_id(path: str | None) -> list | None:
    if path is None:
        return None
    st = os.stat(path)
    return [os.path.abspath(path), st.st_size, st.st_mtime_ns]


def _memory_mb(plan: WindowPlan, hr: Grid, bands: int, scale: int, halo: int, batch: int) -> float:
    """Rough peak working memory: the accumulator band plus one batch of stacks and outputs."""
    acc = 2 * (bands + 1) * plan.size * scale * hr.width * 8
    side = (plan.size + 2 * halo) * scale
    stack = batch * side * side * (2 * bands + 5) * 4 * 2
    return (acc + stack) / 2**20
