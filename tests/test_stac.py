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
        (out.with_name("sr.provenance.tif.aux.xml")).unlink()  # (its class names: else named, as kept, first)
        upscale(lr, ref=ref, output=out, scale=4, model="reference-paste")


def test_the_item_is_valid_and_its_numbers_right(raster_factory, tmp_path):
    """What rio-stac got wrong, and what the item said of other inputs: valid_percent of an output without nodata
    (0.000625 of a 400 x 400 output: it counted a mask's elements), the histogram's count (its edges, one more
    than its buckets), a local acquisition time (STAC's datetime is UTC), band files (one href with commas)."""
    a = (smooth_field(3, 20, 20, 3) * 200 + 20).astype(np.uint8)
    files = [raster_factory(f"b{i}.tif", a[i : i + 1]) for i in range(3)]
    with rasterio.open(files[0], "r+") as ds:
        ds.update_tags(ACQUISITIONDATETIME="2003-05-01T10:20:30+08:00")
    out = tmp_path / "o.tif"
    upscale(",".join(map(str, files)), output=out, scale=2, model="bicubic")
    path = out.with_name("o.stac.json")
    raw = json.loads(path.read_text())
    for band in raw["assets"]["data"]["raster:bands"]:
        assert band["statistics"]["valid_percent"] == 100.0
        assert band["histogram"]["count"] == len(band["histogram"]["buckets"])
    assert raw["properties"]["datetime"] == "2003-05-01T02:20:30Z"
    links = [(link["title"], link["href"]) for link in raw["links"] if link["rel"] == "derived_from"]
    assert links == [(f"lr ({i + 1} of 3)", f"b{i}.tif") for i in range(3)]
    with rasterio.open(out) as ds:  # and the output's own record of its inputs names each file
        assert json.loads(ds.tags()["GEOSR_INPUTS"])["lr"] == "b0.tif,b1.tif,b2.tif"
    from pystac.validation import validate_dict

    # the core STAC schema pystac ships (extension schemas would be fetched from the web: not here)
    assert validate_dict(raw, extensions=[]) == ["https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json"]


def test_a_south_up_outputs_item_has_a_normal_bbox_and_a_counter_clockwise_ring(raster_factory, tmp_path):
    """rio-stac gave a south-up raster's proj:bbox with bottom above top and a clockwise footprint."""
    from shapely.geometry import shape

    lr = raster_factory("su.tif", (smooth_field(3, 16, 16) * 200).astype(np.uint8),
                        transform=Affine(10.0, 0, 500000.0, 0, 10.0, 4999840.0))
    upscale(lr, scale=2, model="bicubic", output=tmp_path / "o.tif")
    item = json.loads((tmp_path / "o.stac.json").read_text())
    assert item["properties"]["proj:bbox"] == [500000.0, 4999840.0, 500160.0, 5000000.0]
    assert shape(item["geometry"]).exterior.is_ccw
    west, south, east, north = item["bbox"]
    assert west < east and south < north


@pytest.mark.parametrize("crs, transform", [
    ("EPSG:32760", Affine(30, 0, 819000, 0, -30, 8129500)),  # UTM 60S, across 180 degrees
    ("EPSG:4326", Affine(0.002, 0, 179.95, 0, -0.002, -16.9)),  # longitudes past 180
    ("EPSG:4326", Affine(0.002, 0, -180.05, 0, -0.002, 10.0)),  # longitudes before -180
])
def test_a_footprint_across_the_antimeridian_is_split_there(raster_factory, tmp_path, crs, transform):
    """rio-stac gave such an item a bbox 360 degrees wide (found anywhere at that latitude) or longitudes past 180:
    now two polygons in [-180, 180] and the bbox written west > east (RFC 7946, 5.2)."""
    from pystac.validation import validate_dict
    from shapely.geometry import shape

    lr = raster_factory("am.tif", (smooth_field(3, 30, 40) * 200).astype(np.uint8), crs=crs, transform=transform)
    upscale(lr, scale=2, model="bicubic", output=tmp_path / "o.tif")
    item = json.loads((tmp_path / "o.stac.json").read_text())
    west, south, east, north = item["bbox"]
    assert 179 < west < 180 and -180 < east < -179 and south < north
    geom = shape(item["geometry"])
    assert geom.geom_type == "MultiPolygon" and len(geom.geoms) == 2
    assert all(-180 <= x <= 180 for g in geom.geoms for x, _ in g.exterior.coords)
    assert validate_dict(item, extensions=[])


