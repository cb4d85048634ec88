"""``geosr rasterize-osm`` from the command line: success, bad inputs (exit 2), the online path offline."""

from __future__ import annotations

import json
import os
import re
import warnings
from collections import OrderedDict
from hashlib import sha1
from pathlib import Path

import numpy as np
import pytest
import rasterio
import typer
from typer.testing import CliRunner

from conftest import make_raster
from geosr.cli.rasterize_osm import RasterizeOSMCommand, rasterize_osm
from geosr.errors import OptionError
from geosr.osm.classes import DEFAULT_MAP_CLASSES
from test_osm_docs import EXPECTED, pixel_of, scene_doc, scene_grid_raster

app = typer.Typer()
app.command("rasterize-osm", cls=RasterizeOSMCommand)(rasterize_osm)


@app.callback()
def _root() -> None:
    """A one-command app, so the command keeps its name as in geosr."""


runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, ["rasterize-osm", *map(str, args)])


@pytest.fixture
def scene(tmp_path):
    return scene_doc().write_xml(tmp_path / "scene.osm")


def _assert_bad_input(result, out: Path, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.output.rstrip("\n").splitlines()
    assert len(lines) == 1, result.output  # one sentence (no blank line from a progress display that never showed)
    assert lines[0].startswith("geosr: error:")
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]  # no partial files


