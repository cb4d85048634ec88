"""--aoi boxes: cut to the scene's footprint in the AOI's CRS before they are taken to the scene's CRS."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform
from rasterio.windows import Window
from typer.testing import CliRunner

from conftest import make_raster, smooth_field
from geosr.cli.app import app
from geosr.errors import NoOverlapError, OptionError
from geosr.io.aoi import aoi_window
from geosr.tiling.grid import Grid

# UTM zone 10N near Oakland (a whole-world box used to be refused there), 30 m, 240 x 200 px
UTM = Grid(CRS.from_epsg(32610), Affine(30, 0, 560000, 0, -30, 4190000), 240, 200)
# UTM zone 55S (southern hemisphere)
UTM_SOUTH = Grid(CRS.from_epsg(32755), Affine(30, 0, 330000, 0, -30, 6250000), 240, 200)
# geographic, 0.01 degree, 300 x 200 px: lon 10..13, lat 48..50
GEO = Grid(CRS.from_epsg(4326), Affine(0.01, 0, 10, 0, -0.01, 50), 300, 200)
# UTM zone 1N across the antimeridian (lon about 178.5 .. -177.9), 500 m, 400 x 200 px
ANTIMERIDIAN = Grid(CRS.from_epsg(32601), Affine(500, 0, 250000, 0, -500, 6700000), 400, 200)

WHOLE_WORLD = "-180,-90,180,90"


def _whole(grid: Grid) -> Window:
    return Window(0, 0, grid.width, grid.height)


@pytest.mark.parametrize("grid", [UTM, UTM_SOUTH, GEO, ANTIMERIDIAN], ids=["utm", "utm-south", "geo", "antimeridian"])
@pytest.mark.parametrize("box", [WHOLE_WORLD, "-179.9,-89.9,179.9,89.9", "-1e300,-1e300,1e300,1e300"])
def test_a_box_around_the_scene_selects_the_whole_scene(grid, box):
    assert aoi_window(box, grid) == _whole(grid)


def test_a_box_wider_than_a_utm_zone_selects_the_whole_scene():
    assert aoi_window("-140,20,-100,50", UTM) == _whole(UTM)
    assert aoi_window("100,-60,170,-10", UTM_SOUTH) == _whole(UTM_SOUTH)


def test_a_whole_world_box_in_a_projected_crs():
    world_3857 = "-20037508,-20048966,20037508,20048966"
    assert aoi_window(world_3857, UTM, aoi_crs="EPSG:3857") == _whole(UTM)


def test_a_partial_box_in_the_scene_crs_selects_whole_pixels():
    # cols (560105 - 560000) / 30 = 3.5 .. (561203 - 560000) / 30 = 40.1; rows (4190000 - 4189851) / 30 = 4.97 ..
    # (4190000 - 4188705) / 30 = 43.2
    assert aoi_window("560105,4188705,561203,4189851", UTM, aoi_crs="EPSG:32610") == Window(3, 4, 38, 40)


def test_a_box_in_metres_without_its_crs_says_so():
    """The scene's metres under the default EPSG:4326 (or latitude given first) were "does not overlap the scene";
    a file's coordinates said why (found in review)."""
    said = (r"are not longitudes and latitudes \(LEFT,BOTTOM,RIGHT,TOP: longitudes first\), as `aoi_crs` "
            r"\(EPSG:4326\) has them; give `aoi_crs` the box's CRS \(the scene's: EPSG:32610\)")
    with pytest.raises(NoOverlapError, match=said):
        aoi_window("560105,4188705,561203,4189851", UTM)
    with pytest.raises(NoOverlapError, match="would as LATITUDE,LONGITUDE pairs: give the box as LEFT,BOTTOM,"
                                             "RIGHT,TOP, longitudes first"):  # (said more plainly since)
        aoi_window("37.8,-122.3,37.9,-122.2", UTM)


def test_a_partial_geographic_box_on_a_geographic_scene():
    # lon 11..12 -> cols 100..200, lat 49.2..48.5 -> rows 80..150
    assert aoi_window("11,48.5,12,49.2", GEO) == Window(100, 80, 100, 70)
    # reaching beyond the scene: cut to it
    assert aoi_window("11,48.5,40,60", GEO) == Window(100, 0, 200, 150)