def test_a_rotated_outputs_footprint_is_its_own_quadrilateral(raster_factory, tmp_path):
    """rio-stac's geometry was the axis-aligned envelope (IoU 0.66 with the true footprint at 15 degrees)."""
    from pyproj import Transformer
    from shapely.geometry import Polygon, shape

    transform = Affine.translation(500000, 5000000) @ Affine.rotation(15) @ Affine.scale(10, -10)
    lr = raster_factory("rot.tif", (smooth_field(3, 30, 40) * 200).astype(np.uint8), transform=transform)
    upscale(lr, scale=2, model="bicubic", output=tmp_path / "o.tif")
    item = json.loads((tmp_path / "o.stac.json").read_text())
    corners = [transform @ c for c in ((0, 0), (40, 0), (40, 30), (0, 30))]
    native = Polygon(corners)
    assert shape(item["properties"]["proj:geometry"]).symmetric_difference(native).area < 1e-6 * native.area
    to_wgs84 = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    truth = Polygon([to_wgs84.transform(x, y) for x, y in corners])
    got = shape(item["geometry"])
    assert got.intersection(truth).area / got.union(truth).area > 0.99


def test_proj_wkt2_is_wkt2(raster_factory, tmp_path):
    """A CRS without an EPSG code is described by proj:wkt2, which rio-stac filled with WKT1 (PROJCS[...])."""
    from pyproj import CRS as ProjCRS

    crs = "+proj=laea +lat_0=52 +lon_0=10 +x_0=4321000 +y_0=3210000 +ellps=GRS80 +units=m"
    lr = raster_factory("laea.tif", (smooth_field(3, 16, 16) * 200).astype(np.uint8), crs=crs,
                        transform=Affine(10, 0, 4321000, 0, -10, 3210000))
    upscale(lr, scale=2, model="bicubic", output=tmp_path / "o.tif")
    wkt = json.loads((tmp_path / "o.stac.json").read_text())["properties"]["proj:wkt2"]
    assert wkt.startswith("PROJCRS[") and ProjCRS.from_wkt(wkt).equals(ProjCRS.from_user_input(crs))


def test_names_with_hash_percent_or_spaces_are_found_again_from_the_item(raster_factory, tmp_path):
    """`sr #1.tif`'s item said `"href": "sr #1.tif"`, which a URI reader cuts at the `#` (geosr read `sr ` back and
    refused its own item); `%`, `#` and `?` are now percent-encoded, and geosr's reader decodes them."""
    folder = tmp_path / "d#1"
    folder.mkdir()
    lr = raster_factory("d#1/scene #1.tif", (smooth_field(3, 16, 16, 3) * 200).astype(np.uint8),
                        transform=Affine(40, 0, 500000, 0, -40, 5000000))
    out = folder / "sr 50% #1?.tif"
    upscale(lr, output=out, scale=2, model="bicubic")
    item = json.loads((folder / "sr 50% #1?.stac.json").read_text())
    assert item["assets"]["data"]["href"] == "sr 50%25 %231%3F.tif"
    assert [link["href"] for link in item["links"] if link["rel"] == "derived_from"] == ["scene %231.tif"]
    again = upscale(str(folder / "sr 50% #1?.stac.json"), output=tmp_path / "again.tif", scale=2, model="bicubic")
    with rasterio.open(out) as a, rasterio.open(again.output) as b:
        assert a.read().shape[1:] == (32, 32) and b.read().shape[1:] == (64, 64)
    # an item another tool wrote with a literal '%' sequence in a name, not encoded, is still read
    literal = folder / "a%20b.tif"
    out.rename(literal)
    item["assets"]["data"]["href"] = "a%20b.tif"
    (folder / "other.stac.json").write_text(json.dumps(item))
    upscale(str(folder / "other.stac.json"), output=tmp_path / "other.tif", scale=2, model="bicubic")


def test_bands_named_by_stac_common_names_are_picked_and_kept_by_them(raster_factory, tmp_path):
    """Landsat Collection 2 items call band 5 `nir08`: `--bands nir` did not find it, and the output's item dropped
    every common name but red/green/blue/nir (`nir08`, `swir16`, `coastal` came out as bare names)."""
    from geosr.io.rasters import inspect_raster, parse_bands

    data = (smooth_field(4, 16, 16) * 60000).astype(np.uint16)
    lr = raster_factory("lr.tif", data, descriptions=("nir08", "red", "swir16", "coastal"))
    assert parse_bands("nir,red,swir", inspect_raster(lr)) == (1, 2, 3)
    upscale(lr, output=tmp_path / "o.tif", scale=2, model="bicubic", bands="nir,red,swir16,coastal")
    item = json.loads((tmp_path / "o.stac.json").read_text())
    bands = item["assets"]["data"]["eo:bands"]
    assert [(b["name"], b.get("common_name")) for b in bands] == [
        ("nir08", "nir08"), ("red", "red"), ("swir16", "swir16"), ("coastal", "coastal")]


