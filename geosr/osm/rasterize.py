"""Burning OSM features into a class raster on a :class:`~geosr.tiling.grid.Grid`.

The rules (also in docs/osm-classes.md):

1. **Classes.** Each feature part (a polygon, or a line) takes the highest-priority class of the table
   whose tags match and which draws that kind of geometry (:meth:`MapClassTable.assign`); points are ignored.
2. **Reprojection.** Features are reprojected to the grid's CRS. Line widths are ground metres: they are
   converted to CRS units with the projection's scale factor at the grid centre (so a 10 m road is 10 m
   on the ground in Web Mercator too). Grids in a geographic CRS are prepared in the local UTM zone and
   the buffered shapes are reprojected onto the grid.
3. **Lines** are buffered (round caps and joins) to their class width, but never narrower than one pixel:
   a footway stays visible and unbroken at 30 m, and a motorway is wider than a footway whenever the
   pixels are finer than the motorway.
4. **Areas** (polygons with their holes, multipolygons) are burned with the pixel-centre rule: a pixel
   takes the class when its centre is inside. This keeps each class's total area unbiased at any
   resolution; an area smaller than a pixel may fall between centres and disappear.
5. **Burn order**: ascending class priority (default table: land cover, then water, then railways, then
   roads, then buildings), so later classes cover earlier ones; within one priority larger features are
   burned first, so a feature mapped inside another (a wood in a park, a car park on a farmyard) stays
   visible. Ties keep the input order.

Pure functions over numpy / shapely / rasterio: no osmnx, no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import numpy as np

from geosr.errors import OptionError
from geosr.osm.classes import MapClassTable
from geosr.tiling.grid import Grid

if TYPE_CHECKING:  # pragma: no cover
    import geopandas as gpd
    from shapely.geometry.base import BaseGeometry

QUAD_SEGS = 4  # buffer roundness: 4 segments per quarter circle are plenty at one pixel


@dataclass(frozen=True)
class BurnList:
    """Shapes in the grid's CRS, in burn order, with their class ids; and a spatial index over them."""

    geoms: np.ndarray  # shapely geometries
    values: np.ndarray  # uint8 class ids
    features: dict[str, int]  # drawn feature parts per class name

    def __len__(self) -> int:
        return len(self.values)

    @property
    def tree(self):
        tree = getattr(self, "_tree", None)
        if tree is None:
            import shapely

            tree = shapely.STRtree(self.geoms)
            object.__setattr__(self, "_tree", tree)
        return tree


# --- CRS helpers -------------------------------------------------------------------------------------
def grid_centre_lonlat(grid: Grid) -> tuple[float, float]:
    """Longitude and latitude of the grid's centre."""
    from pyproj import Transformer

    x, y = grid.transform @ (grid.width / 2.0, grid.height / 2.0)
    if grid.crs.is_geographic:
        return float(x), float(y)
    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(x, y)
    return float(lon), float(lat)


def utm_crs(lon: float, lat: float) -> str:
    """The WGS 84 / UTM zone of a point (EPSG:326zz north, 327zz south); the regular 6° zones."""
    zone = min(60, max(1, int(math.floor((lon + 180.0) / 6.0)) + 1))
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"


def _scales_at(crs, lon: float, lat: float) -> tuple[float, tuple[float, float] | None]:
    """(metres per CRS unit, (meridional scale, parallel scale)) of a projected CRS at (lon, lat): the unit 1 where
    the CRS names none, the scales None where PROJ has no factors for the CRS."""
    from pyproj import CRS as ProjCRS
    from pyproj import Proj

    pc = ProjCRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") else crs)
    try:
        unit = float(pc.axis_info[0].unit_conversion_factor) or 1.0
    except (IndexError, AttributeError):
        unit = 1.0
    try:
        f = Proj(pc).get_factors(lon, lat)
        return unit, (float(f.meridional_scale), float(f.parallel_scale))
    except Exception:  # noqa: BLE001 - some CRSs have no factors
        return unit, None


def _convergence(crs, lons: np.ndarray, lats: np.ndarray) -> float:
    """The largest meridian convergence (degrees, absolute) of a projected CRS at the points (lons, lats): how far
    grid north turns from true north there; 0 where PROJ has no factors for the CRS."""
    from pyproj import CRS as ProjCRS
    from pyproj import Proj

    try:
        pc = ProjCRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") else crs)
        values = np.abs(np.asarray(Proj(pc).get_factors(lons, lats).meridian_convergence, dtype=float))
    except Exception:  # noqa: BLE001 - some CRSs have no factors
        return 0.0
    values = values[np.isfinite(values)]
    return float(min(values.max(), 45.0)) if values.size else 0.0


