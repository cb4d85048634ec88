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


def _smooth(n: int, seed: int) -> np.ndarray:
    """A float32 texture with detail at a few pixels' scale (an interpolation kernel's size shows in it)."""
    rng = np.random.default_rng(seed)
    f = np.fft.fft2(rng.normal(size=(n, n)))
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n)))
    return (100 + 40 * np.real(np.fft.ifft2(f / (1 + (k / 0.08) ** 2))) / 3).astype(np.float32)


def _read(path, grid: Grid, resampling: Resampling) -> tuple[np.ndarray, np.ndarray]:
    with rasterio.open(path) as ds:
        reader = GridReader(ds, grid, (1,), resampling)
        try:
            return reader.read(Window(0, 0, grid.width, grid.height))
        finally:
            reader.close()


@pytest.mark.parametrize("resampling, res, tol", [(Resampling.cubic, 2.5, 1e-3), (Resampling.bilinear, 2.5, 1e-3),
                                                  (Resampling.cubic, 40.0, 0.1)])  # (before: 0.64, 0.64, 1.58)
def test_a_reference_on_a_turned_grid_reads_as_the_same_pixels(tmp_path, resampling, res, tol):
    """The same pixels on a grid turned by 90 degrees (its geotransform turned with them) are the same reference:
    GDAL's warper scaled its kernel for each chunk from the bounding box of the source window under it, which is
    turned (or, at 20 degrees, too large) there, so a turned reference was resampled with a kernel for the other
    axis (the bundled sample's reference turned: up to 31 DN off in reference-paste; found in review)."""
    from geosr.tiling.grid import source_steps

    data = _smooth(96, 1)
    north = Affine(10, 0, 500000, 0, -10, 5000000)
    make_raster(tmp_path / "north.tif", data, transform=north)
    # the same ground, turned: pixel (c, r) of the turned file is pixel (95 - r, c) of the other
    make_raster(tmp_path / "turned.tif", np.ascontiguousarray(np.rot90(data, 1)),
                transform=north @ Affine(0, -1, 96, 1, 0, 0))
    side = int(round(96 * 10 / res)) - 8  # inside the reference (its edge is a gap either way)
    grid = Grid(CRS.from_epsg(32633), Affine(res, 0, 500000 + 2 * res, 0, -res, 5000000 - 2 * res), side, side // 2)
    (a, va), (b, vb) = (_read(tmp_path / f"{n}.tif", grid, resampling) for n in ("north", "turned"))
    assert va.all() and vb.all()
    assert np.abs(a - b).max() < tol, np.abs(a - b).max()
    for name, turn in (("north", 0), ("turned", 90), ("20", 20)):
        t = north @ Affine.rotation(turn)
        src = Grid(CRS.from_epsg(32633), t, 96, 96)
        assert source_steps(src, grid) == pytest.approx((10 / res, 10 / res)), name


def test_a_reference_numbered_across_the_antimeridian_is_read_whole(tmp_path):
    """A reference in longitude and latitude across 180 degrees (numbered 179.9..180.1, or -180.1..-179.9), read
    onto a projected grid there (UTM 60 over Fiji), was read on half of it without a word: GDAL's warper takes the
    grid's pixels to -180..180. A global one numbered 0..360 read onto a grid at -10..10 degrees likewise. A
    projected reference across 180 degrees, read onto a grid in degrees there, was refused as not overlapping."""
    from geosr.conditioning.reference import check_overlap, footprint_on

    data = _smooth(80, 2)
    east = Affine(0.0025, 0, 179.9, 0, -0.0025, -16.8)
    make_raster(tmp_path / "east.tif", data, crs="EPSG:4326", transform=east)
    make_raster(tmp_path / "west.tif", data, crs="EPSG:4326", transform=Affine.translation(-360, 0) @ east)
    utm = Grid(CRS.from_epsg(32760), Affine(50, 0, 818000, 0, -50, 8130500), 60, 60)  # 180 E runs through it
    (a, va), (b, vb) = (_read(tmp_path / f"{n}.tif", utm, Resampling.cubic) for n in ("east", "west"))
    assert va.all() and vb.all() and np.array_equal(a, b)  # (before: half of each valid)
    world = np.tile(np.arange(360, dtype=np.float32), (20, 1))
    make_raster(tmp_path / "world.tif", world, crs="EPSG:4326", transform=Affine(1, 0, 0, 0, -1, 10))
    wgs = Grid(CRS.from_epsg(4326), Affine(0.5, 0, -10, 0, -0.5, 5), 40, 10)
    values, valid = _read(tmp_path / "world.tif", wgs, Resampling.nearest)
    assert valid.all() and values[0, 0, 0] == 350 and values[0, 0, -1] == 9
    # the other way: a UTM 60 reference across 180 degrees onto grids in degrees either side of the line
    make_raster(tmp_path / "utm.tif", _smooth(64, 3), crs="EPSG:32760",
                transform=Affine(50, 0, 818000, 0, -50, 8131000))
    with rasterio.open(tmp_path / "utm.tif") as ds:
        for left in (179.99, 179.996, -180.004):
            grid = Grid(CRS.from_epsg(4326), Affine(0.0001, 0, left, 0, -0.0001, -16.892), 60, 40)
            assert check_overlap(ds, grid, "reference") == pytest.approx(1.0)
            c0, r0, c1, r1 = footprint_on(ds, grid)
            assert c0 < 0 < 60 < c1 and r0 < 0 < 40 < r1
    across = Grid(CRS.from_epsg(4326), Affine(0.0001, 0, 179.997, 0, -0.0001, -16.892), 60, 40)
    values, valid = _read(tmp_path / "utm.tif", across, Resampling.cubic)
    assert valid.all()


def test_a_wrapped_reference_keeps_its_datum_or_is_not_wrapped():
    """PROJ's +lon_wrap is set through a PROJ string, which keeps a datum only as +datum or +towgs84: NZGD49's was
    dropped and a reference across 180 degrees read onto a scene there moved 83 m (found in review). A CRS its
    string does not place exactly is left unwrapped."""
    from geosr.tiling.grid import wrapped_crs

    east = Affine(0.0025, 0, 179.9, 0, -0.0025, -37.5)
    utm = Grid(CRS.from_epsg(32760), Affine(50, 0, 818000, 0, -50, 5840000), 60, 60)
    assert wrapped_crs(Grid(CRS.from_epsg(4326), east, 80, 80), utm) is not None
    assert wrapped_crs(Grid(CRS.from_epsg(4272), east, 80, 80), utm) is None  # NZGD49
    assert wrapped_crs(Grid(CRS.from_epsg(4326), Affine(0.0025, 0, 179.0, 0, -0.0025, -37.5), 80, 80), utm) is None


def test_a_turned_class_raster_read_by_its_mode_holds_its_classes_where_it_lies(tmp_path):
    """A class raster on a turned grid, read by mode, max or nearest (as change masks and maps are): every output pixel
    whose centre it covers is valid and holds one of its classes (the kernel scaled along its own axes). A finer map
    with scattered nodata keeps every pixel a class covers in part (validity taken from the pixel's centre, as
    for an average, lost 6% of them to the background; found in review)."""
    classes = np.ones((400, 400), np.uint8)
    classes[:, 200:] = 2
    turned = Affine(0.5, 0, 500003.0, 0, -0.5, 4999997.0) @ Affine.rotation(20)
    make_raster(tmp_path / "c.tif", classes, transform=turned, nodata=0)
    grid = Grid(CRS.from_epsg(32633), Affine(10, 0, 499900, 0, -10, 5000100), 40, 40)
    cols, rows = np.meshgrid(np.arange(40) + 0.5, np.arange(40) + 0.5)
    a, b, c, d, e, f = (~turned @ grid.transform)[:6]
    sc, sr = a * cols + b * rows + c, d * cols + e * rows + f
    inside = (sc >= 0) & (sc < 400) & (sr >= 0) & (sr < 400)
    for resampling in (Resampling.mode, Resampling.max, Resampling.nearest):
        values, valid = _read(tmp_path / "c.tif", grid, resampling)
        assert valid[inside].all(), resampling
        assert set(np.unique(values[0][valid])) <= {1.0, 2.0}
    rows_, cols_ = np.arange(256)[:, None] % 4, np.arange(256)[None, :] % 4
    holes = np.where((rows_ >= 1) & (rows_ <= 2) & (cols_ >= 1) & (cols_ <= 2), 255, 3).astype(np.uint8)
    make_raster(tmp_path / "m.tif", holes, transform=Affine(1, 0, 500000, 0, -1, 5000000), nodata=255)
    fine = Grid(CRS.from_epsg(32633), Affine(4, 0, 500000, 0, -4, 5000000), 64, 64)
    for resampling in (Resampling.mode, Resampling.max, Resampling.min):
        values, valid = _read(tmp_path / "m.tif", fine, resampling)
        assert valid.all() and (values[0] == 3).all(), resampling