def test_an_outputs_item_gives_back_every_band_even_those_sharing_a_common_name(raster_factory, tmp_path):
    """Sentinel-2's B05, B06 and B07 are all `rededge`: the item of an output of them read back as one band (the
    others dropped without a word); B8A was called `nir`, and with B08 one of the two was dropped."""
    from geosr.io.rasters import inspect_raster, open_raster, parse_bands

    names = ("B05", "B06", "B07", "B08", "B8A", "B11", "B12")
    data = (smooth_field(len(names), 16, 16) * 60000).astype(np.uint16)
    lr = raster_factory("lr.tif", data, descriptions=names)
    upscale(lr, output=tmp_path / "o.tif", scale=2, model="bicubic", bands=",".join(names))
    item = json.loads((tmp_path / "o.stac.json").read_text())
    assert [(b["name"], b.get("common_name")) for b in item["assets"]["data"]["eo:bands"]] == [
        ("B05", "rededge"), ("B06", "rededge"), ("B07", "rededge"), ("B08", "nir"), ("B8A", "nir08"),
        ("B11", "swir16"), ("B12", "swir22")]
    info = inspect_raster(str(tmp_path / "o.stac.json"))
    assert info.descriptions == ("B05", "B06", "B07", "nir", "nir08", "swir16", "swir22")
    with rasterio.open(tmp_path / "o.tif") as out, open_raster(str(tmp_path / "o.stac.json")) as back:
        assert np.array_equal(out.read(), back.read())
    assert parse_bands("B06,nir08,rededge", info) == (2, 5, 1)


def test_an_items_visual_asset_adds_no_band_its_data_assets_hold(raster_factory, tmp_path):
    """Earth Search's items: three `rededge` data assets (rededge1-3) are three bands; the `visual` rendering's red,
    green and blue are the data assets' own, so it adds none of them."""
    from datetime import datetime, timezone

    from geosr.io.rasters import inspect_raster, open_raster

    files = {k: raster_factory(f"{k}.tif", (smooth_field(1, 16, 16, seed=i) * 9000).astype(np.uint16))
             for i, k in enumerate(("red", "green", "blue", "rededge1", "rededge2", "rededge3"))}
    visual = raster_factory("visual.tif", (smooth_field(3, 16, 16) * 255).astype(np.uint8))
    item = pystac.Item("S2B_33UUB", {"type": "Point", "coordinates": [15.0, 45.0]}, [15, 45, 15, 45],
                       datetime(2023, 6, 12, 10, 10, 31, tzinfo=timezone.utc), {})
    for key, path in files.items():
        item.add_asset(key, pystac.Asset(path.name, media_type=pystac.MediaType.COG, roles=["data"], extra_fields={
            "eo:bands": [{"name": key, "common_name": "rededge" if key.startswith("rededge") else key}]}))
    item.add_asset("visual", pystac.Asset(visual.name, media_type=pystac.MediaType.COG, roles=["visual"],
                                          extra_fields={"eo:bands": [{"name": c, "common_name": c}
                                                                     for c in ("red", "green", "blue")]}))
    (tmp_path / "item.json").write_text(json.dumps(item.to_dict(include_self_link=False)))
    info = inspect_raster(str(tmp_path / "item.json"))
    assert info.descriptions == ("red", "green", "blue", "rededge1", "rededge2", "rededge3")
    with open_raster(str(tmp_path / "item.json")) as ds, rasterio.open(files["rededge2"]) as one:
        assert np.array_equal(ds.read(5), one.read(1))