def metres_to_units(crs, lon: float, lat: float) -> float:
    """How many CRS units one ground metre spans at (lon, lat) in a projected CRS.

    The unit's length in metres and the projection's point scale factor (geometric mean of the
    meridional and parallel scales; Web Mercator at 38° N gives 1.27) are both taken into account.
    """
    unit, scales = _scales_at(crs, lon, lat)
    k = math.sqrt(scales[0] * scales[1]) if scales and scales[0] * scales[1] >= 0 else math.nan
    return (k if math.isfinite(k) and k > 0 else 1.0) / unit  # (no factors: true scale assumed)


def _stretches(crs, lon: float, lat: float) -> bool:
    """Whether a projected CRS's scale at (lon, lat) differs by direction: meridional and parallel scales more than
    2% apart (plate carree, an equal-area projection far from its centre; not a conformal one). A CRS without
    factors is taken in its own units, as before."""
    try:
        _, scales = _scales_at(crs, lon, lat)
    except Exception:  # noqa: BLE001 - a CRS PROJ cannot take: its own units too
        return False
    if scales is None or scales[1] == 0:
        return False
    ratio = scales[0] / scales[1]
    return not (math.isfinite(ratio) and abs(ratio - 1.0) <= 0.02)


def _pixel_ground_size(crs, lon: float, lat: float, res: tuple[float, float]) -> float:
    """The larger of a pixel's ground sizes (metres) at (lon, lat) in a projected CRS that stretches one way: a line
    as wide covers a pixel whichever way it runs (the mean of the two scales, plate carree's at 60 N, left an
    east-west line 0.7 px tall and broken; found in review). Without factors: the mean scale's size."""
    unit, scales = _scales_at(crs, lon, lat)
    size = max(res[0] * unit / scales[1], res[1] * unit / scales[0]) if scales and all(scales) else math.nan
    return size if math.isfinite(size) and size > 0 else max(res) / metres_to_units(crs, lon, lat)


def footprint(grid: Grid) -> "BaseGeometry":
    """The grid's outline as a polygon in its CRS (exact for rotated grids too)."""
    from shapely.geometry import Polygon

    corners = [grid.transform @ c for c in ((0, 0), (grid.width, 0), (grid.width, grid.height), (0, grid.height))]
    return Polygon(corners)


def query_polygon(grid: Grid, margin_m: float = 0.0, densify: int = 16, *,
                  overhang: bool = False) -> "BaseGeometry":
    """The grid's outline grown by ``margin_m`` metres, in WGS84 lon/lat (edges densified). A grid across 180
    degrees is refused; with ``overhang`` (a grid planned to cover a box that ends at 180), one that reaches past it
    by at most two pixels and the width an upright grid takes to cover the meridian its CRS's convergence tilts is
    queried up to 180: that strip lies outside the box asked for."""
    import shapely
    from pyproj import Transformer
    from shapely.geometry import Polygon

    lon, lat = grid_centre_lonlat(grid)
    outline = footprint(grid)
    if grid.crs.is_geographic:
        grow = margin_m / 111_320.0 / max(0.05, math.cos(math.radians(lat)))
        _refuse_across_antimeridian(np.asarray(outline.exterior.coords)[:, 0])
        if grow <= 0:
            return outline
        return outline.buffer(grow, join_style="mitre").intersection(shapely.box(-180, -90, 180, 90))
    to_lonlat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)

    def lonlat_ring(shape: "BaseGeometry") -> tuple[np.ndarray, np.ndarray]:
        ring = shapely.segmentize(shape.exterior, shape.exterior.length / (4 * densify))
        xs, ys = np.asarray(ring.coords).T
        lons, lats = to_lonlat.transform(xs, ys)
        return np.asarray(lons), np.asarray(lats)

    own, own_lat = lonlat_ring(outline)
    # the grid itself (its margin alone may reach beyond 180: cut there below); a box's grid may overhang 180 (a box
    # ending at 180 degrees, its UTM grid upright, was refused; found in review), a `like` grid may not: its strip
    # past 180 would be left background without a word
    slack = 0.0
    if overhang:
        reach_m = (2 * max(abs(grid.res[0]), abs(grid.res[1])) + grid.height * abs(grid.res[1])
                   * math.tan(math.radians(_convergence(grid.crs, own, own_lat)))) / metres_to_units(grid.crs, lon, lat)
        slack = reach_m / 111_320.0 / max(0.05, math.cos(math.radians(lat)))
    _refuse_across_antimeridian(own, slack=slack)
    grow = margin_m * metres_to_units(grid.crs, lon, lat)
    if grow > 0:
        outline = outline.buffer(grow, join_style="mitre")
    lons, lats = lonlat_ring(outline)
    across = lons.size > 1 and np.abs(np.diff(lons)).max() > 180
    if across:  # numbered on the grid's side of 180 degrees, then cut at it
        side = float(np.median(own))
        lons = np.where(lons - side > 180, lons - 360, np.where(lons - side < -180, lons + 360, lons))
    poly = Polygon(zip(lons, lats))
    poly = poly if poly.is_valid else poly.buffer(0)
    return poly.intersection(shapely.box(-180, -90, 180, 90)) if across else poly


