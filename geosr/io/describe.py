"""``geosr info``: what each raster holds and how the files overlap."""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any

import numpy as np
from pyproj import Transformer
from rasterio.windows import Window

from geosr.config import is_bool
from geosr.errors import InputError, NetworkError, OptionError, names_too_long_are_input_errors
from geosr.io.rasters import default_bands, inspect_raster, open_raster, reading
from geosr.io.sources import composite, is_composite
from geosr.io.vrt import Composite
from geosr.tiling.grid import Grid


@names_too_long_are_input_errors
def describe(paths: list[str] | str | os.PathLike[str], *, read_all: bool = False) -> dict:
    """Metadata of every raster and, for each pair, the share of the first's area the second covers (``paths``:
    a list, or one path). Each file's last block is read (a truncated file fails there); with ``read_all`` every
    block of every band, so that a damaged block anywhere raises the InputError upscale would."""
    if not isinstance(paths, (str, os.PathLike, list, tuple)):
        raise OptionError(f"paths {paths!r}: give a raster's path or a list of them", param="paths")
    given = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)  # one raster: not its name's letters
    if not given:
        raise OptionError("describe needs at least one raster path")
    wrong = next((p for p in given if not isinstance(p, (str, os.PathLike))), None)
    if wrong is not None:
        raise OptionError(f"paths: {wrong!r} is not a raster's path", param="paths")
    if not is_bool(read_all):  # "no" is true to Python
        raise OptionError(f"read_all {read_all!r}: give True or False", param="read_all")
    read_all = bool(read_all)
    infos = [inspect_raster(os.fspath(p), require_crs=False) for p in given]
    # each multi-file input built once here, for its cloud mask's read and its note (a URL item: one request)
    comps = {info.path: composite(info.path) if is_composite(info.path) else None for info in infos}
    tags = {info.path: _read_blocks(info.path, read_all, comps[info.path]) for info in infos}
    files = []
    for info in infos:
        g = info.grid
        placed = not g.transform.is_identity  # GDAL's stand-in for no geotransform: its "pixel 1 x 1" is no size
        files.append(
            {
                "path": info.path,
                "driver": info.driver,
                "width": g.width,
                "height": g.height,
                "crs": g.crs.to_string() if g.crs else None,
                "gcps": info.gcps,
                "gcp_crs": info.gcp_crs,
                "rpcs": info.rpcs,
                "res": g.res if placed else None,
                "bounds": g.bounds if placed else None,
                # GDAL's order (x0, pixel width, row rotation, y0, column rotation, pixel height): a rotated grid
                # showed as its pixel size alone (found in review)
                "transform": list(g.transform.to_gdal()) if placed else None,
                "nodata": _nodata(info.nodata),
                "mask": info.has_mask,
                "default_bands": list(default_bands(info)),
                "geosr": geosr_record(info.path, tags[info.path]),
                "source": _note(comps[info.path]),
                "bands": [
                    {
                        "index": i + 1,
                        "description": info.descriptions[i],
                        "dtype": info.dtypes[i],
                        "scale": info.scales[i],
                        "offset": info.offsets[i],
                        "colorinterp": info.colorinterp[i],
                        "nodata": _nodata(info.band_nodata[i] if info.band_nodata else info.nodata),
                        "unit": info.units[i] if info.units else "",
                    }
                    for i in range(info.count)
                ],
            }
        )
    overlaps: list[dict[str, Any]] = []
    points: dict = {}  # (grid, CRS) -> a grid's sample points in that CRS: N files make N(N-1) pairs
    for i, a in enumerate(infos):
        for j, b in enumerate(infos):
            if i == j:
                continue
            if not all(_placed(g) for g in (a.grid, b.grid)):  # where it lies is unknown: so is the overlap
                overlaps.append({"file": a.path, "other": b.path, "covered": None})
                continue
            overlaps.append({"file": a.path, "other": b.path, "covered": _share_inside(a.grid, b.grid, points)})
    return {"files": files, "overlaps": overlaps}


def _placed(grid: Grid) -> bool:
    """Whether ``grid`` lies somewhere on the ground: it has a CRS and a geotransform (GDAL's stand-in for none,
    the identity, would say "pixel 1 x 1" and place it at the CRS's origin)."""
    return grid.crs is not None and not grid.transform.is_identity