def test_a_partial_geographic_box_on_a_utm_scene_covers_its_corners_tightly():
    x0, y0 = UTM.transform @ (60, 50)
    x1, y1 = UTM.transform @ (150, 170)
    lons, lats = transform(UTM.crs, "EPSG:4326", [x0, x1, x0, x1], [y0, y0, y1, y1])
    box = (min(lons), min(lats), max(lons), max(lats))
    win = aoi_window(",".join(repr(v) for v in box), UTM)
    # by hand: the box's corners back on the grid, as whole pixels
    xs, ys = transform("EPSG:4326", UTM.crs, [box[0], box[2], box[0], box[2]], [box[1], box[1], box[3], box[3]])
    cols, rows = zip(*(~UTM.transform @ (x, y) for x, y in zip(xs, ys)))
    c0, c1 = math.floor(min(cols)), math.ceil(max(cols))
    r0, r1 = math.floor(min(rows)), math.ceil(max(rows))
    assert win.col_off <= c0 and win.col_off + win.width >= c1
    assert win.row_off <= r0 and win.row_off + win.height >= r1
    assert c0 - win.col_off <= 2 and win.col_off + win.width - c1 <= 2  # no more than the edges' curvature
    assert r0 - win.row_off <= 2 and win.row_off + win.height - r1 <= 2
    assert win != _whole(UTM)


def test_boxes_either_side_of_the_antimeridian_select_either_side_of_the_scene():
    # lon 180 falls about 3 degrees (about 167 km at 60 N) west of zone 1's central meridian: x ~ 333 km, col ~ 166
    west = aoi_window("170,50,180,70", ANTIMERIDIAN)
    east = aoi_window("-180,50,-170,70", ANTIMERIDIAN)
    assert west.col_off == 0 and 150 <= west.width <= 185
    assert 150 <= east.col_off <= 185 and east.col_off + east.width == 400
    assert west.height == east.height == 200


# geographic scenes that read their longitudes past 180: across the antimeridian, and in 0-360 degrees
GEO_ACROSS = Grid(CRS.from_epsg(4326), Affine(0.001, 0, 179.98, 0, -0.001, -17.0), 48, 40)
GEO_360 = Grid(CRS.from_epsg(4326), Affine(0.001, 0, 200.0, 0, -0.001, 40.0), 48, 40)


def test_degrees_find_a_scene_that_reads_its_longitudes_past_180():
    """-179.99 is 180.01: a box in the usual -180..180 did not overlap such scenes, and a box across the
    antimeridian (LEFT beyond RIGHT, as GeoJSON and STAC write it) was refused."""
    assert aoi_window("-179.999,-17.03,-179.99,-17.01", GEO_ACROSS) == \
        aoi_window("180.001,-17.03,180.01,-17.01", GEO_ACROSS) == Window(21, 10, 9, 20)
    across = aoi_window("179.99,-17.03,-179.99,-17.01", GEO_ACROSS)
    assert (across.col_off, across.width) == (10, 20)
    assert aoi_window("-159.99,39.97,-159.98,39.98", GEO_360) == Window(10, 20, 10, 10)
    with pytest.raises(OptionError, match="LEFT must be below RIGHT"):  # swapped sides, not a box across 180
        aoi_window("10,48,-5,49", GEO)


def _polygons(path, *boxes: tuple[float, float, float, float]) -> str:
    """A GeoJSON (EPSG:4326) of one rectangle per (west, south, east, north)."""
    import json

    features = [{"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [
        [[w, s], [e, s], [e, n], [w, n], [w, s]]]}} for w, s, e, n in boxes]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return str(path)


