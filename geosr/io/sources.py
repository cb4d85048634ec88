"""Inputs made of several files, opened as one multi-band raster: a STAC item, a Sentinel-2 product (``.SAFE``
folder, its ``.zip`` or its ``MTD_MSI*.xml``), a folder of per-band files, or a comma-separated list of files.

Each becomes a GDAL VRT document (an XML string GDAL opens like a file) that stacks the member bands on their
common grid, with band descriptions, nodata and scale/offset; every other module reads it as one raster. The VRT
is written here with ElementTree because rasterio has no ``BuildVRT`` and GDAL's own bindings are not a geosr
dependency; pystac reads the STAC items. No torch here.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pystac
import rasterio
from rasterio.errors import RasterioIOError

from geosr.errors import BandError, InputError, InputNotFoundError, NotARasterError
from geosr.io.paths import REMOTE

RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img")
# A band token in a file name (Sentinel-2 B01..B12 and B8A, Landsat B1..B11), not part of a longer word
_BAND_TOKEN = re.compile(r"(?<![A-Za-z0-9])B(8A|0[1-9]|1[0-2]|[1-9])(?![A-Za-z0-9])", re.IGNORECASE)
# Sentinel-2's 10 m bands, in the order a product stacks them
S2_10M = ("B02", "B03", "B04", "B08")
# STAC asset roles that are renderings or metadata, never the data to super-resolve
_NOT_DATA = {"thumbnail", "overview", "visual", "metadata"}
# How rasterio maps URL schemes onto GDAL's virtual file systems (a VRT member must name the GDAL path)
_VSI = {"http": "/vsicurl/http", "https": "/vsicurl/https", "s3": "/vsis3", "gs": "/vsigs", "az": "/vsiaz"}
STAC_TIMEOUT_S = 20


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


@dataclass(frozen=True)
class Composite:
    """A multi-file input as the one raster GDAL opens: ``vrt`` (an XML document)."""

    path: str  # as the user named it
    kind: str  # "STAC item", "Sentinel-2 L2A product", "band files"
    vrt: str
    files: tuple[str, ...]  # every file it reads (metadata and bands): output checks and resume fingerprints
    note: str  # what was stacked and how, in words


def is_composite(path: str) -> bool:
    """Whether ``path`` names a multi-file input (cheap: names and folders only, nothing is read)."""
    p = path.split("?")[0]
    if _is_list(path):
        return True
    if p.lower().endswith(".json") or _is_safe_name(p):
        return True
    return not REMOTE.match(path) and Path(path).is_dir()


def _is_list(path: str) -> bool:
    return "," in path and not REMOTE.match(path) and not Path(path).exists()


def composite(path: str) -> Composite | None:
    """The composite ``path`` names, or None for a plain raster path; raises an InputError naming ``path``."""
    if not is_composite(path):
        return None
    stamp = 0
    if not REMOTE.match(path) and not _is_list(path):
        try:
            stamp = os.stat(path).st_mtime_ns
        except FileNotFoundError as exc:
            raise InputNotFoundError(f"{path}: no such file") from exc
    return _composite(path, stamp)


@functools.lru_cache(maxsize=32)
def _composite(path: str, stamp: int) -> Composite:
    """Cached per path and modification time: a run opens its inputs several times."""
    p = path.split("?")[0]
    if _is_list(path):
        return _band_list(path)
    if p.lower().endswith(".json"):
        return _stac_item(path)
    if _is_safe_name(p) or (Path(path).is_dir() and _safe_metadata(Path(path)) is not None):
        return _sentinel2_product(path)
    return _band_folder(path)


def files_of(path: str | None) -> list[str]:
    """The local files an input reads: its members for a composite, else itself (none for URLs)."""
    if path is None:
        return []
    comp = composite(path) if is_composite(path) else None
    paths = comp.files if comp else (path,)
    return [f for f in paths if not REMOTE.match(f)]


# -- the VRT -----------------------------------------------------------------------------------------------------

def gdal_path(href: str) -> str:
    """The path GDAL opens for ``href``: URLs on GDAL's virtual file systems, local paths absolute."""
    m = re.match(r"^([a-z][a-z0-9+.-]*)://(.*)$", href, re.IGNORECASE)
    if m:
        scheme = m.group(1).lower()
        if scheme not in _VSI:
            raise InputError(f"{href}: URLs of scheme {scheme!r} are not supported (http, https, s3, gs, az)")
        rest = m.group(2)
        return f"{_VSI[scheme]}://{rest}" if scheme.startswith("http") else f"{_VSI[scheme]}/{rest}"
    return href if href.startswith("/vsi") else os.path.abspath(href)


