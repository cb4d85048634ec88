"""The output grid of a map: from a WGS84 box and a resolution, or exactly upscale's HR grid of a raster.

Grids come from ``bbox`` (WGS84 LEFT BOTTOM RIGHT TOP) + ``resolution`` (+ ``crs``, default: the local
UTM zone), or from ``like`` (+ ``scale``, ``aoi``), which gives exactly the HR grid ``geosr upscale -x scale``
builds from that raster (:func:`geosr.tiling.grid.hr_grid`). :class:`GridSpec` holds the options,
:func:`plan_grid` turns them into a :class:`~geosr.tiling.grid.Grid`. Every mistake is one sentence
(:class:`~geosr.errors.OptionError`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from typing import Any, Sequence

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from geosr.errors import OptionError
from geosr.tiling.grid import Grid, hr_grid

MAX_BBOX_PIXELS = 20_000_000_000  # a --bbox grid beyond this is surely a wrong --resolution
_FOUR_NUMBERS = "bbox must be four numbers: LEFT,BOTTOM,RIGHT,TOP (west,south,east,north)"


def check_bbox(bbox: Sequence[float] | str) -> tuple[float, float, float, float]:
    """Validate a box LEFT, BOTTOM, RIGHT, TOP in WGS84 degrees: four numbers, or one text "LEFT,BOTTOM,RIGHT,TOP"
    as ``aoi`` writes a box; one sentence for each mistake."""
    if isinstance(bbox, str):
        bbox = [p for p in bbox.replace(" ", ",").split(",") if p]
    try:
        values = [float(v) for v in bbox]
    except (TypeError, ValueError):
        raise OptionError(_FOUR_NUMBERS, param="bbox") from None
    if len(values) != 4:
        raise OptionError(_FOUR_NUMBERS, param="bbox")
    left, bottom, right, top = values
    if not all(math.isfinite(v) for v in values):
        raise OptionError("bbox holds a value that is not a finite number", param="bbox")
    if not (-180 <= left <= 180 and -180 <= right <= 180):
        raise OptionError(
            f"bbox longitude {left if not -180 <= left <= 180 else right:g} is outside -180..180 "
            "(the order is LEFT,BOTTOM,RIGHT,TOP = west,south,east,north, in WGS84 degrees)", param="bbox"
        )
    if not (-90 <= bottom <= 90 and -90 <= top <= 90):
        bad = bottom if not -90 <= bottom <= 90 else top
        hint = "; did you give latitude before longitude?" if -180 <= bad <= 180 else ""
        raise OptionError(
            f"bbox latitude {bad:g} is outside -90..90 "
            f"(the order is LEFT,BOTTOM,RIGHT,TOP = west,south,east,north, in WGS84 degrees){hint}", param="bbox"
        )
    if left == right or bottom == top:
        raise OptionError("bbox is an empty area (LEFT equals RIGHT or BOTTOM equals TOP)", param="bbox")
    if left > right:
        raise OptionError(
            f"bbox is inverted: LEFT {left:g} is east of RIGHT {right:g} (the order is LEFT,BOTTOM,RIGHT,TOP; "
            "boxes across the antimeridian are not supported)", param="bbox"
        )
    if bottom > top:
        raise OptionError(
            f"bbox is inverted: BOTTOM {bottom:g} is north of TOP {top:g} (the order is LEFT,BOTTOM,RIGHT,TOP)",
            param="bbox",
        )
    return left, bottom, right, top


def parse_crs(value: str | CRS) -> CRS:
    """``--crs`` as a rasterio CRS; one sentence when PROJ does not know it."""
    if isinstance(value, CRS):
        return value
    import rasterio

    try:
        with rasterio.Env():  # GDAL's errors become the exception alone (no "ERROR 1: PROJ: ..." line on stderr)
            crs = CRS.from_user_input(str(value).strip())
    except Exception:  # noqa: BLE001 - CRSError and friends
        raise OptionError(
            f"crs {value!r}: not a coordinate reference system PROJ knows (try e.g. EPSG:32633)", param="crs"
        ) from None
    return crs


def bbox_grid(bbox: Sequence[float], resolution: float, crs: str | CRS | None = None) -> Grid:
    """A north-up grid covering ``bbox`` (WGS84) in ``crs`` (default: local UTM) with square pixels.

    The pixel edges are aligned to whole multiples of ``resolution`` in the CRS (like ``gdalwarp -tap``),
    so grids of neighbouring boxes line up; the grid covers the whole box.
    """
    from rasterio.warp import transform_bounds

    left, bottom, right, top = check_bbox(bbox)
    try:
        res = float(resolution)
    except (TypeError, ValueError):
        raise OptionError(f"resolution {resolution!r} is not a number of metres", param="resolution") from None
    if not math.isfinite(res) or res <= 0:
        raise OptionError(f"resolution {resolution!r} must be a positive number of metres", param="resolution")
    if crs is None:
        from geosr.osm.rasterize import utm_crs

        lat = (bottom + top) / 2
        if not -80 <= lat <= 84:
            raise OptionError(
                f"bbox is at latitude {lat:.6g} (its centre), outside the UTM zones (80 S to 84 N); give a `crs` "
                "(e.g. EPSG:3413 or EPSG:3031)",
                param="bbox",
            )
        target = CRS.from_string(utm_crs((left + right) / 2, lat))
    else:
        target = parse_crs(crs)
    if target.is_geographic:
        raise OptionError(
            f"crs {target.to_string()} is geographic (degrees); use a projected CRS so that `resolution` is in metres",
            param="crs",
        )
    units = target.linear_units_factor[1] if target.linear_units_factor else 1.0
    step = res / units  # metres -> CRS units (the CRS's nominal unit; e.g. US feet)
    try:
        x0, y0, x1, y1 = transform_bounds("EPSG:4326", target, left, bottom, right, top, densify_pts=21)
    except Exception:  # noqa: BLE001
        raise OptionError(f"bbox cannot be projected into `crs` {target.to_string()}", param="bbox") from None
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or x1 <= x0 or y1 <= y0:
        raise OptionError(f"bbox lies outside the area where `crs` {target.to_string()} is defined", param="bbox")
    side = max(x1 - x0, y1 - y0)
    if step > 10 * side:  # one pixel reaching far beyond the box (5000 km: "crosses the antimeridian" at 11 E)
        raise OptionError(f"resolution {res:g} m is coarser than the box itself (about {side * units:.0f} m a side); "
                          "choose a finer resolution", param="resolution")
    eps = 1e-9
    gx0 = math.floor(x0 / step + eps) * step
    gy1 = math.ceil(y1 / step - eps) * step
    width = max(1, math.ceil((x1 - gx0) / step - eps))
    height = max(1, math.ceil((gy1 - y0) / step - eps))
    if width * height > MAX_BBOX_PIXELS:
        raise OptionError(
            f"resolution {res:g} m would make a {width} x {height} pixel grid; choose a coarser resolution",
            param="resolution",
        )
    return Grid(target, Affine(step, 0.0, gx0, 0.0, -step, gy1), width, height)


def like_grid(
    like: str | os.PathLike[str], scale: int = 1, *, aoi: str | None = None, aoi_crs: str = "EPSG:4326"
) -> Grid:
    """Exactly the HR grid ``geosr upscale like -x scale [--aoi AOI --aoi-crs CRS]`` builds."""
    from geosr.io.aoi import aoi_window
    from geosr.io.rasters import inspect_raster

    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise OptionError(f"scale {scale!r} must be a positive whole number", param="scale")
    info = inspect_raster(like, grid_only=True)
    window = aoi_window(aoi, info.grid, aoi_crs=aoi_crs) if aoi else None
    grid = hr_grid(info.grid, int(scale), window)[0]
    if grid.width * grid.height > MAX_BBOX_PIXELS:
        raise OptionError(f"scale {scale} would make a {grid.width} x {grid.height} pixel grid of {like}; choose a "
                          "smaller scale", param="scale")
    return grid


@dataclass(frozen=True, kw_only=True)
class GridSpec:
    """The grid options: ``bbox`` = (LEFT, BOTTOM, RIGHT, TOP) in WGS84 degrees with ``resolution`` (metres)
    and ``crs`` (default: the UTM zone of the box centre); or ``like`` = a raster and ``scale`` (default 1),
    cropped to ``aoi`` (a box in ``aoi_crs`` or a vector file) as ``geosr upscale --aoi`` does."""

    bbox: Sequence[float] | str | None = None  # (LEFT, BOTTOM, RIGHT, TOP) or "LEFT,BOTTOM,RIGHT,TOP"
    crs: str | CRS | None = None
    resolution: float | None = None
    like: str | os.PathLike[str] | None = None
    scale: int | None = None
    aoi: str | None = None
    aoi_crs: str = "EPSG:4326"

    def check(self) -> None:
        """Every check that needs no I/O: conflicting options, the box, the CRS."""
        self._check_combination()
        if self.bbox is not None:
            check_bbox(self.bbox)
        if self.crs is not None:
            parse_crs(self.crs)

    def plan(self) -> Grid:
        """The grid (reads ``like`` and a vector ``aoi``)."""
        self._check_combination()
        if self.like is not None:
            grid = like_grid(self.like, 1 if self.scale is None else self.scale, aoi=self.aoi, aoi_crs=self.aoi_crs)
        else:
            grid = bbox_grid(self.bbox, self.resolution, self.crs)  # type: ignore[arg-type]
        _refuse_other_angles(grid, *(("like", f"{self.like}: its CRS ") if self.like is not None else ("crs", "")))
        return grid

    def _check_combination(self) -> None:
        if self.bbox is None and self.like is None:
            raise OptionError("give the grid: `bbox` LEFT,BOTTOM,RIGHT,TOP with `resolution`, or `like` RASTER")
        if self.bbox is not None and self.like is not None:
            raise OptionError("bbox and `like` cannot be used together; give one of them", param="bbox")
        if self.aoi is None and self.aoi_crs != "EPSG:4326":  # (it would be ignored, a typo in it unnoticed)
            raise OptionError("aoi_crs applies to `aoi` only (the CRS of an area-of-interest box)", param="aoi_crs")
        if self.like is not None:
            if self.resolution is not None:
                raise OptionError("resolution applies to `bbox` only; with `like` the grid is the raster's "
                                  "(use `scale`)", param="resolution")
            if self.crs is not None:
                raise OptionError("crs applies to `bbox` only; with `like` the grid keeps the raster's CRS",
                                  param="crs")
        else:
            if self.scale is not None and self.scale != 1:
                raise OptionError("scale applies to `like` only; with `bbox` give `resolution`", param="scale")
            if self.aoi is not None:
                raise OptionError("aoi applies to `like` only; with `bbox` the box is the area", param="aoi")
            if self.resolution is None:
                raise OptionError("bbox needs `resolution` (the pixel size in metres)", param="bbox")


def _refuse_other_angles(grid: Grid, param: str, whose: str) -> None:
    """Refuse a geographic grid whose coordinates are not degrees from Greenwich (grads, the Paris meridian: NTF
    Paris, EPSG:4807): the map's search area, working zone and antimeridian checks read a geographic grid's
    coordinates as longitude and latitude, and would look elsewhere on Earth."""
    crs = grid.crs
    if crs is None or not crs.is_geographic:
        return
    from pyproj import CRS

    own = CRS.from_user_input(crs.to_wkt())
    units = {a.unit_name.lower() for a in own.axis_info if a.direction.lower() != "up"}  # (a 3D CRS's height)
    meridian = own.prime_meridian.longitude if own.prime_meridian is not None else 0.0
    if units - {"degree"} or abs(meridian) > 1e-9:
        what = f"{', '.join(sorted(units))}" + (f" from a prime meridian at {meridian:g}" if meridian else "")
        raise OptionError(f"{whose}{crs.to_string()} is a geographic CRS counting angles in {what}, not degrees from "
                          "Greenwich, which the map cannot be searched in; use EPSG:4326 or a projected CRS"
                          + (" (reproject the raster first)" if whose else ""), param=param)


def plan_grid(**options: Any) -> Grid:
    """The output grid from either ``bbox`` + ``resolution`` (+ ``crs``) or ``like`` (+ ``scale``, ``aoi``,
    ``aoi_crs``): the keywords of :class:`GridSpec`."""
    known = [f.name for f in fields(GridSpec)]
    unknown = sorted(set(options) - set(known))
    if unknown:  # (a raw TypeError from the dataclass; found in review)
        raise OptionError(f"unknown grid option {unknown[0]!r} (options: {', '.join(known)})", param=unknown[0])
    return GridSpec(**options).plan()
