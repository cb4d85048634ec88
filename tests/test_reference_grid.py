"""A reference seen on the output's grid (GDAL's warper): which of its pixels hold data."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.windows import Window
from tests.conftest import make_raster

from geosr.conditioning.reference import GridReader
from geosr.tiling.grid import Grid


@pytest.mark.parametrize("nodata, low, high", [(0, 1, 255), (255, 0, 254)])
def test_a_coarser_references_overshoot_is_no_gap(tmp_path, nodata, low, high):
    """A reference coarser than the output grid is warped with cubic, which overshoots at sharp edges and clamps to
    the data type: valid pixels of a uint8 reference with nodata 0 (or 255) came out at the nodata value and were
    taken for gaps (half the pixels of a striped reference; 0.3-0.9% of a real-looking one, with no word). A gap
    of one band is still one."""
    data = np.full((3, 64, 64), low, np.uint8)
    data[:, :, (np.arange(64) // 4) % 2 == 0] = high  # stripes 4 px wide: overshoot on both sides of each edge
    data[1, 30, 30] = nodata  # a real gap, in band 2 only
    path = make_raster(tmp_path / "ref.tif", data, transform=Affine(10, 0, 500000, 0, -10, 5000000), nodata=nodata)
    grid = Grid(CRS.from_epsg(32633), Affine(2.5, 0, 500000, 0, -2.5, 5000000), 256, 256)
    with rasterio.open(path) as ds:
        reader = GridReader(ds, grid, (1, 2, 3))
        try:
            assert reader.resampling == Resampling.cubic
            values, valid = reader.read(Window(0, 0, 256, 256))
            raw = reader.vrt.read(1, window=Window(0, 0, 256, 256))
        finally:
            reader.close()
    assert (raw[8:-8, 8:-8] == nodata).mean() > 0.2  # the warp's own values do reach the nodata value
    gap = np.zeros((256, 256), bool)
    gap[120:124, 120:124] = True  # the 10 m pixel (30, 30) on the 2.5 m grid
    assert not valid[gap].any()
    assert valid[~gap].all()
    assert np.isfinite(values).all()


def test_hidden_pixels_are_left_out_before_the_average(tmp_path, monkeypatch):
    """:func:`read_average_without` averages onto a grid 4x coarser only the source's pixels neither hidden (a cloud
    mask's flags, given on the source's own pixels) nor nodata, scaled to physical values, read in blocks as
    in one read; a grid pixel without such a pixel under its centre is invalid. (Left out only on the grid, a pixel
    partly under a small white cloud read brightened.)"""
    import geosr.conditioning.reference as reference

    rng = np.random.default_rng(4)
    data = rng.integers(100, 200, (2, 64, 64)).astype(np.uint16)
    data[:, 10:13, 40:47] = 60000  # a white cloud, flagged
    data[0, 50, 5] = 0  # nodata in one band: the pixel is out
    transform = Affine(10, 0, 500000, 0, -10, 5000000)
    path = make_raster(tmp_path / "ref.tif", data, transform=transform, nodata=0)
    with rasterio.open(path, "r+") as ds:
        ds.scales, ds.offsets = (0.5, 0.5), (10.0, 10.0)
    flags = np.zeros((64, 64), bool)
    flags[10:13, 40:47] = True
    flags[20:24, 20:24] = True  # a whole grid pixel: invalid

    def hidden(t, w, h):  # the source's own pixels (row, col) under the window the transform starts
        c0, r0 = (round(v) for v in ~transform @ (t.c, t.f))
        return flags[r0:r0 + h, c0:c0 + w]

    grid = Grid(CRS.from_epsg(32633), Affine(40, 0, 500000, 0, -40, 5000000), 16, 16)
    keep = ~flags & (data > 0).all(axis=0)
    expected = np.where(keep, data * 0.5 + 10, 0).reshape(2, 16, 4, 16, 4).sum(axis=(2, 4)) / np.maximum(
        keep.reshape(16, 4, 16, 4).sum(axis=(1, 3)), 1)
    with rasterio.open(path) as ds:
        whole = reference.read_average_without(ds, grid, (1, 2), hidden)
        monkeypatch.setattr(reference, "MASKED_READ_PIXELS", 64 * 8)  # blocks of 5 x 5 grid pixels
        strips = reference.read_average_without(ds, grid, (1, 2), hidden)
    for values, valid in (whole, strips):
        # (valid where the source pixel under the grid pixel's centre is: GridReader's average)
        assert not valid[5, 5] and (valid == keep[2::4, 2::4]).all() and valid[2:4, 10:12].sum() == 2
        assert np.allclose(values[:, valid], expected[:, valid], atol=1e-3)
        assert values[:, 2:4, 10:12].max() < 120  # the cloud's grid pixels: the clear pixels beside it alone