def _refuse_across_antimeridian(lons: np.ndarray, slack: float = 0.0) -> None:
    """OpenStreetMap is queried in one longitude/latitude polygon: a grid that crosses 180 degrees (or holds a pole,
    or is numbered beyond +-180) would make one that spans the globe the other way, or none, and its map would be
    all background with no word. ``slack``: degrees a grid may reach beyond 180 (its query is cut there)."""
    if not lons.size:
        return
    if np.abs(np.diff(lons)).max() > 180:  # numbered on the grid's side of 180 degrees
        side = float(np.median(lons))
        lons = np.where(lons - side > 180, lons - 360, np.where(lons - side < -180, lons + 360, lons))
    if lons.min() < -180 - slack or lons.max() > 180 + slack or np.abs(np.diff(lons)).max() > 180:
        raise OptionError("the output grid crosses the antimeridian (180 degrees longitude) or is numbered beyond "
                          "it, where OpenStreetMap cannot be queried in one area yet; keep it on one side (a "
                          "`bbox`, or `aoi` with `like`)")


# --- preparing shapes --------------------------------------------------------------------------------
def _parts(frame: "gpd.GeoDataFrame") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Single-part geometries, the row each came from, and its kind ("area"/"line"; points dropped)."""
    import shapely

    geoms = frame.geometry.to_numpy()
    index = np.arange(len(geoms))
    # two passes flatten a collection that holds multi-geometries
    for _ in range(2):
        geoms, sub = shapely.get_parts(geoms, return_index=True)
        index = index[sub]
    types = shapely.get_type_id(geoms)
    bad = (types == 3) & ~shapely.is_valid(geoms)
    if bad.any():  # invalid polygons (self-touching rings...): repair, keep the polygonal parts
        fixed = shapely.make_valid(geoms[bad])
        origin = np.arange(len(fixed))
        for _ in range(2):
            fixed, sub = shapely.get_parts(fixed, return_index=True)
            origin = origin[sub]
        keep = shapely.get_type_id(fixed) == 3
        geoms = np.concatenate([geoms[~bad], fixed[keep]])
        index = np.concatenate([index[~bad], index[bad][origin[keep]]])
        types = shapely.get_type_id(geoms)
    kind = np.where(types == 3, "area", np.where(np.isin(types, (1, 2)), "line", "point"))
    keep = (kind != "point") & ~shapely.is_empty(geoms)
    return geoms[keep], index[keep], kind[keep]


def prepare(frame: "gpd.GeoDataFrame", table: MapClassTable, grid: Grid) -> BurnList:
    """Classify, reproject and buffer OSM features for ``grid``; returns them in burn order.

    ``frame`` holds OSM key columns and geometries in any CRS (see :mod:`geosr.osm.sources`).
    """
    import geopandas as gpd
    import shapely

    empty = BurnList(np.empty(0, dtype=object), np.empty(0, dtype=np.uint8), {})
    if len(frame) == 0:
        return empty
    lon, lat = grid_centre_lonlat(grid)
    # lines are widened in ground metres: in the grid's CRS where its scale is the same in every direction, else
    # (degrees; a projection that stretches one way, e.g. plate carree's EPSG:4087 twice east-west at 60 N, whose
    # one mean factor made a N-S road 7 m and an E-W one 14 m for 10 m) in the local UTM zone, then projected back
    local = grid.crs.is_geographic or _stretches(grid.crs, lon, lat)
    work_crs = utm_crs(lon, lat) if local else grid.crs
    frame = frame.to_crs(work_crs) if frame.crs is not None else frame.set_crs(work_crs)

    geoms, rows, kind = _parts(frame)
    if len(geoms) == 0:
        return empty
    tags = frame.drop(columns=frame.geometry.name).iloc[rows].reset_index(drop=True)
    ids, widths_m = table.assign(tags, kind)
    keep = ids > 0
    geoms, ids, widths_m, kind = geoms[keep], ids[keep], widths_m[keep], kind[keep]
    if len(geoms) == 0:
        return empty

    # line widths in work-CRS units, at least one pixel
    if grid.crs.is_geographic:
        m2u = 1.0
        xres, yres = grid.res
        px = max(xres * 111_320.0 * math.cos(math.radians(lat)), yres * 111_320.0)
    elif local:
        m2u = 1.0
        px = _pixel_ground_size(grid.crs, lon, lat, grid.res)
    else:
        m2u = metres_to_units(grid.crs, lon, lat)
        px = max(grid.res)
    is_line = kind == "line"
    if is_line.any():
        half = np.maximum(widths_m[is_line] * m2u / 2.0, px / 2.0)
        geoms = geoms.copy()
        geoms[is_line] = shapely.buffer(geoms[is_line], half, quad_segs=QUAD_SEGS)
    if local:
        geoms = gpd.GeoSeries(geoms, crs=work_crs).to_crs(grid.crs).to_numpy()

    # only what reaches the grid, in burn order: priority, then larger first, then input order
    hit = shapely.intersects(geoms, footprint(grid))
    geoms, ids = geoms[hit], ids[hit]
    priority = np.array([c.priority for c in table.classes])[ids]
    area = shapely.area(geoms)
    order = np.lexsort((np.arange(len(ids)), -area, priority))
    geoms, ids = geoms[order], ids[order]
    counts = np.bincount(ids, minlength=len(table))
    features = {table.classes[i].name: int(n) for i, n in enumerate(counts) if n and i}
    return BurnList(geoms=geoms, values=ids.astype(np.uint8), features=features)


# --- burning -----------------------------------------------------------------------------------------
def burn(shapes: BurnList, grid: Grid) -> np.ndarray:
    """The (height, width) uint8 class raster of ``shapes`` on ``grid`` (0 where nothing is drawn)."""
    from rasterio.features import rasterize

    out = np.zeros((grid.height, grid.width), dtype=np.uint8)
    if len(shapes) == 0 or grid.width == 0 or grid.height == 0:
        return out
    idx = np.sort(shapes.tree.query(footprint(grid), predicate="intersects"))
    if len(idx) == 0:
        return out
    return rasterize(
        zip(shapes.geoms[idx], shapes.values[idx].tolist()),
        out_shape=(grid.height, grid.width),
        transform=grid.transform,
        fill=0,
        all_touched=False,
        dtype="uint8",
    )


def draws_nothing(shapes: BurnList, grid: Grid) -> bool:
    """Whether ``shapes`` set no pixel of ``grid`` to a class, as :func:`burn` draws them (at pixel centres): a
    feature that reaches the grid without covering a pixel's centre (a road's edge along it) is in the list, and a
    map of background alone was written without a word (found in review). Each shape is burned on the part of the
    grid under it, until one draws."""
    from rasterio.features import rasterize

    from geosr.errors import NoOverlapError

    for geom, value in zip(shapes.geoms, shapes.values.tolist()):
        if not value:
            continue
        try:
            window = grid.window_of_bounds(tuple(geom.bounds))
        except NoOverlapError:
            continue
        sub = grid.subgrid(window)
        if rasterize([(geom, 1)], out_shape=(sub.height, sub.width), transform=sub.transform, fill=0,
                     all_touched=False, dtype="uint8").any():
            return False
    return True


def row_bands(grid: Grid, max_pixels: int) -> Iterator[tuple[int, Grid]]:
    """(first row, sub-grid) of horizontal bands of at most ``max_pixels`` pixels (at least one row)."""
    from rasterio.windows import Window

    rows = max(1, min(grid.height, max_pixels // max(1, grid.width)))
    for r0 in range(0, grid.height, rows):
        h = min(rows, grid.height - r0)
        yield r0, grid.subgrid(Window(0, r0, grid.width, h))


def render_rgb(classes: np.ndarray, table: MapClassTable) -> np.ndarray:
    """(3, h, w) uint8 RGB rendering of a class raster with the table's palette (no text, no symbols)."""
    return np.moveaxis(table.palette()[classes], -1, 0)