def test_help_states_the_bbox_order():
    result = invoke("--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "LEFT,BOTTOM,RIGHT,TOP" in text and "west" in text and "Examples" in text


def test_the_old_four_word_box_still_works_with_a_deprecation_notice(tmp_path):
    """One box syntax (LEFT,BOTTOM,RIGHT,TOP, as --aoi writes it); the old four words are read for one release."""
    doc = scene_doc()
    out = tmp_path / "old.tif"
    result = invoke("--bbox", "-122.30", "37.80", "-122.299", "37.801", "-r", "5", "--osm-file",
                    doc.write_xml(tmp_path / "s.osm"), "-o", out, "--allow-empty", "-q")
    assert result.exit_code == 0, result.output
    assert "deprecated; write --bbox -122.30,37.80,-122.299,37.801" in result.output
    with rasterio.open(out) as ds:
        assert ds.crs.to_epsg() == 32610 and ds.res == (5.0, 5.0)


def test_like_with_osm_file(tmp_path, scene):
    like = scene_grid_raster(tmp_path)
    out = tmp_path / "map.tif"
    result = invoke("--like", like, "--osm-file", scene, "-o", out)
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "OpenStreetMap" in result.output
    with rasterio.open(out) as ds:
        cls = ds.read(1)
    (x, y), want = EXPECTED["building (outer ring)"]
    assert cls[pixel_of(x, y)] == want
    # `geosr info` says what made the map: its classes, style, source and the OSM data's date
    from geosr.cli.app import app as geosr_app
    from geosr.io.describe import geosr_record

    record = geosr_record(str(out))
    assert record is not None and record["map_class_table"] == DEFAULT_MAP_CLASSES.name
    assert record["map_classes"] == DEFAULT_MAP_CLASSES.names and record["map_style"] == "classes"
    assert record["osm_timestamp"] == "2020-01-01T00:00:00Z" and record["osm_source"] == scene.name
    said = " ".join(runner.invoke(geosr_app, ["info", str(out)]).output.split())
    assert (f"OSM map made by geosr {record['version']} rasterize-osm: class table {DEFAULT_MAP_CLASSES.name} ("
            f"{', '.join(DEFAULT_MAP_CLASSES.names)}), style classes, from ") in said, said
    assert "OSM data as of 2020-01-01T00:00:00Z" in said, said


def test_json_summary(tmp_path, scene):
    out = tmp_path / "map.tif"
    result = invoke("--like", scene_grid_raster(tmp_path), "-x", "2", "--osm-file", scene, "-o", out, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["ok"] is True
    assert summary["width"] == 400 and summary["classes"] == DEFAULT_MAP_CLASSES.names
    assert summary["features"]["building"] == 2
    assert summary["timestamp"] == "2020-01-01T00:00:00Z"


def test_bbox_with_negative_longitudes_parses(tmp_path):
    doc = scene_doc()
    out = tmp_path / "empty.tif"
    result = invoke(
        "--bbox", "-122.30,37.80,-122.299,37.801", "-r", "5", "--osm-file",
        doc.write_xml(tmp_path / "s.osm"), "-o", out, "--allow-empty", "-q",
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip() == ""
    with rasterio.open(out) as ds:
        assert ds.crs.to_epsg() == 32610 and ds.res == (5.0, 5.0)


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--bbox", "9.1,50,9.0,50.1", "-r", "1"], ["--bbox", "inverted"]),
        (["--bbox", "9.0,50.1,9.1,50.0", "-r", "1"], ["--bbox", "inverted"]),
        (["--bbox", "9.0,95,9.1,96", "-r", "1"], ["--bbox", "latitude 95"]),
        (["--bbox", "200,50,201,50.1", "-r", "1"], ["--bbox", "longitude 200"]),
        (["--bbox", "9.0,50,9.0,50.1", "-r", "1"], ["--bbox", "empty area"]),
        (["--bbox", "9.0,50,9.1,50.1", "-r", "1", "--crs", "EPSG:999999"], ["--crs", "EPSG:999999"]),
        (["--bbox", "9.0,50,9.1,50.1", "-r", "1", "--crs", "not-a-crs"], ["--crs"]),
        (["--bbox", "9.0,50,9.1,50.1"], ["--resolution"]),
        (["--bbox", "9.0,50,9.1,50.1", "-r", "0"], ["--resolution"]),
        ([], ["--bbox", "--like"]),
        (["--bbox", "9.0,50,9.1,50.1", "-r", "1", "--style", "fancy"], ["--style"]),
        (["--bbox", "9.0,50,9.1,50.1", "-r", "1", "--date", "1999-01-01"], ["--date", "2012"]),
        (["--bbox", "9.0,50,9.1,50.1", "-r", "1", "--date", "yesterday"], ["--date"]),
        (["--bbox", "9.0,50,9.1,50.1", "-r", "1", "--timeout", "0"], ["--timeout"]),
    ],
)
def test_bad_options_exit_2(tmp_path, args, needles):
    out = tmp_path / "map.tif"
    _assert_bad_input(invoke(*args, "-o", out), out, *needles)


def test_bad_files_exit_2(tmp_path, scene):
    out = tmp_path / "map.tif"
    like = scene_grid_raster(tmp_path)
    garbage_osm = tmp_path / "garbage.osm"
    garbage_osm.write_text("this is not xml <<<")
    garbage_bz2 = tmp_path / "garbage.osm.bz2"
    garbage_bz2.write_bytes(b"BZh9 not really bzip2")
    garbage_pbf = tmp_path / "garbage.osm.pbf"
    garbage_pbf.write_bytes(b"\x00\x00\x00\x0fnot a pbf at all")
    garbage_gpkg = tmp_path / "garbage.gpkg"
    garbage_gpkg.write_text("nope")
    csv = tmp_path / "points.csv"
    csv.write_text("a,b\n1,2\n")
    table = tmp_path / "classes.json"
    table.write_text('{"classes": [{"value": 1, "name": "water"}]}')
    not_raster = tmp_path / "like.txt"
    not_raster.write_text("hello")
    cases = [
        (["--like", like, "--osm-file", tmp_path / "missing.osm"], ["missing.osm", "no such file"]),
        (["--like", like, "--osm-file", garbage_osm], ["garbage.osm", "OSM XML"]),
        (["--like", like, "--osm-file", garbage_bz2], ["garbage.osm.bz2"]),
        (["--like", like, "--osm-file", garbage_pbf], ["garbage.osm.pbf", "PBF"]),
        (["--like", like, "--osm-file", garbage_gpkg], ["garbage.gpkg"]),
        (["--like", like, "--osm-file", csv], ["points.csv", "unsupported"]),
        # a class table given as the OSM file: GDAL's own words and its hint of driver prefixes before
        (["--like", like, "--osm-file", table], ["classes.json: is not GeoJSON"]),
        (["--like", tmp_path / "nope.tif", "--osm-file", scene], ["nope.tif", "no such file"]),
        (["--like", not_raster, "--osm-file", scene], ["like.txt"]),
        (["--like", like, "--osm-file", scene, "-x", "0"], ["-x"]),
        (["--like", like, "--osm-file", scene, "--resolution", "2"], ["--resolution", "--like"]),
        (["--like", like, "--osm-file", scene, "--classes", tmp_path / "nope.json"], ["nope.json"]),
        (["--like", like, "--osm-file", scene, "--date", "2020-01-01"], ["--date", "--osm-file"]),
    ]
    for args, needles in cases:
        _assert_bad_input(invoke(*args, "-o", out), out, *needles)


def test_empty_area_exit_2(tmp_path, scene):
    out = tmp_path / "map.tif"
    result = invoke("--bbox", "10.5,50.5,10.501,50.501", "-r", "1", "--osm-file", scene, "-o", out)
    _assert_bad_input(result, out, "scene.osm", "no feature", "--allow-empty")


def test_existing_output_is_kept(tmp_path, scene):
    out = tmp_path / "map.tif"
    out.write_bytes(b"precious")
    result = invoke("--like", scene_grid_raster(tmp_path), "--osm-file", scene, "-o", out)
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert out.read_bytes() == b"precious"
    result = invoke("--like", scene_grid_raster(tmp_path), "--osm-file", scene, "-o", out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert out.read_bytes() != b"precious"


# --- the online path, offline -----------------------------------------------------------------------
def _prefill_osmnx_cache(cache: Path, polygon, tags, url: str, response: dict) -> list[Path]:
    """Write ``response`` where osmnx 2.1 looks for the Overpass answer to this query.

    osmnx (``_overpass._overpass_request``) keys its cache by the SHA-1 of the GET URL
    ``{overpass_url}/interpreter?data=<query>`` prepared by requests, and splits big polygons into
    several requests (``_make_overpass_polygon_coord_strs``); the query text depends on the
    timeout, so it is built here under the same settings geosr uses (whole seconds: Overpass refuses fractions).
    """
    import osmnx as ox
    import requests
    from osmnx import _overpass

    old = {k: getattr(ox.settings, k) for k in ("requests_timeout", "overpass_settings")}
    ox.settings.requests_timeout = 180.0
    ox.settings.overpass_settings = "[out:json][timeout:180]{maxsize}"
    try:
        files = []
        for coord_str in _overpass._make_overpass_polygon_coord_strs(polygon):
            query = _overpass._create_overpass_features_query(coord_str, tags)
            request = requests.Request("GET", url.rstrip("/") + "/interpreter", params=OrderedDict(data=query))
            get_url = request.prepare().url
            path = cache / f"{sha1(get_url.encode('utf-8')).hexdigest()}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(response), encoding="utf-8")
            files.append(path)
        return files
    finally:
        for k, v in old.items():
            setattr(ox.settings, k, v)


def test_online_path_from_prefilled_osmnx_cache(tmp_path):
    import osmnx as ox

    from geosr.osm.grid import plan_grid
    from geosr.osm.sources import query_area

    like = scene_grid_raster(tmp_path)
    grid = plan_grid(like=like)
    polygon = query_area(grid, DEFAULT_MAP_CLASSES)
    cache = tmp_path / "cache"
    files = _prefill_osmnx_cache(
        cache, polygon, DEFAULT_MAP_CLASSES.query_tags(), "https://overpass-api.de/api", scene_doc().overpass_json()
    )
    assert files
    before = ox.settings.cache_folder
    out = tmp_path / "online.tif"
    result = invoke("--like", like, "--cache-dir", cache, "-o", out, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["source"].startswith("Overpass API")
    assert summary["timestamp"] == "2024-05-01T12:00:00Z" and summary["timestamp_kind"] == "snapshot"
    with rasterio.open(out) as ds:
        cls = ds.read(1)
        assert ds.tags()["OSM_TIMESTAMP"] == "2024-05-01T12:00:00Z"
    for what, ((x, y), want) in EXPECTED.items():
        assert cls[pixel_of(x, y)] == want, what
    assert ox.settings.cache_folder == before  # geosr put osmnx's settings back
    # a cache folder this user may not write in, which holds every answer the run needs, serves it (a shared cache
    # of a reproducible run was refused for it; found in review)
    import geosr.osm.overpass as overpass

    allowed = os.access
    with pytest.MonkeyPatch.context() as mp:  # (as root, as CI may run, mode 555 would still be writable)
        mp.setattr(overpass.os, "access", lambda p, mode: not (Path(p) == cache and mode & os.W_OK)
                   and allowed(p, mode))
        again = invoke("--like", like, "--cache-dir", cache, "-o", tmp_path / "again.tif")
        assert again.exit_code == 0, again.output
    # identical to the offline result from the same data
    offline = tmp_path / "offline.tif"
    assert invoke("--like", like, "--osm-file", scene_doc().write_xml(tmp_path / "s.osm"), "-o", offline).exit_code == 0
    with rasterio.open(offline) as ds:
        np.testing.assert_array_equal(ds.read(1), cls)


def test_unreachable_overpass_is_one_sentence(tmp_path):
    out = tmp_path / "map.tif"
    result = invoke(
        "--like", scene_grid_raster(tmp_path), "--overpass-url", "http://127.0.0.1:9/api",
        "--cache-dir", tmp_path / "cache", "--timeout", "5", "-o", out,
    )
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "cannot reach the Overpass API at http://127.0.0.1:9/api" in lines[0]
    assert "--osm-file" in lines[0]
    assert not out.exists()


def test_a_cache_folder_that_is_a_file_is_refused_naming_where_it_was_set(tmp_path, monkeypatch):
    """`--cache-dir`, $GEOSR_CACHE_DIR or $XDG_CACHE_HOME naming a file (or /dev/null) was an internal error, exit 1,
    NotADirectoryError from osmnx's cache (found in review); checked before any connection."""
    like, out = scene_grid_raster(tmp_path), tmp_path / "map.tif"
    (tmp_path / "note.txt").write_text("not a folder")
    online = ("--like", like, "--overpass-url", "http://127.0.0.1:9/api", "--timeout", "5", "-o", out)
    result = invoke(*online, "--cache-dir", tmp_path / "note.txt")
    assert result.exit_code == 2 and result.stderr.strip() == (
        f"geosr: error: {tmp_path / 'note.txt'}: cannot hold the cache of Overpass responses ({tmp_path / 'note.txt'} "
        "is not a folder; set by --cache-dir)"), result.output
    monkeypatch.setenv("GEOSR_CACHE_DIR", str(tmp_path / "note.txt" / "deeper"))
    result = invoke(*online)
    assert result.exit_code == 2 and "note.txt is not a folder; set by $GEOSR_CACHE_DIR)" in result.stderr
    monkeypatch.delenv("GEOSR_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "note.txt"))
    result = invoke(*online)
    assert result.exit_code == 2 and "note.txt is not a folder; set by $XDG_CACHE_HOME)" in result.stderr
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == sorted(["note.txt", like.name])
    # a link to nothing (FileExistsError when osmnx made the folder), and the Python API's keyword named
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    monkeypatch.delenv("XDG_CACHE_HOME")
    result = invoke(*online, "--cache-dir", tmp_path / "dangling")
    assert result.exit_code == 2 and "dangling is a link to nothing; set by --cache-dir)" in result.stderr
    # a read-only cache folder without the answer: said before asking (osmnx's write was a PermissionError after the
    # download; found in review)
    import geosr.osm.overpass as overpass

    (tmp_path / "ro").mkdir()
    allowed = os.access
    with pytest.MonkeyPatch.context() as mp:  # (as root, as CI may run, mode 555 would still be writable)
        mp.setattr(overpass.os, "access", lambda p, mode: not (Path(p).name == "ro" and mode & os.W_OK)
                   and allowed(p, mode))
        result = invoke(*online, "--cache-dir", tmp_path / "ro")
    assert result.exit_code == 2 and result.stderr.strip() == (
        f"geosr: error: {tmp_path / 'ro'}: cannot hold the cache of Overpass responses ({tmp_path / 'ro'} cannot be "
        "written, and this run has an answer to add or replace there; set by --cache-dir)"), result.output
    from geosr import rasterize_osm
    from geosr.errors import OptionError

    with pytest.raises(OptionError, match=r"not a folder; set by `cache_folder`\)") as info:
        rasterize_osm(output=out, like=like, cache_folder=tmp_path / "note.txt", overpass_url="http://127.0.0.1:9/api")
    assert info.value.param == "cache_folder"



def test_the_map_names_its_classes_where_gdal_reads_them(tmp_path, scene):
    from tests.gdal_pam import class_names

    out = tmp_path / "map.tif"
    assert invoke("--like", scene_grid_raster(tmp_path), "--osm-file", scene, "-o", out).exit_code == 0
    cats, rows = class_names(out)
    assert cats == DEFAULT_MAP_CLASSES.names
    assert [r["Class"] for r in rows] == DEFAULT_MAP_CLASSES.names


def test_like_a_url(tmp_path, scene):
    """--like takes a URL as upscale's inputs do (it was a path on the command line, which folded its //)."""
    import shutil

    from tests.range_server import serving

    folder = tmp_path / "www"
    folder.mkdir()
    shutil.copy(scene_grid_raster(tmp_path), folder / "like.tif")
    with serving(folder) as url:
        result = invoke("--like", f"{url}/like.tif", "--osm-file", scene, "-o", tmp_path / "m.tif")
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "m.tif") as ds, rasterio.open(folder / "like.tif") as like:
        assert (ds.crs, ds.transform, ds.shape) == (like.crs, like.transform, like.shape)


def test_a_file_whose_bounds_leave_part_of_the_grid_out_is_warned_about(tmp_path):
    """Outside the <bounds> an OSM XML file declares, every pixel is background ("no mapped feature") though no
    data was read there: said, with the share of the grid the file holds; a file that covers it all: nothing."""
    from rasterio.warp import transform_bounds

    from test_osm_docs import UTM

    like = scene_grid_raster(tmp_path)
    with rasterio.open(like) as ds:
        w, s, e, n = transform_bounds(UTM, "EPSG:4326", *ds.bounds)
    half = f'<bounds minlat="{s}" minlon="{w}" maxlat="{n}" maxlon="{(w + e) / 2}"/>'
    part = scene_doc().write_xml(tmp_path / "part.osm", header=half)
    res = invoke("--like", like, "--osm-file", part, "-o", tmp_path / "a.tif", "--json")
    assert res.exit_code == 0, res.output
    (warning,) = json.loads(res.stdout)["warnings"]
    assert "part.osm: holds OpenStreetMap data for 50.0% of the grid" in warning
    # and there a class map is nodata, not class 0 "background" (no feature mapped, where none was read; review)
    assert warning.endswith("outside it every pixel is nodata (255) but for the features drawn there, as nothing "
                            "else there was read"), warning
    with rasterio.open(tmp_path / "a.tif") as ds:
        got, nodata = ds.read(1), ds.nodata
    half = got.shape[1] // 2
    assert nodata == 255 and (got[:, : half - 2] != 255).all() and (got[:, half + 2:] == 255).mean() > 0.5
    assert set(np.unique(got[:, half + 2:])) - {255}  # features drawn beyond the bounds kept (whole ways)
    assert 0.25 < json.loads(res.stdout)["nodata_fraction"] < 0.5
    assert json.loads(res.stdout)["nodata_pixels"] == int((got == 255).sum())
    said = " ".join(invoke("--like", like, "--osm-file", part, "-o", tmp_path / "a2.tif").output.split())
    assert re.search(r"; nodata \d+\.\d% \(no OSM data read there\)", said), said
    # a rendered map has no nodata to give: background there, as the warning says
    res = invoke("--like", like, "--osm-file", part, "--style", "rgb", "-o", tmp_path / "rgb.tif", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["nodata_pixels"] == 0
    assert json.loads(res.stdout)["warnings"][0].endswith("background, though nothing there was read")
    with rasterio.open(tmp_path / "rgb.tif") as ds:
        assert ds.nodata is None
    # a file that leaves out a sliver: said so, never "100%" (it was rounded to whole percents)
    most = f'<bounds minlat="{s - 0.01}" minlon="{w - 0.01}" maxlat="{n + 0.01}" maxlon="{e - (e - w) * 0.005}"/>'
    res = invoke("--like", like, "--osm-file", scene_doc().write_xml(tmp_path / "most.osm", header=most),
                 "-o", tmp_path / "c.tif", "--json")
    (warning,) = json.loads(res.stdout)["warnings"]
    assert "most.osm: holds OpenStreetMap data for 99.5% of the grid" in warning, warning
    whole = f'<bounds minlat="{s - 0.01}" minlon="{w - 0.01}" maxlat="{n + 0.01}" maxlon="{e + 0.01}"/>'
    full = scene_doc().write_xml(tmp_path / "full.osm", header=whole)
    res = invoke("--like", like, "--osm-file", full, "-o", tmp_path / "b.tif", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["warnings"] == []
    with rasterio.open(tmp_path / "b.tif") as ds:  # (a file that holds the whole grid: no nodata, as before)
        assert ds.nodata is None and json.loads(res.stdout)["nodata_pixels"] == 0
    # a PBF file's header box, as extracts write it (found by review: only XML files' bounds were read)
    for name, box, said in (("part.osm.pbf", (w, s, (w + e) / 2, n), ["50.0% of the grid (its header's box)"]),
                            ("full.osm.pbf", (w - 0.01, s - 0.01, e + 0.01, n + 0.01), []), ("bare.osm.pbf", None, [])):
        pbf = scene_doc().write_pbf(tmp_path / name, box=box)
        res = invoke("--like", like, "--osm-file", pbf, "-o", tmp_path / f"{name}.tif", "--json")
        assert res.exit_code == 0, res.output
        warnings = json.loads(res.stdout)["warnings"]
        assert len(warnings) == len(said) and all(t in x for t, x in zip(said, warnings)), warnings


def test_a_continent_s_bounds_edge_is_placed_to_a_pixel_and_one_across_the_antimeridian_is_two_boxes(tmp_path):
    """Bounds' edges were densified by the box's own size: a continent-sized box's bottom edge, a curve in UTM, landed
    about 400 m off across a 1 m grid, most of it nodata though inside the bounds; a box across the antimeridian was
    read as the rest of the world (found in review)."""
    from pyproj import Transformer
    from rasterio.warp import transform_bounds

    from geosr.osm.files import declared_bounds
    from test_osm_docs import UTM

    like = scene_grid_raster(tmp_path)
    with rasterio.open(like) as ds:
        w, s, e, n = transform_bounds(UTM, "EPSG:4326", *ds.bounds)
        transform, shape = ds.transform, ds.shape
    mid = (s + n) / 2
    wide = f'<bounds minlat="{mid}" minlon="{w - 100}" maxlat="{n + 20}" maxlon="{e + 20}"/>'  # (its edge mid-segment)
    res = invoke("--like", like, "--osm-file", scene_doc().write_xml(tmp_path / "wide.osm", header=wide),
                 "-o", tmp_path / "w.tif", "--json")
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "w.tif") as ds:
        got = ds.read(1)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]] + 0.5
    x, y = transform @ (cols, rows)
    _, lat = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True).transform(x, y)
    wrong = ((got == 255) & (lat > mid)) | ((got != 255) & (got == 0) & (lat < mid))
    assert wrong.sum() <= shape[1], int(wrong.sum())  # (a row of pixels at most: those the edge crosses)
    assert (got == 255).any() and (lat < mid).any() and (lat > mid).any()
    across = tmp_path / "across.osm"
    across.write_text('<?xml version="1.0"?><osm version="0.6"><bounds minlat="-17.1" minlon="179.9" '
                      'maxlat="-16.9" maxlon="-179.9"/></osm>', encoding="utf-8")
    assert declared_bounds(across) == [(179.9, -17.1, 180.0, -16.9), (-180.0, -17.1, -179.9, -16.9)]


def test_an_empty_map_allowed_of_a_file_whose_bounds_miss_the_grid_is_nodata_and_says_so(tmp_path):
    """--allow-empty promised an all-background map; where the file's bounds leave the grid out it is nodata, and
    the summary read "classes: ; nodata 100.0%" (found in review)."""
    from rasterio.warp import transform_bounds

    from test_osm_docs import UTM

    like = scene_grid_raster(tmp_path)
    with rasterio.open(like) as ds:
        w, s, e, n = transform_bounds(UTM, "EPSG:4326", *ds.bounds)
    away = f'<bounds minlat="{s}" minlon="{e + 0.01}" maxlat="{n}" maxlon="{e + 0.02}"/>'
    empty = tmp_path / "empty.osm"
    empty.write_text(f'<?xml version="1.0"?><osm version="0.6">{away}</osm>', encoding="utf-8")
    res = invoke("--like", like, "--osm-file", empty, "--allow-empty", "-o", tmp_path / "e.tif")
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())
    assert "classes: none drawn; nodata 100.0% (no OSM data read there)" in said, said
    with rasterio.open(tmp_path / "e.tif") as ds:
        assert (ds.read(1) == 255).all() and ds.nodata == 255


