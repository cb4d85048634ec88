"""Inspecting rasters and reading windows of them (rasterio; no torch)."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from geosr.errors import BandError, GeoSRError, InputNotFoundError, NetworkError, NoCRSError, NotARasterError
from geosr.io.landsat import landsat_file
from geosr.io.paths import (  # noqa: F401 (REMOTE re-exported)
    OPEN_REMOTE_OPTIONS,
    REMOTE,
    curl_url,
    is_file_list,
    is_subdataset,
    malformed_url,
    named,
    network_error,
    network_failure,
    over_network,
    refuse_undecodable,
    refused,
    served_size,
    subdataset_file,
    without_query,
)
from geosr.io.sources import composite, is_composite
from geosr.io.vrt import GDAL_TYPES, band_descriptions, unread_tags, vrt_sources
from geosr.tiling.grid import Grid

# Statistics over an area (the LR's stretch, the harmonization, a class raster's values) never read a
# header-declared size whole: an area whose read would decode more than FULL_READ_LIMIT pixels from disk
# (after the overviews GDAL would use) is sampled instead, in at most SAMPLE_WINDOWS windows spread evenly
# over it, each inside one block of the file, decoding at most SAMPLE_BLOCK_PIXELS pixels of whole blocks.
FULL_READ_LIMIT = 8192 * 8192
SAMPLE_WINDOWS = 256
SAMPLE_BLOCK_PIXELS = 32 * 1024 * 1024

# Default RGB band names by sensor, matched against band descriptions (case-insensitive, whole names).
RGB_NAMES: tuple[tuple[str, str, str], ...] = (
    ("B04", "B03", "B02"),  # Sentinel-2
    ("B4", "B3", "B2"),  # Sentinel-2 short form, Landsat 8/9
    ("red", "green", "blue"),
    ("r", "g", "b"),
)


@dataclass(frozen=True)
class RasterInfo:
    """What geosr needs to know about an input raster."""

    path: str
    grid: Grid
    count: int
    dtypes: tuple[str, ...]
    nodata: float | None
    descriptions: tuple[str | None, ...]
    scales: tuple[float, ...]
    offsets: tuple[float, ...]
    colorinterp: tuple[str, ...]
    has_mask: bool  # an internal/external mask or an alpha band, not a nodata value
    driver: str
    gcps: int = 0  # ground control points (a raster georeferenced by them alone has no grid: no CRS here)
    gcp_crs: str | None = None  # the CRS the ground control points are given in ("EPSG:32633", else its name)
    units: tuple[str, ...] = ()  # each band's unit ("metre", "W m-2 sr-1 um-1"; "" when none)
    band_nodata: tuple[float | None, ...] = ()  # each band's nodata value (``nodata`` is the first band's)
    tags: dict[str, str] = field(default_factory=dict)  # the dataset's metadata (GDAL's default domain)
    band_tags: tuple[dict[str, str], ...] = ()  # each band's
    imagery: dict[str, str] = field(default_factory=dict)  # GDAL's IMAGERY domain (acquisition time, satellite)
    rpcs: bool = False  # rational polynomial coefficients (a raster placed by them alone has no grid either)

    @property
    def dtype(self) -> str:
        return self.dtypes[0]

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


# the name a user gave to each composite input GDAL opened as a VRT document (for messages)
_SHOWN: dict[str, str] = {}


def shown_name(name: str) -> str:
    """The name to show for a dataset's ``name``: the user's path of a composite input, else ``name`` (a
    /vsicurl?OPTIONS&url=URL path: the URL, :func:`geosr.io.paths.named`)."""
    return _SHOWN.get(name) or named(name)


# GDAL reads these when it makes a request, at the open and at every later read: set for the process (they change
# nothing for local files)
REMOTE_OPTIONS = {"GDAL_HTTP_TIMEOUT": "20", "GDAL_HTTP_CONNECTTIMEOUT": "10", "GDAL_HTTP_MAX_RETRY": "0"}


def _refuse_empty(path: str) -> None:
    """An empty path would be read as the working folder (a folder of band files is an input)."""
    if not path.strip():
        raise InputNotFoundError("a raster's path is empty (an unset shell variable?); give the file's path")


def open_raster(path: str | os.PathLike[str]) -> rasterio.DatasetReader:
    """Open a raster for reading, turning every failure into one clear sentence naming the file."""
    p = str(path)
    _refuse_empty(p)
    refuse_undecodable(p)
    remote = bool(REMOTE.match(p))
    malformed = malformed_url(p) if remote and not is_file_list(p) else None
    if malformed is not None:  # refused by the request before it is sent: no network failure to retry
        raise NotARasterError(f"{named(p)}: is not a valid URL: it {malformed}")
    # an unreachable or stalled host fails in seconds, at the open and every read (a composite's members may be URLs);
    # not for a local file, /vsimem/ or /vsizip/ one: a run on local files left them set for the caller's process
    # (found in review)
    if over_network(p) or is_composite(p):
        for key, value in REMOTE_OPTIONS.items():
            os.environ.setdefault(key, value)  # GDAL reads its configuration from the environment
    comp = composite(p)  # a STAC item, a Sentinel-2 product, band files: one VRT (geosr.io.sources)
    inside = subdataset_file(p) if comp is None else None  # a container's raster: GPKG:scene.gpkg:table
    if inside is not None and not Path(inside).exists():
        raise InputNotFoundError(f"{p}: no such file ({inside})")
    if comp is None and not remote and not is_subdataset(p) and not Path(p).exists():
        raise InputNotFoundError(f"{p}: no such file")
    if comp is None and Path(p).exists() and not Path(p).is_file():  # a FIFO or a device: GDAL would wait forever
        raise NotARasterError(f"{p}: is not a regular file (a FIFO, device or socket), not a raster file")
    try:
        with warnings.catch_warnings():  # a raster without georeferencing is named in one sentence where it matters
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            if comp is not None:
                ds = rasterio.open(comp.vrt)
                if len(_SHOWN) >= 256:
                    _SHOWN.clear()
                _SHOWN[ds.name] = p
                return ds
            with unread_tags(p) as unread:
                if remote:
                    with rasterio.Env(**OPEN_REMOTE_OPTIONS):
                        ds = rasterio.open(p)
                else:
                    ds = rasterio.open(p)
            if unread:  # opened without them: no band names, scales or CRS, as if the file had none
                ds.close()
                failure = network_failure(p) if remote else None
                if failure is not None:
                    raise network_error(named(p), failure)
                raise NotARasterError(f"{named(p)}: is truncated or corrupt: its TIFF tag {unread[0]} cannot be read "
                                      "(a partial download or copy?)")
            return ds
    except RasterioIOError as exc:
        reason = str(exc).split("\n")[0]
        failure = network_failure(p) if remote else None
        if failure is not None:  # the network's or the server's fault, worth a retry (exit 1), not a bad input
            raise network_error(named(p), failure) from exc
        if "not recognized as" in reason or "not a supported file format" in reason:
            if not remote and _safetensors_layout(p):  # (`geosr info model.safetensors`, a wrong --ref)
                raise NotARasterError(f"{named(p)}: is a model checkpoint (safetensors), not a raster; "
                                      f"`geosr models {named(p)}` describes it") from exc
            raise NotARasterError(f"{named(p)}: not a raster GDAL can read") from exc
        if remote and "Range downloading not supported" in reason:  # GDAL reads a large remote file by ranges
            raise NotARasterError(f"{named(p)}: its server does not answer range requests (HTTP Range), which reading "
                                  "a raster over the network needs; download it and give the local file") from exc
        answered = re.search(r"HTTP response code: (\d+)", reason) if remote else None
        if answered and answered.group(1) in ("404", "410"):
            raise InputNotFoundError(f"{named(p)}: no such file on its server (HTTP {answered.group(1)})") from exc
        if answered and answered.group(1) in ("401", "403"):
            raise NotARasterError(f"{named(p)}: its server refused it (HTTP {answered.group(1)}); it may need "
                                  "credentials or a signed URL") from exc
        raise NotARasterError(f"{named(p)}: cannot be read as a raster ({reason.rstrip('.')})") from exc


@contextlib.contextmanager
def _metadata(path: str) -> Iterator[None]:
    """Turn a failure of GDAL while a raster's metadata is read after its opening (an overview's directory, later
    in the file) into one sentence: over the network most likely the server's or the network's fault (exit 1)."""
    try:
        yield
    except Exception as exc:
        if isinstance(exc, GeoSRError) or not type(exc).__module__.startswith("rasterio"):
            raise
        reason = str(exc).split("\n")[0].rstrip(".")
        if REMOTE.match(path):
            raise network_error(named(path), network_failure(path) or reason) from exc
        raise NotARasterError(f"{named(path)}: cannot be read as a raster ({reason})") from exc


def _refuse_container(shown: str, subdatasets: list[str], cause: Exception | None = None) -> None:
    listed = ", ".join(subdatasets[:3]) + (f" and {len(subdatasets) - 3} more" if len(subdatasets) > 3 else "")
    raise NotARasterError(f"{shown}: is a container of {len(subdatasets)} rasters ({listed}); give the one to read by "
                          "its name as listed") from cause


def inspect_raster(path: str | os.PathLike[str], *, require_crs: bool = True, grid_only: bool = False) -> RasterInfo:
    """Read a raster's metadata (no pixels), checking that it is georeferenced. ``grid_only``: only its grid is
    wanted (``rasterize-osm --like``), so pixels of any type will do."""
    p = str(path)
    _refuse_empty(p)
    shown = named(p)  # in messages
    with open_raster(p) as ds, _metadata(p):
        # a TIFF of several pages, whose first GDAL would read unsaid (its other pages are rasters of their own, not
        # overviews or masks); over a network too (a URL's was read as its first page, the local copy refused; found
        # in review): listing them follows the chain of directories, which a TIFF of one page ends at once (no
        # request beyond the header's, measured on a COG and a tiled GeoTIFF of 2048 x 2048)
        pages = ds.driver == "GTiff" and require_crs and not grid_only
        try:
            info = _checked_info(p, shown, ds, require_crs, grid_only)
        except (NoCRSError, NotARasterError) as exc:  # its first page's fault: the container's first (assigning a CRS
            if pages and ds.subdatasets:  # only led to its refusal; review)
                _refuse_container(shown, ds.subdatasets, exc)
            raise
        # listed last: the reads above read the overviews' directories, whose failure over a network they tell as
        # the server's (the listing swallows it, and the pixels then failed unexplained; found in review)
        if pages and ds.subdatasets:
            _refuse_container(shown, ds.subdatasets)
        return info


def _crs_name(crs: "rasterio.crs.CRS | None") -> str | None:
    """``EPSG:<code>`` of ``crs`` where it is one, else its own string (WKT, PROJ); None without one."""
    if not crs:
        return None
    code = crs.to_epsg()
    return f"EPSG:{code}" if code else crs.to_string()


def _checked_info(p: str, shown: str, ds: rasterio.DatasetReader, require_crs: bool, grid_only: bool) -> RasterInfo:
    """:func:`inspect_raster`'s checks of the open raster ``ds`` and what it reads of it."""
    gcps = len(ds.gcps[0])
    gcp_crs = _crs_name(ds.gcps[1]) if gcps else None  # (the points' own CRS: "EPSG:<code>" was advised; review)
    if require_crs and ds.crs is None and gcps:
        raise NoCRSError(f"{shown}: is georeferenced by {gcps} ground control points"
                         f"{f' in {gcp_crs}' if gcp_crs else ''} only, not on a grid; warp it onto one first (e.g. "
                         f"gdalwarp -t_srs {gcp_crs if gcp_crs and gcp_crs.startswith('EPSG:') else 'EPSG:<code>'} "
                         f"{p} warped.tif)")
    # a container (NetCDF, HDF): "holds no pixels" / "no CRS" said nothing
    if ds.count < 1 and ds.subdatasets:
        _refuse_container(shown, ds.subdatasets)
    if require_crs and ds.crs is None and ds.rpcs:  # a CRS assigned would not place it: it needs its terrain
        raise NoCRSError(f"{shown}: is georeferenced by rational polynomial coefficients (RPCs) only, not on a "
                         f"grid; orthorectify it first (e.g. gdalwarp -rpc -t_srs EPSG:<code> {p} ortho.tif)")
    if require_crs and ds.crs is None:
        raise NoCRSError(f"{shown}: has no coordinate reference system (assign one, e.g. with gdal_edit.py -a_srs)")
    complex_ = next((d for d in ds.dtypes if str(d).startswith("complex")), None)  # (numpy has no complex_int16)
    if require_crs and not grid_only and complex_ is not None:  # the pixels would be cast to their real part
        raise NotARasterError(f"{shown}: holds complex values ({complex_}, e.g. single-look complex SAR); geosr "
                              "super-resolves real-valued images: convert it to amplitude or intensity first")
    if require_crs and ds.transform.is_identity:
        raise NoCRSError(f"{shown}: has no geotransform (pixel positions are not georeferenced)")
    if ds.count < 1 or ds.width < 1 or ds.height < 1:
        raise NotARasterError(f"{shown}: holds no pixels")
    if require_crs:
        _refuse_impossible_grid(shown, ds)
        _refuse_unplaceable_crs(shown, ds.crs)
    # a mask that is no nodata value rasterio reads: a dataset's (or alpha), a band's own (an external .msk of
    # per-band masks, a VRT's <MaskBand>), or a nodata GDAL reads and rasterio cannot (a 64-bit integer's
    # UINT64_MAX): its pixels were written as data when only the first two counted (found in review)
    m = rasterio.enums.MaskFlags
    has_mask = any(m.per_dataset in f or m.alpha in f or (m.all_valid not in f and m.nodata not in f)
                   or (m.nodata in f and ds.nodatavals[i] is None) for i, f in enumerate(ds.mask_flag_enums))
    return RasterInfo(
        path=p,
        grid=Grid(ds.crs, ds.transform, ds.width, ds.height),
        count=ds.count,
        dtypes=tuple(ds.dtypes),
        nodata=ds.nodata,
        descriptions=band_descriptions(ds),
        scales=tuple(ds.scales),
        offsets=tuple(ds.offsets),
        colorinterp=tuple(ci.name for ci in ds.colorinterp),
        has_mask=has_mask,
        driver=ds.driver,
        gcps=gcps,
        gcp_crs=gcp_crs,
        units=tuple(u or "" for u in ds.units),
        band_nodata=tuple(ds.nodatavals),
        tags=dict(ds.tags()),
        band_tags=tuple(dict(ds.tags(b)) for b in range(1, ds.count + 1)),
        imagery=imagery_tags(ds),
        rpcs=bool(ds.rpcs),
    )


