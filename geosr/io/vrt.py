"""A GDAL VRT document stacking bands of several files on their common grid (geosr.io.sources' inputs).

Written with ElementTree because rasterio has no ``BuildVRT`` and GDAL's own Python bindings are not a geosr
dependency; GDAL opens the XML string like a file. No torch here.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import threading
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rasterio
from rasterio.errors import RasterioIOError

from geosr.errors import BandError, InputError, NetworkError, NotARasterError
from geosr.io.paths import (
    OPEN_REMOTE_OPTIONS,
    malformed_url,
    named,
    network_failure,
    over_network,
    refuse_undecodable,
    without_query,
)

if TYPE_CHECKING:
    from geosr.io.sensor_masks import SensorMask

# How rasterio maps URL schemes onto GDAL's virtual file systems (a VRT member must name the GDAL path)
_VSI = {"http": "/vsicurl/http", "https": "/vsicurl/https", "s3": "/vsis3", "gs": "/vsigs", "az": "/vsiaz"}


@dataclass(frozen=True)
class Member:
    """One band of a composite source: band ``band`` of the file at ``href``."""

    href: str
    band: int
    description: str
    nodata: float | None = None
    scale: float | None = None  # None: the member's own
    offset: float | None = None
    colorinterp: str | None = None
    missing: str | None = None  # why the file is not there (a product's band not downloaded): a band of nodata


@dataclass(frozen=True)
class Radiometry:
    """A product's scale and offset per band file (physical value = DN * scale + offset), the acquisition time, and
    the metadata file they were read from."""

    scales: dict[str, float]  # by band file name
    offsets: dict[str, float]
    acquired: str | None  # ISO 8601, UTC
    source: str  # the metadata file ("": values the product's maker publishes for all its products)
    note: str  # what was applied, in words


@dataclass(frozen=True)
class Composite:
    """A multi-file input as the one raster GDAL opens: ``vrt`` (an XML document)."""

    path: str  # as the user named it
    kind: str  # "STAC item", "Sentinel-2 L2A product", "band files"
    vrt: str
    files: tuple[str, ...]  # every file it reads (metadata and bands): output checks and resume fingerprints
    note: str  # what was stacked and how, in words
    left_out: tuple[str, ...] = ()  # the bands not stacked (on another grid than the first's), by description
    mask: SensorMask | None = None  # the sensor's own cloud mask shipped beside the bands (its file is in ``files``)
    mask_unused: str | None = None  # why a cloud mask the input names is not used (its file is missing; two)
    missing: tuple[tuple[str, str], ...] = ()  # (description, why) of the bands stacked as nodata: file missing
    finer: tuple[str, ...] = ()  # of ``left_out``, the bands on a finer grid (a Landsat folder's panchromatic B8)
    aliases: tuple[tuple[str, str], ...] = ()  # (another name, description) of a band: a STAC item's B04 for red


def gdal_path(href: str) -> str:
    """The path GDAL opens for ``href``: URLs on GDAL's virtual file systems, local paths absolute."""
    m = re.match(r"^([a-z][a-z0-9+.-]*)://(.*)$", href, re.IGNORECASE)
    if m and m.group(1).lower() == "file":
        return urllib.request.url2pathname(urllib.parse.urlparse(href).path)
    if m:
        scheme = m.group(1).lower()
        if scheme not in _VSI:
            raise InputError(f"{href}: URLs of scheme {scheme!r} are not supported (http, https, s3, gs, az)")
        rest = m.group(2)
        return f"{_VSI[scheme]}://{rest}" if scheme.startswith("http") else f"{_VSI[scheme]}/{rest}"
    return href if href.startswith("/vsi") else os.path.abspath(href)


@dataclass(frozen=True)
class Header:
    crs: str
    transform: tuple[float, ...]
    width: int
    height: int
    dtypes: tuple[str, ...]
    nodata: tuple[float | None, ...]
    block: tuple[int, int]
    scales: tuple[float, ...] = ()  # per band, as the file declares them (a VRT band does not take its source's)
    offsets: tuple[float, ...] = ()
    units: tuple[str, ...] = ()
    crs_key: str = ""  # the CRS as compared: its EPSG code where it has one (GDAL's drivers spell one CRS's WKT
    # differently: HFA's UNIT["meters",1] is GeoTIFF's UNIT["metre",1,AUTHORITY[...]]), else its WKT
    metres: float = 0.0  # the pixel's width in metres (a geographic CRS's at the raster's centre latitude)
    band_tags: tuple[tuple[tuple[str, str], ...], ...] = ()  # each band's metadata (wavelength...), a VRT band's own

    @property
    def grid(self) -> tuple:
        return self.crs_key or self.crs, tuple(round(v, 9) for v in self.transform), self.width, self.height

    @property
    def res(self) -> float:
        """The pixel's width in metres, comparable across CRSs (in the CRS's units where unknown)."""
        return self.metres or abs(self.transform[0])


