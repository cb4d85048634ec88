"""Co-registering inputs onto a target grid (GDAL's warper) and harmonizing the reference to the LR."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp, Resampling
from rasterio.io import MemoryFile
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from geosr.errors import NoOverlapError
from geosr.io.rasters import band_presence, reading, shown_name
from geosr.tiling.grid import Grid, across_antimeridian, source_steps, wrapped_crs

MIN_FIT_PIXELS = 16


class GridReader:
    """A raster seen on a target grid through a WarpedVRT; pixels outside its footprint are invalid.

    ``resampling`` "auto" picks average when the source is finer than the grid (never nearest for
    imagery: it aliases) and cubic when it is coarser. ``src_transform`` places the source elsewhere than
    its own geotransform says (a co-registered reference).
    """

    def __init__(
        self,
        ds: rasterio.DatasetReader,
        grid: Grid,
        bands: tuple[int, ...],
        resampling: Resampling | str = "auto",
        src_transform: Affine | None = None,
    ) -> None:
        if resampling == "auto":
            resampling = Resampling.average if source_is_finer(ds, grid) else Resampling.cubic
        if src_transform is None:
            src_transform = placed_transform(ds, grid)
        self.ds = ds
        self.grid = grid
        self.bands = tuple(bands)
        self.resampling = resampling
        # a source with its own alpha band (an RGBA orthophoto) keeps it as the validity: GDAL warps it as the
        # alpha (WarpedVRT refuses to add a second one)
        alpha = next((i + 1 for i, c in enumerate(ds.colorinterp) if c == ColorInterp.alpha), None)
        placed = {**({} if src_transform is None else {"src_transform": src_transform}),
                  **warp_options(ds, grid, src_transform)}
        self.vrt = WarpedVRT(
            ds,
            crs=grid.crs,
            transform=grid.transform,
            width=grid.width,
            height=grid.height,
            resampling=resampling,
            add_alpha=alpha is None,
            **placed,
        )
        self._alpha = self.vrt.count if alpha is None else alpha  # the alpha band WarpedVRT appended, or the source's
        # GDAL's average warp marks an output pixel beside the footprint's edge valid (alpha 255) though none of its
        # area is covered; where the source's footprint holds the pixel's centre is the nearest warp's alpha. And a
        # cubic (or lanczos) warp overshoots at sharp edges and clamps to the data type: a valid pixel of a uint8
        # source with nodata 0 (or 255) comes out at its nodata value, so which bands have data is the nearest
        # warp's there (GDAL keeps warped values off the nodata value only without an alpha band, which the
        # footprint needs)
        overshoots = resampling in (Resampling.cubic, Resampling.cubic_spline, Resampling.lanczos)
        self._centres = None if resampling != Resampling.average and not overshoots else WarpedVRT(
            ds, crs=grid.crs, transform=grid.transform, width=grid.width, height=grid.height,
            resampling=Resampling.nearest, add_alpha=alpha is None, **placed)
        self._scales = np.array([ds.scales[b - 1] for b in self.bands])[:, None, None]
        self._offsets = np.array([ds.offsets[b - 1] for b in self.bands])[:, None, None]

    def close(self) -> None:
        self.vrt.close()
        if self._centres is not None:
            self._centres.close()

    def _read(self, window: Window, **kw) -> tuple[np.ndarray, np.ndarray]:
        """The bands and the alpha (last) of ``window`` on the grid, and where each band has data (C, h, w)."""
        nodata = [self.ds.nodatavals[b - 1] for b in self.bands]
        with reading(self.ds.name):
            data = self.vrt.read(list(self.bands) + [self._alpha], window=window, out_dtype="float64", **kw)
            if self._centres is None:
                return data, band_presence(data[:-1], nodata)
            if self.resampling == Resampling.average:
                covered = self._centres.read(self._alpha, window=window, out_dtype="float64",
                                             **{k: (v[1:] if k == "out_shape" else v) for k, v in kw.items()})
                data[-1] = np.where(covered > 0, data[-1], 0)
                return data, band_presence(data[:-1], nodata)
            nearest = self._centres.read(list(self.bands), window=window, out_dtype="float64",
                                         **{k: (v[1:] if k == "out_shape" else v) for k, v in kw.items()})
        return data, band_presence(nearest, nodata) & np.isfinite(data[:-1])

    def read(self, window: Window, out_shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(physical values (C, h, w) float64, validity (h, w)) of ``window``, which may reach outside.

        With ``out_shape`` the window is read decimated (nearest) to that shape (no padding then).
        """
        if out_shape is not None:
            return self._finish(*self._read(window, out_shape=(len(self.bands) + 1, *out_shape),
                                            resampling=Resampling.nearest))
        h, w = int(window.height), int(window.width)
        out = np.zeros((len(self.bands), h, w))
        valid = np.zeros((h, w), dtype=bool)
        c0, r0 = int(window.col_off), int(window.row_off)
        cc0, rr0 = max(0, c0), max(0, r0)
        cc1, rr1 = min(self.grid.width, c0 + w), min(self.grid.height, r0 + h)
        if cc1 > cc0 and rr1 > rr0:
            inner = Window(cc0, rr0, cc1 - cc0, rr1 - rr0)
            d, v = self._finish(*self._read(inner))
            out[:, rr0 - r0 : rr1 - r0, cc0 - c0 : cc1 - c0] = d
            valid[rr0 - r0 : rr1 - r0, cc0 - c0 : cc1 - c0] = v
        return out, valid

    def read_values(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Raw band-1 values (no scale/offset; for class rasters) and validity of ``window``."""
        data, valid = self.read(window)
        raw = (data[0] - self._offsets[0, 0, 0]) / self._scales[0, 0, 0]
        return np.rint(raw).astype(np.int64), valid

    def _finish(self, data: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # a pixel of the source is valid where every chosen band has data: pasted or trusted, a band's gap (Landsat 7's
        # stripes) would be a flat fill, where the LR's own band does better
        values = data[:-1]
        valid = (data[-1] > 0) & present.all(axis=0)
        return np.where(valid, values * self._scales + self._offsets, 0.0), valid


# source pixels read at once by :func:`read_average_without` (about 100 MB for three bands at its peak)
MASKED_READ_PIXELS = 1 << 22


def read_average_without(ds: rasterio.DatasetReader, grid: Grid, bands: tuple[int, ...],
                         hidden: Callable[[Affine, int, int], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """:class:`GridReader`'s average of the whole ``grid`` (values, validity), the source's pixels ``hidden``
    flags (given the source's own transform of a window and its size: (height, width) bool) left out at the
    source's own resolution, before they are averaged. A sensor's cloud flags left out only on the grid (where they
    cover most of a grid pixel) brightened every grid pixel a small cloud covered part of: a reference 1.5 LR px
    off under small flagged clouds over 12% of it matched too poorly (reliability 0.21) to be moved back.

    Read in blocks of the grid, each through an in-memory copy of the source's window under it (float32) with the
    flags as its alpha: GDAL's warper takes such a mask as an alpha band (a VRT's mask band cannot hold flags computed
    here). A block's window holds at most about MASKED_READ_PIXELS source pixels, also where the source is turned
    against the grid (strips of whole rows read a diagonal band's bounding box: 8.5 times as many at 45 degrees).
    """
    values = np.zeros((len(bands), grid.height, grid.width))
    valid = np.zeros((grid.height, grid.width), bool)
    whole = window_under(ds, grid)
    per_pixel = max(1e-9, whole.width * whole.height / (grid.width * grid.height))  # source pixels per grid pixel
    side = max(1, int(np.sqrt(MASKED_READ_PIXELS / per_pixel)))
    blocks = [Window(c0, r0, min(side, grid.width - c0), min(side, grid.height - r0))
              for r0 in range(0, grid.height, side) for c0 in range(0, grid.width, side)]
    while blocks:
        block = blocks.pop()
        sub = grid.subgrid(block)
        win = window_under(ds, sub)
        if win.width * win.height > 2 * MASKED_READ_PIXELS and block.width * block.height > 1:  # turned: halved
            half_w, half_h = max(1, int(block.width) // 2), max(1, int(block.height) // 2)
            blocks += [Window(block.col_off + c, block.row_off + r, min(half_w, int(block.width) - c),
                              min(half_h, int(block.height) - r))
                       for r in range(0, int(block.height), half_h) for c in range(0, int(block.width), half_w)]
            continue
        part, ok = _average_block(ds, sub, win, bands, hidden)
        r0, c0 = int(block.row_off), int(block.col_off)
        values[:, r0:r0 + sub.height, c0:c0 + sub.width] = part
        valid[r0:r0 + sub.height, c0:c0 + sub.width] = ok
    return values, valid


def _average_block(ds: rasterio.DatasetReader, sub: Grid, win: Window, bands: tuple[int, ...],
                   hidden: Callable[[Affine, int, int], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`read_average_without` of one block of the grid (``sub``), ``win`` the source's window under it."""
    w, h = int(win.width), int(win.height)
    with reading(ds.name):
        raw = ds.read(list(bands), window=win, masked=True)
    clear = ~np.ma.getmaskarray(raw).any(axis=0) & ~hidden(ds.transform @ Affine.translation(win.col_off,
                                                                                                win.row_off), w, h)
    if not clear.any():
        return np.zeros((len(bands), sub.height, sub.width)), np.zeros((sub.height, sub.width), bool)
    placed = placed_transform(ds, sub) or ds.transform
    with MemoryFile() as memfile:
        with memfile.open(driver="GTiff", width=w, height=h, count=len(bands) + 1, dtype="float32", crs=ds.crs,
                          transform=placed @ Affine.translation(win.col_off, win.row_off)) as dst:
            dst.write(np.ma.getdata(raw).astype("float32"), list(range(1, len(bands) + 1)))
            dst.write(np.where(clear, 255.0, 0.0).astype("float32"), len(bands) + 1)
            dst.colorinterp = [ColorInterp.gray] * len(bands) + [ColorInterp.alpha]
            dst.scales = [ds.scales[b - 1] for b in bands] + [1.0]
            dst.offsets = [ds.offsets[b - 1] for b in bands] + [0.0]
        with memfile.open() as copy:
            reader = GridReader(copy, sub, tuple(range(1, len(bands) + 1)), Resampling.average)
            try:
                return reader.read(Window(0, 0, sub.width, sub.height))
            finally:
                reader.close()


def clipped_pixels(ds: rasterio.DatasetReader, grid: Grid, bands: tuple[int, ...], windows: list[Window],
                   out_shape: tuple[int, int] | None, src_transform: Affine | None = None) -> list[np.ndarray] | None:
    """Where, in each of ``windows`` of ``grid``, the source's block under a pixel holds a value at either end of its
    integer type's range in any band (255 or 0 of an overexposed or crushed 8-bit photo): a value clipped there, so
    the block's average no longer follows the ground linearly. Read as :meth:`GridReader.read` reads (``out_shape``:
    decimated). None for a source of floating-point bands, which clip nothing."""
    kinds = [np.dtype(ds.dtypes[b - 1]) for b in bands]
    if not all(np.issubdtype(k, np.integer) for k in kinds):
        return None
    raw = np.array([(np.iinfo(k).min, np.iinfo(k).max) for k in kinds], dtype=np.float64)
    scales = np.array([ds.scales[b - 1] for b in bands])[:, None]
    ends = raw * scales + np.array([ds.offsets[b - 1] for b in bands])[:, None]  # physical, as GridReader reads
    tol = 0.5 * np.abs(scales[:, 0])[:, None, None]
    ends_at: list[list[np.ndarray]] = []
    for resampling in (Resampling.min, Resampling.max):  # the block's smallest and largest value under each pixel
        reader = GridReader(ds, grid, bands, resampling, src_transform=src_transform)
        try:
            reads = [reader.read(w, out_shape=out_shape) for w in windows]
        finally:
            reader.close()
        ends_at.append([((np.abs(values - ends[:, 0, None, None]) <= tol)
                         | (np.abs(values - ends[:, 1, None, None]) <= tol)).any(axis=0) & valid
                        for values, valid in reads])
    return [low | high for low, high in zip(*ends_at)]


def footprint_on(ds: rasterio.DatasetReader, grid: Grid) -> tuple[float, float, float, float]:
    """The dataset's footprint as (col0, row0, col1, row1) pixel coordinates of ``grid`` (across the antimeridian
    too: :func:`placed_transform`; a box around it where the grid is rotated)."""
    left, bottom, right, top = _bounds_in(ds, grid, placed_transform(ds, grid))
    inverse = ~grid.transform
    cols, rows = zip(*(inverse @ (x, y) for x in (left, right) for y in (bottom, top)))
    return min(cols), min(rows), max(cols), max(rows)


def window_under(ds: rasterio.DatasetReader, grid: Grid) -> Window:
    """The window of ``ds`` under ``grid`` (placed across the antimeridian as its reader places it), a pixel wider
    each side and clipped to it; the whole of it where the grid cannot be carried into its CRS."""
    whole = Window(0, 0, ds.width, ds.height)
    try:
        left, bottom, right, top = transform_bounds(grid.crs, ds.crs, *grid.bounds, densify_pts=21)
    except Exception:  # noqa: BLE001 (read it all, as before)
        return whole
    if not all(np.isfinite(v) for v in (left, bottom, right, top)):
        return whole
    inverse = ~(placed_transform(ds, grid) or ds.transform)
    cols, rows = zip(*(inverse @ (x, y) for x in (left, right) for y in (bottom, top)))
    c0, r0 = max(0, int(np.floor(min(cols))) - 1), max(0, int(np.floor(min(rows))) - 1)
    c1, r1 = min(ds.width, int(np.ceil(max(cols))) + 1), min(ds.height, int(np.ceil(max(rows))) + 1)
    return Window(c0, r0, c1 - c0, r1 - r0) if c1 > c0 and r1 > r0 else whole


def source_is_finer(ds: rasterio.DatasetReader, grid: Grid) -> bool:
    """Whether the source's pixels are smaller than the grid's (compared in the grid's CRS)."""
    return pixel_ratio(ds, grid) < 1


def pixel_ratio(ds: rasterio.DatasetReader, grid: Grid) -> float:
    """The side of the source's pixels over that of the grid's (their areas' square root, in the grid's CRS)."""
    left, bottom, right, top = _bounds_in(ds, grid)
    src_px = abs((right - left) / ds.width) * abs((top - bottom) / ds.height)
    gx, gy = grid.res
    return math.sqrt(src_px / (gx * gy))


def warp_options(ds: rasterio.DatasetReader, grid: Grid, src_transform: Affine | None = None) -> dict[str, Any]:
    """The WarpedVRT settings that read ``ds`` (placed by ``src_transform``, default its own) on ``grid`` as it lies:
    its longitudes wrapped where it crosses the antimeridian (:func:`~geosr.tiling.grid.wrapped_crs`), and the
    kernel's scale along its own axes (:func:`~geosr.tiling.grid.source_steps`)."""
    source = Grid(ds.crs, ds.transform if src_transform is None else src_transform, ds.width, ds.height)
    wrapped = wrapped_crs(source, grid)
    steps = source_steps(source if wrapped is None else Grid(wrapped, source.transform, ds.width, ds.height), grid)
    return {**({} if wrapped is None else {"src_crs": wrapped}),
            **({} if steps is None else {"XSCALE": f"{steps[0]:.12g}", "YSCALE": f"{steps[1]:.12g}"})}


def placed_transform(ds: rasterio.DatasetReader, grid: Grid) -> Affine | None:
    """The geotransform that places ``ds`` where it meets ``grid``: its own moved 360 degrees when the two are in
    longitude and latitude on either side of the antimeridian's numbering
    (:func:`~geosr.tiling.grid.across_antimeridian`); None when its own does."""
    moved = across_antimeridian(Grid(ds.crs, ds.transform, ds.width, ds.height), grid) if ds.crs else None
    return None if moved is None else moved.transform


def _bounds_in(ds: rasterio.DatasetReader, grid: Grid, transform: Affine | None = None) -> tuple[float, ...]:
    """The dataset's footprint (left, bottom, right, top) in the grid's CRS (placed by ``transform``, default its
    own). From its corners: rasterio's ``ds.bounds`` of a south-up file has bottom above top, which a same-CRS
    transform_bounds hands back as is."""
    own = Grid(ds.crs, ds.transform if transform is None else transform, ds.width, ds.height).bounds
    left, bottom, right, top = transform_bounds(ds.crs, grid.crs, *own, densify_pts=21)
    if grid.crs.is_geographic and left > right:
        # across the antimeridian (a projected source over Fiji), PROJ's box has its west east of its east: read as
        # one box beside the grid's own numbering (it read as no overlap at all; found in review)
        right += 360.0
        gl, _, gr, _ = grid.bounds
        middle = (left + right) / 2 - (gl + gr) / 2
        shift = min((0.0, -360.0, 360.0), key=lambda k: abs(middle + k))
        left, right = left + shift, right + shift
    return left, bottom, right, top


def check_overlap(ds: rasterio.DatasetReader, grid: Grid, what: str, place: str = "the scene") -> float:
    """Fraction of the grid's area the dataset covers (across the antimeridian too: :func:`placed_transform`);
    NoOverlapError when it covers none of it (``place``: what the grid is, for the message)."""
    left, bottom, right, top = _bounds_in(ds, grid, placed_transform(ds, grid))
    gl, gb, gr, gt = grid.bounds
    iw, ih = min(right, gr) - max(left, gl), min(top, gt) - max(bottom, gb)
    if iw <= 0 or ih <= 0:
        raise NoOverlapError(f"{shown_name(ds.name)}: the {what} does not overlap {place}")
    return (iw * ih) / ((gr - gl) * (gt - gb))


@dataclass(frozen=True)
class Harmonization:
    """Per-band linear map of the reference's physical values onto the LR's: ``gain * ref + bias``.

    With local fields (``field_gain``, ``field_bias``: (C, gh, gw) on cells of ``cell`` LR pixels of the processed
    area), the gain and bias vary smoothly over the scene and :meth:`apply` takes them at each pixel when told
    where the pixels are (``origin``, ``step``); without a position the global fit applies.
    """

    gain: tuple[float, ...]
    bias: tuple[float, ...]
    pixels: int  # LR pixels the fit used
    field_gain: np.ndarray | None = field(default=None, compare=False)
    field_bias: np.ndarray | None = field(default=None, compare=False)
    cell: tuple[float, float] = (0.0, 0.0)  # LR pixels per cell: rows, columns

    def apply(self, ref: np.ndarray, origin: tuple[float, float] | None = None, step: float = 1.0) -> np.ndarray:
        """``ref`` (C, h, w) mapped onto the LR. ``origin``: the LR (row, col) of its top-left pixel's corner in the
        processed area, ``step``: its pixel size in LR pixels (1 / scale); needed for the local fields."""
        if self.field_gain is None or self.field_bias is None or origin is None:
            return ref * np.asarray(self.gain)[:, None, None] + np.asarray(self.bias)[:, None, None]
        from scipy import ndimage

        h, w = ref.shape[-2:]
        ys = (origin[0] + (np.arange(h) + 0.5) * step) / self.cell[0] - 0.5
        xs = (origin[1] + (np.arange(w) + 0.5) * step) / self.cell[1] - 0.5
        coords = np.meshgrid(ys, xs, indexing="ij")
        out = np.empty(ref.shape, dtype=np.float64)
        for b in range(ref.shape[0]):
            g = ndimage.map_coordinates(self.field_gain[b], coords, order=1, mode="nearest")
            o = ndimage.map_coordinates(self.field_bias[b], coords, order=1, mode="nearest")
            out[b] = ref[b] * g + o
        return out

    def to_dict(self) -> dict:
        d = {"gain": list(self.gain), "bias": list(self.bias), "pixels": self.pixels}
        if self.field_gain is not None:
            d["local"] = {"cells": list(self.field_gain.shape[1:]), "cell_lr_px": [round(c, 3) for c in self.cell],
                          "gain_range": [[round(float(g.min()), 4), round(float(g.max()), 4)] for g in self.field_gain]}
        return d


def fit_harmonization(lr: np.ndarray, lr_valid: np.ndarray, ref: np.ndarray, usable: np.ndarray) -> Harmonization:
    """Fit the reference to the LR at LR scale over pixels that are valid in both and unchanged.

    The fit matches each band's mean and standard deviation (a linear map). Unlike a least-squares
    regression it does not shrink the reference's contrast when the dates correlate imperfectly
    (misregistration, season), which would wash out the texture the model takes from it.
    """
    ok = lr_valid & usable
    n = int(ok.sum())
    if n < MIN_FIT_PIXELS:
        return Harmonization(tuple(1.0 for _ in lr), tuple(0.0 for _ in lr), n)
    gains, biases = [], []
    for b in range(lr.shape[0]):
        g, o = _moments_fit(ref[b][ok], lr[b][ok])
        gains.append(g)
        biases.append(o)
    return Harmonization(tuple(gains), tuple(biases), n)


def _moments_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    sx, sy = x.std(), y.std()
    g = float(sy / sx) if sx > 1e-12 else 1.0
    if g < 1.0 and is_uniform(y) and not is_uniform(x):  # the LR shows no contrast to match (a cloud, fill): the
        g = 1.0  # reference keeps its own, at the LR's level, rather than flattened into what it is compared with
    return g, float(y.mean() - g * x.mean())


UNIFORM = 0.01  # a band is uniform when its 1-99% range is within this share of its level (is_uniform)


def is_uniform(values: np.ndarray) -> bool:
    """Whether ``values`` (one band's) are uniform: their 1-99% range within :data:`UNIFORM` of their median's
    magnitude (a cloud, fill or a blank scene; a band of zeros too)."""
    v = np.asarray(values, np.float64).ravel()
    if v.size == 0:
        return True
    lo, hi = np.percentile(v, [1, 99])
    return bool(hi - lo <= UNIFORM * max(abs(float(np.median(v))), 1e-9))


LOCAL_CELL = 32  # LR pixels per cell of the local fields (at least; more on a decimated fit)
MIN_CELL_PIXELS = 48  # a cell with fewer usable pixels takes the global fit
MIN_CELLS = 3  # fewer cells than this a side: the global fit alone


def fit_local_harmonization(lr: np.ndarray, lr_valid: np.ndarray, ref: np.ndarray, usable: np.ndarray,
                            decimation: float = 1.0) -> Harmonization:
    """:func:`fit_harmonization` plus gain and bias fields varying smoothly over the area: the same fit per cell
    of :data:`LOCAL_CELL` LR pixels (arrays decimated by ``decimation`` LR pixels per pixel), each cell's gain
    kept within half and twice the global gain, cells without enough usable pixels given the global fit, then
    both fields smoothed (Gaussian, one cell). A scene too small for :data:`MIN_CELLS` cells a side keeps the
    global fit only."""
    from scipy import ndimage

    glob = fit_harmonization(lr, lr_valid, ref, usable)
    side = max(4, int(round(LOCAL_CELL / max(decimation, 1e-9))))  # cell side in array pixels
    h, w = lr.shape[-2:]
    gh, gw = h // side, w // side
    if gh < MIN_CELLS or gw < MIN_CELLS or glob.pixels < MIN_FIT_PIXELS:
        return glob
    ok = lr_valid & usable
    fg = np.empty((lr.shape[0], gh, gw))
    fb = np.empty((lr.shape[0], gh, gw))
    for b in range(lr.shape[0]):
        fg[b], fb[b] = glob.gain[b], glob.bias[b]
    rows = np.linspace(0, h, gh + 1).round().astype(int)
    cols = np.linspace(0, w, gw + 1).round().astype(int)
    for i in range(gh):
        for j in range(gw):
            sl = (slice(rows[i], rows[i + 1]), slice(cols[j], cols[j + 1]))
            m = ok[sl]
            if int(m.sum()) < MIN_CELL_PIXELS:
                continue
            for b in range(lr.shape[0]):
                x, y = ref[b][sl][m], lr[b][sl][m]
                g0 = glob.gain[b]
                g = _moments_fit(x, y)[0]
                g = float(np.clip(g, 0.5 * g0, 2 * g0)) if g0 > 0 else g
                fg[b, i, j], fb[b, i, j] = g, float(y.mean() - g * x.mean())
    for b in range(lr.shape[0]):
        fg[b] = ndimage.gaussian_filter(fg[b], 1.0, mode="nearest")
        fb[b] = ndimage.gaussian_filter(fb[b], 1.0, mode="nearest")
    return Harmonization(glob.gain, glob.bias, glob.pixels, fg, fb, (decimation * h / gh, decimation * w / gw))