def imagery_tags(ds: rasterio.DatasetReader) -> dict[str, str]:
    """GDAL's IMAGERY metadata domain of ``ds`` (ACQUISITIONDATETIME, SATELLITEID, CLOUDCOVER), without what says
    nothing: an empty value, or the epoch GDAL's Landsat MTL reader writes for a time it cannot parse (a quoted
    SCENE_CENTER_TIME gives "1970-01-01 00:00:00")."""
    return {k: v for k, v in ds.tags(ns="IMAGERY").items()
            if v and not (k == "ACQUISITIONDATETIME" and v.startswith("1970-01-01"))}


def some_default_bands(info: RasterInfo) -> tuple[int, ...]:
    """:func:`default_bands`, refused where there are none: a raster of alpha bands alone (an internal error,
    IndexError, where they were used; found in review)."""
    chosen = default_bands(info)
    if not chosen:
        raise BandError(f"{info.path}: has no band of pixel values, only {band_count(info.count)} of alpha "
                        "(transparency); name the bands to read to take them as values")
    return chosen


def default_bands(info: RasterInfo) -> tuple[int, ...]:
    """1-based band indexes to use by default: RGB by band description or colour interpretation, else all.

    Sentinel-2 B4,B3,B2 (or B04,B03,B02), Landsat 8/9 B4,B3,B2, or bands called red/green/blue, unless their
    colour interpretations say otherwise (a Landsat 4-7 band file's B3 is red: geosr.io.sources); otherwise the
    bands GDAL marks red/green/blue; otherwise every band (alpha bands excluded).
    """
    names = [(d or "").strip().lower() for d in info.descriptions]
    for triple in RGB_NAMES:
        idx = []
        for want in triple:
            hits = [i for i, n in enumerate(names) if n == want.lower() or n.split()[0:1] == [want.lower()]]
            if not hits:
                break
            idx.append(hits[0] + 1)
        if len(idx) == 3 and not _colours_disagree(info, tuple(idx)):
            return tuple(idx)
    ci = [c.lower() for c in info.colorinterp]
    if all(c in ci for c in ("red", "green", "blue")):
        return (ci.index("red") + 1, ci.index("green") + 1, ci.index("blue") + 1)
    return tuple(i + 1 for i, c in enumerate(ci) if c != "alpha")