class _TagFailures(logging.Handler):
    """The TIFF tags GDAL reported it could not read while a file was opened (its warnings reach Python's logging)."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.WARNING)
        self.name_in_message, self.tags = name, []  # type: ignore[var-annotated]
        self.thread = threading.get_ident()  # GDAL names the file by its base name: another thread's may share it

    def emit(self, record: logging.LogRecord) -> None:
        found = _UNREAD_TAG.search(record.getMessage())
        if found and record.thread == self.thread and self.name_in_message in record.getMessage():
            self.tags.append(found.group(1))


_UNREAD_TAG = re.compile(r'IO error during reading of "([^"]+)"')


@contextlib.contextmanager
def unread_tags(path: str) -> Iterator[list[str]]:
    """The names of the TIFF tags GDAL skips as unreadable while ``path`` is opened within: a file cut short at its
    end loses the tags stored there (band names, scales, the CRS) and still opens, with a warning only. (GDAL says
    so through rasterio's logger alone: where a caller silences its warnings, nothing is seen.)"""
    handler = _TagFailures(Path(without_query(path)).name)
    log = logging.getLogger("rasterio._env")
    log.addHandler(handler)
    try:
        yield handler.tags
    finally:
        log.removeHandler(handler)


def open_member(owner: str, href: str, what: str = "band file") -> rasterio.DatasetReader:
    """Open one member file (``what`` it is, in words); its failure is one sentence naming the composite and the
    member (a NetworkError when the network or the member's server is at fault)."""
    refuse_undecodable(href)
    try:
        target = gdal_path(href)
    except InputError as exc:
        raise InputError(f"{owner}: its {what} {exc}") from exc
    # a band file given alone is its own composite: named once ("X: its band file X cannot be read" said it twice)
    who = f"{owner}:" if named(href) == owner else f"{owner}: its {what} {named(href)}"
    malformed = malformed_url(target)
    if malformed is not None:  # refused by the request before it is sent: no network failure to retry
        raise NotARasterError(f"{who} is not a valid URL: it {malformed}")
    try:
        with unread_tags(target) as unread:
            if target.startswith("/vsi"):  # no listing of a URL's "folder" (GDAL would look for sidecars there)
                with rasterio.Env(**OPEN_REMOTE_OPTIONS):
                    ds = rasterio.open(target)
            else:
                ds = rasterio.open(target)
    except RasterioIOError as exc:
        failure = network_failure(target) if over_network(target) else None
        if failure is not None:  # the network's or the server's fault, worth a retry (exit 1), not a bad input
            raise NetworkError(f"{who} cannot be read now: {failure}; try again") from exc
        reason = str(exc).split("\n")[0].rstrip(".")
        raise NotARasterError(f"{who} cannot be read ({reason})") from exc
    if unread:  # opened without them (scale, offset, CRS): stacked as if the file had none (found in review)
        ds.close()
        failure = network_failure(target) if over_network(target) else None
        if failure is not None:
            raise NetworkError(f"{who} cannot be read now: {failure}; try again")
        raise NotARasterError(f"{who} is truncated or corrupt: its TIFF tag {unread[0]} cannot be read (a partial "
                              "download or copy?)")
    return ds


def read_header(owner: str, href: str) -> Header:
    with open_member(owner, href) as ds:
        if ds.crs is None:
            said = f"{owner}:" if named(href) == owner else f"{owner}: its band file {href}"
            raise NotARasterError(f"{said} has no coordinate reference system")
        epsg = ds.crs.to_epsg()
        return Header(ds.crs.to_wkt(), tuple(ds.transform)[:6], ds.width, ds.height, tuple(ds.dtypes),
                       tuple(ds.nodatavals), tuple(ds.block_shapes[0]), tuple(ds.scales), tuple(ds.offsets),
                       tuple(u or "" for u in ds.units), f"EPSG:{epsg}" if epsg else "", _pixel_metres(ds),
                       tuple(tuple(ds.tags(b).items()) for b in range(1, ds.count + 1)))


def _pixel_metres(ds: rasterio.DatasetReader) -> float:
    """The width of ``ds``'s pixels in metres, to compare band files in different CRSs (a geographic CRS's degrees
    at the raster's centre latitude); 0 where the CRS's unit is unknown."""
    crs, width = ds.crs, math.hypot(ds.transform.a, ds.transform.d)
    try:
        if crs.is_geographic:
            t = ds.transform
            lat = t.f + t.d * ds.width / 2 + t.e * ds.height / 2
            return width * 111_320.0 * max(math.cos(math.radians(max(-90.0, min(90.0, lat)))), 1e-6)
        return width * float(crs.linear_units_factor[1])
    except (rasterio.errors.CRSError, ValueError, TypeError):
        return 0.0


def vrt_sources(name: str) -> list[str]:
    """The files a VRT reads its bands from (``name``: a VRT document, as composites are opened, or a .vrt file);
    none for other rasters or a VRT that cannot be parsed."""
    try:
        if name.lstrip().startswith("<VRTDataset"):
            root = ET.fromstring(name)
        elif name.lower().endswith(".vrt") and os.path.isfile(name):
            root = ET.parse(name).getroot()
        else:
            return []
    except (ET.ParseError, OSError):
        return []
    return [(e.text or "").strip() for e in root.iter("SourceFilename")]


def vrt_document(header: Header, members: list[Member], headers: dict[str, Header], metadata: dict[str, str],
                 dtype: str | None = None) -> str:
    """The VRT of ``members`` on ``header``'s grid; ``dtype``: every band's data type (default: each member's)."""
    root = ET.Element("VRTDataset", rasterXSize=str(header.width), rasterYSize=str(header.height))
    ET.SubElement(root, "SRS").text = header.crs
    a, b, c, d, e, f = header.transform
    ET.SubElement(root, "GeoTransform").text = ", ".join(repr(float(v)) for v in (c, a, b, f, d, e))
    if metadata:
        md = ET.SubElement(root, "Metadata")
        for key, value in metadata.items():
            ET.SubElement(md, "MDI", key=key).text = value
    for i, m in enumerate(members, start=1):
        h = headers[m.href]
        band = ET.SubElement(root, "VRTRasterBand", dataType=GDAL_TYPES[dtype or h.dtypes[m.band - 1]], band=str(i))
        ET.SubElement(band, "Description").text = m.description
        nodata = m.nodata if m.nodata is not None else h.nodata[m.band - 1]
        if nodata is not None:
            ET.SubElement(band, "NoDataValue").text = "nan" if math.isnan(nodata) else repr(float(nodata))
        if m.colorinterp:
            ET.SubElement(band, "ColorInterp").text = m.colorinterp
        # a member's own scale, offset and unit unless the composite sets them (a product's metadata)
        offset = m.offset if m.offset is not None else (h.offsets[m.band - 1] if h.offsets else 0.0)
        scale = m.scale if m.scale is not None else (h.scales[m.band - 1] if h.scales else 1.0)
        unit = h.units[m.band - 1] if h.units else ""
        if unit:
            ET.SubElement(band, "UnitType").text = unit
        if h.band_tags and h.band_tags[m.band - 1]:  # (a band file's wavelength and such, which the output keeps)
            md = ET.SubElement(band, "Metadata")
            for key, value in h.band_tags[m.band - 1]:
                ET.SubElement(md, "MDI", key=key).text = value
        if m.offset is not None or offset != 0.0:
            ET.SubElement(band, "Offset").text = repr(float(offset))
        if m.scale is not None or scale != 1.0:
            ET.SubElement(band, "Scale").text = repr(float(scale))
        if m.missing is not None:  # no source: the band reads as its nodata, and selecting it is refused
            continue
        src = ET.SubElement(band, "SimpleSource")
        ET.SubElement(src, "SourceFilename", relativeToVRT="0").text = gdal_path(m.href)
        ET.SubElement(src, "SourceBand").text = str(m.band)
        ET.SubElement(src, "SourceProperties", RasterXSize=str(h.width), RasterYSize=str(h.height),
                      DataType=GDAL_TYPES[h.dtypes[m.band - 1]], BlockXSize=str(h.block[1]),
                      BlockYSize=str(h.block[0]))
        rect = {"xOff": "0", "yOff": "0", "xSize": str(h.width), "ySize": str(h.height)}
        ET.SubElement(src, "SrcRect", rect)
        ET.SubElement(src, "DstRect", rect)
    return ET.tostring(root, encoding="unicode")


def mask_vrt(ds: rasterio.DatasetReader, band: int = 1) -> str:
    """A VRT on ``ds``'s grid whose one band is the validity mask of ``ds``'s band ``band`` as GDAL reads it (255
    data, 0 none: its nodata value, an internal or external mask, an alpha band). A coarser grid warped from it by
    the smallest value is 0 wherever any pixel under it has no data, which a warp of the values cannot tell (GDAL's
    resamplings skip the pixels without data)."""
    root = ET.Element("VRTDataset", rasterXSize=str(ds.width), rasterYSize=str(ds.height))
    if ds.crs is not None:
        ET.SubElement(root, "SRS").text = ds.crs.to_wkt()
    a, b, c, d, e, f = tuple(ds.transform)[:6]
    ET.SubElement(root, "GeoTransform").text = ", ".join(repr(float(v)) for v in (c, a, b, f, d, e))
    out = ET.SubElement(root, "VRTRasterBand", dataType="Byte", band="1")
    src = ET.SubElement(out, "SimpleSource")
    ET.SubElement(src, "SourceFilename", relativeToVRT="0").text = ds.name
    ET.SubElement(src, "SourceBand").text = f"mask,{band}"  # (GDAL's VRT names a band's mask so)
    return ET.tostring(root, encoding="unicode")


GDAL_TYPES = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
               "int32": "Int32", "uint64": "UInt64", "int64": "Int64", "float32": "Float32", "float64": "Float64"}


