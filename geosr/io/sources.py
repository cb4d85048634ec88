"""Inputs made of several files, opened as one multi-band raster: a STAC item (:mod:`.stac_items`), a Sentinel-2
product (:mod:`.sentinel2`), a folder of per-band files, or a comma-separated list of files.

Each becomes a GDAL VRT document (:mod:`.vrt`) that stacks the member bands on their common grid, with band
descriptions, nodata and scale/offset; every other module reads it as one raster. No torch here.
"""

from __future__ import annotations

import os
import re
import time
import warnings
from dataclasses import replace
from pathlib import Path

from geosr.errors import BandError, InputError, InputNotFoundError, NotARasterError
from geosr.io.landsat import (
    collection_2,
    collection_2_band_file,
    is_landsat_archive,
    landsat_colour,
    landsat_narrow,
    landsat_radiometry,
    published_radiometry,
)
from geosr.io.paths import (
    RASTER_SUFFIXES,
    REMOTE,
    curl_url,
    is_file_list,
    json_named,
    local_form,
    maybe_stac_api,
    named,
    subdataset_container,
    subdataset_file,
    without_query,
)
from geosr.io.sensor_masks import SensorMask, landsat_qa_pixel, sentinel2_scl
from geosr.io.sentinel2 import (
    granule_radiometry,
    is_safe_name,
    product_zip,
    safe_metadata,
    sentinel2_product,
    zip_member,
)
from geosr.io.stac_items import stac_item
from geosr.io.vrt import (
    Composite,
    Member,
    Radiometry,
    band_descriptions,
    gdal_path,
    open_member,
    read_header,
    stack,
)

__all__ = ["Composite", "composite", "files_of", "gdal_files", "gdal_path", "is_composite", "member_inputs",
           "remote_sources", "source_note"]

# A band token in a file name (Sentinel-2 B01..B12 and B8A, Landsat B1..B11), not part of a longer word
# a Sentinel-2 L1C / L2A band file: tile, sensing time, band (and the L2A's resolution)
_S2_BAND_FILE = re.compile(r"^(L1C_|L2A_)?T\d{2}[A-Z]{3}_\d{8}T\d{6}_B(0[1-9]|1[0-2]|8A)(_\d{2}m)?\.(jp2|tif|tiff)$",
                           re.IGNORECASE)
# (Landsat 7's thermal band comes in two gains, ..._B6_VCID_1.TIF and ..._B6_VCID_2.TIF: two bands)
_BAND_TOKEN = re.compile(r"(?<![A-Za-z0-9])B(8A|0[1-9]|1[0-2]|[1-9])(?![A-Za-z0-9])(_VCID_[12](?![A-Za-z0-9]))?",
                         re.IGNORECASE)


def is_composite(path: str) -> bool:
    """Whether ``path`` names (or, for a URL without a file suffix, may name) a multi-file input. Cheap: names and
    folders, and a local zip's directory (a Sentinel-2 product of any name)."""
    url = curl_url(path) if path.startswith("/vsicurl") else None  # GDAL's /vsicurl/ forms: the URL they read
    p = without_query(url or path)
    if is_file_list(path):
        return True
    if json_named(p) or is_safe_name(p) or product_zip(path):
        return True
    if REMOTE.match(path):
        return maybe_stac_api(url or path)
    return Path(path).is_dir() or _product_band_file(path) or is_landsat_archive(path)


def _product_band_file(path: str) -> bool:
    """A local Sentinel-2 band file (T33UUB_20230612T101031_B04_10m.jp2) or Landsat Collection 2 band file
    (LC08_L1TP_044034_20230612_20230614_02_T1_B8.TIF): read as a list of one band file, so that DN 0 is nodata and
    the product's scale and offset apply (inside its .SAFE granule; beside its MTL file). A Landsat band file given
    alone, as a finer band's message says to, was a plain raster: its fill blended in, no scale (found in review)."""
    if path.startswith("/vsi") or not Path(path).is_file():
        return False
    name = Path(path).name
    return bool(_S2_BAND_FILE.match(name) or collection_2_band_file(name))




def _safe_url(path: str) -> bool:
    """An http(s) URL named for a Sentinel-2 product's folder (``....SAFE``): a STAC API's item may be (the
    Copernicus Data Space names its items so), so it is fetched as one before being called a product."""
    return bool(re.match(r"^https?://", path, re.IGNORECASE)) and path.rstrip("/").upper().endswith(".SAFE")


