"""Areas of interest: a bbox in any CRS, or the extent of a vector file, as a window of a grid."""

from __future__ import annotations

from pathlib import Path

from rasterio.warp import transform_bounds
from rasterio.windows import Window

from geosr.errors import InputNotFoundError, NoOverlapError, OptionError
from geosr.tiling.grid import Grid


def aoi_window(aoi: str, grid: Grid, *, aoi_crs: str = "EPSG:4326") -> Window:
    """The whole-pixel window of ``grid`` covering ``aoi`` ("LEFT,BOTTOM,RIGHT,TOP" or a vector file)."""
    parts = [p for p in aoi.replace(" ", ",").split(",") if p]
    if len(parts) == 4 and not Path(aoi).exists():
        try:
            left, bottom, right, top = (float(p) for p in parts)
        except ValueError as exc:
            raise OptionError(f"--aoi {aoi!r}: expected LEFT,BOTTOM,RIGHT,TOP numbers or a vector file") from exc
        if not (left < right and bottom < top):
            raise OptionError(f"--aoi {aoi!r}: LEFT must be below RIGHT and BOTTOM below TOP")
        try:
            bounds = transform_bounds(aoi_crs, grid.crs, left, bottom, right, top, densify_pts=21)
        except Exception as exc:
            raise OptionError(f"--aoi-crs {aoi_crs!r}: not a CRS geosr can use ({exc})") from exc
    else:
        bounds = _vector_bounds(aoi, grid)
    try:
        return grid.window_of_bounds(bounds)
    except NoOverlapError as exc:
        raise NoOverlapError(f"--aoi {aoi}: does not overlap the scene") from exc


def _vector_bounds(path: str, grid: Grid) -> tuple[float, float, float, float]:
    import geopandas as gpd

    if not Path(path).exists():
        raise InputNotFoundError(f"{path}: no such AOI file (or give LEFT,BOTTOM,RIGHT,TOP)")
    try:
        frame = gpd.read_file(path)
    except Exception as exc:
        raise OptionError(f"{path}: not a vector file geosr can read ({str(exc).splitlines()[0]})") from exc
    if frame.empty:
        raise OptionError(f"{path}: holds no features")
    if frame.crs is None:
        raise OptionError(f"{path}: has no CRS")
    return tuple(frame.to_crs(grid.crs).total_bounds)
