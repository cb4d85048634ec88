"""STAC items as inputs: the assets that name their bands, stacked on the red band's grid (pystac reads the item).
No torch here.
"""

from __future__ import annotations

import codecs
import http.client
import json
import math
import os
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import pystac

from geosr.errors import BandError, InputError, InputNotFoundError, NotARasterError
from geosr.io.paths import REMOTE, curl_url, fetch_failure, gdal_opener, gdal_request, json_named, network_error
from geosr.io.sensor_masks import SensorMask, landsat_qa_pixel, sentinel2_scl
from geosr.io.vrt import Composite, Member, gdal_path, read_header, stack

STAC_TIMEOUT_S = 20
# STAC asset roles that are renderings or metadata, never the data to super-resolve
_NOT_DATA = {"thumbnail", "overview", "visual", "metadata"}


def _read_item(path: str) -> pystac.Item | None:
    """The STAC item at ``path``; None for a URL without a suffix that turns out not to be JSON (a raster). A URL
    that the network or its server fails (no answer, 5xx, a transfer cut short) is a NetworkError."""
    announced = True  # whether the body's length was announced (a local file's always is)
    base = path  # what its relative asset hrefs are read from: the URL it was fetched from, redirects followed
    try:
        if REMOTE.match(path):
            url, headers = gdal_request(path)  # with the credentials GDAL reads its assets with
            request = urllib.request.Request(url, headers={**headers,
                                                           "Accept": "application/geo+json, application/json"})
            with gdal_opener().open(request, timeout=STAC_TIMEOUT_S) as resp:  # (the user's URL, reached as GDAL does)
                # (RFC 3986 5.1.3; its assets were asked of the URL given, a 404 behind a redirect: found in review)
                base = resp.geturl() or path
                announced = resp.headers.get("Content-Length") is not None or resp.chunked
                head = resp.read(64)
                if not head.removeprefix(codecs.BOM_UTF8).lstrip().startswith(b"{") and \
                        not json_named(path):
                    return None  # not JSON: leave it to GDAL (nothing more is downloaded)
                # (utf-8-sig: a byte-order mark, as Windows tools write, is no error; RFC 8259 lets a parser skip it)
                text = (head + resp.read()).decode("utf-8-sig")
        else:
            text = Path(path).read_text(encoding="utf-8-sig")
        data = json.loads(text)
    except FileNotFoundError as exc:
        raise InputNotFoundError(f"{path}: no such file") from exc
    except (OSError, http.client.HTTPException) as exc:
        failure = fetch_failure(exc) if REMOTE.match(path) else None
        if failure is not None:
            raise network_error(path, failure) from exc
        reason = " ".join(str(getattr(exc, "reason", None) or exc).split())  # one line: curl's reasons hold several
        # a URL without a suffix may be a raster as well as an item: only a .json one is called an item
        what = "the STAC item" if json_named(path) or not REMOTE.match(path) else "it"
        raise NotARasterError(f"{path}: {what} cannot be fetched ({reason})") from exc
    except json.JSONDecodeError as exc:
        if not announced and (exc.pos >= len(exc.doc.rstrip()) or exc.msg.startswith("Unterminated string")):
            # it ends mid-document and no length was announced: a transfer cut short, not the server's file
            raise network_error(path, "its server cut the transfer (the document ends mid-way)") from exc
        raise NotARasterError(f"{path}: is not JSON, so not a STAC item ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise NotARasterError(f"{path}: is not JSON, so not a STAC item ({exc})") from exc
    if not isinstance(data, dict) or data.get("type") != "Feature" or "assets" not in data:
        raise NotARasterError(f"{path}: is JSON but not a STAC item (a GeoJSON Feature with assets)")
    problem = _shape_problem(data)
    if problem:
        raise NotARasterError(f"{path}: is not a valid STAC item ({problem})")
    try:
        return pystac.Item.from_dict(data, href=base if REMOTE.match(path) else os.path.abspath(path))
    except (KeyError, ValueError, TypeError, AttributeError, pystac.STACError) as exc:
        raise NotARasterError(f"{path}: is not a valid STAC item ({exc})") from exc


def _shape_problem(data: dict) -> str | None:
    """What in an item's JSON has another type than STAC gives it (pystac trusts the types), or None."""
    if not isinstance(data.get("properties"), dict):
        return "its properties are not an object"
    assets = data["assets"]
    if not isinstance(assets, dict) or not all(isinstance(a, dict) for a in assets.values()):
        return "its assets are not an object of objects"
    for key, asset in assets.items():
        if not isinstance(asset.get("href"), str):
            return f"asset {key!r} has no href"
        if not isinstance(asset.get("type") or "", str):  # (null: absent, as pystac reads it)
            return f"the type of asset {key!r} is not a media type"
        roles = asset.get("roles") or []
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            return f"the roles of asset {key!r} are not a list of texts"
    return None


# what a URL may hold as it is (RFC 3986's reserved and unreserved characters, and % of an existing encoding)
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~-._"


def _asset_path(item_path: str, asset: pystac.Asset) -> str:
    """The file or URL an asset's href names. A relative href of a local item is a path from the item's folder,
    percent-decoded as a URI reference is (``a%231.tif`` is ``a#1.tif``), or as written where only that names a
    file (a writer that did not encode a literal ``%``); a URL item's relative hrefs resolve against its URL."""
    href = asset.href
    if REMOTE.match(item_path) or REMOTE.match(href):
        href = asset.get_absolute_href() or href
        if href.lower().startswith(("http://", "https://")):  # a literal space (as written, or joined from a
            href = urllib.parse.quote(href, safe=_URL_SAFE)    # relative href) is no URL: encoded, % kept as is
        return gdal_path(href) if href.lower().startswith("file://") else href  # file://: checked as a local file
    base = os.path.dirname(os.path.abspath(item_path))  # pystac would cut a folder or name with '#' at the '#'
    decoded = os.path.join(base, urllib.parse.unquote(href))
    literal = os.path.join(base, href)
    return literal if not os.path.exists(decoded) and os.path.exists(literal) else decoded


def _asset_bands(owner: str, key: str, asset: pystac.Asset) -> list[dict]:
    """Per band of an asset: name, common_name, nodata, scale, offset (STAC 1.0 eo:/raster: extensions or 1.1
    ``bands``, whose fields shared by every band may be the asset's own: a single-band asset may hold them all)."""
    f = asset.extra_fields

    def dicts(field: str) -> list[dict]:
        value = f.get(field) or []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise NotARasterError(f"{owner}: the {field} of asset {key!r} is not a list of objects")
        return value

    eo, raster, v11 = dicts("eo:bands"), dicts("raster:bands"), dicts("bands")
    n = max(len(eo), len(raster), len(v11)) or (1 if f.get("eo:common_name") else 0)
    out = []
    for i in range(n):
        e = eo[i] if i < len(eo) else {}
        r = raster[i] if i < len(raster) else {}
        b = v11[i] if i < len(v11) else {}
        out.append({
            "name": e.get("name") or b.get("name"),
            "common_name": e.get("common_name") or b.get("eo:common_name") or f.get("eo:common_name"),
            "nodata": r.get("nodata", b.get("nodata", f.get("nodata"))),
            "scale": r.get("scale", b.get("raster:scale", f.get("raster:scale"))),
            "offset": r.get("offset", b.get("raster:offset", f.get("raster:offset"))),
        })
    return out


_RASTER_MEDIA = ("tiff", "jp2", "jpeg2000", "geotiff")  # media types (a part of) GDAL reads as rasters
# the asset keys of a sensor's own cloud mask, as Earth Search, Planetary Computer and USGS name them
_MASK_ASSETS = {"scl": sentinel2_scl, "qa_pixel": landsat_qa_pixel}


def stac_item(path: str) -> Composite | None:
    """The item at ``path`` (a file, an http(s) URL or GDAL's /vsicurl/ path of one) as the stack of its bands; None
    for a URL without a suffix that is not JSON."""
    url = curl_url(path)
    if url is not None and url.lower().startswith(("http://", "https://")):
        path = url  # read with urllib, its relative hrefs resolved against the URL
    elif REMOTE.match(path) and not path.lower().startswith(("http://", "https://")):
        # urllib reads http(s) alone; a /vsizip/, /vsis3/, s3:// or gs:// item is GDAL's, which reads no JSON here
        raise InputError(f"{path}: a STAC item is read from a local file or an http(s) URL; download it, or give "
                         "its https URL")
    item = _read_item(path)
    if item is None:
        return None
    candidates: list[_Candidate] = []
    for key, asset in item.assets.items():
        roles = set(asset.roles or [])
        if not _raster((asset.media_type or "").lower()) or key.lower() in _MASK_ASSETS:
            continue  # not a raster, or the sensor's cloud mask (_sensor_mask), never a band to super-resolve
        for i, band in enumerate(_asset_bands(path, key, asset), start=1):
            name = band["common_name"] or band["name"]
            if not name or not isinstance(name, str):
                continue
            nodata = band["nodata"]
            special = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}  # STAC's spelling of these
            if isinstance(nodata, bool) or (isinstance(nodata, str) and nodata not in special):
                raise NotARasterError(f"{path}: the nodata of asset {key!r} band {i} is {json.dumps(nodata)}, not a "
                                      'number nor "nan", "inf" or "-inf"')
            nodata = special.get(nodata) if isinstance(nodata, str) else (
                float(nodata) if isinstance(nodata, (int, float)) else None)
            for field in ("scale", "offset"):
                value = band[field]
                if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                          or not math.isfinite(value) or (field == "scale" and value == 0)):
                    raise NotARasterError(f"{path}: the {field} of asset {key!r} band {i} is {json.dumps(value)}, "
                                          f"not a finite number{' other than 0' if field == 'scale' else ''}")
            ci = {"red": "Red", "green": "Green", "blue": "Blue"}.get(band["common_name"] or "")
            href = _asset_path(path, asset)
            member = Member(href, i, name, nodata=nodata, scale=band["scale"], offset=band["offset"], colorinterp=ci)
            candidates.append(_Candidate(bool(roles & _NOT_DATA), band["common_name"], band["name"], key, member))
    if not candidates:
        raise BandError(f"{path}: no asset of this STAC item names its bands (eo:bands or bands, with a common "
                        "name or a name)")
    members = _one_per_band(candidates)
    heads = {m.href: read_header(path, m.href) for m in members}
    for m in members:
        held = len(heads[m.href].dtypes)
        if m.band > held:  # eo:bands listing more bands than the file has
            raise NotARasterError(f"{path}: names band {m.band} ({m.description}) in {Path(m.href).name}, which holds "
                                  f"{held} band{'s' * (held != 1)}")
    anchor = next((m for m in members if m.description == "red"), None)
    finest = min(h.res for h in heads.values())
    anchor_grid = heads[anchor.href].grid if anchor else next(h.grid for h in heads.values() if h.res == finest)
    members.sort(key=lambda m: heads[m.href].grid != anchor_grid)
    files = [path] + list(dict.fromkeys(m.href for m in members))
    meta = {"GEOSR_SOURCE": f"STAC item {item.id}"}
    # (an item geosr dated by its processing, its LR's time unknown, tells no acquisition: geosr.io.stac)
    if item.properties.get("geosr:datetime") != "processing":
        common = item.common_metadata
        if item.datetime is not None:
            meta["ACQUISITIONDATETIME"] = item.datetime.isoformat()
        if common.start_datetime is not None and common.end_datetime is not None:  # a composite's, a mosaic's
            meta["ACQUISITIONSTARTDATETIME"] = common.start_datetime.isoformat()
            meta["ACQUISITIONENDDATETIME"] = common.end_datetime.isoformat()
    kept = [m.description for m in members if heads[m.href].grid == anchor_grid]
    comp = stack(path, "STAC item", members, files, f"STAC item {item.id}: bands {', '.join(kept)}", meta,
                 same_grid=False)
    comp = replace(comp, aliases=_aliases(candidates, members))
    mask = _sensor_mask(path, item)
    if mask is None:
        return comp
    if not REMOTE.match(mask.href) and not Path(mask.href).is_file():
        why = f"its cloud mask {Path(mask.href).name} is missing"
        return replace(comp, note=comp.note + f"; {why}: none used", mask_unused=why)
    return replace(comp, mask=mask, files=comp.files + (mask.href,), note=comp.note + f"; cloud mask: {mask.name}")