def test_a_file_of_another_area_is_named_as_such_and_online_options_are_refused_with_it(tmp_path):
    """A file whose <bounds> lie elsewhere said "has no feature ... inside the grid (574592 5.31678e+06 ...)";
    `--timeout` with `--osm-file` was ignored, and `--overpass-url` alone was refused as "--date and --overpass-url"."""
    from rasterio.warp import transform_bounds

    from test_osm_docs import UTM

    like = scene_grid_raster(tmp_path)
    with rasterio.open(like) as ds:
        w, s, e, n = transform_bounds(UTM, "EPSG:4326", *ds.bounds)
    away = f'<bounds minlat="{s + 1}" minlon="{w + 1}" maxlat="{n + 1}" maxlon="{e + 1}"/>'
    other = scene_doc().write_xml(tmp_path / "other.osm", header=away)
    out = tmp_path / "a.tif"
    res = invoke("--bbox", f"{w + 0.5},{s + 0.5},{w + 0.5005},{s + 0.5005}", "-r", "2", "--osm-file", other, "-o", out)
    _assert_bad_input(res, out, "other.osm: holds no OpenStreetMap data for this area (its <bounds>: ",
                      "leave --osm-file out to read it online")
    assert "e+0" not in res.output
    for flag, value in (("--timeout", "5"), ("--overpass-url", "http://127.0.0.1:9"), ("--cache-dir", tmp_path)):
        res = invoke("--like", like, "--osm-file", other, flag, value, "-o", out)
        _assert_bad_input(res, out, f"{flag} is for the online source (the Overpass API); leave it out with "
                                    "--osm-file")


def test_a_grid_is_taken_from_a_raster_of_complex_values(tmp_path):
    """`--like` wants the raster's grid only: a single-look complex SAR raster was refused ("geosr super-resolves
    real-valued images"), which this command does not do."""
    like = scene_grid_raster(tmp_path)
    with rasterio.open(like) as ds:
        profile = {**ds.profile, "dtype": "complex64", "count": 1, "nodata": None}
    with rasterio.open(tmp_path / "slc.tif", "w", **profile) as out:
        out.write(np.ones((1, profile["height"], profile["width"]), np.complex64))
    res = invoke("--like", tmp_path / "slc.tif", "--osm-file", scene_doc().write_xml(tmp_path / "s.osm"),
                 "-o", tmp_path / "m.tif")
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "m.tif") as ds, rasterio.open(like) as ref:
        assert (ds.crs, ds.transform, ds.shape) == (ref.crs, ref.transform, ref.shape)


