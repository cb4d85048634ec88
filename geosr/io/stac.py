"""STAC out: every output gets ``<output stem>.stac.json``, a STAC item a catalogue or a pipeline can pick up.

Made by rio-stac from the written COG (geometry, bbox, the projection and raster extensions with band statistics)
and completed with pystac: the processing extension (geosr's version, the lineage in words), links of relation
``derived_from`` to every input, the model (name, checksum, settings) in ``geosr:model``, and the provenance
sidecar as a second asset when there is one. The item's datetime is the LR's acquisition time when its tags
say it (``ACQUISITIONDATETIME``, ``TIFFTAG_DATETIME``), else the time of processing, and ``geosr:datetime`` says
which; an LR acquired over a time range (``ACQUISITIONSTARTDATETIME`` to ``ACQUISITIONENDDATETIME``: a STAC item of
a composite) gives the item that range as start_datetime and end_datetime, its datetime null unless it has one.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import urllib.parse
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pystac
from pystac.extensions.eo import Band, EOExtension
from rio_stac import create_stac_item

from geosr._version import __version__
from geosr.errors import InputError
from geosr.io.outputs import atomic_output
from geosr.io.paths import curl_url, is_file_list, sidecar_paths, subdataset_file, without_credentials
from geosr.io.rasters import band_roles, imagery_tags, inspect_raster, narrow_names, open_raster
from geosr.tiling.grid import Grid, outline

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

PROCESSING = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"


def stac_path(output: Path) -> Path:
    """``<output stem>.stac.json`` beside ``output``."""
    return sidecar_paths(output)["STAC item"]


def _utc(text: str | None, fmt: str | None = None) -> dt.datetime | None:
    """``text`` (ISO 8601, or ``fmt``) as a UTC time; None when it is not one. STAC's datetimes are UTC (its core
    schema asks for Z or +00:00): another offset is converted, none is taken as UTC."""
    if not text:
        return None
    try:
        when = dt.datetime.strptime(text, fmt) if fmt else dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)).astimezone(dt.timezone.utc)


def _acquired(lr: str) -> tuple[dt.datetime | None, tuple[dt.datetime, dt.datetime] | None]:
    """The LR's acquisition time and time range from its tags (the default domain, then GDAL's IMAGERY one, where
    GDAL's drivers put it, as the output carries them; band files: the first's), in UTC; None for what they do not
    say. The range is ``ACQUISITIONSTARTDATETIME`` to ``ACQUISITIONENDDATETIME``, which a STAC item dated by its
    start_datetime and end_datetime gives (geosr.io.stac_items)."""
    try:
        with open_raster(_members(lr)[0] if lr else lr) as ds:
            tags = {**imagery_tags(ds), **{k: v for k, v in ds.tags().items() if v}}
    except InputError:
        return None, None
    when = _utc(tags.get("ACQUISITIONDATETIME")) or _utc(tags.get("TIFFTAG_DATETIME"), "%Y:%m:%d %H:%M:%S")
    start, end = _utc(tags.get("ACQUISITIONSTARTDATETIME")), _utc(tags.get("ACQUISITIONENDDATETIME"))
    return when, ((start, end) if start and end and start <= end else None)


# The raster extension's statistics and histograms are computed on the COG read at most this many pixels a side
# (an overview serves it): 0.04 s where rio-stac's default of 1024 took 0.17 s of a 2048 x 2048 x 3 output.
STATS_SIDE = 512


def write_stac_item(output: Path, *, inputs: dict[str, str], model: dict[str, Any], lineage: str,
                    provenance: Path | None = None, final: Path | None = None) -> Path:
    """Describe the COG at ``output`` as a STAC item written at ``final`` (default :func:`stac_path`), atomically.

    ``inputs``: role -> path or URL of every input (``derived_from`` links); ``model``: what made the pixels."""
    final = final or stac_path(output)
    acquired, span = _acquired(inputs.get("lr", ""))
    when = acquired or dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    args = dict(input_datetime=when, id=output.stem, asset_name="data", asset_roles=["data"],
                asset_media_type=pystac.MediaType.COG, asset_href=uri_path(output.name), with_proj=True,
                with_raster=True, raster_max_size=STATS_SIDE,
                properties={"geosr:datetime": "acquisition of the LR" if acquired or span else "processing"})
    with warnings.catch_warnings():  # rio-stac parses a TIFF date ("2021:06:01 10:30:00") before taking ours, and
        warnings.filterwarnings("ignore", "Could not get parse date", UserWarning)  # warns that it cannot
        with np.errstate(over="ignore", invalid="ignore"):  # (float32 statistics near its range: see _wide_bins)
            try:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", "Could not calculate the histogram", UserWarning)
                    item = create_stac_item(str(output), **args)
            except ValueError as exc:
                if "bins" not in str(exc):
                    raise
                item = create_stac_item(str(output), histogram_bins=_wide_bins(output), **args)
    if span:  # an LR acquired over a time range (a composite, a mosaic): that range dates the output too
        item.common_metadata.start_datetime, item.common_metadata.end_datetime = span
        if not acquired:
            item.datetime = None
    _normalize_footprint(item)
    _set_footprint(item, output)
    _add_eo_bands(item.assets["data"], output)
    _fix_raster_statistics(item.assets["data"], output)
    item.stac_extensions.append(PROCESSING)
    item.properties.update({
        "processing:software": {"geosr": __version__},
        "processing:lineage": lineage,
        "processing:datetime": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "geosr:model": model,
    })
    for role, src in inputs.items():
        members = _members(src) if src else []
        for i, member in enumerate(members):  # band files (a.tif,b.tif,c.tif): a link to each
            title = role if len(members) == 1 else f"{role} ({i + 1} of {len(members)})"
            item.add_link(pystac.Link("derived_from", _href(member, final.parent), title=title))
    if provenance is not None:
        item.add_asset("provenance", pystac.Asset(href=uri_path(provenance.name), media_type=pystac.MediaType.COG,
                                                  roles=["metadata"], title="geosr provenance classes"))
    with atomic_output(final) as tmp:  # a fresh temporary name: never through a file or link left at a fixed one
        tmp.write_text(json.dumps(item.to_dict(include_self_link=False, transform_hrefs=False), indent=2) + "\n")
    return final


def _stats_shape(ds) -> tuple[int, int]:
    """(rows, columns) of ``ds`` read for its statistics, as rio-stac reads it: at most STATS_SIDE a side."""
    f = max(1.0, max(ds.width, ds.height) / STATS_SIDE)
    return max(1, round(ds.height / f)), max(1, round(ds.width / f))


def _wide_bins(output: Path, n: int = 10) -> list[float]:
    """``n`` histogram buckets over the range of every band's valid values, in float64: rio-stac's, computed in a
    float32 band's own type, overflow where its values span more than float32 holds (-3.4e38 beside positive
    values) and cannot be made."""
    with open_raster(output) as ds:
        data = ds.read(masked=True, out_shape=(ds.count, *_stats_shape(ds)))
    values = data.compressed().astype(np.float64)
    values = values[np.isfinite(values)]
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    return [float(v) for v in np.linspace(lo, hi, n + 1)]


def _normalize_footprint(item: pystac.Item) -> None:
    """rio-stac takes a south-up raster's bounds as they come (bottom above top): ``proj:bbox`` as (min, min, max,
    max) and the geometry's ring counter-clockwise, as GeoJSON asks."""
    from shapely.geometry import mapping, shape
    from shapely.geometry.polygon import orient

    bbox = item.properties.get("proj:bbox")
    if bbox and len(bbox) == 4:
        item.properties["proj:bbox"] = [min(bbox[0], bbox[2]), min(bbox[1], bbox[3]),
                                        max(bbox[0], bbox[2]), max(bbox[1], bbox[3])]
    if item.geometry and item.geometry.get("type") == "Polygon":
        geom = orient(shape(item.geometry), sign=1.0)
        item.geometry = json.loads(json.dumps(mapping(geom)))  # tuples -> lists
        item.bbox = [float(v) for v in geom.bounds]


