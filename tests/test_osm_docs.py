"""Small OSM documents written by the tests (XML, PBF, Overpass JSON), and the standard test scene.

Other test modules import :class:`OsmDoc` and :func:`scene_doc` from here. Geometry is given in metres of
a local UTM 32N frame (x east, y north from ``ORIGIN``) and turned into lon/lat, so the tests can name
the expected class of any pixel of a UTM grid exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
from affine import Affine
from pyproj import Transformer

UTM = "EPSG:32632"
ORIGIN = (500_000.0, 5_540_000.0)  # on the 9°E central meridian, about 50°N
SIZE = 200  # the scene spans 200 m x 200 m
_TO_LONLAT = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)


def scene_transform(res: float = 1.0) -> Affine:
    """North-up transform of the scene grid at ``res`` metres (top-left = ORIGIN + (0, SIZE))."""
    return Affine(res, 0.0, ORIGIN[0], 0.0, -res, ORIGIN[1] + SIZE)


def pixel_of(x: float, y: float, res: float = 1.0) -> tuple[int, int]:
    """(row, col) of local metres (x, y) on the scene grid at ``res``."""
    return int((SIZE - y) // res), int(x // res)


class OsmDoc:
    """A tiny OSM dataset: nodes from local metres, ways, relations; written as XML, PBF or Overpass JSON."""

    def __init__(self) -> None:
        self.nodes: list[tuple[int, float, float, dict]] = []
        self.ways: list[tuple[int, list[int], dict]] = []
        self.relations: list[tuple[int, list[tuple[str, int, str]], dict]] = []
        self._next = {"n": 1, "w": 1, "r": 1}
        self.timestamp = "2020-01-01T00:00:00Z"

    def _id(self, kind: str) -> int:
        i = self._next[kind]
        self._next[kind] += 1
        return i

    def node(self, x: float, y: float, tags: dict | None = None) -> int:
        lon, lat = _TO_LONLAT.transform(ORIGIN[0] + x, ORIGIN[1] + y)
        nid = self._id("n")
        self.nodes.append((nid, round(lon, 9), round(lat, 9), dict(tags or {})))
        return nid

    def way(self, coords, tags: dict | None = None, closed: bool = False) -> int:
        ids = [self.node(x, y) for x, y in coords]
        if closed:
            ids.append(ids[0])
        wid = self._id("w")
        self.ways.append((wid, ids, dict(tags or {})))
        return wid

    def rect(self, x0: float, y0: float, x1: float, y1: float, tags: dict | None = None) -> int:
        return self.way([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], tags, closed=True)

    def relation(self, members: list[tuple[str, int, str]], tags: dict) -> int:
        rid = self._id("r")
        self.relations.append((rid, members, dict(tags)))
        return rid

    # --- writers ---
    def xml(self, header: str = "") -> str:
        out = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6" generator="geosr-tests">', header]
        ts = self.timestamp

        def tags(t: dict) -> str:
            return "".join(f"<tag k={quoteattr(k)} v={quoteattr(str(v))}/>" for k, v in t.items())

        for nid, lon, lat, t in self.nodes:
            out.append(f'<node id="{nid}" version="1" timestamp="{ts}" lat="{lat}" lon="{lon}">{tags(t)}</node>')
        for wid, ids, t in self.ways:
            nds = "".join(f'<nd ref="{i}"/>' for i in ids)
            out.append(f'<way id="{wid}" version="1" timestamp="{ts}">{nds}{tags(t)}</way>')
        for rid, members, t in self.relations:
            kinds = {"n": "node", "w": "way", "r": "relation"}
            ms = "".join(f'<member type="{kinds[k]}" ref="{ref}" role="{role}"/>' for k, ref, role in members)
            out.append(f'<relation id="{rid}" version="1" timestamp="{ts}">{ms}{tags(t)}</relation>')
        out.append("</osm>")
        return "\n".join(out)

    def write_xml(self, path: Path, header: str = "") -> Path:
        if path.name.endswith(".bz2"):
            import bz2

            path.write_bytes(bz2.compress(self.xml(header).encode("utf-8")))
        else:
            path.write_text(self.xml(header), encoding="utf-8")
        return path

    def write_pbf(self, path: Path, box: tuple[float, float, float, float] | None = None) -> Path:
        """The document as PBF; ``box`` (west, south, east, north): the header's bounding box, as extracts write."""
        import datetime as dt

        import osmium

        ts = dt.datetime.fromisoformat(self.timestamp.replace("Z", "+00:00"))
        header = osmium.io.Header()
        if box is not None:
            header.add_box(osmium.osm.Box(osmium.osm.Location(box[0], box[1]), osmium.osm.Location(box[2], box[3])))
        writer = osmium.SimpleWriter(str(path), 4 << 20, header)
        try:
            for nid, lon, lat, t in self.nodes:
                writer.add_node(osmium.osm.mutable.Node(id=nid, location=(lon, lat), tags=t, version=1, timestamp=ts))
            for wid, ids, t in self.ways:
                writer.add_way(osmium.osm.mutable.Way(id=wid, nodes=ids, tags=t, version=1, timestamp=ts))
            for rid, members, t in self.relations:
                writer.add_relation(
                    osmium.osm.mutable.Relation(id=rid, members=members, tags=t, version=1, timestamp=ts)
                )
        finally:
            writer.close()
        return path

    def overpass_json(self, osm_base: str = "2024-05-01T12:00:00Z") -> dict:
        kinds = {"n": "node", "w": "way", "r": "relation"}
        elements = [
            {"type": "node", "id": nid, "lat": lat, "lon": lon, **({"tags": t} if t else {})}
            for nid, lon, lat, t in self.nodes
        ]
        elements += [{"type": "way", "id": wid, "nodes": ids, "tags": t} for wid, ids, t in self.ways]
        elements += [
            {
                "type": "relation",
                "id": rid,
                "members": [{"type": kinds[k], "ref": ref, "role": role} for k, ref, role in members],
                "tags": t,
            }
            for rid, members, t in self.relations
        ]
        return {
            "version": 0.6,
            "generator": "Overpass API (geosr tests)",
            "osm3s": {"timestamp_osm_base": osm_base, "copyright": "OpenStreetMap contributors, ODbL"},
            "elements": elements,
        }