def test_a_file_of_a_composite_like_raster_is_never_the_output(tmp_path):
    """`--like item.json -o <one of its band files> --overwrite` replaced the item's red band with a class map (exit
    0): only GDAL's own file list was checked, which knows no STAC item's (nor a Sentinel-2 product's) files."""
    from tests.s2_products import band_files, item_over_band_files

    folder = tmp_path / "item"
    folder.mkdir()
    band_files(folder)
    item = item_over_band_files(folder)
    red = next(folder.glob("*_B04_10m.tif"))
    before = red.read_bytes()
    res = invoke("--like", item, "--osm-file", scene_doc().write_xml(tmp_path / "s.osm"), "--allow-empty",
                 "-o", red, "--overwrite")
    assert res.exit_code == 2 and f"{red.name}: is the raster" in res.output, res.output
    assert red.read_bytes() == before


def test_an_aoi_crs_without_an_aoi_is_refused(tmp_path):
    """`--aoi-crs` was taken and ignored without `--aoi` (a typo in it went unnoticed: `EPSG:nonsense` ran)."""
    out = tmp_path / "m.tif"
    res = invoke("--bbox", "500000,5000000,500100,5000100", "--crs", "EPSG:32633", "-r", "10", "--aoi-crs",
                 "EPSG:nonsense", "--osm-file", scene_doc().write_xml(tmp_path / "s.osm"), "-o", out)
    _assert_bad_input(res, out, "--aoi-crs applies to --aoi only")


@pytest.mark.parametrize("crs, transform, crosses", [
    ("EPSG:4326", rasterio.Affine(0.001, 0, 180.5, 0, -0.001, -16.0), True),  # numbered 0-360
    ("EPSG:32760", rasterio.Affine(10, 0, 820600, 0, -10, 8229200), True),  # UTM 60S over 180 degrees
    ("EPSG:4326", rasterio.Affine(0.001, 0, 179.9, 0, -0.001, -16.0), False),  # ends at 180: on one side
    # UTM 60S ending 10-26 m west of 180 degrees: only the query's 30 m margin crosses it (was refused)
    ("EPSG:32760", rasterio.Affine(10, 0, 820082, 0, -10, 8229200), False),
])
def test_a_grid_across_the_antimeridian_is_refused_not_left_empty(tmp_path, crs, transform, crosses):
    """OSM is queried in one lon/lat polygon: for a grid over 180 degrees (or numbered 0-360) it spanned the globe
    the other way, or nothing, and the buildings inside the grid were never read (an all-background map, or "no
    feature inside the grid"). Refused in one sentence until such grids are split; one that ends at 180 runs."""
    like = tmp_path / "like.tif"
    with rasterio.open(like, "w", driver="GTiff", width=100, height=100, count=1, dtype="uint8", crs=crs,
                       transform=transform) as ds:
        ds.write(np.ones((1, 100, 100), np.uint8))
    out = tmp_path / "m.tif"
    res = invoke("--like", like, "--osm-file", scene_doc().write_xml(tmp_path / "s.osm"), "--allow-empty", "-o", out)
    if crosses:
        _assert_bad_input(res, out, "crosses the antimeridian (180 degrees longitude)")
    else:
        assert res.exit_code == 0, res.output


@pytest.mark.parametrize("bbox", ["179.9,-16.1,180,-16", "-180,-16.1,-179.9,-16", "179,-17,180,-16",
                                  "-180,51,-179,52"])
def test_a_box_that_ends_at_the_antimeridian_is_queried_up_to_it(bbox):
    """A box ending at 180 degrees (or starting at -180: a 1-degree tile, Fiji, the Aleutians) was refused as
    crossing the antimeridian: its UTM grid, upright, reaches past 180 to cover the meridian its convergence tilts
    (found in review). Its query stops at 180 now."""
    from geosr.osm.grid import plan_grid
    from geosr.osm.sources import query_area

    box = [float(v) for v in bbox.split(",")]
    grid = plan_grid(bbox=bbox, resolution=10)
    poly = query_area(grid, DEFAULT_MAP_CLASSES, overhang=True)
    west, south, east, north = poly.bounds
    assert -180 <= west and east <= 180 and east - west < 1.2, poly.bounds
    assert (west < box[0] + 1e-6 and east > box[2] - 1e-6), (poly.bounds, box)
    # the same grid as a `like` raster's is the area asked for: its strip past 180 would be left background, so it
    # is refused (found in review of the change above)
    with pytest.raises(OptionError, match="crosses the antimeridian"):
        query_area(grid, DEFAULT_MAP_CLASSES)


