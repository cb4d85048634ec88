"""The map class table: the single source of truth for the class ids of geosr's OSM maps.

A :class:`MapClassTable` lists classes with ids ``0..N-1`` (0 is always the background), a name, an RGB
colour (the GeoTIFF colour table and the ``--style rgb`` rendering), OSM tag rules, a burn priority and,
for classes drawn from OSM lines (roads, railways, rivers), a width in metres per tag.
:data:`DEFAULT_MAP_CLASSES` is geosr's table; :func:`load_map_classes` reads a user's JSON table (the
format is documented in ``docs/osm-classes.md``). A written map records the table in its tags
(:func:`map_tags`), and :func:`classes_from_tags` reads the class names back, so the pipeline and the
models never hard-code the number of classes.

Nothing here imports geopandas or osmnx; :meth:`MapClassTable.assign` takes any pandas-like frame.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from geosr.errors import ClassTableError
from geosr.osm.inputs import existing_file

#: Tag names written into every map GeoTIFF (see docs/osm-classes.md).
TAG_CLASSES = "GEOSR_MAP_CLASSES"  # JSON list of class names, index = class id
TAG_TABLE = "GEOSR_CLASS_TABLE"  # the table's name
TAG_COLORS = "GEOSR_MAP_COLORS"  # JSON list of "#rrggbb", index = class id
TAG_STYLE = "GEOSR_MAP_STYLE"  # "classes" (one uint8 band of class ids) or "rgb" (rendered colours)

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_MAX_CLASSES = 255  # uint8 ids 0..254 (255 is kept free for nodata in consumers)

TagRule = Mapping[str, "bool | tuple[str, ...]"]


def _present(col: Any) -> Any:
    """Where a key is tagged: any value but ``no`` (OSM's negative) or ``false`` (a vector file's boolean false, as
    GDAL reads it beside text: ``building=false`` was drawn as a building; found in review)."""
    return col.notna() & ~col.astype(str).str.lower().isin(("no", "false"))


@dataclass(frozen=True)
class MapClass:
    """One class of a map class table.

    ``tags``: OSM key -> ``True`` (any value but "no") or the accepted values; a feature matches the class
    when any of its keys matches. ``exclude`` uses the same form and vetoes a match (tunnels, underground
    buildings). ``line_widths``: ``"key=value"`` or ``"key"`` -> full width in metres; only lines whose tags
    have a width here are drawn in this class (first entry that matches wins). ``areas``: whether polygons
    of this class are drawn. ``priority``: burn order, higher is drawn later (on top).
    """

    id: int
    name: str
    color: tuple[int, int, int]
    priority: int = 0
    tags: dict[str, bool | tuple[str, ...]] = field(default_factory=dict)
    exclude: dict[str, bool | tuple[str, ...]] = field(default_factory=dict)
    line_widths: dict[str, float] = field(default_factory=dict)
    areas: bool = True
    description: str = ""

    @property
    def hex(self) -> str:
        return "#{:02x}{:02x}{:02x}".format(*self.color)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "name": self.name, "color": self.hex}
        if self.description:
            d["description"] = self.description
        if self.id != 0:
            d["priority"] = self.priority
            d["tags"] = {k: (v if v is True else list(v)) for k, v in self.tags.items()}
            if self.exclude:
                d["exclude"] = {k: (v if v is True else list(v)) for k, v in self.exclude.items()}
            if self.line_widths:
                d["line_widths"] = dict(self.line_widths)
            if not self.areas:
                d["areas"] = False
        return d


@dataclass(frozen=True)
class MapClassTable:
    """An ordered class table; ``classes[i].id == i`` and class 0 is the background."""

    name: str
    classes: tuple[MapClass, ...]
    description: str = ""

    # --- views -------------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    def __len__(self) -> int:
        return len(self.classes)

    def colormap(self) -> dict[int, tuple[int, int, int, int]]:
        """The GeoTIFF colour table: id -> (r, g, b, 255)."""
        return {c.id: (*c.color, 255) for c in self.classes}

    def palette(self):
        """(N, 3) uint8 array of the class colours, index = class id."""
        import numpy as np

        return np.array([c.color for c in self.classes], dtype=np.uint8)

    def keys(self) -> set[str]:
        """Every OSM key the table looks at (in tags, exclusions or line widths)."""
        out: set[str] = set()
        for c in self.classes:
            out |= set(c.tags) | set(c.exclude) | {k.split("=", 1)[0] for k in c.line_widths}
        return out

    def query_tags(self) -> dict[str, bool | list[str]]:
        """The osmnx/Overpass ``tags`` argument that fetches every feature the table can draw."""
        acc: dict[str, bool | set[str]] = {}
        for c in self.classes:
            for key, values in c.tags.items():
                if values is True or acc.get(key) is True:
                    acc[key] = True
                else:
                    acc.setdefault(key, set()).update(values)  # type: ignore[union-attr]
        return {k: (True if v is True else sorted(v)) for k, v in sorted(acc.items())}  # type: ignore[arg-type]

    def max_line_width(self) -> float:
        return max((w for c in self.classes for w in c.line_widths.values()), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name}
        if self.description:
            d["description"] = self.description
        d["classes"] = [c.to_dict() for c in self.classes]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    # --- matching ----------------------------------------------------------------------------------
    def assign(self, frame: Any, kind: Any) -> tuple[Any, Any]:
        """Class id and line width (metres, NaN for areas) of each row of a tag frame.

        ``frame`` is a pandas DataFrame whose columns are OSM keys (missing tags as NaN/None); ``kind``
        a same-length sequence of "area" / "line". A row takes the highest-priority class whose rules
        match its tags and which draws its kind (areas, or lines with a width); rows no class takes get
        id 0. Ties in priority go to the lower class id. Returns two numpy arrays (uint8 ids, float widths).
        """
        import numpy as np
        import pandas as pd

        n = len(frame)
        kind = np.asarray(kind)
        ids = np.zeros(n, dtype=np.uint8)
        widths = np.full(n, np.nan)
        taken = np.zeros(n, dtype=bool)

        def column(key: str) -> pd.Series:
            if key in frame.columns:
                return frame[key].astype("object")
            return pd.Series([None] * n, index=frame.index, dtype="object")

        def matches(rules: Mapping[str, bool | tuple[str, ...]]) -> np.ndarray:
            m = np.zeros(n, dtype=bool)
            for key, values in rules.items():
                col = column(key)
                if values is True:
                    m |= _present(col).to_numpy(dtype=bool)
                else:
                    m |= col.isin(values).to_numpy(dtype=bool)
            return m

        order = sorted((c for c in self.classes if c.id != 0), key=lambda c: (-c.priority, c.id))
        for c in order:
            hit = matches(c.tags) & ~taken
            if c.exclude:
                hit &= ~matches(c.exclude)
            if not hit.any():
                continue
            area_hit = hit & (kind == "area") if c.areas else np.zeros(n, dtype=bool)
            line_hit = np.zeros(n, dtype=bool)
            line_w = np.full(n, np.nan)
            for spec, width in c.line_widths.items():
                key, _, value = spec.partition("=")
                col = column(key)
                sel = (col == value) if value else _present(col)
                sel = sel.to_numpy(dtype=bool) & hit & (kind == "line") & np.isnan(line_w)
                line_w[sel] = width
                line_hit |= sel
            ids[area_hit] = c.id
            ids[line_hit] = c.id
            widths[line_hit] = line_w[line_hit]
            taken |= area_hit | line_hit
        return ids, widths


def _parse_color(value: Any, where: str) -> tuple[int, int, int]:
    if isinstance(value, str):
        m = re.fullmatch(r"#?([0-9a-fA-F]{6})", value.strip())
        if m:
            h = m.group(1)
            return (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16))
    elif isinstance(value, (list, tuple)) and len(value) == 3 and all(
        isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value
    ):
        return (int(value[0]), int(value[1]), int(value[2]))
    raise ClassTableError(f"{where}: color {value!r} is not \"#rrggbb\" or [r, g, b] with 0..255")


# --- the default table -------------------------------------------------------------------------------
_NOT_UNDERGROUND = {"location": ("underground",)}
_NOT_IN_TUNNEL = {"tunnel": ("yes", "building_passage", "culvert")}


def _c(id: int, name: str, color: str, priority: int = 0, **kw: Any) -> MapClass:
    return MapClass(id=id, name=name, color=_parse_color(color, "default table"), priority=priority, **kw)


def _line_class(
    id: int, name: str, color: str, priority: int, key: str, widths: dict[str, float], description: str
) -> MapClass:
    """A class drawn from OSM lines ``key=value`` (roads, railways), ``widths``: value -> metres; not in tunnels."""
    return _c(
        id, name, color, priority, tags={key: tuple(widths)}, exclude=_NOT_IN_TUNNEL,
        line_widths={f"{key}={value}": width for value, width in widths.items()}, description=description,
    )


#: geosr's default OSM class table (documented, with the reasons for each rule, in docs/osm-classes.md).
DEFAULT_MAP_CLASSES = MapClassTable(
    name="geosr-osm-v1",
    description="geosr's default OpenStreetMap map classes for map-guided super-resolution",
    classes=(
        _c(0, "background", "#f2efe9", description="no mapped feature of another class"),
        _c(
            1, "building", "#b4a096", 60,
            tags={"building": True},
            exclude={"building": ("no", "none", "underground"), **_NOT_UNDERGROUND},
            description="building footprints (building=*)",
        ),
        _line_class(
            2, "major_road", "#e892a2", 50, "highway",
            {"motorway": 12.0, "trunk": 11.0, "primary": 10.0, "secondary": 9.0, "motorway_link": 6.0,
             "trunk_link": 6.0, "primary_link": 6.0, "secondary_link": 6.0},
            "motorways, trunk, primary and secondary roads and their links",
        ),
        _line_class(
            3, "minor_road", "#ffffff", 40, "highway",
            {"tertiary": 8.0, "tertiary_link": 6.0, "residential": 7.0, "unclassified": 6.0,
             "living_street": 5.0, "road": 6.0, "service": 4.0, "pedestrian": 5.0, "busway": 6.0, "track": 3.0,
             "footway": 2.0, "cycleway": 2.0, "path": 1.5, "bridleway": 2.0, "steps": 2.0},
            "tertiary, residential and service roads, tracks, foot and cycle ways",
        ),
        _line_class(
            4, "railway", "#6e6e6e", 30, "railway",
            {"rail": 4.0, "light_rail": 3.5, "subway": 4.0, "tram": 3.0, "narrow_gauge": 3.0, "monorail": 2.0,
             "funicular": 3.0, "preserved": 3.5},
            "railway tracks above ground",
        ),
        _c(
            5, "water", "#aad3df", 20,
            tags={"natural": ("water",), "waterway": ("riverbank", "dock", "river", "canal", "stream",
                                                       "ditch", "drain"),
                  "landuse": ("reservoir", "basin"), "leisure": ("swimming_pool",)},
            exclude=_NOT_IN_TUNNEL,
            line_widths={
                "waterway=river": 15.0, "waterway=canal": 10.0, "waterway=stream": 2.0,
                "waterway=ditch": 1.0, "waterway=drain": 1.0,
            },
            description="lakes, ponds, rivers (areas and centre lines), canals, pools",
        ),
        _c(
            6, "forest", "#9dca8a", 10,
            tags={"landuse": ("forest",), "natural": ("wood",)},
            description="woods and managed forest",
        ),
        _c(
            7, "grass", "#cdebb0", 10,
            tags={"landuse": ("grass", "meadow", "village_green", "recreation_ground", "allotments",
                              "greenfield"),
                  "leisure": ("park", "garden", "golf_course", "common", "dog_park"),
                  "natural": ("grassland", "heath", "scrub", "wetland", "fell")},
            description="grass and other low vegetation: parks, meadows, heath, scrub, wetland",
        ),
        _c(
            8, "farmland", "#eef0d5", 10,
            tags={"landuse": ("farmland", "orchard", "vineyard", "plant_nursery")},
            description="arable land, orchards, vineyards, nurseries",
        ),
        _c(
            9, "bare_ground", "#e4d4ba", 10,
            tags={"natural": ("bare_rock", "sand", "scree", "shingle", "beach", "mud"),
                  "landuse": ("quarry", "landfill", "construction", "brownfield")},
            description="rock, sand, beaches, quarries, construction sites",
        ),
        _c(
            10, "impervious", "#cdcdd2", 10,
            tags={"amenity": ("parking",), "aeroway": ("runway", "taxiway", "apron", "helipad"),
                  "area:highway": True},
            exclude={"parking": ("underground",), **_NOT_UNDERGROUND},
            line_widths={"aeroway=runway": 45.0, "aeroway=taxiway": 20.0},
            description="other sealed surfaces: car parks, runways, taxiways, aprons, road areas",
        ),
    ),
)


# --- loading and validating tables ------------------------------------------------------------------
def _parse_rules(value: Any, where: str) -> dict[str, bool | tuple[str, ...]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ClassTableError(f"{where}: must be an object of OSM key -> true or a list of values")
    out: dict[str, bool | tuple[str, ...]] = {}
    for key, v in value.items():
        if not isinstance(key, str) or not key.strip():
            raise ClassTableError(f"{where}: keys must be OSM tag keys (non-empty strings)")
        if v is True:
            out[key] = True
        elif isinstance(v, str):
            out[key] = (v,)
        elif isinstance(v, list) and v and all(isinstance(s, str) and s for s in v):
            out[key] = tuple(v)
        else:
            raise ClassTableError(f"{where}: {key!r} must be true, a value or a non-empty list of values")
    return out


def map_classes_from_dict(data: Any, source: str = "class table") -> MapClassTable:
    """Build and validate a table from its JSON form (see docs/osm-classes.md); errors name ``source``."""
    if not isinstance(data, dict):
        raise ClassTableError(f"{source}: must be a JSON object with \"name\" and \"classes\"")
    name = data.get("name", Path(source).stem)
    if not isinstance(name, str) or not name:
        raise ClassTableError(f"{source}: \"name\" must be a non-empty string")
    raw = data.get("classes")
    if not isinstance(raw, list) or len(raw) < 2:
        raise ClassTableError(f"{source}: \"classes\" must be a list of at least two classes (background first)")
    if len(raw) > _MAX_CLASSES:
        raise ClassTableError(f"{source}: has {len(raw)} classes; a map holds at most {_MAX_CLASSES}")
    known = {"id", "name", "color", "priority", "tags", "exclude", "line_widths", "areas", "description"}
    classes: list[MapClass] = []
    seen: set[str] = set()
    for i, c in enumerate(raw):
        where = f"{source}: class {i}"
        if not isinstance(c, dict):
            raise ClassTableError(f"{where} must be an object")
        unknown = set(c) - known
        if unknown:
            raise ClassTableError(f"{where} has unknown field(s) {', '.join(sorted(unknown))}")
        if c.get("id", i) != i:
            raise ClassTableError(f"{where} has id {c.get('id')!r}; ids must be 0, 1, 2, ... in list order")
        cname = c.get("name")
        if not isinstance(cname, str) or not _NAME_RE.match(cname):
            raise ClassTableError(f"{where}: name {cname!r} must be lower-case letters, digits and _")
        if cname in seen:
            raise ClassTableError(f"{where}: name {cname!r} is used twice")
        seen.add(cname)
        where = f"{source}: class {cname!r}"
        color = _parse_color(c.get("color"), where)
        tags = _parse_rules(c.get("tags"), f"{where} tags")
        exclude = _parse_rules(c.get("exclude"), f"{where} exclude")
        widths_raw = c.get("line_widths") or {}
        if not isinstance(widths_raw, dict):
            raise ClassTableError(f"{where}: line_widths must be an object of \"key=value\" -> metres")
        widths: dict[str, float] = {}
        for spec, w in widths_raw.items():
            if not isinstance(spec, str) or not spec.split("=", 1)[0]:
                raise ClassTableError(f"{where}: line_widths key {spec!r} must be \"key\" or \"key=value\"")
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
                raise ClassTableError(f"{where}: line width {w!r} for {spec!r} must be a positive number of metres")
            widths[spec] = float(w)
        priority = c.get("priority", 0)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise ClassTableError(f"{where}: priority must be a whole number")
        areas = c.get("areas", True)
        if not isinstance(areas, bool):
            raise ClassTableError(f"{where}: areas must be true or false")
        if i == 0 and (tags or widths):
            raise ClassTableError(f"{where}: class 0 is the background and takes no tags or line widths")
        if i > 0 and not tags:
            raise ClassTableError(f"{where}: has no tags, so no OSM feature can ever be drawn in it")
        if i > 0 and not areas and not widths:  # (the run said the data had no feature of it; found in review)
            raise ClassTableError(f"{where}: draws no areas (areas false) and has no line_widths, so no OSM "
                                  "feature can ever be drawn in it")
        classes.append(
            MapClass(
                id=i, name=cname, color=color, priority=priority, tags=tags, exclude=exclude,
                line_widths=widths, areas=areas, description=str(c.get("description", "")),
            )
        )
    return MapClassTable(name=name, classes=tuple(classes), description=str(data.get("description", "")))


def load_map_classes(path: str | os.PathLike[str]) -> MapClassTable:
    """Read a user's class table from a JSON file (format in docs/osm-classes.md)."""
    p = existing_file(path, "a class table file", ClassTableError, missing="class table file")
    try:
        data = json.loads(p.read_text(encoding="utf-8-sig"))  # (a BOM: Windows' editors)
    except (OSError, UnicodeDecodeError) as exc:
        raise ClassTableError(f"{p}: cannot be read ({exc.__class__.__name__})") from exc
    except json.JSONDecodeError as exc:
        raise ClassTableError(f"{p}: is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
    return map_classes_from_dict(data, str(p))


def resolve_map_classes(classes: MapClassTable | str | os.PathLike[str] | None) -> MapClassTable:
    """``None`` -> the default table; a path -> :func:`load_map_classes`; a table -> itself."""
    if classes is None:
        return DEFAULT_MAP_CLASSES
    if isinstance(classes, MapClassTable):
        return classes
    return load_map_classes(classes)


# --- tags ------------------------------------------------------------------------------------------
def map_tags(table: MapClassTable, style: str) -> dict[str, str]:
    """The GeoTIFF tags that declare a map's classes (read back with :func:`classes_from_tags`)."""
    return {
        TAG_CLASSES: json.dumps(table.names),
        TAG_TABLE: table.name,
        TAG_COLORS: json.dumps([c.hex for c in table.classes]),
        TAG_STYLE: style,
    }


def classes_from_tags(tags: Mapping[str, str]) -> list[str] | None:
    """Class names (index = class id) of a map written by geosr, or None when the tags hold none."""
    raw = tags.get(TAG_CLASSES)
    if raw is None:
        return None
    try:
        names = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ClassTableError(f"tag {TAG_CLASSES} is not a JSON list of class names") from exc
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ClassTableError(f"tag {TAG_CLASSES} is not a JSON list of class names")
    return names
