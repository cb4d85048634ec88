"""Band files read as their product reads them (found in review, session 64): a single Sentinel-2 band file, a
granule's folder inside its ``.SAFE``, a Landsat Collection 2 Level-2 folder with its MTL file, Landsat MSS colours,
a Landsat folder's finer panchromatic band, a Landsat product's tar."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from tests.s2_products import l2a_product
from typer.testing import CliRunner

from geosr.cli.app import app
from geosr.io.rasters import inspect_raster, parse_bands
from geosr.io.sources import composite, files_of

L2SP = "LC09_L2SP_044034_20230612_20230614_02_T1"


def _run(*args) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


def _said(res) -> str:
    return " ".join(res.output.split())


def _tif(path: Path, data: np.ndarray, res: float = 30.0, nodata: float | None = None) -> None:
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1, dtype=data.dtype,
                       crs="EPSG:32610", transform=from_origin(500000, 4200000, res, res), nodata=nodata) as ds:
        ds.write(data, 1)


def _mtl(folder: Path, product: str, sr_bands: range, *, st_band: str | None = "B10", as_json: bool = False,
         mult: str = "2.75E-05") -> Path:
    """A Collection 2 Level-2 MTL file as USGS writes it (the Level-1 rescaling group too, whose REFLECTANCE_MULT
    keys must not be taken for the Level-2 ones)."""
    groups = {
        "PRODUCT_CONTENTS": {"LANDSAT_PRODUCT_ID": product, "PROCESSING_LEVEL": "L2SP"},
        "IMAGE_ATTRIBUTES": {"DATE_ACQUIRED": "2023-06-12", "SCENE_CENTER_TIME": "18:45:12.3456780Z"},
        "LEVEL2_SURFACE_REFLECTANCE_PARAMETERS": {k: v for b in sr_bands for k, v in (
            (f"REFLECTANCE_MULT_BAND_{b}", mult), (f"REFLECTANCE_ADD_BAND_{b}", "-0.200000"))},
        "LEVEL1_RADIOMETRIC_RESCALING": {k: v for b in sr_bands for k, v in (
            (f"REFLECTANCE_MULT_BAND_{b}", "2.0000E-05"), (f"REFLECTANCE_ADD_BAND_{b}", "-0.100000"))},
    }
    if st_band:
        groups["LEVEL2_SURFACE_TEMPERATURE_PARAMETERS"] = {f"TEMPERATURE_MULT_BAND_ST_{st_band}": "0.00341802",
                                                           f"TEMPERATURE_ADD_BAND_ST_{st_band}": "149.0"}
    if as_json:
        path = folder / f"{product}_MTL.json"
        path.write_text(json.dumps({"LANDSAT_METADATA_FILE": groups}))
        return path
    lines = ["GROUP = LANDSAT_METADATA_FILE"]
    for name, values in groups.items():
        lines += [f"  GROUP = {name}"] + [f'    {k} = "{v}"' if not v[0].isdigit() and v[0] != "-" else
                                          f"    {k} = {v}" for k, v in values.items()] + [f"  END_GROUP = {name}"]
    path = folder / f"{product}_MTL.txt"
    path.write_text("\n".join(lines + ["END_GROUP = LANDSAT_METADATA_FILE", "END"]) + "\n")
    return path


def _l2sp(root: Path, *, as_json: bool = False) -> Path:
    folder = root / L2SP
    folder.mkdir(parents=True)
    grad = (np.arange(20)[None, :] * 30 + np.arange(20)[:, None] * 20).astype(np.uint16)
    for b in range(1, 8):
        data = grad + 8000 + 100 * b
        data[:, :3] = 0  # the fill collar (these files declare no nodata)
        _tif(folder / f"{L2SP}_SR_B{b}.TIF", data)
    _tif(folder / f"{L2SP}_ST_B10.TIF", grad + 40000)
    _mtl(folder, L2SP, range(1, 8), as_json=as_json)
    return folder


@pytest.mark.parametrize("as_json", [False, True])
def test_a_landsat_level_2_folder_reads_scale_offset_fill_and_date_from_its_mtl(tmp_path, as_json):
    """A Collection 2 Level-2 folder wrote scale 1 / offset 0 (its surface reflectance is DN * 2.75e-5 - 0.2), kept
    the fill collar as data and dated the output by the processing time: the MTL beside the bands was not read."""
    folder = _l2sp(tmp_path, as_json=as_json)
    comp = composite(str(folder))
    assert "DN 0 read as nodata (Landsat Collection 2 fill)" in comp.note
    assert "surface reflectance and surface temperature scale and offset from" in comp.note
    assert any(f.endswith("_MTL.json" if as_json else "_MTL.txt") for f in files_of(str(folder)))
    out = tmp_path / "o.tif"
    res = _run("upscale", folder, "-x", 2, "-m", "bicubic", "-o", out)
    assert res.exit_code == 0, res.output
    with rasterio.open(out) as ds:
        assert ds.descriptions == ("B4", "B3", "B2") and ds.nodata == 0
        assert ds.scales == (2.75e-05,) * 3 and ds.offsets == (-0.2,) * 3
        assert (ds.read(1)[:, :6] == 0).all() and ds.read(1)[10, 20] > 8400
    item = json.loads(out.with_name("o.stac.json").read_text())
    assert item["properties"]["datetime"] == "2023-06-12T18:45:12Z"
    info = inspect_raster(str(folder))
    thermal = parse_bands("B10", info)[0]
    res = _run("upscale", folder, "--bands", "B10", "-x", 2, "-m", "bicubic", "-o", tmp_path / "t2.tif")
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "t2.tif") as ds:
        assert ds.scales == (0.00341802,) and ds.offsets == (149.0,) and thermal == 8


def test_a_landsat_band_file_given_alone_reads_its_fill_and_its_mtl_scale(tmp_path):
    """A Collection 2 band file alone (as a finer band's message says to give it) was a plain raster: its DN-0 fill
    collar blended into the scene (0, 1828, 7172 across its edge) and its MTL's scale and offset were lost."""
    folder = _l2sp(tmp_path)
    band = folder / f"{L2SP}_SR_B4.TIF"
    comp = composite(str(band))
    assert comp is not None and "DN 0 read as nodata (Landsat Collection 2 fill)" in comp.note
    out = tmp_path / "b4.tif"
    res = _run("upscale", band, "-x", 2, "-m", "bicubic", "-o", out)
    assert res.exit_code == 0, res.output
    with rasterio.open(out) as ds:
        assert ds.nodata == 0 and ds.scales == (2.75e-05,) and ds.offsets == (-0.2,)
        assert (ds.read(1)[:, :6] == 0).all() and (ds.read(1)[:, 6:] > 8400).all()
    assert composite(str(folder / f"{L2SP}_MTL.txt")) is None  # not a band file: as before
    named = tmp_path / f"{L2SP}_SR_B4_x2.tif"  # a geosr output named after one (batch's {stem}_x2): itself
    named.write_bytes(out.read_bytes())
    assert composite(str(named)) is None


def test_a_landsat_level_2_folder_without_its_mtl_takes_usgs_s_published_scale_and_level_1_its_own(tmp_path):
    """A Level-2 folder whose MTL file was not downloaded was read as raw DN (scale 1, offset 0) with nothing said,
    though Collection 2 Level-2 has one published scale and offset for every product."""
    folder = _l2sp(tmp_path)
    (folder / f"{L2SP}_MTL.txt").unlink()
    comp = composite(str(folder))
    assert "Landsat Collection 2 fill" in comp.note
    assert f"surface reflectance and surface temperature scale and offset as USGS publishes them for Collection 2 " \
        f"Level-2 (no {L2SP}_MTL.txt beside the bands)" in comp.note
    out = tmp_path / "o.tif"
    for args in ((), ("--bands", "B10")):
        res = _run("upscale", folder, *args, "-x", 2, "-m", "bicubic", "-o", out, "--overwrite")
        assert res.exit_code == 0, res.output
        with rasterio.open(out) as ds:
            assert (ds.scales, ds.offsets) == (((2.75e-05,) * 3, (-0.2,) * 3) if not args else
                                               ((0.00341802,), (149.0,)))
    assert json.loads(out.with_name("o.stac.json").read_text())["properties"]["datetime"] == "2023-06-12T00:00:00Z"
    _mtl(folder, L2SP, range(1, 8), mult="3.0E-05")  # the file, once there, is read (not a cached reading)
    assert "scale and offset from" in composite(str(folder)).note
    l1 = tmp_path / L2SP.replace("L2SP", "L1TP")
    l1.mkdir()
    for b in range(1, 8):
        _tif(l1 / f"{l1.name}_B{b}.TIF", np.full((20, 20), 9000 + b, np.uint16))
    _mtl(l1, l1.name, range(1, 8))  # Level-1 bands: no Level-2 scale applies to them
    res = _run("upscale", l1, "-x", 2, "-m", "bicubic", "-o", tmp_path / "l1.tif")
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "l1.tif") as ds:
        assert ds.scales == (1.0,) * 3 and ds.offsets == (0.0,) * 3