def scene_doc() -> OsmDoc:
    """The standard scene (local metres, y up); each feature is named in the comments.

    - building with a courtyard: multipolygon relation, outer 20..60, inner 35..45 (both axes)
    - plain building: closed way 70..90 x 20..40
    - lake: multipolygon relation with two outer rings (100..140 x 100..140 with island 115..125,
      and 150..170 x 100..120)
    - park (leisure=park) 110..190 x 20..80 holding a car park (amenity=parking) 130..150 x 30..50
    - motorway along y=150, footway along y=175, residential along x=95.2 (y -20..95), rail along y=190
    - a motorway in a tunnel along y=5 (must not be drawn)
    """
    d = OsmDoc()
    outer = d.rect(20, 20, 60, 60)
    inner = d.rect(35, 35, 45, 45)
    d.relation([("w", outer, "outer"), ("w", inner, "inner")], {"type": "multipolygon", "building": "yes"})
    d.rect(70, 20, 90, 40, {"building": "house"})
    lake_a = d.rect(100, 100, 140, 140)
    island = d.rect(115, 115, 125, 125)
    lake_b = d.rect(150, 100, 170, 120)
    d.relation(
        [("w", lake_a, "outer"), ("w", island, "inner"), ("w", lake_b, "outer")],
        {"type": "multipolygon", "natural": "water"},
    )
    d.rect(110, 20, 190, 80, {"leisure": "park"})
    d.rect(130, 30, 150, 50, {"amenity": "parking"})
    d.way([(-20, 150), (220, 150)], {"highway": "motorway"})
    d.way([(-20, 175), (220, 175)], {"highway": "footway"})
    d.way([(95.2, -20), (95.2, 95)], {"highway": "residential"})
    d.way([(-20, 190), (220, 190)], {"railway": "rail"})
    d.way([(-20, 5), (220, 5)], {"highway": "motorway", "tunnel": "yes", "layer": "-1"})
    return d


# Expected class ids of the default table at local metres (x, y)
EXPECTED = {
    "building (outer ring)": ((25, 25), 1),
    "courtyard (hole)": ((40, 40), 0),
    "house": ((80, 30), 1),
    "lake A": ((105, 105), 5),
    "island (hole in lake)": ((120, 120), 0),
    "lake B (second outer)": ((160, 110), 5),
    "park": ((180, 70), 7),
    "car park inside the park": ((140, 40), 10),
    "motorway": ((10, 150), 2),
    "footway": ((10, 175), 3),
    "residential": ((95, 60), 3),
    "rail": ((10, 190), 4),
    "tunnel (not drawn)": ((10, 5), 0),
    "open ground": ((10, 100), 0),
}


def scene_grid_raster(tmp_path: Path, res: float = 1.0, name: str = "like.tif") -> Path:
    """A single-band raster on the scene grid at ``res`` (for --like)."""
    import rasterio

    n = int(round(SIZE / res))
    path = tmp_path / name
    with rasterio.open(
        path, "w", driver="GTiff", width=n, height=n, count=1, dtype="uint8", crs=UTM, transform=scene_transform(res)
    ) as dst:
        dst.write(np.zeros((1, n, n), dtype=np.uint8))
    return path


# --- the builder's own checks ------------------------------------------------------------------------
def test_scene_xml_parses_with_osmnx(tmp_path):
    import osmnx as ox

    path = scene_doc().write_xml(tmp_path / "scene.osm")
    gdf = ox.features_from_xml(path)
    assert {"building", "highway", "railway", "natural", "leisure", "amenity"} <= set(gdf.columns)
    rel = gdf.loc[("relation", 1), "geometry"]
    assert rel.geom_type == "Polygon" and len(rel.interiors) == 1
    lake = gdf.loc[("relation", 2), "geometry"]
    assert lake.geom_type == "MultiPolygon" and len(lake.geoms) == 2


def test_scene_pbf_writes(tmp_path):
    import osmium

    path = scene_doc().write_pbf(tmp_path / "scene.osm.pbf")
    counts = {"n": 0, "w": 0, "r": 0}
    for obj in osmium.FileProcessor(str(path)):
        counts[obj.type_str()] += 1
    assert counts["w"] == len(scene_doc().ways) and counts["r"] == 2


def test_overpass_json_is_json():
    doc = scene_doc().overpass_json()
    assert json.loads(json.dumps(doc))["osm3s"]["timestamp_osm_base"].startswith("2024")