def test_files_and_projected_boxes_find_a_scene_that_reads_its_longitudes_past_180(tmp_path):
    """A feature at -179.99 lies at 180.01 of a scene across the antimeridian: it did not overlap, a file split at
    the antimeridian as RFC 7946 has it spanned the whole scene, and a UTM box there did not overlap (found in
    review). Each is taken where it lies nearest the scene."""
    east = _polygons(tmp_path / "east.geojson", (-179.999, -17.03, -179.99, -17.01))
    assert aoi_window(east, GEO_ACROSS) == Window(21, 10, 9, 20)
    split = _polygons(tmp_path / "split.geojson", (179.99, -17.03, 180.0, -17.01), (-180.0, -17.03, -179.99, -17.01))
    assert aoi_window(split, GEO_ACROSS) == Window(10, 10, 20, 20)
    assert aoi_window(_polygons(tmp_path / "w.geojson", (-159.99, 39.97, -159.98, 39.98)), GEO_360) == \
        Window(10, 20, 10, 10)
    # the same boxes in UTM zone 60 S and 1 S (x of lon 180 beyond zone 60's edge, and across the antimeridian)
    for epsg, (w, e) in ((32760, (-179.999, -179.99)), (32701, (179.99, -179.99))):
        xs, ys = transform("EPSG:4326", f"EPSG:{epsg}", [w, e, w, e], [-17.03, -17.03, -17.01, -17.01])
        got = aoi_window(f"{min(xs)},{min(ys)},{max(xs)},{max(ys)}", GEO_ACROSS, aoi_crs=f"EPSG:{epsg}")
        want = Window(21, 10, 9, 20) if epsg == 32760 else Window(10, 10, 20, 20)
        # (a UTM box around the degree box holds a little more: at most a pixel more each side)
        assert want.col_off - 1 <= got.col_off <= want.col_off, (epsg, got)
        assert want.col_off + want.width <= got.col_off + got.width <= want.col_off + want.width + 1, (epsg, got)


def test_a_box_written_latitude_first_is_said_to_be_so():
    """A degree box written latitude first, as maps show coordinates, was only "does not overlap the scene"."""
    with pytest.raises(NoOverlapError, match=r"^aoi '49.1,11.5,49.5,12.5': does not overlap the scene, and would as "
                                             r"LATITUDE,LONGITUDE pairs: give the box as LEFT,BOTTOM,RIGHT,TOP"):
        aoi_window("49.1,11.5,49.5,12.5", GEO)
    assert aoi_window("11.5,49.1,12.5,49.5", GEO) == Window(150, 50, 100, 40)
    with pytest.raises(NoOverlapError, match=r"^aoi 49.1,21.5,49.5,22.5: does not overlap the scene$"):
        aoi_window("49.1,21.5,49.5,22.5", GEO)  # swapped, it misses too: as before
    # beyond 90 degrees of longitude the swapped box's latitude read as "not degrees" (found in review)
    tokyo = Grid(CRS.from_epsg(4326), Affine(0.01, 0, 139.5, 0, -0.01, 36.0), 100, 60)
    with pytest.raises(NoOverlapError, match=r"would as LATITUDE,LONGITUDE pairs"):
        aoi_window("35.5,139.6,35.8,140.2", tokyo)


@pytest.mark.parametrize("box", ["inf,0,1,1", "0,-inf,1,1", "0,0,Infinity,1", "nan,0,1,1", "0,0,1,NaN"])
def test_non_finite_numbers_are_refused(box):
    with pytest.raises(OptionError) as info:
        aoi_window(box, UTM)
    message = str(info.value)
    assert message == f"aoi {box!r}: LEFT,BOTTOM,RIGHT,TOP must be finite numbers (not inf or nan)"


@pytest.mark.parametrize("grid,box", [(UTM, "0,0,1,1"), (UTM, "100,0,110,10"), (GEO, "20,48,21,49"),
                                      (ANTIMERIDIAN, "0,50,10,70")])
def test_a_box_elsewhere_still_does_not_overlap(grid, box):
    with pytest.raises(NoOverlapError, match=rf"^aoi {box}: does not overlap the scene$"):
        aoi_window(box, grid)