def test_a_landsat_mtl_value_that_is_no_number_is_one_sentence(tmp_path):
    folder = _l2sp(tmp_path)
    _mtl(folder, L2SP, range(1, 8), mult="NaN")
    res = _run("upscale", folder, "-x", 2, "-m", "bicubic", "-o", tmp_path / "o.tif")
    assert res.exit_code == 2 and "_MTL.txt: its REFLECTANCE_MULT_BAND_" in _said(res), res.output
    assert "not a finite number" in _said(res) and not (tmp_path / "o.tif").exists()
    _mtl(folder, L2SP, range(1, 8), mult="0")  # its fix is in the MTL (it advised gdal_edit.py on the folder)
    res = _run("upscale", folder, "-x", 2, "-m", "bicubic", "-o", tmp_path / "o.tif")
    assert res.exit_code == 2 and "_MTL.txt: its REFLECTANCE_MULT_BAND_" in _said(res), res.output
    assert "is '0', which would read every value of" in _said(res) and "gdal_edit" not in _said(res), _said(res)


def test_a_landsat_mtl_that_scales_some_bands_only_is_refused(tmp_path):
    """An MTL cut off after band 2's keys scaled SR_B2 to reflectance and left SR_B3 and SR_B4 in raw DN, stacked as
    one image (found in review): refused naming the file and the key it lacks; with no band's keys, the files' own
    scale as before (with a note)."""
    folder = _l2sp(tmp_path)
    _mtl(folder, L2SP, range(1, 3))
    res = _run("upscale", folder, "-x", 2, "-m", "bicubic", "-o", tmp_path / "o.tif")
    said = _said(res)
    assert res.exit_code == 2 and "_MTL.txt: gives no REFLECTANCE_MULT_BAND_3 for" in said, res.output
    assert "_SR_B3.TIF but scales the product's other bands" in said and not (tmp_path / "o.tif").exists()
    _mtl(folder, L2SP, range(0), st_band=None)  # no band's keys: the files' own scale, as before
    res = _run("upscale", folder, "-x", 2, "-m", "bicubic", "-o", tmp_path / "o.tif")
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "o.tif") as ds:
        assert ds.scales == (1.0,) * 3