def _aliases(candidates: list["_Candidate"], members: list[Member]) -> tuple[tuple[str, str], ...]:
    """(name, description) for each band of the stack that its eo:bands name or its single-band asset's key names
    otherwise (Earth Search's B04 and Planetary Computer's asset B04 are the band described "red"): ``bands`` takes
    either (found in review: "has no band 'B04'"). A name two bands share names neither."""
    described = {(m.href, m.band): m.description for m in members}
    assets = {c.key: sum(d.key == c.key for d in candidates) for c in candidates}
    found: dict[str, set[str]] = {}
    for c in candidates:
        d = described.get((c.member.href, c.member.band))
        for name in (c.name, c.key if assets[c.key] == 1 else None):
            if d is not None and name and name.lower() != d.lower():
                found.setdefault(name, set()).add(d)
    return tuple((name, next(iter(ds))) for name, ds in found.items() if len(ds) == 1)


@dataclass(frozen=True)
class _Candidate:
    """A band of an item's asset, as a member of its stack (described by its common name, else its name)."""

    rendering: bool  # of a thumbnail, overview or visual asset
    common: str | None
    name: str | None
    key: str  # the asset's
    member: Member


def _one_per_band(candidates: list[_Candidate]) -> list[Member]:
    """One member per band of the item: the data assets' bands, told apart by common name and name (Sentinel-2's
    B05, B06 and B07 are all "rededge"), then a rendering's band (Sentinel-2's "visual" holds red, green and blue)
    only where no data asset holds a band of its common name or name. Each is described by its common name, or by
    its name where several share that common name (by its asset and band number without a name)."""
    data: dict[tuple, _Candidate] = {}
    for c in candidates:
        if not c.rendering:
            data.setdefault((c.common, c.name), c)
    labels = {v for c in data.values() for v in (c.common, c.name) if v}
    renderings: dict[tuple, _Candidate] = {}
    for c in candidates:
        if c.rendering and not {c.common, c.name} & labels:
            renderings.setdefault((c.common, c.name), c)
    kept = [*data.values(), *renderings.values()]
    shared = Counter(c.member.description for c in kept)
    return [c.member if shared[c.member.description] == 1 else
            replace(c.member, description=c.name if c.name and c.name != c.common else
                    f"{c.key} band {c.member.band}") for c in kept]


def _raster(media: str) -> bool:
    """Whether an asset's media type (lower case; empty: not given) may be a raster GDAL reads."""
    return not media or any(t in media for t in _RASTER_MEDIA)



def _sensor_mask(path: str, item: pystac.Item) -> SensorMask | None:
    """The item's Sentinel-2 scene classification (asset ``scl``) or Landsat pixel quality (``qa_pixel``)."""
    for key, asset in item.assets.items():
        make = _MASK_ASSETS.get(key.lower())
        if make is not None and _raster((asset.media_type or "").lower()):
            return make(_asset_path(path, asset))
    return None
