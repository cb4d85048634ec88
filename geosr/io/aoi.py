"""Areas of interest: a bbox in any CRS, or the extent of a vector file, as a window of a grid."""

from __future__ import annotations

import math
from pathlib import Path

import rasterio
from rasterio.crs import CRS
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from geosr.errors import InputNotFoundError, NoOverlapError, OptionError
from geosr.io.paths import REMOTE, refuse_undecodable
from geosr.tiling.grid import Grid

DEFAULT_AOI_CRS = "EPSG:4326"


def aoi_window(aoi: str, grid: Grid, *, aoi_crs: str = DEFAULT_AOI_CRS) -> Window:
    """The whole-pixel window of ``grid`` covering ``aoi`` ("LEFT,BOTTOM,RIGHT,TOP" or a vector file).

    A box is first cut to the scene's footprint expressed in ``aoi_crs`` and only that part is taken to
    the scene's CRS, so a box far larger than the scene (the whole world, a box wider than a UTM zone)
    selects the whole scene rather than failing to transform.
    """
    parts = [p for p in aoi.replace(" ", ",").split(",") if p]
    not_degrees = None  # why a box that does not overlap may not: its numbers are no degrees
    if len(parts) == 4 and not Path(aoi).exists():
        try:
            left, bottom, right, top = (float(p) for p in parts)
        except ValueError as exc:
            raise OptionError(f"aoi {aoi!r}: expected LEFT,BOTTOM,RIGHT,TOP numbers or a vector file",
                              param="aoi") from exc
        if not all(math.isfinite(v) for v in (left, bottom, right, top)):
            raise OptionError(f"aoi {aoi!r}: LEFT,BOTTOM,RIGHT,TOP must be finite numbers (not inf or nan)",
                              param="aoi")
        crs = _aoi_crs(aoi_crs)
        if crs.is_geographic and not (max(abs(left), abs(right)) <= 360 and max(abs(bottom), abs(top)) <= 90):
            # (metres under the default EPSG:4326 were "does not overlap the scene", a file's said why; review; a
            # box around the whole Earth, which overlaps, is taken as before)
            not_degrees = (f"aoi {aoi!r}: does not overlap the scene, and its numbers are not longitudes and "
                           f"latitudes (LEFT,BOTTOM,RIGHT,TOP: longitudes first), as `aoi_crs` ({aoi_crs}) has them; "
                           f"give `aoi_crs` the box's CRS (the scene's: {grid.crs.to_string()}), or the box in "
                           "degrees")
        # in degrees, LEFT beyond RIGHT is a box across the antimeridian (as GeoJSON and STAC write it); one less
        # than 180 degrees wide, so that swapped sides (10,0,-5,1) stay an error
        across = crs.is_geographic and -180 <= right < 0 < left <= 180 and left - right > 180
        if not ((left < right or across) and bottom < top):
            raise OptionError(f"aoi {aoi!r}: LEFT must be below RIGHT and BOTTOM below TOP", param="aoi")
        try:
            with rasterio.Env():
                bounds = _degrees_in_grid_crs((left, bottom, right, top), crs, grid) if crs.is_geographic else \
                    _box_in_grid_crs((left, bottom, right, top), crs, grid)
        except Exception as exc:
            raise OptionError(f"aoi_crs {aoi_crs!r}: not a CRS geosr can use ({exc})", param="aoi_crs") from exc
        if crs.is_geographic and _swapped_meets(left, bottom, right, top, crs, grid, bounds):  # (beyond 90 degrees
            # of longitude the latitude read as one is "not degrees": said so for Tokyo; found in review)
            not_degrees = (f"aoi {aoi!r}: does not overlap the scene, and would as LATITUDE,LONGITUDE pairs: give "
                           "the box as LEFT,BOTTOM,RIGHT,TOP, longitudes first")
    else:
        bounds = _vector_bounds(aoi, grid, aoi_crs)
    said = not_degrees or f"aoi {aoi}: does not overlap the scene"
    if bounds is None:
        raise NoOverlapError(said, param="aoi")
    try:
        return grid.window_of_bounds(bounds)
    except NoOverlapError as exc:
        raise NoOverlapError(said, param="aoi") from exc


