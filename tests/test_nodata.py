"""GDAL's nodata semantics (issue 20.5): a pixel has no data only where every selected band has none; per-band
nodata values; a one-band gap filled, not blanked; the output's nodata share reported."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rasterio

from conftest import make_raster, smooth_field
from geosr import upscale
from geosr.io.rasters import band_data


def test_a_pixel_is_nodata_only_where_every_band_is():
    data = np.array([[[0, 5, 0, 7]], [[0, 0, 9, 8]], [[np.nan, 3, 0, 2]]], dtype=np.float64)  # (3, 1, 4)
    out, valid = band_data(data, np.ones((1, 4), bool), [0, 0, 0])
    assert valid.tolist() == [[False, True, True, True]]
    # for statistics, a band without data in a valid pixel reads that band's mean where it has data, never its
    # nodata value (the model reads the middle of the band's stretch there, and the output is nodata in that band)
    assert out[1, 0, 1] == pytest.approx(np.mean([9, 8])) and out[0, 0, 2] == pytest.approx(np.mean([5, 7]))
    assert np.isfinite(out[:, valid]).all()
    # per-band nodata values: band 2's nodata is 9, not 0
    _, valid2 = band_data(data[:2], np.ones((1, 4), bool), [0, 9])
    assert valid2.tolist() == [[True, True, False, True]]


def test_staggered_gaps_keep_their_pixels_and_the_share_is_reported(raster_factory, tmp_path):
    """Landsat-7-like stripes offset between bands: before, any band at nodata blanked the pixel."""
    rng = np.random.default_rng(0)
    arr = rng.integers(20, 200, (3, 32, 32)).astype(np.uint8)
    for b in range(3):
        arr[b, :, 4 + b : 32 : 8] = 0  # a stripe per band, each offset by one column
    arr[:, 24:, :] = 0  # a truly empty corner: all bands
    src = raster_factory("l7.tif", arr, nodata=0)
    out = tmp_path / "out.tif"
    r = upscale(src, output=out, scale=2, model="bicubic")
    assert r.nodata_share == pytest.approx(8 / 32)
    with rasterio.open(out) as ds:
        valid = ds.dataset_mask() > 0
        assert float(ds.tags()["GEOSR_NODATA_SHARE"]) == pytest.approx(0.25)
    assert valid[:48].all() and not valid[48:].any()


def test_a_band_without_data_is_nodata_in_that_band_and_the_same_in_every_window(raster_factory, tmp_path):
    """Water where red and green read 0 (their nodata) and blue does not: the pixel is kept, red and green are
    nodata there in the output as in the LR (before: each window's band mean, written as data, and so a patchwork
    that changed with the window size), and no window boundary shows in the pixels next to it."""
    from tests.conftest import smooth_field

    arr = (smooth_field(3, 48, 48, 1) * 150 + 50).astype(np.uint8)
    arr[:2, 10:30, 5:40] = 0  # red and green without data, blue has some
    src = raster_factory("bay.tif", arr, nodata=0)
    runs = {}
    for window in (None, 24):
        out = tmp_path / f"o{window}.tif"
        upscale(src, output=out, scale=2, model="lite", **({"window": window} if window else {}))
        with rasterio.open(out) as ds:
            runs[window] = ds.read().astype(int)
            assert (ds.dataset_mask() > 0).all()  # every pixel keeps its data (blue)
    got = runs[None]
    gap = np.zeros((48, 48), bool)
    gap[10:30, 5:40] = True
    hr_gap = np.kron(gap, np.ones((2, 2), bool)).astype(bool)
    assert (got[:2][:, hr_gap] == 0).all() and (got[2][hr_gap] > 0).all()
    assert (got[:, ~hr_gap] > 0).all()
    assert np.abs(runs[None] - runs[24]).max() <= 2  # the same whatever the windows
    import json

    stac = json.loads((tmp_path / "oNone.stac.json").read_text())  # each band's own share of valid pixels
    shares = [b["statistics"]["valid_percent"] for b in stac["assets"]["data"]["raster:bands"]]
    assert shares[2] == 100.0 and shares[0] == shares[1] == pytest.approx(100 * (1 - 20 * 35 / 48 / 48), abs=0.5)


@pytest.mark.parametrize("dtype, nodata", [("uint8", 0), ("float32", float("nan"))])
def test_valid_pixels_beside_nodata_keep_their_values(raster_factory, tmp_path, dtype, nodata):
    """A flat scene with a hole (a cloud mask, a scene's collar): the model read the hole as the middle of the
    stretch, and every kernel pulled the valid pixels beside it towards that value (240 fell to 200 at the edge
    with bicubic, a rim along every hole). Now the valid pixels stay flat, in every window layout."""
    arr = np.full((3, 40, 48), 240 if dtype == "uint8" else 0.3, dtype)
    arr[:, :, 40:] = 40 if dtype == "uint8" else 0.05  # a second level, so that the scene's stretch has a middle
    arr[:, 15:25, 20:30] = nodata
    lr = raster_factory(f"hole_{dtype}.tif", arr, nodata=nodata)
    outs = []
    for model, window in (("bicubic", None), ("lanczos", None), ("bicubic", 48)):
        out = tmp_path / f"{model}_{window}.tif"
        upscale(lr, scale=4, model=model, window=window, output=out)
        with rasterio.open(out) as ds:
            data, valid = ds.read(), ds.dataset_mask() > 0
        assert not valid[60:100, 80:120].any() and valid.sum() == 160 * 192 - 40 * 40
        near = valid & (np.arange(192) < 144)[None]  # around the hole, away from the second level
        np.testing.assert_allclose(data[:, near], arr[0, 0, 0], atol=1e-6 if dtype != "uint8" else 0)
        outs.append(data)
    np.testing.assert_array_equal(outs[0], outs[2])


def test_valid_float_pixels_near_the_nodata_value_do_not_read_as_it(raster_factory, tmp_path):
    """Float32 with nodata -9999 and valid data on both sides of it (-9999.5, -9998.5): output pixels landing within
    GDAL's tolerance of the nodata value (ARE_REAL_EQUAL: a few float32 epsilons), the moved exact hits (-9998.999, 1
    ulp) among them, read as nodata in GDAL, rasterio and QGIS: 73 valid pixels lost (found in review). The mask is
    the LR's validity (a value within the tolerance moves 0.0095 away from the nodata value)."""
    arr = np.where(np.random.default_rng(0).random((1, 48, 48)) > 0.5, -9998.5, -9999.5).astype(np.float32)
    arr[:, 40:, 40:] = -9999
    lr = raster_factory("near.tif", arr, nodata=-9999)
    out = tmp_path / "near_x4.tif"
    upscale(lr, scale=4, model="bicubic", output=out)
    with rasterio.open(out) as ds:
        data, valid = ds.read(1), ds.dataset_mask() > 0
    expected = np.ones((192, 192), bool)
    expected[160:, 160:] = False
    assert (valid == expected).all(), int((valid != expected).sum())
    near = valid & (np.abs(data.astype(np.float64) + 9999) < 0.02)
    assert near.any() and not (data[valid] == np.float32(-9999)).any()  # (the case is met: valid pixels near it)