@dataclass(frozen=True)
class _Header:
    crs: str
    transform: tuple[float, ...]
    width: int
    height: int
    dtypes: tuple[str, ...]
    nodata: tuple[float | None, ...]
    block: tuple[int, int]

    @property
    def grid(self) -> tuple:
        return self.crs, tuple(round(v, 9) for v in self.transform), self.width, self.height

    @property
    def res(self) -> float:
        return abs(self.transform[0])


def _header(owner: str, href: str) -> _Header:
    try:
        with rasterio.open(gdal_path(href)) as ds:
            if ds.crs is None:
                raise NotARasterError(f"{owner}: its band file {href} has no coordinate reference system")
            return _Header(ds.crs.to_wkt(), tuple(ds.transform)[:6], ds.width, ds.height, tuple(ds.dtypes),
                           tuple(ds.nodatavals), tuple(ds.block_shapes[0]))
    except RasterioIOError as exc:
        reason = str(exc).split("\n")[0].rstrip(".")
        raise NotARasterError(f"{owner}: its band file {href} cannot be read ({reason})") from exc


def _vrt(header: _Header, members: list[Member], headers: dict[str, _Header], metadata: dict[str, str]) -> str:
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
        band = ET.SubElement(root, "VRTRasterBand", dataType=_GDAL_TYPES[h.dtypes[m.band - 1]], band=str(i))
        ET.SubElement(band, "Description").text = m.description
        nodata = m.nodata if m.nodata is not None else h.nodata[m.band - 1]
        if nodata is not None:
            ET.SubElement(band, "NoDataValue").text = "nan" if math.isnan(nodata) else repr(float(nodata))
        if m.colorinterp:
            ET.SubElement(band, "ColorInterp").text = m.colorinterp
        if m.offset is not None:
            ET.SubElement(band, "Offset").text = repr(float(m.offset))
        if m.scale is not None:
            ET.SubElement(band, "Scale").text = repr(float(m.scale))
        src = ET.SubElement(band, "SimpleSource")
        ET.SubElement(src, "SourceFilename", relativeToVRT="0").text = gdal_path(m.href)
        ET.SubElement(src, "SourceBand").text = str(m.band)
        ET.SubElement(src, "SourceProperties", RasterXSize=str(h.width), RasterYSize=str(h.height),
                      DataType=_GDAL_TYPES[h.dtypes[m.band - 1]], BlockXSize=str(h.block[1]),
                      BlockYSize=str(h.block[0]))
        rect = dict(xOff="0", yOff="0", xSize=str(h.width), ySize=str(h.height))
        ET.SubElement(src, "SrcRect", **rect)
        ET.SubElement(src, "DstRect", **rect)
    return ET.tostring(root, encoding="unicode")


_GDAL_TYPES = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
               "int32": "Int32", "uint64": "UInt64", "int64": "Int64", "float32": "Float32", "float64": "Float64"}


def _stack(owner: str, kind: str, members: list[Member], files: list[str], note: str,
           metadata: dict[str, str] | None = None, *, same_grid: bool = True) -> Composite:
    """Stack ``members`` on the grid they share. With ``same_grid`` False, members on a grid other than the
    first member's are left out (and said in the note); with True, they are an error."""
    headers: dict[str, _Header] = {}
    for m in members:
        if m.href not in headers:
            headers[m.href] = _header(owner, m.href)
    first = headers[members[0].href]
    kept = [m for m in members if headers[m.href].grid == first.grid]
    if len(kept) < len(members):
        other = next(m for m in members if headers[m.href].grid != first.grid)
        if same_grid:
            raise BandError(f"{owner}: {other.href} is not on the grid of {members[0].href} (same CRS, pixel size "
                            "and extent are needed to stack band files)")
        left = ", ".join(m.description for m in members if m not in kept)
        note += f"; left out, on a coarser or other grid: {left}"
    return Composite(owner, kind, _vrt(first, kept, headers, metadata or {}), tuple(files), note)


