"""Where OSM features come from: the Overpass API through osmnx (online), or a file (offline).

:func:`load_features` picks the source for a grid: :mod:`geosr.osm.files` reads ``osm_file`` (OSM XML,
PBF or a vector file), :mod:`geosr.osm.overpass` asks Overpass. Both return
:class:`~geosr.osm.features.OSMFeatures`: a GeoDataFrame whose columns are the OSM keys the class table
looks at (plus ``geometry``), with the source and, when it is known, the data's timestamp. Readers filter
to a query polygon (:func:`query_area`) and never rasterize; that is :mod:`geosr.osm.rasterize`'s job.
osmnx, geopandas and pyosmium are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import os

from geosr.osm.classes import MapClassTable
from geosr.osm.features import OSMFeatures
from geosr.osm.files import read_osm_file
from geosr.osm.overpass import fetch_overpass
from geosr.tiling.grid import Grid

OSM_ATTRIBUTION = "© OpenStreetMap contributors"
OSM_LICENSE = "ODbL-1.0 (https://opendatacommons.org/licenses/odbl/1-0/); see https://www.openstreetmap.org/copyright"


def load_features(
    grid: Grid,
    table: MapClassTable,
    *,
    osm_file: str | os.PathLike[str] | None = None,
    timeout: float = 180.0,
    overpass_url: str | None = None,
    date: str | None = None,
    cache_folder: str | os.PathLike[str] | None = None,
    overhang: bool = False,
) -> OSMFeatures:
    """OSM features of ``table`` around ``grid``: from ``osm_file`` when given, else from Overpass
    (``timeout`` seconds, ``overpass_url``, a ``date`` snapshot, osmnx's cache in ``cache_folder``).
    ``overhang``: the grid covers a box (``bbox``) and may reach a little past 180 degrees beyond it
    (:func:`~geosr.osm.rasterize.query_polygon`)."""
    polygon = query_area(grid, table, overhang=overhang)
    if osm_file is not None:
        return read_osm_file(osm_file, polygon, table)
    return fetch_overpass(
        polygon, table, timeout=timeout, cache_folder=cache_folder, overpass_url=overpass_url, date=date
    )


def query_area(grid: Grid, table: MapClassTable, *, overhang: bool = False):
    """The WGS84 polygon features are fetched for: the grid grown by half the widest line + two pixels.

    Lines just outside the grid still reach into it once buffered, so they are fetched too. ``overhang``: as
    :func:`load_features` takes it.
    """
    from geosr.osm.rasterize import query_polygon

    return query_polygon(grid, table.max_line_width() / 2 + 2 * _pixel_metres(grid), overhang=overhang)


def _pixel_metres(grid: Grid) -> float:
    from geosr.osm.rasterize import grid_centre_lonlat, metres_to_units

    lon, lat = grid_centre_lonlat(grid)
    if grid.crs.is_geographic:
        return max(grid.res) * 111_320.0
    return max(grid.res) / metres_to_units(grid.crs, lon, lat)
