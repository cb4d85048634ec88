"""A sensor's own cloud mask, as its product ships it: which raster, and which of its values say that a pixel does
not show the ground (cloud, cloud shadow, cirrus, snow). Read onto any grid as a boolean raster. No torch here.

Sentinel-2 L2A's scene classification (SCL; ESA's Level-2A algorithm theoretical basis, table of classes), L1C's
cloud masks (MSK_CLASSI_B00 from processing baseline 04.00, before it the polygons of MSK_CLOUDS_B00.gml; ESA's
Sentinel-2 products specification document) and Landsat Collection 2's QA_PIXEL bits (USGS Landsat 8-9 Collection
2 Level 2 science product guide).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.features import rasterize
from rasterio.transform import array_bounds
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window

from geosr.errors import InputError, NetworkError, NotARasterError
from geosr.io.paths import named
from geosr.io.vrt import gdal_path, open_member

# SCL classes that are not the ground as it is: 3 cloud shadows, 8 cloud medium probability, 9 cloud high
# probability, 10 thin cirrus, 11 snow or ice (0 no data and 1 saturated or defective are left to the bands' nodata)
SCL_FLAGGED = {3: "cloud shadow", 8: "cloud (medium probability)", 9: "cloud (high probability)", 10: "thin cirrus",
               11: "snow or ice"}
# QA_PIXEL bits: 1 dilated cloud, 2 cirrus, 3 cloud, 4 cloud shadow, 5 snow
QA_PIXEL_FLAGGED = {1: "dilated cloud", 2: "cirrus", 3: "cloud", 4: "cloud shadow", 5: "snow"}
# Sentinel-2 L1C's MSK_CLASSI_B00 (processing baseline 04.00 on): one band each, non-zero where flagged
MSK_CLASSI_BANDS = {1: "opaque cloud", 2: "cirrus", 3: "snow or ice"}
# Sentinel-2 L1C's MSK_CLOUDS_B00.gml (before processing baseline 04.00): polygons whose maskType is one of these,
# burnt into the band of the same number (MSK_CLASSI's bands of the same meaning) at GML_RESOLUTION (CRS units: the
# polygons trace the 60 m cloud mask of ESA's processing, so 20 m draws them exactly)
GML_MASK_TYPES = {"OPAQUE": 1, "CIRRUS": 2}
GML_RESOLUTION = 20.0
# a pixel is flagged where flagged pixels of the mask cover more than this share of it: half, so that a mask moved
# by a co-registration (an estimate of 2.002 px) or read onto another grid does not flag a ring of pixels it only
# grazes, while one on a finer grid (SCL's 20 m over 10 m bands) is drawn exactly
COVER = 0.5


@dataclass(frozen=True)
class SensorMask:
    """The raster at ``href`` flags a pixel where its first band's value is one of ``classes``, or, with ``bits``,
    has any of those bits set, or, with ``bands`` (neither of the others), where any of those bands is non-zero."""

    href: str
    name: str  # what it is, in words: "the product's scene classification (SCL)"
    classes: tuple[int, ...] = ()
    bits: tuple[int, ...] = ()
    bands: tuple[int, ...] = (1,)
    polygons: bool = False  # ``href`` is a GML file of polygons (MSK_CLOUDS_B00.gml), burnt into ``bands``

    @property
    def flagged(self) -> str:
        """What it flags, in words."""
        if self.bits:
            return ", ".join(QA_PIXEL_FLAGGED.get(b, f"bit {b}") for b in self.bits)
        if self.classes:
            return ", ".join(SCL_FLAGGED.get(c, f"class {c}") for c in self.classes)
        return ", ".join(MSK_CLASSI_BANDS.get(b, f"band {b}") for b in self.bands)

    def flags(self, raw: np.ndarray) -> np.ndarray:
        """Where ``raw`` values of the mask raster ((bands, h, w): :attr:`bands`) say "not the ground"."""
        raw = np.asarray(raw)
        if self.bits:
            return np.bitwise_and(raw[0].astype(np.int64), sum(1 << b for b in self.bits)) != 0
        if self.classes:
            return np.isin(raw[0], self.classes)
        return (raw != 0).any(axis=0)

    def to_dict(self, of: str) -> dict:
        """``of``: whose mask it is ("LR", "reference")."""
        return {"of": of, "source": self.name, "flagged": self.flagged}


def sentinel2_scl(href: str) -> SensorMask:
    """A Sentinel-2 L2A scene classification raster (SCL) at ``href``."""
    return SensorMask(href, "the product's scene classification (SCL)", classes=tuple(SCL_FLAGGED))


def sentinel2_classi(href: str) -> SensorMask:
    """A Sentinel-2 L1C cloud and snow mask raster (MSK_CLASSI_B00: opaque clouds, cirrus, snow) at ``href``."""
    return SensorMask(href, "the product's cloud and snow mask (MSK_CLASSI)", bands=tuple(MSK_CLASSI_BANDS))


def sentinel2_msk_clouds(href: str) -> SensorMask:
    """A Sentinel-2 L1C cloud mask of polygons (MSK_CLOUDS_B00.gml, before processing baseline 04.00) at
    ``href``."""
    return SensorMask(href, "the product's cloud mask (MSK_CLOUDS, polygons)", bands=tuple(GML_MASK_TYPES.values()),
                      polygons=True)


def landsat_qa_pixel(href: str) -> SensorMask:
    """A Landsat Collection 2 pixel quality raster (QA_PIXEL) at ``href``."""
    return SensorMask(href, "the product's pixel quality band (QA_PIXEL)", bits=tuple(QA_PIXEL_FLAGGED))


def open_mask(mask: SensorMask, owner: str) -> rasterio.DatasetReader | None:
    """The mask's raster, opened (keep it open across reads: GDAL then decodes each block of a JPEG 2000 once);
    None when it flags nothing (a GML mask without polygons); a failure is one sentence naming ``owner``, the input
    it belongs to."""
    if mask.polygons:
        return _burnt(mask, owner)
    try:
        ds = open_member(owner, mask.href, "cloud mask")
    except (InputError, NetworkError) as exc:  # the same sentence, with the way around it
        exc.args = (f"{exc.args[0]}; {WITHOUT}",) + exc.args[1:]
        raise
    if ds.crs is None:
        ds.close()
        raise NotARasterError(f"{owner}: its cloud mask {named(mask.href)} has no coordinate reference system; "
                              f"{WITHOUT}")
    return ds


WITHOUT = "or turn `cloud_masks` off to go without it"


def _burnt(mask: SensorMask, owner: str) -> rasterio.DatasetReader | None:
    """A GML cloud mask's polygons burnt into an in-memory raster (GDAL's MEM driver, freed when it is closed) of
    :data:`GML_RESOLUTION` over their extent, one band per :data:`GML_MASK_TYPES` (a pixel is flagged where its
    centre is inside a polygon); None without polygons. Read by OGR (pyogrio), which writes no schema file
    (``.gfs``) beside the product's. A file OGR cannot read, a broken polygon, a cut-off file: one sentence."""
    import geopandas
    import pyogrio
    from pyogrio.errors import CRSError, DataLayerError, DataSourceError, FeatureError, FieldError, GeometryError

    def refused(why: str) -> NotARasterError:
        return NotARasterError(f"{owner}: its cloud mask {named(mask.href)} {why}; {WITHOUT}")

    try:
        path = gdal_path(mask.href)
    except InputError as exc:
        raise refused(f"cannot be read ({exc})") from exc
    try:
        found = pyogrio.read_dataframe(path, layer="MaskFeature", WRITE_GFS="NO")
    except (FeatureError, GeometryError, FieldError, CRSError, DataSourceError) as exc:  # (before DataLayerError,
        reason = str(exc).split("\n")[0].split(";")[0].rstrip(".")                       # their base class)
        raise refused(f"cannot be read ({reason.replace(repr(path) + ' ', '').replace(path + ': ', '')})") from exc
    except DataLayerError as exc:  # no MaskFeature layer: a mask without members has no layer at all
        try:
            pyogrio.read_dataframe(path, WRITE_GFS="NO")
        except IndexError:  # (pyogrio's answer to a file of no layer)
            return None
        except Exception:  # noqa: BLE001 - unreadable either way: the sentence below
            pass
        raise refused("holds no MaskFeature polygons") from exc
    if not isinstance(found, geopandas.GeoDataFrame) or "maskType" not in found.columns:  # (a cut-off file)
        raise refused("holds no polygons with their mask types (is it complete?)")
    found = found[found.geometry.notna() & ~found.geometry.is_empty]
    if found.empty:
        return None
    if found.crs is None:
        raise refused("has no coordinate reference system")
    if found.crs.is_geographic:  # GML_RESOLUTION is in metres: drawn in the UTM zone of the polygons
        found = found.to_crs(found.estimate_utm_crs())
    res = GML_RESOLUTION
    minx, miny, maxx, maxy = found.total_bounds
    # a margin of clear pixels: at the raster's own edge GDAL's averaging would count the flags alone
    x0, y1 = np.floor(minx / res) * res - 2 * res, np.ceil(maxy / res) * res + 2 * res
    width, height = int(np.ceil((maxx - x0) / res)) + 2, int(np.ceil((y1 - miny) / res)) + 2
    transform = Affine(res, 0.0, x0, 0.0, -res, y1)
    burnt = np.zeros((len(GML_MASK_TYPES), height, width), np.uint8)
    for kind, band in GML_MASK_TYPES.items():
        shapes = list(found.geometry[found["maskType"].astype(str).str.upper() == kind])
        if shapes:
            burnt[band - 1] = rasterize(shapes, (height, width), transform=transform, dtype="uint8")
    ds = rasterio.open("", "w+", driver="MEM", width=width, height=height, count=burnt.shape[0], dtype="uint8",
                       crs=found.crs.to_wkt(), transform=transform)
    ds.write(burnt)
    return ds  # type: ignore[return-value]  # (a MEM dataset, read as any other)