class _Overpass:
    """An Overpass API on 127.0.0.1 answering every query with ``answer`` (status 200), and its status page."""

    STATUS = (b"Connected as: 1\nCurrent time: 2024-01-01T00:00:00Z\nAnnounced endpoint: none\nRate limit: 0\n"
              b"2 slots available now.\n")  # (its fifth line: no wait)

    def __init__(self, answer: dict | bytes, status: int = 200, kind: str = "application/json",
                 status_page: bytes | None = STATUS, cut: bool = False, delay: float = 0.0) -> None:
        """``status_page`` None: answered 404; ``cut``: the answer stops half way (its whole length announced);
        ``delay``: seconds before each answer."""
        import http.server
        import threading
        import time
        from urllib.parse import parse_qs

        body = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        self.queries: list[str] = []
        self.texts: list[str] = []  # the Overpass QL of each query
        self.auths: list[str | None] = []  # the Authorization header of each query
        queries, texts, auths = self.queries, self.texts, self.auths

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, data: bytes, kind: str, code: int = 200, half: bool = False) -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[:len(data) // 2] if half else data)

            def do_GET(self):  # osmnx asks the status page how long to wait
                if status_page is None:
                    self._send(b"not found", "text/plain", 404)
                else:
                    self._send(status_page, "text/plain")

            def do_POST(self):
                sent = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                queries.append(self.path)
                auths.append(self.headers.get("Authorization"))
                texts.extend(parse_qs(sent).get("data", []))
                time.sleep(delay)
                self._send(body, kind, status, half=cut)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/api"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _fetch_without_long_waits(tmp_path, monkeypatch, server: "_Overpass"):
    """A map from ``server`` with `--timeout 5`, osmnx failing the test where it would sleep a second or more;
    (result, output path, what it said on one line). The server is closed."""
    from osmnx import _overpass

    class NoLongWait:
        @staticmethod
        def sleep(seconds: float) -> None:
            assert seconds < 1, f"waited {seconds} s to ask"

    monkeypatch.setattr(_overpass, "time", NoLongWait)
    out = tmp_path / "m.tif"
    try:
        result = invoke("--like", scene_grid_raster(tmp_path), "--overpass-url", server.url, "--cache-dir",
                        tmp_path / "cache", "-o", out, "--timeout", "5")
    finally:
        server.close()
    return result, out, " ".join(result.output.split())


@pytest.mark.parametrize("status", [429, 504])
def test_a_busy_overpass_server_is_a_network_error_not_a_wait_without_end(tmp_path, monkeypatch, status):
    """An Overpass server answering 429 (too many requests) or 504 (overloaded) made the run wait 55 s and ask again,
    without end, whatever `--timeout` said (osmnx's retry; found in review). Now one sentence, exit 1, one query."""
    server = _Overpass({"elements": []}, status=status)
    result, out, said = _fetch_without_long_waits(tmp_path, monkeypatch, server)
    assert result.exit_code == 1 and f"the Overpass API at {server.url} is busy (HTTP {status} " in said, said
    assert "try again later, or work offline with --osm-file" in said and len(server.queries) == 1, said
    assert not out.exists()


@pytest.mark.parametrize("status", [200, 503])
def test_an_answer_in_json_that_is_no_overpass_result_is_one_sentence_and_not_cached(tmp_path, status):
    """A JSON answer without `elements` (a proxy's or gateway's `{"message": ...}`) was "internal error: KeyError:
    'elements'", and with status 200 it was cached: every later run failed the same way without asking again."""
    server = _Overpass({"message": "Rate limit reached, see the docs"}, status=status)
    try:
        out = tmp_path / "m.tif"
        result = invoke("--like", scene_grid_raster(tmp_path), "--overpass-url", server.url, "--cache-dir",
                        tmp_path / "cache", "-o", out)
    finally:
        server.close()
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and f"the Overpass API at {server.url} sent an answer that is no Overpass result " \
        f"(HTTP {status}, JSON without a list of elements: Rate limit reached, see the docs)" in said, said
    assert not out.exists() and not list((tmp_path / "cache").glob("*.json"))


@pytest.mark.parametrize("kept", ["cut", "no result"])
def test_a_cached_answer_cut_short_is_asked_again(tmp_path, kept):
    """A cached answer cut short (a full disk, a killed write) was "internal error: JSONDecodeError" at every later
    run, the cache file unnamed, the server never asked again; one that is no Overpass result (cached before such
    answers were refused) "internal error: KeyError: 'elements'" (found in review)."""
    from geosr.osm.grid import plan_grid
    from geosr.osm.sources import query_area

    like = scene_grid_raster(tmp_path)
    polygon = query_area(plan_grid(like=like), DEFAULT_MAP_CLASSES)
    server = _Overpass(scene_doc().overpass_json())
    try:
        files = _prefill_osmnx_cache(tmp_path / "cache", polygon, DEFAULT_MAP_CLASSES.query_tags(), server.url,
                                     scene_doc().overpass_json())
        for f in files:
            f.write_bytes(f.read_bytes()[:500] if kept == "cut" else b'{"message": "Rate limit reached"}')
        result = invoke("--like", like, "--overpass-url", server.url, "--cache-dir", tmp_path / "cache", "-o",
                        tmp_path / "m.tif")
    finally:
        server.close()
    assert result.exit_code == 0, result.output
    assert len(server.queries) == len(files) and all(json.loads(f.read_bytes()) for f in files)


def test_the_oldest_of_cached_answers_dates_the_map():
    """A map joined from cached answers of two ages was tagged "snapshot" with the newest: complete up to a time
    that a third of its area was not (found in review)."""
    import tempfile

    from geosr.osm.overpass import _overpass_timestamp

    with tempfile.TemporaryDirectory() as folder:
        files = []
        for i, stamp in enumerate(("2025-06-01T00:00:00Z", "2023-01-01T00:00:00Z", "2025-06-01T00:00:00Z")):
            files.append(Path(folder) / f"{i}.json")
            files[-1].write_text(json.dumps({"osm3s": {"timestamp_osm_base": stamp}, "elements": []}))
        assert _overpass_timestamp(files) == "2023-01-01T00:00:00Z"


@pytest.mark.parametrize("page", [None, b"Connected as: 1\nCurrent time: 2024-01-01T00:00:00Z\nAnnounced endpoint: "
                                        b"none\nRate limit: 2\nSlot available after: 2099-01-01T00:00:00Z, in "
                                        b"2000000000 seconds.\n"])
def test_the_wait_for_a_slot_is_bounded_by_the_timeout(tmp_path, monkeypatch, page):
    """osmnx waits before each request for the slot the server's /status names: 60 s, silently, when it has no
    status page, and as long as the page says otherwise, whatever `--timeout` was (found in review). A server
    without one is asked at once; one asking for more than the timeout is busy (exit 1)."""
    server = _Overpass(scene_doc().overpass_json(), status_page=page)
    result, out, said = _fetch_without_long_waits(tmp_path, monkeypatch, server)
    if page is None:
        assert result.exit_code == 0 and len(server.queries) == 1, said
    else:
        assert result.exit_code == 1 and "is busy (its status asks to wait " in said and " s for a free slot, " \
            "longer than the timeout of 5 s)" in said and not server.queries and not out.exists(), said


def test_the_bound_on_the_slot_wait_is_each_fetch_s_own(monkeypatch):
    """The bound was osmnx's function swapped in and out around each fetch: two fetches at once (threads of one
    process) left the first one's bound in place for good, and every later fetch was "busy" (found in review)."""
    import threading
    import time

    import osmnx as ox
    from osmnx import _overpass

    from geosr.osm.overpass import _pause_within

    monkeypatch.setattr(ox.settings, "overpass_rate_limit", False)  # (osmnx's own then waits 0 s, asking nothing)
    entered, leave = threading.Event(), threading.Event()

    def first() -> None:
        with _pause_within(0.01):
            entered.set()
            leave.wait(5)

    other = threading.Thread(target=first)
    other.start()
    entered.wait(5)
    with _pause_within(100.0):  # entered second, left last
        leave.set()
        other.join(5)
        time.sleep(0.05)  # past the first one's bound
        assert _overpass._get_overpass_pause("http://127.0.0.1:9/api") == 0
    assert _overpass._get_overpass_pause("http://127.0.0.1:9/api") == 0
    with _pause_within(0.2):  # the bound is each request's wait, not the whole fetch's time (a split area's many
        for _ in range(3):  # requests failed as "busy" once they took longer together; found in review)
            time.sleep(0.1)
            assert _overpass._get_overpass_pause("http://127.0.0.1:9/api") == 0


def test_online_maps_made_at_once_in_threads_each_read_their_own_server_and_cache(tmp_path):
    """Two online `rasterize_osm` calls in threads swapped osmnx's settings under each other: one map lost its
    OSM_TIMESTAMP (its cache was looked for in the other's folder), and osmnx kept one call's server and cache
    folder for the rest of the process (found in review)."""
    import threading

    import osmnx as ox

    from geosr import rasterize_osm as make_map

    keys = ("overpass_url", "cache_folder", "overpass_settings", "requests_timeout")
    before = {k: getattr(ox.settings, k) for k in keys}
    answer = scene_doc().overpass_json()
    servers = {"slow": _Overpass(answer, delay=1.0), "quick": _Overpass(answer)}
    like = scene_grid_raster(tmp_path)
    tags: dict = {}

    def run(name: str) -> None:
        make_map(tmp_path / f"{name}.tif", like=like, overpass_url=servers[name].url, cache_dir=tmp_path / name)
        with rasterio.open(tmp_path / f"{name}.tif") as ds:
            tags[name] = ds.tags().get("OSM_TIMESTAMP")

    try:
        threads = [threading.Thread(target=run, args=(name,)) for name in servers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        for s in servers.values():
            s.close()
    assert tags == {"slow": "2024-05-01T12:00:00Z", "quick": "2024-05-01T12:00:00Z"}, tags
    assert all(list((tmp_path / name).glob("*.json")) for name in servers)
    assert {k: getattr(ox.settings, k) for k in keys} == before


def test_a_bad_port_or_an_answer_broken_off_is_one_sentence(tmp_path):
    """`--overpass-url http://127.0.0.1:99999/api` was an internal error (exit 1: "Port out of range"); an answer
    stopped half way said "cannot reach the Overpass API", though it was reached (found in review)."""
    out = tmp_path / "m.tif"
    for port in ("99999", "abc"):
        result = invoke("--like", scene_grid_raster(tmp_path), "--overpass-url", f"http://127.0.0.1:{port}/api",
                        "--cache-dir", tmp_path / "cache", "-o", out)
        said = " ".join(result.output.split())
        assert result.exit_code == 2 and f"--overpass-url 'http://127.0.0.1:{port}/api': Port" in said, said
    server = _Overpass(scene_doc().overpass_json(), cut=True)
    try:
        result = invoke("--like", scene_grid_raster(tmp_path), "--overpass-url", server.url, "--cache-dir",
                        tmp_path / "cache", "-o", out)
    finally:
        server.close()
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and f"the Overpass API at {server.url} broke off its answer" in said, said
    assert not out.exists()


def test_osmnx_s_warning_of_a_large_area_is_one_of_the_run_s_warnings(tmp_path):
    """osmnx's warning that an area is split into many requests was printed raw, twice, even with `--quiet --json`
    (and not in its `warnings`); it is one of the run's warnings now."""
    from geosr.osm.grid import plan_grid
    from geosr.osm.sources import query_area

    grid_args = ("--bbox", "12.0,50.0,16.0,53.0", "-r", "5000", "--crs", "EPSG:32633")
    polygon = query_area(plan_grid(bbox=(12.0, 50.0, 16.0, 53.0), resolution=5000.0, crs="EPSG:32633"),
                         DEFAULT_MAP_CLASSES)
    with warnings.catch_warnings():  # (the test's own split of the area: osmnx warns of it here too)
        warnings.simplefilter("ignore")
        files = _prefill_osmnx_cache(tmp_path / "cache", polygon, DEFAULT_MAP_CLASSES.query_tags(),
                                     "https://overpass-api.de/api", {**scene_doc().overpass_json(), "elements": []})
    assert len(files) > 1
    result = invoke(*grid_args, "--cache-dir", tmp_path / "cache", "-o", tmp_path / "m.tif", "--allow-empty", "--json",
                    "-q")
    assert result.exit_code == 0, result.output
    assert "UserWarning" not in result.stderr, result.stderr
    said = json.loads(result.stdout)["warnings"]
    assert any(w.startswith("osmnx: This area is") and f"({len(files)} requests, each answer cached)" in w
               for w in said), said


REMARK = 'runtime error: Query timed out in "query" at line 5 after 181 seconds.'

# How Overpass answers a query it refuses (HTTP 400; Overpass-API's basic_formats.cc): the error after the page head
STATIC_ERROR_PAGE = b"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">
<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">
<head>
  <meta http-equiv="content-type" content="text/html; charset=utf-8" lang="en"/>
  <title>OSM3S Response</title>
</head>
<body>

<p>The data included in this document is from www.openstreetmap.org. The data is made available under ODbL.</p>
<p><strong style="color:#FF0000">Error</strong>: line 1: static error: For the attribute &quot;timeout&quot; of the \
element &quot;osm-script&quot; the only allowed values are positive integers. </p>

</body>
</html>
"""


@pytest.mark.parametrize(("timeout", "sent"), [(None, "[timeout:180]"), ("2.5", "[timeout:3]")])
def test_the_overpass_timeout_is_sent_in_whole_seconds(tmp_path, timeout, sent):
    """osmnx wrote geosr's float timeout into the query, "[out:json][timeout:180.0]", which Overpass refuses as a
    static error (HTTP 400: positive integers only): every online run failed against a real server (found in
    review). The refusal itself said only "<?xml version=...>": now Overpass's error text."""
    server = _Overpass(scene_doc().overpass_json())
    try:
        out = tmp_path / "m.tif"
        result = invoke("--like", scene_grid_raster(tmp_path), "--overpass-url", server.url, "--cache-dir",
                        tmp_path / "cache", "-o", out, *(("--timeout", timeout) if timeout else ()))
    finally:
        server.close()
    assert result.exit_code == 0, result.output
    assert server.texts and all(q.startswith(f"[out:json]{sent}") for q in server.texts), server.texts
    server = _Overpass(STATIC_ERROR_PAGE, status=400, kind="text/html")
    try:
        result = invoke("--like", scene_grid_raster(tmp_path, name="like2.tif"), "--overpass-url", server.url,
                        "--cache-dir", tmp_path / "cache2", "-o", tmp_path / "n.tif")
    finally:
        server.close()
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and "answered with an error: '127.0.0.1' responded: 400 Bad Request line 1: " \
        'static error: For the attribute "timeout" of the element "osm-script" the only allowed values are ' \
        "positive integers." in said, said
    assert not (tmp_path / "n.tif").exists()


@pytest.mark.parametrize("with_features", [False, True])
def test_an_overpass_server_reporting_a_runtime_error_gives_no_map(tmp_path, with_features):
    """Overpass reports a query that timed out or ran out of memory with HTTP 200 and a `remark`, holding the
    features found until then (maybe none): geosr wrote that empty or partial map, exit 0 (osmnx only logs the
    remark, and caches no such answer). Now it is a network error (exit 1) quoting the remark; nothing is written."""
    answer = scene_doc().overpass_json() if with_features else {"elements": []}
    server = _Overpass({**answer, "remark": REMARK})
    try:
        out = tmp_path / "m.tif"
        result = invoke("--like", scene_grid_raster(tmp_path), "--overpass-url", server.url, "--cache-dir",
                        tmp_path / "cache", "-o", out, "--allow-empty")
    finally:
        server.close()
    assert result.exit_code == 1, result.output
    assert f"answered with an error: {REMARK}" in result.output.replace("\n", " "), result.output
    assert not out.exists()


@pytest.mark.parametrize("with_features", [False, True])
def test_an_overpass_answer_that_reports_a_runtime_error_is_no_map(tmp_path, with_features):
    """Such an answer in osmnx's cache (where osmnx before 2.1 kept it) is no map either, and leaves the cache so
    that the next run asks again."""
    from geosr.osm.grid import plan_grid
    from geosr.osm.sources import query_area

    like = scene_grid_raster(tmp_path)
    polygon = query_area(plan_grid(like=like), DEFAULT_MAP_CLASSES)
    answer = scene_doc().overpass_json() if with_features else {"elements": []}
    answer = {**answer, "remark": REMARK}
    files = _prefill_osmnx_cache(tmp_path / "cache", polygon, DEFAULT_MAP_CLASSES.query_tags(),
                                 "https://overpass-api.de/api", answer)
    out = tmp_path / "m.tif"
    result = invoke("--like", like, "--cache-dir", tmp_path / "cache", "-o", out, "--allow-empty")
    assert result.exit_code == 1, result.output
    assert "answered with an error: runtime error: Query timed out" in result.output, result.output
    assert not out.exists() and not any(f.exists() for f in files)


def test_an_osm_xml_relation_with_a_way_cut_at_the_edge_is_named_in_one_sentence(tmp_path):
    """A multipolygon whose member way kept one of its nodes (an extract cut at its edge) was an internal error
    (shapely's EmptyPartError from osmnx's relation assembly), exit 1."""
    nodes = [(1, 37.8070, -122.3010), (2, 37.8070, -122.3000), (3, 37.8080, -122.3000), (4, 37.8080, -122.3010),
             (5, 37.8085, -122.3020)]
    (tmp_path / "cut.osm").write_text(
        "<?xml version='1.0' encoding='UTF-8'?>\n<osm version=\"0.6\">"
        + "".join(f'<node id="{i}" version="1" lat="{la}" lon="{lo}"/>' for i, la, lo in nodes)
        + '<way id="10" version="1"><nd ref="1"/><nd ref="2"/><nd ref="3"/><nd ref="4"/><nd ref="1"/></way>'
        '<way id="11" version="1"><nd ref="5"/><nd ref="99"/></way>'
        '<relation id="100" version="1"><member type="way" ref="10" role="outer"/>'
        '<member type="way" ref="11" role="outer"/><tag k="type" v="multipolygon"/><tag k="landuse" v="grass"/>'
        "</relation></osm>")
    out = tmp_path / "m.tif"
    result = invoke("--bbox", "-122.303,37.806,-122.298,37.8095", "-r", "10", "--osm-file", tmp_path / "cut.osm",
                    "-o", out)
    assert result.exit_code == 2, result.output
    assert "cut.osm: holds a relation whose member ways lack their nodes" in result.output and not out.exists()


def test_a_geographic_grid_in_grads_or_off_greenwich_is_refused_not_searched_elsewhere(tmp_path):
    """A `--like` raster in NTF (Paris) (EPSG:4807: grads from the Paris meridian) was searched as if its
    coordinates were degrees from Greenwich: another place on Earth, an empty map or a false "no feature". A grid
    in degrees from Greenwich on another datum (ETRS89) runs as before."""
    from affine import Affine

    data = np.zeros((1, 8, 10), np.uint8)
    paris = make_raster(tmp_path / "paris.tif", data, crs="EPSG:4807",
                        transform=Affine(1e-4, 0, 8.59, 0, -1e-4, 53.48))
    out = tmp_path / "m.tif"
    result = invoke("--like", paris, "--osm-file", scene_doc().write_xml(tmp_path / "s.osm"), "-o", out,
                    "--allow-empty")
    assert result.exit_code == 2, result.output
    assert "paris.tif: its CRS EPSG:4807 is a geographic CRS counting angles in grad" in result.output
    assert not out.exists()
    for crs in ("EPSG:4258", "EPSG:4979"):  # ETRS89; WGS 84 3D, whose height axis counts metres
        etrs = make_raster(tmp_path / "etrs.tif", data, crs=crs, transform=Affine(1e-4, 0, 10.068, 0, -1e-4, 48.137))
        result = invoke("--like", etrs, "--osm-file", scene_doc().write_xml(tmp_path / "s.osm"), "-o", out,
                        "--allow-empty", "--overwrite")
        assert result.exit_code == 0, (crs, result.output)


_SQUARE = """<?xml version="1.0" encoding="UTF-8"?>
<osm version="0.6" generator="test">
{bounds}
<node id="1" lat="48.0005" lon="11.0005" version="1" timestamp="2021-05-01T10:00:00Z"/>
<node id="2" lat="48.0005" lon="11.0010" version="1" timestamp="2021-05-01T10:00:00Z"/>
<node id="3" lat="48.0010" lon="11.0010" version="1" timestamp="2021-05-01T10:00:00Z"/>
<node id="4" lat="48.0010" lon="11.0005" version="1" timestamp="2021-05-01T10:00:00Z"/>
<way id="10" version="1" timestamp="2021-05-01T10:00:00Z"{deleted}><nd ref="1"/><nd ref="2"/><nd ref="3"/><nd ref="4"/>\
<nd ref="1"/><tag k="building" v="yes"/></way>
</osm>"""
_BOX = ("11.0,48.0,11.003,48.002", "-r", "2")


def test_osm_xml_as_josm_and_overpass_write_it(tmp_path):
    """JOSM's files: one <bounds> per area downloaded (only the first was read: "holds data for 0.0% of the grid",
    or a refusal), objects marked deleted (drawn); a gzipped file named in capitals (an encoding error); Overpass's
    `out geom` (ways with inline coordinates, no nodes: read as holding nothing, a map of background)."""
    import gzip

    far = '<bounds minlat="10.0" minlon="50.0" maxlat="10.01" maxlon="50.01"/>'
    here = '<bounds minlat="48.0" minlon="11.0" maxlat="48.002" maxlon="11.003"/>'
    (tmp_path / "two.osm").write_text(_SQUARE.format(bounds=far + "\n" + here, deleted=""))
    res = invoke("--bbox", *_BOX, "--osm-file", tmp_path / "two.osm", "-o", tmp_path / "two.tif", "--json")
    summary = json.loads(res.output)
    assert res.exit_code == 0 and summary["features"] == {"building": 1}, res.output
    assert not [w for w in summary["warnings"] if "0.0%" in w], summary["warnings"]
    (tmp_path / "del.osm").write_text(_SQUARE.format(bounds=here, deleted=' action="delete"'))
    res = invoke("--bbox", *_BOX, "--osm-file", tmp_path / "del.osm", "-o", tmp_path / "del.tif", "--allow-empty",
                 "--json")
    assert res.exit_code == 0 and json.loads(res.output)["features"] == {}, res.output
    with gzip.open(tmp_path / "T.OSM.GZ", "wt") as fh:
        fh.write(_SQUARE.format(bounds=here, deleted=""))
    res = invoke("--bbox", *_BOX, "--osm-file", tmp_path / "T.OSM.GZ", "-o", tmp_path / "gz.tif", "--json")
    assert res.exit_code == 0 and json.loads(res.output)["features"] == {"building": 1}, res.output
    geom = _SQUARE.format(bounds=here, deleted="")
    for i, (lat, lon) in enumerate(((48.0005, 11.0005), (48.0005, 11.001), (48.001, 11.001), (48.001, 11.0005)), 1):
        geom = geom.replace(f'<nd ref="{i}"/>', f'<nd ref="{i}" lat="{lat}" lon="{lon}"/>')
    geom = "\n".join(line for line in geom.splitlines() if not line.startswith("<node"))
    (tmp_path / "geom.osm").write_text(geom)
    out = tmp_path / "geom.tif"
    _assert_bad_input(invoke("--bbox", *_BOX, "--osm-file", tmp_path / "geom.osm", "-o", out, "--allow-empty"), out,
                      "geom.osm: 1 of its ways give their nodes' coordinates inline without the nodes (Overpass's "
                      "`out geom`)")
    # the same ways followed by their nodes (`out geom; >; out skel qt;`): read
    nodes = [line for line in _SQUARE.format(bounds="", deleted="").splitlines() if line.startswith("<node")]
    (tmp_path / "then.osm").write_text(geom.replace("</osm>", "\n".join(nodes) + "\n</osm>"))
    res = invoke("--bbox", *_BOX, "--osm-file", tmp_path / "then.osm", "-o", tmp_path / "then.tif", "--json")
    assert res.exit_code == 0 and json.loads(res.output)["features"] == {"building": 1}, res.output


def test_a_resolution_coarser_than_the_box_is_named_as_such(tmp_path):
    """-r 5000000 on a box of 100 m at 11 E was refused as a grid "crossing the antimeridian"."""
    out = tmp_path / "m.tif"
    (tmp_path / "a.osm").write_text(_SQUARE.format(bounds="", deleted=""))
    _assert_bad_input(invoke("--bbox", "11.01215,48.014291,11.013455,48.015213", "-r", "5000000", "--osm-file",
                             tmp_path / "a.osm", "-o", out), out,
                      "--resolution 5e+06 m is coarser than the box itself (about")


def test_quiet_keeps_the_warnings(tmp_path):
    """`-q` silences progress and the summary, and silenced the warnings too (the map covering part of the grid)."""
    half = '<bounds minlat="48.0" minlon="11.0" maxlat="48.002" maxlon="11.0015"/>'
    (tmp_path / "half.osm").write_text(_SQUARE.format(bounds=half, deleted=""))
    res = invoke("--bbox", *_BOX, "--osm-file", tmp_path / "half.osm", "-o", tmp_path / "h.tif", "-q")
    lines = res.output.strip().splitlines()
    assert res.exit_code == 0 and len(lines) == 1 and lines[0].startswith("warning: half.osm: holds OpenStreetMap "
                                                                          "data for"), res.output


def test_the_first_day_of_overpass_history_is_refused_in_words_that_say_why():
    """`--date 2012-09-12` was refused as "Overpass holds history only from 2012-09-12 on" (its first snapshot is
    at 06:55 UTC, a plain date is midnight; found in review): the sentence contradicted itself and the docs."""
    from geosr.osm.overpass import parse_snapshot_date

    with pytest.raises(OptionError, match=r"^date 2012-09-12: Overpass holds history only from 2012-09-12 06:55 UTC "
                                          r"on \(its first snapshot; give a later date\)$"):
        parse_snapshot_date("2012-09-12")
    assert parse_snapshot_date("2012-09-12T07:00:00Z") == "2012-09-12T07:00:00Z"
    assert parse_snapshot_date("2012-09-13") == "2012-09-13T00:00:00Z"
    assert "from 2012-09-12 06:55 UTC on" in (Path(__file__).parents[1] / "docs" / "cli-rasterize-osm.md").read_text()


def test_a_box_as_a_tuple_writes_the_bytes_the_command_line_writes(tmp_path):
    """`rasterize_osm(bbox=(w, s, e, n))`, the docstring's first form, recorded the box as a JSON list in
    GEOSR_OPTIONS where `--bbox w,s,e,n` records text: the same map in other bytes (found in review)."""
    import geopandas as gpd
    from shapely.geometry import box

    from geosr import rasterize_osm as api

    osm = tmp_path / "b.geojson"
    gpd.GeoDataFrame({"building": ["yes"]}, geometry=[box(10.0685, 48.1355, 10.0695, 48.1365)],
                     crs="EPSG:4326").to_file(osm)
    res = invoke("--bbox", "10.068,48.135,10.071,48.137", "-r", "5", "--osm-file", osm, "-o", tmp_path / "cli.tif")
    assert res.exit_code == 0, res.output
    api(tmp_path / "api.tif", bbox=(10.068, 48.135, 10.071, 48.137), resolution=5, osm_file=str(osm))
    assert (tmp_path / "api.tif").read_bytes() == (tmp_path / "cli.tif").read_bytes()


def test_a_box_beyond_the_utm_zones_is_named_by_its_centre_latitude(tmp_path):
    """`--bbox 10,89.9,11,90` said "at latitude 90.0" (its centre, 89.95, rounded; found in review)."""
    out = tmp_path / "m.tif"
    res = invoke("--bbox", "10,89.9,11,90", "-r", "10", "--osm-file", scene_doc().write_xml(tmp_path / "s.osm"),
                 "-o", out)
    _assert_bad_input(res, out, "--bbox is at latitude 89.95 (its centre), outside the UTM zones (80 S to 84 N)")


def test_overpass_credentials_are_sent_as_auth_and_never_shown_or_looked_up(tmp_path, monkeypatch):
    """`--overpass-url http://user:password@host/api`: osmnx took the user name for the host and looked it up in
    DNS (then at Google's DNS over HTTPS), and the map's OSM_SOURCE tag and the summary showed the password (found in
    review). The login now goes to the server as HTTP auth alone."""
    import base64
    import socket

    looked_up: list[str] = []
    lookup = socket.gethostbyname
    monkeypatch.setattr(socket, "gethostbyname", lambda host: looked_up.append(host) or lookup(host))
    server = _Overpass(scene_doc().overpass_json())
    try:
        out = tmp_path / "m.tif"
        login_url = server.url.replace("http://", "http://alice:s3cr%40t@")
        result = invoke("--like", scene_grid_raster(tmp_path), "--overpass-url", login_url, "--cache-dir",
                        tmp_path / "cache", "-o", out, "--json")
    finally:
        server.close()
    assert result.exit_code == 0, result.output
    assert server.auths and set(server.auths) == {"Basic " + base64.b64encode(b"alice:s3cr@t").decode()}
    assert "alice" not in looked_up and looked_up == ["127.0.0.1"], looked_up
    assert "s3cr" not in result.output and json.loads(result.stdout)["source"] == f"Overpass API {server.url}"
    with rasterio.open(out) as ds:
        assert ds.tags()["OSM_SOURCE"] == f"Overpass API {server.url}"


def test_a_projected_vector_file_under_a_wide_geographic_grid_loses_no_feature(tmp_path):
    """A grid in degrees read a projected file through the box of its outline's four corners: a parallel curves in
    UTM, so a building along the middle of the south edge lay outside the box and was left out without a word
    (found in review). The same features stored in either CRS give the same map."""
    import geopandas as gpd
    from rasterio.transform import from_origin
    from shapely.geometry import box

    like = tmp_path / "wide.tif"
    with rasterio.open(like, "w", driver="GTiff", width=3000, height=50, count=1, dtype="uint8", crs="EPSG:4326",
                       transform=from_origin(25.5, 60.05, 0.001, 0.001)) as ds:
        ds.write(np.zeros((1, 50, 3000), np.uint8))
    frame = gpd.GeoDataFrame({"building": ["yes", "yes"]}, crs="EPSG:4326",
                             geometry=[box(26.999, 60.002, 27.001, 60.003), box(25.6, 60.002, 25.602, 60.003)])
    frame.to_file(tmp_path / "wgs84.gpkg")
    frame.to_crs("EPSG:32635").to_file(tmp_path / "utm.gpkg")
    maps = []
    for name in ("wgs84", "utm"):
        res = invoke("--like", like, "--osm-file", tmp_path / f"{name}.gpkg", "-o", tmp_path / f"{name}.tif")
        assert res.exit_code == 0, res.output
        with rasterio.open(tmp_path / f"{name}.tif") as ds:
            maps.append(ds.read(1))
    building = DEFAULT_MAP_CLASSES.names.index("building")
    assert (maps[0] == building).sum() == 4 and (maps[1] == building)[:, 1400:1600].sum() == 2
    assert np.array_equal(maps[0] == building, maps[1] == building)


def test_an_unclosed_ring_is_one_sentence_without_gdal_warnings(tmp_path):
    """GDAL's "Non closed ring detected" RuntimeWarning reached stderr beside the refusal (found in review)."""
    osm = tmp_path / "unclosed.geojson"
    ring = [[-122.3, 37.807], [-122.2995, 37.807], [-122.2995, 37.8075], [-122.3, 37.8075]]  # not closed
    feature = {"type": "Feature", "properties": {"building": "yes"},
               "geometry": {"type": "Polygon", "coordinates": [ring]}}
    osm.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    out = tmp_path / "m.tif"
    with warnings.catch_warnings(record=True) as caught:  # (pytest holds warnings back from stderr)
        warnings.simplefilter("always")
        res = invoke("--bbox", "-122.3015,37.8055,-122.2985,37.8085", "-r", "2", "--osm-file", osm, "-o", out)
    _assert_bad_input(res, out, "unclosed.geojson", "cannot be read")
    assert not [w for w in caught if "ring" in str(w.message)], [str(w.message) for w in caught]


def test_a_vector_file_s_empty_false_and_numeric_values_and_closed_lines_are_read_as_osm_has_them(tmp_path):
    """Found in review: a vector file's missing tag written "" (shapefiles, QGIS, the SpaceNet labels) or false
    counted as tagged, so a park with building="" was drawn as a building; a number column with a gap is read as
    floats, and 5.0 never matched a table's "5"; a closed line string tagged building=yes (a closed way, as GDAL's
    OSM driver and many exports write it) drew nothing."""
    import json as _json

    import geopandas as gpd
    from shapely.geometry import LineString, box

    cells = [box(10.0685 + i * 0.0004, 48.1355, 10.0688 + i * 0.0004, 48.1358) for i in range(5)]
    frame = gpd.GeoDataFrame(
        {"building": ["", "false", "yes", None, None], "leisure": ["park", "park", "", None, None],
         "road_type": [None, None, None, 5.0, np.nan]},
        geometry=[*cells[:3], LineString(cells[3].exterior.coords), LineString(list(cells[4].exterior.coords)[:3])],
        crs="EPSG:4326")
    frame.loc[4, "building"] = "yes"  # (an open line: no area, and a building draws no lines)
    frame.loc[3, "building"] = "yes"  # a closed ring: the building it outlines
    osm = tmp_path / "f.gpkg"
    frame.to_file(osm)
    res = invoke("--bbox", "10.068,48.135,10.071,48.137", "-r", "2", "--osm-file", osm, "-o", tmp_path / "m.tif",
                 "--json")
    assert res.exit_code == 0, res.output
    assert _json.loads(res.stdout)["features"] == {"building": 2, "grass": 2}
    table = {"name": "roads", "classes": [{"id": 0, "name": "background", "color": "#000000"},
                                           {"id": 1, "name": "road", "color": "#ff0000", "tags": {"road_type": ["5"]},
                                            "areas": False, "line_widths": {"road_type": 4}}]}
    (tmp_path / "t.json").write_text(_json.dumps(table))
    roads = gpd.GeoDataFrame({"road_type": [5.0, np.nan]}, geometry=[
        LineString([(10.0685, 48.1356), (10.0705, 48.1356)]), LineString([(10.0685, 48.1362), (10.0705, 48.1362)])],
        crs="EPSG:4326")
    roads.to_file(tmp_path / "r.geojson")
    res = invoke("--bbox", "10.068,48.135,10.071,48.137", "-r", "2", "--osm-file", tmp_path / "r.geojson",
                 "--classes", tmp_path / "t.json", "-o", tmp_path / "r.tif", "--json")
    assert res.exit_code == 0 and _json.loads(res.stdout)["features"] == {"road": 1}, res.output
    # with the default table, whose keys none of its columns is: said so ("no feature ... inside the grid" alone,
    # for features that lie in it; found in review); --allow-empty writes its empty map as before
    res = invoke("--bbox", "10.068,48.135,10.071,48.137", "-r", "2", "--osm-file", tmp_path / "r.geojson", "-o",
                 tmp_path / "d.tif")
    _assert_bad_input(res, tmp_path / "d.tif", "r.geojson: has no feature of class table 'geosr-osm-v1' inside the "
                      "grid (", "); its 2 features there have none of the keys the table reads (aeroway, amenity, ",
                      "as a column, and a vector file's columns are read as OSM tags; nothing written")
    res = invoke("--bbox", "10.068,48.135,10.071,48.137", "-r", "2", "--osm-file", tmp_path / "r.geojson", "-o",
                 tmp_path / "d.tif", "--allow-empty")
    assert res.exit_code == 0 and (tmp_path / "d.tif").exists(), res.output
    # a closed line with a boolean area: false stays a line (it was made an area, and drew nothing; review)
    ring = LineString([(10.0685, 48.1355), (10.0695, 48.1355), (10.0695, 48.1362), (10.0685, 48.1355)])
    (tmp_path / "ring.geojson").write_text(_json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"road_type": "5", "area": False},
         "geometry": {"type": "LineString", "coordinates": [list(c) for c in ring.coords]}}]}))
    res = invoke("--bbox", "10.068,48.135,10.071,48.137", "-r", "2", "--osm-file", tmp_path / "ring.geojson",
                 "--classes", tmp_path / "t.json", "-o", tmp_path / "ring.tif", "--json")
    assert res.exit_code == 0 and _json.loads(res.stdout)["features"] == {"road": 1}, res.output
    table["classes"][1]["line_widths"] = {}
    (tmp_path / "t.json").write_text(_json.dumps(table))
    res = invoke("--bbox", "10.068,48.135,10.071,48.137", "-r", "2", "--osm-file", tmp_path / "r.geojson",
                 "--classes", tmp_path / "t.json", "-o", tmp_path / "r2.tif")
    _assert_bad_input(res, tmp_path / "r2.tif", "draws no areas (areas false) and has no line_widths, so no OSM "
                                                "feature can ever be drawn in it")


