"""Statistics never read a header-declared size whole: a file declaring 1,000,000 x 1,000,000 pixels (small
on disk: tiled, compressed, sparse) is fitted, checked and planned from a bounded number of pixels.

Pixels are counted where geosr asks rasterio for them: each read of a file counts every pixel of the blocks
its window touches (what GDAL decodes; a file here has no overviews), each read through a WarpedVRT the
pixels of its window. A counter that passes its bound fails the test at once (today's code would otherwise
decode for minutes).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
import rasterio.io
import rasterio.vrt
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.windows import Window

from conftest import make_raster, smooth_field
from geosr.conditioning import radiometry
from geosr.conditioning.changes import BINARY, check_mask_values
from geosr.conditioning.radiometry import fit_stretch, sample_windows
from geosr.errors import ClassTableError, InputError
from geosr.io.rasters import SAMPLE_BLOCK_PIXELS, block_sample, read_cost
from geosr.pipeline.scene import Scene
from geosr.tiling.grid import Grid, hr_grid
from geosr.tiling.windows import PlannedWindow

UTM = CRS.from_epsg(32633)
ORIGIN = Affine(10.0, 0, 500000.0, 0, -10.0, 5000000.0)


def _sparse(path, side: int, count: int, block: int, blocks: dict[tuple[int, int], int], texture=True, **kw):
    """A ``side`` x ``side`` uint8 GeoTIFF, tiled and sparse: only ``blocks`` {(block row, block col): value}
    are written (with a little texture), every other block costs nothing on disk and reads as 0."""
    profile = dict(driver="GTiff", width=side, height=side, count=count, dtype="uint8", crs=UTM, transform=ORIGIN,
                   tiled=True, blockxsize=block, blockysize=block, compress="deflate", SPARSE_OK=True, BIGTIFF="YES")
    profile.update(kw)
    with rasterio.open(path, "w", **profile) as dst:
        for (br, bc), value in blocks.items():
            h, w = min(block, side - br * block), min(block, side - bc * block)
            data = np.full((count, h, w), value, np.uint8)
            if texture:
                data[:, ::7, ::5] = min(255, value + 20)
            dst.write(data, window=Window(bc * block, br * block, w, h))
    return path


class Counter:
    """Pixels asked of rasterio, by file name; fails as soon as the total passes ``limit``."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.by_file: dict[str, float] = {}
        self.calls = 0

    @property
    def total(self) -> float:
        return sum(self.by_file.values())

    def add(self, name: str, pixels: float) -> None:
        self.calls += 1
        self.by_file[name] = self.by_file.get(name, 0.0) + pixels
        assert self.total <= self.limit, f"read {self.total:.3g} pixels (bound {self.limit:.3g}): {self.by_file}"


def _window(ds, window) -> Window:
    if window is None:
        return Window(0, 0, ds.width, ds.height)
    return window if isinstance(window, Window) else Window.from_slices(*window)