def stack(owner: str, kind: str, members: list[Member], files: list[str], note: str,
           metadata: dict[str, str] | None = None, *, same_grid: bool = True) -> Composite:
    """Stack ``members`` on the grid they share. With ``same_grid`` False, members on a grid other than the
    first member's are left out (and said in the note); with True, they are an error. A member whose file is
    ``missing`` keeps its place as a band of nodata on the grid of the first member that is there."""
    there = [m for m in members if m.missing is None]
    headers: dict[str, Header] = {}
    for m in there:
        if m.href not in headers:
            headers[m.href] = read_header(owner, m.href)
    first = headers[there[0].href]
    for m in members:  # a missing file's band: the first file's grid and data type, read from nothing
        if m.missing is not None:
            headers[m.href] = replace(first, dtypes=(first.dtypes[0],) * m.band, nodata=(m.nodata,) * m.band,
                                      scales=(), offsets=(), units=())
    kept = [m for m in members if headers[m.href].grid == first.grid]
    finer: tuple[str, ...] = ()
    if len(kept) < len(members):
        other = next(m for m in members if headers[m.href].grid != first.grid)
        if same_grid:
            raise BandError(f"{owner}: {other.href} is not on the grid of {there[0].href} (same CRS, pixel size "
                            "and extent are needed to stack band files)")
        left_out = tuple(m.description for m in members if m not in kept)
        finer = tuple(m.description for m in members if m not in kept and m.missing is None
                      and 0 < headers[m.href].metres < first.metres * 0.999)
        others = [d for d in left_out if d not in finer]
        note += "".join(f"; left out, on a {how} grid: {', '.join(which)}"
                        for how, which in (("finer", finer), ("coarser or other", others)) if which)
    # one data type for the stack (a raster's bands share one; reading bands of several fails in rasterio): the
    # smallest that holds every member's values, as numpy promotes them
    dtypes = sorted({headers[m.href].dtypes[m.band - 1] for m in kept})
    common = np.result_type(*dtypes).name if len(dtypes) > 1 else None
    if common is not None:
        note += f"; bands of {' and '.join(dtypes)} read as {common}"
    return Composite(owner, kind, vrt_document(first, kept, headers, metadata or {}, common), tuple(files), note,
                     left_out if len(kept) < len(members) else (), finer=finer,
                     missing=tuple((m.description, m.missing) for m in members if m.missing is not None))