# What a band holds, from its description (Sentinel-2 names, plain words) or its colour interpretation. Landsat's
# B1..B7 mean different things on different satellites, so they are not read.
_ROLES = {"b02": "blue", "b03": "green", "b04": "red", "b08": "nir", "b8a": "nir", "b05": "red edge",
          "b06": "red edge", "b07": "red edge", "b11": "swir", "b12": "swir", "blue": "blue", "green": "green",
          "red": "red", "nir": "nir", "near-infrared": "nir", "pan": "panchromatic", "panchromatic": "panchromatic",
          # STAC's common names that narrow these (Landsat's B5 is nir08, Sentinel-2's B8A too, B11 swir16)
          "nir08": "nir", "swir16": "swir", "swir22": "swir", "rededge071": "red edge", "rededge075": "red edge",
          "rededge078": "red edge"}


# Sentinel-2's bands whose STAC common name is narrower than their role's (as STAC's catalogues name them)
NARROW_NAMES = {"b8a": "nir08", "b11": "swir16", "b12": "swir22"}


# a Landsat band's narrow name by its colour interpretation and band (geosr.io.landsat marks NIR and SWIR): its SWIR
# bands, OLI's B6, B7 and TM / ETM+'s B5, B7, as USGS's STAC items name them; not its NIR, whose narrow name depends
# on the sensor (TM's B4 is nir08, MSS's nir09; geosr.io.landsat.landsat_narrow, where the file names say it)
_LANDSAT_NARROW = {("swir", "B5"): "swir16", ("swir", "B6"): "swir16", ("swir", "B7"): "swir22"}
_ROLES_OF_NARROW = {"nir08": "nir", "swir16": "swir", "swir22": "swir"}  # as GDAL's colour interpretations name them