def _nodata(value: float | None) -> float | str | None:
    """A nodata value as JSON can hold it: a NaN or infinite one as "nan", "inf", "-inf" (STAC's raster extension
    writes them so), since JSON's null would read as "no nodata"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _note(comp: Composite | None) -> str | None:
    """What a multi-file input stacks, in words (:func:`geosr.io.sources.source_note`); None for another."""
    return comp.note if comp is not None else None


def _read_blocks(path: str, read_all: bool = False, comp: Composite | None = None) -> dict[str, str]:
    """Read the last block of the last band, the end of the file in any layout (a truncated file's header reads
    whole, its pixels do not), of every band for a multi-file input (each may be another file's), or with
    ``read_all`` every block, and the cloud mask of ``comp`` (the multi-file input ``path`` is); raises the
    InputError naming the file that upscale would. Returns the file's tags (read in the same opening: a URL's is a
    request)."""
    with open_raster(path) as ds, reading(ds.name):
        _read(ds, range(1, ds.count + 1) if read_all or is_composite(path) else (ds.count,), read_all)
        tags = ds.tags()
    _read_mask(path, comp, read_all)
    return tags


def _read(ds: Any, bands: Any, read_all: bool) -> None:
    """Read every block of ``bands`` of the open raster ``ds`` (``read_all``), else the last block of each."""
    for band in bands:
        if read_all:
            for _, block in ds.block_windows(band):
                ds.read(band, window=block)
            continue
        bh, bw = ds.block_shapes[band - 1]
        row, col = (ds.height - 1) // bh * bh, (ds.width - 1) // bw * bw
        ds.read(band, window=Window(col, row, min(bw, ds.width - col), min(bh, ds.height - row)))


def _read_mask(path: str, comp: Composite | None, read_all: bool) -> None:
    """Open and read the cloud mask of ``comp``, the multi-file input ``path``, as its bands are read: part of the
    input, a broken one failed the upscale with a reference that info had passed (found in review)."""
    if comp is None or comp.mask is None:
        return
    from geosr.io.sensor_masks import WITHOUT, open_mask

    try:
        ds = open_mask(comp.mask, path)
        if ds is None:  # (a mask that flags nothing)
            return
        try:
            with reading(comp.mask.href):
                _read(ds, range(1, ds.count + 1), read_all)
        finally:
            ds.close()
    except (InputError, NetworkError) as exc:  # (its advice, to turn the cloud masks off, is for the runs that read
        # it: not info's)
        exc.args = (str(exc.args[0]).removesuffix(f"; {WITHOUT}"),) + exc.args[1:]
        raise


SHARE_SAMPLES = 256  # points a side: a share is told to 1 / 65536 of the file


def _share_inside(a: Grid, b: Grid, points: dict | None = None) -> float | None:
    """The share of ``a``'s area that ``b`` covers: of a lattice of points spread evenly over ``a``'s pixels, those
    inside ``b``'s grid, longitudes counted as ``b`` numbers them (0..360, or past 180). Points, not outlines: an
    outline projected across the antimeridian or around a pole is no polygon in degrees (a reference across 180
    "covered 0.5%" of a Fiji scene, 58% by its pixels; a polar square 5.6% of its own quadrant's degrees; found in
    review). None where PROJ cannot relate the two CRSs (an engineering CRS: it was an internal error); 0 for a
    ``b`` of no area (a degenerate geotransform). ``points``: a cache of the sample points, by grid and CRS."""
    if b.transform.determinant == 0:
        return 0.0
    points = {} if points is None else points
    key = (a.transform, a.width, a.height, str(a.crs), str(b.crs))
    if key not in points:
        points[key] = _sample_points(a, b.crs)
    if points[key] is None:
        return None
    xs, ys = points[key]
    with np.errstate(invalid="ignore", over="ignore"):  # (points outside b's CRS's domain: inf; NaN is outside)
        if b.crs.is_geographic:
            corners = ((0, 0), (b.width, 0), (0, b.height), (b.width, b.height))
            west = min((b.transform @ corner)[0] for corner in corners)
            xs = (xs - west) % 360.0 + west
        u = ~b.transform
        c, r = u.a * xs + u.b * ys + u.c, u.d * xs + u.e * ys + u.f
        inside = (c >= 0) & (c < b.width) & (r >= 0) & (r < b.height)
    return float(inside.mean())


def _sample_points(a: Grid, crs: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """SHARE_SAMPLES x SHARE_SAMPLES points spread evenly over ``a``'s pixels, in ``crs`` (pyproj: a point outside
    its domain is inf, not an error for them all); None where PROJ knows no way there (an engineering CRS)."""
    n = SHARE_SAMPLES
    cols, rows = np.meshgrid((np.arange(n) + 0.5) * a.width / n, (np.arange(n) + 0.5) * a.height / n)
    t = a.transform
    xs, ys = t.a * cols.ravel() + t.b * rows.ravel() + t.c, t.d * cols.ravel() + t.e * rows.ravel() + t.f
    if a.crs == crs:
        return xs, ys
    try:
        to_b = Transformer.from_crs(a.crs.to_wkt(), crs.to_wkt(), always_xy=True)
        bx, by = to_b.transform(xs, ys, errcheck=False)
    except Exception:  # noqa: BLE001 - PROJ knows no way between them
        return None
    return np.asarray(bx, dtype=float), np.asarray(by, dtype=float)


# geosr's tags on its outputs (JSON values), as `geosr info` shows them; the rest of the tags are left out
_RECORD = {"GEOSR_VERSION": "version", "GEOSR_MODEL": "model", "GEOSR_SCALE": "scale", "GEOSR_INPUTS": "inputs",
           "GEOSR_MODEL_SETTINGS": "model_settings", "GEOSR_COREGISTRATION": "coregistration",
           "GEOSR_CHANGE_DETECTION": "change_detection", "GEOSR_PROVENANCE": "provenance",
           "GEOSR_PROVENANCE_CLASSES": "provenance_classes", "GEOSR_CHANGE_CLASSES": "change_classes",
           "GEOSR_SENSOR_MASK": "sensor_mask",
           # how to run it again (the seed and bands were left out; found in review)
           "GEOSR_OPTIONS": "options", "GEOSR_SEED": "seed", "GEOSR_BANDS": "bands", "GEOSR_SAMPLER": "sampler",
           "GEOSR_TILING": "tiling", "GEOSR_NODATA_SHARE": "nodata_share", "GEOSR_RUNTIME": "runtime",
           # a `geosr rasterize-osm` map (geosr.osm.classes' tags: io does not import osm)
           "GEOSR_CLASS_TABLE": "map_class_table", "GEOSR_MAP_CLASSES": "map_classes", "GEOSR_MAP_STYLE": "map_style",
           "OSM_SOURCE": "osm_source", "OSM_TIMESTAMP": "osm_timestamp", "OSM_TIMESTAMP_KIND": "osm_timestamp_kind"}


def geosr_record(path: str, tags: dict[str, str] | None = None) -> dict | None:
    """What made a file geosr wrote (model, scale, inputs, settings, co-registration, change detection,
    provenance), from its tags (``tags``: already read); None for other files."""
    if tags is None:
        try:
            with open_raster(path) as ds:
                tags = ds.tags()
        except InputError:
            return None
    if not any(k in tags for k in _RECORD if k != "GEOSR_VERSION"):
        return None
    out = {}
    for key, name in _RECORD.items():
        if key in tags:
            try:
                out[name] = json.loads(tags[key])
            except json.JSONDecodeError:
                out[name] = _classes(tags[key]) if key == "GEOSR_PROVENANCE_CLASSES" else tags[key]
    return out


def _classes(text: str) -> list[dict] | str:
    """A provenance sidecar's class list ``0=nodata,1=reference detail used,...`` as [{"value", "name"}, ...] (as
    the change classes are given); the text as it is when it is not such a list."""
    pairs = [p.split("=", 1) for p in re.split(r",(?=\d+=)", text)]
    if not all(len(p) == 2 and p[0].isdigit() for p in pairs):
        return text
    return [{"value": int(v), "name": n} for v, n in pairs]
