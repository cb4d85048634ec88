"""Grids: a CRS, an affine transform and a size. The HR grid is the LR grid refined by the scale, exactly."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from geosr.errors import NoOverlapError, OptionError


@dataclass(frozen=True)
class Grid:
    """A raster grid: CRS, transform (of the top-left corner) and size in pixels."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of the grid in its CRS (north-up or not)."""
        xs, ys = [], []
        for col, row in ((0, 0), (self.width, 0), (0, self.height), (self.width, self.height)):
            x, y = self.transform @ (col, row)
            xs.append(x)
            ys.append(y)
        return (min(xs), min(ys), max(xs), max(ys))

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size (x, y) as positive numbers."""
        return (math.hypot(self.transform.a, self.transform.d), math.hypot(self.transform.b, self.transform.e))

    def refined(self, scale: int) -> "Grid":
        """The grid ``scale`` times finer over the same footprint: ``transform @ Affine.scale(1/scale)``."""
        return Grid(self.crs, self.transform @ Affine.scale(1.0 / scale), self.width * scale, self.height * scale)

    def subgrid(self, window: Window) -> "Grid":
        """The grid of an integer pixel window of this grid (which may reach outside it)."""
        col, row = int(window.col_off), int(window.row_off)
        return Grid(self.crs, self.transform @ Affine.translation(col, row), int(window.width), int(window.height))

    def window_of_bounds(self, bounds: tuple[float, float, float, float]) -> Window:
        """The smallest whole-pixel window of this grid covering ``bounds`` (same CRS), clipped to the grid.

        Raises NoOverlapError when the bounds and the grid do not overlap.
        """
        inv = ~self.transform
        left, bottom, right, top = bounds
        cols, rows = [], []
        for x, y in ((left, bottom), (left, top), (right, bottom), (right, top)):
            c, r = inv @ (x, y)
            cols.append(c)
            rows.append(r)
        eps = 1e-6  # tolerate floating-point noise on pixel edges
        c0, c1 = _span(min(cols), max(cols), self.width, eps)
        r0, r1 = _span(min(rows), max(rows), self.height, eps)
        if c1 <= c0 or r1 <= r0:
            raise NoOverlapError("the area of interest does not overlap the scene")
        return Window(c0, r0, c1 - c0, r1 - r0)


def _span(lo: float, hi: float, size: int, eps: float) -> tuple[int, int]:
    """The whole pixels [first, end) covering [lo, hi] along one axis of ``size`` pixels, clipped to it; bounds of no
    extent (a point, a line along the axis) that lie on a pixel edge inside the grid take the pixel after the edge
    (before it at the grid's far end): snapped to the edge, they covered no pixel and read as "no overlap"."""
    first, end = max(0, math.floor(lo + eps)), min(size, math.ceil(hi - eps))
    if end <= first and hi - lo <= 2 * eps and -eps <= lo <= size + eps:
        first = min(max(0, round(lo)), size - 1)
        end = first + 1
    return first, end


def meets(source: Grid, target: Grid) -> bool:
    """Whether ``source``'s footprint, taken to ``target``'s CRS (densified edges), overlaps ``target``'s."""
    from rasterio.warp import transform_bounds

    left, bottom, right, top = transform_bounds(source.crs, target.crs, *source.bounds, densify_pts=21)
    gl, gb, gr, gt = target.bounds
    return min(right, gr) > max(left, gl) and min(top, gt) > max(bottom, gb)


def across_antimeridian(source: Grid, target: Grid) -> Grid | None:
    """``source`` moved 360 degrees east or west when that is where it meets ``target``, both in longitude and
    latitude: one file written in 180..360 degrees (or across 180), the other in -180..180, show the same ground,
    which GDAL's warper does not wrap. None when ``source`` meets ``target`` where it is, or nowhere. A target in a
    projected CRS: a source numbered wholly beyond 180 degrees (or below -180) moved into -180..180, where PROJ
    takes it into the target's CRS as GDAL's warper reads it (a source across 180 stays: it has no such place)."""
    if not (source.crs and target.crs and source.crs.is_geographic):
        return None
    if not target.crs.is_geographic:
        left, _, right, _ = source.bounds
        shift = -360.0 if left >= 180 else 360.0 if right <= -180 else 0.0
        moved = Grid(source.crs, Affine.translation(shift, 0) @ source.transform, source.width, source.height)
        return moved if shift and meets(moved, target) else None
    if meets(source, target):
        return None
    for shift in (360.0, -360.0):
        moved = Grid(source.crs, Affine.translation(shift, 0) @ source.transform, source.width, source.height)
        if meets(moved, target):
            return moved
    return None


def wrapped_crs(source: Grid, target: Grid) -> CRS | None:
    """``source``'s CRS with its longitudes wrapped around the middle of its own numbering (PROJ's ``+lon_wrap``),
    for a source in longitude and latitude (degrees) numbered beyond -180..180 degrees, or read onto a ``target`` in
    longitude and latitude so numbered: GDAL's warper takes each target pixel to -180..180 (or leaves its numbering
    as it is), where such a source's part beyond the line is not, so that part went unread without a word (a
    reference over Fiji, or over a pole numbered 0..360; found in review). None where no such numbering meets."""
    if not (source.crs and target.crs and source.crs.is_geographic) or source.crs.units_factor[0] != "degree":
        return None
    left, _, right, _ = source.bounds
    beyond = left < -180 or right > 180
    if target.crs.is_geographic:
        t_left, _, t_right, _ = target.bounds
        beyond = beyond or t_left < -180 or t_right > 180
    if not beyond:
        return None
    # (a source all round the globe has an edge there still: a target pixel's centre on 180 degrees of one in
    # -180..180 falls beyond its last column, or a hair before its first, and is read as no data)
    wrapped = CRS.from_proj4(f"{source.crs.to_proj4()} +lon_wrap={(left + right) / 2:.12g}")
    return wrapped if _same_places(source, wrapped) else None


def _same_places(source: Grid, wrapped: CRS) -> bool:
    """Whether ``wrapped`` (``source``'s CRS as a PROJ string) puts 11 x 11 points over ``source`` where its own CRS
    does, to 1e-9 degrees: a PROJ string keeps a datum only as +datum or +towgs84 (NZGD49's was dropped and the
    reference moved 83 m; NAD83's takes another transformation than its EPSG code's inside its area of use: 0.9 m;
    found in review). Where it does not, the source is read unwrapped, as before."""
    from rasterio.warp import transform

    left, bottom, right, top = source.bounds
    gx, gy = np.meshgrid(np.linspace(left, right, 11), np.linspace(bottom, top, 11))
    xs, ys = gx.ravel().tolist(), gy.ravel().tolist()
    try:
        ox, oy = transform(source.crs, "EPSG:4326", xs, ys)
        wx, wy = transform(wrapped, "EPSG:4326", xs, ys)
    except Exception:  # noqa: BLE001 (PROJ refuses a point: not the same)
        return False
    lon = np.abs((np.array(ox) - np.array(wx) + 180) % 360 - 180)
    return bool(np.all(np.isfinite(lon)) and lon.max() < 1e-9 and np.abs(np.array(oy) - np.array(wy)).max() < 1e-9)


def source_steps(source: Grid, target: Grid) -> tuple[float, float] | None:
    """How many ``target`` pixels one step along ``source``'s columns and along its rows spans (at the target's
    middle): GDAL's warp options XSCALE and YSCALE. Its warper otherwise estimates them for each chunk from the
    bounding box of the source window under it, which is too large, or turned, where the source's grid is rotated
    against the target's: a reference on a grid turned by 90 degrees was resampled with a kernel scaled for the
    other axis (up to 31 DN off), one turned by 20 degrees with one too wide (4.8 DN mean off; found in review).
    None where the middle cannot be carried into the source's CRS."""
    from rasterio.warp import transform

    cx, cy = target.width / 2, target.height / 2
    xs, ys = zip(*(target.transform @ p for p in ((cx, cy), (cx + 1, cy), (cx, cy + 1))))
    try:
        sx, sy = transform(target.crs, source.crs, list(xs), list(ys))
    except Exception:  # noqa: BLE001 (PROJ refuses points it cannot carry: GDAL's own estimate then)
        return None
    if source.crs.is_geographic:  # (a step across the antimeridian is a small one)
        sx = [sx[0] + (x - sx[0] + 180) % 360 - 180 for x in sx]
    inverse = ~source.transform
    cols, rows = zip(*(inverse @ (x, y) for x, y in zip(sx, sy)))
    step = np.array([[cols[1] - cols[0], cols[2] - cols[0]], [rows[1] - rows[0], rows[2] - rows[0]]])
    if not np.isfinite(step).all() or abs(np.linalg.det(step)) < 1e-12:
        return None
    per_source = np.linalg.inv(step)  # target pixels per source column (first column) and row (second)
    return float(np.hypot(*per_source[:, 0])), float(np.hypot(*per_source[:, 1]))


def hr_grid(lr: Grid, scale: int, aoi: Window | None = None) -> tuple[Grid, Window]:
    """The output grid for ``lr`` at ``scale`` and the LR window it covers (the whole scene or the AOI's)."""
    if scale < 1 or int(scale) != scale:
        raise OptionError(f"the scale factor must be a positive whole number, not {scale}")
    window = aoi if aoi is not None else Window(0, 0, lr.width, lr.height)
    return lr.subgrid(window).refined(int(scale)), window


def outline(grid: Grid, points: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the grid's outline in its CRS, clockwise from the top-left pixel corner, ``points`` per side: the
    transform's own quadrilateral (rotated or sheared as it is), dense enough to curve in another CRS."""
    t = np.linspace(0.0, 1.0, points, endpoint=False)
    w, h = grid.width, grid.height
    cols = np.concatenate([t * w, np.full_like(t, w), (1 - t) * w, np.zeros_like(t)])
    rows = np.concatenate([np.zeros_like(t), t * h, np.full_like(t, h), (1 - t) * h])
    a, b, c, d, e, f = grid.transform[:6]
    return a * cols + b * rows + c, d * cols + e * rows + f