def narrow_names(info: RasterInfo) -> tuple[str | None, ...]:
    """Each band's STAC common name narrower than its role (nir08, swir16, swir22) where geosr knows it, else None:
    Sentinel-2's B8A, B11, B12 by name unless their colour interpretation says otherwise (a Landsat OLI B11 is
    thermal), a Landsat SWIR band's by its name and colour interpretation (B1..B7 mean other bands on each
    satellite; a Landsat folder's NIR bands by their sensor: geosr.io.sources gives them as aliases)."""
    out = []
    for name, ci in zip(info.descriptions, info.colorinterp):
        name = (name or "").strip()
        narrow = NARROW_NAMES.get(name.lower().split(" ")[0])
        if ci in COLOUR_ROLES and (narrow is None or _ROLES_OF_NARROW[narrow] != ci):
            narrow = _LANDSAT_NARROW.get((ci, name.upper().rsplit("_", 1)[-1]))
        out.append(narrow)
    return tuple(out)


# STAC's common names for the roles that _ROLES spells otherwise (the first such band is taken: B05 for rededge)
_ROLE_SPELLINGS = {"rededge": "red edge", "red-edge": "red edge", "pan": "panchromatic", "lwir": "thermal",
                   "tir": "thermal"}


def band_roles(info: RasterInfo, bands: tuple[int, ...]) -> tuple[str | None, ...]:
    """What each of ``bands`` holds (red, green, blue, nir, red edge, swir, panchromatic, coastal, thermal) when its
    description or colour interpretation says so; None where neither does."""
    out = []
    for b in bands:
        word = (info.descriptions[b - 1] or "").strip().lower().split(" ")[0].replace("_", "-")
        # an infrared, panchromatic or coastal colour interpretation, which GDAL never sets by default, says more
        # than a description: a Landsat band file's (geosr.io.landsat), whose B11 is thermal, not Sentinel-2's SWIR
        role = COLOUR_ROLES.get(info.colorinterp[b - 1]) or _ROLES.get(word)
        if role is None and info.colorinterp[b - 1] in ("red", "green", "blue"):
            role = info.colorinterp[b - 1]
        out.append(role)
    return tuple(out)


COLOUR_ROLES = {"nir": "nir", "swir": "swir", "rededge": "red edge", "pan": "panchromatic", "coastal": "coastal",
                 "lwir": "thermal", "mwir": "thermal", "tir": "thermal"}


def names_rgb(info: RasterInfo, bands: tuple[int, ...]) -> bool:
    """Whether ``bands`` are red, green, blue by their descriptions (one of RGB_NAMES, in that order)."""
    names = tuple((info.descriptions[b - 1] or "").strip().lower().split(" ")[0] for b in bands)
    return any(names == tuple(n.lower() for n in triple) for triple in RGB_NAMES) and not _colours_disagree(info, bands)


def _colours_disagree(info: RasterInfo, rgb: tuple[int, ...]) -> bool:
    """Whether a band of ``rgb`` (taken as red, green, blue by name) is marked as another of the three colours,
    or as none of them while another band is (a Landsat 7 folder's B4, its near infrared, beside a red B3). Bands
    1-3 marked red, green, blue say nothing: GDAL marks any 3- or 4-band byte GeoTIFF so."""
    ci = [c.lower() for c in info.colorinterp]
    if ci[:3] == ["red", "green", "blue"]:
        return False
    marked = [c in ("red", "green", "blue") for c in ci]
    return any((ci[b - 1] != want if marked[b - 1] else any(marked)) for b, want in zip(rgb, ("red", "green", "blue")))


def band_count(n: int) -> str:
    """``n`` bands in words: "1 band", "3 bands"."""
    return f"{n} band{'s' * (n != 1)}"


def _l2a_product(path: str) -> bool:
    """Whether ``path`` is a Sentinel-2 Level-2A product, or a folder inside one (its granules hold R20m, R60m):
    by its .SAFE name or zip, not any path holding "L2A" (a STAC item's id; found in review)."""
    upper = path.upper()
    if upper.rstrip("/").endswith("MTD_MSIL2A.XML"):  # the product by its metadata file
        return True
    return "MSIL2A" in upper and (".SAFE" in upper or upper.rstrip("/").endswith(".ZIP"))


