"""Inputs of several files read as one raster (issue 20.2 and 20.3): Sentinel-2 products (.SAFE folder, its zip,
its MTD file) with their reflectance scale and BOA offset, folders and lists of band files, STAC items (local and
over HTTP on 127.0.0.1, bands by common name), and the STAC round trip (an output's item is itself an input)."""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from pystac.extensions.eo import EOExtension
from pystac.validation import validate_dict
from tests.range_server import serving
from tests.s2_products import BANDS_10M, band_files, item_over_band_files, l1c_product, l2a_product
from typer.testing import CliRunner

from geosr.cli.app import app
from geosr.io.rasters import inspect_raster, open_raster, parse_bands
from geosr.io.sources import composite, files_of, gdal_path
from geosr.pipeline import job as job_module


def _run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def _reflectance(path: Path, band: int) -> tuple[np.ndarray, np.ndarray]:
    with rasterio.open(path) as ds:
        dn = ds.read(band).astype(np.float64)
        valid = dn != ds.nodatavals[band - 1]
        return dn * ds.scales[band - 1] + ds.offsets[band - 1], valid


def test_a_sentinel2_l2a_product_is_its_10m_bands_in_reflectance(tmp_path):
    safe, refl = l2a_product(tmp_path)
    out = tmp_path / "out.tif"
    res = _run("upscale", safe, "-x", "2", "-m", "bicubic", "-o", out, "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert "baseline 05.09" in summary["sources"]["lr"] and "(DN - 1000) / 10000" in summary["sources"]["lr"]
    with rasterio.open(out) as ds:
        assert ds.descriptions == ("B04", "B03", "B02") and ds.dtypes[0] == "uint16"
        assert ds.scales == (0.0001,) * 3 and ds.offsets == (-0.1,) * 3
        assert [c.name for c in ds.colorinterp] == ["red", "green", "blue"]
        assert ds.crs.to_epsg() == 32633 and ds.res == (5.0, 5.0)
    # the output's reflectance is the product's: a 2x2 block mean of the output against the LR pixel
    r, valid = _reflectance(out, 1)
    blocks = r.reshape(40, 2, 48, 2).mean(axis=(1, 3))
    inner = (slice(6, -2), slice(6, -2))
    assert valid[12:-4, 12:-4].all()
    assert abs(blocks[inner] - refl["B04"][inner]).mean() < 0.003
    assert abs(blocks[inner].mean() - refl["B04"][inner].mean()) < 0.001
    item = json.loads(out.with_name("out.stac.json").read_text())
    assert item["properties"]["datetime"].startswith("2023-06-12T10:10:31")


def test_a_product_before_baseline_4_has_no_offset_and_bands_select_by_common_name(tmp_path):
    safe, refl = l2a_product(tmp_path, baseline="03.01", offset=None)
    info = inspect_raster(str(safe))
    assert info.descriptions == BANDS_10M and info.offsets == (0.0,) * 4 and info.scales == (0.0001,) * 4
    assert parse_bands("nir,red,green", info) == (4, 3, 2)
    with open_raster(str(safe)) as ds:
        dn = ds.read(3).astype(np.float64)
        assert abs(dn[5:, 5:] / 10000 - refl["B04"][5:, 5:]).max() < 1e-4


def test_a_product_from_baseline_4_without_its_offsets_is_refused(tmp_path):
    """A metadata file of processing baseline 04.00 or later without the BOA_ADD_OFFSET list (cut short, or made by
    hand) read the DN as reflectance * 10000, every value 0.1 too bright, without a word: refused naming it."""
    from geosr.errors import NotARasterError

    safe, _ = l2a_product(tmp_path, baseline="05.09", offset=None)
    with pytest.raises(NotARasterError, match=r"\.SAFE: its metadata, of processing baseline 05.09, gives no "
                                              r"BOA_ADD_OFFSET for B01 \(is it complete\?\)"):
        inspect_raster(str(safe))
    # a product its user made with Sen2Cor (baseline 99.xx; before version 2.10 without offsets) opens as before
    safe, _ = l2a_product(tmp_path / "sen2cor", baseline="99.99", offset=None)
    assert inspect_raster(str(safe)).offsets == (0.0,) * 4


def test_a_zipped_product_and_its_metadata_file_open_the_same(tmp_path):
    safe, _ = l2a_product(tmp_path)
    archive = tmp_path / (safe.name.removesuffix(".SAFE") + ".zip")
    with zipfile.ZipFile(archive, "w") as z:
        for f in safe.rglob("*"):
            if f.is_file():
                z.write(f, f.relative_to(tmp_path))
    with open_raster(str(safe)) as a, open_raster(str(archive)) as b, open_raster(str(safe / "MTD_MSIL2A.xml")) as c:
        assert a.descriptions == b.descriptions == c.descriptions == BANDS_10M
        assert np.array_equal(a.read(), b.read()) and np.array_equal(a.read(), c.read())
        assert a.offsets == b.offsets == (-0.1,) * 4


def test_a_zipped_product_of_any_name_or_as_a_vsizip_path_is_read_as_the_product(tmp_path):
    """A zip not named like a product (`download.zip`), one holding the .SAFE's contents at its root, and GDAL's
    `/vsizip/` path of a product zip were handed to GDAL as one raster: "has no coordinate reference system",
    "holds no pixels", "not a raster GDAL can read" or "read from a local .SAFE folder or .zip" (exit 2). The zip's
    directory now tells a product; a band file inside it stays GDAL's to open."""
    safe, refl = l2a_product(tmp_path)
    nested, flat = tmp_path / "download.zip", tmp_path / "flat.zip"
    with zipfile.ZipFile(nested, "w") as z, zipfile.ZipFile(flat, "w") as f:
        for file in safe.rglob("*"):
            if file.is_file():
                z.write(file, file.relative_to(tmp_path))
                f.write(file, file.relative_to(safe))
    band = next(n for n in zipfile.ZipFile(nested).namelist() if n.endswith("_B04_10m.jp2"))
    with open_raster(str(safe)) as ds:
        whole = ds.read()
    for given in (nested, flat, f"/vsizip/{nested}", f"/vsizip/{nested}/{safe.name}"):
        res = _run("upscale", given, "-x", "2", "-m", "bicubic", "-o", tmp_path / "o.tif", "--overwrite")
        assert res.exit_code == 0, (given, res.output)
        with open_raster(str(given)) as ds:
            assert ds.descriptions == BANDS_10M and np.array_equal(ds.read(), whole), given
    with open_raster(f"/vsizip/{nested}/{band}") as ds:
        assert ds.count == 1 and ds.descriptions == (None,)


def test_a_zip_of_two_products_reads_the_one_named_and_refuses_to_guess(tmp_path):
    """A zip holding an L1C and an L2A product read the first in its listing whatever a /vsizip/ path named (the
    L2A's folder or metadata file gave the L1C's pixels, exit 0), and a product not in it (found in review)."""
    l2a, _ = l2a_product(tmp_path / "a")
    l1c, _ = l1c_product(tmp_path / "b")
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as z:
        for safe in (l1c, l2a):
            for file in sorted(safe.rglob("*")):
                if file.is_file():
                    z.write(file, file.relative_to(safe.parent))
    for safe, level in ((l2a, "L2A"), (l1c, "L1C")):
        with open_raster(str(safe)) as ds:
            whole = ds.read()
        for given in (f"/vsizip/{two}/{safe.name}", f"/vsizip/{two}/{safe.name}/MTD_MSI{level}.xml"):
            res = _run("info", given)
            assert res.exit_code == 0 and f"Sentinel-2 {level} product" in res.output, (given, res.output)
            with open_raster(given) as ds:
                assert np.array_equal(ds.read(), whole), given
    res = _run("info", two)
    said = " ".join(res.output.split())
    assert res.exit_code == 2 and f"two.zip: holds 2 Sentinel-2 products ({l1c.name}, {l2a.name}); name the one " \
                                  f"to read: /vsizip/{two}/{l1c.name}" in said, said
    res = _run("upscale", f"/vsizip/{two}/NO_SUCH.SAFE", "-x", "2", "-m", "bicubic", "-o", tmp_path / "o.tif")
    said = " ".join(res.output.split())
    assert res.exit_code == 2 and "two.zip: holds no Sentinel-2 product at NO_SUCH.SAFE (it holds " in said, said
    assert not (tmp_path / "o.tif").exists()


def test_a_product_missing_an_unselected_band_file_is_read(tmp_path):
    """A product downloaded band by band (no B08): its RGB runs, band numbers kept; selecting B08 is refused."""
    safe, _ = l2a_product(tmp_path)
    with open_raster(str(safe)) as ds:
        whole = ds.read()
    next(safe.rglob("*_B08_10m.jp2")).unlink()
    res = _run("upscale", safe, "-x", "2", "-m", "bicubic", "-o", tmp_path / "rgb.tif")
    assert res.exit_code == 0, res.output
    with open_raster(str(safe)) as ds:
        assert ds.descriptions == BANDS_10M and np.array_equal(ds.read([1, 2, 3]), whole[:3])
        assert not ds.read(4).any() and ds.nodatavals[3] == 0
    with rasterio.open(tmp_path / "rgb.tif") as out:
        assert out.count == 3 and out.descriptions == ("B04", "B03", "B02")
    assert "B08_10m.jp2" not in " ".join(files_of(str(safe)))
    info = _run("info", safe)
    assert info.exit_code == 0 and "image file of B08 is missing" in " ".join(info.output.split())
    for bands in ("4", "B08", "nir", "4,3,2"):
        res = _run("upscale", safe, "-x", "2", "-m", "bicubic", "--bands", bands, "-o", tmp_path / f"{bands}.tif")
        said = " ".join(res.output.split())
        assert res.exit_code == 2 and "the image file of B08 is missing" in said and "(B02, B03, B04)" in said, said
        assert not (tmp_path / f"{bands}.tif").exists()
    # the first band's file missing too: the grid from the first that is there
    next(safe.rglob("*_B02_10m.jp2")).unlink()
    res = _run("upscale", safe, "-x", "2", "-m", "bicubic", "--bands", "B04,B03", "-o", tmp_path / "rg.tif")
    assert res.exit_code == 0, res.output
    for b in ("*_B03_10m.jp2", "*_B04_10m.jp2"):
        next(safe.rglob(b)).unlink()
    res = _run("upscale", safe, "-x", "2", "-m", "bicubic", "-o", tmp_path / "none.tif")
    said = " ".join(res.output.split())
    assert res.exit_code == 2 and "image file of B02 is missing" in said and "those of B03, B04, B08" in said, said


@pytest.mark.parametrize("value", ["0", "nan", "-10000", "inf"])
def test_a_product_s_quantification_value_that_is_no_positive_number_is_refused(tmp_path, value):
    """A quantification value of 0 was a ZeroDivisionError (exit 1, "internal error"); nan wrote an output of
    nodata only, exit 0."""
    safe, _ = l2a_product(tmp_path)
    mtd = safe / "MTD_MSIL2A.xml"
    text = mtd.read_text()
    assert "<BOA_QUANTIFICATION_VALUE" in text
    mtd.write_text(re.sub(r"(<BOA_QUANTIFICATION_VALUE[^>]*>)[^<]*<", rf"\g<1>{value}<", text))
    res = _run("upscale", safe, "-x", "2", "-m", "bicubic", "-o", tmp_path / "q.tif")
    said = " ".join(res.output.split())
    assert res.exit_code == 2 and said == (f"geosr: error: {safe}: its BOA_QUANTIFICATION_VALUE is {value}, not a "
                                           "positive number"), said
    assert not (tmp_path / "q.tif").exists()


def test_broken_products_are_one_sentence_and_exit_2(tmp_path):
    safe, _ = l2a_product(tmp_path)
    next(safe.rglob("*_B03_10m.jp2")).unlink()
    res = _run("upscale", safe, "-x", "2", "-m", "bicubic", "-o", tmp_path / "a.tif")
    assert res.exit_code == 2 and "image file of B03 is missing" in res.output and safe.name in res.output
    # zipped, the same sentence (it was GDAL's long "does not exist in the file system" on the band's /vsizip/ path)
    archive = tmp_path / "product.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in safe.rglob("*"):
            if f.is_file():
                z.write(f, f.relative_to(tmp_path))
    res = _run("upscale", archive, "-x", "2", "-m", "bicubic", "-o", tmp_path / "a.tif")
    said = " ".join(res.output.split())
    assert res.exit_code == 2 and said.startswith(f"geosr: error: {archive}: the image file of B03 is missing (")
    assert "vsizip" not in said, said
    (safe / "MTD_MSIL2A.xml").unlink()
    res = _run("upscale", safe, "-x", "2", "-m", "bicubic", "-o", tmp_path / "a.tif")
    assert res.exit_code == 2 and "without MTD_MSIL1C.xml or MTD_MSIL2A.xml" in res.output
    empty = tmp_path / "empty"
    empty.mkdir()
    res = _run("upscale", empty, "-x", "2", "-m", "bicubic", "-o", tmp_path / "a.tif")
    assert res.exit_code == 2 and "folder without band files" in res.output
    assert not list(tmp_path.glob("*.tif"))


def test_a_product_of_several_granules_is_refused_as_the_docs_say(tmp_path):
    """Only the first image file listed per band was looked at, so a product listing a second granule after the
    first was read as the first granule alone, without a word (the docs say such a product is refused)."""
    safe, _ = l2a_product(tmp_path)
    mtd = safe / "MTD_MSIL2A.xml"
    text = mtd.read_text()
    first = text[text.index("          <Granule "):text.index("          </Granule>") + len("          </Granule>\n")]
    granule = next((safe / "GRANULE").iterdir()).name
    other = granule.replace("A032500", "A032501")  # the next orbit's granule
    assert other != granule
    shutil.copytree(safe / "GRANULE" / granule, safe / "GRANULE" / other)
    mtd.write_text(text.replace(first, first + first.replace(granule, other)))
    res = _run("upscale", safe, "-x", "2", "-m", "bicubic", "-o", tmp_path / "a.tif")
    assert res.exit_code == 2 and "holds 2 granules; give one granule's IMG_DATA/R10m folder" in res.output, res.output
    assert not (tmp_path / "a.tif").exists()


def test_a_folder_of_band_files_stacks_the_finest_grid(tmp_path, monkeypatch):
    dn = band_files(tmp_path / "bands")
    comp = composite(str(tmp_path / "bands"))
    assert "B02, B03, B04, B08" in comp.note and "left out" in comp.note and "B05" in comp.note
    monkeypatch.chdir(tmp_path / "bands")  # the folder as `.`: named (the note said "stacked from ;")
    assert "stacked from bands;" in composite(".").note
    with open_raster(str(tmp_path / "bands")) as ds:
        assert ds.descriptions == BANDS_10M and ds.count == 4
        assert np.array_equal(ds.read(3), dn["B04"])


def test_a_sentinel2_r10m_folder_keeps_dn_0_as_nodata_as_its_product_does(tmp_path):
    """Found black-box: the product's IMG_DATA/R10m folder (what the docs offer for a product of several granules),
    and later its band files listed with commas, lost DN 0 as nodata: Sentinel-2's band files declare none, so the
    collar was blended into the scene as data.
    Band files named otherwise keep what they declare."""
    safe, _ = l2a_product(tmp_path)
    r10m = next(safe.glob("GRANULE/*/IMG_DATA/R10m"))
    listed = ",".join(str(next(r10m.glob(f"*_{b}_10m.jp2"))) for b in ("B02", "B03", "B04", "B08"))
    outs = {}
    for name, source in (("product", safe), ("folder", r10m), ("img_data", r10m.parent), ("listed", listed)):
        outs[name] = tmp_path / f"{name}.tif"
        res = _run("upscale", source, "-x", "2", "-m", "bicubic", "-o", outs[name])
        assert res.exit_code == 0, res.output
    with rasterio.open(outs["product"]) as p, rasterio.open(outs["folder"]) as f, rasterio.open(outs["img_data"]) as g:
        assert p.nodata == f.nodata == g.nodata == 0
        assert np.array_equal(p.read_masks(1), f.read_masks(1)) and (f.read_masks(1) == 0).sum() == 6 * 8
        assert np.array_equal(f.read(), g.read())
    with rasterio.open(outs["folder"]) as f, rasterio.open(outs["listed"]) as g:  # found by review: a comma list
        assert g.nodata == 0 and np.array_equal(f.read(), g.read())  # of the same files had no nodata
    assert "DN 0 read as nodata" in composite(str(r10m)).note and "DN 0 read as nodata" in composite(listed).note
    plain = tmp_path / "plain"
    band_files(plain)
    for f in plain.glob("*.tif"):
        f.rename(f.with_name(f.name.split("_", 2)[2]))  # B04_10m.tif: not Sentinel-2's name
    with open_raster(str(plain)) as ds:
        assert ds.nodata is None


def test_asking_for_a_band_left_out_for_its_grid_says_so(tmp_path):
    """`--bands rededge` on an item whose rededge asset is at 20 m (the others at 10 m) said the item "has no band
    'rededge'", as if it lacked the asset; `geosr info` said it was left out for its grid."""
    band_files(tmp_path / "s2")
    item = item_over_band_files(tmp_path / "s2")
    for source, band in ((item, "rededge"), (tmp_path / "s2", "B05")):
        res = _run("upscale", source, "--bands", band, "-x", "2", "-m", "bicubic", "-o", tmp_path / "o.tif")
        said = " ".join(res.output.split())
        assert res.exit_code == 2 and f"its band {band!r} is on a coarser or other grid than the first band's, so " \
            "it is left out of the stack (stacked: 1=" in said, said
    res = _run("upscale", item, "--bands", "swir16", "-x", "2", "-m", "bicubic", "-o", tmp_path / "o.tif")
    assert res.exit_code == 2 and "has no band 'swir16'" in " ".join(res.output.split())
    # a 20 m B11 / B8A asked for by its STAC common name said "has no band 'swir16'" (found in review)
    b05 = next((tmp_path / "s2").glob("*_B05_20m.tif"))
    for name, common in (("B11", "swir16"), ("B8A", "nir08")):
        shutil.copy(b05, b05.with_name(b05.name.replace("B05", name)))
        res = _run("upscale", tmp_path / "s2", "--bands", common, "-x", "2", "-m", "bicubic", "-o", tmp_path / "o.tif")
        assert res.exit_code == 2 and f"its band {name!r} is on a coarser or other grid" in \
            " ".join(res.output.split()), res.output
    assert not (tmp_path / "o.tif").exists()
    # (Sentinel-2's: a Landsat OLI folder's B11 is thermal, not the swir16 it was named as; found in review)
    from tests.test_product_files import _tif

    oli = tmp_path / "LC08_L1TP_044034_20230612_20230614_02_T1"
    oli.mkdir()
    for b in (2, 3, 4, 5, 6, 7):
        _tif(oli / f"{oli.name}_B{b}.TIF", np.full((20, 20), 8000 + 100 * b, np.uint16))
    _tif(oli / f"{oli.name}_B11.TIF", np.full((10, 10), 9000, np.uint16), 60.0)
    res = _run("upscale", oli, "--bands", "swir16", "-x", "2", "-m", "bicubic", "-o", tmp_path / "oli.tif")
    assert res.exit_code == 0, res.output  # its own swir16, B6
    with rasterio.open(tmp_path / "oli.tif") as ds:
        assert ds.descriptions == ("B6",)
    # a product's 20 m band (listed by its metadata) was "has no band 'B05'" (found in review); B11 is not listed
    safe, _ = l2a_product(tmp_path / "p")
    res = _run("upscale", safe, "--bands", "B05", "-x", "2", "-m", "bicubic", "-o", tmp_path / "o.tif")
    assert res.exit_code == 2 and "its band 'B05' is on a coarser or other grid" in " ".join(res.output.split())
    # (it said "resample it onto their grid first": a 20 m band is upscaled from its own grid; found in review)
    assert "give its file alone as the input (or the folder of the bands on its grid: the granule's " \
        "IMG_DATA/R20m or R60m) to use it at its own pixel size" in " ".join(res.output.split())
    # by what it holds too (`--bands rededge` said the product "has no band 'rededge'"; found in review)
    res = _run("upscale", safe, "--bands", "rededge", "-x", "2", "-m", "bicubic", "-o", tmp_path / "o.tif")
    assert res.exit_code == 2 and "its band 'B05' is on a coarser or other grid" in " ".join(res.output.split())
    renamed = safe.rename(safe.with_name("product"))  # by its metadata file, whatever the folder's name
    res = _run("upscale", renamed / "MTD_MSIL2A.xml", "--bands", "B05", "-x", "2", "-m", "bicubic", "-o",
               tmp_path / "o.tif")
    assert res.exit_code == 2 and "IMG_DATA/R20m or R60m" in " ".join(res.output.split()), res.output
    safe = renamed.rename(safe)
    res = _run("upscale", safe, "--bands", "B11", "-x", "2", "-m", "bicubic", "-o", tmp_path / "o.tif")
    assert res.exit_code == 2 and "has no band 'B11'" in " ".join(res.output.split())
    assert not (tmp_path / "o.tif").exists()


def test_a_folder_holding_two_files_of_one_band_is_refused(tmp_path):
    """A band folder with two files of one band (T33_B02.tif and T33_B02_10m.tif, B02.tif and B02.jp2) was read
    with the first of them by name, the other left out without a word: one sentence now, exit 2, naming the folder,
    the band and both files. One file per band still stacks."""
    from geosr.errors import InputError

    dn = band_files(tmp_path / "bands")
    b02 = next((tmp_path / "bands").glob("*_B02_10m.tif"))
    shutil.copy(b02, tmp_path / "bands" / b02.name.replace("_B02_10m", "_B02"))
    res = _run("upscale", tmp_path / "bands", "-x", "2", "-m", "bicubic", "-o", tmp_path / "a.tif")
    said = " ".join(res.output.split())
    assert res.exit_code == 2 and "internal error" not in said, said
    assert f"{tmp_path / 'bands'}: holds 2 files for band B02" in said, said
    assert f"{b02.name.replace('_B02_10m', '_B02')} and {b02.name}" in said, said
    plain = tmp_path / "plain"
    plain.mkdir()
    for b in ("B02", "B03", "B04"):
        shutil.copy(next((tmp_path / "bands").glob(f"*_{b}_10m.tif")), plain / f"{b}.tif")
    shutil.copy(plain / "B03.tif", plain / "b03.TIFF")  # the same band token, whatever its case and suffix
    with pytest.raises(InputError, match=r"holds 2 files for band B03 \(B03\.tif and b03\.TIFF\)"):
        composite(str(plain))
    (plain / "b03.TIFF").unlink()
    (plain / "notes.txt").write_text("B03 was taken on a clear day")  # not a raster file: not a band file
    with open_raster(str(plain)) as ds:
        assert ds.descriptions == ("B02", "B03", "B04") and np.array_equal(ds.read(2), dn["B03"])
    assert not list(tmp_path.glob("*.tif"))


def test_band_files_of_several_data_types_stack_in_one_and_a_multi_band_file_is_not_cut(tmp_path):
    """Band files of uint8 and uint16 were an internal error, exit 1 ("more than one 'dtype' found"); a folder's
    band file holding several bands gave its first band alone, without a word (a list gives every band)."""
    from geosr.errors import BandError

    plain = tmp_path / "plain"
    plain.mkdir()
    band_files(tmp_path / "bands")
    for b in ("B02", "B03"):
        shutil.copy(next((tmp_path / "bands").glob(f"*_{b}_10m.tif")), plain / f"{b}.tif")
    with rasterio.open(plain / "B02.tif") as src:
        profile, data = src.profile, src.read(1)
    small = (data % 200).astype(np.uint8)
    with rasterio.open(plain / "B03.tif", "w", **{**profile, "dtype": "uint8", "nodata": None}) as dst:
        dst.write(small, 1)
    comp = composite(str(plain))
    assert "bands of uint16 and uint8 read as uint16" in comp.note
    with open_raster(str(plain)) as ds:
        assert ds.dtypes == ("uint16", "uint16") and np.array_equal(ds.read(2), small.astype(np.uint16))
    out = tmp_path / "o.tif"
    res = _run("upscale", plain, "-x", "2", "-m", "bicubic", "-o", out)
    assert res.exit_code == 0, res.output
    with rasterio.open(out) as ds:
        assert ds.count == 2 and set(ds.dtypes) == {"uint16"}
    with rasterio.open(plain / "B04.tif", "w", **{**profile, "count": 2}) as dst:
        dst.write(np.stack([data, data]))
    with pytest.raises(BandError, match="its band file B04.tif holds 2 bands, where a folder of band files holds one"):
        composite(str(plain))
    res = _run("upscale", plain, "-x", "2", "-m", "bicubic", "-o", tmp_path / "b.tif")
    assert res.exit_code == 2 and not (tmp_path / "b.tif").exists()
    with open_raster(f"{plain / 'B02.tif'},{plain / 'B04.tif'}") as ds:  # listed, every band of each
        assert ds.count == 3


def test_a_list_of_band_files_stacks_them_in_order(tmp_path):
    dn = band_files(tmp_path / "bands")
    f = {b: next((tmp_path / "bands").glob(f"*_{b}_*.tif")) for b in (*BANDS_10M, "B05")}
    listed = f"{f['B08']},{f['B04']},{f['B03']}"
    out = tmp_path / "out.tif"
    res = _run("upscale", listed, "-x", "2", "-m", "bicubic", "-o", out)
    assert res.exit_code == 0, res.output
    with rasterio.open(out) as ds:
        assert ds.descriptions == ("B08", "B04", "B03")  # as listed: all three bands, nir first
    with open_raster(listed) as ds:
        assert np.array_equal(ds.read(1), dn["B08"])
    # in Python, as a list of paths too (refused: "give text or a path"; found in review)
    import geosr

    geosr.upscale([f["B08"], f["B04"], str(f["B03"])], output=tmp_path / "api.tif", scale=2, model="bicubic")
    assert (tmp_path / "api.tif").read_bytes() == out.read_bytes()
    res = _run("upscale", f"{f['B04']},{f['B05']}", "-x", "2", "-m", "bicubic", "-o", tmp_path / "b.tif")
    assert res.exit_code == 2 and "is not on the grid of" in res.output
    res = _run("upscale", f"{f['B04']},{tmp_path / 'nope.tif'}", "-x", "2", "-o", tmp_path / "b.tif")
    assert res.exit_code == 2 and "nope.tif does not exist" in res.output
    assert not (tmp_path / "b.tif").exists()


def test_stacked_band_files_keep_their_own_scale_offset_and_unit(tmp_path):
    """A VRT band does not take its source's scale and offset: stacking band files that declare them (DN * 1e-4 -
    0.1 = reflectance) gave bands of scale 1, offset 0, and an output whose values meant DN. Each member's own
    scale, offset and unit are now written into the stack (a product's metadata still sets a product's)."""
    band_files(tmp_path / "bands")
    for f in (tmp_path / "bands").glob("*.tif"):
        with rasterio.open(f, "r+") as ds:
            ds.scales, ds.offsets, ds.units = (1e-4,), (-0.1,), ("reflectance",)
    listed = ",".join(str(next((tmp_path / "bands").glob(f"*_{b}_*.tif"))) for b in ("B04", "B03", "B02"))
    for given in (str(tmp_path / "bands"), listed):
        with open_raster(given) as ds:
            assert ds.scales == (1e-4,) * ds.count and ds.offsets == (-0.1,) * ds.count, given
            assert ds.units == ("reflectance",) * ds.count
    # and their band metadata (found in review: a band file's wavelength was left out of the output)
    for f in (tmp_path / "bands").glob("*.tif"):
        with rasterio.open(f, "r+") as ds:
            ds.update_tags(1, WAVELENGTH=f.stem.split("_")[-2], FWHM="30")
    out = tmp_path / "out.tif"
    assert _run("upscale", listed, "-x", "2", "-m", "bicubic", "-o", out).exit_code == 0
    with rasterio.open(out) as ds:
        assert ds.scales == (1e-4,) * 3 and ds.offsets == (-0.1,) * 3
        assert [ds.tags(b) for b in (1, 2, 3)] == [{"WAVELENGTH": b, "FWHM": "30"} for b in ("B04", "B03", "B02")]


def test_the_output_may_not_be_a_file_a_composite_input_reads(tmp_path):
    band_files(tmp_path / "bands")
    member = next((tmp_path / "bands").glob("*_B04_*.tif"))
    before = member.read_bytes()
    res = _run("upscale", tmp_path / "bands", "-x", "2", "-m", "bicubic", "-o", member, "--overwrite")
    assert res.exit_code == 2 and "is the LR" in res.output
    assert member.read_bytes() == before


def test_urls_in_a_vrt_are_gdal_paths():
    assert gdal_path("https://h/a.tif") == "/vsicurl/https://h/a.tif"
    assert gdal_path("s3://bucket/k/a.tif") == "/vsis3/bucket/k/a.tif"
    assert gdal_path("/vsizip//x.zip/a.tif") == "/vsizip//x.zip/a.tif"


def test_the_resume_fingerprint_follows_every_member_file(tmp_path):
    band_files(tmp_path / "bands")
    folder = str(tmp_path / "bands")
    before = job_module._file_id(folder)
    member = next((tmp_path / "bands").glob("*_B03_*.tif"))
    with rasterio.open(member, "r+") as ds:
        ds.write(np.zeros((1, ds.height, ds.width), np.uint16))
    assert job_module._file_id(folder) != before


def test_a_refused_resume_names_the_member_file_that_changed(tmp_path):
    """A band file of a STAC item changed: the refusal said "the LR item.json changed", the item being as it was
    (found in review). It names the item's file that changed."""
    import os

    from geosr.pipeline.fingerprints import fingerprint_changes

    band_files(tmp_path / "s2")
    item = str(item_over_band_files(tmp_path / "s2"))
    before = {"inputs": [job_module._file_id(item)]}
    member = next((tmp_path / "s2").glob("*_B03_*.tif"))
    os.utime(member, ns=(1, 1))
    after = {"inputs": [job_module._file_id(item)]}
    name = os.path.basename(item)
    assert fingerprint_changes(before, after) == [
        f"the LR {name}: its file {member.name} changed (its size or modification time)"]
    os.utime(item, ns=(1, 1))  # the item itself: named as before
    assert fingerprint_changes(after, {"inputs": [job_module._file_id(item)]})[0].startswith(f"the LR {name} changed")
    # band files as a list are "band files", not the last one's name ("the LR B04.tif: its file B03.tif"; review)
    files = sorted((tmp_path / "s2").glob("*_B0[234]_*.tif"))
    listed = ",".join(map(str, files))
    before = {"inputs": [job_module._file_id(listed)]}
    os.utime(files[1], ns=(2, 2))
    assert fingerprint_changes(before, {"inputs": [job_module._file_id(listed)]}) == [
        f"the LR band files: its file {files[1].name} changed (its size or modification time)"]


def test_a_refused_resume_from_another_file_names_both(tmp_path):
    """A batch whose manifest swapped two jobs' outputs was refused with "the LR rgb_byte.tif changed" for a file
    as it was (the output was made from hro.tif; found in review). Another file is named as the one it replaced."""
    from conftest import make_raster, smooth_field
    from geosr.pipeline.fingerprints import fingerprint_changes

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        for name in ("hro.tif", "rgb.tif"):
            make_raster(tmp_path / folder / name, (smooth_field(3, 8, 8) * 255).astype(np.uint8))
    ids = {p: job_module._file_id(str(tmp_path / p)) for p in ("a/hro.tif", "a/rgb.tif", "b/rgb.tif")}
    assert fingerprint_changes({"inputs": [ids["a/hro.tif"]]}, {"inputs": [ids["a/rgb.tif"]]}) == [
        "the LR hro.tif -> rgb.tif"]
    assert fingerprint_changes({"inputs": [None, ids["a/rgb.tif"]]}, {"inputs": [None, ids["b/rgb.tif"]]}) == [
        f"the reference {tmp_path / 'a/rgb.tif'} -> {tmp_path / 'b/rgb.tif'}"]  # one name: the paths whole


def test_a_stac_item_picks_its_data_assets_by_common_name(tmp_path):
    dn = band_files(tmp_path / "s2")
    item = item_over_band_files(tmp_path / "s2")
    out = tmp_path / "out.tif"
    res = _run("upscale", item, "-x", "2", "-m", "bicubic", "-o", out, "--json")
    assert res.exit_code == 0, res.output
    assert "bands blue, green, red, nir" in json.loads(res.stdout)["sources"]["lr"]
    with rasterio.open(out) as ds:
        assert ds.descriptions == ("red", "green", "blue") and ds.scales == (0.0001,) * 3
    with open_raster(str(item)) as ds:
        assert np.array_equal(ds.read(3), dn["B04"])  # red is B04's data asset, not the visual rendering
        assert ds.count == 4  # B05 (20 m) left out
    res = _run("upscale", item, "--bands", "nir,red,green", "-x", "2", "-m", "bicubic", "-o", tmp_path / "f.tif")
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "f.tif") as ds:
        assert ds.descriptions == ("nir", "red", "green")