def test_landsat_mss_bands_are_not_written_as_true_colour(tmp_path):
    """An MSS folder (Landsat 4-5: B1 green, B2 red, B3 and B4 near infrared) was read in OLI's names: B4, B3, B2
    by default, written as red, green, blue: two near-infrared bands shown as true colour."""
    for product, bands, colours in (("LM05_L1TP_044034_19920612_20200915_02_T2", (1, 2, 3, 4),
                                     ["green", "red", "nir", "nir"]),
                                    ("LM03_L1TP_047034_19780612_20200915_02_T2", (4, 5, 6, 7),
                                     ["green", "red", "nir", "nir"])):
        folder = tmp_path / product
        folder.mkdir()
        for b in bands:
            _tif(folder / f"{product}_B{b}.TIF", np.full((20, 20), 40 + b, np.uint8))
        info = inspect_raster(str(folder))
        assert parse_bands(None, info) == (1, 2, 3, 4)  # no blue band: every band, not a false "true colour"
        assert parse_bands("red,green", info) == (2, 1)
        out = tmp_path / f"{product}.tif"
        res = _run("upscale", folder, "-x", 2, "-m", "bicubic", "-o", out)
        assert res.exit_code == 0, res.output
        with rasterio.open(out) as ds:
            assert [c.name for c in ds.colorinterp] == colours