def test_a_geojson_of_projected_coordinates_without_its_crs_is_named_as_such(tmp_path):
    """GeoJSON without a "crs" member is read as EPSG:4326: UTM metres in it read as "does not overlap the scene"."""
    path = tmp_path / "utm_as_degrees.geojson"
    path.write_text('{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": '
                    '{"type": "Polygon", "coordinates": [[[561000, 4185000], [565000, 4185000], [565000, 4188000], '
                    '[561000, 4185000]]]}}]}')
    with pytest.raises(OptionError) as info:
        aoi_window(str(path), UTM)
    assert str(info.value) == (f"{path}: its coordinates (561000, 4185000, 565000, 4188000) are not longitudes and "
                               'latitudes, as its CRS (EPSG:4326) says; give the file its CRS (a GeoJSON without a '
                               '"crs" member is read as EPSG:4326), or use a box with `aoi_crs`')
    path.write_text(path.read_text().replace('{"type": "FeatureCollection", ', '{"type": "FeatureCollection", "crs": '
                                             '{"type": "name", "properties": {"name": "EPSG:32610"}}, '))
    assert aoi_window(str(path), UTM) == Window(33, 66, 134, 101)  # with its CRS: read


def test_an_aoi_file_whose_features_have_no_geometry_is_named_as_such(tmp_path):
    """Features without a geometry (null, or an empty polygon) gave NaN bounds: "its coordinates (nan, nan, nan,
    nan) are not longitudes and latitudes" in EPSG:4326, "does not overlap the scene" in a projected CRS (found in
    review)."""
    import geopandas as gpd
    from shapely.geometry import Polygon

    path = tmp_path / "none.geojson"
    path.write_text('{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, '
                    '"geometry": null}]}')
    with pytest.raises(OptionError, match=r"none.geojson: its features have no geometry$"):
        aoi_window(str(path), UTM)
    gpd.GeoDataFrame({"a": [1, 2]}, geometry=[None, Polygon()], crs=UTM.crs).to_file(tmp_path / "none.gpkg")
    with pytest.raises(OptionError, match=r"none.gpkg: its features have no geometry$"):
        aoi_window(str(tmp_path / "none.gpkg"), UTM)


# ---- the command line ----------------------------------------------------------------------------------------
runner = CliRunner()


