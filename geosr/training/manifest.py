"""A collection of data sets named by a manifest: which folders, in which layout, and the held-out split.

A manifest is a small JSON file (the ``shared`` source kind of a training config, ``geosr train --data
MANIFEST.json``, ``geosr evaluate MANIFEST.json``; a data folder may carry its own as ``geosr-data.json``)::

    {
      "description": "what the data is",
      "root": "data",                       # relative to the manifest's folder; a source's "path" overrides it
      "sets": [
        {"layout": "pairs", "path": "levir/full", "group": "levir", "heldout": ["test_102"]},
        {"layout": "pairs", "path": "levir/crops", "group": "levir", "heldout": ["test_102"],
         "crops": {"scene_parts": 2, "of": "levir/full"}},
        {"layout": "sites", "path": "landsat", "group": "landsat", "sites": ["Taizhou", "Nanjing"],
         "bands": [3, 2, 1], "heldout": ["Taizhou"]}
      ],
      "synthetic": [{"path": "single/rgb.tif"}, {"path": "single/rgbn.tif", "bands": [1, 2, 3]}]
    }

Layouts: ``pairs`` (``A/ B/ label/``, :func:`~geosr.training.layouts.change_pair_folder`) and ``sites``
(:func:`~geosr.training.layouts.site_pairs`). The split is by scene: a pair's group is ``GROUP/SCENE``. A set
of ``crops`` holds crops named ``SCENE_...`` (the scene is the name's first ``scene_parts`` parts): its crops of
a held-out scene, or of a scene the set ``of`` holds whole, are left out, and crops are never evaluated. Sets
whose folder is absent are skipped. ``synthetic`` lists single HR images that, with both dates of every
training pair, feed synthetic change (one whose folder is absent is skipped too; a missing one in a folder that
is there is refused).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from geosr.errors import InputError, InputNotFoundError
from geosr.training.layouts import change_pair_folder, site_pairs
from geosr.training.pairs import Pair, list_images, read_image

MANIFEST_NAME = "geosr-data.json"  # a data folder's own manifest
SPLITS = ("train", "heldout")
_SET_KEYS = {"layout", "path", "group", "heldout", "sites", "bands", "crops"}


@dataclass(frozen=True)
class DataSet:
    """One folder of a collection."""

    layout: str  # "pairs" or "sites"
    path: Path
    group: str
    heldout: tuple[str, ...] = ()
    sites: tuple[str, ...] = ()
    bands: tuple[int, ...] | None = None
    crops_of: Path | None = None  # crops: the folder holding their scenes whole (None: none does)
    scene_parts: int = 0  # crops: how many "_" parts of a name are its scene (0: not crops)


@dataclass(frozen=True)
class Collection:
    manifest: Path
    root: Path
    sets: tuple[DataSet, ...]
    synthetic: tuple[tuple[Path, tuple[int, ...] | None], ...] = ()
    description: str = ""


def find_manifest(folder: str | Path) -> Path | None:
    """A data folder's own manifest (``geosr-data.json``), if it has one."""
    path = Path(folder) / MANIFEST_NAME
    return path if path.is_file() else None


def load_collection(manifest: str | Path, *, root: str | Path | None = None) -> Collection:
    """Read a manifest; ``root`` (default: the manifest's ``root``, relative to its folder) holds the sets."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise InputNotFoundError(f"{manifest}: no such data manifest")
    try:
        spec = json.loads(manifest.read_text(encoding="utf-8-sig"))
    except (ValueError, OSError) as exc:
        raise InputError(f"{manifest}: not a data manifest geosr can read (not JSON: {exc})") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("sets"), list):
        raise InputError(f'{manifest}: a data manifest is a JSON object whose "sets" is a list of data sets '
                         "(docs/training.md)")
    try:
        base = Path(root) if root is not None else manifest.parent / str(spec.get("root", "."))
        sets = tuple(_data_set(s, base, i) for i, s in enumerate(spec["sets"], start=1))
        synthetic = tuple((base / _entry(s, i, "synthetic")["path"], _bands(s, f"synthetic entry {i}"))
                          for i, s in enumerate(spec.get("synthetic") or (), start=1))
    except ValueError as exc:  # ours: one sentence naming the entry
        raise InputError(f"{manifest}: {exc}") from None
    except (KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{manifest}: not a data manifest geosr can read ({exc})") from None
    return Collection(manifest, base, sets, synthetic, str(spec.get("description", "")))


def _entry(s: Any, i: int, what: str) -> dict[str, Any]:
    """Entry ``i`` of a manifest's list ``what``: an object with a "path"."""
    if not isinstance(s, dict) or not isinstance(s.get("path"), str):
        raise ValueError(f'{what} entry {i} is not an object with a "path"')
    return s


