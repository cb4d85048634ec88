"""The map class table: the default table's contract, matching rules, user tables and their errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from geosr.errors import ClassTableError, InputNotFoundError
from geosr.osm.classes import (
    DEFAULT_MAP_CLASSES,
    TAG_CLASSES,
    classes_from_tags,
    load_map_classes,
    map_classes_from_dict,
    map_tags,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "osm-classes.md"


def test_default_table_contract():
    t = DEFAULT_MAP_CLASSES
    assert [c.id for c in t.classes] == list(range(len(t)))
    assert t.classes[0].name == "background" and not t.classes[0].tags
    assert len(set(t.names)) == len(t)
    want = {"background", "building", "major_road", "minor_road", "railway", "water", "forest", "grass",
            "farmland", "bare_ground", "impervious"}
    assert want <= set(t.names)
    assert len({c.color for c in t.classes}) == len(t)  # distinct colours
    prio = {c.name: c.priority for c in t.classes}
    # the documented burn order: land cover < water < railway < roads < buildings
    assert prio["forest"] == prio["grass"] == prio["farmland"] == prio["bare_ground"] == prio["impervious"]
    assert prio["forest"] < prio["water"] < prio["railway"] < prio["minor_road"] < prio["major_road"] < prio["building"]
    w = {k: v for c in t.classes for k, v in c.line_widths.items()}
    assert w["highway=motorway"] > w["highway=residential"] > w["highway=footway"]


def test_default_table_round_trips_through_json(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(DEFAULT_MAP_CLASSES.to_json())
    assert load_map_classes(path) == DEFAULT_MAP_CLASSES


def test_docs_list_every_default_class():
    text = DOCS.read_text(encoding="utf-8")
    for c in DEFAULT_MAP_CLASSES.classes:
        assert re.search(rf"\|\s*{c.id}\s*\|\s*`{c.name}`\s*\|", text), c.name
        assert c.hex in text, c.hex


def test_query_tags_cover_every_rule():
    tags = DEFAULT_MAP_CLASSES.query_tags()
    assert tags["building"] is True and tags["area:highway"] is True
    assert "motorway" in tags["highway"] and "footway" in tags["highway"]
    assert "water" in tags["natural"] and "wood" in tags["natural"]


def _assign(rows, kinds):
    frame = pd.DataFrame(rows)
    return DEFAULT_MAP_CLASSES.assign(frame, kinds)


def test_assign_rules():
    rows = [
        {"building": "yes"},
        {"building": "no"},
        {"building": "yes", "location": "underground"},
        {"highway": "motorway"},
        {"highway": "motorway", "tunnel": "yes"},
        {"highway": "footway"},
        {"highway": "bus_stop"},
        {"natural": "water"},
        {"waterway": "river"},
        {"leisure": "park", "landuse": "grass"},
        {"building": "yes", "amenity": "parking"},
        {"amenity": "parking", "parking": "underground"},
        {"aeroway": "runway"},
        {"landuse": "residential"},
        {"highway": "pedestrian", "area:highway": "pedestrian"},
    ]
    kinds = ["area", "area", "area", "line", "line", "line", "line", "area", "line", "area", "area", "area",
             "line", "area", "area"]
    ids, widths = _assign(rows, kinds)
    names = [DEFAULT_MAP_CLASSES.names[i] for i in ids]
    assert names == [
        "building", "background", "background", "major_road", "background", "minor_road", "background", "water",
        "water", "grass", "building", "background", "impervious", "background", "minor_road",
    ]
    assert widths[3] == 12.0 and widths[5] == 2.0 and widths[8] == 15.0 and widths[12] == 45.0
    assert np.isnan(widths[0])


def test_lines_of_area_classes_are_not_drawn():
    ids, _ = _assign([{"building": "yes"}, {"landuse": "forest"}], ["line", "line"])
    assert list(ids) == [0, 0]


def test_higher_priority_class_wins_but_only_for_kinds_it_draws():
    # a closed-way building that is also tagged as a road: building (area) wins; as a line: the road
    ids, _ = _assign([{"building": "yes", "highway": "service"}] * 2, ["area", "line"])
    assert list(ids) == [1, 3]


def test_tags_round_trip():
    tags = map_tags(DEFAULT_MAP_CLASSES, "classes")
    assert classes_from_tags(tags) == DEFAULT_MAP_CLASSES.names
    assert classes_from_tags({}) is None
    with pytest.raises(ClassTableError):
        classes_from_tags({TAG_CLASSES: "{not json"})


def _table(**override):
    base = {
        "name": "t",
        "classes": [
            {"name": "background", "color": "#000000"},
            {"name": "house", "color": [1, 2, 3], "tags": {"building": True}},
        ],
    }
    base.update(override)
    return base


@pytest.mark.parametrize(
    "data,needle",
    [
        ([], "JSON object"),
        (_table(classes=[{"name": "background", "color": "#000000"}]), "at least two"),
        (_table(classes=[{"name": "background", "color": "#000"},
                         {"name": "a", "color": "#000000", "tags": {"b": True}}]), "color"),
        (_table(classes=[{"name": "background", "color": "#000000"},
                         {"name": "A b", "color": "#000000", "tags": {"b": True}}]), "name"),
        (_table(classes=[{"name": "background", "color": "#000000"},
                         {"name": "background", "color": "#000000", "tags": {"b": True}}]), "twice"),
        (_table(classes=[{"name": "background", "color": "#000000"},
                         {"id": 5, "name": "a", "color": "#000000", "tags": {"b": True}}]), "ids"),
        (_table(classes=[{"name": "background", "color": "#000000"}, {"name": "a", "color": "#000000"}]), "no tags"),
        (_table(classes=[{"name": "background", "color": "#000000"},
                         {"name": "a", "color": "#000000", "tags": {"b": 3}}]), "true"),
        (_table(classes=[{"name": "background", "color": "#000000"},
                         {"name": "a", "color": "#000000", "tags": {"b": True}, "line_widths": {"b": -1}}]),
         "positive"),
        (_table(classes=[{"name": "background", "color": "#000000"},
                         {"name": "a", "color": "#000000", "tags": {"b": True}, "colour": "x"}]), "unknown field"),
        (_table(classes=[{"name": "background", "color": "#000000", "tags": {"b": True}},
                         {"name": "a", "color": "#000000", "tags": {"b": True}}]), "background"),
        (_table(classes=[{"name": "background", "color": "#000000"}]
                        + [{"name": f"c{i}", "color": "#000000", "tags": {"b": True}} for i in range(255)]), "at most"),
    ],
)
def test_bad_tables(data, needle):
    with pytest.raises(ClassTableError, match=needle):
        map_classes_from_dict(data, "my.json")


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(InputNotFoundError, match="nope.json"):
        load_map_classes(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{ name: ")
    with pytest.raises(ClassTableError, match=r"bad\.json: is not valid JSON \(line 1"):
        load_map_classes(bad)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_table()))
    t = load_map_classes(good)
    assert t.names == ["background", "house"] and t.classes[1].color == (1, 2, 3)
