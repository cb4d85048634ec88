"""A sensor's own cloud mask (Sentinel-2 L2A's SCL, a STAC item's ``scl`` / ``qa_pixel``) in change detection."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.transform import from_origin
from tests.conftest import smooth_field
from tests.s2_products import (
    BANDS_10M,
    _write,
    band_files,
    item_over_band_files,
    l1c_product,
    l2a_product,
    msk_clouds_gml,
)
from typer.testing import CliRunner

from geosr.cli.app import app
from geosr.conditioning.change_detection import detect_changes as compare
from geosr.io.sensor_masks import landsat_qa_pixel, sentinel2_classi, sentinel2_scl
from geosr.io.sources import composite


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _same_scene_reference(safe, path):
    """The product's own reflectance (red, green, blue: the LR's default bands) as a GeoTIFF: a reference in
    which nothing changed."""
    with rasterio.open(composite(str(safe)).vrt) as src:
        data = src.read(masked=True).filled(0).astype(np.float32) * np.float32(src.scales[0]) + np.float32(
            src.offsets[0])
        data = data[[2, 1, 0]]
        profile = dict(driver="GTiff", width=src.width, height=src.height, count=3, dtype="float32",
                       crs=src.crs, transform=src.transform)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


def test_the_mask_flags_its_classes_or_bits():
    scl = sentinel2_scl("scl.jp2")
    # every class: 2 dark area, 6 water and 7 unclassified are ground (unguarded; found by mutation testing)
    assert scl.flags(np.array([[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]])).tolist() == [0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 1,
                                                                                     1]
    qa = landsat_qa_pixel("qa.tif")
    # 21824: clear land (bits 6, 8, 10, 12, 14); 22280: high-confidence cloud (bit 3 set); 23888: shadow (bit 4);
    # bits 1 (dilated cloud) and 2 (cirrus) on clear land flag too (unguarded; found by mutation testing)
    assert qa.flags(np.array([[1, 21824, 22280, 23888, 1 << 5, 21824 | 2, 21824 | 4]])).tolist() == [0, 0, 1, 1, 1,
                                                                                                      1, 1]
    classi = sentinel2_classi("msk.jp2")  # opaque, cirrus, snow: one band each
    assert classi.flags(np.array([[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])).tolist() == [0, 1, 1, 1]


def test_an_l2a_product_s_cloud_mask_is_changed_where_the_images_agree(tmp_path):
    """The LR's own SCL says cloud and shadow over a block where the reference is the same image: the detection
    flags that block (the images alone see nothing there) and nothing else, and says what it used."""
    scl = np.full((20, 24), 4, np.uint8)  # vegetation
    scl[4:9, 6:12] = 9  # cloud, high probability: LR rows 8-17, columns 12-23
    scl[12:15, 16:20] = 3  # cloud shadow: rows 24-29, columns 32-39
    scl[0:2, 0:4] = 10  # thin cirrus: rows 0-3, columns 0-7, over the product's nodata corner (rows 0-2, 0-3)
    safe, _ = l2a_product(tmp_path, scl=scl)
    assert composite(str(safe)).mask is not None
    ref = tmp_path / "ref.tif"
    _same_scene_reference(safe, ref)
    out = tmp_path / "changes.tif"
    res = _run("detect-changes", safe, "--ref", ref, "-o", out, "--refine", "1", "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    with rasterio.open(out) as ds:
        changes = ds.read(1)
        tags = json.loads(ds.tags()["GEOSR_CHANGE_DETECTION"])
    assert changes.shape == (40, 48)
    expected = np.zeros((40, 48), bool)
    expected[8:18, 12:24] = True
    expected[24:30, 32:40] = True
    expected[0:4, 0:8] = True
    known = changes != 255
    assert not known[0:3, 0:4].any() and known[3, 0:8].all()  # the nodata corner stays unknown, not "changed"
    assert (changes[expected & known] == 1).all()
    assert (changes[~expected & known] == 0).mean() > 0.99  # the same image: (almost) nothing else
    share = (expected & known).sum() / known.sum()
    assert abs(summary["sensor_mask"]["share"] - share) < 0.02
    (used,) = summary["sensor_mask"]["masks"]
    assert used["of"] == "LR" and "SCL" in used["source"] and "cloud shadow" in used["flagged"]
    assert tags["sensor_mask"]["masks"] == [used]
    # drawn 4x finer, the mask's outline is its own: the cloud's LR pixels whole, the LR pixel around it clear
    fine = tmp_path / "fine.tif"
    assert _run("detect-changes", safe, "--ref", ref, "-o", fine).exit_code == 0
    with rasterio.open(fine) as ds:
        changes4 = ds.read(1)
    assert (changes4[32:72, 48:96] == 1).all()  # LR rows 8-17, columns 12-23
    ring = np.ones((48, 56), bool)
    ring[4:-4, 4:-4] = False
    assert (changes4[28:76, 44:100][ring] == 0).all()
    text = _run("detect-changes", safe, "--ref", ref, "-o", out, "--overwrite")
    assert text.exit_code == 0 and "cloud mask (the LR's, the product's scene classification (SCL): cloud shadow" in \
        " ".join(text.output.split())
    info = _run("info", out)
    assert info.exit_code == 0 and "cloud mask (the LR's, the product's scene classification (SCL)" in \
        " ".join(info.output.split())


def test_flagged_pixels_are_left_out_of_the_statistics():
    """A bright cloud over 70% of a smooth LR (flagged by the sensor) does not become the norm: a change beside it
    is found and the clear ground stays clear (taken into the statistics, the cloud set off false alarms there)."""
    rng = np.random.default_rng(4)
    old = 0.3 + 0.3 * smooth_field(3, 64, 64, 4) + 0.01 * rng.standard_normal((3, 64, 64))
    new = old.copy()
    new[:, :, :45] = 0.9 + 0.03 * rng.random((3, 64, 45))  # the cloud
    new[:, 44:56, 50:60] += 0.15  # a change on clear ground
    valid = np.ones((64, 64), bool)
    cloud = np.zeros((64, 64), bool)
    cloud[:, :45] = True
    clear = ~cloud
    clear[42:58, 48:62] = False  # the change and a pixel or two around it
    found = compare(new, valid, old, valid, untrusted=cloud)
    assert found.changed[cloud].all() and found.valid.all()
    assert found.changed[45:55, 51:59].all()
    assert found.changed[clear].mean() < 0.06
    blind = compare(new, valid, old, valid)  # the images alone
    assert blind.changed[clear].mean() > 0.3


def test_upscale_takes_the_lr_s_cloud_mask_as_changed(tmp_path):
    """``upscale --cd auto`` on an L2A product: the cloud its SCL flags is "model only" in the provenance, the
    summary says what flagged it, and the rest uses the reference (the same scene: nothing changed); with a change
    mask of one's own, the cloud is still "model only"."""
    scl = np.full((20, 24), 4, np.uint8)
    scl[4:9, 6:12] = 8  # cloud, medium probability: LR rows 8-17, columns 12-23
    safe, _ = l2a_product(tmp_path, scl=scl)
    ref = tmp_path / "ref.tif"
    _same_scene_reference(safe, ref)
    out = tmp_path / "sr.tif"
    res = _run("upscale", safe, "--ref", ref, "-x", "2", "-o", out, "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    mask = summary["change_detection"]["sensor_mask"]
    assert "SCL" in mask["masks"][0]["source"] and 0.05 < mask["share"] < 0.08  # 120 of the 1,908 LR px with data
    with rasterio.open(out.with_name("sr.provenance.tif")) as ds:
        prov = ds.read(1)
    assert prov.shape == (80, 96)
    assert (prov[16:36, 24:48] == 2).all()  # the cloud, on the output grid
    assert (prov[40:, :] == 1).mean() > 0.95  # clear ground: the reference's detail
    # a change mask of one's own saying "nothing changed" does not put the reference into the cloud either
    given = tmp_path / "nothing.tif"
    with rasterio.open(ref) as src, rasterio.open(given, "w", driver="GTiff", width=src.width, height=src.height,
                                                  count=1, dtype="uint8", crs=src.crs, transform=src.transform) as ds:
        ds.write(np.zeros((1, src.height, src.width), np.uint8))
    res = _run("upscale", safe, "--ref", ref, "--cd", given, "-x", "2", "-o", out, "--overwrite", "--json")
    assert res.exit_code == 0, res.output
    with rasterio.open(out.with_name("sr.provenance.tif")) as ds:
        prov = ds.read(1)
    assert (prov[16:36, 24:48] == 2).all() and (prov == 2).sum() == 20 * 24
    summary = json.loads(res.stdout)
    assert summary["change_detection"] is None and summary["sensor_mask"]["masks"][0]["of"] == "LR"
    shown = " ".join(_run("info", out).output.split())
    assert "cloud mask (the LR's, the product's scene classification (SCL)" in shown
    # --cd none trusts the reference everywhere, clouds included; the mask still keeps the clouds out of the
    # reference's colour fit, which the summary, the tags and info now say (they said nothing: found black-box)
    res = _run("upscale", safe, "--ref", ref, "--cd", "none", "-x", "2", "-o", out, "--overwrite", "--json")
    assert res.exit_code == 0, res.output
    mask = json.loads(res.stdout)["sensor_mask"]
    assert mask["changed"] is False and mask["masks"][0]["of"] == "LR", mask
    with rasterio.open(out.with_name("sr.provenance.tif")) as ds:
        assert not (ds.read(1) == 2).any()
    shown = " ".join(_run("info", out).output.split())
    assert "left out of the reference's colour fit, not taken as changed (--cd none)" in shown, shown


def test_a_stac_item_s_scl_asset_is_its_cloud_mask_and_part_of_its_fingerprint(tmp_path):
    """Earth Search's ``scl`` asset: read as the item's cloud mask (never stacked as a band), flagged where it says
    cloud, and its file is one the resume fingerprint follows."""
    from geosr.pipeline import job as job_module

    band_files(tmp_path / "s2")
    path = item_over_band_files(tmp_path / "s2")
    scl = np.full((20, 24), 4, np.uint8)
    scl[10:16, 2:10] = 9  # LR rows 20-31, columns 4-19
    with rasterio.open(tmp_path / "s2" / "SCL.tif", "w", driver="GTiff", width=24, height=20, count=1,
                       dtype="uint8", crs="EPSG:32633", transform=from_origin(300000.0, 5600040.0, 20.0, 20.0)) as ds:
        ds.write(scl, 1)
    item = json.loads(path.read_text())
    item["assets"]["scl"] = {"href": "SCL.tif", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                             "title": "Scene classification map (SCL)", "roles": ["data", "reflectance"],
                             "raster:bands": [{"nodata": 0, "data_type": "uint8", "spatial_resolution": 20}]}
    path.write_text(json.dumps(item))
    comp = composite(str(path))
    assert comp.mask is not None and "SCL" in comp.mask.name and "cloud mask" in comp.note
    with rasterio.open(comp.vrt) as ds:
        assert ds.count == 4  # blue, green, red, nir: the mask is not a band
    ref = tmp_path / "ref.tif"
    _same_scene_reference(path, ref)
    out = tmp_path / "changes.tif"
    res = _run("detect-changes", path, "--ref", ref, "-o", out, "--refine", "1", "--json")
    assert res.exit_code == 0, res.output
    with rasterio.open(out) as ds:
        changes = ds.read(1)
    assert (changes[20:32, 4:20] == 1).all()
    assert json.loads(res.stdout)["sensor_mask"]["share"] > 0.09  # 192 of 1,920 LR pixels
    before = job_module._file_id(str(path))
    scl[:] = 4
    with rasterio.open(tmp_path / "s2" / "SCL.tif", "r+") as ds:
        ds.write(scl, 1)
    assert job_module._file_id(str(path)) != before


def _landsat_folder(folder, qa):
    """Landsat Collection 2 Level-2 band files (SR_B2, SR_B3, SR_B4 at 30 m) and their QA_PIXEL."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    h, w = qa.shape
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    stem = "LC09_L2SP_044034_20220111_20220113_02_T1"
    profile = dict(driver="GTiff", width=w, height=h, count=1, dtype="uint16", crs="EPSG:32610",
                   transform=from_origin(500000.0, 4200000.0, 30.0, 30.0))
    for i, band in enumerate(("SR_B2", "SR_B3", "SR_B4")):
        dn = 8000 + 4000 * np.sin(5 * xx + i) * np.cos(3 * yy) + 300 * rng.standard_normal((h, w))
        with rasterio.open(folder / f"{stem}_{band}.TIF", "w", **profile) as ds:
            ds.write(dn.astype(np.uint16), 1)
    with rasterio.open(folder / f"{stem}_QA_PIXEL.TIF", "w", **profile) as ds:
        ds.write(qa.astype(np.uint16), 1)


def test_band_folders_bring_their_cloud_mask(tmp_path):
    """A Landsat Collection 2 folder's QA_PIXEL and a Sentinel-2 L2A granule's IMG_DATA (SCL in R20m beside R10m)
    are read as their cloud masks; the QA_PIXEL block is changed against a reference of the same scene."""
    qa = np.full((40, 48), 21824, np.uint16)  # clear land
    qa[10:20, 30:40] = 22280  # high-confidence cloud
    _landsat_folder(tmp_path / "l9", qa)
    comp = composite(str(tmp_path / "l9"))
    assert comp.mask is not None and "QA_PIXEL" in comp.mask.name and comp.mask.href in comp.files
    ref = tmp_path / "ref.tif"
    with rasterio.open(comp.vrt) as src:
        profile = dict(driver="GTiff", width=src.width, height=src.height, count=3, dtype="float32", crs=src.crs,
                       transform=src.transform)
        data = src.read()[[2, 1, 0]].astype(np.float32)
    with rasterio.open(ref, "w", **profile) as dst:
        dst.write(data)
    out = tmp_path / "changes.tif"
    res = _run("detect-changes", tmp_path / "l9", "--ref", ref, "-o", out, "--refine", "1", "--json")
    assert res.exit_code == 0, res.output
    with rasterio.open(out) as ds:
        changes = ds.read(1)
    assert (changes[10:20, 30:40] == 1).all()
    assert (changes[:10] == 0).mean() > 0.98
    scl = np.full((20, 24), 4, np.uint8)
    scl[2:4, 2:4] = 9
    safe, _ = l2a_product(tmp_path / "s2", scl=scl)
    img_data = next(safe.glob("GRANULE/*/IMG_DATA"))
    comp = composite(str(img_data))
    assert comp.mask is not None and comp.mask.href.endswith("_SCL_20m.jp2")


def test_a_reference_product_s_cloud_mask_moves_with_its_co_registration(tmp_path):
    """The reference is an L2A product with a cloud in its SCL, 2 LR pixels off the LR (the LR's georeference
    moved 40 m east): co-registration moves the reference back, and its cloud with it, onto the LR pixels it
    covers (LR rows 10-19, columns 20-29), not where the product's own georeference puts it (columns 18-27)."""
    scl = np.full((48, 64), 4, np.uint8)
    scl[10:20, 20:30] = 9
    safe, _ = l2a_product(tmp_path, width=128, height=96, scl=scl)
    with rasterio.open(composite(str(safe)).vrt) as src:
        refl = src.read(masked=True).filled(0).astype(np.float32) * np.float32(src.scales[0]) + np.float32(
            src.offsets[0])
        t, crs = src.transform, src.crs
    lr = refl[[2, 1, 0]].reshape(3, 48, 2, 64, 2).mean(axis=(2, 4))  # the same scene at 20 m
    with rasterio.open(tmp_path / "lr.tif", "w", driver="GTiff", width=64, height=48, count=3, dtype="float32",
                       crs=crs, transform=from_origin(t.c + 40.0, t.f, 20.0, 20.0)) as ds:
        ds.write(lr)
    out = tmp_path / "changes.tif"
    res = _run("detect-changes", tmp_path / "lr.tif", "--ref", safe, "-o", out, "--refine", "1", "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["coregistration"]["applied"] and abs(summary["coregistration"]["offset_lr_px"][0] + 2) < 0.05
    assert [m["of"] for m in summary["sensor_mask"]["masks"]] == ["reference"]
    with rasterio.open(out) as ds:
        changes = ds.read(1)
    assert (changes[10:20, 20:30] == 1).all()
    assert (changes[8:22, 16:20] == 0).all() and (changes[8:22, 30:34] == 0).all()


def test_read_flags_by_cover_or_at_the_sampled_point(tmp_path):
    """A 100 m pixel is flagged where flagged 20 m pixels cover more than half of it, or, for a grid of sampled
    points (a decimated read: the harmonization's sample), where the one under its centre is; a 10 m grid gets each
    flagged 20 m pixel's four quarters exactly."""
    from geosr.io.sensor_masks import open_mask, read_flags

    scl = np.full((10, 10), 4, np.uint8)
    scl[0:4, 0:4] = 9  # 64% of the first 100 m pixel, but not the 20 m pixel under its centre (40-60 m)
    scl[2, 2] = 4
    scl[2, 7] = 9  # the centre of the second 100 m pixel alone: 4% of it
    path = tmp_path / "SCL.tif"
    with rasterio.open(path, "w", driver="GTiff", width=10, height=10, count=1, dtype="uint8", crs="EPSG:32633",
                       transform=from_origin(300000.0, 5600000.0, 20.0, 20.0)) as ds:
        ds.write(scl, 1)
    mask = sentinel2_scl(str(path))
    coarse = from_origin(300000.0, 5600000.0, 100.0, 100.0)
    with open_mask(mask, "item.json") as ds:
        crs = ds.crs
        assert read_flags(mask, ds, crs, coarse, 2, 2).tolist() == [[True, False], [False, False]]
        assert read_flags(mask, ds, crs, coarse, 2, 2, nearest=True).tolist() == [[False, True], [False, False]]
        fine = from_origin(300000.0, 5600000.0, 10.0, 10.0)  # 10 m: each flagged 20 m pixel's four quarters
        flags = read_flags(mask, ds, crs, fine, 20, 20)
        assert np.array_equal(flags, np.kron(scl == 9, np.ones((2, 2), bool)))


def test_a_south_up_or_cut_off_mask_is_read_or_named(tmp_path):
    """A mask stored bottom row first (a positive pixel height) stopped upscale on rasterio's "Bounds and transform
    are inconsistent" (exit 1); a mask file cut short on "internal error: RasterioIOError: Read failed"."""
    from geosr.errors import NotARasterError
    from geosr.io.sensor_masks import open_mask, read_flags

    scl = np.full((10, 10), 4, np.uint8)
    scl[1:5, 2:8] = 9
    up, down = tmp_path / "SCL.tif", tmp_path / "SCL_south_up.tif"
    for path, data, t in ((up, scl, from_origin(300000.0, 5600000.0, 20.0, 20.0)),
                          (down, scl[::-1], Affine(20.0, 0.0, 300000.0, 0.0, 20.0, 5600000.0 - 200.0))):
        with rasterio.open(path, "w", driver="GTiff", width=10, height=10, count=1, dtype="uint8",
                           crs="EPSG:32633", transform=t) as ds:
            ds.write(data, 1)
    fine = from_origin(300000.0, 5600000.0, 10.0, 10.0)
    want = np.kron(scl == 9, np.ones((2, 2), bool))
    for path in (up, down):
        mask = sentinel2_scl(str(path))
        with open_mask(mask, "item.json") as ds:
            assert np.array_equal(read_flags(mask, ds, ds.crs, fine, 20, 20), want), path.name
    cut = tmp_path / "SCL_cut.tif"
    with rasterio.open(cut, "w", driver="GTiff", width=256, height=256, count=1, dtype="uint8", crs="EPSG:32633",
                       transform=from_origin(300000.0, 5600000.0, 20.0, 20.0), tiled=True, blockxsize=64,
                       blockysize=64, compress="deflate") as ds:
        ds.write(np.random.default_rng(0).integers(0, 12, (1, 256, 256), dtype=np.uint8))
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    mask = sentinel2_scl(str(cut))
    with open_mask(mask, "item.json") as ds, pytest.raises(NotARasterError) as err:
        read_flags(mask, ds, ds.crs, from_origin(300000.0, 5600000.0, 10.0, 10.0), 512, 512)
    assert str(err.value).startswith(f"{cut}: pixels cannot be read"), err.value


def test_missing_or_broken_masks(tmp_path):
    """A listed mask whose file is missing is left out with a word (a product folder, its zip, a STAC item); one
    without a CRS is one sentence, exit 2; no output may be written over a mask (nor a band) an input reads."""
    import shutil

    scl = np.full((20, 24), 4, np.uint8)
    safe, _ = l2a_product(tmp_path / "p", scl=scl)
    next(safe.rglob("*_SCL_20m.jp2")).unlink()
    zipped = Path(shutil.make_archive(str(tmp_path / "product"), "zip", safe.parent, safe.name))
    for product in (safe, zipped):
        comp = composite(str(product))
        assert comp.mask is None and "(SCL) is missing: no cloud mask" in comp.note
    band_files(tmp_path / "s2")
    path = item_over_band_files(tmp_path / "s2")
    item = json.loads(path.read_text())
    item["assets"]["scl"] = {"href": "MISSING_SCL.tif", "type": "image/tiff; application=geotiff"}
    path.write_text(json.dumps(item))
    comp = composite(str(path))
    assert comp.mask is None and "cloud mask MISSING_SCL.tif is missing" in comp.note
    res = _run("upscale", path, "-x", "2", "-m", "bicubic", "-o", tmp_path / "b.tif")
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "s2" / "SCL.tif", "w", driver="GTiff", width=24, height=20, count=1,
                       dtype="uint8") as ds:  # no CRS
        ds.write(np.full((1, 20, 24), 9, np.uint8))
    item["assets"]["scl"]["href"] = "SCL.tif"
    path.write_text(json.dumps(item))
    ref = tmp_path / "ref.tif"
    _same_scene_reference(path, ref)
    res = _run("detect-changes", path, "--ref", ref, "-o", tmp_path / "c.tif")
    said = " ".join(res.output.split())
    assert res.exit_code == 2 and "its cloud mask" in said and "SCL.tif has no coordinate reference system" in said
    assert not (tmp_path / "c.tif").exists()
    member = tmp_path / "s2" / "SCL.tif"
    before = member.read_bytes()
    for bad in (member, next((tmp_path / "s2").glob("*_B04_*.tif"))):
        res = _run("detect-changes", path, "--ref", ref, "-o", bad, "--overwrite")
        assert res.exit_code == 2 and f"is the LR's file {bad.name}" in " ".join(res.output.split())
    assert member.read_bytes() == before


def test_too_few_clear_pixels_to_compare_is_said(tmp_path):
    """A cloud mask over most of the scene leaves too few pixels for the detector's statistics: the detection says
    so (the flagged ones are not counted as compared)."""
    scl = np.full((20, 24), 9, np.uint8)
    scl[:, :6] = 4  # 12 of 48 LR columns clear: 480 pixels
    safe, _ = l2a_product(tmp_path, scl=scl)
    ref = tmp_path / "ref.tif"
    _same_scene_reference(safe, ref)
    res = _run("detect-changes", safe, "--ref", ref, "-o", tmp_path / "c.tif", "--json")
    assert res.exit_code == 0, res.output
    assert any("LR pixels could be compared" in w for w in json.loads(res.stdout)["warnings"])


def test_no_cloud_masks_turns_them_off_and_needs_a_reference(tmp_path):
    """``--no-cloud-masks`` (a product's mask that takes bright roofs for cloud): the SCL is not read, the
    detection sees the images alone; without a reference it is refused like ``--no-coregister``."""
    scl = np.full((20, 24), 4, np.uint8)
    scl[4:9, 6:12] = 9
    safe, _ = l2a_product(tmp_path, scl=scl)
    ref = tmp_path / "ref.tif"
    _same_scene_reference(safe, ref)
    res = _run("detect-changes", safe, "--ref", ref, "-o", tmp_path / "c.tif", "--refine", "1", "--no-cloud-masks",
               "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["sensor_mask"] is None
    with rasterio.open(tmp_path / "c.tif") as ds:
        assert (ds.read(1) == 1).mean() < 0.01  # the same image: nothing changed
    res = _run("upscale", safe, "--ref", ref, "-x", "2", "-o", tmp_path / "sr.tif", "--no-cloud-masks", "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["sensor_mask"] is None and summary["change_detection"]["sensor_mask"] is None
    res = _run("upscale", safe, "-x", "2", "-m", "bicubic", "-o", tmp_path / "b.tif", "--no-cloud-masks")
    assert res.exit_code == 2 and "cloud masks are turned off, and no reference was given" in \
        " ".join(res.output.split())
    assert not (tmp_path / "b.tif").exists()


def test_masks_named_but_not_used_are_said_and_an_unreadable_one_says_how_to_go_without(tmp_path):
    """A product's R10m folder given itself finds the SCL in R20m beside it; a mask missing from a product is
    left out with a warning (detect-changes too); a remote mask whose server does not answer fails the run in one
    sentence naming the way around it; every pixel under a mask is said; a dry run with --cd auto lists the mask."""
    import shutil

    scl = np.full((20, 24), 4, np.uint8)
    scl[4:9, 6:12] = 9
    safe, _ = l2a_product(tmp_path / "p", scl=scl)
    r10m = next(safe.glob("GRANULE/*/IMG_DATA/R10m"))
    assert composite(str(r10m)).mask is not None and composite(str(r10m) + "/").mask is not None
    ref = tmp_path / "ref.tif"
    _same_scene_reference(safe, ref)
    res = _run("upscale", safe, "--ref", ref, "-x", "2", "-o", tmp_path / "dry.tif", "--dry-run", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["sensor_mask"]["masks"][0]["of"] == "LR"
    gone = tmp_path / "gone"
    shutil.copytree(safe, gone / safe.name)
    next((gone / safe.name).rglob("*_SCL_20m.jp2")).unlink()
    res = _run("detect-changes", gone / safe.name, "--ref", ref, "-o", tmp_path / "c.tif", "--json")
    assert res.exit_code == 0, res.output
    assert any("the LR's cloud mask is not used" in w for w in json.loads(res.stdout)["warnings"])
    res = _run("upscale", gone / safe.name, "--ref", ref, "-x", "2", "-o", tmp_path / "u.tif", "--json")
    assert res.exit_code == 0 and any("cloud mask is not used" in w for w in json.loads(res.stdout)["warnings"])
    # every pixel under the mask
    cloudy, _ = l2a_product(tmp_path / "all", scl=np.full((20, 24), 9, np.uint8))
    res = _run("detect-changes", cloudy, "--ref", ref, "-o", tmp_path / "all.tif", "--json")
    assert res.exit_code == 0 and any("flag every pixel both images cover" in w
                                      for w in json.loads(res.stdout)["warnings"])
    # a remote mask nobody answers for (port 9 on the loopback: refused at once)
    band_files(tmp_path / "s2")
    path = item_over_band_files(tmp_path / "s2")
    item = json.loads(path.read_text())
    item["assets"]["scl"] = {"href": "http://127.0.0.1:9/SCL.tif", "type": "image/tiff; application=geotiff"}
    path.write_text(json.dumps(item))
    res = _run("detect-changes", path, "--ref", ref, "-o", tmp_path / "r.tif")
    said = " ".join(res.output.split())
    assert res.exit_code == 1 and "its cloud mask" in said and "turn --cloud-masks off" in said
    assert not (tmp_path / "r.tif").exists()
    res = _run("detect-changes", path, "--ref", ref, "-o", tmp_path / "r.tif", "--no-cloud-masks")
    assert res.exit_code == 0, res.output


def test_an_l1c_product_s_msk_classi_is_its_cloud_mask(tmp_path):
    """An L1C product of processing baseline 04.00 on: QI_DATA/MSK_CLASSI_B00.jp2 (60 m; opaque clouds, cirrus,
    snow, one band each) flags the LR pixels under it (each 60 m pixel six 10 m ones)."""
    classi = np.zeros((3, 7, 8), np.uint8)
    classi[0, 1:3, 2:4] = 1  # opaque cloud: LR rows 6-17, columns 12-23
    classi[1, 4, 6] = 1  # cirrus: rows 24-29, columns 36-41
    safe, _ = l1c_product(tmp_path, classi=classi)
    comp = composite(str(safe))
    assert comp.mask is not None and "MSK_CLASSI" in comp.mask.name and comp.mask.href in comp.files
    ref = tmp_path / "ref.tif"
    _same_scene_reference(safe, ref)
    out = tmp_path / "c.tif"
    res = _run("detect-changes", safe, "--ref", ref, "-o", out, "--refine", "1", "--json")
    assert res.exit_code == 0, res.output
    assert "opaque cloud, cirrus, snow or ice" in json.loads(res.stdout)["sensor_mask"]["masks"][0]["flagged"]
    with rasterio.open(out) as ds:
        changes = ds.read(1)
    expected = np.zeros((40, 48), bool)
    expected[6:18, 12:24] = True
    expected[24:30, 36:42] = True
    assert (changes[expected] == 1).all() and (changes[~expected] == 1).mean() < 0.01


def test_co_registration_leaves_out_what_the_cloud_masks_flag(tmp_path):
    """An L2A LR whose SCL flags a textured cloud over 70% of it, against a clear reference whose georeference is
    20 m (2 LR pixels) east of the LR's: measured on all pixels the cloud hides the match (no shift applied),
    measured on the clear ones the offset is found; with too little clear ground it is said why."""
    scl = np.full((48, 64), 4, np.uint8)
    scl[:, 20:] = 9
    safe, _ = l2a_product(tmp_path, width=128, height=96, scl=scl)
    _same_scene_reference(safe, tmp_path / "clear.tif")
    with rasterio.open(tmp_path / "clear.tif") as src:
        clear, profile = src.read(), src.profile
    profile["transform"] = src.transform @ Affine.translation(2, 0)  # 20 m east
    with rasterio.open(tmp_path / "ref.tif", "w", **profile) as dst:
        dst.write(clear)
    granule = next((safe / "GRANULE").iterdir()) / "IMG_DATA" / "R10m"
    rng = np.random.default_rng(3)
    cloud = rng.uniform(0.3, 0.9, (96, 88))  # bright, and textured in its own way
    for band in BANDS_10M:
        path = next(granule.glob(f"*_{band}_10m.jp2"))
        with rasterio.open(path) as src:
            dn = src.read(1)
        dn[:, 40:] = np.round(cloud * 10000 + 1000).astype(np.uint16)
        _write(path, dn, 10.0)

    def coregistration(*extra):
        res = _run("detect-changes", safe, "--ref", tmp_path / "ref.tif", "-o", tmp_path / "c.tif", "--overwrite",
                   "--json", *extra)
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout)["coregistration"]

    blind = coregistration("--no-cloud-masks")
    assert not blind["applied"], blind
    masked = coregistration()
    assert masked["applied"] and abs(masked["offset_lr_px"][0] - 2) < 0.1 and abs(masked["offset_lr_px"][1]) < 0.1
    scl[:, 5:] = 9  # 10 clear LR columns: too few to compare
    l2a_product(tmp_path / "narrow", width=128, height=96, scl=scl)
    narrow = next((tmp_path / "narrow").iterdir())
    res = _run("detect-changes", narrow, "--ref", tmp_path / "ref.tif", "-o", tmp_path / "n.tif", "--json")
    assert res.exit_code == 0, res.output
    reason = json.loads(res.stdout)["coregistration"]["reason"]
    assert reason == "too small an overlap to estimate a shift once the pixels the cloud masks flag are left out"


def _box(col0: int, row0: int, col1: int, row1: int) -> list[tuple[float, float]]:
    """The map corners of the fixture products' 10 m pixels [col0, col1) x [row0, row1)."""
    x0, y0 = 300000.0 + 10 * col0, 5600040.0 - 10 * row0
    x1, y1 = 300000.0 + 10 * col1, 5600040.0 - 10 * row1
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def test_an_older_l1c_product_s_msk_clouds_polygons_are_its_cloud_mask(tmp_path):
    """Before processing baseline 04.00 an L1C product's cloud mask is QI_DATA/MSK_CLOUDS_B00.gml, polygons of
    opaque clouds and cirrus: the LR pixels whose centres they hold are flagged (a hole in a cloud is not), no file
    is written beside the product's (OGR's .gfs), and in a zip it is read as well."""
    gml = msk_clouds_gml([("OPAQUE", [_box(12, 6, 24, 18), _box(16, 10, 20, 14)]), ("CIRRUS", [_box(36, 24, 42, 30)])])
    safe, _ = l1c_product(tmp_path, baseline="02.06", gml=gml)
    comp = composite(str(safe))
    assert comp.mask is not None and "MSK_CLOUDS" in comp.mask.name and comp.mask.href in comp.files
    ref = tmp_path / "ref.tif"
    _same_scene_reference(safe, ref)
    before = sorted(p for p in safe.rglob("*"))
    expected = np.zeros((40, 48), bool)
    expected[6:18, 12:24] = True
    expected[10:14, 16:20] = False
    expected[24:30, 36:42] = True
    shutil.make_archive(str(tmp_path / "zipped" / safe.name), "zip", safe.parent, safe.name)
    for product in (safe, tmp_path / "zipped" / f"{safe.name}.zip"):
        out = tmp_path / "c.tif"
        res = _run("detect-changes", product, "--ref", ref, "-o", out, "--refine", "1", "--json", "--overwrite")
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["sensor_mask"]["masks"][0]["flagged"] == "opaque cloud, cirrus"
        with rasterio.open(out) as ds:
            changes = ds.read(1)
        assert (changes[expected] == 1).all() and (changes[~expected] == 0).all()
    assert sorted(p for p in safe.rglob("*")) == before


def test_msk_clouds_without_polygons_old_names_and_broken_files(tmp_path):
    """A GML mask without members flags nothing (and is still the product's mask); a product of the format before
    December 2016 names it S2A_OPER_MSK_CLOUDS_..._B00_MSIL1C.gml; a baseline-04.00 product reads MSK_CLASSI, not
    the GML; a GML that is not one fails in one sentence that says how to go without it."""
    safe, _ = l1c_product(tmp_path / "empty", baseline="02.06", gml=msk_clouds_gml([]))
    ref = tmp_path / "ref.tif"
    _same_scene_reference(safe, ref)
    res = _run("detect-changes", safe, "--ref", ref, "-o", tmp_path / "e.tif", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["sensor_mask"]["masks"][0]["source"].endswith("(MSK_CLOUDS, polygons)")
    with rasterio.open(tmp_path / "e.tif") as ds:
        assert (ds.read(1) == 1).mean() < 0.01
    old_name = "S2A_OPER_MSK_CLOUDS_MPS__20160129T090042_A003148_T33UUB_B00_MSIL1C.gml"
    safe, _ = l1c_product(tmp_path / "old", baseline="02.01", gml=msk_clouds_gml([("OPAQUE", [_box(0, 0, 8, 8)])]),
                          gml_name=old_name)
    comp = composite(str(safe))
    assert comp.mask is not None and comp.mask.href.endswith(old_name)
    safe, _ = l1c_product(tmp_path / "new", baseline="04.00", gml=msk_clouds_gml([("OPAQUE", [_box(0, 0, 8, 8)])]))
    comp = composite(str(safe))
    assert comp.mask is None and "MSK_CLASSI" in (comp.mask_unused or "")
    safe, _ = l1c_product(tmp_path / "bad", baseline="03.01", gml="not a mask\n")
    out = tmp_path / "b.tif"
    res = _run("detect-changes", safe, "--ref", ref, "-o", out)
    assert res.exit_code == 2 and not out.exists()
    assert "cloud mask" in res.output and "MSK_CLOUDS_B00.gml cannot be read" in res.output
    assert "(not recognized as being in a supported file format); or turn --cloud-masks off" in res.output


def test_broken_or_cut_off_msk_clouds_fail_in_one_sentence_and_degrees_are_drawn(tmp_path):
    """A GML mask with a broken polygon or cut off mid-file was taken as "no cloud" or crashed; one in longitude
    and latitude was drawn at 20-degree pixels (nothing flagged)."""
    from pyproj import Transformer

    good = msk_clouds_gml([("OPAQUE", [_box(12, 6, 24, 18)])])
    ref = tmp_path / "ref.tif"
    broken = good.replace('srsDimension="2">', 'srsDimension="2">x ')
    cut = good[: good.index("<gml:posList")] + "\n"
    for name, gml, says in (("broken", broken, "cannot be read"), ("cut", cut, "holds no polygons with their mask")):
        safe, _ = l1c_product(tmp_path / name, baseline="02.06", gml=gml)
        if not ref.exists():
            _same_scene_reference(safe, ref)
        out = tmp_path / f"{name}.tif"
        res = _run("detect-changes", safe, "--ref", ref, "-o", out)
        assert res.exit_code == 2 and not out.exists(), res.output
        assert says in res.output and "--cloud-masks off to go without it" in res.output  # (the path elided)
    to_degrees = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    ring = [to_degrees.transform(x, y)[::-1] for x, y in _box(12, 6, 24, 18)]  # (GML: EPSG 4326 is lat, lon)
    degrees = msk_clouds_gml([("OPAQUE", [ring])], epsg=4326).replace("EPSG:8.7:4326", "EPSG::4326")
    safe, _ = l1c_product(tmp_path / "degrees", baseline="02.06", gml=degrees)
    res = _run("detect-changes", safe, "--ref", ref, "-o", tmp_path / "d.tif", "--refine", "1")
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "d.tif") as ds:
        changes = ds.read(1)
    assert (changes[7:17, 13:23] == 1).all()  # (inside the box, clear of its edges' rounding)


def test_the_reference_s_own_cloud_mask_does_not_pull_its_co_registration(tmp_path):
    """Found by review: a cloud the reference's QA_PIXEL flags was left out of the LR's compared pixels only, so each
    trial shift moved it onto them: the offset came out 0.1-0.2 LR px off (the same cloud as nodata: exact)."""
    from scipy import ndimage

    rng = np.random.default_rng(5)
    texture = ndimage.gaussian_filter(np.kron(rng.standard_normal((60, 60)), np.ones((4, 4))), 3)  # LR-scale detail
    hr = np.stack([smooth_field(1, 240, 240, seed=s)[0] for s in (1, 2, 3)]) * 4000 + 8000 + 6000 * texture
    lr = hr.reshape(3, 60, 4, 60, 4).mean(axis=(2, 4))
    stem = "LC08_L2SP_016039_20200101_20200102_02_T1"

    def folder(name, data, res, moved, qa):
        path = tmp_path / name
        path.mkdir()
        h, w = qa.shape
        profile = dict(driver="GTiff", width=w, height=h, count=1, dtype="uint16", crs="EPSG:32617",
                       transform=from_origin(500000.0 + moved[0], 3500000.0 + moved[1], res, res))
        for i, band in enumerate(("SR_B2", "SR_B3", "SR_B4")):
            with rasterio.open(path / f"{stem}_{band}.TIF", "w", **profile) as ds:
                ds.write(np.clip(data[i], 1, 65000).astype(np.uint16), 1)
        with rasterio.open(path / f"{stem}_QA_PIXEL.TIF", "w", **profile) as ds:
            ds.write(qa.astype(np.uint16), 1)
        return path

    yy, xx = np.mgrid[0:240, 0:240]
    cloud = ((yy - 80) ** 2 + (xx - 150) ** 2) < 75 ** 2  # about a third of the reference
    ref = np.where(cloud, 30000 + 4000 * smooth_field(1, 240, 240, seed=9)[0], hr)
    lr_folder = folder("lr", lr, 120.0, (0, 0), np.zeros((60, 60)))
    ref_folder = folder("ref", ref, 30.0, (150.0, -60.0), np.where(cloud, 1 << 3, 0))
    res = _run("upscale", lr_folder, "--ref", ref_folder, "-x", "4", "-m", "reference-paste", "--cd", "none", "-o",
               tmp_path / "o.tif", "--json")
    assert res.exit_code == 0, res.output
    found = json.loads(res.stdout)["coregistration"]
    assert found["applied"] and np.allclose(found["offset_lr_px"], [1.25, 0.5], atol=0.05), found


@pytest.mark.parametrize("scale, shift, moved", [(4, (1.5, -0.75), True), (8, (1.5, -0.75), False),
                                                 (4, (0.0, 0.0), False), (8, (0.0, 0.0), False)])
def test_small_flagged_clouds_in_the_reference_neither_hide_nor_fake_its_offset(tmp_path, scale, shift, moved):
    """Small white clouds over a sixth of the reference, flagged in its QA_PIXEL (at twice its pixel size, with a few
    flags scattered beside them, and haze a little beyond them). An LR pixel partly under one read brightened (the
    flags were left out only where they covered most of an LR pixel), and the flags' pattern, left out of both images,
    matched best at no shift: a reference 1.5 LR px off read at reliability 0.0 and was not moved back. Moved back
    now on 100 LR px; on 50 LR px the forward model has too few clear pixels to check the estimate (0.28 LR px off
    there), which is not applied; an exactly placed reference is not moved."""
    from scipy import ndimage

    from geosr.sample_scene import sample_paths

    rng = np.random.default_rng(11)
    with rasterio.open(sample_paths()["truth"]) as ds:  # real imagery (Landsat 5 at 30 m), as if 2 m
        hr = ds.read().astype(np.float64) * 40 + 2000
    side = 400
    n = side // scale
    lr = hr.reshape(3, n, scale, n, scale).mean(axis=(2, 4))
    yy, xx = np.mgrid[0:side // 2, 0:side // 2]
    flags = np.zeros((side // 2, side // 2), bool)
    while flags.mean() < 1 / 6:  # disks of 1-4 mask pixels' radius (2-8 reference pixels)
        cy, cx, r = rng.uniform(0, side // 2), rng.uniform(0, side // 2), rng.uniform(1, 4)
        flags |= (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
    cloud = np.kron(flags, np.ones((2, 2)))
    haze = ndimage.gaussian_filter(cloud, 0.5)
    ref = hr * (1 - haze) + 30000 * haze
    flags |= rng.random(flags.shape) < 0.005
    stem = "LC08_L2SP_016039_20200101_20200102_02_T1"

    def folder(name, data, res, at, qa, qa_res):
        path = tmp_path / name
        path.mkdir()
        h, w = data.shape[1:]
        profile = dict(driver="GTiff", width=w, height=h, count=1, dtype="uint16", crs="EPSG:32617",
                       transform=from_origin(500000.0 + at[0], 3500000.0 + at[1], res, res))
        for i, band in enumerate(("SR_B4", "SR_B3", "SR_B2")):
            with rasterio.open(path / f"{stem}_{band}.TIF", "w", **profile) as ds:
                ds.write(np.clip(data[i], 1, 65000).astype(np.uint16), 1)
        profile.update(width=qa.shape[1], height=qa.shape[0],
                       transform=from_origin(500000.0 + at[0], 3500000.0 + at[1], qa_res, qa_res))
        with rasterio.open(path / f"{stem}_QA_PIXEL.TIF", "w", **profile) as ds:
            ds.write(qa.astype(np.uint16), 1)
        return path

    lr_res = 2.0 * scale
    lr_folder = folder("lr", lr, lr_res, (0, 0), np.full((n, n), 21824), lr_res)
    ref_folder = folder("ref", ref, 2.0, (shift[0] * lr_res, -shift[1] * lr_res), np.where(flags, 22280, 21824), 4.0)
    res = _run("upscale", lr_folder, "--ref", ref_folder, "-x", scale, "-m", "reference-paste", "--cd", "none", "-o",
               tmp_path / "o.tif", "--json")
    assert res.exit_code == 0, res.output
    found = json.loads(res.stdout)["coregistration"]
    if moved:
        assert found["applied"] and np.allclose(found["offset_lr_px"], shift, atol=0.05), found
    else:
        assert not found["applied"] and found["reason"], found
        if shift == (0.0, 0.0):
            assert np.abs(found["offset_lr_px"]).max() < 0.1, found


def test_an_output_named_as_a_cloud_mask_in_a_band_folder_is_refused(tmp_path):
    """`upscale FOLDER -o FOLDER/scene_x2_QA_PIXEL.tif` was written: from then on the folder held two cloud masks,
    and none was used (found in review). Refused as an output named with a band is; an SCL in R20m beside the R10m
    folder read too."""
    from geosr.io.sources import joins_band_folder

    qa = np.full((40, 48), 21824, np.uint16)
    _landsat_folder(tmp_path / "l9", qa)
    res = _run("upscale", tmp_path / "l9", "-x", "2", "-m", "bicubic", "-o", tmp_path / "l9" / "scene_x2_QA_PIXEL.tif")
    assert res.exit_code == 2 and "is named as a cloud mask where" in " ".join(res.output.split()), res.output
    assert not (tmp_path / "l9" / "scene_x2_QA_PIXEL.tif").exists()
    assert composite(str(tmp_path / "l9")).mask is not None
    safe, _ = l2a_product(tmp_path / "s2", scl=np.full((20, 24), 4, np.uint8))
    r10m = next(safe.glob("GRANULE/*/IMG_DATA/R10m"))
    assert joins_band_folder(str(r10m), r10m.parent / "R20m" / "out_SCL_20m.tif")
    assert not joins_band_folder(str(r10m), tmp_path / "out_SCL_20m.tif")


def test_info_reads_a_product_s_cloud_mask_as_part_of_it(tmp_path):
    """`geosr info -q --read-all` passed a product whose SCL file was broken, while an upscale with a reference then
    failed on it (found in review): the mask is part of the input, read with its bands."""
    safe, _ = l2a_product(tmp_path / "p", scl=np.full((20, 24), 4, np.uint8))
    assert _run("info", "-q", "--read-all", safe).exit_code == 0
    next(safe.rglob("*_SCL_20m.jp2")).write_text("junk")
    for extra in ((), ("--read-all",)):
        res = _run("info", "-q", *extra, safe)
        assert res.exit_code == 2 and "its cloud mask" in res.output and "_SCL_20m.jp2 cannot be read" in \
            " ".join(res.output.split()), res.output
        assert "cloud-masks" not in res.output  # (an option info does not have)