def composite(path: str) -> Composite | None:
    """The composite ``path`` names, or None for a plain raster path; raises an InputError naming ``path``.

    Cached while the files it was made from are unchanged (a run opens its inputs several times, a batch worker
    runs many jobs): every local file's size and modification time, and the folder's listing, are checked on
    each use; a remote item is fetched again after REMOTE_CACHE_S seconds."""
    url = curl_url(path) or (None if path.startswith("/vsi") else path)  # /vsicurl/URL as the URL it reads
    if url and REMOTE.match(url) and without_query(url).lower().endswith(".zip"):
        # GDAL opens some file inside it and says something else (a Sentinel-2 product's: "no CRS")
        raise NotARasterError(f"{path}: is a .zip archive over the network, which geosr does not unpack there; "
                              "download it first (a Sentinel-2 product's zip is read from a local file), or name "
                              "the raster inside it (/vsizip/vsicurl/URL/PATH)")
    if not is_composite(path):
        return None
    seen = url or path  # what is read: a /vsicurl/ path's URL
    if is_landsat_archive(path):  # GDAL said "not a raster GDAL can read"
        raise NotARasterError(f"{path}: is a Landsat product archive, which geosr does not unpack; extract it and "
                              "give its folder")
    hit = _CACHE.get(path)
    if hit is not None and _still_valid(hit):
        return hit[0]
    if time.monotonic() - _NOT_ITEMS.get(path, -REMOTE_CACHE_S) < REMOTE_CACHE_S:  # asked a moment ago: a raster
        return None
    zipped = product_zip(path)  # a zipped product of any name, also as GDAL's /vsizip/ path
    if zipped is None and not REMOTE.match(path) and not is_file_list(path) and not Path(path).exists():
        raise InputNotFoundError(f"{path}: no such file")
    p = without_query(seen)
    comp: Composite | None
    if zipped is not None:
        comp = sentinel2_product(zipped, zip_member(path))
    elif is_file_list(path):
        comp = _band_list(path)
    elif _product_band_file(path):
        comp = _band_files(path, [path])
    elif json_named(p) or REMOTE.match(path) and (maybe_stac_api(seen) or _safe_url(p)):
        try:
            comp = stac_item(path)
        except NotARasterError as exc:  # named for a product, and no item there: say what a product needs
            if not _safe_url(p):
                raise
            comp = None
            why = str(exc).removeprefix(f"{path}: ")
        else:
            why = "it is not JSON"
        if comp is None and _safe_url(p):
            raise NotARasterError(f"{path}: Sentinel-2 products are read from a local .SAFE folder or .zip, and as a "
                                  f"STAC item {why}; download the product first, or give its STAC item")
        if comp is None:  # a URL without a suffix that is not a STAC item: a plain raster for GDAL
            if len(_NOT_ITEMS) >= 64:  # (bounded, as _CACHE is: a batch worker looks at many)
                _NOT_ITEMS.clear()
            _NOT_ITEMS[path] = time.monotonic()
            return None
    elif is_safe_name(p) or (Path(path).is_dir() and safe_metadata(Path(path)) is not None):
        comp = sentinel2_product(path)
    else:
        comp = _band_folder(path)
    watched = [f for f in (path, *comp.files) if not REMOTE.match(f) and not is_file_list(f)]
    if len(_CACHE) >= 64:
        _CACHE.clear()
    _CACHE[path] = (comp, time.monotonic(), tuple((f, _stamp(f)) for f in watched))
    return comp


REMOTE_CACHE_S = 60.0
_CACHE: dict[str, tuple[Composite, float, tuple[tuple[str, tuple | None], ...]]] = {}
# URLs without a suffix found to be no STAC item, and when: each look fetched the file's start again (a run looks
# about ten times; found in review)
_NOT_ITEMS: dict[str, float] = {}


def _stamp(path: str) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    listing = tuple(sorted(os.listdir(path))) if os.path.isdir(path) else ()
    return st.st_size, st.st_mtime_ns, listing


def _still_valid(hit: tuple) -> bool:
    comp, when, stamps = hit
    if any(REMOTE.match(f) for f in (comp.path, *comp.files)) and time.monotonic() - when > REMOTE_CACHE_S:
        return False
    return all(_stamp(f) == s for f, s in stamps)


