"""A corrupt block in the LR, the change mask or the map: exit 2 naming the file, nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from affine import Affine
from typer.testing import CliRunner

from conftest import make_raster, smooth_field
from geosr.cli.app import app
from geosr.errors import NotARasterError

runner = CliRunner()
H, W = 48, 64


def _corrupt(path, row: int = 1, col: int = 1) -> None:
    """Overwrite the compressed bytes of block (row, col) of band 1 with garbage."""
    with rasterio.open(path) as ds:
        off = int(ds.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=1))
        size = int(ds.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=1))
    data = bytearray(path.read_bytes())
    data[off : off + size] = b"\xff" * size
    path.write_bytes(bytes(data))


def _tiled(path, data, **kw):
    return make_raster(path, data, tiled=True, blockxsize=16, blockysize=16, compress="deflate", **kw)


BICUBIC_X2 = ["-x", "2", "--model", "bicubic"]


@pytest.fixture
def lr(tmp_path):
    return _tiled(tmp_path / "lr.tif", (smooth_field(3, H, W) * 255).astype(np.uint8))


def _classes(seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((1, H, W)) > 0.7).astype(np.uint8)


def _argv(tmp_path, lr, which: str, map_model=None) -> tuple[list[str], str]:
    out = str(tmp_path / "out.tif")
    if which == "lr":
        _corrupt(lr)
        return ["upscale", str(lr), "-x", "2", "--model", "bicubic", "-o", out], str(lr)
    if which == "cd":
        cd = _corrupt_copy(_tiled(tmp_path / "cd.tif", _classes(1)))
        # (a mask is read with a reference, by a model that uses both)
        return ["upscale", str(lr), "--ref", str(lr), "--cd", str(cd), "-x", "2", "--model", "reference-paste", "-o",
                out], str(cd)
    if which == "map":
        m = _corrupt_copy(_tiled(tmp_path / "map.tif", _classes(2)))
        # (read by a model that uses a map: one a model does not use is not read)
        return ["upscale", str(lr), "--map", str(m), "-x", "2", "--model", str(map_model), "-o", out], str(m)
    if which == "map-tagged":  # its class count comes from the tag: the corrupt block is met reading windows
        m = _tiled(tmp_path / "map.tif", _classes(3))
        with rasterio.open(m, "r+") as ds:
            ds.update_tags(GEOSR_MAP_CLASSES=json.dumps(["other", "building"]))
        _corrupt(m)
        return ["upscale", str(lr), "--map", str(m), "-x", "2", "--model", str(map_model), "-o", out], str(m)
    raise AssertionError(which)


def _corrupt_copy(path):
    _corrupt(path)
    return path


@pytest.mark.parametrize("which", ["lr", "cd", "map", "map-tagged"])
def test_a_corrupt_block_exits_2_naming_the_file(tmp_path, lr, which, map_model):
    argv, name = _argv(tmp_path, lr, which, map_model)
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, (result.exit_code, result.output, result.stderr, result.exception)
    message = result.stderr.strip().splitlines()[-1]  # (a run that got going drew its progress bar above)
    assert message.startswith("geosr: error:"), message
    assert f"{name}: pixels cannot be read, the file may be corrupt (" in message, message
    assert not (tmp_path / "out.tif").exists()


@pytest.mark.parametrize("which", ["lr", "cd", "map"])
def test_library_raises_not_a_raster_error(tmp_path, lr, which, map_model):
    from geosr.pipeline.upscale import plan_upscale

    argv, name = _argv(tmp_path, lr, which, map_model)
    kw = {k: argv[argv.index(f"--{k}") + 1] for k in ("ref", "cd", "map", "model") if f"--{k}" in argv}
    with pytest.raises(NotARasterError, match="pixels cannot be read, the file may be corrupt") as info:
        plan_upscale(lr, output=None, scale=2, dry_run=True, **kw).close()
    assert name in str(info.value)


def test_complex_pixels_and_gcp_only_georeferencing_are_refused_in_one_sentence(tmp_path):
    """A complex raster (SAR) was cast to its real part and the run then failed in the COG writer (exit 1, a part
    of the output renamed into place); a raster georeferenced by GCPs alone was told to assign a CRS, which would
    not place it."""
    from rasterio.control import GroundControlPoint

    sar = make_raster(tmp_path / "slc.tif", (np.ones((1, 16, 16)) * (1 + 2j)).astype(np.complex64))
    r = runner.invoke(app, ["upscale", str(sar), "-o", str(tmp_path / "a.tif"), *BICUBIC_X2])
    assert r.exit_code == 2 and "complex values" in r.output and "slc.tif" in r.output, r.output
    # Sentinel-1's SLC pixels, complex integers, which numpy has no type for (an internal error, exit 1; review)
    with rasterio.open(tmp_path / "cint16.tif", "w", driver="GTiff", width=16, height=16, count=1,
                       dtype="complex_int16", crs="EPSG:32633", transform=Affine(10, 0, 500000, 0, -10, 5000000)):
        pass
    lr = make_raster(tmp_path / "lr.tif", np.ones((3, 16, 16), np.uint8))
    for args in (["upscale", str(tmp_path / "cint16.tif"), *BICUBIC_X2],
                 ["upscale", str(lr), "--ref", str(tmp_path / "cint16.tif"), "--cd", "none", "-m", "reference-paste",
                  "-x", "2"]):
        r = runner.invoke(app, [*args, "-o", str(tmp_path / "a.tif")])
        assert r.exit_code == 2 and "cint16.tif: holds complex values (complex_int16" in r.output, r.output
    assert runner.invoke(app, ["info", str(tmp_path / "cint16.tif")]).exit_code == 0
    gcps = [GroundControlPoint(row, col, 500000 + col * 10, 5000000 - row * 10)
            for row, col in ((0, 0), (0, 16), (16, 0), (16, 16))]
    gcp = make_raster(tmp_path / "gcp.tif", np.ones((3, 16, 16), np.uint8), crs=None, transform=Affine.identity())
    with rasterio.open(gcp, "r+") as ds:
        ds.gcps = (gcps, rasterio.crs.CRS.from_epsg(32633))
    r = runner.invoke(app, ["upscale", str(gcp), "-o", str(tmp_path / "b.tif"), *BICUBIC_X2])
    # the points' own CRS named, and advised (it was "NO CRS" and "-t_srs EPSG:<code>"; found in review)
    assert r.exit_code == 2 and "gcp.tif: is georeferenced by 4 ground control points in EPSG:32633 only" in r.output \
        and "gdalwarp -t_srs EPSG:32633" in r.output, r.output
    info = runner.invoke(app, ["info", str(gcp), "--json"])
    described = json.loads(info.output)["files"][0]
    assert described["gcps"] == 4 and described["res"] is None and described["bounds"] is None
    assert described["crs"] is None and described["gcp_crs"] == "EPSG:32633"
    said = runner.invoke(app, ["info", str(gcp)]).output
    assert "no geotransform" in said and "4 ground control points in EPSG:32633" in said
    assert not list(tmp_path.glob("[ab]*"))


def test_info_says_a_truncated_file_cannot_be_read(tmp_path):
    """`info -q` exited 0 for a file cut short (its header reads whole), where upscale refuses it (exit 2)."""
    whole = make_raster(tmp_path / "whole.tif", (smooth_field(3, 128, 128, seed=1) * 255).astype(np.uint8))
    cut = tmp_path / "cut.tif"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    assert runner.invoke(app, ["info", "-q", str(whole)]).exit_code == 0
    res = runner.invoke(app, ["info", "-q", str(cut)])
    assert res.exit_code == 2 and "cut.tif: pixels cannot be read, the file may be corrupt" in res.output, res.output


@pytest.mark.parametrize("cut, tag", [(40, "GDALMetadata"), (900, "GeoKeyDirectory")])
def test_a_file_cut_short_of_its_last_tags_is_refused_not_read_without_them(tmp_path, cut, tag):
    """Found by review: a GeoTIFF whose tag directory ends the file, cut a few bytes short, opened with a GDAL
    warning only: info exited 0 and upscale wrote all bands with scale 1 and offset 0 (band names, scales lost),
    or, cut further, refused it for having no CRS."""
    data = np.full((4, 64, 64), 1000, np.uint16)
    whole = make_raster(tmp_path / "whole.tif", data, descriptions=("B02", "B03", "B04", "B08"))
    with rasterio.open(whole, "r+") as ds:
        ds.scales, ds.offsets = (1e-4,) * 4, (-0.1,) * 4
    short = tmp_path / "short.tif"
    short.write_bytes(whole.read_bytes()[:-cut])
    assert runner.invoke(app, ["info", "-q", str(whole)]).exit_code == 0
    said = f"short.tif: is truncated or corrupt: its TIFF tag {tag} cannot be read"
    for args in (["info", "-q", str(short)], ["upscale", str(short), "-x", "2", "-m", "bicubic", "-o",
                                                  str(tmp_path / "o.tif")]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and said in res.output, res.output
    assert not (tmp_path / "o.tif").exists()
    # one file of a band folder cut so: stacked with scale 1 and offset 0 beside its scaled neighbours, or "has no
    # coordinate reference system" (found in review)
    folder = tmp_path / "bands"
    folder.mkdir()
    for band in ("B02", "B03", "B04"):
        one = make_raster(folder / f"scene_{band}.tif", data[:1], descriptions=(band,))
        with rasterio.open(one, "r+") as ds:
            ds.scales, ds.offsets = (1e-4,), (-0.1,)
    b04 = folder / "scene_B04.tif"
    b04.write_bytes(b04.read_bytes()[:-cut])
    res = runner.invoke(app, ["upscale", str(folder), "-x", "2", "-m", "bicubic", "-o", str(tmp_path / "o.tif")])
    said = " ".join(res.output.split())  # (cut as far, a smaller file loses its tag directory: "cannot be read")
    assert res.exit_code == 2 and (f"bands: its band file {b04} is truncated or corrupt: its TIFF tag {tag} cannot "
                                   "be read" in said or f"bands: its band file {b04} cannot be read (" in said), said
    assert not (tmp_path / "o.tif").exists()


def test_info_reads_the_end_of_every_file_a_multi_file_input_stacks(tmp_path):
    """Found by review: `info -q` read the last block of the last band only, one member file of a band folder or a
    product, so a cut-short B04 (in the default RGB) passed (exit 0) while upscale refused it (exit 2)."""
    folder = tmp_path / "bands"
    folder.mkdir()
    for band, seed in (("B02", 1), ("B03", 2), ("B04", 3), ("B08", 4)):
        make_raster(folder / f"T33UUB_20230612T101031_{band}_10m.tif",
                    (smooth_field(1, 128, 128, seed=seed) * 4000).astype(np.uint16))
    assert runner.invoke(app, ["info", "-q", str(folder)]).exit_code == 0
    b04 = folder / "T33UUB_20230612T101031_B04_10m.tif"
    b04.write_bytes(b04.read_bytes()[: b04.stat().st_size * 2 // 3])
    res = runner.invoke(app, ["info", "-q", str(folder)])
    assert res.exit_code == 2 and "pixels cannot be read" in res.output, res.output
    listed = ",".join(str(folder / f"T33UUB_20230612T101031_{b}_10m.tif") for b in ("B04", "B03", "B02"))
    assert runner.invoke(app, ["info", "-q", listed]).exit_code == 2


def test_info_says_the_overlap_with_a_raster_without_crs_is_unknown(tmp_path):
    """A raster without a CRS was left out of the overlap report without a word (text and --json)."""
    geo = make_raster(tmp_path / "geo.tif", np.zeros((1, 8, 8), np.uint8))
    with rasterio.open(tmp_path / "plain.tif", "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8",
                       transform=Affine(1, 0, 0, 0, -1, 8)) as ds:
        ds.write(np.zeros((1, 8, 8), np.uint8))
    res = runner.invoke(app, ["info", str(geo), str(tmp_path / "plain.tif"), "--json"])
    assert json.loads(res.stdout)["overlaps"] == [
        {"file": str(geo), "other": str(tmp_path / "plain.tif"), "covered": None},
        {"file": str(tmp_path / "plain.tif"), "other": str(geo), "covered": None}]
    res = runner.invoke(app, ["info", str(geo), str(tmp_path / "plain.tif")])
    assert f"is unknown: {tmp_path / 'plain.tif'} has no CRS" in res.output, res.output
    # a CRS and no geotransform: "covers 100.0%", from GDAL's stand-in pixel 1 x 1 at the origin (found in review)
    with rasterio.open(tmp_path / "nogt.tif", "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8",
                       crs="EPSG:4326") as ds:
        ds.write(np.zeros((1, 8, 8), np.uint8))
    world = make_raster(tmp_path / "world.tif", np.zeros((1, 18, 36), np.uint8), crs="EPSG:4326",
                        transform=Affine(10, 0, -180, 0, -10, 90))
    res = runner.invoke(app, ["info", str(world), str(tmp_path / "nogt.tif"), "--json"])
    assert [o["covered"] for o in json.loads(res.stdout)["overlaps"]] == [None, None], res.output
    res = runner.invoke(app, ["info", str(world), str(tmp_path / "nogt.tif")])
    assert f"is unknown: {tmp_path / 'nogt.tif'} has no geotransform" in " ".join(res.output.split()), res.output


def test_info_read_all_finds_a_damaged_block_in_the_middle(tmp_path, lr):
    """`geosr info -q` read the last block only, so a file with a damaged block elsewhere passed (exit 0) while
    upscale refused it; `--read-all` reads every block."""
    _corrupt(lr)
    assert runner.invoke(app, ["info", "-q", str(lr)]).exit_code == 0  # the last block reads: as documented
    res = runner.invoke(app, ["info", "-q", "--read-all", str(lr)])
    assert res.exit_code == 2 and f"{lr}: pixels cannot be read" in res.output, res.output


def test_bands_of_several_data_types_are_refused_in_one_sentence(tmp_path):
    """A VRT mixing Byte and UInt16 bands was an internal error (rasterio reads no such selection at once)."""
    a = make_raster(tmp_path / "a.tif", (smooth_field(2, 20, 24) * 255).astype(np.uint8))
    make_raster(tmp_path / "b.tif", (smooth_field(1, 20, 24) * 4000).astype(np.uint16))
    band = ('<VRTRasterBand dataType="{t}" band="{i}"><SimpleSource><SourceFilename relativeToVRT="1">{f}'
            '</SourceFilename><SourceBand>{s}</SourceBand></SimpleSource></VRTRasterBand>')
    with rasterio.open(a) as ds:
        geo = ", ".join(str(v) for v in ds.transform.to_gdal())
        crs = ds.crs.to_wkt()
    bands = [("Byte", "a.tif", 1), ("UInt16", "b.tif", 1), ("Byte", "a.tif", 2)]
    (tmp_path / "mixed.vrt").write_text(
        f'<VRTDataset rasterXSize="24" rasterYSize="20"><SRS>{crs}</SRS><GeoTransform>{geo}</GeoTransform>'
        + "".join(band.format(t=t, i=i + 1, f=f, s=s) for i, (t, f, s) in enumerate(bands)) + "</VRTDataset>")
    out = tmp_path / "o.tif"
    res = runner.invoke(app, ["upscale", str(tmp_path / "mixed.vrt"), "-x", "2", "-m", "bicubic", "-o", str(out)])
    assert res.exit_code == 2 and "are of several data types (uint16 and uint8)" in res.output, res.output
    assert "gdal_translate -ot UInt16" in res.output and not out.exists()
    res = runner.invoke(app, ["upscale", str(tmp_path / "mixed.vrt"), "--bands", "1,3", "-x", "2", "-m", "bicubic",
                              "-o", str(out)])
    assert res.exit_code == 0 and out.exists(), res.output
    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 10, 12) * 255).astype(np.uint8),
                     transform=Affine(20, 0, 500000, 0, -20, 5000000))  # (make_raster's grid, 2x coarser)
    res = runner.invoke(app, ["upscale", str(lr), "--ref", str(tmp_path / "mixed.vrt"), "-x", "2", "-m",
                              "reference-paste", "-o", str(tmp_path / "r.tif")])  # a reference of them reads
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("transform, crs, said", [
    (Affine(0, 0, 500000, 0, 0, 5000000), "EPSG:32633", "gives its pixels no area"),  # a pixel size of 0
    (Affine(10, 10, 500000, 10, 10, 5000000), "EPSG:32633", "gives its pixels no area"),  # parallel axes
    (Affine(1, 0, 10, 0, -1, 100), "EPSG:4326", "reaches latitude 100, beyond the poles"),
    (Affine(5e-6, 0, -97.98, 0, -5e-6, 30.2), "EPSG:4326", None),  # 0.5 m pixels in degrees: an area of 2.5e-11
])
def test_a_grid_that_maps_pixels_nowhere_is_refused_naming_the_lr(tmp_path, transform, crs, said):
    """(Found black-box.) A geotransform with a zero pixel size or parallel axes ran and wrote a COG whose transform
    had determinant 0 (with a reference: "the reference does not overlap", naming the wrong file); a geographic grid
    reaching latitude 100 ran too."""
    lr = make_raster(tmp_path / "lr.tif", np.zeros((3, 20, 20), np.uint8), crs=crs, transform=transform)
    out = tmp_path / "o.tif"
    res = runner.invoke(app, ["upscale", str(lr), "-x", "3", "-m", "bicubic", "-o", str(out)])
    if said is None:  # a fine grid is no singular one
        assert res.exit_code == 0 and out.exists(), res.output
        return
    assert res.exit_code == 2 and f"{lr}: " in res.output and said in res.output, res.output
    assert not out.exists()


@pytest.mark.parametrize("tags", [
    {"GEOSR_MODEL": "bicubic", "GEOSR_INPUTS": "lr.tif"},
    {"GEOSR_PROVENANCE": json.dumps({"path": "p.tif", "shares": [0.5, 0.5]})},
    {"GEOSR_PROVENANCE": json.dumps({"path": "p.tif", "shares": {"model only": "half"}})},
    {"GEOSR_CHANGE_DETECTION": json.dumps({"ran": True})},
    {"GEOSR_CHANGE_DETECTION": json.dumps({"method": "auto", "refine": "2"})},
    {"GEOSR_COREGISTRATION": json.dumps({"field": True})},
])
def test_info_shows_geosr_tags_of_another_shape_as_they_are(tmp_path, tags):
    """Found by review: tags named as geosr's but of another shape (edited by hand, another tool's) made info crash
    with a traceback (exit 1)."""
    path = make_raster(tmp_path / "x.tif", np.zeros((3, 8, 8), np.uint8))
    with rasterio.open(path, "r+") as ds:
        ds.update_tags(**tags)
    res = runner.invoke(app, ["info", str(path)])
    assert res.exit_code == 0 and res.exception is None, res.output
    assert runner.invoke(app, ["info", "--json", str(path)]).exit_code == 0


def test_a_truncated_file_of_the_same_name_read_in_another_thread_fails_only_itself(tmp_path):
    """Found by review: GDAL names the file by its base name, so another thread's truncated lr.tif failed this
    thread's intact lr.tif (110 of 1000 opens on 4 threads)."""
    import logging
    import threading

    from geosr.io import rasters

    said = 'CPLE_AppDefined in lr.tif: TIFFFetchNormalTag:IO error during reading of "GDALMetadata"; tag ignored'
    with rasters.unread_tags(str(tmp_path / "a" / "lr.tif")) as unread:
        other = threading.Thread(target=lambda: logging.getLogger("rasterio._env").warning(said))
        other.start()
        other.join()
        assert unread == []
        logging.getLogger("rasterio._env").warning(said)
    assert unread == ["GDALMetadata"]