@pytest.fixture
def utm_scene(tmp_path):
    data = (smooth_field(3, UTM.height // 10, UTM.width // 10) * 255).astype(np.uint8)
    return make_raster(tmp_path / "lr.tif", data, crs=UTM.crs, transform=UTM.transform @ Affine.scale(10))


def test_cli_refuses_an_infinite_aoi_with_exit_2(tmp_path, utm_scene):
    out = tmp_path / "out.tif"
    result = runner.invoke(app, ["upscale", str(utm_scene), "--aoi", "inf,0,1,1", "-x", "2", "--model", "bicubic",
                                 "-o", str(out)])
    assert result.exit_code == 2, (result.exit_code, result.output, result.stderr)
    assert result.stderr.strip() == (
        "geosr: error: --aoi 'inf,0,1,1': LEFT,BOTTOM,RIGHT,TOP must be finite numbers (not inf or nan)"
    )
    assert not out.exists()


def test_cli_whole_world_aoi_gives_the_whole_scene(tmp_path, utm_scene):
    out = tmp_path / "out.tif"
    result = runner.invoke(app, ["upscale", str(utm_scene), "--aoi", WHOLE_WORLD, "-x", "2", "--model", "bicubic",
                                 "-o", str(out), "--quiet"])
    assert result.exit_code == 0, (result.exit_code, result.output, result.stderr)
    with rasterio.open(utm_scene) as lr, rasterio.open(out) as hr:
        assert (hr.width, hr.height) == (lr.width * 2, lr.height * 2)
        assert hr.bounds == lr.bounds


def test_an_area_of_interest_in_the_scene_s_nodata_is_refused(tmp_path):
    """An all-nodata scene was refused, an --aoi over the nodata part of a scene (a swath's edge) written as an
    all-nodata output, exit 0. It is now bad input: exit 2, one line, nothing written; one valid pixel in the area
    is enough to run it (the check reads at full resolution)."""
    data = (smooth_field(3, 40, 40, seed=2) * 200 + 20).astype(np.uint8)
    data[:, :, :20] = 0  # the west half nodata
    lr = make_raster(tmp_path / "lr.tif", data, nodata=0)
    with rasterio.open(lr) as ds:
        west = ",".join(str(v) for v in (ds.bounds.left, ds.bounds.bottom, ds.bounds.left + 150, ds.bounds.top))
    out = tmp_path / "out.tif"
    result = runner.invoke(app, ["upscale", str(lr), "--aoi", west, "--aoi-crs", "EPSG:32633", "-x", "2",
                                 "--model", "bicubic", "-o", str(out)])
    assert result.exit_code == 2, (result.exit_code, result.output, result.stderr)
    assert result.stderr.strip() == (f"geosr: error: {lr}: has no valid pixels in the area of interest (--aoi): all "
                                     "nodata there; choose an area the scene covers")
    assert not out.exists() and list(tmp_path.iterdir()) == [lr]
    data[:, 7, 3] = 99  # one valid pixel there
    make_raster(lr, data, nodata=0)
    result = runner.invoke(app, ["upscale", str(lr), "--aoi", west, "--aoi-crs", "EPSG:32633", "-x", "2",
                                 "--model", "bicubic", "-o", str(out), "--quiet"])
    assert result.exit_code == 0, (result.exit_code, result.output, result.stderr)
    with rasterio.open(out) as hr:
        assert hr.read(1, masked=True).count() > 0


@pytest.mark.parametrize("model", ["bicubic", "lite", "default"])
def test_a_sub_area_re_run_gives_the_whole_run_s_pixels(tmp_path, model):
    """An --aoi run was stretched on its own area and laid its own windows: over the same pixels as a whole run,
    35-60% differed by up to 10 DN with the default model (and by 1 DN with lite), so tiles of one scene run
    separately did not meet. The AOI is now processed in the scene's windows, with the scene's stretch."""
    from geosr import upscale

    rng = np.random.default_rng(1)
    data = (smooth_field(3, 120, 150) * 180 + rng.random((3, 120, 150)) * 40).astype(np.uint8)
    data[:, 50:60, 70:90] = 250  # a bright block: a scene whose stretch an area may not share
    boxes = [(37, 21, 50, 41), (0, 0, 23, 70), (101, 77, 49, 43), (64, 64, 1, 1)]
    window = None
    if model == "default":  # (the diffusion model on the CPU: half the scene and its windows, a quarter the time)
        data, boxes, window = data[:, 30:90, 40:115], [(0, 0, 12, 35), (20, 8, 25, 21), (50, 38, 25, 22)], 24
    lr = make_raster(tmp_path / "lr.tif", data)
    whole = upscale(lr, output=tmp_path / "whole.tif", scale=4, model=model, window=window)
    with rasterio.open(whole.output) as ds:
        full, transform = ds.read(), ds.transform
    assert model != "default" or whole.windows > 4  # (areas cut across windows)
    for i, (c0, r0, w, h) in enumerate(boxes):
        with rasterio.open(lr) as ds:
            t = ds.transform
        west, north = t @ (c0, r0)
        east, south = t @ (c0 + w, r0 + h)
        part = upscale(lr, output=tmp_path / f"part{i}.tif", scale=4, model=model, window=window,
                       aoi=f"{west},{south},{east},{north}", aoi_crs="EPSG:32633")
        with rasterio.open(part.output) as ds:
            assert ds.transform == transform @ Affine.translation(c0 * 4, r0 * 4)
            assert np.array_equal(ds.read(), full[:, r0 * 4:(r0 + h) * 4, c0 * 4:(c0 + w) * 4]), (model, i)


def test_a_sampling_model_s_pixels_do_not_depend_on_the_batch_size(tmp_path):
    """The default model ran a row's windows in batches of `--batch-size`, and the CPU's convolution kernels round
    differently for different batch sizes: on the bundled sample at x8 (16-px windows) 2-3 values were 1 DN apart
    between batch sizes 1 and 4, and an --aoi re-run, whose rows start at another window, differed from the whole
    run in 2. On the CPU each window now runs alone (no slower there)."""
    from geosr import upscale
    from geosr.sample_scene import sample_paths

    lr = tmp_path / "lr.tif"  # the sample's top-left 48 x 48 LR px (the whole scene took 4 times as long)
    with rasterio.open(sample_paths()["lr"]) as src:
        profile = {**src.profile, "width": 48, "height": 48}
        with rasterio.open(lr, "w", **profile) as dst:
            dst.write(src.read(window=((0, 48), (0, 48))))
    runs = {}
    for batch in (1, 3, 4):
        res = upscale(lr, output=tmp_path / f"b{batch}.tif", scale=8, batch_size=batch, window=16)
        with rasterio.open(res.output) as ds:
            runs[batch], transform = ds.read(), ds.transform
    assert np.array_equal(runs[1], runs[3]) and np.array_equal(runs[1], runs[4])
    with rasterio.open(lr) as ds:
        t, crs = ds.transform, ds.crs
    c0, c1, r0, r1 = 22, 38, 5, 45  # LR columns and rows
    west, north = t @ (c0, r0)
    east, south = t @ (c1, r1)
    part = upscale(lr, output=tmp_path / "part.tif", scale=8, batch_size=4, window=16,
                   aoi=f"{west},{south},{east},{north}", aoi_crs=crs.to_string())
    with rasterio.open(part.output) as ds:
        assert ds.transform == transform @ Affine.translation(c0 * 8, r0 * 8)
        assert np.array_equal(ds.read(), runs[1][:, r0 * 8:r1 * 8, c0 * 8:c1 * 8])


def test_an_aoi_crs_without_an_aoi_is_refused(tmp_path):
    """`geosr upscale --aoi-crs EPSG:32633` without `--aoi` ran the whole scene: a user who forgot the box (or
    mistyped its flag) got no word. Refused now, as rasterize-osm refuses it (exit 2, nothing written)."""
    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 20, 20) * 200).astype(np.uint8))
    res = CliRunner().invoke(app, ["upscale", str(lr), "-x", "2", "-m", "bicubic", "-o", str(tmp_path / "o.tif"),
                                   "--aoi-crs", "EPSG:32633"])
    assert res.exit_code == 2 and "--aoi-crs applies to --aoi only" in " ".join(res.output.split()), res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr.tif"]



