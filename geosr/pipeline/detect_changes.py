"""``detect_changes``: where a reference no longer shows what the LR shows, as a binary class raster on the LR grid
or a grid a few times finer.

The reference is opened as upscale opens it (co-registered to the LR unless ``coregister`` is False, read onto the
LR grid by averaging), then compared with the LR by :func:`geosr.conditioning.change_detection.detect_changes` in
bands of rows, a wide scene's in parts of columns (each fitted on its own pixels), the outlines drawn on the grid
``refine`` times finer than the LR's (:func:`~geosr.conditioning.change_detection.refine`), and written as a COG:
one uint8 band, 0 unchanged, 1 changed, 255 unknown (no data in either image; nodata, which upscale treats as
changed). The binary change table and the detection's numbers are in its tags, so ``geosr upscale --cd`` reads it
as it is; ``upscale --cd auto`` runs the same detection into its work folder.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from rasterio.io import MemoryFile
from rasterio.windows import Window

from geosr._version import __version__
from geosr.conditioning.change_detection import (
    DETECTOR_VERSION,
    LEVEL,
    METHOD,
    REFINE,
    ChangeDetection,
    interpolated,
    nearest_filled,
    pan_intensity,
)
from geosr.conditioning.change_detection import detect_changes as compare
from geosr.conditioning.changes import BINARY, ChangeClass, ChangeClassTable
from geosr.errors import NoOverlapError, OptionError, names_too_long_are_input_errors
from geosr.io.journal import clear_work_dir, refuse_unfinished_upscale, work_dir_for
from geosr.io.lock import LOCK_NAME, JobLock
from geosr.io.outputs import (
    check_raster_output_path,
    earlier_sidecars,
    remove_partials,
    remove_sidecars,
    still_free,
    writing,
)
from geosr.io.paths import recorded_options, recorded_path, without_credentials
from geosr.io.rasters import inspect_raster
from geosr.io.sources import member_inputs
from geosr.io.writer import OutputMeta, write_row_bands
from geosr.options import DetectChangesOptions
from geosr.options.declare import check_callable, coerce
from geosr.pipeline.scene import Scene
from geosr.tiling.grid import Grid
from geosr.tiling.windows import PlannedWindow

# LR rows compared at a time (each band fits its own harmonization and thresholds): as many as make BAND_PIXELS
# pixels, between MIN_ROWS and MAX_ROWS. The comparison holds about 450 bytes per pixel of a band (measured with
# version 5: a 4096-wide scene peaked at 3.8 GB with 2048 rows, 1.4 GB with 512; the conversion back to physical
# values since version 6 adds about 50), so a band's pixels, not its rows, are bounded (a band of a scene wider
# than BAND_PIXELS / MIN_ROWS in parts of columns: column_parts)
MAX_ROWS = 2048
MIN_ROWS = 256
BAND_PIXELS = 1 << 22

# The comparison moves the reference back from a tenth of an LR pixel (about the estimate's accuracy; upscale: from
# half an output pixel): it reads the reference averaged onto the LR grid, so moving it blurs nothing, while edges
# left apart read as change (the bundled sample's reference moved 0.35 LR px: 25.8% of the scene flagged if left,
# 20.2% if moved back; unmoved 19.7%)
LEAST_SHIFT = 0.1

FINE_PIXELS = 1 << 24  # fine pixels refined and written at a time (float64: 128 MB), in whole LR rows
REFINE_CONTEXT = 1  # LR pixels of context a band of rows is refined with: bilinear interpolation's reach
# LR pixels of context around each band: the learned cue's widest measure (the structure cue's detail, correlation
# and its own blur, Gaussians of 1, 1.5 and 1 LR px cut at 4 sigma) reaches 14, the evidence's smoothing (0.8 LR px,
# scipy's radius 3) 3 more
HALO = 20
UNKNOWN = 255
# The binary table (upscale reads these rasters with it: 255 is a "changed" class), its names saying what this raster
# holds; the same names in its category table, its tags and the JSON summary.
TABLE = ChangeClassTable(BINARY.name, tuple(
    ChangeClass(c.value, "unknown (no data to compare; upscale takes it as changed)" if c.value == UNKNOWN else c.name,
                c.changed) for c in BINARY.classes))
# LR pixels compared around an upscale's area of interest: the context its windows read around it (the largest halo
# a bundled model asks for is 16 LR pixels). The windows of the scene's plan that reach the area may extend further
# (up to a window); there the change is unknown, taken as changed: that context sees no reference, which only the
# network's reach carries into the area. Comparing a whole window around every area would cost a small area many
# times its own detection.
AREA_MARGIN = 32
MIN_COMPARED = 1024  # LR pixels both images cover: fewer, and the detection says it cannot be trusted

#: ``progress(done, total)`` over the bands of rows.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ChangeDetectionResult:
    """What :func:`detect_changes` wrote."""

    path: Path
    grid: Grid
    changed_share: float  # of the pixels with data in both images
    unknown_share: float
    thresholds: list[float]  # the classical score's, per part compared (a band of rows, or part of a wide one's)
    coregistration: dict | None
    seconds: float
    tags: dict[str, str] = field(default_factory=dict)
    probability_thresholds: list[float | None] = field(default_factory=list)  # the learned cue's, per part
    warnings: list[str] = field(default_factory=list)
    # the products' own cloud masks: {"masks": [{"of" (LR, reference), "source", "flagged" (in words)}], "share" (of
    # the compared pixels)}; None without any
    sensor_mask: dict | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"output": str(self.path), "crs": self.grid.crs.to_string(), "width": self.grid.width,
                "height": self.grid.height, "resolution": list(self.grid.res), "classes": TABLE.to_dict(),
                "changed_share": round(self.changed_share, 6), "unknown_share": round(self.unknown_share, 6),
                # a part where the two images never both have data has no threshold: null
                "thresholds": [round(t, 4) if math.isfinite(t) else None for t in self.thresholds],
                "probability_thresholds": [None if t is None else round(t, 4) for t in self.probability_thresholds],
                "coregistration": self.coregistration, "sensor_mask": self.sensor_mask,
                "seconds": round(self.seconds, 3), "warnings": list(self.warnings)}


@names_too_long_are_input_errors
def detect_changes(
    lr: str | os.PathLike[str],
    *,
    ref: str | os.PathLike[str],
    output: str | os.PathLike[str],
    options: DetectChangesOptions | None = None,
    progress: Progress | None = None,
    work: Path | None = None,
    **fields: Any,
) -> ChangeDetectionResult:
    """Detect where ``ref`` no longer shows what ``lr`` shows and write the binary change raster at ``output``.

    ``options`` is a :class:`~geosr.options.DetectChangesOptions`; ``fields`` set or override its fields
    (``bands`` / ``ref_bands``: the bands compared, as upscale's; ``coregister``; ``cloud_masks``: the inputs' own
    cloud masks taken as changed; ``refine``: the output grid this many times finer than the LR's; ``overwrite``).
    ``work``: a folder the caller holds locked (upscale's own work folder); without it the output's work folder is
    locked here. Raises an :class:`~geosr.errors.InputError` (nothing written) for bad inputs.
    """
    t0 = time.perf_counter()
    check_callable(progress, "progress", "(done, total)")
    opts = DetectChangesOptions.of(options, **fields)
    required = {"lr": (lr, "the LR raster"), "ref": (ref, "the reference raster to compare the LR with"),
                "output": (output, "the change raster to write")}
    for name, (value, what) in required.items():
        if value is None:  # coerce passes None through: os.fspath(None) was a TypeError
            raise OptionError(f"{name} is required: {what}", param=name)
    if work is not None and not Path(work).is_dir():  # a caller's (upscale's) own work folder, which it holds
        raise OptionError(f"work {work}: not a folder", param="work")
    lr, ref = os.fspath(coerce("lr", lr, Path)), os.fspath(coerce("ref", ref, Path))
    output = coerce("output", output, Path)
    inputs: list[tuple[str, str | None]] = [("LR", lr), ("reference", ref)]
    final = check_raster_output_path(output, overwrite=opts.overwrite, inputs=inputs + member_inputs(inputs))
    if work is None:
        refuse_unfinished_upscale(final, overwrite=opts.overwrite)
    stale = earlier_sidecars(final, overwrite=opts.overwrite)
    info = inspect_raster(lr)
    grid = info.grid
    area = Window(0, 0, grid.width, grid.height)
    report = progress or (lambda done, total: None)
    with Scene.open(lr, scale=1, hr=grid, area=area, bands=opts.bands, ref=ref, ref_bands=opts.ref_bands,
                    coregister=opts.coregister, local_harmonization=False, least_shift=LEAST_SHIFT,
                    cloud_masks=opts.cloud_masks) as scene:
        found = DetectedRows(scene, grid, report, opts.refine,
                             nothing_known=f"{ref}: the reference has no data where the scene has; nothing to compare")
        meta = _meta(_tags(lr, ref, found.coregistration, opts.refine, scene.sensor_masks())
                     | {"GEOSR_OPTIONS": recorded_options(opts.to_json(), opts.paths)})
        free = still_free(final, overwrite=opts.overwrite)  # (another run may have written it meanwhile)

        if work is not None:
            with writing(final, journal=False):
                write_row_bands(final, found.fine_grid, meta, found, work, before_rename=free)
        else:
            folder = work_dir_for(final)
            with JobLock(folder / LOCK_NAME, output=final):
                clear_work_dir(folder, keep=(LOCK_NAME,))
                remove_partials(final)
                try:
                    with writing(final, journal=False):  # a full disk: one sentence, exit 1
                        write_row_bands(final, found.fine_grid, meta, found, folder, before_rename=free)
                finally:
                    shutil.rmtree(folder, ignore_errors=True)
        remove_sidecars(stale)
        warnings = scene.reference_warnings(coarser_only=True) + scene.mask_warnings
    result = found.result(final, time.perf_counter() - t0, meta.tags)
    return replace(result, warnings=result.warnings + warnings)


def detect_changes_in_memory(
    lr: str, *, ref: str, bands: str | None = None, ref_bands: str | None = None, coregister: bool = True,
    area: Window | None = None, refine: int = REFINE, cloud_masks: bool = True,
) -> tuple[MemoryFile, ChangeDetectionResult]:
    """The same detection as :func:`detect_changes`, written to an in-memory GeoTIFF (GDAL's /vsimem/, the grid
    ``refine`` times finer than the LR's, in uint8) for ``upscale --cd auto``; the caller closes the returned
    MemoryFile. With ``area`` (an LR window, e.g. an --aoi's) only that part of the LR is compared, with
    AREA_MARGIN LR pixels around it."""
    t0 = time.perf_counter()
    info = inspect_raster(lr)
    aoi, area = area, compared_area(area, info.grid.width, info.grid.height)
    grid = info.grid.subgrid(area)
    # (the reference's shift measured around the area as the upscale measures it: the changes found where it is put)
    with Scene.open(lr, scale=1, hr=grid, area=area, bands=bands, ref=ref, ref_bands=ref_bands,
                    coregister=coregister, local_harmonization=False, least_shift=LEAST_SHIFT,
                    cloud_masks=cloud_masks, coregistration_area=aoi) as scene:
        inside = None if aoi is None else Window(int(aoi.col_off) - int(area.col_off),
                                                 int(aoi.row_off) - int(area.row_off), int(aoi.width), int(aoi.height))
        found = DetectedRows(scene, grid, lambda done, total: None, refine, counted=inside)
        fine = found.fine_grid
        meta = _meta(_tags(lr, ref, found.coregistration, refine, scene.sensor_masks()))
        mem = MemoryFile()
        profile = dict(driver="GTiff", width=fine.width, height=fine.height, count=1, dtype="uint8", crs=fine.crs,
                       transform=fine.transform, nodata=UNKNOWN, tiled=True, blockxsize=256, blockysize=256,
                       compress="deflate")
        try:
            with mem.open(**profile) as dst:
                for row, sub, band in found:  # band after band: a refined scene need not fit in memory at once
                    dst.write(band, window=Window(0, row, sub.width, sub.height))
                dst.update_tags(**meta.tags)
        except BaseException:  # the detection reads as it writes: a failed read must not leave the file open
            mem.close()
            raise
    return mem, found.result(Path(mem.name), time.perf_counter() - t0, meta.tags)


def compared_area(area: Window | None, width: int, height: int) -> Window:
    """The LR window :func:`detect_changes_in_memory` compares in an LR ``width`` x ``height``: ``area`` with
    AREA_MARGIN pixels around it, within the LR (None: the whole LR)."""
    full = Window(0, 0, width, height)
    if area is None:
        return full
    return Window(int(area.col_off) - AREA_MARGIN, int(area.row_off) - AREA_MARGIN,
                  int(area.width) + 2 * AREA_MARGIN, int(area.height) + 2 * AREA_MARGIN).intersection(full)


class DetectedRows:
    """The detection in bands of rows, (first row, band grid, (1, h, w) uint8) each computed when asked for,
    with the running counts :meth:`result` reports."""

    def __init__(self, scene: Scene, grid: Grid, report: Progress, factor: int = 1, *,
                 nothing_known: str | None = None, counted: Window | None = None) -> None:
        """``nothing_known``: the message of the NoOverlapError raised after the last band when no pixel could be
        compared (the raster being written is then dropped); None: such a raster is whole, all unknown.
        ``counted``: the LR window of ``grid`` whose pixels the shares count (an --aoi's, without the margin
        compared around it: the share was of both, 53.6% against the output's 59.2%; found in review); None: all."""
        self.scene, self.grid, self.report, self.factor = scene, grid, report, factor
        k = factor
        self.counted = None if counted is None else (
            int(counted.row_off) * k, int(counted.row_off + counted.height) * k,
            int(counted.col_off) * k, int(counted.col_off + counted.width) * k)
        self.nothing_known = nothing_known
        self.fine_grid = grid.refined(factor) if factor > 1 else grid
        self.coregistration = scene.coregistration.to_dict() if scene.coregistration else None
        self.changed = self.valid = self.unknown = self.masked = 0
        self.compared = 0  # fine pixels compared over the whole grid (the thresholds' sample), no cloud flagged
        self.thresholds: list[float] = []
        self.probability_thresholds: list[float | None] = []
        self.notes: list[str] = []  # the detector's, once each (a uniform LR)
        self.covered, self.seen = 0, np.zeros(len(scene.bands), bool)

    def __iter__(self) -> Iterator[tuple[int, Grid, np.ndarray]]:
        """(first row, band grid, (1, h, w) uint8) on :attr:`fine_grid`, in bands of about FINE_PIXELS pixels."""
        step = band_rows(self.grid.width)
        rows = list(range(0, self.grid.height, step))
        k = self.factor
        fine_rows = max(1, FINE_PIXELS // max(1, self.grid.width * k * k))
        for i, r0 in enumerate(rows):
            self.report(i, len(rows))
            h = min(step, self.grid.height - r0)
            found = _compare_rows(self.scene, r0, h, self.grid.width)
            flags = found.flags
            if flags is not None:
                flags = flags & found.valid
            self.thresholds.extend(found.thresholds)
            self.probability_thresholds.extend(found.probability_thresholds)
            self.notes.extend(n for n in found.notes if n not in self.notes)
            self.covered += found.covered
            self.seen |= found.seen
            # unknown pixels take their nearest known neighbour's evidence once for the whole band, so that the
            # slices refined below agree where they meet
            evidence = nearest_filled(found.evidence, found.valid)
            for f0 in range(0, h, fine_rows):
                fh = min(fine_rows, h - f0)
                changed, valid = _refine_rows(evidence, found.valid, HALO + f0, fh, self.grid.width, k)
                row = (r0 + f0) * k
                counted = self._counted(row, fh * k)
                self.compared += int(valid.sum())  # (the whole grid compared, an --aoi's margin included)
                if flags is not None:  # the products' cloud masks, on the LR pixels they flag
                    cloud = flags[HALO + f0:HALO + f0 + fh, HALO:HALO + self.grid.width]
                    cloud = np.repeat(np.repeat(cloud, k, axis=0), k, axis=1)
                    changed |= cloud
                    self.masked += int((cloud & valid)[counted].sum())
                    self.compared -= int((cloud & valid).sum())
                self.changed += int((changed & valid)[counted].sum())
                self.valid += int(valid[counted].sum())
                self.unknown += int((~valid)[counted].sum())
                out = np.where(valid, changed.astype(np.uint8), UNKNOWN).astype(np.uint8)
                yield row, self.fine_grid.subgrid(Window(0, row, self.fine_grid.width, fh * k)), out[None]
        if self.valid == 0 and self.nothing_known:
            raise NoOverlapError(self._empty_bands() or self.nothing_known)
        self.report(len(rows), len(rows))

    def _counted(self, row: int, height: int) -> tuple[slice, slice]:
        """The part of the fine rows ``row`` to ``row + height`` (all columns) the shares count."""
        if self.counted is None:
            return slice(None), slice(None)
        r0, r1, c0, c1 = self.counted
        return slice(max(0, r0 - row), max(0, min(height, r1 - row))), slice(c0, c1)

    def result(self, path: Path, seconds: float, tags: dict[str, str]) -> ChangeDetectionResult:
        if self.counted is None:
            total = max(1, self.fine_grid.width * self.fine_grid.height)
        else:
            r0, r1, c0, c1 = self.counted
            total = max(1, (r1 - r0) * (c1 - c0))
        masks = self.scene.sensor_masks()
        return ChangeDetectionResult(
            path=path, grid=self.fine_grid, changed_share=self.changed / max(1, self.valid),
            unknown_share=self.unknown / total, thresholds=self.thresholds, coregistration=self.coregistration,
            seconds=seconds, tags=tags, probability_thresholds=self.probability_thresholds, warnings=self.warnings(),
            sensor_mask={"masks": masks, "share": round(self.masked / max(1, self.valid), 6)} if masks else None)

    def warnings(self) -> list[str]:
        """The detector's notes, and a word on an area too small to judge (:data:`MIN_COMPARED`)."""
        # the LR pixels the thresholds were fitted on, no cloud mask flagged: over the whole grid, an --aoi's margin
        # included (its own pixels alone said "only 9 LR pixels could be compared" of 2,500; found in review)
        compared = self.compared // (self.factor * self.factor)
        small = [f"only {compared} LR pixels could be compared (fewer than {MIN_COMPARED}, 32 x 32): too few to "
                 "tell change from the dates' differences of light, so the detection is unreliable"
                 ] if 0 < compared < MIN_COMPARED and not self.notes else []
        if compared == 0 and self.masked:
            small = ["the inputs' cloud masks flag every pixel both images cover: all are taken as changed, none "
                     "could be compared"]
        if self.valid == 0 and self.unknown:  # (detect-changes refuses this: nothing_known)
            small = [(self._empty_bands() or "the reference has no data where the scene has") + ": nothing could be "
                     "compared, and the reference adds nothing to the output"]
        return self.notes + small

    def _empty_bands(self) -> str | None:
        """Why nothing was compared when the images overlap: an LR band without data where they do (a pixel is
        compared only with data in every band; found in review: the reference was blamed)."""
        empty = [b for b, seen in zip(self.scene.bands, self.seen) if not seen]
        if not self.covered or not empty:
            return None
        kept = [b for b in self.scene.bands if b not in empty]
        which = f"band {empty[0]} has" if len(empty) == 1 else f"bands {','.join(map(str, empty))} have"
        leave = f"; leave {'it' if len(empty) == 1 else 'them'} out (`bands` {','.join(map(str, kept))}, and the " \
            "reference's matching bands with `ref_bands`)" if kept else ""
        lr = without_credentials(self.scene.lr_info.path)
        return f"{lr}: {which} no data where the reference has, and a pixel is compared only with data in every " \
               f"band{leave}"


def _meta(tags: dict[str, str]) -> OutputMeta:
    return OutputMeta(dtype="uint8", count=1, nodata=UNKNOWN, descriptions=("change",), tags=tags,
                      # (a GeoTIFF colour table holds no alpha: 0 asked for "transparent" and came out opaque black)
                      colormap={0: (0, 0, 0, 255), 1: (230, 30, 30, 255)}, overview_resampling="mode",
                      categories={c.value: c.name for c in TABLE.classes})


def band_rows(width: int) -> int:
    """LR rows compared at a time in a scene ``width`` LR pixels wide."""
    return max(MIN_ROWS, min(MAX_ROWS, BAND_PIXELS // max(1, width)))


# Bytes the detection holds at its peak: per LR pixel of a part compared with its context (BAND_PIXELS' note), per
# LR pixel of a band of rows with its context (its stitched evidence, validity, flags and nearest-filled copy) and per
# fine pixel of a slice refined (FINE_PIXELS: the interpolated evidence and its masks); measured on a 40000 x 400 LR
# (three parts, 2.2 GB at refine 1, 2.4 GB at 4: estimated 2.2, 2.3) and a 6000 x 400 one (one part, 1.1 GB: 1.2, 1.4)
PART_BYTES, BAND_BYTES, FINE_BYTES = 450, 40, 12


def detection_memory(width: int, height: int, refine: int = 1) -> int:
    """Bytes the detection of an LR area ``width`` x ``height`` drawn ``refine`` times finer needs at its peak, beyond
    what the process holds before it (an estimate for upscale's plan, :func:`geosr.pipeline.job.plan_upscale`)."""
    rows = min(band_rows(width), height)
    part = max(w for _, w in column_parts(width, rows))
    fine = min(FINE_PIXELS, rows * width * refine * refine)
    return (PART_BYTES * (rows + 2 * HALO) * (part + 2 * HALO) + BAND_BYTES * (rows + 2 * HALO) * (width + 2 * HALO)
            + FINE_BYTES * fine)


def column_parts(width: int, rows: int) -> list[tuple[int, int]]:
    """(first column, width) of the parts a band of ``rows`` LR rows of a scene ``width`` wide is compared in: the
    whole band, unless it holds more than BAND_PIXELS pixels (a scene wider than BAND_PIXELS / MIN_ROWS), then equal
    parts of at most BAND_PIXELS, so that the comparison's memory does not grow with the scene's width (a
    60000 x 600 strip compared in one part of 256 rows took 6.5 GB)."""
    n = max(1, math.ceil(width * rows / BAND_PIXELS))
    step = math.ceil(width / n)
    return [(c, min(step, width - c)) for c in range(0, width, step)]


@dataclass
class _ComparedBand:
    """A band of rows compared part by part (:func:`column_parts`), with HALO pixels of context on every side:
    the evidence (float32, over each part's own thresholds) and validity, where the products' cloud masks flag
    pixels (None without any), and each part's thresholds and notes."""

    evidence: np.ndarray
    valid: np.ndarray
    flags: np.ndarray | None
    thresholds: list[float]
    probability_thresholds: list[float | None]
    notes: list[str]
    covered: int  # pixels both images cover (with the context)
    seen: np.ndarray  # (C,) bool: which LR bands hold data there


def _compare_rows(scene: Scene, r0: int, h: int, width: int) -> _ComparedBand:
    """The detection for LR rows [r0, r0 + h), computed with HALO pixels of context (kept: :func:`_refine_rows`
    cuts it back), in parts of columns that each fit their own thresholds and read HALO pixels of context, so
    that their evidence runs on across the parts' edges."""
    parts = column_parts(width, h)
    compared = [_compare_part(scene, r0, h, c0, w) for c0, w in parts]
    found = [(one, flags) for one, flags, _, _ in compared]
    covered = sum(n for _, _, n, _ in compared)
    seen = np.logical_or.reduce([s for _, _, _, s in compared])
    if len(found) == 1:
        (one, flags), = found
        evidence, valid = one.evidence, one.valid
    else:
        shape = (h + 2 * HALO, width + 2 * HALO)
        evidence, valid = np.zeros(shape, np.float32), np.zeros(shape, bool)
        flags = None if all(f is None for _, f in found) else np.zeros(shape, bool)
        for i, ((c0, w), (one, part_flags)) in enumerate(zip(parts, found)):
            # a part's array column j is the band's c0 + j: each part gives its own columns, the first and last
            # also the band's context beyond the scene's edges
            lo, hi = (0 if i == 0 else HALO), (w + 2 * HALO if i == len(parts) - 1 else HALO + w)
            dest = slice(c0 + lo, c0 + hi)
            evidence[:, dest], valid[:, dest] = one.evidence[:, lo:hi], one.valid[:, lo:hi]
            if flags is not None and part_flags is not None:
                flags[:, dest] = part_flags[:, lo:hi]
    notes = list(dict.fromkeys(one.note for one, _ in found if one.note))
    assert evidence is not None
    return _ComparedBand(evidence, valid, flags, [one.threshold for one, _ in found],
                         [one.probability_threshold for one, _ in found], notes, covered, seen)


def _compare_part(scene: Scene, r0: int, h: int, c0: int,
                  width: int) -> tuple[ChangeDetection, np.ndarray | None, int, np.ndarray]:
    """The detection for LR rows [r0, r0 + h) and columns [c0, c0 + width) with HALO pixels of context, where
    the products' own cloud masks flag pixels (None without any), how many pixels both images cover (with the
    context) and which LR bands hold data there."""
    win = PlannedWindow(index=0, row=0, col=0, col_off=c0, row_off=r0, width=width, height=h)
    stack = scene.read_stack(win, HALO)
    # in physical values, as the detector and its cue were fitted: the stack's model space stretches each band to
    # its own range, which weighs the bands differently in the cue's brightness, colour and structure measures
    # (a narrow-range Landsat scene was flagged on 33.7% of its pixels instead of 21.3%)
    lr, ref = scene.stretch.inverse(stack.lr), scene.stretch.inverse(stack.ref)
    flags = scene.lr_untrusted(win, HALO)
    # a pixel with a band missing (Landsat 7's SLC-off stripes lie apart in each band) is unknown, not compared: its
    # filled band is no observation (a stripe's pixels read as changed: 32% of a scene changed instead of 4%)
    # (one the product's own cloud mask flags stays changed, as the mask says)
    complete, has = scene.lr_complete(win, HALO)
    known = stack.lr_valid & (complete if flags is None else complete | flags)
    both = stack.lr_valid & stack.ref_valid
    seen = has[:, both].any(axis=1)  # which LR bands hold data where both images cover
    if len(scene.bands) > 1 and len(set(scene.ref_bands)) == 1:  # one panchromatic band against several
        lr, ref = pan_intensity(lr, known & stack.ref_valid, ref[0]), ref[:1]
    # the LR's ranges over the compared area's own pixels: not the edge replicated beyond the scene (chiefly the same
    # values again), nor the context read beyond an `aoi`'s area (its masks were those of before; found in review)
    rows, cols = np.arange(h + 2 * HALO) + r0 - HALO, np.arange(width + 2 * HALO) + c0 - HALO
    own = ((rows >= 0) & (rows < scene.area.height))[:, None] & ((cols >= 0) & (cols < scene.area.width))[None, :]
    return compare(lr, known, ref, stack.ref_valid, untrusted=flags, own=own), flags, int(both.sum()), seen


def _refine_rows(evidence: np.ndarray, known: np.ndarray, r0: int, h: int, width: int,
                 k: int) -> tuple[np.ndarray, np.ndarray]:
    """(changed, valid) of rows [r0, r0 + h) and columns [HALO, HALO + width) of a detection computed with HALO
    pixels of context (``evidence`` already filled where not ``known``), on the grid ``k`` times finer: refined with
    REFINE_CONTEXT LR pixels of context on every side, so that the outline runs on across bands of rows, then cut
    back."""
    c = REFINE_CONTEXT
    rows, cols = slice(r0 - c, r0 + h + c), slice(HALO - c, HALO + width + c)
    fine = interpolated(evidence[rows, cols], k)[c * k:-c * k, c * k:-c * k]
    valid = np.repeat(np.repeat(known[r0:r0 + h, HALO:HALO + width], k, axis=0), k, axis=1)
    return (fine > LEVEL) & valid, valid


def _tags(lr: str, ref: str, coreg: dict | None, factor: int = 1, masks: list[dict] | None = None) -> dict[str, str]:
    return {
        "GEOSR_CHANGE_CLASSES": json.dumps(TABLE.to_dict(), sort_keys=True),
        "GEOSR_CHANGE_DETECTION": json.dumps({"method": METHOD, "version": DETECTOR_VERSION,
                                              "lr": recorded_path(lr), "reference": recorded_path(ref),
                                              "coregistration": coreg, "refine": factor,
                                              "sensor_mask": {"masks": masks} if masks else None},
                                             sort_keys=True),
        "GEOSR_VERSION": __version__,
    }