def test_bands_with_different_nodata_values_are_warned_about(tmp_path):
    """A VRT whose bands declare nodata 0, 2000 and 65535: the output holds one value (GeoTIFF), which the run now
    says instead of changing the values silently."""
    src = make_raster(tmp_path / "src.tif", (smooth_field(3, 20, 24) * 60000 + 100).astype(np.uint16))
    bands = "".join(
        f'<VRTRasterBand dataType="UInt16" band="{b}"><NoDataValue>{nd}</NoDataValue><SimpleSource>'
        f'<SourceFilename relativeToVRT="1">src.tif</SourceFilename><SourceBand>{b}</SourceBand></SimpleSource>'
        "</VRTRasterBand>" for b, nd in ((1, 0), (2, 2000), (3, 65535)))
    with rasterio.open(src) as ds:
        gt = ", ".join(map(str, ds.transform.to_gdal()))
        wkt = ds.crs.to_wkt()
    vrt = tmp_path / "lr.vrt"
    vrt.write_text(f'<VRTDataset rasterXSize="24" rasterYSize="20"><SRS>{wkt}</SRS><GeoTransform>{gt}</GeoTransform>'
                   f"{bands}</VRTDataset>")
    result = upscale(vrt, output=tmp_path / "o.tif", scale=2, model="bicubic")
    assert any("different nodata values (band 1 0.0, band 2 2000.0, band 3 65535.0)" in w for w in result.warnings)
    plain = upscale(src, output=tmp_path / "p.tif", scale=2, model="bicubic")
    assert not plain.warnings


