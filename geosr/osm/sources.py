"""Where OSM features come from: the Overpass API through osmnx (online), or a file (offline).

Every reader returns :class:`OSMFeatures`: a GeoDataFrame whose columns are the OSM keys the class table
looks at (plus ``geometry``), with the source and, when it is known, the data's timestamp. Readers filter
to a query polygon (WGS84) and never rasterize; that is :mod:`geosr.osm.rasterize`'s job.

- online: ``osmnx.features_from_polygon`` with the table's tags; osmnx's response cache lives in geosr's
  cache folder; a timeout; one sentence (:class:`~geosr.errors.NetworkError`) when Overpass is unreachable.
- ``.osm`` / ``.osm.bz2`` / ``.osm.gz``: osmnx's own OSM XML reader (``features_from_xml``).
- ``.pbf``: pyosmium (areas assembled from closed ways and multipolygon relations by libosmium).
- ``.gpkg`` / ``.geojson`` / ``.json`` / ``.shp`` / ``.fgb``: geopandas (every layer; a GDAL-OSM-driver
  ``other_tags`` column is expanded into tag columns).

osmnx, geopandas and pyosmium are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import bz2
import contextlib
import datetime as dt
import gzip
import json
import os
import re
import socket
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator
from urllib.parse import urlparse

from geosr.errors import InputError, InputNotFoundError, NetworkError, NoCRSError, OptionError, VectorFileError
from geosr.osm.classes import ClassTable

if TYPE_CHECKING:  # pragma: no cover
    import geopandas as gpd
    from shapely.geometry.base import BaseGeometry

DEFAULT_OVERPASS_URL = "https://overpass-api.de/api"
OSM_ATTRIBUTION = "© OpenStreetMap contributors"
OSM_LICENSE = "ODbL-1.0 (https://opendatacommons.org/licenses/odbl/1-0/); see https://www.openstreetmap.org/copyright"

XML_SUFFIXES = (".osm", ".osm.bz2", ".osm.gz", ".osm.xml")
PBF_SUFFIXES = (".pbf",)
VECTOR_SUFFIXES = (".gpkg", ".geojson", ".json", ".shp", ".fgb")
SUPPORTED = ".osm, .osm.bz2, .osm.gz, .pbf, .gpkg, .geojson, .shp, .fgb"

# Overpass keeps history ("attic" data) from the ODbL licence change on.
_EARLIEST_SNAPSHOT = dt.datetime(2012, 9, 12, 6, 55, tzinfo=dt.timezone.utc)


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

    def __len__(self) -> int:
        return len(self.frame)


def default_cache_folder() -> Path:
    """geosr's cache folder for osmnx responses: $GEOSR_CACHE_DIR/osmnx, else the user cache folder."""
    root = os.environ.get("GEOSR_CACHE_DIR")
    if not root:
        root = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "geosr")
    return Path(root) / "osmnx"