def _swapped_meets(left: float, bottom: float, right: float, top: float, crs: CRS, grid: Grid,
                   bounds: tuple[float, float, float, float] | None) -> bool:
    """Whether a degree box that misses the scene would meet it with its latitudes and longitudes swapped (a box
    written latitude first, as many tools and maps show coordinates)."""
    try:
        if bounds is not None:
            grid.window_of_bounds(bounds)
            return False  # it meets the scene as given
    except NoOverlapError:
        pass
    if not (max(abs(left), abs(right)) <= 90 and max(abs(bottom), abs(top)) <= 360 and bottom < top and left < right):
        return False
    try:
        with rasterio.Env():
            swapped = _degrees_in_grid_crs((bottom, left, top, right), crs, grid)
        if swapped is None:
            return False
        grid.window_of_bounds(swapped)
    except Exception:  # noqa: BLE001 (not a box that meets it either way)
        return False
    return True


def _aoi_crs(aoi_crs: str) -> CRS:
    """``aoi_crs`` read, or refused in one sentence."""
    try:
        with rasterio.Env():  # GDAL's errors become the exception alone (no "ERROR 1: PROJ: ..." line on stderr)
            return CRS.from_user_input(aoi_crs)
    except Exception as exc:
        raise OptionError(f"aoi_crs {aoi_crs!r}: not a CRS geosr can use ({exc})", param="aoi_crs") from exc


def _degrees_in_grid_crs(
    box: tuple[float, float, float, float], crs: CRS, grid: Grid
) -> tuple[float, float, float, float] | None:
    """A box in degrees in the grid's CRS: split at the antimeridian when LEFT is beyond RIGHT, and each part also
    taken 360 degrees east and west, so that -179.99 finds a scene that reads its longitudes as 180.01 (a scene
    across the antimeridian, or one in 0-360 degrees)."""
    left, bottom, right, top = box
    parts = [box] if left < right else [(left, bottom, 180.0, top), (-180.0, bottom, right, top)]
    out = [b for x0, y0, x1, y1 in parts for shift in (0.0, 360.0, -360.0)
           if (b := _box_in_grid_crs((x0 + shift, y0, x1 + shift, y1), crs, grid)) is not None]
    if not out:
        return None
    return (min(b[0] for b in out), min(b[1] for b in out), max(b[2] for b in out), max(b[3] for b in out))


def _box_in_grid_crs(
    box: tuple[float, float, float, float], crs: CRS, grid: Grid
) -> tuple[float, float, float, float] | None:
    """``box`` (in ``crs``) cut to the scene's footprint and taken to the grid's CRS; None when they do not meet.

    The footprint in ``crs`` is the grid's bounds transformed with densified edges; a geographic footprint
    that crosses the antimeridian (its left beyond its right) is cut in two at +-180 degrees.
    """
    left, bottom, right, top = box
    try:
        sl, sb, sr, st = transform_bounds(grid.crs, crs, *grid.bounds, densify_pts=21)
    except Exception:  # the scene cannot be expressed in the AOI's CRS: take the box across as it is
        sl = sb = sr = st = math.nan
    if not all(math.isfinite(v) for v in (sl, sb, sr, st)):
        pieces = [box]
    else:
        spans = [(sl, sr)] if sl <= sr else [(sl, math.inf), (-math.inf, sr)]
        pieces = []
        for x0, x1 in spans:
            piece = (max(left, x0), max(bottom, sb), min(right, x1), min(top, st))
            if piece[0] < piece[2] and piece[1] < piece[3]:
                pieces.append(piece)
    out: list[tuple[float, float, float, float]] = []
    for piece in pieces:
        b = transform_bounds(crs, grid.crs, *piece, densify_pts=21)
        if any(math.isnan(v) for v in b):
            continue
        # an infinite side (a pole, say) reaches at least as far as the scene does
        b = tuple(g if math.isinf(v) else v for v, g in zip(b, grid.bounds))
        if CRS.from_user_input(grid.crs).is_geographic and all(math.isfinite(v) for v in b):
            # in the scene's degrees: across the antimeridian GDAL gives left beyond right, and a scene in 0-360
            # degrees meets -179.9 at 180.1 (a UTM box there did not overlap; found in review)
            west, east = _nearest_turn(b[0], b[2] + (360.0 if b[0] > b[2] else 0.0), grid)
            b = (west, b[1], east, b[3])
        if b[0] < b[2] and b[1] < b[3]:
            out.append(b)
    if not out:
        return None
    return (min(b[0] for b in out), min(b[1] for b in out), max(b[2] for b in out), max(b[3] for b in out))


def _nearest_turn(west: float, east: float, grid: Grid) -> tuple[float, float]:
    """Longitudes ``west``..``east`` (degrees, in a geographic grid's CRS) as they are or 360 degrees east or west:
    whichever puts their middle nearest the grid's."""
    centre = (grid.bounds[0] + grid.bounds[2]) / 2
    turn = min((0.0, 360.0, -360.0), key=lambda k: abs((west + east) / 2 + k - centre))
    return west + turn, east + turn