def test_a_stac_item_s_bands_by_their_eo_names(tmp_path):
    """`--bands B04,B03,B02` on an item whose eo:bands name them so (Earth Search, Planetary Computer) said "has no
    band 'B04'", and B05 (on the 20 m grid) "has no band" too (found in review)."""
    band_files(tmp_path / "s2")
    item = item_over_band_files(tmp_path / "s2")
    res = _run("upscale", item, "--bands", "B04,b03,B02", "-x", "2", "-m", "bicubic", "-o", tmp_path / "e.tif")
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "e.tif") as ds:
        assert ds.descriptions == ("red", "green", "blue")
    res = _run("upscale", item, "--bands", "B05", "-x", "2", "-m", "bicubic", "-o", tmp_path / "f.tif")
    assert res.exit_code == 2 and "its band 'rededge' is on a coarser or other grid" in " ".join(res.output.split())
    res = _run("upscale", item, "--bands", "B09", "-x", "2", "-m", "bicubic", "-o", tmp_path / "f.tif")
    assert res.exit_code == 2 and "has no band 'B09'" in res.output


def test_a_stac_item_as_the_reference(tmp_path):
    band_files(tmp_path / "s2")
    item = item_over_band_files(tmp_path / "s2")
    res = _run("upscale", item, "--ref", item, "--cd", "none", "-x", "2", "-o", tmp_path / "r.tif", "--dry-run",
               "--json")
    assert res.exit_code == 0, res.output
    assert set(json.loads(res.stdout)["sources"]) == {"lr", "ref"}