def test_aoi_crs_gives_a_vector_file_without_one_its_crs_and_is_refused_beside_a_file_s_own(tmp_path):
    """`--aoi-crs` was silently ignored with a vector file (a typo in it too); a shapefile without .prj was refused
    ("has no CRS") with no way to say it. Now `aoi_crs` is the CRS of a file that has none, and one that differs
    from a file's own is refused (exit 2)."""
    import geopandas as gpd
    from shapely.geometry import box

    corners = box(561000, 4185000, 565000, 4188000)
    gpd.GeoDataFrame(geometry=[corners], crs="EPSG:32610").to_file(tmp_path / "own.gpkg")
    gpd.GeoDataFrame(geometry=[corners]).to_file(tmp_path / "bare.shp")
    assert not (tmp_path / "bare.prj").exists()
    expected = Window(33, 66, 134, 101)
    assert aoi_window(str(tmp_path / "own.gpkg"), UTM) == expected
    assert aoi_window(str(tmp_path / "own.gpkg"), UTM, aoi_crs="EPSG:32610") == expected  # the same: taken
    assert aoi_window(str(tmp_path / "own.gpkg"), UTM, aoi_crs="epsg:4326") == expected  # the default: not given
    assert aoi_window(str(tmp_path / "bare.shp"), UTM, aoi_crs="EPSG:32610") == expected
    with pytest.raises(OptionError, match=r"as `aoi_crs` \(EPSG:4326\) has it for a file without a CRS; give"):
        aoi_window(str(tmp_path / "bare.shp"), UTM)
    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 20, 24) * 200).astype(np.uint8), crs=UTM.crs,
                     transform=UTM.transform @ Affine.scale(10))
    for crs, said in (("EPSG:3857", "its CRS is EPSG:32610, and --aoi-crs EPSG:3857 would be ignored; leave "
                                    "--aoi-crs out"), ("EPSG:99999-typo", "not a CRS geosr can use")):
        res = runner.invoke(app, ["upscale", str(lr), "-x", "2", "-m", "bicubic", "--aoi", str(tmp_path / "own.gpkg"),
                                  "--aoi-crs", crs, "-o", str(tmp_path / "o.tif")])
        assert res.exit_code == 2 and said in " ".join(res.output.split()), res.output
    assert not (tmp_path / "o.tif").exists()