def test_the_acquisition_time_in_gdal_s_imagery_domain_dates_the_item_and_stays_with_the_output(raster_factory,
                                                                                               tmp_path):
    """GDAL's drivers put ACQUISITIONDATETIME (and SATELLITEID, CLOUDCOVER) in the IMAGERY metadata domain: geosr
    read only the default one, so the item was dated by processing time, and the COG driver, which copies no other
    domain, dropped them from the output. A TIFF date also made rio-stac warn on stderr that it could not parse it,
    though geosr read it."""
    import warnings

    lr = raster_factory("lr.tif", (smooth_field(3, 16, 16, 3) * 200).astype(np.uint8))
    with rasterio.open(lr, "r+") as ds:
        ds.update_tags(ns="IMAGERY", ACQUISITIONDATETIME="2003-05-01T02:20:30Z", SATELLITEID="L5")
        ds.update_tags(TIFFTAG_DATETIME="2004:01:02 03:04:05")
    out = tmp_path / "o.tif"
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        upscale(lr, output=out, scale=2, model="bicubic")
    assert not [w for w in said if "parse date" in str(w.message)]
    item = pystac.Item.from_file(str(out.with_name("o.stac.json")))
    assert item.datetime.isoformat() == "2003-05-01T02:20:30+00:00"
    assert item.properties["geosr:datetime"] == "acquisition of the LR"
    with rasterio.open(out) as ds:
        tags = ds.tags()
    assert tags["ACQUISITIONDATETIME"] == "2003-05-01T02:20:30Z" and tags["SATELLITEID"] == "L5"


def test_gdal_s_placeholder_acquisition_time_is_no_acquisition_time(raster_factory, tmp_path):
    """GDAL's Landsat MTL reader writes ACQUISITIONDATETIME "1970-01-01 00:00:00" (IMAGERY domain) for a time it
    cannot parse: the output carried it and its item was dated 1970, "acquisition of the LR" (found in review)."""
    lr = raster_factory("lr.tif", (smooth_field(3, 16, 16, 3) * 200).astype(np.uint8))
    with rasterio.open(lr, "r+") as ds:
        ds.update_tags(ns="IMAGERY", ACQUISITIONDATETIME="1970-01-01 00:00:00", SATELLITEID="LANDSAT_7")
    out = tmp_path / "o.tif"
    upscale(lr, output=out, scale=2, model="bicubic")
    item = pystac.Item.from_file(str(out.with_name("o.stac.json")))
    assert item.properties["geosr:datetime"] == "processing" and item.datetime.year > 2000
    with rasterio.open(out) as ds:
        assert "ACQUISITIONDATETIME" not in ds.tags() and ds.tags()["SATELLITEID"] == "LANDSAT_7"


def test_an_item_dated_by_its_processing_gives_no_acquisition_time(raster_factory, tmp_path):
    """Found by review: an output's item, of an LR without an acquisition time, is dated when geosr made it; given
    as the LR of another run, that time became the new output's acquisition time ("acquisition of the LR")."""
    lr = raster_factory("lr.tif", (smooth_field(3, 16, 16, 3) * 200).astype(np.uint8))
    first = tmp_path / "a.tif"
    upscale(lr, output=first, scale=2, model="bicubic")
    assert pystac.Item.from_file(str(tmp_path / "a.stac.json")).properties["geosr:datetime"] == "processing"
    second = tmp_path / "b.tif"
    upscale(tmp_path / "a.stac.json", output=second, scale=2, model="bicubic")
    item = pystac.Item.from_file(str(tmp_path / "b.stac.json"))
    assert item.properties["geosr:datetime"] == "processing"
    with rasterio.open(second) as ds:
        assert "ACQUISITIONDATETIME" not in ds.tags()


@pytest.mark.parametrize("crs, origin", [("EPSG:3413", (-80.0, 80.0)), ("EPSG:6931", (-80.0, 80.0)),
                                         ("EPSG:32661", (1999920.0, 2000080.0)),
                                         ("EPSG:3031", (-80.0, 80.0))])
def test_a_footprint_around_a_pole_holds_the_pole_and_the_scene(raster_factory, tmp_path, crs, origin):
    """A scene holding a pole had rio-stac's footprint: its corners joined across 180 degrees, below the pole, which
    it left out with most of the scene (a search at the pole did not find it)."""
    from shapely.geometry import Point, shape

    lr = raster_factory("polar.tif", np.full((1, 16, 16), 100, np.uint8), crs=crs,
                        transform=Affine(10.0, 0, origin[0], 0, -10.0, origin[1]))
    upscale(lr, output=tmp_path / "o.tif", scale=2, model="bicubic")
    item = json.loads((tmp_path / "o.stac.json").read_text())
    pole = -90.0 if crs == "EPSG:3031" else 90.0
    footprint = shape(item["geometry"])
    assert footprint.geom_type == "Polygon" and footprint.is_valid
    assert item["bbox"][0] == -180.0 and item["bbox"][2] == 180.0 and pole in (item["bbox"][1], item["bbox"][3])
    inside = [Point(lon, pole * 0.999994) for lon in (45.0, -99.5, 170.0, -170.0)]  # about 50 m from the pole
    assert all(footprint.covers(p) for p in inside) and footprint.covers(Point(0.0, pole))
    from pystac.validation import validate_dict

    assert validate_dict(item, extensions=[])  # the core schema (bundled with pystac: no network)


