"""STAC out (issue 20.2): every output gets <stem>.stac.json with its grid, inputs, model and lineage."""

from __future__ import annotations

import json

import numpy as np
import pystac
import pytest
import rasterio
from affine import Affine
from tests.conftest import smooth_field

from geosr import upscale
from geosr.errors import OutputExistsError


def test_every_output_gets_a_stac_item(raster_factory, tmp_path):
    lr = raster_factory("lr.tif", (smooth_field(3, 16, 16, 3) * 200).astype(np.uint8),
                        transform=Affine(40, 0, 500000, 0, -40, 5000000))
    with rasterio.open(lr, "r+") as ds:
        ds.update_tags(TIFFTAG_DATETIME="2021:06:01 10:30:00")
    ref = raster_factory("ref.tif", (smooth_field(3, 64, 64, 4) * 200).astype(np.uint8),
                         transform=Affine(10, 0, 500000, 0, -10, 5000000))
    out = tmp_path / "out" / "sr.tif"
    out.parent.mkdir()
    r = upscale(lr, ref=ref, output=out, scale=4, model="reference-paste")
    item = pystac.Item.from_file(str(out.with_name("sr.stac.json")))
    assert r.stac == str(out.with_name("sr.stac.json"))
    assert item.id == "sr" and item.datetime.isoformat() == "2021-06-01T10:30:00+00:00"
    assert item.properties["geosr:datetime"] == "acquisition of the LR"
    raw = json.loads(out.with_name("sr.stac.json").read_text())  # as written (pystac migrates extensions on read)
    assert raw["properties"]["proj:shape"] == [64, 64] and raw["properties"]["proj:epsg"] == 32633
    assert item.properties["processing:software"]["geosr"] and "x4" in item.properties["processing:lineage"]
    assert item.properties["geosr:model"]["name"] == "reference-paste"
    links = {link.title: link.href for link in item.links if link.rel == "derived_from"}
    assert links == {"lr": "../lr.tif", "ref": "../ref.tif"}
    assert item.assets["data"].href == "sr.tif" and item.assets["provenance"].href == "sr.provenance.tif"
    assert "raster:bands" in raw["assets"]["data"]
    with pytest.raises(OutputExistsError, match="stac.json"):
        out.unlink()
        (out.with_name("sr.provenance.tif")).unlink()
        upscale(lr, ref=ref, output=out, scale=4, model="reference-paste")