# -- a list of files, a folder of band files ---------------------------------------------------------------------

def _band_token(name: str) -> str | None:
    m = _BAND_TOKEN.search(name)
    return f"B{m.group(1).upper()}" if m else None


def _band_order(token: str) -> tuple[int, str]:
    digits = re.sub(r"\D", "", token)
    return int(digits or 0), token


def _band_list(path: str) -> Composite:
    hrefs = [p.strip() for p in path.split(",") if p.strip()]
    if len(hrefs) < 2:
        raise InputError(f"{path}: a list of band files needs at least two files, separated by commas")
    for h in hrefs:
        if not REMOTE.match(h) and not Path(h).is_file():
            raise InputNotFoundError(f"{path}: its band file {h} does not exist")
    members = []
    for h in hrefs:
        with _opened(path, h) as ds:
            for b in range(1, ds.count + 1):
                own = ds.descriptions[b - 1]
                name = _band_token(Path(h).name) or Path(h).stem
                members.append(Member(h, b, own or (name if ds.count == 1 else f"{name} band {b}")))
    names = ", ".join(m.description for m in members)
    return _stack(path, "band files", members, hrefs, f"{len(members)} bands stacked from {len(hrefs)} files "
                  f"({names})")


def _band_folder(path: str) -> Composite:
    folder = Path(path)
    files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in RASTER_SUFFIXES
                   and _band_token(f.name))
    if not files:
        raise NotARasterError(f"{path}: is a folder without band files (raster files named with a band, e.g. "
                              "T33UUB_20230101T101031_B04_10m.jp2) nor a Sentinel-2 product")
    by_token: dict[str, Path] = {}
    for f in files:
        by_token.setdefault(_band_token(f.name) or "", f)
    tokens = sorted(by_token, key=_band_order)
    heads = {t: _header(path, str(by_token[t])) for t in tokens}
    finest = min(h.res for h in heads.values())
    # the finest grid's bands first, so that _stack keeps them and leaves the coarser ones out
    tokens.sort(key=lambda t: (heads[t].res > finest * 1.000001, _band_order(t)))
    members = [Member(str(by_token[t]), 1, t) for t in tokens]
    kept = [t for t in tokens if heads[t].grid == heads[tokens[0]].grid]
    return _stack(path, "band files", members, [str(by_token[t]) for t in tokens],
                  f"bands {', '.join(sorted(kept, key=_band_order))} stacked from {folder.name}", same_grid=False)


class _opened:
    """rasterio.open for a member file, its failure one sentence naming the composite and the member."""

    def __init__(self, owner: str, href: str) -> None:
        self.owner, self.href = owner, href

    def __enter__(self) -> rasterio.DatasetReader:
        try:
            self.ds = rasterio.open(gdal_path(self.href))
        except RasterioIOError as exc:
            reason = str(exc).split("\n")[0].rstrip(".")
            raise NotARasterError(f"{self.owner}: its band file {self.href} cannot be read ({reason})") from exc
        return self.ds

    def __exit__(self, *exc) -> None:
        self.ds.close()


# -- Sentinel-2 products ---------------------------------------------------------------------------------------

def _is_safe_name(p: str) -> bool:
    name = p.rstrip("/").rsplit("/", 1)[-1].upper()
    return name.endswith(".SAFE") or name.endswith(".SAFE.ZIP") or bool(
        re.fullmatch(r"MTD_MSIL(1C|2A)\.XML", name)) or (name.endswith(".ZIP") and "_MSIL" in name)