def read_flags(mask: SensorMask, ds: rasterio.DatasetReader | None, crs: CRS, transform: Affine, width: int,
               height: int, moved: Affine | None = None, nearest: bool = False) -> np.ndarray:
    """(height, width) bool on the grid (``crs``, ``transform``): a pixel is flagged where flagged pixels of the
    mask raster (``ds``: :func:`open_mask`; None: it flags nothing) cover more than :data:`COVER` of it (the mask is
    usually coarser: SCL 20 m against 10 m bands); with ``nearest``, where the mask pixel under its centre is flagged
    (for a grid whose pixels stand for the points sampled at their centres, e.g. a decimated read). Outside the mask
    raster: not flagged. ``moved``: where the mask's own coordinates are taken to lie instead (a co-registered
    reference's correction, in the mask's CRS)."""
    out = np.zeros((height, width), np.float32)
    if ds is None:  # a mask that flags nothing
        return out > COVER
    from geosr.io.rasters import reading  # (rasters reads sources, which reads this module)

    placed = ds.transform if moved is None else moved @ ds.transform
    left, bottom, right, top = transform_bounds(crs, ds.crs, *array_bounds(height, width, transform))
    # the mask's pixels under the box, whichever way its rows and columns run (rasterio's from_bounds takes north-up
    # rasters only: a south-up mask was "Bounds and transform are inconsistent", exit 1)
    inv = ~placed
    cols, rows = zip(*((inv.a * x + inv.b * y + inv.c, inv.d * x + inv.e * y + inv.f)
                       for x in (left, right) for y in (bottom, top)))
    win = Window(min(cols), min(rows), max(cols) - min(cols), max(rows) - min(rows))
    # one source pixel more on every side, within the raster
    c0, r0 = max(0, int(np.floor(win.col_off)) - 1), max(0, int(np.floor(win.row_off)) - 1)
    c1 = min(ds.width, int(np.ceil(win.col_off + win.width)) + 1)
    r1 = min(ds.height, int(np.ceil(win.row_off + win.height)) + 1)
    if c1 <= c0 or r1 <= r0:
        return out > COVER
    part = Window(c0, r0, c1 - c0, r1 - r0)
    with reading(mask.href):  # a cut or corrupt mask file: one sentence naming it (was "internal error")
        raw = ds.read(list(mask.bands), window=part)
    flags = mask.flags(raw).astype(np.float32)
    src_transform = placed @ Affine.translation(part.col_off, part.row_off)
    # the share of each pixel the flagged ones cover
    reproject(flags, out, src_transform=src_transform, src_crs=ds.crs, dst_transform=transform, dst_crs=crs,
              resampling=Resampling.nearest if nearest else Resampling.average)
    return out > (0.5 if nearest else COVER)  # nearest: 0 or 1