# --- the online source -------------------------------------------------------------------------------
def parse_snapshot_date(value: str | dt.date | dt.datetime | None) -> str | None:
    """``--date`` as Overpass wants it ("YYYY-MM-DDTHH:MM:SSZ"), validated; None stays None."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        when = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    elif isinstance(value, dt.date):
        when = dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc)
    else:
        text = str(value).strip()
        try:
            when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise OptionError(f"--date {text!r}: not a date; use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
    when = when.astimezone(dt.timezone.utc)
    if when < _EARLIEST_SNAPSHOT:
        raise OptionError(f"--date {when:%Y-%m-%d}: Overpass holds history only from 2012-09-12 on")
    if when > dt.datetime.now(dt.timezone.utc):
        raise OptionError(f"--date {when:%Y-%m-%d}: is in the future")
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@contextlib.contextmanager
def _osmnx_settings(**values: Any) -> Iterator[Any]:
    """Set osmnx settings for one call and put the previous values back afterwards."""
    import osmnx as ox

    old = {k: getattr(ox.settings, k) for k in values}
    try:
        for k, v in values.items():
            setattr(ox.settings, k, v)
        yield ox
    finally:
        for k, v in old.items():
            setattr(ox.settings, k, v)


def _overpass_cache_files(ox: Any, polygon: "BaseGeometry", tags: dict) -> list[Path] | None:
    """The osmnx cache files the query for ``polygon`` and ``tags`` reads or writes (osmnx 2.x).

    osmnx keys its cache by the SHA-1 of the GET form of each Overpass request (``_overpass_request``);
    the requests are the sub-polygons of ``_make_overpass_polygon_coord_strs``. These are osmnx
    internals: if they change, this returns None and geosr just checks the network before asking.
    """
    try:
        import requests
        from osmnx import _http, _overpass

        url = ox.settings.overpass_url.rstrip("/") + "/interpreter"
        files = []
        for coord_str in _overpass._make_overpass_polygon_coord_strs(polygon):
            query = _overpass._create_overpass_features_query(coord_str, tags)
            prepared = requests.Request("GET", url, params=OrderedDict(data=query)).prepare().url
            files.append(_http._resolve_cache_filepath(str(prepared)))
        return files
    except Exception:  # noqa: BLE001 - osmnx internals moved: fall back to asking the network
        return None


def _check_reachable(url: str, timeout: float) -> None:
    """One quick TCP connection to the Overpass host; a clear NetworkError when it fails."""
    parsed = urlparse(url)
    host = parsed.hostname
    if not host or parsed.scheme not in ("http", "https"):
        raise OptionError(f"--overpass-url {url!r}: not an http(s) URL")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=max(1.0, min(timeout, 15.0))):
            pass
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise NetworkError(
            f"cannot reach the Overpass API at {url} ({reason}); check the network connection, "
            "or work offline with --osm-file"
        ) from exc


def fetch_overpass(
    polygon: "BaseGeometry",
    table: ClassTable,
    *,
    timeout: float = 180.0,
    cache_folder: str | os.PathLike[str] | None = None,
    overpass_url: str | None = None,
    date: str | None = None,
) -> OSMFeatures:
    """Features of ``table`` inside ``polygon`` (WGS84 lon/lat) from Overpass, through osmnx and its cache.

    ``date`` (Overpass form, see :func:`parse_snapshot_date`) asks for the map as it was then.
    Raises NetworkError (one sentence) when the server cannot be reached or answers with an error.
    """
    import requests

    url = (overpass_url or DEFAULT_OVERPASS_URL).rstrip("/")
    folder = Path(cache_folder) if cache_folder is not None else default_cache_folder()
    overpass_settings = "[out:json][timeout:{timeout}]{maxsize}"
    if date:
        overpass_settings += f'[date:"{date}"]'
    tags = table.query_tags()
    with _osmnx_settings(
        cache_folder=str(folder),
        use_cache=True,
        requests_timeout=float(timeout),
        overpass_url=url,
        overpass_settings=overpass_settings,
        log_console=False,
    ) as ox:
        from osmnx._errors import InsufficientResponseError, ResponseStatusCodeError

        files = _overpass_cache_files(ox, polygon, tags)
        if files is None or not all(f.is_file() for f in files):
            _check_reachable(url, timeout)
        try:
            frame = ox.features_from_polygon(polygon, tags)
        except requests.exceptions.Timeout as exc:
            raise NetworkError(
                f"the Overpass API at {url} did not answer within {timeout:g} s; try again later, "
                "raise --timeout, or work offline with --osm-file"
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise NetworkError(
                f"cannot reach the Overpass API at {url} ({exc.__class__.__name__}); check the network "
                "connection, or work offline with --osm-file"
            ) from exc
        except ResponseStatusCodeError as exc:
            raise NetworkError(f"the Overpass API at {url} answered with an error: {_first_line(exc)}") from exc
        except InsufficientResponseError as exc:
            if "No matching features" not in str(exc):
                raise NetworkError(f"the Overpass API at {url} sent no usable answer: {_first_line(exc)}") from exc
            frame = _empty_frame()
        stamp = _overpass_timestamp(files or [])
    if date:
        stamp = date
    return OSMFeatures(
        frame=_normalise(frame, table),
        source=f"Overpass API {url}" + (f" (as of {date})" if date else ""),
        timestamp=stamp,
        timestamp_kind="snapshot" if stamp else None,
    )


def _overpass_timestamp(files: list[Path]) -> str | None:
    stamps = []
    for f in files:
        try:
            stamp = json.loads(f.read_text(encoding="utf-8")).get("osm3s", {}).get("timestamp_osm_base")
        except (OSError, ValueError, AttributeError):
            continue
        if stamp:
            stamps.append(str(stamp))
    return max(stamps) if stamps else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else exc.__class__.__name__)[:200]


# --- offline sources ---------------------------------------------------------------------------------
def file_kind(path: str | os.PathLike[str]) -> str:
    """"xml", "pbf" or "vector" from the file name; VectorFileError for anything else."""
    name = Path(path).name.lower()
    if name.endswith(XML_SUFFIXES):
        return "xml"
    if name.endswith(PBF_SUFFIXES):
        return "pbf"
    if name.endswith(VECTOR_SUFFIXES):
        return "vector"
    raise VectorFileError(f"{path}: unsupported --osm-file format (use {SUPPORTED})")


def check_osm_file(path: str | os.PathLike[str]) -> Path:
    """Fail early, with one sentence, when ``path`` is missing, a folder or of an unknown format."""
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"{p}: no such file")
    if p.is_dir():
        raise VectorFileError(f"{p}: is a folder, not an OSM or vector file")
    file_kind(p)
    return p


def read_osm_file(path: str | os.PathLike[str], polygon: "BaseGeometry", table: ClassTable) -> OSMFeatures:
    """Features of ``table`` inside ``polygon`` (WGS84) from an OSM XML, PBF or vector file."""
    p = check_osm_file(path)
    kind = file_kind(p)
    if kind == "xml":
        return read_osm_xml(p, polygon, table)
    if kind == "pbf":
        return read_osm_pbf(p, polygon, table)
    return read_vector_file(p, polygon, table)


def read_osm_xml(path: Path, polygon: "BaseGeometry", table: ClassTable) -> OSMFeatures:
    """OSM XML (plain, .bz2 or .gz) through osmnx's ``features_from_xml``."""
    import warnings
    import xml.sax
    from xml.etree.ElementTree import ParseError

    import osmnx as ox
    from osmnx._errors import InsufficientResponseError

    with _osmnx_settings(log_console=False):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "generated by OSMnx" notice
                frame = ox.features_from_xml(path, polygon=polygon, tags=table.query_tags())
        except InsufficientResponseError:
            frame = _empty_frame()
        except (xml.sax.SAXException, ParseError, OSError, EOFError, UnicodeDecodeError) as exc:
            raise VectorFileError(f"{path}: cannot be read as OSM XML ({_reason(exc)})") from exc
        except (KeyError, ValueError, TypeError) as exc:
            raise VectorFileError(f"{path}: is not valid OSM XML ({exc.__class__.__name__}: {_first_line(exc)})") from exc
    stamp, kind = _xml_timestamp(path)
    return OSMFeatures(frame=_normalise(frame, table), source=path.name, timestamp=stamp, timestamp_kind=kind)