def test_bad_stac_items_are_one_sentence_and_exit_2(tmp_path):
    (tmp_path / "notitem.json").write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "nobands.json").write_text(json.dumps(
        {"type": "Feature", "stac_version": "1.0.0", "id": "x", "geometry": None, "properties": {"datetime": None,
         "start_datetime": "2020-01-01T00:00:00Z", "end_datetime": "2020-01-02T00:00:00Z"}, "links": [],
         "assets": {"a": {"href": "a.tif"}}}))
    for name, words in (("notitem.json", "not a STAC item"), ("bad.json", "is not JSON"),
                        ("nobands.json", "no asset of this STAC item names its bands"),
                        ("missing.json", "no such file")):
        res = _run("upscale", tmp_path / name, "-x", "2", "-o", tmp_path / "o.tif")
        assert res.exit_code == 2 and words in res.output and name in res.output, res.output
    assert not (tmp_path / "o.tif").exists()


@pytest.fixture
def served_item(tmp_path):
    folder = tmp_path / "www"
    band_files(folder)
    item = json.loads(item_over_band_files(folder).read_text())
    for asset in item["assets"].values():
        asset["href"] = "../" + asset["href"]
    (folder / "items").mkdir()
    (folder / "items" / item["id"]).write_text(json.dumps(item))  # as a STAC API serves it: .../items/ID
    product = "S2B_MSIL2A_20230612T101031_N0509_R022_T33UUB_20230612T101031.SAFE"
    (folder / "items" / product).write_text(json.dumps(item))  # an item named for its product
    (folder / "items" / "HLS.S30.T33UUB.2023163T101031.v2.0").write_text(json.dumps(item))  # an ID with dots
    (folder / product).mkdir()  # a product folder
    shutil.copy(next(folder.glob("*_B04_*.tif")), folder / "raster")
    with serving(folder) as url:
        yield url


