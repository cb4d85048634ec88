"""One scene's inputs, opened and checked once, and the per-window conditioning stacks read from them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from geosr.conditioning.change_detection import OUTLIER_MARGIN, bright_outliers, outweighs, with_margin
from geosr.conditioning.changes import BINARY, ChangeClassTable, check_mask_values, refuse_undeclared
from geosr.conditioning.coregistration import (
    BEYOND,
    LITTLE_GAIN,
    MIN_RELIABILITY,
    TIE_SIDE,
    TOO_SMALL,
    Coregistration,
    estimate_field,
    estimate_offset,
    field_transform,
    refine_offset,
    second_look,
)
from geosr.conditioning.radiometry import Stretch, decimated_read, fit_stretch, sample_windows
from geosr.conditioning.reference import (
    MIN_FIT_PIXELS,
    GridReader,
    Harmonization,
    check_overlap,
    clipped_pixels,
    fit_harmonization,
    fit_local_harmonization,
    footprint_on,
    pixel_ratio,
    placed_transform,
    read_average_without,
    source_is_finer,
    window_under,
)
from geosr.errors import BandError, ClassTableError, InputError
from geosr.io.rasters import (
    FULL_READ_LIMIT,
    RasterInfo,
    band_count,
    block_sample,
    blocks_under,
    has_valid_pixel,
    inspect_raster,
    open_raster,
    parse_bands,
    read_window,
    read_window_bands,
    reading,
    refuse_mixed_types,
    refuse_palette,
    shown_name,
)
from geosr.io.sensor_masks import SensorMask, open_mask, read_flags
from geosr.io.sources import composite, is_composite
from geosr.io.vrt import mask_vrt
from geosr.tiling.grid import Grid
from geosr.tiling.windows import PlannedWindow

COARSER = 1.5  # a reference whose pixels are this many times the LR's or more is "coarser" than it
COREG_SIDE = 512  # the reference's shift is measured on at most COREG_SIDE^2 LR pixels at full resolution
COREG_REFINE = 4  # and refined on the LR grid refined by this factor (see refine_offset)
# bytes per band and per pixel of that refined grid, and per pixel beside, at the measurement's peak (the reference
# read onto it, its validity, the bright-outlier test's brightness; calibrated on a 500 x 400 LR of 3 bands: 290 MB
# above what the process held, which the plan's estimate had left out: peak 729 MB against 539 planned; review)
COREG_BAND_BYTES, COREG_PIXEL_BYTES = 24, 16


def coregistration_memory(width: int, height: int, bands: int) -> int:
    """Bytes measuring a reference's shift over an LR area ``width`` x ``height`` of ``bands`` bands takes at its
    peak beyond what the process holds before (:meth:`Scene._coregister`; an estimate for upscale's plan)."""
    margin = 8  # (the crop's margin for the shift and the tie points: a few LR pixels)
    w, h = min(COREG_SIDE, width) + 2 * margin, min(COREG_SIDE, height) + 2 * margin
    return w * h * COREG_REFINE**2 * (COREG_BAND_BYTES * bands + COREG_PIXEL_BYTES)


UNCHECKED = "too few pixels clear of the cloud masks to check the estimated shift"
COREGISTRATION_OFF = "co-registration off"  # the reason a reference measured with `coregister` off was not moved
FIT_SIDE = 1024  # harmonization is fitted on at most FIT_SIDE^2 LR pixels (decimated, or a block sample)


@dataclass
class WindowStack:
    """The numpy conditioning stack of one window (see geosr.models.interface.ConditionBatch)."""

    lr: np.ndarray  # (C, h', w') float32 model space, invalid filled with 0
    lr_valid: np.ndarray  # (h', w') bool
    ref: np.ndarray  # (C, H, W) float32 model space, 0 where invalid
    ref_valid: np.ndarray  # (H, W) bool
    change: np.ndarray  # (H, W) int64 class index
    changed: np.ndarray  # (H, W) bool
    map: np.ndarray | None  # (H, W) int64 class index
    offset: tuple[int, int]  # global HR (row, col) of the stack's top-left
    # without a reference (a change mask) its four arrays above are read-only views of one 0 (not materialized)
    has_ref: bool = True
    has_cd: bool = True


def _nothing(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """A read-only array of zeros of ``shape`` that holds one value (an absent input: no memory, no copying)."""
    return np.broadcast_to(np.zeros((), dtype), shape)


SHARPNESS_SIDE = 512  # LR pixels a side of each full-resolution sample the scene's sharpness is measured on


@dataclass
class Scene:
    """Everything opened for one upscale job. Use as a context manager."""

    lr_info: RasterInfo
    bands: tuple[int, ...]
    area: Window  # the LR window processed (scene or AOI)
    scale: int
    hr: Grid  # output grid
    stretch: Stretch
    ref_info: RasterInfo | None = None
    ref_bands: tuple[int, ...] = ()
    harmonization: Harmonization | None = None
    ref_coverage: float = 0.0
    cd_info: RasterInfo | None = None
    cd_table: ChangeClassTable | None = None
    map_info: RasterInfo | None = None
    n_map_classes: int = 0
    map_names: tuple[str, ...] | None = None  # the map's GEOSR_MAP_CLASSES tag; None: it names no classes
    map_ratio: float = 1.0  # the side of the map's pixels over the output's
    lr_ds: rasterio.DatasetReader | None = None
    ref_ds: rasterio.DatasetReader | None = None
    ref_reader: GridReader | None = None
    cd_reader: GridReader | None = None
    cd_any: GridReader | None = None  # a mask finer than the output, read by the largest value under each pixel
    cd_whole: GridReader | None = None  # and its validity, by the smallest: 0 where any pixel under one has no data
    map_reader: GridReader | None = None
    # A class raster too large to scan whole is checked on a sample of its blocks when opened; its values
    # are then checked again in every window read (read_stack).
    cd_sampled: bool = False
    map_sampled: bool = False
    lr_mask: SensorMask | None = None  # the LR product's own cloud mask (a Sentinel-2 L2A product's SCL)
    ref_mask: SensorMask | None = None  # the reference product's
    # their rasters, opened (_mask_ds; None: a mask that flags nothing)
    _masks: dict[str, rasterio.DatasetReader | None] = field(default_factory=dict)
    mask_warnings: list[str] = field(default_factory=list)  # cloud masks an input names and that are not used
    cd_warnings: list[str] = field(default_factory=list)  # a word on the given change mask
    coregistration: Coregistration | None = None  # None: not asked for (or no reference)
    misregistration: str | None = None  # a warning: the reference visibly off and not moved back
    local_harmonization: bool = True  # gain and bias fields over the scene (False: one global fit)
    ref_transform: Affine | None = None  # the reference's geotransform once co-registered (None: its own)
    sharpness: tuple[float, ...] | None = None  # the LR's sharpness code, for models that ask (measure_sharpness)
    coregistration_area: Window | None = None  # where the reference's shift is measured around (None: the area)
    _open: list = field(default_factory=list)

    # ---- opening -------------------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        lr: str,
        *,
        scale: int,
        hr: Grid,
        area: Window,
        bands: str | None = None,
        ref: str | None = None,
        ref_bands: str | None = None,
        cd: str | None = None,
        cd_table: ChangeClassTable | None = None,
        map: str | None = None,
        coregister: bool = False,
        local_harmonization: bool = True,
        least_shift: float = 0.5,
        cloud_masks: bool = True,
        coregistration_area: Window | None = None,
    ) -> "Scene":
        """Open and check every input; ``coregister``: estimate the reference's shift from the LR and undo it,
        unless it is under ``least_shift`` pixels of ``hr`` (measured around ``coregistration_area``, an LR window,
        by default ``area``: :meth:`_coregistration_crop`); ``cloud_masks``: read the inputs' own cloud masks
        (:meth:`untrusted`)."""
        lr_info = inspect_raster(lr)
        sel = parse_bands(bands, lr_info)
        refuse_palette(lr_info, sel)
        refuse_mixed_types(lr_info, sel)
        lr_ds = open_raster(lr)
        scene = cls(lr_info=lr_info, bands=sel, area=area, scale=scale, hr=hr, stretch=Stretch((), ()), lr_ds=lr_ds,
                    local_harmonization=local_harmonization, coregistration_area=coregistration_area)
        scene._open.append(lr_ds)
        try:
            if cloud_masks:
                scene.lr_mask, scene.mask_warnings = _cloud_mask_of(lr, "LR", scene.mask_warnings)
            # over the whole scene, not the area: an area of interest is stretched as the whole run stretches it
            whole = Window(0, 0, lr_ds.width, lr_ds.height)
            scene.stretch = fit_stretch(lr_ds, sel, whole)
            if area is not None and area != whole and not has_valid_pixel(lr_ds, sel, area):
                # an all-nodata scene is refused; an area of interest in its nodata was written as an all-nodata
                # output (found in review)
                raise InputError(f"{shown_name(lr_ds.name)}: has no valid pixels in the area of interest (`aoi`): "
                                 "all nodata there; choose an area the scene covers")
            if ref is not None:
                scene._open_reference(ref, ref_bands, coregister, least_shift, cloud_masks)
            if cd is not None:
                scene._open_change(cd, cd_table)
            if map is not None:
                scene._open_map(map)
            if ref is not None:
                scene._fit_harmonization()
        except BaseException:
            scene.close()
            raise
        return scene

    def reference_warnings(self, *, coarser_only: bool = False) -> list[str]:
        """Warnings on the reference: visibly off the LR and not moved back (:attr:`misregistration`), or its
        pixels no finer than the LR's (it can add no detail the LR lacks; ``coarser_only``, for change detection,
        where a reference of the LR's own resolution is the usual case: only when they are coarser, for averaged
        onto the LR grid it is blurred, and its edges read as change)."""
        if self.ref_info is None:
            return []
        return ([self.misregistration] if self.misregistration else []) + self._resolution_warnings(coarser_only)

    def _pixel_sizes(self) -> tuple[float, float] | None:
        """The reference's pixel size and the LR's, in the LR's CRS units (the larger side of each); None when the
        reference's footprint cannot be carried into the LR's CRS."""
        assert self.ref_info is not None
        g, lr = self.ref_info.grid, self.lr_info.grid
        if g.crs == lr.crs:
            ref_px = max(g.res)
        else:
            try:  # the reference's pixel in the LR's CRS units (its footprint over its pixel count)
                left, bottom, right, top = transform_bounds(g.crs, lr.crs, *g.bounds)
            except Exception:  # noqa: BLE001
                return None
            ref_px = max((right - left) / g.width, (top - bottom) / g.height)
        return ref_px, max(abs(lr.res[0]), abs(lr.res[1]))

    def _resolution_warnings(self, coarser_only: bool) -> list[str]:
        """:meth:`reference_warnings`' word on the reference's resolution."""
        sizes_px = self._pixel_sizes()
        if sizes_px is None:  # a footprint PROJ cannot carry over: nothing to say
            return []
        ref_px, lr_px = sizes_px
        if not ref_px >= lr_px * (COARSER if coarser_only else 0.99):
            return []
        lr = self.lr_info.grid
        unit = "°" if lr.crs.is_geographic else {"metre": " m", "meter": " m"}.get(lr.crs.linear_units,
                                                                                   f" {lr.crs.linear_units}")
        sizes = f"(about {ref_px:.3g}{unit}) are {{}} the LR's ({lr_px:.3g}{unit})"
        if coarser_only:
            return [f"the reference's pixels {sizes.format('coarser than')}: it is compared blurred, so its edges "
                    "may read as change"]
        return [f"the reference's pixels {sizes.format('no finer than')}: it can add no detail the LR lacks (give a "
                "reference of a finer resolution, or leave `ref` out)"]

    def _open_reference(self, path: str, ref_bands: str | None, coregister: bool, least_shift: float = 0.5,
                        cloud_masks: bool = True) -> None:
        info = inspect_raster(path)
        if cloud_masks:  # before co-registration, which leaves out what the masks flag
            self.ref_mask, self.mask_warnings = _cloud_mask_of(path, "reference", self.mask_warnings)
        sel = parse_bands(ref_bands, info)
        refuse_palette(info, sel, "the reference ")  # (bands of several types read through a VRT: no refusal)
        if not ref_bands and len(sel) == 1 and len(self.bands) > 1:  # a panchromatic reference sharpens every band
            sel = sel * len(self.bands)
        if len(sel) != len(self.bands):
            picked = "" if ref_bands or len(sel) == info.count else \
                f" (its bands {','.join(map(str, sel))}, found by name or colour as red, green, blue)"
            raise BandError(
                f"{path}: the reference gives {band_count(len(sel))}{picked} but the LR gives "
                f"{band_count(len(self.bands))} "
                "(choose matching bands with `ref_bands` / `bands`)"
            )
        ds = open_raster(path)
        self._open.append(ds)
        self.ref_coverage = check_overlap(ds, self.hr, "reference", self._place)
        self.ref_info, self.ref_bands = info, sel
        if coregister:
            self.coregistration = self._coregister(ds, sel)
            self.misregistration = _beyond(self.coregistration)
            if self.coregistration.applied and self._largest_offset(self.coregistration) * self.scale < least_shift:
                # under half an output pixel (the default): resampling the reference would blur more than moving it
                # gains (measured on the bundled sample: 0.04 LR px moved back, reference-paste 32.71 against 32.74)
                under = "half an output pixel" if least_shift == 0.5 else f"{least_shift / self.scale:g} LR px"
                self.coregistration = replace(self.coregistration, applied=False, reason=f"under {under}: left where "
                                                                                        "it is")
            if self.coregistration.applied:  # from where the reference meets the scene (across 180 degrees too)
                placed = placed_transform(ds, self.lr_info.grid) or ds.transform
                self.ref_transform = field_transform(ds.crs, placed, self.lr_info.grid, self.coregistration)
        else:  # measured all the same: a reference visibly off is worth a word, and its offset a record (the
            # summary, --json and the output's tags said nothing of it; found in review)
            probe = self._coregister(ds, sel)
            said = f"{COREGISTRATION_OFF}; {probe.reason}" if probe.reason else COREGISTRATION_OFF  # (a poor match's
            self.coregistration = replace(probe, applied=False, reason=said)  # offset told as one; review)
            self.misregistration = _beyond(probe)
            if probe.applied and self._largest_offset(probe) * self.scale >= least_shift:
                dx, dy = (round(round(v, 3), 2) + 0.0 for v in probe.offset_lr_px)  # as recorded (3 places); no -0.00
                self.misregistration = (
                    f"co-registration is off, yet the reference seems to lie {dx:+.2f}, {dy:+.2f} LR px off the LR "
                    f"(columns, rows; reliability {probe.reliability:.2f}): {MISPLACED}; leave `coregister` on to "
                    "move it back")
        self.ref_reader = GridReader(ds, self.hr, sel, src_transform=self.ref_transform)
        self._open.append(self.ref_reader)
        self.ref_ds = ds

    def _coregister(self, ds: rasterio.DatasetReader, bands: tuple[int, ...]) -> Coregistration:
        """The reference's offset from the LR, measured on (at most) COREG_SIDE^2 LR pixels at full LR resolution
        in the middle of where the reference covers the area, the reference averaged onto them. Pixels the inputs'
        own cloud masks flag are left out (each image's where it lies in that image: the reference's before it is
        moved)."""
        crop = self._coregistration_crop(ds)
        w, h = int(crop.width), int(crop.height)
        lr, lr_valid = read_window(self.lr_ds, self.bands, crop)
        grid = self.lr_info.grid.subgrid(crop)
        # the LR's own flags: the reference's are gaps of the reference, moving with it (:meth:`_reference_on`); in
        # the LR's too, their pattern was in both images and matched best at no shift
        clouds = None if self.lr_mask is None else read_flags(self.lr_mask, self._mask_ds("lr"), grid.crs,
                                                              grid.transform, w, h)
        if clouds is not None:
            lr_valid = lr_valid & ~clouds
        # pixels far brighter than the rest (a cloud no mask flags; white roofs and tanks too) are left out: a
        # cloud's edges outweighed the ground's detail (a disc over 0.6% of a Landsat LR made a right 2 LR px shift
        # untrusted, reliability 0.18 against 0.58; found in review). Not as a mask's flags: they may be ground
        lr_valid = lr_valid & ~bright_outliers(lr, lr_valid)
        ref, ref_valid, hidden = self._reference_on(ds, grid, bands)
        ref_valid = ref_valid & ~bright_outliers(ref, ref_valid)
        first = estimate_offset(lr, lr_valid, ref, ref_valid)
        flagged = bool(clouds is not None and clouds.any()) or hidden  # (a cloud smaller than an LR pixel too)
        if first.reason == TOO_SMALL and flagged:
            first = replace(first, reason=f"{TOO_SMALL} once the pixels the cloud masks flag are left out")
        origin = (int(crop.col_off), int(crop.row_off))
        reach = max(map(abs, first.offset_lr_px))
        doubted = first.reason == LITTLE_GAIN  # judged again by the forward model below
        sizes_px = self._pixel_sizes()
        if sizes_px is not None and sizes_px[0] >= COARSER * sizes_px[1]:
            # a coarser reference read onto a finer grid is blocks, no image of what the LR sensor saw: the forward
            # model's moves smoothed them and drifted off (an exactly placed reference 2x coarser read +0.23, -0.25
            # LR px and was moved so, 3x +0.35, -0.31; found in review): phase correlation's estimate as it is
            return estimate_field(lr, lr_valid, ref, ref_valid, origin, first)
        if not first.applied and not doubted and (min(w, h) < 2 * TIE_SIDE or reach > TIE_SIDE / 8):
            return estimate_field(lr, lr_valid, ref, ref_valid, origin, first)  # no field to look for either
        coarse, coarse_valid = ref, ref_valid
        # (a margin for the tie points too, whose offsets may reach further than the global one)
        k, margin = COREG_REFINE, int(np.ceil(reach)) + 2
        side = (w + 2 * margin) * k, (h + 2 * margin) * k  # the LR crop and a margin around it, k times finer
        fine = Grid(grid.crs, grid.transform @ Affine.translation(-margin, -margin) @ Affine.scale(1 / k), *side)
        ref, ref_valid, _ = self._reference_on(ds, fine, bands)
        ref_valid = ref_valid & ~bright_outliers(ref, ref_valid)  # (as on the LR grid: gaps moving with it)
        compared = int((lr_valid & coarse_valid).sum()) if doubted else 0
        first = second_look(lr, lr_valid, ref, ref_valid, k, margin, first, compared)
        if not first.applied and (min(w, h) < 2 * TIE_SIDE or reach > TIE_SIDE / 8):
            return estimate_field(lr, lr_valid, coarse, coarse_valid, origin, first)
        refined = refine_offset(lr, lr_valid, ref, ref_valid, k, margin, first)
        if refined is first and first.applied and flagged:
            # phase correlation's estimate through a cloud mask's gaps, which the forward model could not check (too
            # few pixels clear under every move, or it matched worse): on 50 LR px with small clouds flagged over a
            # sixth of the reference it was 0.28 LR px off, at reliability 0.31
            refined = replace(first, applied=False, reason=UNCHECKED)
        # tie points over the compared area: an affine field replaces the shift where the offset varies
        return estimate_field(lr, lr_valid, coarse, coarse_valid, origin, refined, (ref, ref_valid, k, margin))

    def _reference_on(self, ds: rasterio.DatasetReader, grid: Grid,
                      bands: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, bool]:
        """The reference averaged onto ``grid`` (not moved), where it is valid, and whether its own cloud mask flags
        any of its pixels there. Those flags are gaps of the reference, which move with it: left out of the LR's
        pixels only, a flagged cloud moved onto the compared pixels with every trial shift (0.1-0.2 LR px of bias).
        They are left out at the reference's own resolution before the average (:func:`read_average_without`), and
        a grid pixel they cover most of is out."""
        if self.ref_mask is None:
            reader = GridReader(ds, grid, bands, Resampling.average)
            try:
                return (*reader.read(Window(0, 0, grid.width, grid.height)), False)
            finally:
                reader.close()
        mask, mask_ds = self.ref_mask, self._mask_ds("ref")
        seen = []

        def hidden(transform: Affine, w: int, h: int) -> np.ndarray:
            flags = read_flags(mask, mask_ds, ds.crs, transform, w, h)
            seen.append(bool(flags.any()))
            return flags

        ref, ref_valid = read_average_without(ds, grid, bands, hidden)
        own = read_flags(mask, mask_ds, grid.crs, grid.transform, grid.width, grid.height)
        return ref, ref_valid & ~own, any(seen)

    def _coregistration_crop(self, ds: rasterio.DatasetReader) -> Window:
        """At most COREG_SIDE^2 LR pixels of the LR around the area (:attr:`coregistration_area`), centred where the
        reference's footprint meets the area (whose centre may lie outside a reference covering part of the scene).
        Beyond a small area (an --aoi) where the LR goes on: a shift is not measured on a few pixels, and the
        change detection of `cd auto`, comparing the area and a margin, measures it on the same crop."""
        a = self.coregistration_area if self.coregistration_area is not None else self.area
        c0, r0, c1, r1 = int(a.col_off), int(a.row_off), int(a.col_off + a.width), int(a.row_off + a.height)
        width, height = self.lr_info.grid.width, self.lr_info.grid.height
        w, h = min(COREG_SIDE, width), min(COREG_SIDE, height)
        fc0, fr0, fc1, fr1 = footprint_on(ds, self.lr_info.grid)
        ic0, ir0, ic1, ir1 = max(c0, fc0), max(r0, fr0), min(c1, fc1), min(r1, fr1)
        cx, cy = ((ic0 + ic1) / 2, (ir0 + ir1) / 2) if ic1 > ic0 and ir1 > ir0 else ((c0 + c1) / 2, (r0 + r1) / 2)
        # (floor: the area's centre as before; an area of COREG_SIDE or more: the crop within it)
        col = min(max(0 if c1 - c0 < w else c0, int(np.floor(cx - w / 2))), (width if c1 - c0 < w else c1) - w)
        row = min(max(0 if r1 - r0 < h else r0, int(np.floor(cy - h / 2))), (height if r1 - r0 < h else r1) - h)
        return Window(col, row, w, h)

    def _largest_offset(self, co: Coregistration) -> float:
        """The largest offset component (LR pixels) over the area's corners."""
        a = self.area
        cols = np.array([a.col_off, a.col_off + a.width] * 2, float)
        rows = np.array([a.row_off] * 2 + [a.row_off + a.height] * 2, float)
        dx, dy = co.offset_at(cols, rows)
        return float(max(np.abs(dx).max(), np.abs(dy).max()))

    def _open_classes(self, path: str, what: str) -> tuple[RasterInfo, rasterio.DatasetReader]:
        """Open a class raster (a change mask, a map): whole class values, overlapping the output grid."""
        info = inspect_raster(path)
        if not np.issubdtype(np.dtype(info.dtype), np.integer):
            raise ClassTableError(f"{path}: a {what} must hold whole class values, not {info.dtype}")
        ds = open_raster(path)
        self._open.append(ds)
        check_overlap(ds, self.hr, what, self._place)
        return info, ds

    @property
    def _place(self) -> str:
        """What the output grid covers, as messages name it: the scene, or the area of interest within it."""
        whole = Window(0, 0, self.lr_info.grid.width, self.lr_info.grid.height)
        return "the scene" if self.area == whole else "the area of interest (`aoi`) within the scene"

    def _open_change(self, path: str, table: ChangeClassTable | None) -> None:
        info, ds = self._open_classes(path, "change mask")
        if ds.count != 1:  # which band holds the classes is not for geosr to guess
            raise ClassTableError(f"{path}: a change mask has one band of classes, not {ds.count}; extract the "
                                  "band that holds them (gdal_translate -b N)")
        self.cd_table = table or BINARY
        _refuse_other_table(path, ds.tags().get("GEOSR_CHANGE_CLASSES"), self.cd_table)
        # a changed class read as no data is treated alike (the model's own pixels), as geosr's own masks' 255 is:
        # only an unchanged one loses something (GIS tools often set nodata 0 on a mask whose 0 is "unchanged")
        hidden = next((c for c in self.cd_table.classes
                       if ds.nodata is not None and c.value == ds.nodata and not c.changed), None)
        if hidden is not None:
            self.cd_warnings = [f"{path}: its nodata value {hidden.value} is the class {hidden.name!r} of the change "
                                "table, so those pixels are read as no data (unknown: the model's own, no reference "
                                "detail); unset the mask's nodata value (gdal_edit.py -unsetnodata) if they are "
                                f"{hidden.name!r}"]
        self.cd_sampled = not check_mask_values(ds, self.cd_table)
        self.cd_info = info
        self.cd_reader = GridReader(ds, self.hr, (1,), _class_resampling(ds, self.hr))
        self._open.append(self.cd_reader)
        if source_is_finer(ds, self.hr):
            # an output pixel over mask pixels of which some have no data: unknown, as where all have none (GDAL's
            # warps skip no data: 1 unchanged pixel among 15 without data read as unchanged; found in review)
            flags = ds.mask_flag_enums[0]
            if ds.nodata is not None or rasterio.enums.MaskFlags.all_valid not in flags:
                validity = rasterio.open(mask_vrt(ds))
                self._open.append(validity)
                self.cd_whole = GridReader(validity, self.hr, (1,), Resampling.min)
                self._open.append(self.cd_whole)
            # the mode of an output pixel's mask pixels lost isolated changes and thin lines, whose stale reference
            # was pasted (found in review): where every changed value is above every unchanged one (the built-in
            # tables: 0 unchanged), the largest value under a pixel says whether any of them changed (GDAL's max,
            # at the cost of the mode's read)
            if self._changed_above_unchanged():
                self.cd_any = GridReader(ds, self.hr, (1,), Resampling.max)
                self._open.append(self.cd_any)
            else:
                self.cd_warnings.append(f"{path}: is finer than the output and its table has unchanged classes "
                                        "above changed ones, so each output pixel takes its mask pixels' most common "
                                        "class: a change smaller than an output pixel may be lost")

    def _changed_above_unchanged(self) -> bool:
        """Whether every changed class of the change table has a value above every unchanged one (the built-in
        tables: 0 unchanged), so that the largest mask value under a coarser pixel says whether any part of it
        changed."""
        changed = [c.value for c in self.cd_table.classes if c.changed]
        unchanged = [c.value for c in self.cd_table.classes if not c.changed]
        return bool(changed) and (not unchanged or max(unchanged) < min(changed))

    def _open_map(self, path: str) -> None:
        info, ds = self._open_classes(path, "map")
        rendered = ds.tags().get("GEOSR_MAP_STYLE", "classes") != "classes"
        if ds.count != 1 or rendered:
            what = "is a rendered (RGB) map" if rendered else f"has {ds.count} bands, not one band of class ids"
            raise ClassTableError(
                f"{path}: {what}; `map` needs a class raster (geosr rasterize-osm --style classes)"
            )
        names = ds.tags().get("GEOSR_MAP_CLASSES")
        if names:
            try:
                listed = json.loads(names)
            except ValueError:
                listed = None
            if not isinstance(listed, list) or not listed or not all(isinstance(n, str) for n in listed):
                raise ClassTableError(f"{path}: its tag GEOSR_MAP_CLASSES is not a JSON list of class names "
                                      "(geosr rasterize-osm writes one; remove or mend the tag)")
            self.n_map_classes = len(listed)
            self.map_names = tuple(listed)
        # its values' range under the scene (a larger map's values beyond it are none of the run's): over every block,
        # or a bounded sample of blocks of a huge area (then checked again as each window is read)
        under = window_under(ds, self.hr)
        self.map_sampled = float(under.width) * float(under.height) > FULL_READ_LIMIT
        blocks = block_sample(ds, under) if self.map_sampled else blocks_under(ds, under)
        low, top = 0, 0
        with reading(ds.name):  # (its nodata is no class: a reprojected map's fill 255 was "class 255")
            for w in blocks:  # (one block at a time: all of them held at once doubled a large map's memory)
                r = ds.read(1, window=w, masked=True)
                if r.count():
                    low, top = min(low, int(r.min())), max(top, int(r.max()))
        if low < 0:  # (a map naming no classes read its -1, an undeclared nodata, as class 0; found in review)
            raise ClassTableError(self._map_value_refusal(path, low))
        if self.map_names is None:  # the largest class value
            self.n_map_classes = top + 1
        elif top >= self.n_map_classes:  # (refused only as its window was reached, after minutes of
            n = self.n_map_classes  # work, and not by a dry run; found in review)
            raise ClassTableError(f"{path}: holds value {top}, not one of the {n} classes its "
                                  f"GEOSR_MAP_CLASSES tag names (0 to {n - 1}); mend the map or its tag")
        self.map_info = info
        self.map_ratio = pixel_ratio(ds, self.hr)
        self.map_reader = GridReader(ds, self.hr, (1,), _class_resampling(ds, self.hr))
        self._open.append(self.map_reader)

    def _map_value_refusal(self, path: str, value: int) -> str:
        """Why a map value that is none of its classes is refused: beyond those its tag names, or below 0."""
        if self.map_names is not None:
            n = self.n_map_classes
            return (f"{path}: holds value {value}, not one of the {n} classes its GEOSR_MAP_CLASSES tag names (0 to "
                    f"{n - 1}); mend the map or its tag")
        return (f"{path}: holds value {value}, and a map's classes are 0 and up; mend the map, or declare it its "
                "nodata value")

    def _fit_harmonization(self) -> None:
        """Reference -> LR per-band linear fit on the LR grid (average of the reference), unchanged pixels.

        Fitted on the LR area decimated to at most FIT_SIDE pixels a side or, when that read would be
        too large (see :func:`geosr.conditioning.radiometry.sample_windows`), on a block sample of it.
        """
        lr_grid = self.lr_info.grid.subgrid(self.area)
        windows = sample_windows(self.lr_ds, self.area, FIT_SIDE)
        if windows is None:
            whole = Window(0, 0, lr_grid.width, lr_grid.height)
            lr, lr_valid = decimated_read(self.lr_ds, self.bands, self.area, side=FIT_SIDE)
            ref, usable = self._harmonization_reference(lr_grid, [whole], tuple(lr_valid.shape))
        else:
            parts = [read_window(self.lr_ds, self.bands, w) for w in windows]
            lr = np.concatenate([d.reshape(len(self.bands), 1, -1) for d, _ in parts], axis=2)
            lr_valid = np.concatenate([v.reshape(1, -1) for _, v in parts], axis=1)
            local = [Window(w.col_off - self.area.col_off, w.row_off - self.area.row_off, w.width, w.height)
                     for w in windows]
            ref, usable = self._harmonization_reference(lr_grid, local, None)
        # pixels far brighter than the rest of either image (a cloud no mask flags: :func:`outweighs` says when) tell
        # nothing of how the dates' colours relate, and weigh most in a fit of moments (their margin on a decimated
        # read only: a block sample's pixels are no image)
        margin = OUTLIER_MARGIN if windows is None else 0
        cores = bright_outliers(lr, lr_valid, 0), bright_outliers(ref, usable, 0)
        bright = with_margin(cores[0], lr_valid, margin) | with_margin(cores[1], usable, margin)
        if outweighs(cores[0] | cores[1], bright, usable & lr_valid, MIN_FIT_PIXELS):  # (as change detection does)
            usable = usable & ~bright
        if windows is None and self.local_harmonization:  # a decimated read of the whole area: fields fit
            self.harmonization = fit_local_harmonization(lr, lr_valid, ref, usable,
                                                         decimation=float(self.area.height) / lr.shape[-2])
        else:
            self.harmonization = fit_harmonization(lr, lr_valid, ref, usable)

    def _harmonization_reference(
        self, lr_grid: Grid, windows: list[Window], out_shape: tuple[int, int] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The reference on the LR grid (average) in ``windows`` of it and where it is usable (valid, unchanged by
        the change mask, clear by the inputs' own cloud masks, no value clipped at its type's ends:
        :func:`~geosr.conditioning.reference.clipped_pixels`); one window is returned as is, several flattened and
        joined."""
        ref_lr = GridReader(self.ref_ds, lr_grid, self.ref_bands, Resampling.average, src_transform=self.ref_transform)
        try:
            refs = [ref_lr.read(w, out_shape=out_shape) for w in windows]
        finally:
            ref_lr.close()
        usables = [v for _, v in refs]
        if self.cd_info is not None:
            # an LR pixel partly changed is left out of the fit, not only one mostly changed (the mode's): its
            # reference average mixes the two dates (a changed quarter of each of half the LR pixels drew a fitted
            # gain 2 to 1.26, found in review)
            cd_lr = GridReader(self.cd_reader.ds, lr_grid, (1,),
                               Resampling.max if self._changed_above_unchanged() else Resampling.mode)
            try:
                cds = [cd_lr.read(w, out_shape=out_shape) for w in windows]
            finally:
                cd_lr.close()
            for i, (raw, cd_valid) in enumerate(cds):
                _, changed = self.cd_table.lookup(np.rint(raw[0]))
                usables[i] = usables[i] & cd_valid & ~changed
        if self.has_cloud_masks:  # clouds tell nothing of how the two dates' colours relate
            for i, w in enumerate(windows):
                h, wd = usables[i].shape
                t = lr_grid.transform @ Affine.translation(w.col_off, w.row_off) @ Affine.scale(w.width / wd,
                                                                                              w.height / h)
                cloud = self.untrusted(lr_grid.crs, t, wd, h, nearest=out_shape is not None)  # as the LR is read
                assert cloud is not None
                usables[i] = usables[i] & ~cloud
        clipped = clipped_pixels(self.ref_ds, lr_grid, self.ref_bands, windows, out_shape, self.ref_transform)
        if clipped is not None and sum(int((u & ~c).sum()) for u, c in zip(usables, clipped)) >= MIN_FIT_PIXELS:
            # a block holding a clipped value (an overexposed photo's 255) averages to less than the ground gives:
            # fitted on, it squeezed the reference's contrast and drew a gain of 0.88 in place of 0.67 (review)
            usables = [u & ~c for u, c in zip(usables, clipped)]
        if len(windows) == 1:
            return refs[0][0], usables[0]
        ref = np.concatenate([d.reshape(len(self.ref_bands), 1, -1) for d, _ in refs], axis=2)
        return ref, np.concatenate([u.reshape(1, -1) for u in usables], axis=1)

    def hold(self, resource: Any) -> None:
        """Keep ``resource`` (anything with ``close()``, e.g. an in-memory change mask) open as long as the scene:
        it is closed last, after every dataset read from it."""
        self._open.insert(0, resource)

    def close(self) -> None:
        for obj in reversed(self._open):
            obj.close()
        self._open.clear()

    def __enter__(self) -> "Scene":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def read_style(self, path: str, side: int = 256, bands: str | None = None) -> np.ndarray:
        """A style image (SGDM): its bands matching the LR's, at most ``side`` pixels a side, in this
        scene's model space (the LR's stretch, so its colours are compared with the LR's). ``bands``: the LR's
        selection (``--bands``), taken by the style image where it names bands (B04, red) or where the style image
        has as many bands as the LR file (a BGR LR given 3,2,1 had its style image read B, G, R; found in review),
        else its own default bands."""
        info = inspect_raster(path, require_crs=False)
        by_number = bands is not None and all(t.strip().isdigit() for t in bands.split(","))
        try:
            sel = parse_bands(bands if not by_number or info.count == self.lr_info.count else None, info)
        except BandError:
            if bands is None or by_number:
                raise
            sel = parse_bands(None, info)  # names it does not have (B04 of an RGB photo): its own default bands
        if len(sel) != len(self.bands):
            raise BandError(f"{path}: the style image gives {band_count(len(sel))} but the LR gives "
                            f"{band_count(len(self.bands))}")
        ds = open_raster(path)
        try:
            whole = Window(0, 0, ds.width, ds.height)
            if sample_windows(ds, whole, side) is None:
                phys, valid = decimated_read(ds, sel, whole, side=side)
            else:  # too large to decimate whole: its central side x side pixels
                h, w = min(side, ds.height), min(side, ds.width)
                phys, valid = read_window(ds, sel, Window((ds.width - w) // 2, (ds.height - h) // 2, w, h))
        finally:
            ds.close()
        if not valid.any():
            raise BandError(f"{path}: the style image has no valid pixels")
        fill = np.array([np.median(b[valid]) for b in phys])[:, None, None]
        return self.stretch.forward(np.where(valid, phys, fill))

    def lr_samples(self, side: int = SHARPNESS_SIDE) -> list[tuple[np.ndarray, np.ndarray]]:
        """The LR at full resolution in model space, for scene statistics that decimation would falsify (its
        sharpness) of the whole scene, not only the area (an area of interest is told what the whole run is):
        all of it when it holds at most 4 x ``side``^2 pixels, else four windows of at most ``side``^2, spread
        evenly over it (2 x 2, or 4 in a row along a narrow strip). (model values, validity) per window."""
        w, h = self.lr_info.grid.width, self.lr_info.grid.height
        c0, r0 = 0, 0
        if w * h <= 4 * side * side:
            windows = [Window(c0, r0, w, h)]
        else:
            sw, sh = min(side, w), min(side, h)
            nx, ny = min(2, w // sw), min(2, h // sh)
            nx, ny = (min(4, w // sw), 1) if ny == 1 else ((1, min(4, h // sh)) if nx == 1 else (nx, ny))

            def spread(n: int, length: int, size: int) -> list[int]:
                return [(length - size) // 2] if n == 1 else [k * (length - size) // (n - 1) for k in range(n)]

            windows = [Window(c0 + x, r0 + y, sw, sh) for y in spread(ny, h, sh) for x in spread(nx, w, sw)]
        out = []
        for win in windows:
            phys, valid = read_window(self.lr_ds, self.bands, win)
            out.append((self.stretch.forward(np.where(valid, phys, 0.0)).astype(np.float32), valid))
        return out

    def measure_sharpness(self) -> tuple[float, ...]:
        """Measure (once) and keep the LR's sharpness code (:mod:`geosr.models.degradation_code`)."""
        if self.sharpness is None:
            from geosr.models.degradation_code import scene_sharpness

            self.sharpness = scene_sharpness(self.lr_samples())
        return self.sharpness

    # ---- reading windows -----------------------------------------------------------------------------------
    def read_stack(self, win: PlannedWindow, halo: int) -> WindowStack:
        """The conditioning stack of one planned window with ``halo`` LR pixels of context on every side."""
        s = self.scale
        c0, r0 = win.col_off - halo, win.row_off - halo
        w, h = win.width + 2 * halo, win.height + 2 * halo
        lr, lr_valid = self._read_lr(c0, r0, w, h)
        hr_win = Window(c0 * s, r0 * s, w * s, h * s)
        H, W = h * s, w * s
        if self.ref_info is not None:
            phys, ref_valid = self.ref_reader.read(hr_win)
            ref = self.harmonization.apply(phys, origin=(r0, c0), step=1 / s)
            ref = np.where(ref_valid, self.stretch.forward(ref), 0.0).astype(np.float32)
        else:
            ref, ref_valid = _nothing((len(self.bands), H, W), np.float32), _nothing((H, W), bool)
        if self.cd_info is not None:
            raw, cd_valid = self.cd_reader.read_values(hr_win)
            index, changed_value = self.cd_table.lookup(raw)
            if self.cd_sampled:  # only a sample was checked when the mask was opened
                bad = cd_valid & (index < 0)
                if bad.any():
                    refuse_undeclared(self.cd_info.path, np.unique(raw[bad]).tolist(), self.cd_table)
            if self.cd_whole is not None:
                whole, _ = self.cd_whole.read_values(hr_win)
                cd_valid = cd_valid & (whole > 0)
            change = np.where(cd_valid, index, self.cd_table.unknown_index)
            changed = np.where(cd_valid, changed_value, True)
            if self.cd_any is not None:  # a mask finer than the output: changed where any of its pixels is, as
                top, top_valid = self.cd_any.read_values(hr_win)  # the unknown class where the mode is unchanged
                anywhere = self.cd_table.lookup(top)[1] & top_valid
                change = np.where(anywhere & ~changed, self.cd_table.unknown_index, change)
                changed = changed | anywhere
            # clouds, by either product's own mask: the reference is not what the LR shows there (with --cd auto the
            # detection holds them already, as whole LR pixels; here their outline on the output grid is added)
            cloud = self.untrusted(self.hr.crs, self.hr.transform @ Affine.translation(c0 * s, r0 * s), W, H)
            if cloud is not None:
                change = np.where(cloud & ~changed, self.cd_table.unknown_index, change)
                changed = changed | cloud
        else:
            change, changed = _nothing((H, W), np.int64), _nothing((H, W), bool)
        map_ = None
        if self.map_info is not None:
            values, m_valid = self.map_reader.read_values(hr_win)
            if self.map_sampled and self.map_names is None and (m_valid & (values >= self.n_map_classes)).any():
                top = int(values[m_valid].max())
                raise ClassTableError(
                    f"{self.map_info.path}: holds class {top} but a sample of this map showed at most "
                    f"{self.n_map_classes - 1} (a map this large needs its classes named in a GEOSR_MAP_CLASSES tag)"
                )
            outside = m_valid & ((values < 0) | (values >= self.n_map_classes))
            # (read as background, the map's meaning lost; an untagged map's -1 that a sample of it missed: review)
            bad = outside if self.map_names is not None else m_valid & (values < 0)
            if bad.any():
                raise ClassTableError(self._map_value_refusal(self.map_info.path, int(values[bad][0])))
            map_ = np.where(m_valid & (values >= 0) & (values < self.n_map_classes), values, 0)
        offset = ((self.area.row_off + r0) * s, (self.area.col_off + c0) * s)
        return WindowStack(lr, lr_valid, ref, ref_valid, change.astype(np.int64, copy=False), changed, map_, offset,
                           has_ref=self.ref_info is not None, has_cd=self.cd_info is not None)

    def sensor_masks(self) -> list[dict]:
        """The products' own cloud masks read (:meth:`untrusted`), each as ``SensorMask.to_dict``."""
        return [m.to_dict(of) for of, m in (("LR", self.lr_mask), ("reference", self.ref_mask)) if m is not None]

    @property
    def has_cloud_masks(self) -> bool:
        return self.lr_mask is not None or self.ref_mask is not None

    def untrusted(self, crs: CRS, transform: Affine, width: int, height: int,
                  nearest: bool = False) -> np.ndarray | None:
        """(height, width) bool on the grid (``crs``, ``transform``): where the LR product's or the reference
        product's own cloud mask says a pixel does not show the ground (the reference's moved as co-registration
        moved the reference; ``nearest``: :func:`~geosr.io.sensor_masks.read_flags`); None without such masks."""
        out = None
        if self.lr_mask is not None:
            out = read_flags(self.lr_mask, self._mask_ds("lr"), crs, transform, width, height, nearest=nearest)
        if self.ref_mask is not None:
            moved = None  # (co-registration itself reads the reference's mask where the reference puts it)
            if self.ref_transform is not None:
                assert self.ref_ds is not None
                moved = self.ref_transform @ ~self.ref_ds.transform
            ref = read_flags(self.ref_mask, self._mask_ds("ref"), crs, transform, width, height, moved, nearest)
            out = ref if out is None else out | ref
        return out

    def _mask_ds(self, of: str) -> rasterio.DatasetReader | None:
        """The LR's (``lr``) or the reference's (``ref``) cloud mask raster, opened once and held by the scene
        (None: the mask flags nothing)."""
        if of not in self._masks:
            mask, info = (self.lr_mask, self.lr_info) if of == "lr" else (self.ref_mask, self.ref_info)
            assert mask is not None and info is not None
            self._masks[of] = ds = open_mask(mask, info.path)
            if ds is not None:
                self._open.append(ds)
        return self._masks[of]

    def lr_untrusted(self, win: PlannedWindow, halo: int) -> np.ndarray | None:
        """:meth:`untrusted` on the LR grid of :meth:`read_stack`'s window (``halo`` LR pixels of context)."""
        if not self.has_cloud_masks:
            return None
        c0 = int(self.area.col_off) + win.col_off - halo
        r0 = int(self.area.row_off) + win.row_off - halo
        w, h = win.width + 2 * halo, win.height + 2 * halo
        return self.untrusted(self.lr_ds.crs, self.lr_ds.window_transform(Window(c0, r0, w, h)), w, h)

    def lr_validity(self, r0: int, r1: int) -> np.ndarray:
        """Validity of LR rows [r0, r1) of the processed area (whole width)."""
        return self._read_lr(0, r0, int(self.area.width), r1 - r0)[1]

    def lr_band_validity(self, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
        """Validity of LR rows [r0, r1) of the processed area (whole width), and each band's (C, h, w): a band
        without data in a valid pixel is written as nodata there."""
        _, valid, bands = self._read_lr(0, r0, int(self.area.width), r1 - r0, per_band=True)
        return valid, bands

    def lr_complete(self, win: PlannedWindow, halo: int) -> tuple[np.ndarray, np.ndarray]:
        """Where the LR window (with ``halo``) holds data in every selected band: the pixels a comparison may read
        (elsewhere :meth:`read_stack`'s LR holds a band filled from its neighbours), and where each band does
        (C, h, w)."""
        c0, r0 = win.col_off - halo, win.row_off - halo
        _, valid, has = self._read_lr(c0, r0, win.width + 2 * halo, win.height + 2 * halo, per_band=True)
        return valid & has.all(axis=0), has

    def _read_lr(self, c0: int, r0: int, w: int, h: int, per_band: bool = False):
        """LR window in model space, edge-replicated beyond the scene (as whole-image kernels do), and its
        validity (and each band's, with ``per_band``). Where a band has no data (an invalid pixel, or a band's own
        gap) the model sees its valid neighbours' values (:func:`fill_gaps`; 0, the middle of the stretch, farther
        than a few pixels from any): a constant there pulled the valid pixels beside every nodata collar and cloud
        mask towards it (a dark or bright rim). The fill reads only a margin of FILL_RADIUS pixels around the
        window, so it is the same in every window."""
        m = FILL_RADIUS
        c0, r0, w, h = c0 - m, r0 - m, w + 2 * m, h + 2 * m
        W, H = self.lr_info.grid.width, self.lr_info.grid.height
        gc0, gr0 = int(self.area.col_off) + c0, int(self.area.row_off) + r0
        cc0, rr0 = max(0, gc0), max(0, gr0)
        cc1, rr1 = min(W, gc0 + w), min(H, gr0 + h)
        phys, valid, has = read_window_bands(self.lr_ds, self.bands, Window(cc0, rr0, cc1 - cc0, rr1 - rr0))
        pad = ((rr0 - gr0, gr0 + h - rr1), (cc0 - gc0, gc0 + w - cc1))
        has = has & valid[None]
        model = np.where(has, self.stretch.forward(phys), 0.0).astype(np.float32)
        model = np.pad(model, ((0, 0), *pad), mode="edge")
        valid = np.pad(valid, pad, mode="edge")
        has = np.pad(has, ((0, 0), *pad), mode="edge")
        inner = (slice(m, h - m), slice(m, w - m))
        model = fill_gaps(model, has)[(slice(None), *inner)]
        if per_band:
            return model, valid[inner], has[(slice(None), *inner)]
        return model, valid[inner]


FILL_SIGMA = 1.5  # LR pixels: the reach of the valid neighbours a gap is filled from (see fill_gaps)
FILL_RADIUS = 6  # LR pixels: where that reach is cut off (4 sigma), and the margin read around every window


# what a reference left off the LR does (Scene.misregistration)
MISPLACED = ("it was not moved, so where its content is off, changes may go undetected and its detail be pasted in "
             "the wrong place")


def _beyond(co: Coregistration) -> str | None:
    """A warning when ``co`` found the reference reliably off by more than co-registration trusts (not moved)."""
    if co.reason is None or not co.reason.startswith(BEYOND) or co.reliability < MIN_RELIABILITY:
        return None
    dx, dy = (round(v, 1) + 0.0 for v in co.offset_lr_px)  # (no "-0.0")
    return (f"the reference seems to lie {dx:+.1f}, {dy:+.1f} LR px off the LR (columns, rows), more than "
            f"co-registration trusts over the area it compares: {MISPLACED}; check its georeference")


def _cloud_mask_of(path: str, role: str, warnings: list[str]) -> tuple[SensorMask | None, list[str]]:
    """The cloud mask a multi-file input (a Sentinel-2 L2A product, a STAC item, band files) ships, if any, and
    ``warnings`` with a word on one it names but that cannot be used (``role``: "LR", "reference")."""
    comp = composite(path) if is_composite(path) else None
    if comp is not None and comp.mask_unused:
        warnings = warnings + [f"the {role}'s cloud mask is not used ({comp.mask_unused}): its clouds are "
                               "compared as the images show them"]
    return (comp.mask if comp is not None else None), warnings


def fill_gaps(model: np.ndarray, has: np.ndarray) -> np.ndarray:
    """(C, h, w) model-space values where ``has`` is False replaced by a normalized convolution of each band's
    valid values (a Gaussian of FILL_SIGMA cut at FILL_RADIUS), fading to 0 (the middle of the stretch) where few
    valid pixels are in reach: a pixel's fill depends only on the pixels within FILL_RADIUS of it. By hand: GDAL's
    FillNodata (inverse distance, searching as far as it must) depends on how far the window reaches."""
    from scipy import ndimage

    if has.all():
        return model
    out = model.copy()
    for b in range(model.shape[0]):
        ok = has[b]
        if ok.all():
            continue
        weight = ok.astype(np.float32)
        kw = dict(sigma=FILL_SIGMA, truncate=FILL_RADIUS / FILL_SIGMA, mode="constant")
        num = ndimage.gaussian_filter(np.where(ok, model[b], 0.0).astype(np.float32), **kw)
        den = ndimage.gaussian_filter(weight, **kw)
        # whole up to 3 pixels into a gap (den >= 0.01; lanczos reaches 3), faded to 0 by 5
        estimate = num / np.maximum(den, 1e-12) * np.clip(den * 100, 0, 1)
        out[b] = np.where(ok, model[b], estimate)
    return out


def _refuse_other_table(path: str, tag: str | None, table: ChangeClassTable) -> None:
    """Refuse a change mask whose own class table (its ``GEOSR_CHANGE_CLASSES`` tag: ``geosr detect-changes`` writes
    one) is not ``table``: a binary mask read with SECOND's classes told the model that every change was
    "non-vegetated ground surface", and the output's tags said so (found in review)."""
    try:
        written = json.loads(tag) if tag else None
        name = written["name"]
        classes = {(int(c["value"]), bool(c["changed"])) for c in written["classes"]}
    except (ValueError, TypeError, KeyError):  # no tag, or not geosr's: the user's table is the one
        return
    if name != table.name or not classes <= {(c.value, c.changed) for c in table.classes}:
        raise ClassTableError(f"{path}: holds the {name!r} change classes (its GEOSR_CHANGE_CLASSES tag), not the "
                              f"{table.name!r} ones `cd_classes` names; give `cd_classes` {name} (binary is the "
                              "default)")


def _class_resampling(ds: rasterio.DatasetReader, grid: Grid) -> Resampling:
    """Nearest for class rasters on a grid as fine or finer; mode when the class raster is finer."""
    return Resampling.mode if source_is_finer(ds, grid) else Resampling.nearest