def _names(s: dict[str, Any], key: str, i: int) -> tuple[str, ...]:
    """A set's list of scene names under ``key`` (a string would be split into its letters)."""
    v = s.get(key, [])
    if not isinstance(v, list) or not all(isinstance(n, str) for n in v):
        raise ValueError(f'set {i}: "{key}" is a list of scene names, such as ["test_102"], not {v!r}')
    return tuple(v)


def _bands(s: dict[str, Any], where: str) -> tuple[int, ...] | None:
    """An entry's "bands": a list of 1-based band numbers, or none."""
    v = s.get("bands")
    if not v:
        return None
    if not isinstance(v, list) or not all(isinstance(b, int) and not isinstance(b, bool) for b in v):
        raise ValueError(f'{where}: "bands" is a list of band numbers, such as [3, 2, 1], not {v!r}')
    return tuple(v)


def _data_set(s: Any, base: Path, i: int = 1) -> DataSet:
    s = _entry(s, i, "set")
    unknown = sorted(set(s) - _SET_KEYS)
    if unknown or s.get("layout") not in ("pairs", "sites"):
        raise ValueError(f"set {i}: a set has layout 'pairs' or 'sites' and keys among {sorted(_SET_KEYS)}, not {s}")
    parts, of = _crops_entry(s, i)
    return DataSet(  # the group, the name the held-out split goes by: the set's own, else its folder's name
        layout=s["layout"], path=base / s["path"], group=str(s.get("group") or Path(s["path"]).name),
        heldout=_names(s, "heldout", i), sites=_names(s, "sites", i),
        bands=_bands(s, f"set {i}"),
        crops_of=base / of if of else None, scene_parts=parts,
    )


def _crops_entry(s: dict[str, Any], i: int) -> tuple[int, str | None]:
    """A set's "crops": how many "_" parts of a name are its scene, and the folder holding the scenes whole."""
    crops = s.get("crops") or {}
    if isinstance(crops, dict) and not set(crops) - {"scene_parts", "of"}:
        parts, of = crops.get("scene_parts", 0), crops.get("of")
        try:  # a whole number, also written "2" or 2.0 (as read before)
            whole = float(parts) if not isinstance(parts, bool) else math.nan
        except (TypeError, ValueError):
            whole = math.nan
        if whole.is_integer() and whole >= 0 and isinstance(of, (str, type(None))):
            return int(whole), of
    # (it was Python's own words: "invalid literal for int()", "'str' object has no attribute 'get'"; review)
    raise ValueError(f'set {i}: "crops" is an object {{"scene_parts": N, "of": "folder of the whole scenes"}}, not '
                     f"{json.dumps(crops)}")


