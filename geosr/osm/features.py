"""What every OSM source returns: :class:`OSMFeatures`, a tag frame normalised to the class table's keys.

The helpers here are shared by the online reader (:mod:`geosr.osm.overpass`) and the file readers
(:mod:`geosr.osm.files`). geopandas and osmnx are imported inside the functions, so importing this module
is cheap.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from geosr.osm.classes import MapClassTable

if TYPE_CHECKING:  # pragma: no cover
    import geopandas as gpd
    from shapely.geometry.base import BaseGeometry


@dataclass(frozen=True)
class OSMFeatures:
    """OSM features (tag columns + geometry, any CRS), where they came from, and how current they are.

    ``timestamp`` is ISO 8601 UTC; ``timestamp_kind`` says what it means: ``"snapshot"`` (Overpass's
    ``osm_base``, an Overpass ``--date``, or a file header's replication time: the data is complete up to
    then) or ``"newest edit"`` (the newest edit among the file's features: a lower bound).
    """

    frame: "gpd.GeoDataFrame"
    source: str
    timestamp: str | None = None
    timestamp_kind: str | None = None
    warnings: tuple[str, ...] = ()  # what the reader left out that the user should know of

    def __len__(self) -> int:
        return len(self.frame)


@contextlib.contextmanager
def osmnx_settings(**values: Any) -> Iterator[Any]:
    """Set osmnx settings for one call and put the previous values back afterwards; yields osmnx. One call at a
    time in the process: osmnx's settings are its module's, and two calls in threads each read the other's (cache
    folder, server) and left one's in place for good (found in review)."""
    import osmnx as ox

    with _OSMNX_SETTINGS:
        old = {k: getattr(ox.settings, k) for k in values}
        try:
            for k, v in values.items():
                setattr(ox.settings, k, v)
            yield ox
        finally:
            for k, v in old.items():
                setattr(ox.settings, k, v)


_OSMNX_SETTINGS = threading.RLock()


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), or its class name."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else exc.__class__.__name__)[:200]


def reason(exc: BaseException) -> str:
    """Why a file could not be read, for "(...)" in a one-sentence error."""
    text = first_line(exc)
    return text.rstrip(".") if text else exc.__class__.__name__


def empty_frame() -> "gpd.GeoDataFrame":
    import geopandas as gpd

    return gpd.GeoDataFrame({"geometry": []}, geometry="geometry", crs="EPSG:4326")


def within(frame: "gpd.GeoDataFrame", polygon: "BaseGeometry") -> "gpd.GeoDataFrame":
    """The rows of ``frame`` (WGS84) that intersect ``polygon``, in their order."""
    if len(frame) == 0 or polygon is None or polygon.is_empty:
        return frame
    idx = frame.sindex.query(polygon, predicate="intersects")
    return frame.iloc[sorted(idx)]


def tag_value(v: object) -> str | None:
    """A vector file's or a reader's tag value as OSM writes it, None where there is none; several (a GeoJSON list,
    which pyogrio reads as an array) joined by ";", as OSM writes them."""
    import pandas as pd

    if v is None:
        return None
    if isinstance(v, str):  # a vector file's missing tag written "" (a shapefile's, QGIS's) is none: a park
        return v if v.strip() else None  # with building="" was drawn as a building (found in review)
    if isinstance(v, (bool, np.bool_)):  # a JSON true / false, as OSM writes them (false was "False": tagged)
        return "yes" if v else "no"
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, (list, tuple)):
        return ";".join(t for t in map(tag_value, v) if t) or None
    missing = pd.isna(v)  # (an array's: one per element)
    if isinstance(missing, (bool, np.bool_)) and missing:
        return None
    if isinstance(v, (float, np.floating)) and float(v).is_integer():  # a number column with a gap is read
        return str(int(v))  # as floats: 5.0 never matched a table's "5" (found in review)
    return str(v)


def normalise(frame: "gpd.GeoDataFrame", table: MapClassTable) -> "gpd.GeoDataFrame":
    """Only the table's keys (as strings or None) and non-empty geometries, on a fresh 0..n-1 index."""
    import geopandas as gpd

    keep = frame.geometry.notna() & ~frame.geometry.is_empty
    frame = frame[keep.to_numpy()].reset_index(drop=True)
    cols = {key: frame[key].map(tag_value).astype(object) for key in sorted(table.keys() & set(frame.columns))}
    crs = frame.crs if frame.crs is not None else "EPSG:4326"
    return gpd.GeoDataFrame(cols, geometry=frame.geometry.to_numpy(), crs=crs, index=frame.index)