EDGE_POINTS = 32  # points per side of the raster's outline when it is taken to WGS84 (its sides curve there)


def _set_footprint(item: pystac.Item, output: Path) -> None:
    """The item's footprint from the raster's own outline, not rio-stac's axis-aligned envelope: a rotated or sheared
    grid's true quadrilateral (``proj:geometry`` in its CRS, ``geometry`` in WGS84), and a footprint across the
    antimeridian split there into a MultiPolygon with its ``bbox`` written west > east (RFC 7946, 5.2), longitudes
    kept in [-180, 180] (rio-stac gave such a scene a bbox 360 degrees wide, or longitudes past 180); a footprint
    around a pole closed over it (:func:`_around_pole`). Written by hand: rio-stac takes the bounds, and no library
    here splits a ring at the antimeridian."""
    import numpy as np
    from pyproj import Transformer
    from shapely.geometry import MultiPolygon, Polygon, box, mapping
    from shapely.geometry.polygon import orient

    with open_raster(output) as ds:
        if ds.crs is None:
            return
        grid = Grid(ds.crs, ds.transform, ds.width, ds.height)
    crs, transform, w, h = grid.crs, grid.transform, grid.width, grid.height
    xs, ys = _outline_through_poles(grid)
    corners = [transform @ (c, r) for c, r in ((0, 0), (w, 0), (w, h), (0, h))]
    item.properties["proj:geometry"] = json.loads(json.dumps(mapping(orient(Polygon(corners), sign=1.0))))
    code = item.properties.get("proj:epsg")
    if code is not None and crs.to_epsg(confidence_threshold=100) != code:
        # rio-stac names the code GDAL finds at 70% confidence: UTM 33 on the International ellipsoid with its own
        # datum shift was labelled 23033 (ED50), 25 m from where the raster's own CRS puts it (found in review)
        item.properties["proj:epsg"] = None
        item.properties["proj:wkt2"] = crs.to_wkt()
    if item.properties.get("proj:wkt2"):  # rio-stac writes GDAL's default WKT, which is WKT1 (PROJCS[...])
        item.properties["proj:wkt2"] = crs.to_wkt(version="WKT2_2019")
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(np.asarray(xs), np.asarray(ys))
    if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
        return
    lon, lat = _pole_as_edge(grid, xs, ys, np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))
    lon = np.unwrap(lon, period=360.0)  # a continuous ring across the antimeridian
    if abs(lon[-1] - lon[0]) > 180.0 or lon.max() - lon.min() >= 360.0:  # it winds around a pole
        pole = _around_pole(grid, lon, np.asarray(lat, dtype=float))
        if pole is not None:
            item.geometry = json.loads(json.dumps(mapping(pole)))
            item.bbox = [float(v) for v in pole.bounds]
        return
    shift = -360.0 * np.floor((lon.min() + 180.0) / 360.0)  # its west end in [-180, 180)
    ring = orient(Polygon(zip(lon + shift, lat)).buffer(0), sign=1.0)
    if ring.is_empty or ring.geom_type != "Polygon":
        return
    west_part = ring.intersection(box(-180.0, -90.0, 180.0, 90.0))
    east_part = ring.intersection(box(180.0, -90.0, 540.0, 90.0))
    if east_part.area <= 0.0:  # (a footprint that ends at 180 degrees meets the east box along a line)
        item.geometry = json.loads(json.dumps(mapping(ring)))
        item.bbox = [float(v) for v in ring.bounds]
        return
    from shapely.affinity import translate

    east_part = translate(east_part, xoff=-360.0)
    parts = [orient(g, sign=1.0) for part in (west_part, east_part) for g in getattr(part, "geoms", [part])
             if g.geom_type == "Polygon" and not g.is_empty]
    item.geometry = json.loads(json.dumps(mapping(MultiPolygon(parts))))
    (w0, s0, _, n0), (_, s1, e1, n1) = west_part.bounds, east_part.bounds
    item.bbox = [float(w0), float(min(s0, s1)), float(e1), float(max(n0, n1))]