def test_a_stac_item_by_url_reads_its_assets_over_http(served_item, tmp_path):
    out = tmp_path / "out.tif"
    res = _run("upscale", f"{served_item}/item.json", "-x", "2", "-m", "bicubic", "-o", out)
    assert res.exit_code == 0, res.output
    with rasterio.open(out) as ds:
        assert ds.count == 3 and ds.shape == (80, 96)
    links = json.loads(out.with_name("out.stac.json").read_text())["links"]
    assert [x["href"] for x in links if x["rel"] == "derived_from"] == [f"{served_item}/item.json"]
    res = _run("upscale", f"{served_item}/missing.json", "-x", "2", "-o", tmp_path / "m.tif")
    assert res.exit_code == 2 and "cannot be fetched" in res.output
    # a STAC API's item URL has no suffix; a raster URL without one is still a raster
    api = _run("upscale", f"{served_item}/items/S2B_33UUB_20230612_0_L2A", "-x", "2", "-m", "bicubic",
               "-o", tmp_path / "api.tif", "--json")
    assert api.exit_code == 0, api.output
    assert "STAC item S2B_33UUB_20230612_0_L2A" in json.loads(api.stdout)["sources"]["lr"]
    plain = _run("upscale", f"{served_item}/raster", "-x", "2", "-m", "bicubic", "-o", tmp_path / "plain.tif")
    assert plain.exit_code == 0, plain.output