@pytest.mark.parametrize("crs, origin, bbox", [
    ("EPSG:3031", (0.0, 0.0), [90.0, -90.0, 180.0, -89.167]),  # the pole at the top-left corner
    ("EPSG:3413", (0.0, 64000.0), [45.0, 89.164, 135.0, 90.0]),  # at the bottom-left corner
    ("EPSG:3031", (-32000.0, 0.0), [90.0, -90.0, -90.0, -89.341]),  # mid top edge: across 180 degrees
    ("EPSG:3031", (-32500.0, 0.0), [90.0, -90.0, -90.0, -89.339]),  # on the top edge between outline points
])
def test_a_footprint_with_the_pole_on_its_outline_is_the_scene_s(raster_factory, tmp_path, crs, origin, bbox):
    """A polar tile with the pole at a corner (a polar mosaic's common layout) had a footprint and bbox twice its
    width (EPSG:3031 lon 90-180 as 0 to -180, its geometry holding points the raster does not): the pole's point
    took the CRS's own longitude. The pole is now an edge along its latitude, from its neighbours' longitudes."""
    from pyproj import Transformer
    from shapely.geometry import Point, shape

    lr = raster_factory("tile.tif", np.full((1, 64, 64), 100, np.uint8), crs=crs,
                        transform=Affine(1000.0, 0, origin[0], 0, -1000.0, origin[1]))
    upscale(lr, output=tmp_path / "o.tif", scale=2, model="bicubic")
    item = json.loads((tmp_path / "o.stac.json").read_text())
    assert [round(v, 3) for v in item["bbox"]] == bbox
    footprint = shape(item["geometry"])
    assert footprint.is_valid
    cols, rows = np.meshgrid(np.arange(0.5, 64, 3), np.arange(0.5, 64, 3))
    xs, ys = Affine(1000.0, 0, origin[0], 0, -1000.0, origin[1]) @ (cols.ravel(), rows.ravel())
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    assert all(footprint.buffer(1e-9).covers(Point(a, b)) for a, b in zip(lon, lat))  # the whole scene
    outside = bbox[0] - 30.0 if bbox[0] < bbox[2] else (bbox[0] + bbox[2]) / 2  # a longitude it does not reach
    assert not footprint.covers(Point(outside, 89.99 if bbox[3] == 90.0 else -89.99))


def test_a_custom_crs_is_not_labelled_with_an_epsg_code_that_is_not_it(tmp_path, raster_factory):
    """UTM 33 on the International ellipsoid with its own datum shift: rio-stac's loose match (70%) named it
    EPSG:23033 (ED50 / UTM 33N, 25 m away) and left out its WKT (found in review). The item gives the raster's own
    CRS as WKT2, no code; an EPSG CRS keeps its code (above)."""
    from rasterio.crs import CRS

    crs = CRS.from_proj4("+proj=utm +zone=33 +ellps=intl +towgs84=-50,-60,-70 +units=m +no_defs")
    lr = raster_factory("lr.tif", (smooth_field(3, 16, 16, 2) * 200).astype(np.uint8), crs=crs)
    out = tmp_path / "sr.tif"
    upscale(lr, output=out, scale=2, model="bicubic")
    props = json.loads(out.with_name("sr.stac.json").read_text())["properties"]
    assert props["proj:epsg"] is None and CRS.from_wkt(props["proj:wkt2"]) == crs


