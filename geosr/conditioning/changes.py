"""Change-mask class tables: which raster values exist, what they are called, which mean "changed"."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import rasterio
from rasterio.windows import Window

from geosr.errors import ClassTableError, InputNotFoundError
from geosr.io.rasters import FULL_READ_LIMIT, block_sample, reading, shown_name


@dataclass(frozen=True)
class ChangeClass:
    value: int  # the value stored in the raster
    name: str
    changed: bool


@dataclass(frozen=True)
class ChangeClassTable:
    """A declared class table. Class index i (0..n-1) is the model's one-hot channel of ``classes[i]``."""

    name: str
    classes: tuple[ChangeClass, ...]

    def __post_init__(self) -> None:
        values = [c.value for c in self.classes]
        if len(set(values)) != len(values):
            raise ClassTableError(f"class table {self.name!r}: a raster value is declared twice")
        if not self.classes:
            raise ClassTableError(f"class table {self.name!r}: declares no class")

    @property
    def n_classes(self) -> int:
        """Number of class channels (several values may share a name but each value is its own class)."""
        return len(self.classes)

    @property
    def unknown_index(self) -> int:
        """Class index used where the mask has no data: the first "changed" class (conservative)."""
        return next((i for i, c in enumerate(self.classes) if c.changed), 0)

    def lookup(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(class index, changed) of each raster value; undeclared values: index -1 and changed (conservative).
        Sized by the declared values, not by the raster's data type (an int32 mask is no 16 GiB table), and
        negative values are classes like any other."""
        declared = np.array([c.value for c in self.classes], dtype=np.int64)
        order = np.argsort(declared)
        keys = declared[order]
        v = np.asarray(values).astype(np.int64)
        pos = np.clip(np.searchsorted(keys, v), 0, len(keys) - 1)
        hit = keys[pos] == v
        index = np.where(hit, order[pos], -1)
        changed = np.where(hit, np.array([c.changed for c in self.classes])[order][pos], True)
        return index, changed

    def to_dict(self) -> dict:
        return {"name": self.name, "classes": [c.__dict__ for c in self.classes]}


BINARY = ChangeClassTable(
    "binary",
    (
        ChangeClass(0, "unchanged", False),
        ChangeClass(1, "changed", True),
        ChangeClass(255, "changed (255)", True),
    ),
)
# SECOND (Yang et al.): 6 land-cover classes of the changed area plus "unchanged" (0).
SECOND = ChangeClassTable(
    "second",
    (
        ChangeClass(0, "unchanged", False),
        ChangeClass(1, "non-vegetated ground surface", True),
        ChangeClass(2, "tree", True),
        ChangeClass(3, "low vegetation", True),
        ChangeClass(4, "water", True),
        ChangeClass(5, "buildings", True),
        ChangeClass(6, "playgrounds", True),
    ),
)
# CNAM-CD: 5 land-cover classes of the changed area plus "unchanged" (0).
CNAM = ChangeClassTable(
    "cnam-cd",
    (
        ChangeClass(0, "unchanged", False),
        ChangeClass(1, "bare land", True),
        ChangeClass(2, "vegetation", True),
        ChangeClass(3, "water", True),
        ChangeClass(4, "impervious surfaces", True),
        ChangeClass(5, "others", True),
    ),
)
BUILTIN_TABLES = {t.name: t for t in (BINARY, SECOND, CNAM)}


def load_change_classes(spec: str) -> ChangeClassTable:
    """A built-in table by name, or a JSON file ``{"name": ..., "classes": [{"value", "name", "changed"}]}``."""
    if spec in BUILTIN_TABLES:
        return BUILTIN_TABLES[spec]
    path = Path(spec)
    if not path.exists():
        names = ", ".join(BUILTIN_TABLES)
        raise InputNotFoundError(f"{spec}: no such class table file (built-in tables: {names})")
    if path.is_dir():
        raise ClassTableError(f"{spec}: is a folder, not a class table file")
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))  # (a BOM: Windows' editors)
    except OSError as exc:  # (unreadable: an internal error, exit 1; found in review)
        raise ClassTableError(f"{spec}: cannot be read ({(exc.strerror or str(exc)).lower()})") from exc
    except ValueError as exc:
        raise ClassTableError(f"{spec}: not a valid class table (not JSON: {exc})") from exc
    entries = doc.get("classes") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ClassTableError(f'{spec}: not a valid class table (it needs a "classes" list of '
                              '{"value", "name", "changed"} entries)')
    classes = []
    for i, c in enumerate(entries, 1):
        missing = [k for k in ("value", "name", "changed") if not isinstance(c, dict) or k not in c]
        if missing:
            raise ClassTableError(f'{spec}: class entry {i} of the table has no "{missing[0]}" (each needs "value", '
                                  '"name" and "changed")')
        value, changed = c["value"], c["changed"]
        if isinstance(value, float) and value.is_integer():  # 3.0, as pandas and numpy write whole numbers
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):  # 3.7 was cut to 3, "3" read as 3
            raise ClassTableError(f'{spec}: class entry {i} of the table: "value" must be a whole number (the mask\'s '
                                  f"pixel value), not {json.dumps(value)}")
        if not isinstance(changed, bool):  # "false" (a string) was read as true: every pixel changed
            raise ClassTableError(f'{spec}: class entry {i} of the table: "changed" must be true or false, not '
                                  f"{json.dumps(changed)}")
        classes.append(ChangeClass(value, str(c["name"]), changed))
    try:
        return ChangeClassTable(str(doc.get("name", path.stem)), tuple(classes))
    except (ValueError, KeyError, TypeError) as exc:
        raise ClassTableError(f"{spec}: not a valid class table ({exc})") from exc


def check_mask_values(ds: rasterio.DatasetReader, table: ChangeClassTable, window: Window | None = None) -> bool:
    """Scan the mask (block by block) and refuse values the table does not declare.

    A mask (or ``window`` of it) of up to FULL_READ_LIMIT pixels is scanned whole; a larger one only in a
    bounded sample of its blocks (:func:`geosr.io.rasters.block_sample`), whatever size it declares.
    Returns whether every pixel was scanned; when not, the caller must check the values it reads later
    (``Scene.read_stack`` refuses undeclared values window by window).
    """
    nodata = ds.nodata
    seen: set[int] = set()
    full = Window(0, 0, ds.width, ds.height)
    area = full if window is None else _clip(window, full)
    whole = area is None or float(area.width) * float(area.height) <= FULL_READ_LIMIT
    blocks: Iterator[Window]
    if whole:
        blocks = (block for _, block in ds.block_windows(1))
    else:
        blocks = iter(block_sample(ds, area))
    with reading(ds.name):
        for block in blocks:
            if window is not None:
                try:
                    block = block.intersection(window)
                except Exception:  # rasterio raises WindowError when they do not intersect
                    continue
            # the values where the mask has data: a nodata value's pixels left out, and an internal or external
            # mask's (refused as undeclared values, with "choose another table" for advice; found in review)
            values = np.unique(ds.read(1, window=block, masked=True).compressed())
            seen.update(int(v) for v in values if np.isfinite(v) and (nodata is None or v != nodata))
            if len(seen) > 4096:
                break
    refuse_undeclared(shown_name(ds.name), seen, table)
    return whole


def refuse_undeclared(name: str, values: Iterable[int], table: ChangeClassTable) -> None:
    """Raise ClassTableError naming the mask when ``values`` holds values the table does not declare."""
    declared = {c.value for c in table.classes}
    bad = sorted({int(v) for v in values} - declared)
    if bad:
        shown = ", ".join(str(v) for v in bad[:8]) + (" ..." if len(bad) > 8 else "")
        raise ClassTableError(
            f"{name}: holds values {shown} that the {table.name!r} change class table does not declare "
            f"(declared: {', '.join(str(v) for v in sorted(declared))}; choose another table with `cd_classes`)"
        )


def _clip(window: Window, full: Window) -> Window | None:
    try:
        return window.intersection(full)
    except Exception:  # WindowError: no overlap
        return None