def test_an_osm_xml_file_with_ways_cut_at_its_edge_is_warned_of(tmp_path):
    """Found in review: osmnx's XML reader leaves out whole a way that names nodes the extract lacks (cut at its
    edge), where the PBF reader keeps the part there: the same data gave another map from .osm than from .pbf,
    without a word. It is said, with the extract's remedy."""
    import json as _json

    nodes = "".join(f'<node id="{i}" lat="48.1356" lon="{10.0685 + 0.0005 * i}" version="1"/>' for i in range(1, 5))
    ways = ('<way id="10" version="1"><nd ref="1"/><nd ref="2"/><tag k="highway" v="residential"/></way>'
            '<way id="11" version="1"><nd ref="3"/><nd ref="4"/><nd ref="99"/><tag k="highway" v="residential"/>'
            '</way><way id="12" version="1"><nd ref="3"/><nd ref="98"/><tag k="power" v="line"/></way>')  # (no
    # class draws power lines: that cut way is none of the map's, and not counted; found in review)
    osm = tmp_path / "cut.osm"
    osm.write_text(f'<?xml version="1.0"?><osm version="0.6">{nodes}{ways}</osm>')
    res = invoke("--bbox", "10.068,48.135,10.071,48.137", "-r", "2", "--osm-file", osm, "-o", tmp_path / "m.tif",
                 "--json")
    assert res.exit_code == 0, res.output
    assert _json.loads(res.stdout)["warnings"] == [
        "cut.osm: 1 of its ways lack some of their nodes (cut at the extract's edge), and the OSM XML reader leaves "
        "such a way out whole; extract with whole ways (osmium extract -s complete_ways) or give the .osm.pbf, whose "
        "reader keeps the part there"]
    whole = ways.replace('<nd ref="99"/>', "").replace('<nd ref="98"/>', "")
    osm.write_text(f'<?xml version="1.0"?><osm version="0.6">{nodes}{whole}</osm>')
    res = invoke("--bbox", "10.068,48.135,10.071,48.137", "-r", "2", "--osm-file", osm, "-o", tmp_path / "m2.tif",
                 "--json")
    assert res.exit_code == 0 and _json.loads(res.stdout)["warnings"] == [], res.output