def test_a_vrt_whose_source_is_gone_is_named_as_such_in_one_line(tmp_path):
    """A VRT whose source file was moved was called possibly corrupt, and GDAL's own "ERROR 4: ..." line was printed
    on stderr before geosr's sentence (found in review)."""
    import subprocess
    import sys

    import rasterio.shutil

    src = make_raster(tmp_path / "src.tif", (smooth_field(3, H, W, 4) * 200 + 20).astype(np.uint8))
    rasterio.shutil.copy(src, tmp_path / "m.vrt", driver="VRT")
    src.rename(tmp_path / "moved.tif")
    done = subprocess.run([sys.executable, "-m", "geosr", "upscale", "m.vrt", *BICUBIC_X2, "-o", "o.tif", "-q"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr == ("geosr: error: m.vrt: pixels cannot be read, its source file "
                                                    "src.tif does not exist\n"), done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.vrt", "moved.tif"]


def test_a_band_with_a_scale_of_0_is_refused_unless_left_out(tmp_path):
    """A band whose metadata says scale 0 was written as zeros (every value read as its offset, numpy's "invalid
    value encountered in divide" on stderr), exit 0 (found in review): refused, naming the band; the others run."""
    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 16, 16) * 200 + 20).astype(np.uint16))
    with rasterio.open(lr, "r+") as ds:
        ds.scales = (0.0, 1.0, 1.0)
    res = runner.invoke(app, ["upscale", str(lr), "-x", "2", "-m", "bicubic", "-o", str(tmp_path / "o.tif")])
    said = " ".join(res.output.split())
    assert res.exit_code == 2 and "band 1 has a scale of 0" in said, said
    assert f"gdal_edit.py -scale 1 1 1 {lr}, one value per band" in said, said  # (one value would set every band's)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr.tif"]
    res = runner.invoke(app, ["upscale", str(lr), "-x", "2", "-m", "bicubic", "-o", str(tmp_path / "o.tif"),
                              "--bands", "2,3"])
    assert res.exit_code == 0, res.output