def _safe_metadata(folder: Path) -> Path | None:
    for name in ("MTD_MSIL2A.xml", "MTD_MSIL1C.xml"):
        if (folder / name).is_file():
            return folder / name
    return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _sentinel2_product(path: str) -> Composite:
    """A Sentinel-2 L1C or L2A product: its 10 m bands, with reflectance = DN * scale + offset as the product
    metadata say (quantification value; from processing baseline 04.00 the BOA / radiometric add offset)."""
    p = Path(path)
    if p.is_file() and p.suffix.lower() == ".zip":
        with zipfile.ZipFile(p) as z:
            names = [n for n in z.namelist() if re.search(r"(^|/)MTD_MSIL(1C|2A)\.xml$", n)]
            if not names:
                raise NotARasterError(f"{path}: is a zip file without a Sentinel-2 product (no MTD_MSIL1C.xml "
                                      "or MTD_MSIL2A.xml)")
            text = z.read(names[0])
        base = f"/vsizip/{os.path.abspath(p)}/" + (names[0].rsplit("/", 1)[0] + "/" if "/" in names[0] else "")
        mtd_ref = base + names[0].rsplit("/", 1)[-1]
        files = [str(p)]
    else:
        mtd = p if p.is_file() else _safe_metadata(p)
        if mtd is None:
            raise NotARasterError(f"{path}: is a .SAFE folder without MTD_MSIL1C.xml or MTD_MSIL2A.xml")
        text = mtd.read_bytes()
        base = str(mtd.parent.resolve()) + "/"
        mtd_ref = str(mtd)
        files = [str(mtd)]
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise NotARasterError(f"{path}: its product metadata {mtd_ref} is not valid XML ({exc})") from exc
    level = "L2A" if "Level-2A" in _local(root.tag) else "L1C"
    info = {_local(e.tag): (e.text or "").strip() for e in root.iter() if len(e) == 0}
    baseline = info.get("PROCESSING_BASELINE", "")
    q_tag = "BOA_QUANTIFICATION_VALUE" if level == "L2A" else "QUANTIFICATION_VALUE"
    try:
        quant = float(info.get(q_tag, "10000"))
    except ValueError as exc:
        raise NotARasterError(f"{path}: its {q_tag} is not a number") from exc
    physical = {e.get("bandId"): _s2_name(e.get("physicalBand", "")) for e in root.iter()
                if _local(e.tag) == "Spectral_Information"}
    off_tag = "BOA_ADD_OFFSET" if level == "L2A" else "RADIO_ADD_OFFSET"
    offsets = {physical.get(e.get("band_id"), ""): float(e.text) for e in root.iter() if _local(e.tag) == off_tag}
    images = [(e.text or "").strip() for e in root.iter() if _local(e.tag) == "IMAGE_FILE"]
    chosen: dict[str, str] = {}
    for rel in images:
        m = re.search(r"_(B\d\d|B8A)(_10m)?$", rel.removesuffix(".jp2"))
        if m and m.group(1) in S2_10M and (level == "L1C" or m.group(2)):
            chosen.setdefault(m.group(1), rel if rel.endswith(".jp2") else rel + ".jp2")
    missing = [b for b in S2_10M if b not in chosen]
    if missing:
        raise NotARasterError(f"{path}: the product lists no image file for {', '.join(missing)} at 10 m")
    granules = {rel.split("/IMG_DATA")[0] for rel in chosen.values()}
    if len(granules) > 1:
        raise InputError(f"{path}: holds {len(granules)} granules; give one granule's IMG_DATA folder (or its "
                         "band files) instead")
    hrefs = {b: base + chosen[b] for b in S2_10M}
    for b, h in hrefs.items():
        if not h.startswith("/vsi") and not Path(h).is_file():
            raise InputNotFoundError(f"{path}: the image file of {b} is missing ({chosen[b]})")
    members = [Member(hrefs[b], 1, b, nodata=0.0, scale=1.0 / quant, offset=offsets.get(b, 0.0) / quant,
                      colorinterp={"B04": "Red", "B03": "Green", "B02": "Blue"}.get(b)) for b in S2_10M]
    added = sorted({v for k, v in offsets.items() if k in S2_10M})
    how = (f"reflectance = (DN {'+' if added and added[0] >= 0 else '-'} {abs(added[0]):g}) / {quant:g}"
           if added and len(added) == 1 and added[0] != 0 else f"reflectance = DN / {quant:g}")
    note = (f"Sentinel-2 {level} product, processing baseline {baseline or 'unknown'}: {', '.join(S2_10M)} at 10 m; "
            f"{how} (band scale and offset)")
    start = info.get("PRODUCT_START_TIME")
    meta = {"ACQUISITIONDATETIME": start} if start else {}
    meta["GEOSR_SOURCE"] = note
    return _stack(path, f"Sentinel-2 {level} product", members, files + [h for h in hrefs.values()], note, meta)


def _s2_name(physical: str) -> str:
    """Spectral_Information spells B1..B8, B8A, B9..B12; file names B01..B12."""
    m = re.fullmatch(r"B(\d+)(A?)", physical.strip().upper())
    return f"B{int(m.group(1)):02d}{m.group(2)}" if m else physical