def source_note(path: str) -> str | None:
    """What a multi-file input (STAC item, Sentinel-2 product, band files) stacks, in words; None otherwise."""
    comp = composite(path) if is_composite(path) else None
    return comp.note if comp else None


def files_of(path: str | None) -> list[str]:
    """The local files an input reads: its members for a composite, else itself (none for URLs)."""
    if path is None:
        return []
    comp = composite(path) if is_composite(path) else None
    paths = comp.files if comp else (path,)
    return [f for f in paths if not REMOTE.match(f)]


def member_inputs(inputs: list[tuple[str, str | None]]) -> list[tuple[str, str]]:
    """(role, file) of each local file the composite ones among ``inputs`` ((role, path) pairs) read, its role
    named after theirs ("LR's file SCL.tif"): no output may be one of them."""
    return [(f"{role}'s file {Path(f).name}", f) for role, p in inputs if p and is_composite(p) for f in files_of(p)]


# GDAL's archive file systems: /vsizip/ARCHIVE/MEMBER reads the local file ARCHIVE
_ARCHIVE = re.compile(r"^/vsi(zip|tar|gzip|7z|rar)/", re.IGNORECASE)


VRT_DEPTH = 16  # VRTs within VRTs followed; deeper is refused


def gdal_files(path: str, _seen: frozenset[str] = frozenset(), _depth: int = 0, _root: str | None = None) -> list[str]:
    """The local files GDAL reads for one raster besides ``path`` itself: a VRT's sources (GDAL's file list), and
    theirs where a source is itself a VRT (GDAL lists one level: an output over the file behind a VRT of a VRT
    destroyed the input, and --resume missed its change; found in review), the archive behind a /vsizip/,
    /vsitar/, /vsigzip/ path. None for URLs. An output must be none of them (writing over a VRT's source or the
    zip an input is read from destroys the input), and ``--resume`` compares them."""
    found = _gdal_files(path)
    seen = _seen | {os.path.realpath(path)}  # the VRTs on the way here: a loop is not followed round
    for f in list(found):
        if not f.lower().endswith(".vrt") or os.path.realpath(f) in seen:
            continue
        if _depth >= VRT_DEPTH:  # (a cap on siblings left all but 63 tiles of a mosaic unprotected; review)
            raise InputError(f"{_root or path}: nests VRTs more than {VRT_DEPTH} deep (down to {f}); geosr follows "
                             "the files behind an input (which no output may replace) that far only")
        found += [g for g in gdal_files(f, seen, _depth + 1, _root or path) if g not in found]
    return found


def _gdal_files(path: str) -> list[str]:
    """:func:`gdal_files` of one level."""
    local = local_form(path)
    if local != path:  # rasterio's URL form of a local file (file://) or archive member (zip://): what GDAL reads
        return list(dict.fromkeys(([] if REMOTE.match(local) else [local]) + _gdal_files(local)))
    if REMOTE.match(path) and not _ARCHIVE.match(path):
        return []
    container = subdataset_container(path)  # a container's raster (GPKG:scene.gpkg:table): its file
    if container is not None:
        inside = subdataset_file(path)
        if inside is None:  # read through GDAL's file systems (/vsizip/: its archive) or over the network
            return [f for f in _gdal_files(container) if f != container]
        return [inside] if Path(inside).is_file() else []
    if not REMOTE.match(path) and not Path(path).is_file():  # missing, or a FIFO GDAL would wait on forever
        return []
    names = _listed_files(path)
    out = []
    for name in [path, *names]:
        m = _ARCHIVE.match(name)
        if m is None:
            if not REMOTE.match(name) and name != path:
                out.append(name)
            continue
        parts = name[m.end():].replace("{", "").replace("}", "").split("/")
        archive = next(("/".join(parts[:i]) for i in range(len(parts), 0, -1)
                        if "/".join(parts[:i]) and Path("/".join(parts[:i])).is_file()), None)
        if archive is not None and not REMOTE.match(archive):
            out.append(archive)
    return list(dict.fromkeys(out))


