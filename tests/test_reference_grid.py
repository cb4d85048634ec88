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