def _reason(exc: BaseException) -> str:
    text = _first_line(exc)
    return text.rstrip(".") if text else exc.__class__.__name__


def _open_text(path: Path) -> Any:
    name = path.name.lower()
    if name.endswith(".bz2"):
        return bz2.open(path, "rb")
    if name.endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def _xml_timestamp(path: Path) -> tuple[str | None, str | None]:
    """Overpass's ``<meta osm_base>`` or the root's ``timestamp`` (snapshot), else the newest edit."""
    from xml.etree.ElementTree import iterparse

    newest: str | None = None
    try:
        with _open_text(path) as fh:
            for event, elem in iterparse(fh, events=("start", "end")):
                if event == "start":
                    if elem.tag == "meta" and elem.get("osm_base"):
                        return _iso(elem.get("osm_base")), "snapshot"
                    if elem.tag == "osm" and elem.get("timestamp"):
                        return _iso(elem.get("timestamp")), "snapshot"
                    ts = elem.get("timestamp")
                    if ts and elem.tag in ("node", "way", "relation") and (newest is None or ts > newest):
                        newest = ts
                else:
                    elem.clear()
    except Exception:  # noqa: BLE001 - the features were read already; the timestamp is a nicety
        return None, None
    return (_iso(newest), "newest edit") if newest else (None, None)