def test_the_output_declares_the_selected_bands_nodata_not_band_1s(tmp_path):
    """The output's nodata was band 1's: with band 1 declaring none and the selected bands 2-4 declaring 0 (a VRT,
    a STAC item, band files), the LR's nodata rows were written as valid, made-up pixels."""
    data = (smooth_field(4, 20, 22) * 1000 + 100).astype(np.uint16)
    data[:, :4] = 0
    make_raster(tmp_path / "src.tif", data)
    bands = "".join(
        f'<VRTRasterBand dataType="UInt16" band="{b}">{"" if b == 1 else "<NoDataValue>0</NoDataValue>"}'
        f'<SimpleSource><SourceFilename relativeToVRT="1">src.tif</SourceFilename><SourceBand>{b}</SourceBand>'
        "</SimpleSource></VRTRasterBand>" for b in (1, 2, 3, 4))
    vrt = tmp_path / "lr.vrt"
    vrt.write_text('<VRTDataset rasterXSize="22" rasterYSize="20"><SRS>EPSG:32633</SRS><GeoTransform>500000, 10, 0, '
                   f"5000000, 0, -10</GeoTransform>{bands}</VRTDataset>")
    result = upscale(vrt, output=tmp_path / "o.tif", scale=2, model="bicubic", bands="2,3,4")
    with rasterio.open(result.output) as ds:
        assert ds.nodata == 0 and not ds.read(masked=True)[:, 8:].mask.any()
        assert ds.read(masked=True)[:, :8].mask.all()
    assert result.nodata_share == pytest.approx(0.2) and not result.warnings


def test_a_nan_or_far_away_nodata_is_said_as_such_and_warns_nothing(tmp_path):
    """`geosr info --json` gave a NaN nodata as null, which reads "no nodata" (the STAC sidecar says "nan"); a
    float32 nodata of -3.4e38 beside infinite pixels printed numpy's "overflow encountered in cast" on the terminal;
    the summary said "1 bands"."""
    import json
    import warnings

    from typer.testing import CliRunner

    from geosr.cli.app import app
    from geosr.conditioning.radiometry import Stretch

    data = smooth_field(1, 24, 24).astype(np.float32)
    data[0, :4, :4] = np.nan
    nan = make_raster(tmp_path / "nan.tif", data, nodata=float("nan"))
    res = CliRunner().invoke(app, ["info", str(nan), "--json"])
    described = json.loads(res.stdout)["files"][0]
    assert res.exit_code == 0 and described["nodata"] == "nan" and described["bands"][0]["nodata"] == "nan"
    far = data.copy()
    far[0, :4, :4] = -3.4e38
    far[0, 5, 5], far[0, 6, 6] = np.inf, -np.inf
    far_path = make_raster(tmp_path / "far.tif", far, nodata=-3.4e38)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Stretch((0.0,), (1.0,)).forward(far.astype(np.float64))
    res = CliRunner().invoke(app, ["upscale", str(far_path), "-x", "2", "-m", "bicubic", "-o", str(tmp_path / "o.tif")])
    assert res.exit_code == 0 and "RuntimeWarning" not in res.output, res.output
    assert "px x 1 band float32" in " ".join(res.output.split())
    with rasterio.open(tmp_path / "o.tif") as ds:  # the infinite pixels are nodata, as the data contract says
        assert not ds.dataset_mask()[10:14, 10:14].all() and ds.dataset_mask()[:, 20:].all()


def test_a_float32_output_beside_the_type_s_largest_values_is_clipped_not_infinite(tmp_path):
    """Found by review: a float32 LR holding -3.4e38 (an undeclared nodata) overshot past float32's range under
    bicubic: the output held valid -inf pixels and the run crashed (exit 1) in the STAC item's histogram."""
    data = (np.sin(np.arange(48 * 48).reshape(1, 48, 48) / 7.0) * 100).astype(np.float32)
    data[0, 20:24, 20:24] = np.float32(-3.4e38)
    lr = make_raster(tmp_path / "lr.tif", data)
    out = tmp_path / "o.tif"
    upscale(lr, output=out, scale=2, model="bicubic")
    with rasterio.open(out) as ds:
        got = ds.read(1, masked=True)
    assert np.isfinite(got.filled(0)).all() and got.min() >= np.finfo(np.float32).min
    assert (tmp_path / "o.stac.json").is_file()
    raw = (tmp_path / "o.stac.json").read_text()
    assert "Infinity" not in raw and "NaN" not in raw  # (JSON has neither)