def test_an_item_dated_by_a_time_range_dates_its_output_by_that_range(raster_factory, tmp_path):
    """Found in review: a STAC item of a composite has a null datetime and start_datetime/end_datetime; its output's
    item was dated by the time of processing ("processing"), the acquisition range lost. The range is carried, as
    tags of the COG and as the output item's start and end, run after run."""
    from datetime import datetime, timezone

    files = {k: raster_factory(f"{k}.tif", (smooth_field(1, 16, 16, seed=i) * 9000).astype(np.uint16))
             for i, k in enumerate(("red", "green", "blue"))}
    start, end = datetime(2023, 6, 1, tzinfo=timezone.utc), datetime(2023, 6, 30, 23, 59, 59, tzinfo=timezone.utc)
    item = pystac.Item("mosaic", {"type": "Point", "coordinates": [15.0, 45.0]}, [15, 45, 15, 45], None, {},
                       start_datetime=start, end_datetime=end)
    for key, path in files.items():
        item.add_asset(key, pystac.Asset(path.name, media_type=pystac.MediaType.COG, roles=["data"], extra_fields={
            "eo:bands": [{"name": key, "common_name": key}]}))
    (tmp_path / "item.json").write_text(json.dumps(item.to_dict(include_self_link=False)))
    src = tmp_path / "item.json"
    for name in ("a", "b"):  # b: a's item as the LR
        out = tmp_path / f"{name}.tif"
        upscale(src, output=out, scale=2, model="bicubic")
        made = pystac.Item.from_file(str(out.with_name(f"{name}.stac.json")))
        raw = json.loads(out.with_name(f"{name}.stac.json").read_text())["properties"]
        assert raw["datetime"] is None and made.properties["geosr:datetime"] == "acquisition of the LR"
        assert (made.common_metadata.start_datetime, made.common_metadata.end_datetime) == (start, end)
        with rasterio.open(out) as ds:
            tags = ds.tags()
        assert "ACQUISITIONDATETIME" not in tags
        assert (tags["ACQUISITIONSTARTDATETIME"], tags["ACQUISITIONENDDATETIME"]) == (start.isoformat(),
                                                                                     end.isoformat())
        src = out.with_name(f"{name}.stac.json")


def test_a_sentinel2_band_marked_by_its_colour_interpretation_keeps_its_narrow_common_name(raster_factory, tmp_path):
    """Found in review: once a SWIR or NIR colour interpretation said more than a Landsat band's name, a Sentinel-2
    B8A, B11, B12 so marked (GDAL 3.10's colour interpretations) lost their nir08, swir16, swir22."""
    from rasterio.enums import ColorInterp

    lr = raster_factory("s2.tif", (smooth_field(3, 16, 16, 5) * 9000).astype(np.uint16))
    with rasterio.open(lr, "r+") as ds:
        ds.descriptions = ("B8A", "B11", "B12")
        ds.colorinterp = [ColorInterp.nir, ColorInterp.swir, ColorInterp.swir]
    out = tmp_path / "o.tif"
    upscale(lr, output=out, scale=2, model="bicubic", bands="1,2,3")
    eo = json.loads(out.with_name("o.stac.json").read_text())["assets"]["data"]["eo:bands"]
    assert [b["common_name"] for b in eo] == ["nir08", "swir16", "swir22"]


def test_an_item_listing_a_coarser_asset_first_is_stacked_on_its_finest_bands_grid(tmp_path):
    """Planetary Computer lists the 60 m B01 asset first: the item is still the 10 m bands, their colour
    interpretations set from their common names (a grey output otherwise), and of two assets of one band the first is
    read (unguarded; found by mutation testing)."""
    import shutil
    from pathlib import Path

    from geosr.io.rasters import open_raster
    from s2_products import band_files, item_over_band_files

    band_files(tmp_path / "s2")
    item = item_over_band_files(tmp_path / "s2")
    doc = json.loads(item.read_text())
    assets = doc["assets"]
    red = next(k for k, a in assets.items() if any(b.get("common_name") == "red" for b in a.get("eo:bands", [])))
    shutil.copy(tmp_path / "s2" / Path(assets[red]["href"]).name, tmp_path / "s2" / "red_copy.tif")
    doc["assets"] = {"B05": assets.pop("B05"), **assets, "red_copy": {**assets[red], "href": "red_copy.tif"}}
    item.write_text(json.dumps(doc))
    with open_raster(str(item)) as ds:
        assert ds.res == (10.0, 10.0) and ds.count == 4, (ds.res, ds.count)
        assert [c.name for c in ds.colorinterp][:3] == ["blue", "green", "red"]
        assert not [f for f in ds.files if f.endswith("red_copy.tif")], ds.files
    upscale(str(item), output=tmp_path / "o.tif", scale=2, model="bicubic", bands="blue,green,red")
    with rasterio.open(tmp_path / "o.tif") as ds:
        assert [c.name for c in ds.colorinterp] == ["blue", "green", "red"]