def remote_sources(path: str) -> list[str]:
    """The files read over a network that GDAL reads for the local raster ``path`` (a VRT's remote sources, each as
    its /vsicurl/ path or URL); none for other rasters, remote or unreadable ones (named when the run opens them)."""
    if REMOTE.match(local_form(path)) or subdataset_container(path) is not None or not Path(path).is_file():
        return []
    return list(dict.fromkeys(n for n in _listed_files(path) if REMOTE.match(n) and not _ARCHIVE.match(n)))


def _listed_files(path: str) -> list[str]:
    """GDAL's list of the files it reads for the raster ``path`` (a VRT's sources); none when it cannot be opened
    (the run names that in one sentence when it opens the file)."""
    import rasterio

    try:
        with warnings.catch_warnings():  # a raster without georeferencing is named where it matters
            warnings.simplefilter("ignore")
            with rasterio.open(path) as ds:
                return [str(f) for f in (ds.files or [])]
    except Exception:  # noqa: BLE001
        return []


# -- a list of files, a folder of band files ---------------------------------------------------------------------

def _band_token(name: str) -> str | None:
    m = _BAND_TOKEN.search(name)
    return f"B{m.group(1).upper()}{(m.group(2) or '').upper()}" if m else None


def _band_order(token: str) -> tuple[int, str]:
    digits = re.match(r"B(\d+)", token)
    return int(digits.group(1) if digits else 0), token


def _band_list(path: str) -> Composite:
    hrefs = [p.strip() for p in path.split(",") if p.strip()]
    if len(hrefs) < 2:
        raise InputError(f"{path}: a list of band files needs at least two files, separated by commas")
    return _band_files(path, hrefs)


def _band_files(path: str, hrefs: list[str]) -> Composite:
    """The band files ``hrefs`` (a list, or one Sentinel-2 or Landsat band file) stacked in the order given."""
    for h in hrefs:
        if not REMOTE.match(h) and not Path(h).is_file():
            raise InputNotFoundError(f"{path}: its band file {h} does not exist")
    names = [Path(named(h)).name for h in hrefs]  # a /vsicurl?...&url=: its URL's
    fill = _fill(names)
    rad = _product_radiometry(hrefs)
    members = []
    for h, file_name in zip(hrefs, names):
        with open_member(path, h) as ds:
            for b in range(1, ds.count + 1):
                own = band_descriptions(ds)[b - 1]
                token = _band_token(file_name)
                name = token or Path(named(h)).stem
                colour = landsat_colour(file_name, token) if ds.count == 1 and not own else None
                scale, offset = _scaled(rad, file_name, ds.scales[b - 1], ds.offsets[b - 1])
                members.append(Member(h, b, own or (name if ds.count == 1 else f"{name} band {b}"), colorinterp=colour,
                                      nodata=0.0 if fill and ds.nodatavals[b - 1] is None else None, scale=scale,
                                      offset=offset))
    described = ", ".join(m.description for m in members)
    note = (f"{len(members)} bands stacked from {len(hrefs)} files ({described})" if len(hrefs) > 1 else
            f"band {described} of {names[0]}")
    comp = _with_radiometry(stack(path, "band files", members, hrefs, note + (f"; DN 0 read as nodata ({fill})"
                                                                               if fill else ""),
                                  {"ACQUISITIONDATETIME": rad.acquired} if rad and rad.acquired else None), rad)
    # a Landsat band by its narrow common name, by the sensor its file names (as a folder's; found in review)
    narrow = tuple((n, m.description) for m in members
                   if m.colorinterp and (n := landsat_narrow(Path(named(m.href)).name, m.description)))
    return replace(comp, aliases=comp.aliases + narrow) if narrow else comp


def _fill(names: list[str]) -> str | None:
    """Why DN 0 is nodata in the band files ``names`` (their product's fill value, which the files do not declare),
    in words; None when it is not."""
    # Sentinel-2's own band files declare no nodata where their product says DN 0 is none: read as their product
    # is, or the DN-0 collar is blended into the scene as data; Landsat Collection 2's fill value is 0 in every band
    if all(_S2_BAND_FILE.match(n) for n in names):
        return f"Sentinel-2 band file{'s' * (len(names) > 1)}"
    if all(collection_2(n) for n in names):
        return "Landsat Collection 2 fill"
    return None