def collection_pairs(collection: Collection, *, split: str) -> list[Pair]:
    """The pairs of the ``split`` ("train": every scene but the held-out ones; "heldout"), in manifest order."""
    if split not in SPLITS:
        raise ValueError("split is 'train' or 'heldout'")
    held = split == "heldout"
    pairs: list[Pair] = []
    if not any(ds.path.is_dir() for ds in collection.sets):  # e.g. a root that is not there: "holds no pair" misled
        raise InputNotFoundError(f"{collection.manifest}: none of its sets' folders exists (the first: "
                                 f"{collection.sets[0].path})" if collection.sets else
                                 f"{collection.manifest}: names no data set")
    for ds in collection.sets:
        if not ds.path.is_dir():
            continue
        unknown = [n for n in ds.heldout if n not in _scenes(ds)]
        if unknown:  # a typo would hold nothing out: the scene trained on, the set absent from the evaluation
            raise InputError(f"{collection.manifest}: set {ds.group}: held-out scene{'s' * (len(unknown) > 1)} "
                             f"{', '.join(unknown)} match{'es' * (len(unknown) == 1)} no scene in {ds.path}")
        if ds.layout == "sites":
            named = [s for other in collection.sets if other.path == ds.path for s in other.sites]  # (every set's
            # sites in that folder: S10's rasters are not S1's when another set names S10)
            pairs.extend(site_pairs(ds.path, [s for s in ds.sites if (s in ds.heldout) == held], named=named,
                                    bands=ds.bands, group=ds.group))
        elif ds.scene_parts:
            pairs.extend([] if held else _crops(ds))
        else:  # held out: each named scene, its label optional as a folder's are in evaluation (never left out)
            # (its "bands" were accepted and ignored, even bands the images lack; found in review)
            found = change_pair_folder(ds.path, names=ds.heldout, require_label=False, bands=ds.bands,
                                       takes_bands=True) if held else \
                [p for p in change_pair_folder(ds.path, bands=ds.bands, takes_bands=True) if p.name not in ds.heldout]
            for p in found:
                p.group = f"{ds.group}/{p.name}"
                pairs.append(p)
    groups = [p.group for p in pairs] if held else []  # (training's crops of one scene share its group)
    twice = next((g for g in groups if groups.count(g) > 1), None)
    if twice is not None:  # their scores and panels would be filed under one name
        raise InputError(f'{collection.manifest}: two scenes are both named {twice}; give their sets "group"s of '
                         "their own")
    return pairs


def _scenes(ds: DataSet) -> set[str]:
    """The scene names a set's ``heldout`` may give: its sites, its pairs' names, or its crops' scenes."""
    if ds.layout == "sites":
        return set(ds.sites)
    stems = {p.stem for p in list_images(ds.path / "A")} if (ds.path / "A").is_dir() else set()
    if not ds.scene_parts:
        return stems
    whole = ds.crops_of / "A" if ds.crops_of else None  # a held-out scene is often left uncropped: held whole there
    return {"_".join(s.split("_")[: ds.scene_parts]) for s in stems} | (
        {p.stem for p in list_images(whole)} if whole is not None and whole.is_dir() else set())


def _crops(ds: DataSet) -> list[Pair]:
    """The training crops of a set of crops: not of a held-out scene, nor of a scene held whole elsewhere."""
    whole = {p.stem for p in list_images(ds.crops_of / "A")} if ds.crops_of and (ds.crops_of / "A").is_dir() else set()
    kept = []
    for p in change_pair_folder(ds.path, bands=ds.bands, takes_bands=True):
        scene = "_".join(p.name.split("_")[: ds.scene_parts])
        if scene not in ds.heldout and scene not in whole:
            p.group = f"{ds.group}/{scene}"
            kept.append(p)
    return kept


def collection_synthetic_images(collection: Collection, train_pairs: Sequence[Pair]) -> list[torch.Tensor]:
    """Every HR image of the training split (both dates of each pair) plus the manifest's single images."""
    imgs = []
    for p in train_pairs:
        imgs.append(p.target)
        if p.ref is not None:
            imgs.append(p.ref)
    for path, bands in collection.synthetic:
        if path.exists():
            imgs.append(read_image(path, bands=bands)[0])
        elif path.parent.is_dir():  # its folder is there, the image not: a name mistyped (it was dropped unsaid)
            raise InputError(f"{collection.manifest}: its synthetic image {path} does not exist (its folder does)")
    return imgs


__all__ = ["MANIFEST_NAME", "Collection", "DataSet", "find_manifest", "load_collection", "collection_pairs",
           "collection_synthetic_images"]