# geosr's band roles (geosr.io.rasters.band_roles) as STAC eo common names
_COMMON = {"red": "red", "green": "green", "blue": "blue", "nir": "nir", "red edge": "rededge", "panchromatic": "pan",
           "coastal": "coastal", "thermal": "lwir"}
# the eo extension's common names (v1.1): a band named one of them keeps it as its common name
EO_COMMON_NAMES = frozenset({"pan", "coastal", "blue", "green", "green05", "yellow", "red", "rededge", "rededge071",
                             "rededge075", "rededge078", "nir", "nir08", "nir09", "cirrus", "swir16", "swir22",
                             "lwir", "lwir11", "lwir12"})


def _add_eo_bands(asset: pystac.Asset, output: Path) -> None:
    """eo:bands of the output: each band's name (its description) and common name where geosr knows what it
    holds, so that the item can itself be an input (``geosr upscale ITEM.json`` picks bands by common name)."""
    info = inspect_raster(output, require_crs=False)
    roles = band_roles(info, tuple(range(1, info.count + 1)))
    narrows = narrow_names(info)  # a Sentinel-2 B11's swir16, a Landsat OLI B6's (a Landsat B11 is lwir)
    bands = []
    for i, role in enumerate(roles):
        name = info.descriptions[i] or f"b{i + 1}"
        common = (name.lower() if name.lower() in EO_COMMON_NAMES else None) or narrows[i] or _COMMON.get(role or "")
        bands.append(Band.create(name=name, common_name=common))
    EOExtension.ext(asset, add_if_missing=True).bands = bands