def parse_bands(spec: str | None, info: RasterInfo) -> tuple[int, ...]:
    """Band selection from ``--bands`` ("4,3,2", description names like "B04,B03,B02", or what the bands hold:
    "red,green,blue,nir"), else the default."""
    if spec is None or not spec.strip():
        return _usable(info, some_default_bands(info))
    out: list[int] = []
    names = [(d or "").strip().lower() for d in info.descriptions]
    roles = [r or "" for r in band_roles(info, tuple(range(1, info.count + 1)))]
    tokens = [t.strip() for t in spec.split(",")]
    if any(tokens) and not all(tokens):  # "1,,2" or "1,2,": a band lost to a typo, not a shorter list
        raise BandError(f"{info.path}: the band list {spec!r} has an empty item; list the bands with one comma "
                        "between each, as 4,3,2")
    for token in tokens:
        if not token:
            continue
        if token.isdigit():
            b = int(token)
        elif token.lower() in names:
            b = names.index(token.lower()) + 1
        elif token.lower() in (narrow := narrow_names(info)):  # nir08, swir16, swir22: before the role, which
            b = narrow.index(token.lower()) + 1  # would take the first SWIR band for swir22 (found in review)
        elif _ROLE_SPELLINGS.get(token.lower(), token.lower()) in roles:  # a common name (red, nir, rededge) of
            b = roles.index(_ROLE_SPELLINGS.get(token.lower(), token.lower())) + 1  # a band described as B04, B08
        else:
            comp = composite(info.path) if is_composite(info.path) else None
            meant = {a.lower(): d for a, d in (comp.aliases if comp else ())}.get(token.lower())
            if meant is not None and meant.lower() in names:  # a STAC item's band by its eo:bands name (B04)
                out.append(names.index(meant.lower()) + 1)
                continue
            wanted = _ROLE_SPELLINGS.get(token.lower(), token.lower())  # (a role of a band left out: rededge, B05's,
            # (Sentinel-2's narrow names: a Landsat B11 is thermal, its swir16 B6; found in review)
            sentinel = comp is not None and not any(landsat_file(Path(f).name) for f in comp.files)
            left = [d for d in (comp.left_out if comp else ()) if d.lower() == (meant or token).lower()  # was "has
                    or not meant and _ROLES.get(d.strip().lower().split(" ")[0]) == wanted  # no band"; review; and
                    or not meant and sentinel and NARROW_NAMES.get(d.strip().lower().split(" ")[0]) == token.lower()]
            if left and comp and left[0] in comp.finer:  # a Landsat folder's 15 m panchromatic B8
                raise BandError(f"{info.path}: its band {left[0]!r} is on a finer grid than the stacked bands', so "
                                f"it is left out of the stack (stacked: {_band_list(info)}); give its file alone as "
                                "the input to use it at its own pixel size")
            if left:  # an asset of the item, not stacked: "has no band" would say the item lacks it
                raise BandError(f"{info.path}: its band {left[0]!r} is on a coarser or other grid than the first "
                                f"band's, so it is left out of the stack (stacked: {_band_list(info)}); give its "
                                "file alone as the input" + (" (or the folder of the bands on its grid: the granule's "
                                                             "IMG_DATA/R20m or R60m)" if _l2a_product(info.path)
                                                             else "") + " to use it at its own pixel size")
            raise BandError(f"{info.path}: has no band {token!r} (it has {band_count(info.count)}: "
                            f"{_band_list(info)})")
        if not 1 <= b <= info.count:
            raise BandError(f"{info.path}: has no band {b} (it has {band_count(info.count)})")
        out.append(b)
    if not out:
        raise BandError(f"{info.path}: the band selection {spec!r} selects no band")
    return _usable(info, tuple(out))


def _usable(info: RasterInfo, bands: tuple[int, ...]) -> tuple[int, ...]:
    """``bands``, unless one is missing (:func:`refuse_missing_bands`) or has a scale of 0 in its metadata: every
    value would read as its offset (a band of 20-219 was written as zeros, with numpy's warning; found in review)."""
    zero = [b for b in bands if info.scales and info.scales[b - 1] == 0]
    if zero:  # (gdal_edit.py -scale with one value sets every band's: each band's value is given)
        fixed = " ".join("1" if v == 0 else f"{v:g}" for v in info.scales)
        raise BandError(f"{info.path}: band {zero[0]} has a scale of 0 in its metadata, which makes every value "
                        f"read as its offset; correct it (e.g. gdal_edit.py -scale {fixed} {info.path}, one value "
                        "per band) or select other bands")
    return refuse_missing_bands(info, bands)


def refuse_missing_bands(info: RasterInfo, bands: tuple[int, ...]) -> tuple[int, ...]:
    """``bands``, unless one of them is a composite's band whose file is missing (stacked as nodata to keep the
    band numbers: geosr.io.sentinel2)."""
    comp = composite(info.path) if is_composite(info.path) else None
    gone = dict(comp.missing) if comp else {}
    for b in bands:
        why = gone.get(info.descriptions[b - 1] or "")
        if why is not None:
            there = [d or str(i) for i, d in enumerate(info.descriptions, 1) if (d or "") not in gone]
            raise InputNotFoundError(f"{info.path}: {why}; download it, or select bands that are there "
                                     f"({', '.join(there)})")
    return bands


def refuse_palette(info: RasterInfo, bands: tuple[int, ...], role: str = "") -> None:
    """Refuse ``bands`` of a palette raster: its values index a colour table (classes, not intensities), which
    super-resolution and change detection would treat as brightness. ``role``: how the message names the file's
    use ("the reference "), empty for the LR."""
    if any(info.colorinterp[b - 1] == "palette" for b in bands):
        raise BandError(f"{info.path}: {role}is a palette raster (its values index a colour table: classes, not "
                        "intensities), which super-resolution would mix; expand it to RGB first (gdal_translate "
                        "-expand rgb)")


def _refuse_unplaceable_crs(shown: str, crs: rasterio.crs.CRS) -> None:
    """Refuse a CRS that no transformation places on the Earth (a local engineering CRS, another planet's): it was
    written, then failed (exit 1, a page of PROJ JSON) making the output's WGS 84 footprint, and its reference
    could not be warped to another CRS."""
    problem = _unplaceable(crs.to_wkt())
    if problem:
        raise NoCRSError(f"{shown}: its CRS {problem}")


@functools.lru_cache(maxsize=64)
def _unplaceable(wkt: str) -> str | None:
    """Why a CRS cannot be placed on the Earth, or None. pyproj, not rasterio: GDAL prints the CRS whole on stderr
    as it fails. Cached: a transformation takes up to 0.1 s to find, and every input is checked."""
    from pyproj import CRS, Transformer
    from pyproj.exceptions import ProjError

    own = CRS.from_wkt(wkt)
    try:
        Transformer.from_crs(own, CRS.from_epsg(4326), always_xy=True)
    except ProjError:
        name = f"({own.name})" if own.name and own.name.lower() != "unknown" else "(unnamed)"
        radius = own.ellipsoid.semi_major_metre if own.ellipsoid is not None else None
        if radius is not None and abs(radius / 6378137.0 - 1) > 0.01:  # Mars' 3396 km, the Moon's 1737 km
            return (f"{name} is of another body than the Earth (an ellipsoid of {radius / 1000:.0f} km), whose "
                    "rasters geosr cannot place (their footprints are in WGS 84)")
        return (f"{name} cannot be transformed to longitude/latitude (a local engineering CRS?), which geosr "
                "places every raster by; assign or warp it to a geographic or projected CRS first")
    return None