def _vector_bounds(path: str, grid: Grid, aoi_crs: str = DEFAULT_AOI_CRS) -> tuple[float, float, float, float] | None:
    """The extent of a vector file's features in ``grid``'s CRS; ``aoi_crs``: the CRS of a file that has none (a
    shapefile without .prj); another than the file's own is refused (it would be ignored), but for the default."""
    import geopandas as gpd

    if REMOTE.match(path):  # (it was "no such file" for a file its server had; found in review)
        raise OptionError(f"{path}: an area of interest (`aoi`) is read from a local vector file; download it "
                          "first")
    if not Path(path).exists():
        raise InputNotFoundError(f"{path}: no such area-of-interest file (`aoi`), nor a box LEFT,BOTTOM,RIGHT,TOP")
    refuse_undecodable(path)
    try:
        gml = {"WRITE_GFS": "NO"} if Path(path).suffix.lower() in (".gml", ".xml") else {}  # (an option of GML's only)
        frame = gpd.read_file(path, engine="pyogrio", **gml)  # GDAL's GML reader writes a .gfs beside the file
    except Exception as exc:
        raise OptionError(f"{path}: not a vector file geosr can read ({str(exc).splitlines()[0]})") from exc
    if frame.empty:
        raise OptionError(f"{path}: holds no features")
    if (frame.geometry.isna() | frame.geometry.is_empty).all():  # (NaN bounds: "not longitudes", "does not
        raise OptionError(f"{path}: its features have no geometry")  # overlap the scene"; found in review)
    given = _aoi_crs(aoi_crs)
    own = frame.crs is not None
    if not own:
        frame = frame.set_crs(given.to_wkt())
    elif given != CRS.from_user_input(DEFAULT_AOI_CRS) and not frame.crs.equals(given.to_wkt(), ignore_axis_order=True):
        # (the default, however spelt, counts as not given: an option's default cannot be told from its value)
        raise OptionError(f"{path}: its CRS is {frame.crs.to_string()}, and `aoi_crs` {aoi_crs} would be ignored; "
                          "leave `aoi_crs` out (it gives the CRS of a box, or of a file that has none)",
                          param="aoi_crs")
    w, s, e, n = (float(v) for v in frame.total_bounds)
    if frame.crs.is_geographic and not (-360 <= w <= e <= 360 and -90 <= s <= n <= 90):
        # a GeoJSON without a "crs" member is read as EPSG:4326 (RFC 7946), whatever its coordinates are
        where = (f"as its CRS ({frame.crs.to_string()}) says; give the file its CRS (a GeoJSON without a \"crs\" "
                 "member is read as EPSG:4326), or use a box with `aoi_crs`") if own else \
            f"as `aoi_crs` ({aoi_crs}) has it for a file without a CRS; give `aoi_crs` the file's CRS"
        raise OptionError(f"{path}: its coordinates ({w:.10g}, {s:.10g}, {e:.10g}, {n:.10g}) are not longitudes "
                          f"and latitudes, {where}")
    # the edges densified first, as a box's are (transform_bounds): a straight edge in one CRS is curved in another,
    # and the corners alone left a strip of a lon/lat box out of the window in UTM
    span = max(e - w, n - s)
    dense = frame.geometry.segmentize(span / 64) if span > 0 and math.isfinite(span) else frame.geometry
    placed = dense.to_crs(grid.crs)
    left, bottom, right, top = (float(v) for v in placed.total_bounds)
    if all(math.isfinite(v) for v in (left, bottom, right, top)) and CRS.from_user_input(grid.crs).is_geographic:
        # longitudes wrap: each feature is taken where it lies nearest the scene, as it is or 360 degrees east or
        # west (a scene across the antimeridian in 0-360 degrees met features at -179.9 nowhere, and a file split at
        # the antimeridian, as RFC 7946 has it, spanned the whole Earth; found in review)
        turned = [_nearest_turn(b[0], b[2], grid) for b in placed.bounds.dropna().to_numpy(dtype=float)]
        left, right = min(w for w, _ in turned), max(e for _, e in turned)
    if all(math.isfinite(v) for v in (left, bottom, right, top)):
        return left, bottom, right, top
    # features the scene's CRS cannot hold (a world-wide layer in UTM): their extent cut to the scene first
    try:
        w, s, e, n = (float(v) for v in frame.total_bounds)
        return _box_in_grid_crs((w, s, e, n), CRS.from_user_input(frame.crs), grid)
    except Exception as exc:
        raise OptionError(f"{path}: its extent cannot be expressed in the scene's CRS ({exc})") from exc
