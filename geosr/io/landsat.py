"""Landsat files as USGS names and ships them: which sensor a band file is from and the colours of its bands,
Collection 2 product names (fill value 0), and the product metadata (``*_MTL.txt`` / ``*_MTL.json``) that gives a
Level-2 band's scale and offset and the acquisition time. No torch here.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from geosr.errors import NotARasterError
from geosr.io.vrt import Radiometry

# A Landsat file's sensor from its name: Collection product IDs (LE07_L2SP_..., LC09_..., LM05_L1TP_...) and older
# scene IDs (LT50440342009...): M (MSS), T (TM), E (ETM+), C / O (OLI) and the satellite
_LANDSAT_FILE = re.compile(r"^L([MTECO])0?([1-9])", re.IGNORECASE)
# What each band token holds, per sensor, as GDAL's colour interpretation names it: the same B3 is red on TM / ETM+
# and green on OLI, and OLI's B11 is thermal, where Sentinel-2's is short-wave infrared (it was taken for SWIR:
# `--bands swir` picked it; found in review); MSS has no blue band (Landsat 1-3 number its bands 4-7, Landsat 4-5
# 1-4); OLI's B9 (cirrus) is left unnamed
_COLOURS = {"TM": {"B1": "blue", "B2": "green", "B3": "red", "B4": "nir", "B5": "swir", "B6": "lwir", "B7": "swir",
                   "B8": "pan"},
            "OLI": {"B1": "coastal", "B2": "blue", "B3": "green", "B4": "red", "B5": "nir", "B6": "swir",
                    "B7": "swir", "B8": "pan", "B10": "lwir", "B11": "lwir"},
            "MSS1": {"B4": "green", "B5": "red", "B6": "nir", "B7": "nir"},
            "MSS4": {"B1": "green", "B2": "red", "B3": "nir", "B4": "nir"}}
# Each sensor's bands by the STAC common names narrower than their colour (USGS's Collection 2 items): TM's and
# OLI's NIR differ in number, MSS has two NIR bands (nir08, nir09) and no SWIR
_NARROW = {"TM": {"B4": "nir08", "B5": "swir16", "B7": "swir22"},
           "OLI": {"B5": "nir08", "B6": "swir16", "B7": "swir22"},
           "MSS1": {"B6": "nir08", "B7": "nir09"}, "MSS4": {"B3": "nir08", "B4": "nir09"}}
# A Collection 2 product ID (LC09_L2SP_044034_20230612_20230614_02_T1): every band's fill value is 0
_COLLECTION_2 = re.compile(r"^L[MTECO]0[1-9]_L[12][A-Z0-9]{2}_\d{6}_\d{8}_\d{8}_02_(T1|T2|RT)", re.IGNORECASE)
# One band's file of it, as USGS names them (SR_ / ST_ of Level 2, the band), anchored at the end: a geosr output named
# after one (..._SR_B4_x2.tif) is no band file (found in review)
_BAND_FILE = re.compile(_COLLECTION_2.pattern + r"(_(SR|ST))?_B\d{1,2}(_VCID_[12])?\.tiff?$", re.IGNORECASE)
# A Landsat product as USGS delivers it: one tar (uncompressed for Collection 2, gzipped before), or a zip of it as
# other archives serve it ("not a raster GDAL can read" gave no way forward; found in review)
_ARCHIVE = re.compile(r"^L[MTECO]0?[1-9].*\.(tar|tar\.gz|tgz|zip)$", re.IGNORECASE)


def landsat_colour(name: str, token: str | None) -> str | None:
    """What the band ``token`` of the Landsat file ``name`` holds (red, green, blue, nir, swir, lwir, pan, coastal:
    GDAL's colour interpretations), None for another band, sensor or file: written as the band's colour
    interpretation, so that the default bands, what ``--bands red`` (or nir, swir) selects and the output's colours
    follow the sensor, not Sentinel-2's B4 = red and B11 = SWIR."""
    sensor = _sensor(name)
    if sensor is None or token is None:
        return None
    token = re.sub(r"_VCID_[12]$", "", token, flags=re.IGNORECASE)  # (ETM+'s two thermal gains: B6; review)
    return _COLOURS[sensor].get(token)


def landsat_narrow(name: str, token: str | None) -> str | None:
    """The STAC common name narrower than its colour of the band ``token`` of the Landsat file ``name`` (nir08,
    nir09, swir16, swir22: what ``--bands swir16`` selects), None for another band, sensor or file."""
    sensor = _sensor(name)
    return _NARROW.get(sensor, {}).get(token) if sensor and token else None


def _sensor(name: str) -> str | None:
    """The sensor of the Landsat file ``name`` as the tables above key it (TM for ETM+ too), None for another."""
    m = _LANDSAT_FILE.match(name)
    if m is None:
        return None
    kind, sat = m.group(1).upper(), int(m.group(2))
    return ("OLI" if kind in "CO" else "TM" if kind in "TE" and sat in (4, 5, 7)
            else ("MSS1" if sat <= 3 else "MSS4") if kind == "M" and sat <= 5 else None)


def landsat_file(name: str) -> bool:
    """Whether ``name`` is named as a Landsat file (a product or scene ID first), of any collection or sensor."""
    return bool(_LANDSAT_FILE.match(name))


def collection_2(name: str) -> bool:
    """Whether ``name`` is a Landsat Collection 2 product's file (its fill value, 0, is nodata)."""
    return bool(_COLLECTION_2.match(name))


def collection_2_band_file(name: str) -> bool:
    """Whether ``name`` is one band's file of a Landsat Collection 2 product, as USGS names them."""
    return bool(_BAND_FILE.match(name))


def is_landsat_archive(path: str) -> bool:
    """Whether ``path`` is a Landsat product's archive (tar, as USGS delivers it, or zip; a local file)."""
    return bool(_ARCHIVE.match(Path(path).name)) and Path(path).is_file()


def landsat_radiometry(files: list[Path]) -> Radiometry | None:
    """The scale and offset of the Collection 2 Level-2 band ``files`` (surface reflectance ``_SR_B*``, surface
    temperature ``_ST_B*``) from their product's metadata file beside them (``<product ID>_MTL.txt``, else
    ``.json``; without one, the values USGS publishes for every such product), and the acquisition time; None for
    files of no Collection 2 product. Level-1 bands get none
    (their DN scale to radiance or, corrected for the sun's elevation, to reflectance: which one is the user's
    choice). Raises NotARasterError naming the metadata file when it is unreadable or a value is no number."""
    if not files:
        return None
    folder = files[0].parent
    product = _product_id(files[0].name)
    if product is None or any(f.parent != folder or _product_id(f.name) != product for f in files):
        return None
    mtl = next((p for p in (folder / f"{product}_MTL.txt", folder / f"{product}_MTL.json") if p.is_file()), None)
    if mtl is None:
        return published_radiometry([f.name for f in files])
    groups = _read_mtl(mtl)
    scales: dict[str, float] = {}
    offsets: dict[str, float] = {}
    unscaled: list[tuple[Path, str]] = []
    for f in files:
        m = re.search(r"_(SR|ST)_B(\d+)\.", f.name, re.IGNORECASE)
        if m is None:
            continue
        if m.group(1).upper() == "SR":
            group, mult, add = ("LEVEL2_SURFACE_REFLECTANCE_PARAMETERS", f"REFLECTANCE_MULT_BAND_{m.group(2)}",
                                f"REFLECTANCE_ADD_BAND_{m.group(2)}")
        else:
            group, mult, add = ("LEVEL2_SURFACE_TEMPERATURE_PARAMETERS", f"TEMPERATURE_MULT_BAND_ST_B{m.group(2)}",
                                f"TEMPERATURE_ADD_BAND_ST_B{m.group(2)}")
        values = groups.get(group, {})
        if mult in values and add in values:
            scales[f.name], offsets[f.name] = _number(mtl, mult, values[mult]), _number(mtl, add, values[add])
            if scales[f.name] == 0:  # every value would read as the offset; the fix is in this file, not the band's
                # (the band-scale check advised gdal_edit.py on the product's folder; found in review)
                raise NotARasterError(f"{mtl}: its {mult} is {values[mult]!r}, which would read every value of "
                                      f"{f.name} as its offset; correct it or select other bands")
        else:
            unscaled.append((f, mult if mult not in values else add))
    if scales and unscaled:  # bands in reflectance beside bands in raw DN, stacked as one image (a cut-off file)
        f, key = unscaled[0]
        raise NotARasterError(f"{mtl}: gives no {key} for {f.name} but scales the product's other bands (is it "
                              "complete?); restore the product's metadata file")
    image = groups.get("IMAGE_ATTRIBUTES", {})
    date, time = image.get("DATE_ACQUIRED"), image.get("SCENE_CENTER_TIME")
    acquired = None
    if date and re.fullmatch(r"\d{4}-\d{2}-\d{2}", date):
        hms = re.match(r"\d{2}:\d{2}:\d{2}", time or "")
        acquired = f"{date}T{hms.group(0) if hms else '00:00:00'}Z"
    kinds = sorted({"surface temperature" if "_ST_" in n.upper() else "surface reflectance" for n in scales})
    note = f"{' and '.join(kinds)} scale and offset from {mtl.name}" if scales else f"no band scale in {mtl.name}"
    return Radiometry(scales, offsets, acquired, str(mtl), note)


# Collection 2 Level-2's scale and offset, the same for every Landsat 4-9 product (USGS, Landsat 8-9 Collection 2
# Level 2 Science Product Guide, section 6): what the band files of a product whose MTL file is not beside them hold
_PUBLISHED = {"SR": (2.75e-05, -0.2), "ST": (0.00341802, 149.0)}


def published_radiometry(names: list[str]) -> Radiometry | None:
    """The published scale and offset of the Collection 2 Level-2 band files ``names`` (of one product), for files
    read without their product's MTL file (a folder without it, URLs: they were read as raw DN), dated by the product
    ID's acquisition day; None for Level-1 bands and other files."""
    product = _product_id(names[0]) if names else None
    if product is None or any(_product_id(n) != product for n in names) or product.upper()[5:7] != "L2":
        return None
    kinds = {n: m.group(1).upper() for n in names if (m := re.search(r"_(SR|ST)_B\d+\.", n, re.I))}
    if not kinds:
        return None
    scales = {n: _PUBLISHED[k][0] for n, k in kinds.items()}
    offsets = {n: _PUBLISHED[k][1] for n, k in kinds.items()}
    day = product.split("_")[3]
    said = " and ".join(sorted({"surface temperature" if k == "ST" else "surface reflectance" for k in kinds.values()}))
    return Radiometry(scales, offsets, f"{day[:4]}-{day[4:6]}-{day[6:]}T00:00:00Z", "",
                      f"{said} scale and offset as USGS publishes them for Collection 2 Level-2 (no {product}_MTL.txt "
                      "beside the bands)")


def _product_id(name: str) -> str | None:
    m = _COLLECTION_2.match(name)
    return name[:m.end()] if m else None


def _read_mtl(path: Path) -> dict[str, dict[str, str]]:
    """The groups of a Landsat metadata file (``GROUP = NAME`` ... ``KEY = value`` ... ``END_GROUP``, or its
    JSON form), each as its keys' values (quotes removed). The JSON form: ``LANDSAT_METADATA_FILE`` of groups."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise NotARasterError(f"{path}: the product metadata cannot be read ({exc.strerror or exc})") from exc
    if path.suffix.lower() == ".json":
        try:
            top = json.loads(text).get("LANDSAT_METADATA_FILE", {})
        except (ValueError, AttributeError) as exc:
            raise NotARasterError(f"{path}: the product metadata is not a Landsat JSON metadata file") from exc
        return {g: {k: str(v) for k, v in values.items()} for g, values in top.items() if isinstance(values, dict)}
    groups: dict[str, dict[str, str]] = {}
    stack: list[str] = []
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip().strip('"')
        if not sep:
            continue
        if key == "GROUP":
            stack.append(value)
        elif key == "END_GROUP":
            if stack:
                stack.pop()
        elif stack:
            groups.setdefault(stack[-1], {})[key] = value
    return groups


def _number(path: Path, key: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise NotARasterError(f"{path}: its {key} is {text!r}, not a finite number")
    return value