def _product_radiometry(hrefs: list[str]) -> Radiometry | None:
    """The scale and offset the product metadata beside local band files give them: a Sentinel-2 granule's inside its
    ``.SAFE`` (the product's MTD file), a Landsat Collection 2 Level-2 product's (its MTL file, else the values USGS
    publishes, as for URLs, beside which no metadata file is fetched); None otherwise."""
    if any(REMOTE.match(h) or h.startswith("/vsi") for h in hrefs):  # (no metadata file is fetched beside URLs)
        return published_radiometry([Path(named(h)).name for h in hrefs])
    files = [Path(h) for h in hrefs]
    tokens = [_band_token(f.name) for f in files]
    if all(_S2_BAND_FILE.match(f.name) for f in files):
        return granule_radiometry([(f, t or "") for f, t in zip(files, tokens)])
    return landsat_radiometry(files)


def _scaled(rad: Radiometry | None, name: str, own_scale: float,
            own_offset: float) -> tuple[float | None, float | None]:
    """A band file's scale and offset: its product's where the file declares none of its own (None: the file's)."""
    if rad is None or name not in rad.scales or (own_scale, own_offset) != (1.0, 0.0):
        return None, None
    return rad.scales[name], rad.offsets[name]


def _first(values: tuple[float, ...], default: float) -> float:
    return values[0] if values else default


def _with_radiometry(comp: Composite, rad: Radiometry | None) -> Composite:
    """``comp`` reading the product metadata file ``rad`` came from (its note says what it gave)."""
    if rad is None:
        return comp
    return replace(comp, files=comp.files + ((rad.source,) if rad.source else ()), note=comp.note + f"; {rad.note}")


def _listed_folder(path: str) -> Path:
    """The folder a folder of band files is read from: itself, or a Level-2A granule IMG_DATA's R10m."""
    folder = Path(path)
    if (folder / "R10m").is_dir() and not any(_band_token(f.name) for f in folder.iterdir() if f.is_file()):
        folder = folder / "R10m"  # a Level-2A granule's IMG_DATA: its 10 m bands
    return folder


def band_folders(path: str) -> tuple[str, ...]:
    """The folders (real paths) where a new band file changes the input ``path``, when it is a folder of band files:
    itself, and the R10m folder it lists when it is a Level-2A granule's IMG_DATA (a band file in IMG_DATA itself
    is then listed instead); none for any other input."""
    if REMOTE.match(path) or is_file_list(path) or is_safe_name(path) or not Path(path).is_dir() or \
            safe_metadata(Path(path)):
        return ()
    return tuple(dict.fromkeys((os.path.realpath(path), os.path.realpath(_listed_folder(path)))))


def joins_band_folder(path: str, written: str | os.PathLike[str]) -> bool:
    """Whether a file written at ``written`` would become a band of the input ``path``: a folder of band files
    takes every raster file in it named with a band (an output written there changes the input, a finer one even
    which of its bands are stacked), and its cloud mask by name (a second one turns the first off)."""
    w = Path(written)
    parent = os.path.realpath(w.parent if str(w.parent) else ".")
    if _QA_PIXEL.search(w.name) or _SCL.search(w.name):  # a second cloud mask: the folder's own went unused
        folders = band_folders(path)  # (found in review; an SCL in R20m serves the R10m folder beside it)
        return parent in folders or (Path(parent).name.upper() == "R20M"
                                     and any(Path(f).parent == Path(parent).parent for f in folders))
    if w.suffix.lower() not in RASTER_SUFFIXES or _band_token(w.name) is None:
        return False
    return parent in band_folders(path)