def test_an_api_item_named_for_its_product_is_read_as_an_item(served_item, tmp_path):
    """Found by review: a STAC API's item whose ID is its product's name (.../items/S2B_MSIL2A_....SAFE, as the
    Copernicus Data Space names them) was refused as a product over the network, "give the product's STAC item";
    a product folder by URL still gets that sentence."""
    item = _run("info", f"{served_item}/items/S2B_MSIL2A_20230612T101031_N0509_R022_T33UUB_20230612T101031.SAFE",
                "--json")
    assert item.exit_code == 0, item.output
    assert "STAC item S2B_33UUB_20230612_0_L2A" in json.loads(item.stdout)["files"][0]["source"]
    res = _run("info", f"{served_item}/S2B_MSIL2A_20230612T101031_N0509_R022_T33UUB_20230612T101031.SAFE/")
    said = " ".join(res.output.split())
    assert res.exit_code == 2 and "read from a local .SAFE folder or .zip" in said, said


def test_an_api_item_whose_id_holds_dots_and_the_vsicurl_forms_of_items_are_read_as_items(served_item, tmp_path):
    """An item ID with dots (HLS.S30.T33UUB.2023163T101031.v2.0, MODIS's, Sentinel-1's) and an item named by GDAL's
    /vsicurl/ path or /vsicurl?url= form were "not a raster GDAL can read" (found in review)."""
    import urllib.parse

    for source in (f"{served_item}/items/HLS.S30.T33UUB.2023163T101031.v2.0",
                   f"/vsicurl/{served_item}/items/S2B_33UUB_20230612_0_L2A",
                   f"/vsicurl?url={urllib.parse.quote(served_item + '/item.json', safe='')}"):
        res = _run("info", source, "--json")
        assert res.exit_code == 0, res.output
        assert "STAC item S2B_33UUB_20230612_0_L2A" in json.loads(res.stdout)["files"][0]["source"], source
    res = _run("info", f"{served_item}/raster", "--json")  # a raster at a URL without a suffix: still a raster
    assert res.exit_code == 0 and "STAC" not in (json.loads(res.stdout)["files"][0]["source"] or ""), res.output


def test_a_url_without_a_suffix_found_to_be_a_raster_is_not_fetched_again_at_each_look(served_item, monkeypatch):
    """Each look at such a URL (a run looks about ten times) fetched its start again to tell JSON from a raster
    (found in review: 72 MB served for a 50 MB file)."""
    from geosr.io import sources

    fetched = []
    real = sources.stac_item
    monkeypatch.setattr(sources, "stac_item", lambda path: fetched.append(path) or real(path))
    url = f"{served_item}/raster?look=1"
    assert sources.composite(url) is None and sources.composite(url) is None and len(fetched) == 1


