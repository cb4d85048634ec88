"""The normalized model space: a per-scene robust linear stretch of the LR, and the way back.

Model space maps each band's ``low`` percentile to -1 and ``high`` percentile to +1 without clipping,
so the mapping is exactly linear and invertible (a linear model gives the same result in either space).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from geosr.errors import InputError
from geosr.io.rasters import (
    FULL_READ_LIMIT,
    block_sample,
    dataset_mask,
    physical,
    read_cost,
    read_window,
    reading,
    shown_name,
)

SAMPLE_SIDE = 1024  # the stretch is fitted on at most SAMPLE_SIDE^2 pixels (a decimated read or a block sample)
PERCENTILES = (1.0, 99.0)


# The largest model-space value a stretch gives (see Stretch.forward): far beyond any model's range, and a kernel's
# or a network layer's sum of such values still finite in float32 (whose largest is 3.4e38)
MODEL_LIMIT = 1e30


@dataclass(frozen=True)
class Stretch:
    """Per-band (low, high) in physical units; model value = 2 * (v - low) / (high - low) - 1."""

    low: tuple[float, ...]
    high: tuple[float, ...]

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.low)[:, None, None], np.asarray(self.high)[:, None, None]

    def forward(self, phys: np.ndarray) -> np.ndarray:
        lo, hi = self._arrays()
        # a value far outside the stretch (3e38 in float32, beside data of 0.1-0.4) leaves float32's range: held at
        # +-MODEL_LIMIT, from which kernel sums stay finite (an infinite one made the whole window's band NaN through
        # the upsampling's matrix products, inf * 0: a blank output; found in review); a nodata value so is masked
        # like every nodata pixel. In float64 (numpy's overflow warning, of a float64 raster's 1e300, only noise)
        with np.errstate(over="ignore", invalid="ignore"):
            model = 2.0 * (np.asarray(phys, dtype=np.float64) - lo) / (hi - lo) - 1.0
        return np.clip(model, -MODEL_LIMIT, MODEL_LIMIT).astype(np.float32)

    def inverse(self, model: np.ndarray) -> np.ndarray:
        lo, hi = self._arrays()
        phys = np.array(model, dtype=np.float64)  # a copy, worked on in place: whole output rows pass here
        phys += 1.0
        phys *= 0.5 * (hi - lo)  # 0.5 is exact: the same values as ((m + 1) * 0.5) * (hi - lo)
        phys += lo
        return phys

    def to_dict(self) -> dict[str, list[float]]:
        return {"low": list(self.low), "high": list(self.high)}


def decimated_shape(window: Window, side: int) -> tuple[int, int]:
    """(h, w) of ``window`` read at most ``side`` pixels a side."""
    f = max(1.0, max(window.width, window.height) / side)
    return max(1, round(window.height / f)), max(1, round(window.width / f))


def sample_windows(ds: rasterio.DatasetReader, window: Window, side: int = SAMPLE_SIDE) -> list[Window] | None:
    """None when a decimated read of ``window`` is cheap (a normal size, or overviews serve it), else the
    windows of a block sample of about ``side``^2 pixels (see :func:`geosr.io.rasters.block_sample`)."""
    if read_cost(ds, window, decimated_shape(window, side)) <= FULL_READ_LIMIT:
        return None
    return block_sample(ds, window, side * side)


def decimated_read(
    ds: rasterio.DatasetReader, bands: tuple[int, ...], window: Window, side: int = SAMPLE_SIDE
) -> tuple[np.ndarray, np.ndarray]:
    """Physical values and validity of ``window`` read at most ``side`` pixels a side (nearest).

    This decodes the whole window from disk unless overviews serve it: for statistics over an area of
    any size use :func:`bounded_read`.
    """
    shape = (len(bands), *decimated_shape(window, side))
    with reading(ds.name):
        data = ds.read(list(bands), window=window, out_shape=shape, resampling=Resampling.nearest, out_dtype="float64")
        valid = dataset_mask(ds, window=window, out_shape=shape[1:], resampling=Resampling.nearest) > 0
    return physical(ds, bands, data, valid)


def bounded_read(
    ds: rasterio.DatasetReader, bands: tuple[int, ...], window: Window, side: int = SAMPLE_SIDE
) -> tuple[np.ndarray, np.ndarray]:
    """Physical values and validity of about ``side``^2 pixels of ``window`` for statistics, reading a bounded
    number of pixels from disk whatever size the file declares.

    The decimated read (:func:`decimated_read`, (C, h, w)) when it is cheap; otherwise a block sample,
    returned flattened as (C, 1, n) and (1, n).
    """
    windows = sample_windows(ds, window, side)
    if windows is None:
        return decimated_read(ds, bands, window, side)
    parts = [read_window(ds, bands, w) for w in windows]
    data = np.concatenate([d.reshape(len(bands), 1, -1) for d, _ in parts], axis=2)
    valid = np.concatenate([v.reshape(1, -1) for _, v in parts], axis=1)
    if valid.any():
        return data, valid
    # the blocks' centres held no data: a scene whose data is a strip along an edge (a swath's), or a corner, was
    # refused as all nodata (found in review: 200 rows of a 10980 px tile). The same blocks whole (the first and
    # last rows and columns of blocks among them), keeping an even share of each one's valid pixels.
    whole = block_sample(ds, window)
    per = max(1, side * side // len(whole))
    kept = []
    for w in whole:
        d, v = read_window(ds, bands, w)
        found = d[:, v]
        kept.append(found[:, ::max(1, -(-found.shape[1] // per))])
    data = np.concatenate(kept, axis=1)[:, None, :]
    return data, np.ones((1, data.shape[2]), dtype=bool)


def fit_stretch(ds: rasterio.DatasetReader, bands: tuple[int, ...], window: Window) -> Stretch:
    """Robust per-band stretch of the LR (1st and 99th percentiles of valid pixels), fitted on a bounded
    read of ``window`` (:func:`bounded_read`)."""
    data, valid = bounded_read(ds, bands, window)
    if not valid.any():
        if sample_windows(ds, window) is None:
            raise InputError(f"{shown_name(ds.name)}: has no valid pixels in the area to process (all nodata)")
        raise InputError(f"{shown_name(ds.name)}: has no valid pixels in {len(block_sample(ds, window))} blocks "
                         "spread over it (all nodata?); build overviews (gdaladdo) so that the whole scene is "
                         "read at a coarser resolution")
    lows, highs = [], []
    for b, band in enumerate(bands):
        lo, hi = np.percentile(data[b][valid], PERCENTILES)
        if not hi > lo:  # a flat band: widened by half its step, at large magnitudes by what float64 tells from it
            half = max(0.5 * flat_step(ds.dtypes[band - 1], ds.scales[band - 1], float(lo)), abs(float(lo)) * 1e-9)
            lo, hi = float(lo) - half, float(lo) + half  # (1e17 +- 0.5 is 1e17: low == high divided by zero: NaN)
        lows.append(float(lo))
        highs.append(float(hi))
    return Stretch(tuple(lows), tuple(highs))


def flat_step(dtype: str, scale: float, value: float) -> float:
    """The step of a flat band's values at ``value`` in physical units, which its stretch spans: a stored integer's
    (its scale: 1 DN), a float's a millionth of its magnitude (at least 1e-6). The model's leakage between bands
    lands in a flat band as texture in proportion to the stretch (up to about its whole width, measured): widened by
    0.5 in physical units, a reflectance band of 0.05 (scale 1e-4, or float) came out -0.08 to 0.21 (found in
    review); now within a DN, or about 1e-6 of a float."""
    if np.issubdtype(np.dtype(dtype), np.integer):
        return abs(float(scale)) or 1.0
    return max(abs(value), 1.0) * 1e-6


def to_raw(phys: np.ndarray, dtype: str, scales: tuple[float, ...], offsets: tuple[float, ...]) -> np.ndarray:
    """Physical values back to the stored values of ``dtype`` (undo scale/offset, round and clip ints; clip floats
    to their finite range: an overshoot beside float32's largest values would be cast to infinity)."""
    sc = np.asarray(scales, dtype=np.float64)[:, None, None]
    of = np.asarray(offsets, dtype=np.float64)[:, None, None]
    raw = phys - of
    raw /= sc
    dt = np.dtype(dtype)
    if np.issubdtype(dt, np.integer):  # rounded and clipped in place (infinities clip to the range), NaN -> 0
        info = np.iinfo(dt)
        top = float(info.max)  # 64-bit maxima round up to 2^63 / 2^64 in float64, which the cast wraps around
        top = float(np.nextafter(top, 0.0)) if int(top) > info.max else top
        np.clip(np.rint(raw, out=raw), info.min, top, out=raw)
        np.copyto(raw, 0.0, where=np.isnan(raw))
    elif np.issubdtype(dt, np.floating):  # NaN stays NaN (nodata)
        finite = np.finfo(dt)
        np.clip(raw, float(finite.min), float(finite.max), out=raw)
    return raw.astype(dt)