def _band_folder(path: str) -> Composite:
    folder = _listed_folder(path)
    files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in RASTER_SUFFIXES
                   and _band_token(f.name))
    if not files:
        if (folder / "IMG_DATA").is_dir():  # a Sentinel-2 granule's folder (its way forward was unsaid; review)
            raise NotARasterError(f"{path}: is a Sentinel-2 granule's folder, whose band files are in IMG_DATA; give "
                                  "its IMG_DATA folder (or the product's .SAFE folder)")
        raise NotARasterError(f"{path}: is a folder without band files (raster files named with a band, e.g. "
                              "T33UUB_20230101T101031_B04_10m.jp2) nor a Sentinel-2 product")
    found: dict[str, list[Path]] = {}
    for f in files:
        found.setdefault(_band_token(f.name) or "", []).append(f)
    for token, same in found.items():  # which of two files of a band to stack is the user's choice, not geosr's
        if len(same) > 1:
            names = [str(f.relative_to(path)) for f in same]
            raise InputError(f"{path}: holds {len(same)} files for band {token} ({', '.join(names[:-1])} and "
                             f"{names[-1]}); keep one file per band in the folder, or list the files to stack, "
                             "separated by commas")
    by_token = {token: same[0] for token, same in found.items()}
    tokens = sorted(by_token, key=_band_order)
    heads = {t: read_header(path, str(by_token[t])) for t in tokens}
    several = next((t for t in tokens if len(heads[t].dtypes) > 1), None)
    if several is not None:  # stacking its first band alone would drop the others without a word
        raise BandError(f"{path}: its band file {by_token[several].name} holds {len(heads[several].dtypes)} bands, "
                        "where a folder of band files holds one band per file; list the files to stack, separated "
                        "by commas, to take every band of each")
    fill = _fill([by_token[t].name for t in tokens])
    rad = _product_radiometry([str(by_token[t]) for t in tokens])
    colours = {t: landsat_colour(by_token[t].name, t) for t in tokens}
    finest = min(h.res for h in heads.values())
    # the grid kept: a Landsat folder's red band's (a Landsat 8/9 folder's 15 m panchromatic B8 is finer than its
    # 30 m multispectral bands), else the first finest band's; its bands first, so that stack() keeps them and
    # leaves the others out
    anchor = next((t for t in tokens if colours[t] == "red"), None) or \
        next(t for t in tokens if heads[t].res <= finest * 1.000001)
    tokens.sort(key=lambda t: (heads[t].grid != heads[anchor].grid, _band_order(t)))
    members = []
    for t in tokens:
        scale, offset = _scaled(rad, by_token[t].name, _first(heads[t].scales, 1.0), _first(heads[t].offsets, 0.0))
        members.append(Member(str(by_token[t]), 1, t, nodata=0.0 if fill and heads[t].nodata[0] is None else None,
                              colorinterp=colours[t], scale=scale, offset=offset))
    kept = [t for t in tokens if heads[t].grid == heads[tokens[0]].grid]
    note = f"bands {', '.join(sorted(kept, key=_band_order))} stacked from {folder.resolve().name or folder}"
    comp = _with_radiometry(stack(path, "band files", members, [str(by_token[t]) for t in tokens],
                                  note + (f"; DN 0 read as nodata ({fill})" if fill else ""),
                                  {"ACQUISITIONDATETIME": rad.acquired} if rad and rad.acquired else None,
                                  same_grid=False), rad)
    # a Landsat band by its narrow common name (`--bands swir16`): which band it is depends on the sensor
    narrow = tuple((n, t) for t in tokens if (n := landsat_narrow(by_token[t].name, t)))
    comp = replace(comp, aliases=comp.aliases + narrow) if narrow else comp
    masks = _folder_masks(folder)
    if len(masks) > 1:
        why = f"it holds {len(masks)} cloud masks ({', '.join(Path(m.href).name for m in masks)})"
        return replace(comp, note=comp.note + f"; {why}: none used", mask_unused=why)
    if not masks:
        return comp
    mask = masks[0]
    return replace(comp, mask=mask, files=comp.files + (mask.href,),
                   note=comp.note + f"; cloud mask: {Path(mask.href).name}")


_QA_PIXEL = re.compile(r"_QA_PIXEL\.(tif|tiff)$", re.IGNORECASE)
_SCL = re.compile(r"_SCL_20m\.(jp2|tif|tiff)$", re.IGNORECASE)


def _folder_masks(folder: Path) -> list[SensorMask]:
    """The cloud masks beside a folder's band files: a Landsat Collection 2 product's ``*_QA_PIXEL.TIF``, else a
    Sentinel-2 L2A granule's ``*_SCL_20m.jp2`` (in the folder, or in ``R20m`` beside an ``R10m`` folder). More than
    one: which to use is the user's to say."""
    qa = [landsat_qa_pixel(str(f)) for f in sorted(folder.iterdir()) if f.is_file() and _QA_PIXEL.search(f.name)]
    if qa:
        return qa
    beside = folder.parent / "R20m"
    places = [folder] + ([beside] if folder.name.upper() == "R10M" and beside.is_dir() else [])
    return [sentinel2_scl(str(f)) for place in places for f in sorted(place.iterdir())
            if f.is_file() and _SCL.search(f.name)]