def test_stac_round_trip_an_output_item_is_an_input(tmp_path):
    safe, _ = l2a_product(tmp_path)
    first = tmp_path / "first.tif"
    assert _run("upscale", safe, "-x", "2", "-m", "bicubic", "-o", first).exit_code == 0
    item = pystac.Item.from_file(str(first.with_name("first.stac.json")))
    # the core STAC schema pystac ships (extension schemas would be fetched from the web: not here)
    assert validate_dict(item.to_dict(), extensions=[]) == [
        "https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json"]
    bands = EOExtension.ext(item.assets["data"]).bands
    assert [(b.name, b.common_name) for b in bands] == [("B04", "red"), ("B03", "green"), ("B02", "blue")]
    assert item.properties["processing:software"]["geosr"] and item.assets["data"].href == "first.tif"
    second = tmp_path / "second.tif"
    res = _run("upscale", first.with_name("first.stac.json"), "-x", "2", "-m", "bicubic", "-o", second)
    assert res.exit_code == 0, res.output
    with rasterio.open(second) as ds, rasterio.open(first) as src:
        assert ds.shape == (src.height * 2, src.width * 2) and ds.crs == src.crs
        assert ds.scales == src.scales and ds.offsets == src.offsets


def test_a_sentinel2_l1c_product_with_band_ids_in_esa_order(tmp_path):
    safe, refl = l1c_product(tmp_path)
    with open_raster(str(safe)) as ds:
        assert ds.descriptions == BANDS_10M and ds.offsets == (-0.1,) * 4
        r = ds.read(3).astype(np.float64) * ds.scales[2] + ds.offsets[2]
    assert abs(r - refl["B04"]).max() < 1e-4
    assert "L1C" in composite(str(safe)).note


def test_a_level2a_img_data_folder_reads_its_10m_bands(tmp_path):
    safe, _ = l2a_product(tmp_path)
    img_data = next(safe.rglob("IMG_DATA"))
    with open_raster(str(img_data)) as ds:
        assert ds.descriptions == BANDS_10M and ds.res == (10.0, 10.0)


def test_a_changed_member_file_is_read_again(tmp_path):
    """The composite is cached per run, but never past a change to any file it reads."""
    band_files(tmp_path / "bands")
    folder = str(tmp_path / "bands")
    with open_raster(folder) as ds:
        assert ds.count == 4
    member = next((tmp_path / "bands").glob("*_B04_*.tif"))
    with rasterio.open(member) as src:
        profile = src.profile
    with rasterio.open(member, "w", **{**profile, "width": 20, "height": 16}) as dst:  # resized in place
        dst.write(np.full((1, 16, 20), 3, np.uint16))
    with open_raster(folder) as ds:  # B04 is no longer on the others' grid: left out
        assert ds.descriptions == ("B02", "B03", "B08")
    (tmp_path / "bands" / "item.json").write_text("{}")  # the folder's listing changed: still band files
    assert open_raster(folder).count == 3


def test_odd_stac_fields_and_broken_products_are_one_sentence(tmp_path):
    band_files(tmp_path / "s2")
    item_path = item_over_band_files(tmp_path / "s2")
    item = json.loads(item_path.read_text())
    for mangle, words in ((lambda a: a.update({"eo:bands": [None]}), "is not a list of objects"),
                          (lambda a: a.update({"raster:bands": {"nodata": 0}}), "is not a list of objects"),
                          (lambda a: a.update({"raster:bands": [{"scale": "x"}]}), 'is "x", not a finite number')):
        bad = json.loads(json.dumps(item))
        mangle(bad["assets"]["B04"])
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        res = _run("upscale", tmp_path / "bad.json", "-x", "2", "-o", tmp_path / "o.tif")
        assert res.exit_code == 2 and words in res.output and "bad.json" in res.output, res.output
    (tmp_path / "S2B_MSIL2A_broken.zip").write_bytes(b"PK\x03\x04 not really")
    res = _run("upscale", tmp_path / "S2B_MSIL2A_broken.zip", "-x", "2", "-o", tmp_path / "o.tif")
    assert res.exit_code == 2 and "not a readable zip file" in res.output
    safe, _ = l2a_product(tmp_path / "p")
    mtd = safe / "MTD_MSIL2A.xml"
    mtd.write_text(mtd.read_text().replace('band_id="3">-1000', 'band_id="3">minus'))
    res = _run("upscale", safe, "-x", "2", "-o", tmp_path / "o.tif")
    assert res.exit_code == 2 and "BOA_ADD_OFFSET of band_id 3 is not a number" in res.output
    assert not (tmp_path / "o.tif").exists()


def test_the_stac_sidecar_may_not_replace_an_input_item(tmp_path):
    band_files(tmp_path / "s2")
    item = item_over_band_files(tmp_path / "s2")
    before = item.read_bytes()
    res = _run("upscale", item, "--ref", item, "--cd", "none", "-x", "2", "-m", "reference-paste",
               "-o", tmp_path / "s2" / "item.tif", "--overwrite")  # its STAC item would be s2/item.stac.json: fine
    assert res.exit_code == 0, res.output
    target = tmp_path / "s2" / "ref.stac.json"
    target.write_bytes(before)
    res = _run("upscale", item, "--ref", target, "--cd", "none", "-x", "2", "-m", "reference-paste",
               "-o", tmp_path / "s2" / "ref.tif", "--overwrite")
    assert res.exit_code == 2 and "is the reference" in res.output
    assert target.read_bytes() == before


def test_a_batch_manifest_splits_band_lists_but_not_outputs_with_commas(tmp_path):
    from geosr.pipeline.batch.manifest import _absolute

    band_files(tmp_path / "b")
    f = sorted(p.name for p in (tmp_path / "b").glob("*_B0[34]_*.tif"))
    assert _absolute(f"{f[1]},{f[0]}", tmp_path / "b", many=True) == f"{tmp_path / 'b' / f[1]},{tmp_path / 'b' / f[0]}"
    assert _absolute("results/a,b.tif", tmp_path) == str(tmp_path / "results" / "a,b.tif")
    # one of them missing: still each against the manifest's folder (the run then names the missing one)
    assert _absolute(f"{f[1]},missing.tif", tmp_path / "b", many=True) == \
        f"{tmp_path / 'b' / f[1]},{tmp_path / 'b' / 'missing.tif'}"


def test_file_urls_in_a_stac_item_are_local_files(tmp_path):
    """An asset at file:///... is read, fingerprinted and protected from being overwritten like a local path."""
    band_files(tmp_path / "s2")
    item = json.loads(item_over_band_files(tmp_path / "s2").read_text())
    for asset in item["assets"].values():
        asset["href"] = (tmp_path / "s2" / asset["href"]).as_uri()
    (tmp_path / "s2" / "uri.json").write_text(json.dumps(item))
    red = next((tmp_path / "s2").glob("*_B04_*.tif"))
    assert str(red) in files_of(str(tmp_path / "s2" / "uri.json"))
    res = _run("upscale", tmp_path / "s2" / "uri.json", "-x", "2", "-m", "bicubic", "-o", red, "--overwrite")
    assert res.exit_code == 2 and "is the LR" in res.output


def test_stac_1_1_fields_shared_by_the_bands_may_be_the_asset_s(tmp_path):
    """STAC 1.1 puts what every band of an asset shares on the asset itself (`nodata`, `raster:scale`,
    `raster:offset`, `eo:common_name`; a single-band asset may have no `bands` at all): those were ignored, so the
    Sentinel-2 collar (DN 0) was read as data and the BOA offset lost. And a nodata of "-inf" was dropped."""
    band_files(tmp_path / "bands")
    item_path = item_over_band_files(tmp_path / "bands")
    item = json.loads(item_path.read_text())
    common = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir", "B05": "rededge"}
    for key, asset in item["assets"].items():
        if key in common:
            del asset["eo:bands"], asset["raster:bands"]
            asset.update({"nodata": 0, "raster:scale": 1e-4, "raster:offset": -0.1, "eo:common_name": common[key]})
            if key != "B02":  # B02 with a `bands` list naming it, the others with none
                continue
            asset["bands"] = [{"name": "B02"}]
    item["stac_version"] = "1.1.0"
    v11 = tmp_path / "bands" / "item11.json"
    v11.write_text(json.dumps(item))
    with open_raster(str(item_path)) as old, open_raster(str(v11)) as new:
        assert old.count == new.count == 4
        assert new.nodatavals == (0.0,) * 4 and new.scales == (1e-4,) * 4 and new.offsets == (-0.1,) * 4
        assert (old.nodatavals, old.scales) == (new.nodatavals, new.scales)
    item["assets"]["B04"]["nodata"] = "-inf"
    inf = tmp_path / "bands" / "item_inf.json"
    inf.write_text(json.dumps(item))
    assert "<NoDataValue>-inf</NoDataValue>" in composite(str(inf)).vrt


