"""OpenStreetMap maps for geosr: sources (Overpass, files), the class table, rasterizing onto a grid.

Importing this package is cheap; osmnx, geopandas and pyosmium load on first use. The public entry point
is :func:`rasterize_osm` (the Python form of ``geosr rasterize-osm``).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_API = {
    "rasterize_osm": ("geosr.osm.api", "rasterize_osm"),
    "rasterize_osm_grid": ("geosr.osm.api", "rasterize_osm_grid"),
    "plan_grid": ("geosr.osm.api", "plan_grid"),
    "RasterizeOSMResult": ("geosr.osm.api", "RasterizeOSMResult"),
    "ClassTable": ("geosr.osm.classes", "ClassTable"),
    "MapClass": ("geosr.osm.classes", "MapClass"),
    "DEFAULT_MAP_CLASSES": ("geosr.osm.classes", "DEFAULT_MAP_CLASSES"),
    "load_class_table": ("geosr.osm.classes", "load_class_table"),
    "classes_from_tags": ("geosr.osm.classes", "classes_from_tags"),
}

__all__ = list(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        module, attr = _API[name]
        value = getattr(import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'geosr.osm' has no attribute {name!r}")