POLE_TOLERANCE = 1e-7  # degrees of latitude from 90 within which an outline's point is at a pole


def _outline_through_poles(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """The grid's outline in its CRS (:func:`geosr.tiling.grid.outline`), with a pole that lies on it (a polar
    tile's corner or edge) one of its points, exactly (:func:`_pole_as_edge` makes that point an edge)."""
    from pyproj import Transformer

    xs, ys = outline(grid, EDGE_POINTS)
    w, h = grid.width, grid.height
    t = np.linspace(0.0, 1.0, EDGE_POINTS, endpoint=False)
    along = np.concatenate([t * w, w + t * h, w + h + t * w, 2 * w + h + t * h])  # each point's way round
    to_grid = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True)
    tol = 1e-6 * max(w, h)
    for top in (90.0, -90.0):
        x, y = to_grid.transform(0.0, top)
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        col, row = ~grid.transform @ (x, y)
        if not (-tol <= col <= w + tol and -tol <= row <= h + tol):
            continue
        if abs(row) <= tol:
            way = col
        elif abs(col - w) <= tol:
            way = w + row
        elif abs(row - h) <= tol:
            way = w + h + (w - col)
        elif abs(col) <= tol:
            way = 2 * w + h + (h - row)
        else:  # inside the raster: its outline winds around it (_around_pole)
            continue
        way = float(np.clip(way, 0.0, 2 * (w + h))) % (2 * (w + h))
        at = int(np.argmin(np.abs(along - way)))
        if abs(along[at] - way) <= tol:
            xs[at], ys[at] = x, y
        else:
            at = int(np.searchsorted(along, way))
            xs, ys, along = (np.insert(v, at, new) for v, new in ((xs, x), (ys, y), (along, way)))
    return xs, ys


def _pole_as_edge(grid: Grid, xs: np.ndarray, ys: np.ndarray, lon: np.ndarray,
                  lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The outline in WGS84 (``lon``, ``lat`` of ``xs``, ``ys``) with each point at a pole made the edge along the
    pole's latitude that it is in longitude: from its neighbours' longitudes through that of a point just inside
    the raster. A pole's longitude is any: the CRS's own, which took a polar tile with the pole at a corner to a
    footprint and bbox twice its width (found in review: EPSG:3031 lon 90-180 as 0-180)."""
    from pyproj import Transformer

    at_pole = np.abs(np.abs(lat) - 90.0) <= POLE_TOLERANCE
    if not at_pole.any() or at_pole.all():
        return lon, lat
    cx, cy = grid.transform @ (grid.width / 2, grid.height / 2)
    to_lonlat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    n = len(lon)
    out_lon: list[float] = []
    out_lat: list[float] = []
    for i in range(n):
        if not at_pole[i]:
            out_lon.append(float(lon[i]))
            out_lat.append(float(lat[i]))
            continue
        before = next(lon[(i - k) % n] for k in range(1, n) if not at_pole[(i - k) % n])
        after = next(lon[(i + k) % n] for k in range(1, n) if not at_pole[(i + k) % n])
        inside, _ = to_lonlat.transform(xs[i] + 1e-3 * (cx - xs[i]), ys[i] + 1e-3 * (cy - ys[i]))
        pole = 90.0 if lat[i] > 0 else -90.0
        out_lon += [float(before), float(inside), float(after)]
        out_lat += [pole] * 3
    return np.asarray(out_lon), np.asarray(out_lat)


def _around_pole(grid: Grid, lon: np.ndarray, lat: np.ndarray) -> BaseGeometry | None:
    """The footprint of a raster that holds a pole, whose outline in WGS84 winds once around it (``lon`` unwrapped,
    ending 360 degrees from where it began): the outline closed along the pole's latitude, cut at the antimeridian
    and joined again, so that it reaches 90 degrees (rio-stac's ring joined the corners across 180 degrees, leaving
    out the pole and most of the scene). None when the pole is not inside the raster."""
    from pyproj import Transformer
    from shapely.affinity import translate
    from shapely.geometry import Polygon, box
    from shapely.geometry.polygon import orient
    from shapely.ops import unary_union

    to_grid = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True)
    for top in (90.0, -90.0):  # the pole the raster holds
        col, row = ~grid.transform @ to_grid.transform(0.0, top)
        if 0 <= col <= grid.width and 0 <= row <= grid.height:
            break
    else:
        return None
    lon = lon - 360.0 * np.floor((lon[0] + 180.0) / 360.0)  # its start in [-180, 180)
    lon[-1] = lon[0] + 360.0 * np.sign(lon[-1] - lon[0])  # the outline's last point is its first, once around
    closed = Polygon([*zip(lon, lat), (lon[-1], top), (lon[0], top)]).buffer(0)
    if closed.is_empty:
        return None
    pieces = [translate(closed.intersection(box(x0, -90.0, x0 + 360.0, 90.0)), xoff=-x0 - 180.0)
              for x0 in (-540.0, -180.0, 180.0)]
    joined = unary_union([g for piece in pieces for g in getattr(piece, "geoms", [piece])
                          if g.geom_type == "Polygon" and not g.is_empty])
    return orient(joined, sign=1.0) if joined.geom_type == "Polygon" else joined


def _fix_raster_statistics(asset: pystac.Asset, output: Path) -> None:
    """Numbers of rio-stac's raster extension made right: ``valid_percent`` (rio-stac 0.12 divides the count
    of a mask array's *elements* that are unmasked, 1 for a raster without nodata, by the pixel count: 0.000625
    for a 400 x 400 output), taken here from each band's mask read as the statistics were; each histogram's
    ``count``, the number of its buckets (rio-stac gives the number of bin edges, one more); statistics that
    overflowed in a float32 band's own type (a mean of -Infinity, which JSON cannot hold), in float64."""

    bands = asset.extra_fields.get("raster:bands", [])
    with open_raster(output) as ds:
        shape = _stats_shape(ds)
        # each band's own: a band without data where others have some is nodata there (docs/data-contract.md)
        valid = [100.0 * float(np.mean(ds.read_masks(b, out_shape=shape) > 0)) for b in range(1, ds.count + 1)]
        for b, band in enumerate(bands, start=1):  # a float32 band's sums overflow near its range: in float64
            stats = band.get("statistics")
            if isinstance(stats, dict) and not all(np.isfinite(v) for v in stats.values() if isinstance(v, float)):
                values = ds.read(b, masked=True, out_shape=shape).compressed().astype(np.float64)
                if values.size:
                    stats.update(minimum=float(values.min()), maximum=float(values.max()),
                                 mean=float(values.mean()), stddev=float(values.std()))
    for band, share in zip(bands, valid):
        if isinstance(band.get("statistics"), dict):
            band["statistics"]["valid_percent"] = round(share, 4)
        if isinstance(band.get("histogram"), dict) and isinstance(band["histogram"].get("buckets"), list):
            band["histogram"]["count"] = len(band["histogram"]["buckets"])