def _landsat(folder: Path, product: str, bands: tuple[int, ...], pan: int | None = None) -> list[Path]:
    """Single-band uint16 files named like a Landsat Collection 2 product's (DN 8000 + 100 x band), 30 m; ``pan``:
    that band at 15 m."""
    from rasterio.transform import from_origin

    folder.mkdir(exist_ok=True)
    files = []
    for b in bands:
        res, n = (15, 40) if b == pan else (30, 20)
        path = folder / f"{product}_B{b}.TIF"
        with rasterio.open(path, "w", driver="GTiff", width=n, height=n, count=1, dtype="uint16", nodata=0,
                           crs="EPSG:32610", transform=from_origin(500000, 4200000, res, res)) as ds:
            ds.write(np.full((1, n, n), 8000 + 100 * b, np.uint16))
        files.append(path)
    return files


def test_landsat_band_files_take_their_sensor_s_colours(tmp_path):
    """A Landsat 4-7 folder (or list) of band files was read in Sentinel-2's / OLI's colours: B4, B3, B2 by default,
    written as red, green, blue, though on TM / ETM+ they are near infrared, red and green (silently false colour).
    A Landsat 8/9 Level-1 folder stacked its 15 m panchromatic B8 alone, the finest grid, leaving out every
    multispectral band."""
    etm = tmp_path / "LE07_L2SP_044034_20200101_20200201_02_T1"
    _landsat(etm, f"{etm.name}_SR", (1, 2, 3, 4, 5, 7))
    out = tmp_path / "etm_x2.tif"
    res = _run("upscale", etm, "-x", 2, "-m", "bicubic", "-o", out)
    assert res.exit_code == 0, res.output
    with rasterio.open(out) as ds:
        assert ds.descriptions == ("B3", "B2", "B1") and [c.name for c in ds.colorinterp] == ["red", "green", "blue"]
        assert int(ds.read(1)[5, 5]) == 8300
    common = [b["common_name"] for b in json.loads(out.with_name("etm_x2.stac.json").read_text())["assets"]["data"]
              ["eo:bands"]]
    assert common == ["red", "green", "blue"]
    info = inspect_raster(str(etm))
    assert parse_bands("red,green,blue", info) == parse_bands("B3,B2,B1", info) == (3, 2, 1)
    assert parse_bands("B4,B3,B2", info) == (4, 3, 2)  # false colour, asked for by name, as the user says
    tm = _landsat(tmp_path / "tm", "LT05_L1TP_044034_19990101_20200901_02_T1", (4, 3, 2, 1))
    info = inspect_raster(",".join(map(str, tm)))
    assert [info.descriptions[b - 1] for b in parse_bands(None, info)] == ["B3", "B2", "B1"]

    oli = tmp_path / "LC09_L1TP_044034_20230101_20230102_02_T1"
    _landsat(oli, oli.name, (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11), pan=8)
    comp = composite(str(oli))
    assert "left out, on a finer grid: B8" in comp.note
    info = inspect_raster(str(oli))
    assert info.count == 10 and info.grid.res == (30.0, 30.0)
    assert [info.descriptions[b - 1] for b in parse_bands(None, info)] == ["B4", "B3", "B2"]


def test_narrow_common_names_select_landsat_and_sentinel_2_bands(tmp_path):
    """``--bands swir16`` (STAC's common names nir08, swir16, swir22) said a Landsat folder "has no band", and
    ``swir22`` on a Sentinel-2 stack did too: their SWIR bands differ on each satellite (found in review)."""
    from rasterio.transform import from_origin

    oli = tmp_path / "LC09_L2SP_044034_20230101_20230102_02_T1"
    _landsat(oli, f"{oli.name}_SR", (1, 2, 3, 4, 5, 6, 7))
    etm = tmp_path / "LE07_L2SP_044034_20200101_20200201_02_T1"
    _landsat(etm, f"{etm.name}_SR", (1, 2, 3, 4, 5, 7))
    # (MSS: two NIR bands, nir08 and nir09, numbered 3-4 on Landsat 4-5, 6-7 on Landsat 1-3; found in review)
    mss = tmp_path / "LM05_L1TP_044034_19900101_20200901_02_T2"
    _landsat(mss, mss.name, (1, 2, 3, 4))
    mss1 = tmp_path / "LM01_L1GS_044034_19740101_20200901_02_T2"
    _landsat(mss1, mss1.name, (4, 5, 6, 7))
    for folder, spec, want in ((oli, "nir08,swir16,swir22", ("B5", "B6", "B7")),
                               (etm, "nir08,swir16,swir22", ("B4", "B5", "B7")),
                               (mss, "nir08,nir09", ("B3", "B4")), (mss1, "nir08,nir09", ("B6", "B7"))):
        for given in (str(folder), ",".join(str(f) for f in sorted(folder.iterdir()))):  # a folder, a file list
            info = inspect_raster(given)
            assert [info.descriptions[b - 1] for b in parse_bands(spec, info)] == list(want), given
    s2 = tmp_path / "s2.tif"
    with rasterio.open(s2, "w", driver="GTiff", width=8, height=8, count=5, dtype="uint16", crs="EPSG:32633",
                       transform=from_origin(0, 80, 10, 10)) as ds:
        ds.write(np.arange(1, 6, dtype=np.uint16)[:, None, None] * np.ones((5, 8, 8), np.uint16))
        ds.descriptions = ("B04", "B08", "B8A", "B11", "B12")
    info = inspect_raster(str(s2))
    assert parse_bands("swir22,swir16,nir08,nir", info) == (5, 4, 3, 2)
    out = tmp_path / "oli_x2.tif"
    res = _run("upscale", oli, "--bands", "swir22,swir16,nir08", "-x", 2, "-m", "bicubic", "-o", out)
    assert res.exit_code == 0, res.output
    with rasterio.open(out) as ds:
        assert ds.descriptions == ("B7", "B6", "B5") and int(ds.read(1)[5, 5]) == 8700
    common = [b["common_name"] for b in json.loads(out.with_name("oli_x2.stac.json").read_text())["assets"]["data"]
              ["eo:bands"]]
    assert common == ["swir22", "swir16", "nir"]  # (an output's NIR band: its sensor is no longer known)


def test_a_landsat_7_level_1_folder_with_its_two_thermal_gains_is_read(tmp_path):
    """Landsat 7 Level-1 products ship band 6 twice (low and high gain: ..._B6_VCID_1.TIF, ..._B6_VCID_2.TIF): the
    folder was refused as holding two files of band B6."""
    import shutil as sh

    etm = tmp_path / "LE07_L1TP_044034_20200101_20200127_02_T1"
    files = _landsat(etm, etm.name, (1, 2, 3, 4, 5, 6, 7, 8), pan=8)
    six = next(f for f in files if f.name.endswith("_B6.TIF"))
    for gain in (1, 2):
        sh.copy(six, six.with_name(six.name.replace("_B6.TIF", f"_B6_VCID_{gain}.TIF")))
    six.unlink()
    info = inspect_raster(str(etm))
    assert info.descriptions == ("B1", "B2", "B3", "B4", "B5", "B6_VCID_1", "B6_VCID_2", "B7"), info.descriptions
    assert "left out, on a finer grid: B8" in composite(str(etm)).note
    assert [info.descriptions[b - 1] for b in parse_bands(None, info)] == ["B3", "B2", "B1"]
    assert parse_bands("B6_VCID_2", info) == (7,)
    res = _run("upscale", etm, "-x", 2, "-m", "bicubic", "-o", tmp_path / "etm.tif")
    assert res.exit_code == 0, res.output


