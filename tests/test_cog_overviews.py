"""The COG's overviews, built in the stage: GDAL's levels, averages of the full-resolution pixels, masks kept."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_validate

from geosr.config import DEFAULT_COMPRESS_LEVEL
from geosr.io.writer import OutputMeta, overview_factors, write_cog, write_row_bands
from geosr.tiling.grid import Grid


@pytest.mark.parametrize("width, height, block, factors", [
    (512, 512, 512, []), (513, 100, 512, [2]), (2048, 2048, 512, [2, 4]), (2100, 1100, 256, [2, 4, 8, 16]),
])
def test_overview_levels_halve_until_a_block_holds_the_image(width, height, block, factors):
    assert overview_factors(width, height, block) == factors


def _grid(width: int, height: int) -> Grid:
    return Grid("EPSG:32633", Affine(10.0, 0, 300000.0, 0, -10.0, 5600000.0), width, height)


def test_a_cog_carries_overviews_that_average_its_pixels(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 200, (3, 64, 96)).astype(np.uint8)
    write_cog(tmp_path / "o.tif", data, _grid(96, 64), OutputMeta(dtype="uint8", count=3, blocksize=16),
              folder=tmp_path)
    with rasterio.open(tmp_path / "o.tif") as ds:
        assert ds.overviews(1) == [2, 4, 8]
        assert np.array_equal(ds.read(), data)
    with rasterio.open(tmp_path / "o.tif", overview_level=0) as ov:
        expected = data.reshape(3, 32, 2, 48, 2).astype(np.float64).mean(axis=(2, 4))
        assert np.abs(ov.read().astype(np.float64) - expected).max() <= 0.5  # GDAL rounds the mean


@pytest.mark.parametrize("method", ["mode", "nearest"])
def test_a_class_raster_s_overviews_hold_only_its_classes(tmp_path, method):
    """Class rasters (the provenance sidecar, a change mask, an OSM class map) ask for mode or nearest overviews: an
    average of classes 0 and 3 is class 1 or 2, found nowhere in the full resolution (the method given was not
    checked; found by mutation testing)."""
    classes = np.zeros((1, 64, 64), np.uint8)
    classes[0, ::2, :] = 3
    classes[0, :, ::2] ^= 3  # a checkerboard of 0 and 3
    classes[0, :32, :32] = 3  # and a block of one class, which every level keeps
    write_cog(tmp_path / "c.tif", classes, _grid(64, 64),
              OutputMeta(dtype="uint8", count=1, blocksize=16, overview_resampling=method), folder=tmp_path)
    with rasterio.open(tmp_path / "c.tif") as ds:
        assert ds.overviews(1) == [2, 4]
    for level in (0, 1):
        with rasterio.open(tmp_path / "c.tif", overview_level=level) as ov:
            seen = ov.read(1)
            assert set(np.unique(seen)) <= {0, 3}, np.unique(seen)
            assert (seen[: seen.shape[0] // 2, : seen.shape[1] // 2] == 3).all()
    with pytest.raises(ValueError, match="class raster's overviews take mode or nearest"):
        OutputMeta(dtype="uint8", count=1, categories={0: "a", 3: "b"})  # (the provenance, a change mask, a map)


def test_row_bands_with_a_mask_get_mask_overviews(tmp_path):
    data = np.full((1, 64, 64), 7, np.uint16)
    valid = np.ones((64, 64), bool)
    valid[:, :32] = False
    data[:, ~valid] = 0
    meta = OutputMeta(dtype="uint16", count=1, nodata=0, write_mask=True, blocksize=16)
    grid = _grid(64, 64)
    bands = [(r, Grid(grid.crs, grid.transform @ Affine.translation(0, r), 64, 16), data[:, r:r + 16], valid[r:r + 16])
             for r in range(0, 64, 16)]
    (tmp_path / "work").mkdir()
    write_row_bands(tmp_path / "m.tif", grid, meta, bands, tmp_path / "work")
    with rasterio.open(tmp_path / "m.tif", overview_level=0) as ov:
        mask = ov.read_masks(1)
        assert ov.shape == (32, 32)
        assert (mask[:, :16] == 0).all() and (mask[:, 16:] == 255).all()
        assert (ov.read(1)[:, 16:] == 7).all()


def _deflated(tmp_path, data: np.ndarray, level: int | None) -> bytes:
    path = tmp_path / f"level{level}.tif"
    write_cog(path, data, _grid(data.shape[2], data.shape[1]),
              OutputMeta(dtype="uint8", count=3, blocksize=64, compress_level=level), folder=tmp_path)
    with rasterio.open(path) as ds:
        assert np.array_equal(ds.read(), data) and ds.compression.name == "deflate"
    return path.read_bytes()


def test_the_deflate_level_changes_the_bytes_not_the_pixels_and_defaults_to_geosrs(tmp_path):
    """The COG's DEFLATE level is geosr's default (5) unless one is asked for: level 1 and 9 write other bytes,
    the same pixels."""
    y, x = np.mgrid[0:128, 0:128]
    rng = np.random.default_rng(3)
    data = np.stack([(x + y) % 97 + rng.integers(0, 30, (128, 128)) for _ in range(3)]).astype(np.uint8)
    default, five = _deflated(tmp_path, data, None), _deflated(tmp_path, data, DEFAULT_COMPRESS_LEVEL["DEFLATE"])
    fast, small = _deflated(tmp_path, data, 1), _deflated(tmp_path, data, 9)
    assert default == five and len({default, fast, small}) == 3
    assert len(small) < len(fast)


@pytest.mark.parametrize("cap_mb", [256, 0])  # assembled in memory, or stitched on disk first
def test_row_bands_make_the_same_cog_in_memory_or_stitched_on_disk(tmp_path, monkeypatch, cap_mb):
    """Small outputs are assembled in GDAL's MEM driver, large ones stitched into a stage on disk: the same pixels,
    mask, metadata and overview levels either way, and no file left in the work folder."""
    import geosr.io.writer as writer

    monkeypatch.setattr(writer, "IN_MEMORY_MB", cap_mb)
    rng = np.random.default_rng(1)
    data = rng.integers(1, 60000, (2, 80, 72)).astype(np.uint16)
    valid = np.ones((80, 72), bool)
    valid[50:, :20] = False
    data[:, ~valid] = 0
    meta = OutputMeta(dtype="uint16", count=2, nodata=0, write_mask=True, blocksize=16, descriptions=("red", "nir"),
                      scales=(0.5, 0.25), offsets=(1.0, -2.0), tags={"GEOSR_MODEL": "lite"})
    grid = _grid(72, 80)
    assert writer.in_memory(grid, meta) == (cap_mb > 0)
    bands = [(r, grid.subgrid(Window(0, r, 72, 16)), data[:, r:r + 16], valid[r:r + 16]) for r in range(0, 80, 16)]
    work = tmp_path / "work"
    work.mkdir()
    write_row_bands(tmp_path / "o.tif", grid, meta, bands, work)
    assert list(work.iterdir()) == []
    valid_cog, errors, _ = cog_validate(str(tmp_path / "o.tif"))
    assert valid_cog and not errors, errors
    with rasterio.open(tmp_path / "o.tif") as ds:
        assert np.array_equal(ds.read(), data) and np.array_equal(ds.read_masks(1) > 0, valid)
        assert ds.descriptions == ("red", "nir") and ds.scales == (0.5, 0.25) and ds.offsets == (1.0, -2.0)
        assert ds.tags()["GEOSR_MODEL"] == "lite" and ds.nodata == 0 and ds.overviews(1) == [2, 4, 8]
        assert ds.crs == grid.crs and ds.transform == grid.transform
        assert ds.compression.name == "deflate" and ds.profile["tiled"]


def test_writing_uses_a_block_cache_of_megabytes_and_gives_the_process_its_own_back(tmp_path, monkeypatch):
    """rasterio takes GDAL_CACHEMAX in bytes: geosr's 256 meant a cache of 256 bytes, which it also left behind in
    the process, so reading the output back for its statistics decompressed every block again and again (a 1536-px
    output took 26 s instead of 3)."""
    from rasterio.env import get_gdal_config

    from geosr.io import writer

    seen = []
    copy = writer.rasterio.shutil.copy
    monkeypatch.setattr(writer.rasterio.shutil, "copy",
                        lambda *a, **k: seen.append(get_gdal_config("GDAL_CACHEMAX")) or copy(*a, **k))
    data = np.random.default_rng(0).integers(0, 200, (3, 40, 60)).astype(np.uint8)
    with rasterio.Env():  # as inside geosr's commands, where the writer's own Env is a nested one
        before = get_gdal_config("GDAL_CACHEMAX")
        write_cog(tmp_path / "o.tif", data, _grid(60, 40), OutputMeta(dtype="uint8", count=3))
        assert get_gdal_config("GDAL_CACHEMAX") == before
    assert seen and all(size == writer.GDAL_CACHE_MB * 2**20 for size in seen), seen


def test_overlapping_writes_in_threads_keep_the_block_cache_until_the_last_ends():
    """GDAL's block cache is the process's: a write ending in one thread put the process's size back under another
    thread's write still running (back to a cache of 256 bytes before session 51's fix), and the last to end could
    leave the writer's size behind for good."""
    import threading

    from rasterio.env import get_gdal_config

    from geosr.io import writer

    before = get_gdal_config("GDAL_CACHEMAX")
    inside = writer.GDAL_CACHE_MB * 2**20
    assert before != inside
    a_in, a_out, b_in = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, int] = {}

    def a() -> None:
        with writer.block_cache():
            a_in.set()
            b_in.wait(5)
        a_out.set()

    def b() -> None:
        a_in.wait(5)
        with writer.block_cache():
            b_in.set()
            a_out.wait(5)
            seen["b after a ended"] = get_gdal_config("GDAL_CACHEMAX")

    threads = [threading.Thread(target=f) for f in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen == {"b after a ended": inside}
    assert get_gdal_config("GDAL_CACHEMAX") == before