def _iso(text: str | None) -> str | None:
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return text.strip()
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# Closed ways that are areas (not rings of lines): the OSM wiki's polygon-features rules, as osmnx uses
# them for XML and Overpass data, so PBF input gives the same geometries.
_AREA_ALL = {
    "amenity", "area", "area:highway", "boundary", "building", "building:part", "craft", "golf", "historic",
    "indoor", "landuse", "leisure", "military", "office", "place", "public_transport", "ruins", "shop",
    "tourism",
}
_AREA_PASS = {
    "barrier": {"city_wall", "ditch", "hedge", "retaining_wall", "spikes"},
    "highway": {"elevator", "escape", "rest_area", "services"},
    "power": {"generator", "plant", "substation", "transformer"},
    "railway": {"platform", "roundhouse", "station", "turntable"},
    "waterway": {"boatyard", "dam", "dock", "riverbank"},
}
_AREA_BLOCK = {
    "aeroway": {"taxiway"},
    "man_made": {"cutline", "embankment", "pipeline"},
    "natural": {"arete", "cliff", "coastline", "ridge", "tree_row"},
}


def is_area_way(tags: Any) -> bool:
    """Whether a closed way with these tags is an area (``area=no`` never is)."""
    if tags.get("area") == "no":
        return False
    for key in _AREA_ALL:
        if key in tags:
            return True
    for key, values in _AREA_PASS.items():
        if tags.get(key) in values:
            return True
    for key, values in _AREA_BLOCK.items():
        v = tags.get(key)
        if v is not None and v not in values:
            return True
    return False


def read_osm_pbf(path: Path, polygon: "BaseGeometry", table: ClassTable) -> OSMFeatures:
    """OSM PBF through pyosmium: lines from ways, areas from closed ways and multipolygon relations."""
    import geopandas as gpd
    import osmium
    import shapely

    keys = sorted(table.keys())  # columns kept
    select = sorted(table.query_tags())  # keys that make an object a candidate (as for Overpass)
    wkb = osmium.geom.WKBFactory()
    rows: list[dict[str, str]] = []
    blobs: list[bytes] = []
    newest: dt.datetime | None = None
    try:
        fp = osmium.FileProcessor(str(path)).with_areas().with_filter(osmium.filter.KeyFilter(*select))
        header = fp.header
        stamp = header.get("osmosis_replication_timestamp") or header.get("timestamp") or None
        for obj in fp:
            if obj.is_area():
                if obj.from_way() and not is_area_way(obj.tags):
                    continue
                make = wkb.create_multipolygon
            elif obj.is_way():
                if obj.is_closed() and is_area_way(obj.tags):
                    continue  # drawn from its area object
                make = wkb.create_linestring
            else:
                continue
            try:
                blob = make(obj)
            except (osmium.InvalidLocationError, RuntimeError):
                continue  # nodes or members outside the extract
            rows.append({k: obj.tags.get(k) for k in keys if k in obj.tags})
            blobs.append(bytes.fromhex(blob) if isinstance(blob, str) else blob)
            ts = obj.timestamp
            if ts is not None and ts.year >= 2004 and (newest is None or ts > newest):
                newest = ts
    except RuntimeError as exc:
        raise VectorFileError(f"{path}: cannot be read as OSM PBF ({_reason(exc)})") from exc
    geoms = shapely.from_wkb(blobs) if blobs else []
    frame = gpd.GeoDataFrame(rows, geometry=list(geoms), crs="EPSG:4326") if rows else _empty_frame()
    frame = _within(frame, polygon)
    if stamp:
        stamp_out, kind = _iso(stamp), "snapshot"
    elif newest is not None:
        stamp_out, kind = newest.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "newest edit"
    else:
        stamp_out, kind = None, None
    return OSMFeatures(frame=_normalise(frame, table), source=path.name, timestamp=stamp_out, timestamp_kind=kind)