def test_a_byte_geotiff_s_own_red_green_blue_marks_do_not_override_its_band_names(tmp_path):
    """GDAL marks bands 1-3 of any 3-band byte GeoTIFF red, green, blue: a Sentinel-2 stack written B02, B03, B04
    (blue first) is still read by its names."""
    from conftest import make_raster

    path = make_raster(tmp_path / "s2.tif", np.zeros((3, 8, 8), np.uint8))
    with rasterio.open(path, "r+") as ds:
        ds.descriptions = ("B02", "B03", "B04")
        assert [c.name for c in ds.colorinterp] == ["red", "green", "blue"]
    assert parse_bands(None, inspect_raster(str(path))) == (3, 2, 1)


@pytest.mark.parametrize("mangle, words", [
    (lambda i: i.update({"assets": [1, 2]}), "its assets are not an object of objects"),
    (lambda i: i["assets"].update({"B04": "B04.tif"}), "its assets are not an object of objects"),
    (lambda i: i.update({"properties": None}), "its properties are not an object"),
    (lambda i: i["assets"]["B04"].update({"type": 5}), "the type of asset 'B04' is not a media type"),
    (lambda i: i["assets"]["B04"].update({"roles": "data"}), "the roles of asset 'B04' are not a list of texts"),
    (lambda i: i["assets"]["B04"]["raster:bands"][0].update({"nodata": True}), "nodata of asset 'B04' band 1 is true"),
    (lambda i: i["assets"]["B04"]["raster:bands"][0].update({"nodata": "0"}), 'is "0", not a number nor "nan"'),
    (lambda i: i["assets"]["B04"]["raster:bands"][0].update({"scale": 0}), "is 0, not a finite number other than 0"),
    (lambda i: i["assets"]["B04"].update({"eo:bands": [{"name": "B04", "common_name": "red"},
                                                       {"name": "x", "common_name": "coastal"}]}),
     "names band 2 (coastal) in T33UUB_20230612T101031_B04_10m.tif, which holds 1 band"),
], ids=["assets-list", "asset-text", "properties-null", "type-number", "roles-text", "nodata-bool", "nodata-text",
        "scale-0", "more-bands-than-the-file"])
def test_a_stac_item_of_the_wrong_shape_is_one_sentence_not_an_internal_error(tmp_path, mangle, words):
    """pystac trusts the JSON's types: a list of assets, a null `properties`, a numeric media type or an asset that
    lists more bands than its file holds were internal errors (exit 1); a nodata of true or "0" read as 1 or as
    none, a scale of 0 made every value 0."""
    band_files(tmp_path / "s2")
    item = json.loads(item_over_band_files(tmp_path / "s2").read_text())
    mangle(item)
    (tmp_path / "s2" / "bad.json").write_text(json.dumps(item))
    for command in (["info"], ["upscale", "-x", "2", "-o", tmp_path / "o.tif"]):
        res = _run(*command, tmp_path / "s2" / "bad.json")
        assert res.exit_code == 2 and words in " ".join(res.output.split()), res.output
    assert not (tmp_path / "o.tif").exists()


def test_a_stac_item_as_gdal_s_vsicurl_path_is_read_and_other_schemes_are_one_sentence(served_item, tmp_path):
    """A STAC item named as GDAL's /vsicurl/ path (the docs' "a URL or a GDAL path") was an internal error
    (urllib: "unknown url type"); at s3:// or gs:// it was called a network failure, which geosr batch would retry
    though no retry can succeed."""
    out = tmp_path / "out.tif"
    res = _run("upscale", f"/vsicurl/{served_item}/item.json", "-x", "2", "-m", "bicubic", "-o", out)
    assert res.exit_code == 0, res.output
    with rasterio.open(out) as ds:
        assert ds.count == 3 and ds.shape == (80, 96)
    for path in ("s3://bucket/item.json", "gs://bucket/item.json", f"/vsizip/{tmp_path}/a.zip/item.json"):
        res = _run("upscale", path, "-x", "2", "-m", "bicubic", "-o", tmp_path / "o.tif")
        assert res.exit_code == 2, res.output
        assert " ".join(res.output.split()) == (f"geosr: error: {path}: a STAC item is read from a local file or an "
                                                "http(s) URL; download it, or give its https URL")
    assert not (tmp_path / "o.tif").exists()


def test_a_stac_asset_s_null_type_or_roles_read_as_absent(tmp_path):
    """`"type": null` or `"roles": null` (pystac reads them as absent) made the shape check refuse the whole item,
    even on an asset geosr never reads (found in review)."""
    band_files(tmp_path / "s2")
    item = json.loads(item_over_band_files(tmp_path / "s2").read_text())
    item["assets"]["B02"].update({"type": None, "roles": None})
    (tmp_path / "s2" / "nulls.json").write_text(json.dumps(item))
    res = _run("upscale", tmp_path / "s2" / "nulls.json", "-x", "2", "-m", "bicubic", "-o", tmp_path / "o.tif")
    assert res.exit_code == 0, res.output


def test_band_files_in_one_crs_spelled_two_ways_stack_and_pixel_sizes_compare_in_metres(tmp_path):
    """GDAL's HFA driver (.img) writes EPSG:32633's WKT with UNIT["meters",1], GeoTIFF with UNIT["metre",1,...]:
    the grids were compared as WKT text, so such a band was "not on the grid" (a list refused, a folder leaving out
    its green: false colour). And the finest band was found by comparing pixel sizes in degrees with metres, so a
    band at 0.001 degrees (about 70 m) beside 10 m ones was taken as the finest and the 10 m ones left out."""
    from rasterio.transform import from_origin

    def write(path: Path, driver: str, crs: str, transform, size: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(path, "w", driver=driver, width=size, height=size, count=1, dtype="uint16", crs=crs,
                           transform=transform) as dst:
            dst.write(np.full((1, size, size), 100 + len(path.name), np.uint16))

    utm = from_origin(500000.0, 5800000.0, 10.0, 10.0)
    for band, driver in (("B02", "GTiff"), ("B03", "HFA"), ("B04", "GTiff")):
        write(tmp_path / "bl" / f"{band}.{'img' if driver == 'HFA' else 'tif'}", driver, "EPSG:32633", utm, 32)
    with rasterio.open(tmp_path / "bl" / "B03.img") as a, rasterio.open(tmp_path / "bl" / "B02.tif") as b:
        assert a.crs.to_wkt() != b.crs.to_wkt() and a.crs == b.crs  # the premise
    listed = ",".join(str(tmp_path / "bl" / n) for n in ("B04.tif", "B03.img", "B02.tif"))
    assert inspect_raster(listed).count == 3
    assert inspect_raster(str(tmp_path / "bl")).descriptions == ("B02", "B03", "B04")
    for band in ("B02", "B03", "B04"):
        write(tmp_path / "geo" / f"{band}.tif", "GTiff", "EPSG:32633", utm, 32)
    write(tmp_path / "geo" / "B08.tif", "GTiff", "EPSG:4326", from_origin(15.0, 52.3, 0.001, 0.001), 8)
    info = inspect_raster(str(tmp_path / "geo"))
    assert info.descriptions == ("B02", "B03", "B04") and info.grid.res == (10.0, 10.0), info.descriptions
    assert "left out, on a coarser or other grid: B08" in composite(str(tmp_path / "geo")).note


def test_a_stac_item_saved_as_geojson_is_read_as_one(tmp_path):
    """A STAC item saved as `.geojson` (a GeoJSON Feature, as tools often name it) was opened by GDAL's STACIT
    driver as "a container of 6 rasters"; the names that message listed were then "no such file"."""
    band_files(tmp_path / "s2")
    item = item_over_band_files(tmp_path / "s2")
    shutil.copy(item, item.with_suffix(".geojson"))
    for source, out in ((item, "json.tif"), (item.with_suffix(".geojson"), "geojson.tif")):
        res = _run("upscale", source, "-x", "2", "-m", "bicubic", "-o", tmp_path / out)
        assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "json.tif") as a, rasterio.open(tmp_path / "geojson.tif") as b:
        assert np.array_equal(a.read(), b.read()) and a.descriptions == b.descriptions
    (tmp_path / "fc.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    res = _run("info", tmp_path / "fc.geojson")
    assert res.exit_code == 2 and "fc.geojson: is JSON but not a STAC item" in " ".join(res.output.split())
