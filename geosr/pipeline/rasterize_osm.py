"""``rasterize_osm``: OpenStreetMap features as a class raster (COG) on a chosen grid; the CLI mirrors it.

The grid comes from :mod:`geosr.osm.grid` (a WGS84 box and a resolution, or exactly upscale's HR grid of a
raster), the features from :mod:`geosr.osm.sources` (Overpass online, or a file offline), the burning
from :mod:`geosr.osm.rasterize`; the COG is written in row bands by :func:`geosr.io.writer.write_row_bands`
in the output's locked work folder. See docs/osm-classes.md for the class table and the rasterizing rules.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from geosr._version import __version__
from geosr.errors import NoOverlapError, OptionError, names_too_long_are_input_errors
from geosr.io import outputs
from geosr.io.journal import clear_work_dir, refuse_unfinished_upscale, work_dir_for
from geosr.io.lock import LOCK_NAME, JobLock
from geosr.io.outputs import (
    VECTOR_ROLE,
    check_raster_output_path,
    earlier_sidecars,
    remove_partials,
    remove_sidecars,
    writing,
)
from geosr.io.paths import recorded_options, vector_parts
from geosr.io.sources import member_inputs
from geosr.io.writer import OutputMeta, write_cog, write_row_bands
from geosr.options import RasterizeOSMOptions
from geosr.options.declare import check_callable, coerce
from geosr.osm.classes import MapClassTable, map_tags, resolve_map_classes
from geosr.osm.features import OSMFeatures
from geosr.osm.grid import GridSpec
from geosr.osm.inputs import check_osm_file
from geosr.osm.overpass import parse_snapshot_date
from geosr.osm.rasterize import BurnList, burn, draws_nothing, prepare, render_rgb, row_bands
from geosr.osm.sources import OSM_ATTRIBUTION, OSM_LICENSE, load_features
from geosr.tiling.grid import Grid

IN_MEMORY_PIXELS = 1 << 26  # grids up to this many pixels are burned and written in one piece
BAND_PIXELS = 1 << 24  # larger grids are burned in row bands of about this many pixels

#: ``progress(stage, done, total)``; stages: "read", "prepare", "rasterize", "write".
Progress = Callable[[str, int, int], None]


NODATA_CLASS = 255  # a class map's nodata, outside the data an OSM file holds (class ids end at 254)


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
    warnings: list[str] = field(default_factory=list)
    nodata_pixels: int = 0  # outside the bounds an OSM file declares (class maps: nodata, NODATA_CLASS)

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
            "nodata_pixels": self.nodata_pixels,
            "nodata_fraction": round(self.nodata_pixels / total, 6),
            "features": self.feature_counts,
            "source": self.source,
            "timestamp": self.timestamp,
            "timestamp_kind": self.timestamp_kind,
            "seconds": round(self.seconds, 3),
            "warnings": list(self.warnings),
        }


@names_too_long_are_input_errors
def rasterize_osm(
    output: str | os.PathLike[str],
    *,
    options: RasterizeOSMOptions | None = None,
    progress: Progress | None = None,
    **fields: Any,
) -> RasterizeOSMResult:
    """Burn OSM features into a class raster (or its RGB rendering) on a grid and write it as a COG.

    ``options`` is a :class:`~geosr.options.RasterizeOSMOptions`; ``fields`` set or override its fields. The
    grid: ``bbox`` = (LEFT, BOTTOM, RIGHT, TOP) or "LEFT,BOTTOM,RIGHT,TOP" in WGS84 degrees with ``resolution``
    (metres) and ``crs`` (default: the UTM zone of the box centre); or ``like`` = a raster and ``scale``
    (default 1), giving exactly ``geosr upscale -x scale``'s HR grid (cropped to ``aoi`` in ``aoi_crs`` as
    upscale's ``--aoi`` does). Features: ``osm_file`` (.osm, .osm.bz2, .pbf, .gpkg, .geojson, .shp) or,
    without it, Overpass (``timeout`` seconds, ``overpass_url``, a ``date`` snapshot, osmnx's cache in
    ``cache_folder``). ``classes``: a table or a JSON file (default
    :data:`~geosr.osm.classes.DEFAULT_MAP_CLASSES`). ``style``: "classes" (one uint8 band of class ids with a
    colour table) or "rgb" (three uint8 bands of the palette colours). ``overwrite``: replace an earlier map at
    ``output``.

    Raises an :class:`~geosr.errors.InputError` (nothing written) for bad options, unreadable inputs, or
    an area without any feature of the table (unless ``allow_empty``); NetworkError when Overpass is
    unreachable.
    """
    t0 = time.perf_counter()
    report = progress or (lambda stage, done, total: None)
    # 1. options that need no I/O, then the output path, before any work
    check_callable(progress, "progress", "(stage, done, total)")
    opts = RasterizeOSMOptions.of(options, **fields)
    if opts.classes is not None and not isinstance(opts.classes, (str, os.PathLike, MapClassTable)):
        # (a number or a dict went on to pathlib: a raw TypeError; found in review)
        raise OptionError(f"classes {opts.classes!r}: give a class table's file or a MapClassTable",
                          param="classes")
    if output is None:  # coerce passes None through
        raise OptionError("output is required: the map raster to write", param="output")
    output = coerce("output", output, Path)
    spec = GridSpec(**opts.grid())
    spec.check()
    snapshot = parse_snapshot_date(opts.date)
    final = check_raster_output_path(output, overwrite=opts.overwrite,
                                     inputs=_inputs(spec, opts.osm_file, opts.classes))
    refuse_unfinished_upscale(final, overwrite=opts.overwrite)
    stale = earlier_sidecars(final, overwrite=opts.overwrite)
    if opts.osm_file is not None:
        check_osm_file(opts.osm_file)
    table = resolve_map_classes(opts.classes)
    target = spec.plan()

    # 2. features
    report("read", 0, 1)
    feats = load_features(target, table, osm_file=opts.osm_file, timeout=opts.overpass_timeout,
                          overpass_url=opts.overpass_url, date=snapshot, cache_folder=opts.cache_folder,
                          overhang=spec.bbox is not None)
    report("read", 1, 1)
    report("prepare", 0, 1)
    shapes = prepare(feats.frame, table, target)
    report("prepare", 1, 1)
    if not opts.allow_empty and (len(shapes) == 0 or draws_nothing(shapes, target)):
        held = _declared_share(opts.osm_file, target)
        if held is not None and held[0] < 0.001:  # the file holds another area: that, not an empty one, is the cause
            from geosr.osm.files import bounds_named

            west, south, east, north = held[1]
            raise NoOverlapError(
                f"{feats.source}: holds no OpenStreetMap data for this area ({bounds_named(opts.osm_file)}: "
                f"{west:.6f},{south:.6f},{east:.6f},{north:.6f} in degrees, the grid is {_describe_bounds(target)}); "
                "give a file of this area, or leave `osm_file` out to read it online"
            )
        # features over the grid, none with a column the table reads (SpaceNet's road_type, paved...): said, as a
        # vector file's columns are read as OSM tags ("no feature inside the grid" alone; found in review)
        untagged = (f"; its {len(feats.frame)} features there have none of the keys the table reads "
                    f"({', '.join(sorted(table.keys()))}) as a column, and a vector file's columns are read as OSM "
                    "tags" if len(feats.frame) and not table.keys() & set(feats.frame.columns) else "")
        parts = sum(shapes.features.values())
        edge = f" that covers a pixel's centre (the {parts} feature part{'s' * (parts != 1)} reaching it " \
            f"cover{'s' * (parts == 1)} none)" if len(shapes) else " inside the grid"
        raise NoOverlapError(
            f"{feats.source}: has no feature of class table {table.name!r}{edge} ({_describe_bounds(target)})"
            f"{untagged}; nothing written (use `allow_empty` for a map of background only)"
        )

    # 3. burn and write (a class map: nodata where the OSM file declares it holds no data)
    tags = _output_tags(table, opts.style, feats) | {"GEOSR_OPTIONS": recorded_options(opts.to_json(), opts.paths)}
    held = _held_area(opts.osm_file, target) if opts.style == "classes" else None
    meta = _output_meta(table, opts.style, tags)
    if held is not None:
        meta = replace(meta, nodata=NODATA_CLASS)
    counts, unread, outside = _write_map(final, target, shapes, table, opts.style, meta, report,
                                         outputs.still_free(final, overwrite=opts.overwrite), held)
    remove_sidecars(stale)
    return RasterizeOSMResult(
        path=final,
        grid=target,
        style=opts.style,
        class_table=table.name,
        classes=table.names,
        pixel_counts={name: int(n) for name, n in zip(table.names, counts)},
        feature_counts=dict(shapes.features),
        source=feats.source,
        timestamp=feats.timestamp,
        timestamp_kind=feats.timestamp_kind,
        seconds=time.perf_counter() - t0,
        tags=tags,
        # (a class map's share from its pixels: the degrees' box of a turned grid, polar ones, is far larger than
        # the grid, and the share it gave disagreed with the nodata written; found in review)
        warnings=_coverage_warnings(opts.osm_file, target, held is not None,
                                    None if held is None else 1 - outside / (target.width * target.height))
        + list(feats.warnings),
        nodata_pixels=unread,
    )


def rasterize_osm_grid(
    grid: Grid,
    *,
    osm_file: str | os.PathLike[str] | None = None,
    classes: MapClassTable | str | os.PathLike[str] | None = None,
    **source: Any,
) -> tuple[np.ndarray, OSMFeatures]:
    """In-memory variant for pipelines: the (h, w) uint8 class array on ``grid`` and the features used.

    ``source``: the online options of :func:`~geosr.osm.sources.load_features` (``timeout``,
    ``overpass_url``, ``date``, ``cache_folder``). Empty areas give an all-background array (no error),
    NODATA_CLASS where an OSM file's declared bounds leave the grid out (but for the features drawn there); use
    :func:`rasterize_osm` for files.
    """
    # checked as rasterize_osm checks them (a `date` beside `osm_file` was dropped without a word, an unknown
    # keyword or a grid that is none were raw TypeErrors; found in review)
    if not isinstance(grid, Grid):
        raise OptionError(f"grid {grid!r}: give a Grid (from plan_grid)", param="grid")
    overhang = coerce("overhang", source.pop("overhang", False), bool)  # load_features' own, passed on
    online = ("timeout", "overpass_url", "date", "cache_folder")
    unknown = sorted(set(source) - set(online))
    if unknown:
        raise OptionError(f"unknown rasterize_osm_grid option {unknown[0]!r} (the online source's options: "
                          f"{', '.join(online)}; and overhang)", param=unknown[0])
    opts = RasterizeOSMOptions.of(None, osm_file=osm_file, **source)
    if classes is not None and not isinstance(classes, (str, os.PathLike, MapClassTable)):
        raise OptionError(f"classes {classes!r}: give a class table's file or a MapClassTable", param="classes")
    if opts.osm_file is not None:
        check_osm_file(opts.osm_file)
    table = resolve_map_classes(classes)
    feats = load_features(grid, table, osm_file=opts.osm_file, timeout=opts.overpass_timeout,
                          overpass_url=opts.overpass_url, date=parse_snapshot_date(opts.date),
                          cache_folder=opts.cache_folder, overhang=overhang)
    classes = burn(prepare(feats.frame, table, grid), grid)
    held = _held_area(opts.osm_file, grid)
    if held is not None:
        _unread(classes, grid, held)
    return classes, feats


# --- the steps -----------------------------------------------------------------------------------------
def _inputs(spec: GridSpec, osm_file: Any, classes: Any) -> list[tuple[str, Any]]:
    """The files the job reads, which the output must not be (see :func:`check_output_path`)."""
    aoi_file = spec.aoi if spec.aoi and Path(spec.aoi).exists() else None
    table_file = classes if isinstance(classes, (str, os.PathLike)) and Path(classes).is_file() else None
    inputs = [("raster `like`", spec.like), ("OSM file", osm_file), (VECTOR_ROLE, aoi_file),
              ("class table", table_file)]
    parts = [(f"{role}'s file {Path(f).name}", f) for role, p in inputs[1:3] if isinstance(p, (str, os.PathLike))
             for f in vector_parts(p)]  # a shapefile's .shx, .dbf...
    return inputs + member_inputs(inputs[:1]) + parts  # a STAC item's, a Sentinel-2 product's or a band folder's


def _write_map(
    final: Path, grid: Grid, shapes: BurnList, table: MapClassTable, style: str, meta: OutputMeta,
    report: Progress, free: Callable[[], None], held: Any = None,
) -> tuple[np.ndarray, int, int]:
    """Burn ``shapes`` on ``grid`` and write the COG at ``final``; returns the pixel count of each class, of nodata
    (NODATA_CLASS outside ``held``, the area the data was read for in the grid's CRS; None: everywhere) and of the
    pixels outside ``held``.
    ``free()`` just before it is put in place: a file another run wrote there meanwhile was replaced, exit 0
    (review)."""
    counts = np.zeros(len(table), dtype=np.int64)
    unread = [0, 0]

    def pixels(classes_band: np.ndarray, sub: Grid) -> np.ndarray:
        if held is not None:
            n, beyond = _unread(classes_band, sub, held)
            unread[0] += n
            unread[1] += beyond
        counts[:] += np.bincount(classes_band.ravel(), minlength=len(table))[: len(table)]
        return render_rgb(classes_band, table) if style == "rgb" else classes_band[None]

    # every temporary file lives in the locked work folder beside the output: a second run on the same
    # output is refused, and what a killed run left there is cleared by the next one
    work = work_dir_for(final)
    with JobLock(work / LOCK_NAME, output=final):
        clear_work_dir(work, keep=(LOCK_NAME,))
        remove_partials(final)
        try:
            with writing(final, journal=False):  # a full disk: one sentence, exit 1
                if grid.width * grid.height <= IN_MEMORY_PIXELS:
                    report("rasterize", 0, 1)
                    data = pixels(burn(shapes, grid), grid)
                    report("rasterize", 1, 1)
                    report("write", 0, 1)
                    write_cog(final, data, grid, meta, folder=work, before_rename=free)
                    report("write", 1, 1)
                else:
                    bands = _burned_bands(shapes, grid, pixels, report)
                    write_row_bands(final, grid, meta, bands, work, progress=lambda d, t: report("write", d, t),
                                    before_rename=free)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return counts, unread[0], unread[1]


def _unread(classes: np.ndarray, grid: Grid, held: Any) -> tuple[int, int]:
    """Set NODATA_CLASS in ``classes`` on ``grid`` where nothing is drawn outside ``held`` (a feature drawn there
    stays: extracts hold the whole ways that cross their bounds; only "nothing mapped", which nothing read there can
    say, is unknown); return how many pixels it set, and how many lie outside ``held``."""
    from rasterio.features import geometry_mask

    outside = np.ones(classes.shape, bool) if held.is_empty else \
        geometry_mask([held], out_shape=classes.shape, transform=grid.transform)
    beyond = int(outside.sum())
    outside &= classes == 0
    classes[outside] = NODATA_CLASS
    return int(outside.sum()), beyond


def _burned_bands(
    shapes: BurnList, grid: Grid, pixels: Callable[[np.ndarray, Grid], np.ndarray], report: Progress
) -> Iterator[tuple[int, Grid, np.ndarray]]:
    """The bands of rows of ``grid`` (first row, band grid, pixels), each burned only when asked for."""
    bands = list(row_bands(grid, BAND_PIXELS))
    for i, (row, sub) in enumerate(bands):
        report("rasterize", i, len(bands))
        yield row, sub, pixels(burn(shapes, sub), sub)
    report("rasterize", len(bands), len(bands))


def _describe_bounds(grid: Grid) -> str:
    """The grid's bounds as a message gives them: whole-enough numbers (degrees to 6 decimals, else 2)."""
    digits = 6 if grid.crs.is_geographic else 2
    return f"{','.join(f'{v:.{digits}f}' for v in grid.bounds)} in {grid.crs.to_string()}"


def _declared_share(osm_file: str | None, grid: Grid) -> tuple[float, tuple[float, float, float, float]] | None:
    """The share of the grid an OSM file's declared bounds (:func:`~geosr.osm.files.declared_bounds`: all its boxes)
    cover, and the box around them (degrees); None when the file declares none (or there is no file)."""
    from rasterio.warp import transform_bounds
    from shapely.geometry import box
    from shapely.ops import unary_union

    from geosr.osm.files import declared_bounds

    held = declared_bounds(osm_file) if osm_file else None
    if not held:
        return None
    w, s, e, n = transform_bounds(grid.crs, "EPSG:4326", *grid.bounds, densify_pts=21)
    area = unary_union([box(*b) for b in held])
    inter = area.intersection(box(w, s, e, n)).area
    return inter / max(1e-12, (e - w) * (n - s)), tuple(float(v) for v in area.bounds)  # type: ignore[return-value]


def _coverage_warnings(osm_file: str | None, grid: Grid, nodata: bool = False,
                       share: float | None = None) -> list[str]:
    """A warning when an OSM file declares bounds that leave part of the grid out: there a class map is nodata
    (``nodata``), a rendered one "background", which says no feature was mapped, where none was loaded. ``share``:
    the share of the grid's pixels inside them, where counted (else the degrees' share)."""
    from geosr.osm.files import bounds_named

    held = _declared_share(osm_file, grid)
    if held is None or held[0] >= 0.999 or (share is not None and share >= 1):
        return []
    pct = 100 * (held[0] if share is None else share)  # (one decimal, below 99.9: "100%" would say nothing is out)
    share = f"{pct:.1f}%" if pct >= 0.1 or pct == 0 else "under 0.1%"
    there = f"nodata ({NODATA_CLASS}) but for the features drawn there, as nothing else there was read" if nodata \
        else "background, though nothing there was read"
    return [f"{Path(osm_file).name}: holds OpenStreetMap data for {share} of the grid ({bounds_named(osm_file)}); "
            f"outside it every pixel is {there}"]


def _held_area(osm_file: str | None, grid: Grid) -> Any:
    """The area an OSM file declares it holds data for (its bounds' boxes), in ``grid``'s CRS, where it leaves part
    of the grid out; None where it covers the grid, declares no bounds, or there is no file (pixels outside it were
    written as class 0, "background": no feature mapped, where none had been read; found in review)."""
    import shapely
    from pyproj import Transformer
    from rasterio.warp import transform_bounds
    from shapely.geometry import box
    from shapely.ops import unary_union

    from geosr.osm.files import declared_bounds

    share = _declared_share(osm_file, grid)
    if share is None or share[0] >= 0.999:
        return None
    # the boxes near the grid, their edges densified at a 256th of the grid (a degree box's sides are curves in most
    # CRSs: densified by the box's own size, a continent's edge landed 400 m off across a 1 m grid; found in review)
    west, south, east, north = transform_bounds(grid.crs, "EPSG:4326", *grid.bounds, densify_pts=21)
    step = max(1e-7, min(east - west, north - south) / 256)
    near = box(west - 64 * step, south - 64 * step, east + 64 * step, north + 64 * step)
    area = unary_union([box(*b) for b in declared_bounds(osm_file) or []]).intersection(near)
    if area.is_empty:
        return area  # (nothing of the grid: nodata wherever nothing is drawn)
    to_grid = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True)
    try:
        held = shapely.transform(area.segmentize(step),
                                 lambda xy: np.column_stack(to_grid.transform(xy[:, 0], xy[:, 1], errcheck=True)))
    except Exception:  # noqa: BLE001 - a box PROJ cannot carry to the grid: background there, as before, warned of
        return None
    return held if held.is_valid else None


def _output_tags(table: MapClassTable, style: str, feats: OSMFeatures) -> dict[str, str]:
    tags = {
        **map_tags(table, style),
        "GEOSR_CLASS_TABLE_JSON": json.dumps(table.to_dict(), separators=(",", ":"), ensure_ascii=False),
        "GEOSR_VERSION": __version__,
        "OSM_ATTRIBUTION": OSM_ATTRIBUTION,
        "OSM_LICENSE": OSM_LICENSE,
        "OSM_SOURCE": feats.source,
    }
    if feats.timestamp:
        tags["OSM_TIMESTAMP"] = feats.timestamp
        tags["OSM_TIMESTAMP_KIND"] = feats.timestamp_kind or "unknown"
    return tags


def _output_meta(table: MapClassTable, style: str, tags: dict[str, str]) -> OutputMeta:
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
        categories=dict(enumerate(table.names)),
        overview_resampling="mode",
    )