# -- STAC items ----------------------------------------------------------------------------------------------------

def _read_item(path: str) -> pystac.Item:
    try:
        if REMOTE.match(path):
            with urllib.request.urlopen(path, timeout=STAC_TIMEOUT_S) as resp:  # noqa: S310 (the user's URL)
                data = json.loads(resp.read().decode("utf-8"))
        else:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputNotFoundError(f"{path}: no such file") from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise NotARasterError(f"{path}: the STAC item cannot be fetched ({reason})") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NotARasterError(f"{path}: is not JSON, so not a STAC item ({exc})") from exc
    if not isinstance(data, dict) or data.get("type") != "Feature" or "assets" not in data:
        raise NotARasterError(f"{path}: is JSON but not a STAC item (a GeoJSON Feature with assets)")
    try:
        return pystac.Item.from_dict(data, href=path if REMOTE.match(path) else os.path.abspath(path))
    except (KeyError, ValueError, TypeError, pystac.STACError) as exc:
        raise NotARasterError(f"{path}: is not a valid STAC item ({exc})") from exc


def _asset_bands(asset: pystac.Asset) -> list[dict]:
    """Per band of an asset: name, common_name, nodata, scale, offset (STAC 1.0 eo:/raster: extensions or 1.1
    ``bands``)."""
    f = asset.extra_fields
    eo = f.get("eo:bands") or []
    raster = f.get("raster:bands") or []
    v11 = f.get("bands") or []
    n = max(len(eo), len(raster), len(v11))
    out = []
    for i in range(n):
        e = eo[i] if i < len(eo) else {}
        r = raster[i] if i < len(raster) else {}
        b = v11[i] if i < len(v11) else {}
        out.append({
            "name": e.get("name") or b.get("name"),
            "common_name": e.get("common_name") or b.get("eo:common_name"),
            "nodata": r.get("nodata", b.get("nodata")),
            "scale": r.get("scale", b.get("raster:scale")),
            "offset": r.get("offset", b.get("raster:offset")),
        })
    return out


def _stac_item(path: str) -> Composite:
    item = _read_item(path)
    candidates: list[tuple[bool, Member]] = []
    for asset in item.assets.values():
        roles = set(asset.roles or [])
        media = (asset.media_type or "").lower()
        if media and not any(t in media for t in ("tiff", "jp2", "jpeg2000", "geotiff")):
            continue
        for i, band in enumerate(_asset_bands(asset), start=1):
            name = band["common_name"] or band["name"]
            if not name:
                continue
            nodata = band["nodata"]
            nodata = float("nan") if nodata == "nan" else (float(nodata) if isinstance(nodata, (int, float)) else None)
            ci = {"red": "Red", "green": "Green", "blue": "Blue"}.get(band["common_name"] or "")
            candidates.append((bool(roles & _NOT_DATA), Member(asset.get_absolute_href() or asset.href, i, name,
                                                              nodata=nodata, scale=band["scale"],
                                                              offset=band["offset"], colorinterp=ci)))
    if not candidates:
        raise BandError(f"{path}: no asset of this STAC item names its bands (eo:bands with common names)")
    # one band per name, data assets before renderings (Sentinel-2's "visual" also holds red, green, blue)
    candidates.sort(key=lambda c: c[0])
    seen: dict[str, Member] = {}
    for _, m in candidates:
        seen.setdefault(m.description, m)
    members = list(seen.values())
    heads = {m.href: _header(path, m.href) for m in members}
    anchor = next((m for m in members if m.description == "red"), None)
    finest = min(h.res for h in heads.values())
    anchor_grid = heads[anchor.href].grid if anchor else next(h.grid for h in heads.values() if h.res == finest)
    members.sort(key=lambda m: heads[m.href].grid != anchor_grid)
    files = [path] + list(dict.fromkeys(m.href for m in members))
    meta = {"GEOSR_SOURCE": f"STAC item {item.id}"}
    if item.datetime is not None:
        meta["ACQUISITIONDATETIME"] = item.datetime.isoformat()
    kept = [m.description for m in members if heads[m.href].grid == anchor_grid]
    return _stack(path, "STAC item", members, files, f"STAC item {item.id}: bands {', '.join(kept)}", meta,
                  same_grid=False)