def test_a_single_sentinel2_band_file_reads_dn_0_as_nodata_and_inside_its_product_the_product_s_scale(tmp_path):
    """A Sentinel-2 band file given alone was a plain raster: no nodata (the DN-0 collar blended into the scene) and,
    inside its .SAFE, no scale or offset; a granule's R10m folder (what a product of several granules is read as) had
    no scale or offset either, so its reflectance read as DN (1549 where the product reads 0.0549)."""
    safe, _ = l2a_product(tmp_path)
    r10m = next(safe.glob("GRANULE/*/IMG_DATA/R10m"))
    b04 = next(r10m.glob("*_B04_10m.jp2"))
    outs = {}
    for name, source, bands in (("product", safe, ("--bands", "B04")), ("file", b04, ()), ("folder", r10m, ())):
        outs[name] = tmp_path / f"{name}.tif"
        res = _run("upscale", source, *bands, "-x", 2, "-m", "bicubic", "-o", outs[name])
        assert res.exit_code == 0, res.output
    with rasterio.open(outs["product"]) as p, rasterio.open(outs["file"]) as f, rasterio.open(outs["folder"]) as g:
        assert p.nodata == f.nodata == g.nodata == 0
        assert p.scales == f.scales == (1e-4,) and p.offsets == f.offsets == (-0.1,)
        assert g.scales == (1e-4,) * 3 and g.offsets == (-0.1,) * 3
        assert np.array_equal(p.read(1), f.read(1)) and np.array_equal(p.read(1), g.read(1))
    item = json.loads(outs["file"].with_name("file.stac.json").read_text())
    assert item["properties"]["datetime"].startswith("2023-06-12T10:10:31")
    comp = composite(str(b04))
    assert comp.note.startswith("band B04 of ") and "DN 0 read as nodata (Sentinel-2 band file)" in comp.note
    assert str(safe / "MTD_MSIL2A.xml") in comp.files
    alone = tmp_path / "alone" / b04.name  # outside a product: DN 0 as nodata, no scale
    alone.parent.mkdir()
    alone.write_bytes(b04.read_bytes())
    res = _run("upscale", alone, "-x", 2, "-m", "bicubic", "-o", tmp_path / "alone.tif")
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "alone.tif") as ds:
        assert ds.nodata == 0 and ds.scales == (1.0,)


def test_band_8a_keeps_its_add_offset_like_every_other_band(tmp_path):
    """The product's Spectral_Information spells B8A, its files B8A: the offsets were keyed B08A, so B8A read as
    DN / 10000, 0.1 too bright from processing baseline 04.00 on (found in review)."""
    safe, _ = l2a_product(tmp_path)
    r20m = next(safe.glob("GRANULE/*/IMG_DATA/R20m"))
    b05 = next(r20m.glob("*_B05_20m.jp2"))
    (r20m / b05.name.replace("_B05_", "_B8A_")).write_bytes(b05.read_bytes())
    info = inspect_raster(str(r20m / b05.name.replace("_B05_", "_B8A_")))
    assert info.scales == (1e-4,) and info.offsets == (-0.1,)
    res = _run("upscale", r20m, "--bands", "B8A,B05", "-x", 2, "-m", "bicubic", "-o", tmp_path / "nir.tif")
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "nir.tif") as ds:
        assert ds.offsets == (-0.1, -0.1) and ds.descriptions[0] == "B8A"