def band_descriptions(ds: rasterio.DatasetReader) -> tuple[str | None, ...]:
    """``ds.descriptions``; where a band's name is not UTF-8 (an ENVI header's Latin-1 "Grün"), which rasterio
    cannot decode (an internal UnicodeDecodeError; found in review), each read from the dataset as GDAL describes
    it in a VRT, decoded as UTF-8 where it is, else as Latin-1. Written by hand: rasterio has no lenient reading."""
    try:
        return tuple(ds.descriptions)
    except UnicodeDecodeError:
        pass
    import html

    import rasterio.shutil
    from rasterio.io import MemoryFile

    with MemoryFile(ext=".vrt") as mem:
        rasterio.shutil.copy(ds, mem.name, driver="VRT")
        xml = mem.read()
    found: dict[int, str] = {}
    for band, body in re.findall(rb'<VRTRasterBand[^>]*\bband="(\d+)"[^>]*>(.*?)</VRTRasterBand>', xml, re.S):
        m = re.search(rb"<Description>(.*?)</Description>", body, re.S)
        if m:
            try:
                text = m.group(1).decode("utf-8")
            except UnicodeDecodeError:
                text = m.group(1).decode("latin-1")
            found[int(band)] = html.unescape(text)
    return tuple(found.get(b) for b in range(1, ds.count + 1))