@pytest.mark.parametrize("dtype, nodata", [("int64", -9999), ("uint64", 9999)])
def test_a_64_bit_integer_output_keeps_its_nodata(raster_factory, tmp_path, dtype, nodata):
    """An int64 output small enough to be assembled in memory was written without its nodata value (GDAL's MEM
    driver does not hand it on to the COG's copy): its nodata pixels were ordinary values (found in review)."""
    data = (smooth_field(1, 20, 24, 3) * 100 + 1).astype(dtype)
    data[0, :3, :3] = nodata
    lr = raster_factory("lr.tif", data, nodata=nodata)
    upscale(str(lr), output=str(tmp_path / "o.tif"), scale=2, model="bicubic")
    with rasterio.open(tmp_path / "o.tif") as ds:
        assert ds.nodata == nodata and ds.dtypes[0] == dtype
        out = ds.read(1)
    assert (out[:6, :6] == nodata).all() and (out[6:, 6:] != nodata).all()


@pytest.mark.parametrize("dtype, nodata", [("int64", np.iinfo("int64").min), ("int64", -(2**60) - 1),
                                           ("uint64", np.iinfo("uint64").max)])  # (rasterio reads it as None)
def test_a_64_bit_nodata_beyond_float64_s_integers_is_kept_as_a_mask(tmp_path, dtype, nodata):
    """An int64 LR with nodata INT64_MIN was written with nodata -9 (rasterio hands it to GDAL as a double, kept as
    text a few digits long): its nodata pixels became data (found in review). Such a nodata is a mask band now."""
    import rasterio.shutil

    data = (smooth_field(1, 20, 24, 3) * 100 + 1).astype(dtype)
    data[0, :, :4] = nodata
    make_raster(tmp_path / "raw.tif", data)
    vrt = tmp_path / "lr.vrt"  # GDAL's own copy of a VRT declaring it writes it exactly (rasterio's open would not)
    vrt.write_text(f'<VRTDataset rasterXSize="24" rasterYSize="20"><SRS>EPSG:32633</SRS><GeoTransform>500000, 10, 0, '
                   f'5000000, 0, -10</GeoTransform><VRTRasterBand dataType="{dtype.capitalize()}" band="1">'
                   f'<NoDataValue>{nodata}'
                   '</NoDataValue><SimpleSource><SourceFilename relativeToVRT="1">raw.tif</SourceFilename>'
                   '<SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>')
    rasterio.shutil.copy(str(vrt), str(tmp_path / "lr.tif"), driver="GTiff")
    with rasterio.open(tmp_path / "lr.tif") as ds:
        assert (ds.dataset_mask()[:, :4] == 0).all()  # the input as meant
    upscale(str(tmp_path / "lr.tif"), output=str(tmp_path / "o.tif"), scale=2, model="bicubic")
    with rasterio.open(tmp_path / "o.tif") as ds:
        valid = ds.dataset_mask() > 0
        assert ds.dtypes[0] == dtype
    assert not valid[:, :8].any() and valid[:, 8:].all()


def test_a_flat_band_of_large_values_keeps_its_values(tmp_path):
    """A band of one value beyond 2^53 (1e17 in float64, 2^60 in int64) was stretched over lo +- 0.5, which float64
    rounds to lo itself: a division by zero made every output pixel NaN, written as nodata (exit 0, a nodata share
    of 0)."""
    for dtype, value in (("float64", 1e17), ("int64", 2 ** 60)):
        lr = make_raster(tmp_path / f"{dtype}.tif", np.full((1, 8, 8), value, dtype), nodata=-9999)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy's "invalid value encountered in divide" was printed, even with -q
            upscale(lr, output=tmp_path / f"{dtype}_x2.tif", scale=2, model="bicubic")
        with rasterio.open(tmp_path / f"{dtype}_x2.tif") as ds:
            assert np.all(ds.read(1) == np.array(value, dtype)), (dtype, np.unique(ds.read(1)))