def test_a_landsat_folder_s_panchromatic_band_is_called_finer_not_coarser(tmp_path):
    product = "LC08_L1TP_044034_20230612_20230614_02_T1"
    folder = tmp_path / product
    folder.mkdir()
    for b in (2, 3, 4, 8):
        n, res = (40, 15.0) if b == 8 else (20, 30.0)
        _tif(folder / f"{product}_B{b}.TIF", np.full((n, n), 9000 + b, np.uint16), res)
    res = _run("upscale", folder, "--bands", "B8", "-x", 2, "-m", "bicubic", "-o", tmp_path / "o.tif")
    said = _said(res)
    assert res.exit_code == 2 and "its band 'B8' is on a finer grid than the stacked bands'" in said, said
    assert "give its file alone as the input" in said and not (tmp_path / "o.tif").exists()


def test_a_landsat_product_tar_is_named_as_one(tmp_path):
    folder = _l2sp(tmp_path)
    tar = tmp_path / f"{L2SP}.tar"
    with tarfile.open(tar, "w") as t:
        for f in folder.iterdir():
            t.add(f, arcname=f.name)
    res = _run("upscale", tar, "-x", 2, "-m", "bicubic", "-o", tmp_path / "o.tif")
    assert res.exit_code == 2 and "is a Landsat product archive, which geosr does not unpack; extract it" in \
        _said(res), res.output
    assert not (tmp_path / "o.tif").exists()
    # as a zip, and a Sentinel-2 granule's folder: a way forward (they were "not a raster GDAL can read" and "a
    # folder without band files"; found in review)
    import zipfile

    with zipfile.ZipFile(tmp_path / f"{L2SP}.zip", "w") as z:
        for f in folder.iterdir():
            z.write(f, arcname=f.name)
    res = _run("upscale", tmp_path / f"{L2SP}.zip", "-x", 2, "-m", "bicubic", "-o", tmp_path / "o.tif")
    assert res.exit_code == 2 and "is a Landsat product archive, which geosr does not unpack" in _said(res)
    safe, _ = l2a_product(tmp_path / "p")
    granule = next((safe / "GRANULE").iterdir())
    res = _run("upscale", granule, "-x", 2, "-m", "bicubic", "-o", tmp_path / "o.tif")
    assert res.exit_code == 2 and "is a Sentinel-2 granule's folder, whose band files are in IMG_DATA; give its " \
        "IMG_DATA folder (or the product's .SAFE folder)" in _said(res), res.output


def test_a_landsat_folder_s_infrared_and_thermal_bands_are_what_the_sensor_makes_them(tmp_path):
    """Found in review: Sentinel-2's names were applied to Landsat's bands, so OLI's B11 (thermal, 12 um) was SWIR
    (`--bands swir` picked it, the output's STAC item called it swir16) while B5 (nir) and B6 (swir) were nothing
    (`--bands nir` refused). Each band holds what its sensor makes it, as GDAL's colour interpretation says."""
    l1 = "LC08_L1TP_044034_20230612_20230614_02_T1"
    folder = tmp_path / l1
    folder.mkdir()
    grad = (np.arange(20)[None, :] * 30 + np.arange(20)[:, None] * 20).astype(np.uint16)
    for b in (1, 2, 3, 4, 5, 6, 7, 10, 11):
        _tif(folder / f"{l1}_B{b}.TIF", grad + 8000 + 100 * b)
    info = inspect_raster(str(folder))
    names = [d.split("_")[-1] for d in info.descriptions]
    assert [names[b - 1] for b in parse_bands("nir,swir,red", info)] == ["B5", "B6", "B4"]
    out = tmp_path / "o.tif"
    bands = ",".join(str(names.index(n) + 1) for n in ("B5", "B6", "B7", "B11", "B1"))
    res = _run("upscale", folder, "-x", "2", "-m", "bicubic", "--bands", bands, "-o", out, "-q")
    assert res.exit_code == 0, res.output
    eo = json.loads(out.with_name("o.stac.json").read_text())["assets"]["data"]["eo:bands"]
    assert [b.get("common_name") for b in eo] == ["nir", "swir16", "swir22", "lwir", "coastal"]
    with rasterio.open(out) as ds:
        assert [c.name for c in ds.colorinterp] == ["nir", "swir", "swir", "lwir", "coastal"]


