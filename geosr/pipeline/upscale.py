"""The one workflow: plan the HR grid, run the model window by window, blend, write a COG."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from rasterio.windows import Window

from geosr._version import __version__
from geosr.conditioning.changes import load_class_table
from geosr.conditioning.radiometry import to_raw
from geosr.config import SUPPORTED_SCALES, DeviceConfig, OutputConfig, SamplerConfig, TilingConfig, to_json
from geosr.errors import BandError, ScaleError
from geosr.io.aoi import aoi_window
from geosr.io.journal import Journal
from geosr.io.outputs import check_output_path
from geosr.io.rasters import RasterInfo, inspect_raster, parse_bands
from geosr.io.writer import OutputMeta, stitch, to_cog, write_chunk
from geosr.models.interface import SuperResolver
from geosr.models.registry import load_model
from geosr.pipeline.device import resolve_device
from geosr.pipeline.scene import Scene
from geosr.pipeline.tensors import from_output, to_batch
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

    def to_dict(self) -> dict:
        return asdict(self)


def upscale(
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
    model: str = "bicubic",
    tiling: TilingConfig = TilingConfig(),
    sampler: SamplerConfig = SamplerConfig(),
    output_config: OutputConfig = OutputConfig(),
    device: DeviceConfig = DeviceConfig(),
    resume: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> UpscaleResult:
    """Super-resolve ``lr`` by ``scale`` into a COG at ``output`` (see ``geosr upscale --help``)."""
    t0 = time.perf_counter()
    lr, ref, cd, map = (None if p is None else str(p) for p in (lr, ref, cd, map))
    if scale not in SUPPORTED_SCALES:
        raise ScaleError(f"-x {scale}: geosr supports scale factors {', '.join(map_str(SUPPORTED_SCALES))}")
    out_path = None
    if not dry_run:
        if output is None:
            raise BandError("an output path is required (-o OUT.tif)")
        out_path = check_output_path(output, overwrite=output_config.overwrite)
    lr_info = inspect_raster(lr)
    sel = parse_bands(bands, lr_info)
    aoi_win = aoi_window(aoi, lr_info.grid, aoi_crs=aoi_crs) if aoi else None
    hr, area = hr_grid(lr_info.grid, scale, aoi_win)
    dev = resolve_device(device.device)
    sr = load_model(model, device=str(dev))
    _check_model(sr, scale, len(sel), model)
    tcfg = tiling.resolved(scale)
    plan = WindowPlan.build(int(area.width), int(area.height), tcfg.window, tcfg.overlap)
    table = load_class_table(cd_classes)
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
    )
    with Scene.open(
        lr, scale=scale, hr=hr, area=area, bands=bands, ref=ref, ref_bands=ref_bands, cd=cd,
        cd_table=table if cd else None, map=map,
    ) as scene:
        if dry_run:
            return UpscaleResult(**summary, resumed_rows=0, seconds=time.perf_counter() - t0, dry_run=True)
        tags = _tags(scene, sr, sampler, tcfg, lr, ref, cd, map)
        meta = OutputMeta(**{**asdict(meta), "tags": {**meta.tags, **tags}})
        fingerprint = json.loads(
            to_json(
                dict(
                    version=__version__,
                    inputs=[_file_id(p) for p in (lr, ref, cd, map)],
                    options=dict(scale=scale, bands=sel, ref_bands=ref_bands, cd_classes=cd_classes, aoi=aoi,
                                 aoi_crs=aoi_crs, model=model, tiling=tcfg, sampler=sampler,
                                 output=output_config),
                )
            )
        )
        journal = Journal.start(out_path, fingerprint, resume=resume)
        resumed = journal.done
        _run_rows(scene, sr, plan, journal, meta, sampler.seed, device.batch_size, dev, progress)
        stage = journal.folder / "stitched.tif"
        stitch(journal.chunks(), hr, meta, stage)
        to_cog(stage, out_path, meta)
        journal.remove()
    return UpscaleResult(**summary, resumed_rows=resumed, seconds=time.perf_counter() - t0, dry_run=False)


def map_str(values) -> list[str]:
    return [str(v) for v in values]


def _check_model(sr: SuperResolver, scale: int, n_bands: int, spec: str) -> None:
    if sr.scales and scale not in sr.scales:
        raise ScaleError(f"model {spec}: trained for -x {', '.join(map_str(sr.scales))}, not -x {scale}")
    if sr.bands is not None and sr.bands != n_bands:
        raise BandError(f"model {spec}: takes {sr.bands} bands but {n_bands} are selected (use --bands)")


def _run_rows(
    scene: Scene,
    sr: SuperResolver,
    plan: WindowPlan,
    journal: Journal,
    meta: OutputMeta,
    seed: int,
    batch_size: int,
    dev: torch.device,
    progress: Progress | None,
) -> None:
    """Process the window rows not yet in the journal, flushing finished HR rows as chunks."""
    s, halo, hr = scene.scale, sr.halo, scene.hr
    carry = journal.load_carry()
    acc = RowBandAccumulator.from_state(carry) if carry is not None else RowBandAccumulator(len(scene.bands), hr.width)
    total = len(plan)
    if progress:
        progress(journal.done * plan.n_cols, total)
    n_change = scene.cd_table.n_classes if scene.cd_table else 2
    for row in range(journal.done, plan.n_rows):
        windows = plan.row_windows(row)
        for i in range(0, len(windows), max(1, batch_size)):
            group = windows[i : i + batch_size]
            stacks = [scene.read_stack(w, halo) for w in group]
            batch = to_batch(stacks, scale=s, halo=halo, n_change_classes=n_change, n_map_classes=scene.n_map_classes)
            with torch.inference_mode():
                out = from_output(sr(batch.to(dev), seed=seed))
            for w, o in zip(group, out):
                core = o[:, halo * s : (halo + w.height) * s, halo * s : (halo + w.width) * s]
                acc.add(core, window_weights(plan, w, s), w.row_off * s, w.col_off * s)
            if progress:
                progress(row * plan.n_cols + i + len(group), total)
        stop = plan.final_rows_after(row) * s
        start = acc.start
        mean, _ = acc.pop(stop)
        has_chunk = stop > start
        if has_chunk:
            data, valid = _to_output(scene, mean, start, meta)
            write_chunk(journal.chunk_path(row), data, valid, hr.subgrid(Window(0, start, hr.width, stop - start)), meta)
        journal.commit(row, start, has_chunk, acc.state())


def _to_output(scene: Scene, mean: np.ndarray, hr_row: int, meta: OutputMeta) -> tuple[np.ndarray, np.ndarray]:
    """Blended model-space rows -> output dtype; HR pixels whose LR parent has no data become nodata."""
    s = scene.scale
    r0, r1 = hr_row // s, hr_row // s + mean.shape[1] // s
    _, lr_valid = scene._read_lr(0, r0, int(scene.area.width), r1 - r0)
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
    lr, ref, cd, map_ = inputs
    return {
        "GEOSR_VERSION": __version__,
        "GEOSR_MODEL": sr.name,
        "GEOSR_SCALE": str(scene.scale),
        "GEOSR_SEED": str(sampler.seed),
        "GEOSR_SAMPLER": to_json(sampler),
        "GEOSR_TILING": to_json(tcfg),
        "GEOSR_INPUTS": json.dumps(
            {k: Path(v).name for k, v in (("lr", lr), ("ref", ref), ("cd", cd), ("map", map_)) if v},
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