def test_64_bit_integers_beyond_the_type_are_clipped_not_wrapped(tmp_path):
    """INT64_MAX came out as INT64_MIN (and UINT64_MAX as 0): the clip in float64 rounded the maximum up to 2^63."""
    for dtype in ("int64", "uint64"):
        top = np.iinfo(dtype).max
        data = np.full((1, 8, 8), 1000, dtype)
        data[0, 2:6, 2:6] = top
        lr = make_raster(tmp_path / f"{dtype}.tif", data)
        upscale(lr, output=tmp_path / f"{dtype}_x2.tif", scale=2, model="bicubic")
        with rasterio.open(tmp_path / f"{dtype}_x2.tif") as ds:
            out = ds.read(1)
        assert out[8, 8] > top // 2, (dtype, out[8, 8])  # (was the type's minimum, or 0)


def test_pixels_a_band_s_own_mask_hides_stay_nodata(tmp_path):
    """Per-band masks (a VRT's <MaskBand>, an external .msk of band masks) were not counted as a mask: the masked
    pixels were written as data, the output with neither nodata nor mask."""
    from rasterio.transform import from_origin

    lr = make_raster(tmp_path / "lr.tif", np.full((3, 16, 16), 100, np.uint8))
    cut = np.full((1, 16, 16), 255, np.uint8)
    cut[0, 4:10, 4:10] = 0
    mask = make_raster(tmp_path / "mask.tif", cut)
    with rasterio.open(lr) as ds:
        srs = ds.crs.to_wkt()
    t = from_origin(500000.0, 5000000.0, 10.0, 10.0)
    bands = "".join(
        f'<VRTRasterBand dataType="Byte" band="{b}"><SimpleSource><SourceFilename relativeToVRT="0">{lr}'
        f'</SourceFilename><SourceBand>{b}</SourceBand></SimpleSource><MaskBand><VRTRasterBand dataType="Byte">'
        f'<SimpleSource><SourceFilename relativeToVRT="0">{mask}</SourceFilename><SourceBand>1</SourceBand>'
        '</SimpleSource></VRTRasterBand></MaskBand></VRTRasterBand>' for b in (1, 2, 3))
    vrt = tmp_path / "masked.vrt"
    vrt.write_text(f'<VRTDataset rasterXSize="16" rasterYSize="16"><SRS>{srs}</SRS><GeoTransform>{t.c},{t.a},0,{t.f},'
                   f'0,{t.e}</GeoTransform>{bands}</VRTDataset>')
    upscale(str(vrt), output=tmp_path / "o.tif", scale=2, model="bicubic")
    with rasterio.open(tmp_path / "o.tif") as ds:
        hidden = ds.dataset_mask() == 0
    assert int(hidden.sum()) == 12 * 12 and bool(hidden[8:20, 8:20].all())


@pytest.mark.parametrize("per_band", [False, True])
def test_gdal_nodata_values_item_is_not_carried(raster_factory, tmp_path, per_band):
    """Found in review: GDAL's NODATA_VALUES item (an RGB nodata colour: from a PNG's transparent colour, or
    ``gdal_edit -mo``) was copied into the output with the rest of the LR's metadata, where GDAL reads the mask
    from it: with per-band nodata beside it, the output's empty pixels read as data (0 masked of 400); alone, its
    read-only mask failed the mask band's write (internal error, exit 1)."""
    arr = (smooth_field(3, 40, 40, 2) * 150 + 50).astype(np.uint8)
    arr[:, :10, :10] = np.array([10, 20, 30], np.uint8)[:, None, None]
    src = raster_factory("in.tif", arr, **({"nodata": 10} if per_band else {}))
    with rasterio.open(src, "r+") as ds:
        ds.update_tags(NODATA_VALUES="10 20 30", SENSOR="kept")
    with rasterio.open(src) as ds:
        assert int((ds.dataset_mask() == 0).sum()) == 100
    out = tmp_path / "out.tif"
    upscale(src, output=out, scale=2, model="bicubic")
    with rasterio.open(out) as ds:
        assert "NODATA_VALUES" not in ds.tags() and ds.tags()["SENSOR"] == "kept"
        assert int((ds.dataset_mask() == 0).sum()) == 400
