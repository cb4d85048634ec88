"""Class rasters carry their class names where GDAL and QGIS read them (issue 20.7): category names and a
thematic raster attribute table for the change mask, the OSM map and the provenance sidecar; a replaced output
never keeps the names of the file it replaced."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import rasterio
from affine import Affine
from tests.conftest import smooth_field
from tests.gdal_pam import class_names
from tests.range_server import serving
from tests.s2_products import band_files

from geosr import detect_changes, upscale
from geosr.io.paths import pam_path
from geosr.io.rasters import open_raster
from geosr.io.writer import OutputMeta, write_cog
from geosr.pipeline.provenance import CLASSES
from geosr.tiling.grid import Grid


def test_a_class_raster_gets_category_names_and_an_attribute_table(tmp_path):
    grid = Grid("EPSG:32633", Affine(10.0, 0, 300000.0, 0, -10.0, 5600000.0), 16, 8)
    data = np.zeros((1, 8, 16), np.uint8)
    data[0, :, 8:] = 3
    meta = OutputMeta(dtype="uint8", count=1, categories={0: "background", 3: "water"}, overview_resampling="mode",
                      colormap={0: (0, 0, 0, 0), 3: (20, 40, 200, 255)})
    out = tmp_path / "classes.tif"
    write_cog(out, data, grid, meta)
    cats, rows = class_names(out)
    assert cats == ["background", "", "", "water"]
    assert rows == [{"Value": "0", "Class": "background", "Red": "0", "Green": "0", "Blue": "0", "Alpha": "0"},
                    {"Value": "3", "Class": "water", "Red": "20", "Green": "40", "Blue": "200", "Alpha": "255"}]
    write_cog(out, data, grid, OutputMeta(dtype="uint8", count=1), folder=tmp_path)  # replaced by other pixels
    assert not pam_path(out).exists() and class_names(out) == ([], [])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classes.tif"]  # no temporary file left


def test_a_replacement_stopped_while_the_cog_is_made_keeps_the_old_file_s_class_names(tmp_path, monkeypatch):
    """Found black-box: the old output's `.aux.xml` was removed before the COG conversion, so a run with
    `overwrite` killed during it left the old pixels without their class names."""
    import rasterio.shutil

    grid = Grid("EPSG:32633", Affine(10.0, 0, 300000.0, 0, -10.0, 5600000.0), 16, 8)
    data = np.zeros((1, 8, 16), np.uint8)
    meta = OutputMeta(dtype="uint8", count=1, categories={0: "background", 1: "changed"}, overview_resampling="mode")
    out = tmp_path / "classes.tif"
    write_cog(out, data, grid, meta)
    before = (out.read_bytes(), pam_path(out).read_bytes())

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rasterio.shutil, "copy", killed)
    with pytest.raises(KeyboardInterrupt):
        write_cog(out, data + 1, grid, meta, folder=tmp_path)
    assert (out.read_bytes(), pam_path(out).read_bytes()) == before
    assert class_names(out)[0] == ["background", "changed"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classes.tif", "classes.tif.aux.xml"]


def test_reading_a_url_or_a_composite_does_not_hide_local_sidecars(served_tif, tmp_path, monkeypatch):
    """GDAL_DISABLE_READDIR_ON_OPEN (which spares listing a URL's folder) holds only while a URL is opened: set
    for the process, it would hide every later local file's .aux.xml (and .ovr, .msk)."""
    monkeypatch.delenv("GDAL_DISABLE_READDIR_ON_OPEN", raising=False)
    with open_raster(served_tif):
        pass
    band_files(tmp_path / "bands")
    with open_raster(str(tmp_path / "bands")):
        pass
    assert "GDAL_DISABLE_READDIR_ON_OPEN" not in os.environ
    grid = Grid("EPSG:32633", Affine(10.0, 0, 300000.0, 0, -10.0, 5600000.0), 4, 4)
    write_cog(tmp_path / "c.tif", np.ones((1, 4, 4), np.uint8), grid,
              OutputMeta(dtype="uint8", count=1, categories={1: "one"}, overview_resampling="mode"))
    assert class_names(tmp_path / "c.tif")[0] == ["", "one"]


@pytest.fixture
def served_tif(tmp_path, raster_factory):
    folder = tmp_path / "www"
    folder.mkdir()
    raster_factory("www/lr.tif", np.full((1, 8, 8), 7, np.uint8))
    with serving(folder) as url:
        yield f"{url}/lr.tif"


def test_the_change_mask_and_the_provenance_sidecar_name_their_classes(raster_factory, tmp_path):
    lr_t, ref_t = Affine(40.0, 0, 500000.0, 0, -40.0, 5000000.0), Affine(10.0, 0, 500000.0, 0, -10.0, 5000000.0)
    lr = raster_factory("lr.tif", (smooth_field(3, 32, 32, 1) * 200 + 20).astype(np.uint8), transform=lr_t)
    ref = raster_factory("ref.tif", (smooth_field(3, 128, 128, 2) * 200 + 20).astype(np.uint8), transform=ref_t)
    detect_changes(lr, ref=ref, output=tmp_path / "cd.tif")
    cats, rows = class_names(tmp_path / "cd.tif")
    assert cats[:2] == ["unchanged", "changed"] and cats[255].startswith("unknown")
    unknown = "unknown (no data to compare; upscale takes it as changed)"
    assert [r["Class"] for r in rows] == ["unchanged", "changed", unknown]
    with rasterio.open(tmp_path / "cd.tif") as ds:  # the tags and the summary name the classes alike
        named = {c["value"]: c["name"] for c in json.loads(ds.tags()["GEOSR_CHANGE_CLASSES"])["classes"]}
    assert named == {0: "unchanged", 1: "changed", 255: unknown}
    upscale(lr, ref=ref, cd=tmp_path / "cd.tif", scale=4, model="reference-paste", output=tmp_path / "out.tif")
    cats, rows = class_names(tmp_path / "out.provenance.tif")
    assert cats == list(CLASSES) and [r["Class"] for r in rows] == list(CLASSES)
    assert not pam_path(tmp_path / "out.tif").exists()  # the image itself has no classes
    with rasterio.open(tmp_path / "out.provenance.tif") as ds:
        assert ds.colormap(1)[1][:3] == tuple(int(v) for v in (rows[1]["Red"], rows[1]["Green"], rows[1]["Blue"]))