def _refuse_impossible_grid(shown: str, ds: rasterio.DatasetReader) -> None:
    """Refuse a geotransform that maps pixels onto no area (a pixel size of 0, collinear axes: every output pixel
    would lie on a line), and a geographic grid reaching beyond the poles."""
    t = ds.transform
    sides = math.hypot(t.a, t.d) * math.hypot(t.b, t.e)  # the area relative to the sides' (degree pixels: 3e-11)
    if not all(math.isfinite(v) for v in t[:6]) or abs(t.determinant) <= 1e-9 * sides:
        raise NoCRSError(f"{shown}: its geotransform ({', '.join(f'{v:g}' for v in t.to_gdal())}) gives its pixels no "
                         "area (a pixel size of 0, or parallel axes); mend it (gdal_edit.py -a_ullr or -a_gt)")
    if ds.crs is not None and ds.crs.is_geographic:
        ys = [(t @ corner)[1] for corner in ((0, 0), (ds.width, 0), (0, ds.height), (ds.width, ds.height))]
        if max(abs(y) for y in ys) > 90 + abs(t.e) + abs(t.d):  # (a pixel's slack: edges of pixels centred on 90)
            raise NoCRSError(f"{shown}: reaches latitude {max(ys, key=abs):g}, beyond the poles, in its geographic "
                             f"CRS {ds.crs.to_string()}; its geotransform is wrong (or its axes swapped)")


def refuse_mixed_types(info: RasterInfo, bands: tuple[int, ...]) -> None:
    """Refuse LR ``bands`` of several data types (a VRT can mix them): rasterio reads no such selection of the
    file itself at once (the LR's stretch and windows are read so; a reference is read through a warped VRT, which
    takes them)."""
    types = sorted({info.dtypes[b - 1] for b in bands})
    if len(types) > 1:
        common = np.result_type(*types).name
        raise BandError(f"{info.path}: bands {','.join(map(str, bands))} are of several data types "
                        f"({' and '.join(types)}), which cannot be read together; pick bands of one type with "
                        f"`bands`, or give the bands one type (gdal_translate -ot {GDAL_TYPES.get(common, common)})")


def _band_list(info: RasterInfo) -> str:
    return ", ".join(f"{i + 1}={d}" if d else str(i + 1) for i, d in enumerate(info.descriptions))


def read_window(
    ds: rasterio.DatasetReader, bands: tuple[int, ...], window: Window
) -> tuple[np.ndarray, np.ndarray]:
    """Read ``bands`` in ``window`` (clipped to the dataset) as float64 in physical units, and validity.

    Physical units apply the bands' scale/offset. Validity follows GDAL's dataset mask: False where an internal
    mask or alpha band says so, or where every selected band is at its own nodata value (or NaN); see
    :func:`physical` for a band without data in a valid pixel.
    """
    data, valid, _ = read_window_bands(ds, bands, window)
    return data, valid


def has_valid_pixel(ds: rasterio.DatasetReader, bands: tuple[int, ...], window: Window) -> bool:
    """Whether ``window`` holds a valid pixel (:func:`read_window`'s validity), read in strips of rows at full
    resolution until one is found: exact, where a decimated read misses a few valid pixels, and bounded in memory."""
    width = max(1, int(window.width))
    rows = max(1, (1 << 22) // (width * max(1, len(bands))))  # about 32 MB of float64 a strip
    top, end = int(window.row_off), int(window.row_off + window.height)
    for row in range(top, end, rows):
        _, valid = read_window(ds, bands, Window(window.col_off, row, window.width, min(rows, end - row)))
        if valid.any():
            return True
    return False


def dataset_mask(ds: rasterio.DatasetReader, **kwargs: object) -> np.ndarray:
    """``ds.dataset_mask(**kwargs)`` without rasterio's warning that a nodata value shadows an alpha band (GDAL's GPKG
    driver declares both; printed twice with Python source lines on stderr, under --json too; found in review):
    GDAL's mask is what geosr reads, and the nodata value is no less checked (:func:`band_presence`)."""
    from rasterio.errors import NodataShadowWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NodataShadowWarning)
        return ds.dataset_mask(**kwargs)