def _file_cost(ds, window) -> float:
    """Pixels of the blocks ``window`` touches (what GDAL decodes from a file without overviews)."""
    w = _window(ds, window)
    bh, bw = ds.block_shapes[0]
    c0, r0 = max(0, int(w.col_off)), max(0, int(w.row_off))
    c1 = min(ds.width, int(math.ceil(w.col_off + w.width)))
    r1 = min(ds.height, int(math.ceil(w.row_off + w.height)))
    if c1 <= c0 or r1 <= r0:
        return 0.0
    return float(((r1 - 1) // bh - r0 // bh + 1) * ((c1 - 1) // bw - c0 // bw + 1) * bh * bw)


@pytest.fixture
def counter(monkeypatch):
    box = Counter(limit=math.inf)
    for cls, cost in ((rasterio.io.DatasetReader, _file_cost),
                      (rasterio.vrt.WarpedVRT, lambda ds, w: float(_window(ds, w).width * _window(ds, w).height))):
        for method in ("read", "dataset_mask"):
            real = getattr(cls, method)

            def counted(self, *args, _real=real, _cost=cost, **kw):
                box.add(self.name, _cost(self, kw.get("window")))
                return _real(self, *args, **kw)

            monkeypatch.setattr(cls, method, counted)
    return box


@pytest.fixture(scope="module")
def huge(tmp_path_factory):
    """1,000,000 x 1,000,000 px, 3 bands, 1024-px tiles, a few blocks written (about 11 MB on disk)."""
    path = tmp_path_factory.mktemp("huge") / "huge.tif"
    return _sparse(path, 1_000_000, 3, 1024, {(0, 0): 60, (488, 488): 120, (976, 976): 200})


def test_fit_stretch_of_a_huge_declared_raster_reads_a_bounded_sample(huge, counter):
    counter.limit = 50e6
    with rasterio.open(huge) as ds:
        stretch = fit_stretch(ds, (1, 2, 3), Window(0, 0, ds.width, ds.height))
    assert counter.total <= 50e6
    assert all(math.isfinite(v) for v in stretch.low + stretch.high)
    assert all(h > lo for lo, h in zip(stretch.low, stretch.high))


def test_the_block_sample_is_spread_over_the_area_and_aligned_to_blocks(huge):
    with rasterio.open(huge) as ds:
        whole = Window(0, 0, ds.width, ds.height)
        windows = sample_windows(ds, whole, 1024)
        assert windows is not None
        blocks = {(int(w.row_off) // 1024, int(w.col_off) // 1024) for w in windows}
        assert len(blocks) == len(windows) <= SAMPLE_BLOCK_PIXELS // (1024 * 1024)  # one block each
        for w in windows:  # each inside its block
            assert int(w.row_off) // 1024 == (int(w.row_off + w.height) - 1) // 1024
            assert int(w.col_off) // 1024 == (int(w.col_off + w.width) - 1) // 1024
        rows = sorted({r for r, _ in blocks})
        cols = sorted({c for _, c in blocks})
        assert rows[0] == 0 and rows[-1] == 976 and cols[0] == 0 and cols[-1] == 976  # corner to corner
        assert sum(w.width * w.height for w in windows) <= 1024 * 1024
        # a window of the area: the sample stays inside it
        part = Window(300_000, 200_000, 50_000, 70_000)
        for w in sample_windows(ds, part, 1024):
            assert part.col_off <= w.col_off and w.col_off + w.width <= part.col_off + part.width
            assert part.row_off <= w.row_off and w.row_off + w.height <= part.row_off + part.height


def test_rasters_of_normal_size_keep_the_decimated_read(tmp_path):
    """Up to FULL_READ_LIMIT pixels (8192 x 8192) the stretch is fitted exactly as before."""
    data = (smooth_field(3, 200, 300, seed=3) * 1000).astype(np.uint16)
    path = make_raster(tmp_path / "small.tif", data)
    with rasterio.open(path) as ds:
        whole = Window(0, 0, ds.width, ds.height)
        assert sample_windows(ds, whole) is None
        stretch = fit_stretch(ds, (1, 2, 3), whole)
    for b in range(3):
        assert (stretch.low[b], stretch.high[b]) == tuple(np.percentile(data[b].astype(np.float64), (1.0, 99.0)))
    big = _sparse(tmp_path / "edge.tif", 8192, 1, 512, {})
    bigger = _sparse(tmp_path / "over.tif", 8193, 1, 512, {})
    with rasterio.open(big) as a, rasterio.open(bigger) as b:
        assert sample_windows(a, Window(0, 0, 8192, 8192)) is None
        assert sample_windows(b, Window(0, 0, 8193, 8193)) is not None


def test_overviews_serve_a_large_raster_whole(tmp_path, monkeypatch):
    """With overviews that make the decimated read cheap, it is kept (GDAL reads the overview)."""
    path = _sparse(tmp_path / "ovr.tif", 4096, 1, 256, {(3, 3): 90, (10, 12): 150})
    with rasterio.open(path, "r+") as ds:
        ds.build_overviews([2, 4, 16], Resampling.nearest)
    monkeypatch.setattr(radiometry, "FULL_READ_LIMIT", 512 * 512)
    with rasterio.open(path) as ds:
        whole = Window(0, 0, 4096, 4096)
        assert read_cost(ds, whole, (256, 256)) == 4096 * 4096 / 16**2
        assert read_cost(ds, whole, (1024, 1024)) == 4096 * 4096 / 4**2
        assert sample_windows(ds, whole, 256) is None  # 256^2 pixels from the x16 overview
        assert sample_windows(ds, whole, 1024) is not None  # 1024^2 from the x4 overview: over the limit
    path2 = _sparse(tmp_path / "plain.tif", 4096, 1, 256, {})
    with rasterio.open(path2) as ds:
        assert sample_windows(ds, Window(0, 0, 4096, 4096), 256) is not None


def test_a_large_scene_with_data_only_along_its_edge_is_fitted_on_it(tmp_path, monkeypatch, counter):
    """The stretch's block sample reads the centre of each block it picks: a scene without overviews whose data is
    a strip along its edge (a swath's: 200 rows of a 10980 px tile) was refused as "no valid pixels" (found in
    review). The sampled blocks are then read whole; a scene that has none in them is refused, saying so."""
    path = _sparse(tmp_path / "strip.tif", 16384, 3, 256, {}, nodata=0)
    with rasterio.open(path, "r+") as ds:
        strip = np.full((3, 40, 16384), 100, np.uint8)
        strip[:, ::3] = 140
        ds.write(strip, window=Window(0, 0, 16384, 40))
    monkeypatch.setattr(radiometry, "FULL_READ_LIMIT", 512 * 512)
    counter.limit = 16384 * 16384 / 2  # bounded: half the scene's pixels (read and masked, its blocks twice)
    with rasterio.open(path) as ds:
        whole = Window(0, 0, 16384, 16384)
        assert sample_windows(ds, whole, 256) is not None
        stretch = fit_stretch(ds, (1, 2, 3), whole)
    assert stretch.low == (100.0,) * 3 and stretch.high == (140.0,) * 3
    empty = _sparse(tmp_path / "empty.tif", 4096, 3, 256, {}, nodata=0)
    with rasterio.open(empty) as ds, pytest.raises(InputError, match=r"empty.tif: has no valid pixels in \d+ blocks "
                                                                       r"spread over it .*build overviews"):
        fit_stretch(ds, (1, 2, 3), Window(0, 0, 4096, 4096))


@pytest.fixture(scope="module")
def big_inputs(tmp_path_factory):
    """200,000 x 200,000 px LR, reference, change mask and map (512-px tiles, a few blocks written)."""
    d = tmp_path_factory.mktemp("big")
    side, block = 200_000, 512
    lr = _sparse(d / "lr.tif", side, 3, block, {(0, 0): 50, (200, 200): 100, (390, 390): 150})
    ref = _sparse(d / "ref.tif", side, 3, block, {(0, 0): 40, (200, 200): 90, (390, 390): 140})
    with rasterio.open(d / "lr.tif") as ds:
        sampled = {(int(w.row_off) // block, int(w.col_off) // block)
                   for w in block_sample(ds, Window(0, 0, side, side))}
    hidden = next((r, c) for r in range(1, 390) for c in range(1, 390) if (r, c) not in sampled)
    cd = _sparse(d / "cd.tif", side, 1, block, {(0, 0): 1, hidden: 7}, texture=False)  # 7: not in the table
    mp = _sparse(d / "map.tif", side, 1, block, {(0, 0): 3, hidden: 9}, texture=False)
    return dict(lr=lr, ref=ref, cd=cd, map=mp, hidden=hidden, block=block, side=side)


def test_scene_open_on_huge_inputs_reads_bounded_samples(big_inputs, counter):
    """The stretch, the harmonization, the change mask's values and the map's classes, all bounded."""
    counter.limit = 200e6  # each declared file holds 4e10 pixels
    b = big_inputs
    with rasterio.open(b["lr"]) as ds:
        hr, area = hr_grid(Grid(ds.crs, ds.transform, ds.width, ds.height), 2)
    with Scene.open(str(b["lr"]), scale=2, hr=hr, area=area, ref=str(b["ref"]), cd=str(b["cd"]),
                    cd_table=BINARY, map=str(b["map"])) as scene:
        assert counter.total <= 200e6, counter.by_file
        assert scene.cd_sampled and scene.map_sampled
        assert scene.n_map_classes == 4  # the map's sample saw 0 and 3
        assert scene.harmonization is not None and scene.harmonization.pixels > 0
        for name, pixels in counter.by_file.items():
            assert pixels <= 4 * SAMPLE_BLOCK_PIXELS, (name, pixels)
        # values outside the sample are caught when the windows holding them are read
        r, c = b["hidden"]
        blk = b["block"]
        counter.limit = math.inf
        win = PlannedWindow(0, 0, 0, c * blk, r * blk, 64, 64)
        with pytest.raises(ClassTableError, match=r"cd\.tif: holds values 7 that the 'binary' change class table"):
            scene.read_stack(win, 0)
        scene.cd_reader, scene.cd_info = None, None  # without the mask, the map's class 9 is met next
        with pytest.raises(ClassTableError, match=r"map\.tif: holds class 9 but a sample of this map showed at most 3"):
            scene.read_stack(win, 0)
        clean = PlannedWindow(0, 0, 0, 0, 0, 64, 64)
        stack = scene.read_stack(clean, 0)
        assert stack.map.max() == 3


def test_check_mask_values_scans_a_mask_of_normal_size_whole(tmp_path):
    m = np.zeros((1, 300, 400), np.uint8)
    m[0, 299, 399] = 7
    path = make_raster(tmp_path / "cd.tif", m, tiled=True, blockxsize=64, blockysize=64)
    with rasterio.open(path) as ds, pytest.raises(ClassTableError, match="holds values 7"):
        check_mask_values(ds, BINARY)
    m[0, 299, 399] = 1
    make_raster(tmp_path / "ok.tif", m)
    with rasterio.open(tmp_path / "ok.tif") as ds:
        assert check_mask_values(ds, BINARY) is True


def test_dry_run_plan_of_a_huge_scene_reads_a_bounded_sample(big_inputs, counter):
    from geosr.pipeline.upscale import plan_upscale

    counter.limit = 100e6
    try:
        job = plan_upscale(big_inputs["lr"], output=None, scale=2, model="bicubic", dry_run=True)
    except InputError as exc:  # a check of the machine's resources may refuse so large a job
        assert counter.total <= 100e6
        assert any(word in str(exc) for word in ("memory", "disk", "resource")), exc
        return
    with job:
        assert job.summary["width"] == 400_000 and job.summary["dry_run"]
    assert counter.total <= 100e6
