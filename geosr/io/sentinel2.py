"""Sentinel-2 products (a ``.SAFE`` folder, its ``.zip`` or its ``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml``) as one
raster: the 10 m bands of the granule, with reflectance = DN * scale + offset as the product metadata say
(quantification value; from processing baseline 04.00 the BOA / radiometric add offset). No torch here.
"""

from __future__ import annotations

import math
import os
import re
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Callable

from geosr.errors import InputError, InputNotFoundError, NotARasterError
from geosr.io.paths import REMOTE
from geosr.io.sensor_masks import SensorMask, sentinel2_classi, sentinel2_msk_clouds, sentinel2_scl
from geosr.io.vrt import Composite, Member, Radiometry, stack

# Sentinel-2's 10 m bands, in the order a product stacks them
S2_10M = ("B02", "B03", "B04", "B08")
# the bands by their band_id in ESA's product metadata
S2_BAND_IDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")


def is_safe_name(p: str) -> bool:
    name = p.rstrip("/").rsplit("/", 1)[-1].upper()
    return name.endswith(".SAFE") or name.endswith(".SAFE.ZIP") or bool(
        re.fullmatch(r"MTD_MSIL(1C|2A)\.XML", name)) or (name.endswith(".ZIP") and "_MSIL" in name)


def product_zip(path: str) -> str | None:
    """The local zip file ``path`` names (a ``.zip`` of any name, or GDAL's ``/vsizip/ZIP[/...]``) when it holds a
    Sentinel-2 product (its metadata file at any depth); None otherwise. Reads the zip's directory only."""
    m = re.match(r"^/vsizip/+(.*?\.zip)(/.*)?$", path, re.IGNORECASE)
    if m and m.group(2) and not is_safe_name(m.group(2)):  # a file inside the zip (one band): GDAL's to open
        return None
    zpath = "/" + m.group(1).lstrip("/") if m and path.lower().startswith("/vsizip//") else (m.group(1) if m else path)
    if REMOTE.match(zpath) or not zpath.lower().endswith(".zip") or not os.path.isfile(zpath):
        return None
    try:
        with zipfile.ZipFile(zpath) as z:
            found = any(re.search(r"(^|/)MTD_MSIL(1C|2A)\.xml$", n) for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return None
    return zpath if found else None


def zip_member(path: str) -> str | None:
    """The part of GDAL's ``/vsizip/ZIP/PART`` path inside the zip (a product's folder or metadata file), or None."""
    m = re.match(r"^/vsizip/+.*?\.zip/+(.+?)/*$", path, re.IGNORECASE)
    return m.group(1) if m else None


def safe_metadata(folder: Path) -> Path | None:
    for name in ("MTD_MSIL2A.xml", "MTD_MSIL1C.xml"):
        if (folder / name).is_file():
            return folder / name
    return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def sentinel2_product(path: str, member: str | None = None) -> Composite:
    """A Sentinel-2 L1C or L2A product: its 10 m bands, with reflectance = DN * scale + offset as the product
    metadata say (quantification value; from processing baseline 04.00 the BOA / radiometric add offset).
    ``member``: in a zip (``path``) of several products, the one to read (its folder or metadata file)."""
    root, base, files = _metadata(path, member)
    level, info, quant, offsets = _radiometry(path, root)
    hrefs = {b: base + rel for b, rel in _images(path, root, level).items()}
    # a band file not downloaded (a product fetched band by band) keeps its band's place, as nodata: selecting it
    # is refused (geosr.io.rasters.refuse_missing_bands), the others are read (a file inside a zip on this machine
    # too; a remote one is GDAL's to tell)
    missing = {b: f"the image file of {b} is missing ({h.removeprefix(base)})" for b, h in hrefs.items()
               if (re.match(r"^/vsizip/(?!/vsi)", h, re.IGNORECASE) or not h.startswith("/vsi")) and not _exists(h)}
    if len(missing) == len(hrefs):
        raise InputNotFoundError(f"{path}: {missing[S2_10M[0]]}, and so are those of {', '.join(S2_10M[1:])}")
    members = [Member(hrefs[b], 1, b, nodata=0.0, scale=1.0 / quant, offset=offsets.get(b, 0.0) / quant,
                      colorinterp={"B04": "Red", "B03": "Green", "B02": "Blue"}.get(b), missing=missing.get(b))
               for b in S2_10M]
    note = (f"Sentinel-2 {level} product, processing baseline {info.get('PROCESSING_BASELINE') or 'unknown'}: "
            f"{', '.join(S2_10M)} at 10 m; {_reflectance(offsets, quant)} (band scale and offset)")
    if missing:
        note += "".join(f"; {why}: band {S2_10M.index(b) + 1} reads as nodata" for b, why in missing.items())
    start = info.get("PRODUCT_START_TIME")
    meta = {"ACQUISITIONDATETIME": start} if start else {}
    meta["GEOSR_SOURCE"] = note
    comp = stack(path, f"Sentinel-2 {level} product", members,
                 files + [h for b, h in hrefs.items() if b not in missing], note, meta)
    # its 20 m and 60 m bands, not read: `--bands B05` is told so, not that the product has no B05 (found in review)
    listed = {m.group(1) for e in root.iter() if _local(e.tag) == "IMAGE_FILE"
              if (m := re.search(r"_(B\d\d|B8A)(_\d\dm)?$", (e.text or "").strip().removesuffix(".jp2")))}
    comp = replace(comp, left_out=tuple(b for b in S2_BAND_IDS if b in listed and b not in S2_10M))
    found: tuple[str, Callable[[str], SensorMask], str] | None
    if level == "L2A":
        scl = _scl(root, base)
        found = None if scl is None else (scl, sentinel2_scl, "its scene classification (SCL)")
    else:  # from processing baseline 04.00 a raster (MSK_CLASSI), before it polygons (MSK_CLOUDS_B00.gml)
        found = _l1c_mask(hrefs, info.get("PROCESSING_BASELINE"))
    if found is None:
        return comp
    href, mask, what = found
    if not _exists(href):
        why = f"{what} is missing"
        return replace(comp, note=comp.note + f"; {why}: no cloud mask", mask_unused=why)
    return replace(comp, mask=mask(href), files=comp.files + (href,), note=comp.note + f"; cloud mask: {what}")


def _radiometry(path: str, root: ET.Element) -> tuple[str, dict[str, str], float, dict[str, float]]:
    """The product's level (L1C, L2A), its metadata's leaf values, quantification value and add offset per band."""
    level = "L2A" if "Level-2A" in _local(root.tag) else "L1C"
    info = {_local(e.tag): (e.text or "").strip() for e in root.iter() if len(e) == 0}
    q_tag = "BOA_QUANTIFICATION_VALUE" if level == "L2A" else "QUANTIFICATION_VALUE"
    try:
        quant = float(info.get(q_tag, "10000"))
    except ValueError as exc:
        raise NotARasterError(f"{path}: its {q_tag} is not a number") from exc
    if not math.isfinite(quant) or quant <= 0:  # (0 divided by zero; nan made every pixel nodata, exit 0)
        raise NotARasterError(f"{path}: its {q_tag} is {info.get(q_tag)}, not a positive number")
    tag = "BOA_ADD_OFFSET" if level == "L2A" else "RADIO_ADD_OFFSET"
    offsets = _offsets(path, root, tag)
    baseline = info.get("PROCESSING_BASELINE", "")
    if re.fullmatch(r"\d+(\.\d+)?", baseline) and 4 <= float(baseline) < 99 and set(offsets) != set(S2_BAND_IDS):
        # from baseline 04.00 the DN hold the reflectance plus the offset (1000): read without it, every value was
        # 0.1 too bright without a word (a cut-off or hand-made metadata file). 99.xx marks a product made with
        # Sen2Cor by its user, whose versions before 2.10 wrote DN = reflectance * 10000 and no offsets (review)
        lacking = next(b for b in S2_BAND_IDS if b not in offsets)
        raise NotARasterError(f"{path}: its metadata, of processing baseline {baseline}, gives no {tag} for {lacking} "
                              "(is it complete?); restore the product's metadata file")
    return level, info, quant, offsets


def granule_radiometry(files: list[tuple[Path, str]]) -> Radiometry | None:
    """The scale and offset of Sentinel-2 band files ((file, band: B04...)) read from inside one product's
    ``GRANULE/<granule>/IMG_DATA`` (a folder or list of them: what a product of several granules is read as), from
    the product's metadata, so that they read as the same reflectance the product does; None for files elsewhere
    or without the product's metadata file."""
    roots = set()
    for f, _ in files:
        parts = Path(os.path.abspath(f)).parts
        at = max((i for i, part in enumerate(parts) if part.upper() == "GRANULE"), default=None)
        if at is None or at + 2 >= len(parts) or parts[at + 2].upper() != "IMG_DATA":
            return None
        roots.add(Path(*parts[:at]))
    mtd = safe_metadata(roots.pop()) if len(roots) == 1 else None
    if mtd is None:
        return None
    text = mtd.read_bytes()
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise NotARasterError(f"{mtd}: the product metadata is not valid XML ({exc})") from exc
    _, info, quant, offsets = _radiometry(str(mtd), root)
    names = {Path(f).name: band for f, band in files}
    used = {b: offsets.get(b, 0.0) for b in names.values()}
    return Radiometry({n: 1.0 / quant for n in names}, {n: used[b] / quant for n, b in names.items()},
                      info.get("PRODUCT_START_TIME") or None, str(mtd),
                      f"{_reflectance(used, quant, tuple(used))} (band scale and offset from {mtd.name})")


def _l1c_mask(hrefs: dict[str, str], baseline: str | None) -> tuple[str, Callable[[str], SensorMask], str] | None:
    """An L1C product's cloud mask in its granule's ``QI_DATA`` (href, kind, what it is in words): from processing
    baseline 04.00 the raster ``MSK_CLASSI_B00.jp2``, before it the polygons of ``MSK_CLOUDS_B00.gml`` (products of
    the format before December 2016: ``..._MSK_CLOUDS_..._B00_MSIL1C.gml``); the baseline not given or not a
    number: whichever of the two is there (None when neither is)."""
    qi = next(iter(hrefs.values())).rsplit("/IMG_DATA/", 1)[0] + "/QI_DATA/"
    raster = (qi + "MSK_CLASSI_B00.jp2", sentinel2_classi, "its cloud and snow mask (MSK_CLASSI)")
    try:
        number = float(baseline) if baseline is not None else None
    except ValueError:
        number = None
    if number is not None and number >= 4.0:
        return raster
    polygons = (qi + "MSK_CLOUDS_B00.gml", sentinel2_msk_clouds, "its cloud mask (MSK_CLOUDS, polygons)")
    if not _exists(polygons[0]):
        old_format = [n for n in _listing(qi) if re.fullmatch(r".*_MSK_CLOUDS_.*_B00_.*\.gml", n, re.IGNORECASE)]
        if len(old_format) == 1:
            polygons = (qi + old_format[0], *polygons[1:])
    if number is None:
        return next((m for m in (raster, polygons) if _exists(m[0])), None)
    return polygons


def _listing(folder: str) -> list[str]:
    """The names of the files in a product's folder (``folder`` ends with ``/``): local, or inside the local zip
    a /vsizip/ path names; none when it cannot be listed."""
    m = re.match(r"^/vsizip/(.+?\.zip)/(.*)$", folder, re.IGNORECASE)
    try:
        if m is None:
            return sorted(p.name for p in Path(folder).iterdir() if p.is_file())
        with zipfile.ZipFile(m.group(1)) as z:
            inside = [n[len(m.group(2)):] for n in z.namelist() if n.startswith(m.group(2))]
        return sorted(n for n in inside if n and "/" not in n)
    except (zipfile.BadZipFile, OSError):
        return []


def _scl(root: ET.Element, base: str) -> str | None:
    """The L2A product's scene classification image (the finest listed: 20 m, else 60 m); None when none is
    listed."""
    listed = [(e.text or "").strip() for e in root.iter() if _local(e.tag) == "IMAGE_FILE"]
    for res in ("20m", "60m"):
        for rel in listed:
            if re.search(rf"_SCL_{res}$", rel.removesuffix(".jp2")):
                return base + (rel if rel.endswith(".jp2") else rel + ".jp2")
    return None


def _exists(href: str) -> bool:
    """Whether a product's file is there: a local path, or a member of the local zip a /vsizip/ path names."""
    m = re.match(r"^/vsizip/(.+?\.zip)/(.*)$", href, re.IGNORECASE)
    if m is None:
        return Path(href).is_file()
    try:
        with zipfile.ZipFile(m.group(1)) as z:
            return m.group(2) in set(z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _metadata(path: str, member: str | None = None) -> tuple[ET.Element, str, list[str]]:
    """The product metadata's XML root, the prefix of its image files' paths, and the local files read
    (``member``: :func:`sentinel2_product`'s)."""
    if REMOTE.match(path):
        raise InputError(f"{path}: Sentinel-2 products are read from a local .SAFE folder or .zip; download it "
                         "first, or give the product's STAC item")
    p = Path(path)
    if p.is_file() and p.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(p) as z:
                names = [n for n in z.namelist() if re.search(r"(^|/)MTD_MSIL(1C|2A)\.xml$", n)]
                names = _the_product(path, names, member)
                text = z.read(names[0])
        except (zipfile.BadZipFile, OSError) as exc:
            if isinstance(exc, InputError):
                raise
            raise NotARasterError(f"{path}: is not a readable zip file ({exc})") from exc
        base = f"/vsizip/{os.path.abspath(p)}/" + (names[0].rsplit("/", 1)[0] + "/" if "/" in names[0] else "")
        mtd_ref, files = base + names[0].rsplit("/", 1)[-1], [str(p)]
    else:
        mtd = p if p.is_file() else safe_metadata(p)
        if mtd is None:
            raise NotARasterError(f"{path}: is a .SAFE folder without MTD_MSIL1C.xml or MTD_MSIL2A.xml")
        text, base, mtd_ref, files = mtd.read_bytes(), str(mtd.parent.resolve()) + "/", str(mtd), [str(mtd)]
    try:
        return ET.fromstring(text), base, files
    except ET.ParseError as exc:
        raise NotARasterError(f"{path}: its product metadata {mtd_ref} is not valid XML ({exc})") from exc


def _the_product(path: str, names: list[str], member: str | None) -> list[str]:
    """Of the metadata files ``names`` in the zip ``path``, the one to read: the product ``member`` names, or the
    zip's only one (the first in its listing was read, whatever a /vsizip/ path named; found in review)."""
    if not names:
        raise NotARasterError(f"{path}: is a zip file without a Sentinel-2 product (no MTD_MSIL1C.xml or "
                              "MTD_MSIL2A.xml)")
    products = [n.rsplit("/", 1)[0] if "/" in n else n for n in names]
    if member is not None:
        names = [n for n, d in zip(names, products) if member in (n, d)]
        if not names:
            raise InputNotFoundError(f"{path}: holds no Sentinel-2 product at {member} (it holds "
                                     f"{', '.join(products)})")
    if len(names) > 1:
        raise NotARasterError(f"{path}: holds {len(names)} Sentinel-2 products ({', '.join(products)}); name the "
                              f"one to read: /vsizip/{path}/{products[0]}")
    return names


def _offsets(path: str, root: ET.Element, tag: str) -> dict[str, float]:
    """The add offset of each band (BOA_ADD_OFFSET, RADIO_ADD_OFFSET; none before processing baseline 04.00)."""
    # band_id -> band: the product's Spectral_Information list, else ESA's fixed order (0-12: B01..B08, B8A, B09..B12)
    physical = {e.get("bandId"): _s2_name(e.get("physicalBand", "")) for e in root.iter()
                if _local(e.tag) == "Spectral_Information"} or {str(i): b for i, b in enumerate(S2_BAND_IDS)}
    offsets: dict[str, float] = {}
    for e in root.iter():
        if _local(e.tag) != tag:
            continue
        band = physical.get(e.get("band_id") or "")
        try:
            value = float((e.text or "").strip())
        except ValueError as exc:
            raise NotARasterError(f"{path}: its {tag} of band_id {e.get('band_id')} is not a number") from exc
        if not math.isfinite(value):
            raise NotARasterError(f"{path}: its {tag} of band_id {e.get('band_id')} is {value}, not a finite number")
        if band is None:
            raise NotARasterError(f"{path}: its {tag} names band_id {e.get('band_id')!r}, which the product "
                                  "does not list")
        offsets[band] = value
    return offsets


def _images(path: str, root: ET.Element, level: str) -> dict[str, str]:
    """The image file (relative to the product) of each 10 m band, from the metadata's IMAGE_FILE entries."""
    chosen: dict[str, str] = {}
    granules: set[str] = set()
    for rel in ((e.text or "").strip() for e in root.iter() if _local(e.tag) == "IMAGE_FILE"):
        m = re.search(r"_(B\d\d|B8A)(_10m)?$", rel.removesuffix(".jp2"))
        if m and m.group(1) in S2_10M and (level == "L1C" or m.group(2)):
            chosen.setdefault(m.group(1), rel if rel.endswith(".jp2") else rel + ".jp2")
            granules.add(rel.split("/IMG_DATA")[0])  # every band file's, not only the first one's per band
    missing = [b for b in S2_10M if b not in chosen]
    if missing:
        raise NotARasterError(f"{path}: the product lists no image file for {', '.join(missing)} at 10 m")
    if len(granules) > 1:
        raise InputError(f"{path}: holds {len(granules)} granules; give one granule's IMG_DATA/R10m folder "
                         "(L1C: IMG_DATA) or its band files instead")
    return {b: chosen[b] for b in S2_10M}


def _reflectance(offsets: dict[str, float], quant: float, bands: tuple[str, ...] = S2_10M) -> str:
    """How reflectance follows from the DN of ``bands``, in words."""
    added = sorted({offsets.get(b, 0.0) for b in bands})
    if len(added) > 1:
        return (f"reflectance = (DN + offset) / {quant:g} with the band offsets "
                + ", ".join(f"{b} {offsets.get(b, 0.0):g}" for b in bands))
    if added[0] != 0:
        return f"reflectance = (DN {'+' if added[0] > 0 else '-'} {abs(added[0]):g}) / {quant:g}"
    return f"reflectance = DN / {quant:g}"


def _s2_name(physical: str) -> str:
    """Spectral_Information spells B1..B8, B8A, B9..B12; file names B01..B12 and B8A (not B08A: its offset was
    lost; found in review)."""
    m = re.fullmatch(r"B(\d+)(A?)", physical.strip().upper())
    if not m:
        return physical
    return f"B{int(m.group(1))}A" if m.group(2) else f"B{int(m.group(1)):02d}"