_HSTORE = re.compile(r'"((?:[^"\\]|\\.)*)"=>"((?:[^"\\]|\\.)*)"')


def read_vector_file(path: Path, polygon: "BaseGeometry", table: ClassTable) -> OSMFeatures:
    """Every layer of a GeoPackage / GeoJSON / Shapefile / FlatGeobuf; columns are OSM keys."""
    import geopandas as gpd
    import numpy as np
    import pandas as pd
    import pyogrio
    from pyproj import CRS as ProjCRS
    from pyproj import Transformer

    try:
        layers = [str(name) for name, _ in pyogrio.list_layers(path)]
    except Exception as exc:  # noqa: BLE001 - pyogrio's DataSourceError and friends
        raise VectorFileError(f"{path}: cannot be read as a vector file ({_reason(exc)})") from exc
    frames = []
    keys = table.keys()
    for layer in layers:
        try:
            info = pyogrio.read_info(path, layer=layer)
            if not info.get("geometry_type"):
                continue  # a table without geometries (e.g. GeoPackage metadata)
            if info.get("crs") is None:
                raise NoCRSError(f"{path}: layer {layer!r} has no coordinate reference system")
            crs = ProjCRS.from_user_input(info["crs"])
            to_file = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
            xs, ys = to_file.transform(*np.asarray(polygon.exterior.coords).T)
            bbox = (float(np.min(xs)), float(np.min(ys)), float(np.max(xs)), float(np.max(ys)))
            gdf = gpd.read_file(path, layer=layer, bbox=bbox, engine="pyogrio")
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise VectorFileError(f"{path}: layer {layer!r} cannot be read ({_reason(exc)})") from exc
        if "other_tags" in gdf.columns:  # GDAL's OSM driver keeps the less common tags in an hstore string
            extra = gdf["other_tags"].map(lambda s: dict(_HSTORE.findall(s)) if isinstance(s, str) else {})
            for key in keys - set(gdf.columns):
                col = extra.map(lambda d, k=key: d.get(k))
                if col.notna().any():
                    gdf[key] = col
        if len(gdf):
            frames.append(gdf.to_crs("EPSG:4326"))
    if not frames:
        return OSMFeatures(frame=_normalise(_empty_frame(), table), source=path.name)
    frame = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs="EPSG:4326")
    return OSMFeatures(frame=_normalise(_within(frame, polygon), table), source=path.name)


# --- helpers -----------------------------------------------------------------------------------------
def _empty_frame() -> "gpd.GeoDataFrame":
    import geopandas as gpd

    return gpd.GeoDataFrame({"geometry": []}, geometry="geometry", crs="EPSG:4326")


def _within(frame: "gpd.GeoDataFrame", polygon: "BaseGeometry") -> "gpd.GeoDataFrame":
    if len(frame) == 0 or polygon is None or polygon.is_empty:
        return frame
    idx = frame.sindex.query(polygon, predicate="intersects")
    return frame.iloc[sorted(idx)]


def _normalise(frame: "gpd.GeoDataFrame", table: ClassTable) -> "gpd.GeoDataFrame":
    """Only the table's keys (as strings or None) and non-empty geometries, on a fresh 0..n-1 index."""
    import geopandas as gpd
    import pandas as pd

    keep = frame.geometry.notna() & ~frame.geometry.is_empty
    frame = frame[keep.to_numpy()].reset_index(drop=True)
    cols = {
        key: frame[key].map(lambda v: None if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v))
        .astype(object)
        for key in sorted(table.keys() & set(frame.columns))
    }
    crs = frame.crs if frame.crs is not None else "EPSG:4326"
    return gpd.GeoDataFrame(cols, geometry=frame.geometry.to_numpy(), crs=crs, index=frame.index)