def test_features_that_reach_the_grid_but_cover_no_pixel_centre_are_no_map(tmp_path):
    """A feature whose edge reaches the grid without covering a pixel's centre was counted as drawn: an all-background
    map was written, exit 0, `features` 1 beside 0 pixels (found in review); refused as an empty area is, unless
    --allow-empty. One that covers a centre draws it."""
    import geopandas as gpd
    from affine import Affine
    from rasterio.crs import CRS
    from shapely.geometry import box

    from geosr.io.writer import OutputMeta, write_cog
    from geosr.tiling.grid import Grid

    like = tmp_path / "like.tif"  # 10 x 10 px of 0.001 degrees, lon 10.0 to 10.01
    grid = Grid(CRS.from_epsg(4326), Affine(0.001, 0, 10.0, 0, -0.001, 50.01), 10, 10)
    write_cog(like, np.zeros((1, 10, 10), np.uint8), grid, OutputMeta(dtype="uint8", count=1))
    out = tmp_path / "map.tif"
    for east, drawn in ((10.0004, False), (10.0006, True)):  # 0.4 or 0.6 of the first column
        osm = tmp_path / f"b{east}.geojson"
        gpd.GeoDataFrame({"building": ["yes"]}, geometry=[box(9.99, 50.0, east, 50.01)], crs="EPSG:4326").to_file(osm)
        res = invoke("--like", like, "--osm-file", osm, "-o", out, "--overwrite")
        if drawn:
            assert res.exit_code == 0, res.output
            with rasterio.open(out) as ds:
                assert (ds.read(1)[:, 0] > 0).all() and not ds.read(1)[:, 1:].any()
        else:
            _assert_bad_input(res, out, "has no feature of class table 'geosr-osm-v1' that covers a pixel's centre "
                              "(the 1 feature part reaching it covers none)", "--allow-empty")
            assert invoke("--like", like, "--osm-file", osm, "-o", out, "--allow-empty").exit_code == 0
            out.unlink()