def test_a_gml_area_of_interest_leaves_its_folder_as_it_was(tmp_path):
    """GDAL's GML reader wrote a .gfs beside a GML `--aoi` without a schema, even in a dry run."""
    import geopandas as gpd
    from shapely.geometry import box

    folder = tmp_path / "aoi"
    folder.mkdir()
    gpd.GeoDataFrame(geometry=[box(561000, 4185000, 565000, 4188000)], crs="EPSG:32610").to_file(
        folder / "a.gml", driver="GML")
    for extra in folder.iterdir():
        if extra.suffix != ".gml":
            extra.unlink()
    assert aoi_window(str(folder / "a.gml"), UTM) == Window(33, 66, 134, 101)
    assert sorted(p.name for p in folder.iterdir()) == ["a.gml"]


def test_a_vector_aoi_in_another_crs_covers_its_curved_edges_as_the_same_box_does(tmp_path):
    """Found by review: a vector AOI was taken to the scene's CRS by its features' corners, so the southern edge of a
    lon/lat box straddling a UTM zone's central meridian (curved in UTM, below its corners) lost ~100 m (two 60 m
    LR rows) that the same box given as W,S,E,N kept."""
    import geopandas as gpd
    from shapely.geometry import box

    grid = Grid(CRS.from_epsg(32633), Affine(60, 0, 460020, 0, -60, 5800020), 1260, 720)
    path = tmp_path / "box.geojson"
    gpd.GeoDataFrame(geometry=[box(14.5, 52.0, 15.5, 52.3)], crs="EPSG:4326").to_file(path)
    as_box = aoi_window("14.5,52.0,15.5,52.3", grid)
    assert aoi_window(str(path), grid) == as_box
    # the box's southern edge at 15 E (the zone's central meridian) lies inside the window
    _, (y,) = transform("EPSG:4326", grid.crs, [15.0], [52.0])
    assert grid.transform.f - (as_box.row_off + as_box.height) * 60 <= y


@pytest.mark.parametrize("wkt, window", [
    ("POINT (500200 5199695)", Window(20, 30, 1, 1)),  # a point on a column edge
    ("LINESTRING (500203 5199700, 500297 5199700)", Window(20, 30, 10, 1)),  # along a row edge
    ("LINESTRING (500200 5199605, 500200 5199795)", Window(20, 20, 1, 20)),  # along a column edge
    ("POINT (500600 5199500)", Window(59, 49, 1, 1)),  # the scene's far corner
])
def test_an_aoi_of_no_extent_on_a_pixel_edge_takes_the_pixel_beside_it(tmp_path, wkt, window):
    """Found by review: a point or a line lying on a pixel edge covered no whole pixel and was refused as "does not
    overlap the scene"."""
    import geopandas as gpd
    from shapely import wkt as shapely_wkt

    grid = Grid(CRS.from_epsg(32633), Affine(10, 0, 500000, 0, -10, 5200000), 60, 50)
    path = tmp_path / "a.geojson"
    gpd.GeoDataFrame(geometry=[shapely_wkt.loads(wkt)], crs="EPSG:32633").to_file(path)
    assert aoi_window(str(path), grid) == window


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/aoi.geojson", "/vsicurl/https://example.org/aoi.gpkg"])
def test_an_area_of_interest_by_url_is_said_to_be_read_from_a_local_file(url):
    """A URL for --aoi was "no such area-of-interest file" though its server had it (found in review)."""
    grid = Grid(CRS.from_epsg(32633), Affine(10, 0, 500000, 0, -10, 5000000), 100, 100)
    with pytest.raises(OptionError, match=r"an area of interest \(`aoi`\) is read from a local vector file; "
                                          r"download it first"):
        aoi_window(url, grid)