def _members(src: str) -> list[str]:
    """The files (or URLs) a comma-separated input stacks (band files, :mod:`geosr.io.sources`), or the input
    itself."""
    return [p.strip() for p in src.split(",")] if is_file_list(src) else [src]


def _href(src: str, folder: Path) -> str:
    """A local input relative to the item's folder (a catalogue can move them together), a URL without its query
    and fragment (a signed URL's signature or token is no link to share; also the URL a /vsicurl/ path reads, which
    no STAC client follows: `/vsicurl?url=...` was linked as "/vsicurl", found in review), a GDAL path as it is."""
    src = curl_url(src) or src
    if "://" in src and not src.startswith("/vsi"):  # (nor its user name and password)
        return without_credentials(urllib.parse.urlsplit(src)._replace(query="", fragment="").geturl())
    if src.startswith("/vsi"):
        return without_credentials(src)
    src = subdataset_file(src) or src  # a container's raster (GPKG:scene.gpkg:table, no URI): its file
    try:
        # both as written, links unresolved, where that leads to the file from the item's folder (the folder
        # resolved and the input not gave "../../../proj/s2.tif" through a linked folder); else both resolved (a
        # relative input is read from the working folder's physical path, the output's path through a link: its
        # ".." crossed the link; both found in review)
        written = os.path.relpath(os.path.abspath(src), os.path.abspath(folder))
        if not os.path.exists(os.path.join(folder, written)):
            real = os.path.relpath(os.path.realpath(src), os.path.realpath(folder))
            written = real if os.path.exists(os.path.join(folder, real)) else written
        return uri_path(written)
    except ValueError:  # another drive
        return uri_path(os.path.abspath(src))


def uri_path(path: str) -> str:
    """A local path as a STAC href, a URI reference: ``%``, ``#`` and ``?`` percent-encoded (``a#1.tif`` would be
    read as ``a`` with a fragment). Spaces and other letters stay as written, as readers that do not decode hrefs
    (GDAL, pystac's file reader) then still find the file; geosr's reader decodes (:mod:`geosr.io.stac_items`)."""
    return re.sub(r"[%#?]", lambda m: f"%{ord(m.group()):02X}", path)