def test_a_broken_band_file_of_a_folder_is_named(tmp_path):
    """Found in review: a Landsat folder (or a .SAFE) with one band file cut short was refused as "pixels cannot be
    read, the file may be corrupt", naming the folder: which of its files to fetch again was unsaid."""
    folder = _l2sp(tmp_path)
    broken = folder / f"{L2SP}_SR_B3.TIF"
    broken.write_bytes(broken.read_bytes()[:-300])
    res = _run("upscale", folder, "-x", "2", "-m", "bicubic", "-o", tmp_path / "o.tif")
    assert res.exit_code == 2, res.output
    assert f"pixels cannot be read, its band file {L2SP}_SR_B3.TIF may be corrupt" in _said(res), res.output
    assert not (tmp_path / "o.tif").exists()


def test_etm_thermal_gains_are_thermal_and_a_broken_member_of_a_product_zip_is_named(tmp_path):
    """Found in review: a Landsat 7 folder's B6_VCID_1 / B6_VCID_2 got no role (`--bands thermal`, `lwir` refused),
    and a product zip's broken band file was not named where its unzipped .SAFE's was."""
    import zipfile

    le7 = "LE07_L1TP_044034_20030612_20200915_02_T1"
    folder = tmp_path / le7
    folder.mkdir()
    for b in ("B1", "B2", "B3", "B4", "B5", "B6_VCID_1", "B6_VCID_2", "B7"):
        _tif(folder / f"{le7}_{b}.TIF", np.full((20, 20), 50, np.uint8))
    info = inspect_raster(str(folder))
    assert [c for c in info.colorinterp[5:7]] == ["lwir", "lwir"]
    assert parse_bands("lwir", info) == parse_bands("thermal", info) == (6,)
    safe, _ = l2a_product(tmp_path / "p")
    jp2 = next(safe.rglob("*_B03_10m.jp2"))
    jp2.write_bytes(jp2.read_bytes()[:-400])
    product = tmp_path / f"{safe.name.removesuffix('.SAFE')}.zip"
    with zipfile.ZipFile(product, "w") as z:
        for f in safe.rglob("*"):
            z.write(f, arcname=str(f.relative_to(safe.parent)))
    res = _run("upscale", product, "-x", 2, "-m", "bicubic", "-o", tmp_path / "o.tif")
    assert res.exit_code == 2 and f"its band file {jp2.relative_to(safe.parent)} may be corrupt" in _said(res), \
        res.output


def test_a_band_file_s_own_scale_and_nodata_outweigh_the_product_s(tmp_path):
    """A Level-2 band file declaring its own scale (0.0001, offset 0) and nodata (65535) keeps them: the MTL's
    reflectance scale and the product's fill 0 apply to bands that declare none (unguarded; found by mutation
    testing)."""
    from geosr.io.rasters import open_raster

    folder = _l2sp(tmp_path)
    for b in (2, 3, 4):
        with rasterio.open(folder / f"{L2SP}_SR_B{b}.TIF", "r+") as ds:
            ds.scales, ds.offsets = (0.0001,), (0.0,)
            ds.nodata = 65535
    with open_raster(str(folder)) as ds:
        named = dict(zip(ds.descriptions, zip(ds.scales, ds.offsets, ds.nodatavals)))
    assert [named[f"B{b}"] for b in (2, 3, 4)] == [(0.0001, 0.0, 65535.0)] * 3, named
    assert named["B1"] == (2.75e-05, -0.2, 0.0), named  # the product's, where the file declares none
