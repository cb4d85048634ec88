"""``rasterize_osm``: OpenStreetMap features as a class raster (COG) on a chosen grid; the CLI mirrors it.

Grids come from ``bbox`` (WGS84 LEFT BOTTOM RIGHT TOP) + ``resolution`` (+ ``crs``, default: the local
UTM zone), or from ``like`` (+ ``scale``), which gives exactly the HR grid ``geosr upscale -x scale``
builds from that raster (:func:`geosr.tiling.grid.hr_grid`). Features come from Overpass (online) or from
``osm_file``. See docs/osm-classes.md for the class table and the rasterizing rules.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from geosr._version import __version__
from geosr.errors import NoOverlapError, OptionError
from geosr.io.journal import clear_work_dir, work_dir_for
from geosr.io.lock import LOCK_NAME, JobLock
from geosr.io.outputs import check_output_path, remove_partials
from geosr.osm import classes as _classes
from geosr.osm.classes import ClassTable, resolve_class_table
from geosr.tiling.grid import Grid, hr_grid

STYLES = ("classes", "rgb")
MAX_BBOX_PIXELS = 20_000_000_000  # a --bbox grid beyond this is surely a wrong --resolution
IN_MEMORY_PIXELS = 1 << 26  # grids up to this many pixels are burned and written in one piece
BAND_PIXELS = 1 << 24  # larger grids are burned in row bands of about this many pixels

#: ``progress(stage, done, total)``; stages: "read", "prepare", "rasterize", "write".
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class RasterizeOSMResult:
    """What :func:`rasterize_osm` wrote."""

    path: Path
    grid: Grid
    style: str
    class_table: str
    classes: list[str]
    pixel_counts: dict[str, int]
    feature_counts: dict[str, int]
    source: str
    timestamp: str | None
    timestamp_kind: str | None
    seconds: float
    tags: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        total = max(1, self.grid.width * self.grid.height)
        return {
            "output": str(self.path),
            "crs": self.grid.crs.to_string(),
            "transform": list(self.grid.transform)[:6],
            "width": self.grid.width,
            "height": self.grid.height,
            "resolution": list(self.grid.res),
            "bounds": list(self.grid.bounds),
            "style": self.style,
            "class_table": self.class_table,
            "classes": self.classes,
            "pixels": self.pixel_counts,
            "fractions": {k: round(v / total, 6) for k, v in self.pixel_counts.items()},
            "features": self.feature_counts,
            "source": self.source,
            "timestamp": self.timestamp,
            "timestamp_kind": self.timestamp_kind,
            "seconds": round(self.seconds, 3),
        }


# --- grids -------------------------------------------------------------------------------------------
def check_bbox(bbox: Sequence[float]) -> tuple[float, float, float, float]:
    """Validate ``--bbox LEFT BOTTOM RIGHT TOP`` (WGS84 degrees); one sentence for each mistake."""
    try:
        values = [float(v) for v in bbox]
    except (TypeError, ValueError):
        raise OptionError("--bbox must be four numbers: LEFT BOTTOM RIGHT TOP (west south east north)") from None
    if len(values) != 4:
        raise OptionError("--bbox must be four numbers: LEFT BOTTOM RIGHT TOP (west south east north)")
    left, bottom, right, top = values
    if not all(math.isfinite(v) for v in values):
        raise OptionError("--bbox holds a value that is not a finite number")
    if not (-180 <= left <= 180 and -180 <= right <= 180):
        raise OptionError(
            f"--bbox longitude {left if not -180 <= left <= 180 else right:g} is outside -180..180 "
            "(the order is LEFT BOTTOM RIGHT TOP = west south east north, in WGS84 degrees)"
        )
    if not (-90 <= bottom <= 90 and -90 <= top <= 90):
        bad = bottom if not -90 <= bottom <= 90 else top
        hint = "; did you give latitude before longitude?" if -180 <= bad <= 180 else ""
        raise OptionError(
            f"--bbox latitude {bad:g} is outside -90..90 "
            f"(the order is LEFT BOTTOM RIGHT TOP = west south east north, in WGS84 degrees){hint}"
        )
    if left == right or bottom == top:
        raise OptionError("--bbox is an empty area (LEFT equals RIGHT or BOTTOM equals TOP)")
    if left > right:
        raise OptionError(
            f"--bbox is inverted: LEFT {left:g} is east of RIGHT {right:g} (the order is LEFT BOTTOM RIGHT TOP; "
            "boxes across the antimeridian are not supported)"
        )
    if bottom > top:
        raise OptionError(
            f"--bbox is inverted: BOTTOM {bottom:g} is north of TOP {top:g} (the order is LEFT BOTTOM RIGHT TOP)"
        )
    return left, bottom, right, top


def parse_crs(value: str | CRS) -> CRS:
    """``--crs`` as a rasterio CRS; one sentence when PROJ does not know it."""
    if isinstance(value, CRS):
        return value
    try:
        crs = CRS.from_user_input(str(value).strip())
    except Exception:  # noqa: BLE001 - CRSError and friends
        raise OptionError(f"--crs {value!r}: not a coordinate reference system PROJ knows (try e.g. EPSG:32633)") from None
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
        raise OptionError(f"--resolution {resolution!r} is not a number of metres") from None
    if not math.isfinite(res) or res <= 0:
        raise OptionError(f"--resolution {resolution!r} must be a positive number of metres")
    if crs is None:
        from geosr.osm.rasterize import utm_crs

        lat = (bottom + top) / 2
        if not -80 <= lat <= 84:
            raise OptionError(
                f"--bbox is at latitude {lat:.1f}, outside the UTM zones; give a --crs (e.g. EPSG:3413 or EPSG:3031)"
            )
        target = CRS.from_string(utm_crs((left + right) / 2, lat))
    else:
        target = parse_crs(crs)
    if target.is_geographic:
        raise OptionError(
            f"--crs {target.to_string()} is geographic (degrees); use a projected CRS so that --resolution is in metres"
        )
    units = target.linear_units_factor[1] if target.linear_units_factor else 1.0
    step = res / units  # metres -> CRS units (the CRS's nominal unit; e.g. US feet)
    try:
        x0, y0, x1, y1 = transform_bounds("EPSG:4326", target, left, bottom, right, top, densify_pts=21)
    except Exception:  # noqa: BLE001
        raise OptionError(f"--bbox cannot be projected into --crs {target.to_string()}") from None
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or x1 <= x0 or y1 <= y0:
        raise OptionError(f"--bbox lies outside the area where --crs {target.to_string()} is defined")
    eps = 1e-9
    gx0 = math.floor(x0 / step + eps) * step
    gy1 = math.ceil(y1 / step - eps) * step
    width = max(1, math.ceil((x1 - gx0) / step - eps))
    height = max(1, math.ceil((gy1 - y0) / step - eps))
    if width * height > MAX_BBOX_PIXELS:
        raise OptionError(
            f"--resolution {res:g} m would make a {width} x {height} pixel grid; choose a coarser resolution"
        )
    return Grid(target, Affine(step, 0.0, gx0, 0.0, -step, gy1), width, height)


def like_grid(
    like: str | os.PathLike[str], scale: int = 1, *, aoi: str | None = None, aoi_crs: str = "EPSG:4326"
) -> Grid:
    """Exactly the HR grid ``geosr upscale like -x scale [--aoi AOI --aoi-crs CRS]`` builds."""
    from geosr.io.aoi import aoi_window
    from geosr.io.rasters import inspect_raster

    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise OptionError(f"-x/--scale {scale!r} must be a positive whole number")
    info = inspect_raster(like)
    window = aoi_window(aoi, info.grid, aoi_crs=aoi_crs) if aoi else None
    return hr_grid(info.grid, int(scale), window)[0]


def plan_grid(
    *,
    bbox: Sequence[float] | None = None,
    crs: str | CRS | None = None,
    resolution: float | None = None,
    like: str | os.PathLike[str] | None = None,
    scale: int | None = None,
    aoi: str | None = None,
    aoi_crs: str = "EPSG:4326",
) -> Grid:
    """The output grid from either ``bbox`` + ``resolution`` (+ ``crs``) or ``like`` (+ ``scale``, ``aoi``)."""
    _check_grid_options(bbox=bbox, crs=crs, resolution=resolution, like=like, scale=scale, aoi=aoi)
    if like is not None:
        return like_grid(like, 1 if scale is None else scale, aoi=aoi, aoi_crs=aoi_crs)
    return bbox_grid(bbox, resolution, crs)  # type: ignore[arg-type]


def _check_grid_options(*, bbox, crs, resolution, like, scale, aoi=None) -> None:
    if bbox is None and like is None:
        raise OptionError("give the grid: --bbox LEFT BOTTOM RIGHT TOP with --resolution, or --like RASTER")
    if bbox is not None and like is not None:
        raise OptionError("--bbox and --like cannot be used together; give one of them")
    if like is not None:
        if resolution is not None:
            raise OptionError("--resolution applies to --bbox only; with --like the grid is the raster's (use -x)")
        if crs is not None:
            raise OptionError("--crs applies to --bbox only; with --like the grid keeps the raster's CRS")
    else:
        if scale is not None and scale != 1:
            raise OptionError("-x/--scale applies to --like only; with --bbox give --resolution")
        if aoi is not None:
            raise OptionError("--aoi applies to --like only; with --bbox the box is the area")
        if resolution is None:
            raise OptionError("--bbox needs --resolution (the pixel size in metres)")


# --- the whole job -----------------------------------------------------------------------------------
def load_features(
    grid: Grid,
    table: ClassTable,
    *,
    osm_file: str | os.PathLike[str] | None = None,
    timeout: float = 180.0,
    overpass_url: str | None = None,
    date: str | None = None,
    cache_folder: str | os.PathLike[str] | None = None,
):
    """OSM features of ``table`` around ``grid`` (:class:`~geosr.osm.sources.OSMFeatures`)."""
    from geosr.osm import sources

    polygon = query_area(grid, table)
    if osm_file is not None:
        return sources.read_osm_file(osm_file, polygon, table)
    return sources.fetch_overpass(
        polygon, table, timeout=timeout, cache_folder=cache_folder, overpass_url=overpass_url, date=date
    )


def query_area(grid: Grid, table: ClassTable):
    """The WGS84 polygon features are fetched for: the grid grown by half the widest line + two pixels.

    Lines just outside the grid still reach into it once buffered, so they are fetched too.
    """
    from geosr.osm.rasterize import query_polygon

    return query_polygon(grid, table.max_line_width() / 2 + 2 * _pixel_metres(grid))


def _pixel_metres(grid: Grid) -> float:
    from geosr.osm.rasterize import grid_centre_lonlat, metres_to_units

    lon, lat = grid_centre_lonlat(grid)
    if grid.crs.is_geographic:
        return max(grid.res) * 111_320.0
    return max(grid.res) / metres_to_units(grid.crs, lon, lat)


def rasterize_osm_grid(
    grid: Grid,
    *,
    osm_file: str | os.PathLike[str] | None = None,
    classes: ClassTable | str | os.PathLike[str] | None = None,
    timeout: float = 180.0,
    overpass_url: str | None = None,
    date: str | None = None,
    cache_folder: str | os.PathLike[str] | None = None,
) -> tuple[np.ndarray, Any]:
    """In-memory variant for the pipeline: the (h, w) uint8 class array on ``grid`` and the features used.

    Empty areas give an all-background array (no error); use :func:`rasterize_osm` for files.
    """
    from geosr.osm.rasterize import burn, prepare

    table = resolve_class_table(classes)
    feats = load_features(
        grid, table, osm_file=osm_file, timeout=timeout, overpass_url=overpass_url, date=date,
        cache_folder=cache_folder,
    )
    return burn(prepare(feats.frame, table, grid), grid), feats


def rasterize_osm(
    output: str | os.PathLike[str],
    *,
    bbox: Sequence[float] | None = None,
    crs: str | CRS | None = None,
    resolution: float | None = None,
    like: str | os.PathLike[str] | None = None,
    scale: int | None = None,
    aoi: str | None = None,
    aoi_crs: str = "EPSG:4326",
    osm_file: str | os.PathLike[str] | None = None,
    classes: ClassTable | str | os.PathLike[str] | None = None,
    style: str = "classes",
    timeout: float = 180.0,
    overpass_url: str | None = None,
    date: str | None = None,
    cache_folder: str | os.PathLike[str] | None = None,
    allow_empty: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> RasterizeOSMResult:
    """Burn OSM features into a class raster (or its RGB rendering) on a grid and write it as a COG.

    The grid: ``bbox`` = (LEFT, BOTTOM, RIGHT, TOP) in WGS84 degrees with ``resolution`` (metres) and
    ``crs`` (default: the UTM zone of the box centre); or ``like`` = a raster and ``scale`` (default 1),
    giving exactly ``geosr upscale -x scale``'s HR grid (cropped to ``aoi`` as upscale's ``--aoi`` does). Features: ``osm_file`` (.osm, .osm.bz2, .pbf,
    .gpkg, .geojson, .shp) or, without it, Overpass (``timeout`` seconds, ``overpass_url``, a ``date``
    snapshot, osmnx's cache in ``cache_folder``). ``classes``: a table or a JSON file (default
    :data:`~geosr.osm.classes.DEFAULT_MAP_CLASSES`). ``style``: "classes" (one uint8 band of class ids
    with a colour table) or "rgb" (three uint8 bands of the palette colours).

    Raises an :class:`~geosr.errors.InputError` (nothing written) for bad options, unreadable inputs, or
    an area without any feature of the table (unless ``allow_empty``); NetworkError when Overpass is
    unreachable.
    """
    from geosr.osm import sources

    t0 = time.perf_counter()
    report = progress or (lambda stage, done, total: None)
    # 1. options that need no I/O, then the output path, before any work
    if style not in STYLES:
        raise OptionError(f"--style {style!r}: choose one of {', '.join(STYLES)}")
    _check_grid_options(bbox=bbox, crs=crs, resolution=resolution, like=like, scale=scale, aoi=aoi)
    if bbox is not None:
        check_bbox(bbox)
    if crs is not None:
        parse_crs(crs)
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        raise OptionError(f"--timeout {timeout!r} must be a positive number of seconds")
    if osm_file is not None and (date is not None or overpass_url is not None):
        raise OptionError("--date and --overpass-url are for the online source; they cannot be used with --osm-file")
    snapshot = sources.parse_snapshot_date(date)
    inputs = [("raster --like", like), ("OSM file", osm_file),
              ("area of interest", aoi if aoi and Path(aoi).exists() else None),
              ("class table", classes if isinstance(classes, (str, os.PathLike)) and Path(classes).is_file() else None)]
    final = check_output_path(output, overwrite=overwrite, inputs=inputs)
    if osm_file is not None:
        sources.check_osm_file(osm_file)
    table = resolve_class_table(classes)
    grid = plan_grid(bbox=bbox, crs=crs, resolution=resolution, like=like, scale=scale, aoi=aoi, aoi_crs=aoi_crs)

    # 2. features
    report("read", 0, 1)
    feats = load_features(
        grid, table, osm_file=osm_file, timeout=timeout, overpass_url=overpass_url, date=snapshot,
        cache_folder=cache_folder,
    )
    report("read", 1, 1)
    from geosr.osm.rasterize import burn, prepare, render_rgb, row_bands

    report("prepare", 0, 1)
    shapes = prepare(feats.frame, table, grid)
    report("prepare", 1, 1)
    if len(shapes) == 0 and not allow_empty:
        where = feats.source
        raise NoOverlapError(
            f"{where}: has no feature of class table {table.name!r} inside the grid "
            f"({_describe_bounds(grid)}); nothing written (use --allow-empty for an all-background map)"
        )

    # 3. burn and write
    tags = _output_tags(table, style, feats)
    meta = _output_meta(table, style, tags)
    counts = np.zeros(len(table), dtype=np.int64)

    def pixels(classes_band: np.ndarray) -> np.ndarray:
        counts[:] += np.bincount(classes_band.ravel(), minlength=len(table))[: len(table)]
        return render_rgb(classes_band, table) if style == "rgb" else classes_band[None]

    from geosr.io.writer import stitch, to_cog, write_chunk, write_cog

    # every temporary file lives in the locked work folder beside the output: a second run on the same
    # output is refused, and what a killed run left there is cleared by the next one
    work = work_dir_for(final)
    with JobLock(work / LOCK_NAME, output=final):
        clear_work_dir(work, keep=(LOCK_NAME,))
        remove_partials(final)
        try:
            if grid.width * grid.height <= IN_MEMORY_PIXELS:
                report("rasterize", 0, 1)
                data = pixels(burn(shapes, grid))
                report("rasterize", 1, 1)
                report("write", 0, 1)
                write_cog(final, data, grid, meta, folder=work)
                report("write", 1, 1)
            else:
                bands = list(row_bands(grid, BAND_PIXELS))
                chunks: list[tuple[Path, int]] = []
                for i, (row, sub) in enumerate(bands):
                    report("rasterize", i, len(bands))
                    path = work / f"rows_{row:08d}.tif"
                    chunks.append((path, row))
                    write_chunk(path, pixels(burn(shapes, sub)), None, sub, meta)
                report("rasterize", len(bands), len(bands))
                report("write", 0, 1)
                stitch(chunks, grid, meta, work / "stitched.tif")
                to_cog(work / "stitched.tif", final, meta, folder=work)
                report("write", 1, 1)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    names = table.names
    return RasterizeOSMResult(
        path=final,
        grid=grid,
        style=style,
        class_table=table.name,
        classes=names,
        pixel_counts={names[i]: int(n) for i, n in enumerate(counts)},
        feature_counts=dict(shapes.features),
        source=feats.source,
        timestamp=feats.timestamp,
        timestamp_kind=feats.timestamp_kind,
        seconds=time.perf_counter() - t0,
        tags=tags,
    )


def _describe_bounds(grid: Grid) -> str:
    left, bottom, right, top = grid.bounds
    return f"{left:.6g} {bottom:.6g} {right:.6g} {top:.6g} in {grid.crs.to_string()}"


def _output_tags(table: ClassTable, style: str, feats: Any) -> dict[str, str]:
    from geosr.osm import sources

    tags = {
        **_classes.map_tags(table, style),
        "GEOSR_CLASS_TABLE_JSON": json.dumps(table.to_dict(), separators=(",", ":"), ensure_ascii=False),
        "GEOSR_VERSION": __version__,
        "OSM_ATTRIBUTION": sources.OSM_ATTRIBUTION,
        "OSM_LICENSE": sources.OSM_LICENSE,
        "OSM_SOURCE": feats.source,
    }
    if feats.timestamp:
        tags["OSM_TIMESTAMP"] = feats.timestamp
        tags["OSM_TIMESTAMP_KIND"] = feats.timestamp_kind or "unknown"
    return tags


def _output_meta(table: ClassTable, style: str, tags: dict[str, str]):
    from geosr.io.writer import OutputMeta

    if style == "rgb":
        return OutputMeta(
            dtype="uint8",
            count=3,
            descriptions=("red", "green", "blue"),
            colorinterp=("red", "green", "blue"),
            tags=tags,
            overview_resampling="nearest",
        )
    return OutputMeta(
        dtype="uint8",
        count=1,
        descriptions=("osm_class",),
        tags=tags,
        colormap=table.colormap(),
        overview_resampling="mode",
    )
