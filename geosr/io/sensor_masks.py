"""A sensor's own cloud mask, as its product ships it: which raster, and which of its values say that a pixel does
not show the ground (cloud, cloud shadow, cirrus, snow). Read onto any grid as a boolean raster. No torch here.

Sentinel-2 L2A's scene classification (SCL; ESA's Level-2A algorithm theoretical basis, table of classes) and
Landsat Collection 2's QA_PIXEL bits (USGS Landsat 8-9 Collection 2 Level 2 science product guide).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import array_bounds
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window, from_bounds

from geosr.errors import InputError, NetworkError, NotARasterError
from geosr.io.paths import named
from geosr.io.vrt import open_member

# SCL classes that are not the ground as it is: 3 cloud shadows, 8 cloud medium probability, 9 cloud high
# probability, 10 thin cirrus, 11 snow or ice (0 no data and 1 saturated or defective are left to the bands' nodata)
SCL_FLAGGED = {3: "cloud shadow", 8: "cloud (medium probability)", 9: "cloud (high probability)", 10: "thin cirrus",
               11: "snow or ice"}
# QA_PIXEL bits: 1 dilated cloud, 2 cirrus, 3 cloud, 4 cloud shadow, 5 snow
QA_PIXEL_FLAGGED = {1: "dilated cloud", 2: "cirrus", 3: "cloud", 4: "cloud shadow", 5: "snow"}
# Sentinel-2 L1C's MSK_CLASSI_B00 (processing baseline 04.00 on): one band each, non-zero where flagged
MSK_CLASSI_BANDS = {1: "opaque cloud", 2: "cirrus", 3: "snow or ice"}
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


def landsat_qa_pixel(href: str) -> SensorMask:
    """A Landsat Collection 2 pixel quality raster (QA_PIXEL) at ``href``."""
    return SensorMask(href, "the product's pixel quality band (QA_PIXEL)", bits=tuple(QA_PIXEL_FLAGGED))


def open_mask(mask: SensorMask, owner: str) -> rasterio.DatasetReader:
    """The mask's raster, opened (keep it open across reads: GDAL then decodes each block of a JPEG 2000 once);
    a failure is one sentence naming ``owner``, the input it belongs to."""
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


def read_flags(mask: SensorMask, ds: rasterio.DatasetReader, crs: CRS, transform: Affine, width: int, height: int,
               moved: Affine | None = None, nearest: bool = False) -> np.ndarray:
    """(height, width) bool on the grid (``crs``, ``transform``): a pixel is flagged where flagged pixels of the
    mask raster (``ds``: :func:`open_mask`) cover more than :data:`COVER` of it (the mask is usually coarser: SCL
    20 m against 10 m bands); with ``nearest``, where the mask pixel under its centre is flagged (for a grid whose
    pixels stand for the points sampled at their centres, e.g. a decimated read). Outside the mask raster: not
    flagged. ``moved``: where the mask's own coordinates are taken to lie instead (a co-registered reference's
    correction, in the mask's CRS)."""
    out = np.zeros((height, width), np.float32)
    placed = ds.transform if moved is None else moved @ ds.transform
    bounds = transform_bounds(crs, ds.crs, *array_bounds(height, width, transform))
    win = from_bounds(*bounds, transform=placed)
    # one source pixel more on every side, within the raster
    c0, r0 = max(0, int(np.floor(win.col_off)) - 1), max(0, int(np.floor(win.row_off)) - 1)
    c1 = min(ds.width, int(np.ceil(win.col_off + win.width)) + 1)
    r1 = min(ds.height, int(np.ceil(win.row_off + win.height)) + 1)
    if c1 <= c0 or r1 <= r0:
        return out > COVER
    part = Window(c0, r0, c1 - c0, r1 - r0)
    flags = mask.flags(ds.read(list(mask.bands), window=part)).astype(np.float32)
    src_transform = placed @ Affine.translation(part.col_off, part.row_off)
    # the share of each pixel the flagged ones cover
    reproject(flags, out, src_transform=src_transform, src_crs=ds.crs, dst_transform=transform, dst_crs=crs,
              resampling=Resampling.nearest if nearest else Resampling.average)
    return out > (0.5 if nearest else COVER)  # nearest: 0 or 1