def read_window_bands(
    ds: rasterio.DatasetReader, bands: tuple[int, ...], window: Window
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`read_window`'s values and validity, and each band's own validity (C, h, w): False also where that
    band alone has no data in a valid pixel (its value there is the stand-in of :func:`band_data`)."""
    with reading(ds.name):
        data = ds.read(indexes=list(bands), window=window, out_dtype="float64")
        valid = dataset_mask(ds, window=window) > 0 if _has_any_mask(ds) else np.ones(data.shape[1:], dtype=bool)
    has = band_presence(data, [ds.nodatavals[b - 1] for b in bands])
    data, valid = physical(ds, bands, data, valid, has=has)
    return data, valid, has & valid[None]


def physical(
    ds: rasterio.DatasetReader, bands: tuple[int, ...], data: np.ndarray, valid: np.ndarray,
    has: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw ``data`` of ``bands`` (float64) in physical units (scale/offset applied), and ``valid`` narrowed to
    the pixels where at least one band has data (:func:`band_data`; ``has``: its band presence, if known)."""
    data, valid = band_data(data, valid, [ds.nodatavals[b - 1] for b in bands], has=has)
    scales = np.array([ds.scales[b - 1] for b in bands])[:, None, None]
    offsets = np.array([ds.offsets[b - 1] for b in bands])[:, None, None]
    return data * scales + offsets, valid


def band_presence(data: np.ndarray, nodata: list[float | None]) -> np.ndarray:
    """(C, h, w): where each band of raw ``data`` has data: finite and not at its own nodata value."""
    has = np.isfinite(data)
    for b, nd in enumerate(nodata):
        if nd is not None and not math.isnan(nd):
            has[b] &= data[b] != nd
    return has


def band_data(data: np.ndarray, valid: np.ndarray, nodata: list[float | None],
              has: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """GDAL's nodata semantics on (C, h, w) raw values: each band is compared with its own nodata value (and NaN);
    a pixel has no data only where every band has none (or ``valid`` already says so). A band without data in a
    pixel that has data keeps no made-up detail: it takes that band's mean over the pixels where it has data
    (0 if none), so that a gap in one band (Landsat 7's stripes are offset between bands) neither blanks the
    pixel nor enters statistics as its nodata value (:func:`read_window_bands` tells such pixels apart: the
    pipeline feeds the model the middle of the band's stretch there and writes the band as nodata)."""
    has = band_presence(data, nodata) if has is None else has  # :func:`band_presence`, when the caller has it
    valid = valid & has.any(axis=0)
    gaps = valid[None] & ~has
    if gaps.any():
        data = data.copy()
        for b in map(int, np.flatnonzero(gaps.any(axis=(1, 2)))):
            ok = has[b] & valid
            data[b][gaps[b]] = float(data[b][ok].mean()) if ok.any() else 0.0
    return data, valid


def read_failure(exc: BaseException) -> str:
    """Why a read failed, in one line: the deepest cause's first line (rasterio's "Read failed. See previous
    exception for details." hides GDAL's own reason, e.g. TIFFReadEncodedStrip's, in its cause)."""
    root = exc
    while (deeper := root.__cause__ or root.__context__) is not None:
        root = deeper
    return (str(root).splitlines() or [type(root).__name__])[0].rstrip(".")


@contextlib.contextmanager
def reading(name: str) -> Iterator[None]:
    """Turn GDAL read failures (corrupt or truncated blocks) into one sentence naming the file. A raster read over
    the network that opened and then fails mid-read is most likely the network's or its server's fault (a 503, a
    dropped connection: GDAL then reports a short read, the HTTP status lost): a NetworkError (exit 1; ``geosr
    batch`` retries it), not the bad input a local file's broken block is. So is a VRT (a local .vrt, a local STAC
    item) that reads a member over the network."""
    try:
        yield
    except RasterioIOError as exc:
        reason = read_failure(exc)
        shown = shown_name(name)
        decoding = "decod" in reason.lower()  # the bytes arrived but do not decode: the file's fault
        cut, silent = _cut_short([m for m in [name, *vrt_sources(name)] if over_network(m)])
        if cut is not None:  # what the server holds ends before the file's own pixels do: no retry can help
            which = "the file" if cut[0] == name else f"its band file {curl_url(cut[0]) or cut[0]}"
            raise NotARasterError(f"{shown}: pixels cannot be read, {which} is cut short ({cut[1]}; a partial upload "
                                  "or copy?)") from exc
        # (a VRT made of a STAC item given as a URL: its band files below tell which failed, as a local item's do; it
        # said libtiff's "TIFFFillTile: Read error at row 4294967295", no band file named; found in review)
        own = over_network(name) or over_network(shown) and not vrt_sources(name)
        if own and not decoding:
            raise NetworkError(f"{shown}: pixels stopped arriving while reading ({reason}): the server or the network "
                               "failed; try again") from exc
        if silent is not None and not decoding:
            raise NetworkError(f"{shown}: pixels stopped arriving while reading its band file "
                               f"{curl_url(silent[0]) or silent[0]}: no answer from its server ({silent[1]}); try "
                               "again") from exc
        members = [m for m in vrt_sources(name) if over_network(m)] if not decoding else []
        failed = next(((m, f) for m in members if (f := network_failure(m)) is not None), None)
        if failed is not None:
            href = curl_url(failed[0]) or failed[0]
            raise NetworkError(f"{shown}: pixels stopped arriving while reading its band file {href}: {failed[1]}; "
                               "try again") from exc
        if members and "not recognized" not in reason and not any(map(refused, members)):  # as a URL above
            raise NetworkError(f"{shown}: pixels stopped arriving while reading ({reason}): the server of a band "
                               "file or the network failed; try again") from exc
        here = Path(name).parent if os.path.isfile(name) else Path(".")  # (a source relative to the VRT's folder)
        gone = next((m for m in vrt_sources(name) if not REMOTE.match(m) and not (here / m).exists()), None)
        if gone is not None:  # a VRT whose source was moved or deleted: the VRT itself is whole
            raise InputNotFoundError(f"{shown}: pixels cannot be read, its source file {gone} does not exist") from exc
        local = [m for m in vrt_sources(name) if not over_network(m)
                 and (m.startswith(("/vsizip/", "/vsitar/")) or not REMOTE.match(m))]  # (a product zip's members)
        broken = _broken_member([m if m.startswith("/vsi") else str(here / m) for m in local])
        if broken is not None:  # (a product's or a folder's: which of its files to fetch again was unsaid; review)
            inside = os.path.isdir(shown) and os.path.abspath(broken).startswith(os.path.abspath(shown) + os.sep)
            member = os.path.relpath(broken, shown) if inside else broken.split(".zip/", 1)[-1] if \
                broken.startswith("/vsizip/") else broken  # (a product zip's member by its path in the zip)
            raise NotARasterError(f"{shown}: pixels cannot be read, its band file {member} may be corrupt "
                                  f"({reason})") from exc
        raise NotARasterError(f"{shown}: pixels cannot be read, the file may be corrupt ({reason})") from exc


def _broken_member(members: list[str]) -> str | None:
    """The first of a composite's local member files whose pixels cannot be read, in strips of at most
    STRIP_PIXELS (read only once a read of the composite has failed); None when each reads, or for fewer than two."""
    if len(members) < 2:
        return None
    for member in dict.fromkeys(members):
        try:
            with rasterio.open(member) as ds:
                rows = max(1, STRIP_PIXELS // max(1, ds.width))
                for r0 in range(0, ds.height, rows):
                    ds.read(window=Window(0, r0, ds.width, min(rows, ds.height - r0)))
        except (RasterioIOError, OSError):
            return str(member)
    return None


STRIP_PIXELS = 1 << 24  # pixels of a member file read at once while looking for the broken one


MAX_BLOCKS_CHECKED = 1 << 18  # a file of more blocks is not checked for an end cut short (reading its index)
# How long a server that served the file a moment ago may take to answer the probe for its size: one that does not
# answer then is failing (a network failure), and each member of a VRT would wait as long again.
CUT_SHORT_PROBE_TIMEOUT = 5.0  # seconds


def _cut_short(urls: list[str]) -> tuple[tuple[str, str] | None, tuple[str, str] | None]:
    """The first of ``urls`` (files read over a network) that is cut short and why (:func:`cut_short_file`), and the
    first whose server did not answer and why. Stops at either: a server that does not answer tells a network
    failure, and asking the others would only make the user wait once more for each."""
    for url in urls:
        silent, size = served_size(url, timeout=CUT_SHORT_PROBE_TIMEOUT)
        if silent is not None:
            return None, (url, silent)
        why = cut_short_file(url, size) if size is not None else None
        if why is not None:
            return (url, why), None
    return None, None


def cut_short_file(path: str, size: int) -> str | None:
    """Why the GeoTIFF at ``path`` (read over HTTP, ``size`` bytes on its server) cannot be whole: its blocks run
    beyond that size (a file cut short looks like a dropped connection to GDAL, but is the input's fault); None when
    it can be whole, is not a GeoTIFF or cannot be told."""
    try:
        with rasterio.open(path) as ds:
            if ds.driver != "GTiff":
                return None
            ends = [_blocks_end(ds)]
            levels = len(ds.overviews(1))
        for level in range(levels):  # a plain GeoTIFF's overviews are often appended after its pixels
            with rasterio.open(path, overview_level=level) as overview:
                ends.append(_blocks_end(overview))
    except (RasterioIOError, ValueError, TypeError):
        return None
    end = max((e for e in ends if e is not None), default=0)
    return f"its pixels run to byte {end:,} but its server holds {size:,} bytes" if end > size else None


def _blocks_end(ds: rasterio.DatasetReader) -> int | None:
    """Where the last of a GeoTIFF's (or one of its overviews') blocks ends in its file, by GDAL's block index;
    None for a file of more than MAX_BLOCKS_CHECKED blocks."""
    planes = range(1, ds.count + 1) if ds.interleaving and ds.interleaving.name == "band" else [1]
    rows, cols = (-(-n // b) for n, b in zip((ds.height, ds.width), ds.block_shapes[0]))
    if rows * cols * len(planes) > MAX_BLOCKS_CHECKED:
        return None
    end = 0
    for b in planes:
        for j in range(rows):
            for i in range(cols):
                offset = ds.get_tag_item(f"BLOCK_OFFSET_{i}_{j}", "TIFF", bidx=b)
                length = ds.get_tag_item(f"BLOCK_SIZE_{i}_{j}", "TIFF", bidx=b)
                if offset and length:
                    end = max(end, int(offset) + int(length))
    return end


def read_cost(ds: rasterio.DatasetReader, window: Window, out_shape: tuple[int, int] | None = None) -> float:
    """Pixels GDAL decodes from disk to read ``window``, at ``out_shape`` (h, w) from the overview it would use.

    GDAL serves a decimated read from the coarsest overview that is still at least as fine as asked for.
    """
    area = float(window.width) * float(window.height)
    if out_shape is None:
        return area
    wanted = min(float(window.width) / max(1, out_shape[1]), float(window.height) / max(1, out_shape[0]))
    with rasterio.Env():  # (GDAL's complaint of a VRT's missing source to rasterio's log, not printed on stderr)
        usable = [f for f in ds.overviews(1) if f <= wanted]
    return area / max(usable, default=1) ** 2


def blocks_under(ds: rasterio.DatasetReader, under: Window) -> list[Window]:
    """The dataset's blocks that meet ``under``, each cut to it: found from the block grid, not by going through
    every block of the file (a 10^6-px-wide map's 61 million took a minute; found in review)."""
    bh, bw = ds.block_shapes[0]
    c0, r0 = int(under.col_off), int(under.row_off)
    c1, r1 = c0 + int(under.width), r0 + int(under.height)
    return [Window(max(c, c0), max(r, r0), min(c + bw, c1) - max(c, c0), min(r + bh, r1) - max(r, r0))
            for r in range(r0 // bh * bh, r1, bh) for c in range(c0 // bw * bw, c1, bw)]


def block_sample(ds: rasterio.DatasetReader, window: Window, pixels: int | None = None) -> list[Window]:
    """Windows spread evenly over ``window`` (a bounded sample of a large area), each inside one block.

    Each window costs one block from disk; there are at most SAMPLE_WINDOWS of them and their blocks hold
    at most SAMPLE_BLOCK_PIXELS pixels (at least one block). With ``pixels`` each window is the centre of
    its block cut so that all windows hold about ``pixels`` in all; without, each is its whole block
    (clipped to ``window``).
    """
    bh, bw = ds.block_shapes[0]
    c0, r0 = max(0, int(window.col_off)), max(0, int(window.row_off))
    c1 = min(ds.width, int(window.col_off) + int(window.width))
    r1 = min(ds.height, int(window.row_off) + int(window.height))
    if c1 <= c0 or r1 <= r0:
        return []
    n = max(1, min(SAMPLE_WINDOWS, SAMPLE_BLOCK_PIXELS // (bh * bw)))
    n_rows, n_cols = (r1 - 1) // bh - r0 // bh + 1, (c1 - 1) // bw - c0 // bw + 1
    ny = max(1, min(n_rows, round(math.sqrt(n * n_rows / n_cols))))
    nx = max(1, min(n_cols, n // ny))
    rows = sorted({int(v) for v in np.linspace(r0 // bh, (r1 - 1) // bh, ny).round()})
    cols = sorted({int(v) for v in np.linspace(c0 // bw, (c1 - 1) // bw, nx).round()})
    per = None if pixels is None else max(1, pixels // (len(rows) * len(cols)))
    out = []
    for br in rows:
        y0, y1 = max(r0, br * bh), min(r1, (br + 1) * bh)
        for bc in cols:
            x0, x1 = max(c0, bc * bw), min(c1, (bc + 1) * bw)
            h, w = y1 - y0, x1 - x0
            if per is not None:
                h = min(h, max(1, math.isqrt(per)))
                w = min(w, max(1, per // h))
            out.append(Window(x0 + (x1 - x0 - w) // 2, y0 + (y1 - y0 - h) // 2, w, h))
    return out


def _has_any_mask(ds: rasterio.DatasetReader) -> bool:
    flags = ds.mask_flag_enums
    return any(rasterio.enums.MaskFlags.all_valid not in f for f in flags)


def _safetensors_layout(path: str) -> bool:
    """Whether a local file is laid out as a safetensors file (a little-endian u64 header length, then a JSON object
    that fits in the file): a model checkpoint, not a damaged raster of that suffix (found in review)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
        size = os.path.getsize(path)
    except (OSError, ValueError):
        return False
    return len(head) == 9 and 1 < int.from_bytes(head[:8], "little") <= size - 8 and head[8:9] == b"{"
