"""A run's data sources: a path's layout told apart (``geosr train --data``, ``geosr evaluate DATA``), and the
training config's source entries (see :mod:`geosr.training.config`) read into weighted groups of pairs.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

import torch

from geosr.conditioning.changes import load_change_classes
from geosr.errors import ClassTableError, InputError, InputNotFoundError, OptionError
from geosr.training.config import TrainConfig
from geosr.training.layouts import (
    change_pair_folder,
    geotiff_stack,
    incomplete_pairs,
    pair_scale,
    refdiff_folder,
    refuse_hidden_changes,
    require_data_folder,
    synthetic_pairs,
)
from geosr.training.manifest import (
    MANIFEST_NAME,
    Collection,
    collection_pairs,
    collection_synthetic_images,
    find_manifest,
    load_collection,
)
from geosr.training.pairs import Pair, find_image, images_under, is_hidden, read_by_gdal

Groups = list[tuple[list[Pair], float]]


def local_data(path: str | Path) -> str:
    """The local path of data given as ``path`` (a ``file://`` URL's path); a URL or GDAL virtual path refused, as
    data is read from local files (a URL as a Path lost a slash: "http:/host/data: no such data"; found in review)."""
    from geosr.io.paths import credentials_hidden, is_remote, local_form

    given = os.fspath(path)
    text = local_form(given)
    named_host = re.match(r"file://(?!/|localhost/)", given, re.IGNORECASE)  # file://host/x: another machine's
    if is_remote(text) or named_host:
        then = "extract it" if text.lower().startswith("/vsi") and "://" not in text else "download the data set"
        raise InputError(f"{credentials_hidden(given)}: training and evaluation data are read from local "
                         f"files and folders; {then} first")
    return text


def source_for_path(path: str | Path) -> dict[str, Any]:
    """A data path -> a source entry of the training config, its kind read from the layout: a manifest file (.json)
    or a folder with its own (``shared``), ``HR_512/`` (``refdiff``), ``A/`` + ``B/`` (``pairs``), images or an
    image (``synthetic``), or a folder of data-set folders (``shared``: it needs a manifest)."""
    p = Path(local_data(path))
    if not p.exists():
        raise InputNotFoundError(f"{p}: no such data")
    if p.is_file():
        if p.suffix.lower() == ".json":
            return {"kind": "shared", "manifest": str(p)}
        return {"kind": "synthetic", "paths": [str(p)]}
    if (p / "HR_512").is_dir():
        return {"kind": "refdiff", "path": str(p)}
    if (p / "A").is_dir():
        return {"kind": "pairs", "path": str(p)}
    if find_manifest(p) is not None:
        return {"kind": "shared", "path": str(p)}
    if not holds_data_sets(p) and folder_images(p):
        # its folder, listed again by a resumed run (an image added since was not trained on, unsaid); its images
        # alone, not beside it: a copy of the record with the list trimmed was read as the folder (found in
        # review); the data's fingerprint keeps what was trained on
        return {"kind": "synthetic", "path": str(p)}
    if any(d.is_dir() and not is_hidden(d) for d in p.iterdir()):
        return {"kind": "shared", "path": str(p)}
    raise InputError(f"{p}: not a data layout geosr knows (HR_512/, A/ B/ label/, images, or a data manifest)")


def folder_images(folder: Path) -> list[str]:
    """The images of a folder of single images at any depth (``2019/a.tif``, ``2020/b.tif``: a folder's subfolders
    were left out without a word where it held images itself, and a folder of subfolders alone was refused as data
    sets without a manifest; found in review), in path order: neither change masks (by their name, or a
    ``label/`` folder's) nor hidden files (a macOS ``._x.tif`` stopped the run, "not an image that can be read")."""
    return [str(f) for f in images_under(folder, labels=False)]


def holds_data_sets(folder: Path) -> bool:
    """Whether a folder or one of its subfolders (two levels down) is a data layout of its own (a manifest,
    ``HR_512/`` or ``A/``): a folder of data sets, which a manifest names with their splits, not single images."""
    levels = [folder]
    for _ in range(3):
        if any(find_manifest(d) is not None or (d / "HR_512").is_dir() or (d / "A").is_dir() for d in levels):
            return True
        levels = [c for d in levels for c in _listed(d) if c.is_dir() and not is_hidden(c)]
    return False


def _listed(folder: Path) -> list[Path]:
    """A folder's entries; none where it cannot be listed (as the listing of its images skips it)."""
    try:
        return list(folder.iterdir())
    except OSError:
        return []


def source_images(src: Mapping[str, Any]) -> list[str]:
    """The images of a ``synthetic`` source: those its folder (``path``) holds now, else its list (``paths``). A
    resumed run then trains on the images its folder holds, so that one added since is told by the data's
    fingerprint, as a pair added to a pairs folder is ("held 2 pairs then and 3 now"), where the list recorded
    at the start was trained on without a word (found in review)."""
    if src.get("path"):
        folder = Path(src["path"])
        require_data_folder(folder)
        if not folder.is_dir():
            raise InputError(f"{folder}: a synthetic data source's path is a folder of images")
        return folder_images(folder)
    return list(src["paths"])


def collection_of(src: Mapping[str, Any]) -> Collection:
    """The collection a ``shared`` source names: its ``manifest`` (``path`` then overrides the manifest's root),
    else the manifest inside its ``path``."""
    if src.get("manifest"):
        return load_collection(src["manifest"], root=src.get("path"))
    if not src.get("path"):
        raise OptionError("a shared data source names a \"manifest\" (a .json file) or a \"path\" that holds one")
    require_data_folder(Path(src["path"]))  # (it was named as a folder without a manifest; found in review)
    found = find_manifest(src["path"])
    if found is None:
        raise InputError(f"{src['path']}: a folder of data sets without a manifest ({MANIFEST_NAME}) naming them "
                         "and their held-out split; give that manifest (a .json file, docs/training.md) instead")
    return load_collection(found)


def shown_data(where: str | Path) -> str:
    """A data source as a model's card and the run's log describe it: by its folder's or file's name (the card
    travels with the weights; it held the user's folders; found in review)."""
    return Path(where).name or str(where)


def image_name(path: str | Path, folder: str | Path | None) -> str:
    """A single image's pair name: its stem, or below a subfolder of the ``folder`` given its path from there
    (``2019/tile_001``: two tiles of one name in two year folders were told apart in no message; found in review)."""
    below = Path(path).relative_to(folder) if folder is not None and Path(path).is_relative_to(folder) else None
    return below.with_suffix("").as_posix() if below is not None and len(below.parts) > 1 else Path(path).stem


def _image_of(src: Mapping[str, Any], name: str, paths: list[str]) -> Path | None:
    """The image file of the pair ``name`` of a source of single images (among ``paths``) or a pairs folder (its
    target, in ``B/``); None for other kinds."""
    if src.get("kind") == "synthetic":
        return next((Path(p) for p in paths if image_name(p, src.get("path")) == name), None)
    if src.get("kind") == "pairs":
        return find_image(Path(src["path"]) / "B", name)
    return None


def _holds_more(path: Path | None, bands: int) -> bool:
    """Whether ``path``, an image read as its red, green and blue, is a GeoTIFF of at least ``bands`` bands."""
    if path is None or not read_by_gdal(path):
        return False
    from geosr.io.rasters import inspect_raster

    try:
        return inspect_raster(str(path), require_crs=False).count >= bands
    except Exception:  # noqa: BLE001 - unreadable: the usual message
        return False


def _check_map(path: str, pair: Pair, n_classes: int) -> None:
    """Refuse a map that the run cannot train on as it is: with ``n_map_classes`` 0 (the default) it was left out
    without a word, and a class of n_map_classes or more failed after the first step with torch's "Class values
    must be smaller than num_classes" (an internal error; found in review). Worded as ``geosr upscale`` words it."""
    if pair.map is None or not pair.map.numel():
        return
    low, top = int(pair.map.min()), int(pair.map.max())
    if low < 0:
        raise ClassTableError(f"{path}: holds value {low}, and a map's classes are 0 and up; mend the map, or declare "
                              "it its nodata value")
    if not n_classes:
        raise ClassTableError(f"{path}: a map (classes 0 to {top}), and the run trains no map input (n_map_classes "
                              f"is 0, the default); set n_map_classes = {top + 1} in the training config, or leave "
                              "the map out")
    if top >= n_classes:
        raise ClassTableError(f"{path}: holds class {top}, and the run trains {n_classes} map classes (0 to "
                              f"{n_classes - 1}, n_map_classes); set n_map_classes = {top + 1} in the training config, "
                              "or give a map of its classes")


def load_sources(
    cfg: TrainConfig, sources: tuple[Mapping[str, Any], ...] | None = None, *, any_bands: bool = False,
    warnings: list[str] | None = None,
) -> tuple[Groups, list[torch.Tensor], list[str]]:
    """(weighted groups of pairs, foreign images for synthetic patches, data descriptions) of ``sources``
    (default: the config's training data); ``any_bands``: images of another band count than the config's are
    taken (the LR-space backbone's reader makes every image three bands). ``warnings`` gets what is left out
    (a pair without its target image or label)."""
    groups: Groups = []
    foreign: list[torch.Tensor] = []
    described: list[str] = []
    table = load_change_classes(cfg.change_table)
    for src in cfg.data if sources is None else sources:
        kind, w = src["kind"], float(src.get("weight", 1.0))
        where = src.get("path") or src.get("hr") or "images"
        paths = source_images(src) if kind == "synthetic" else []
        if kind == "refdiff":
            pairs = refdiff_folder(src["path"], table=table if src.get("table") else None)
        elif kind == "pairs":
            pairs = change_pair_folder(src["path"])
            left = incomplete_pairs(src["path"])
            if left and not pairs:
                raise InputError(f"{src['path']}: no pair has its three images (A/, B/ and label/ of one name): "
                                 f"{', '.join(left[:3])}{' ...' if len(left) > 3 else ''}")
            if left:
                described.append(f"left out of {shown_data(src['path'])}, incomplete: {', '.join(left)}")
                if warnings is not None:
                    warnings.append(f"{len(left)} pair{'s' * (len(left) != 1)} of {src['path']} left out, "
                                    f"incomplete: {', '.join(left[:5])}{' ...' if len(left) > 5 else ''}")
        elif kind == "geotiff":
            scale = src.get("scale")  # else the one an LR's pixels tell; without an LR, the first trained
            if scale is None:
                scale = pair_scale(src["hr"], src["lr"], cfg.scales) if src.get("lr") else cfg.scales[0]
            pairs = [geotiff_stack(hr=src["hr"], lr=src.get("lr"), ref=src.get("ref"), mask=src.get("mask"),
                                   map=src.get("map"), scale=int(scale), table=table, bands=src.get("bands"))]
        elif kind == "synthetic":
            pairs = synthetic_pairs(paths, grey_as_rgb=False)  # the user's own: a grey image is no RGB one
            for pair, image in zip(pairs, paths):
                pair.name = image_name(image, src.get("path"))
        else:  # shared: a collection's training split, plus synthetic change from its images
            collection = collection_of(src)
            where = str(collection.root)
            pairs = collection_pairs(collection, split="train")
            syn = synthetic_pairs(collection_synthetic_images(collection, pairs))
            sw = float(src.get("synthetic_weight", 1.0))
            if syn and sw > 0:
                groups.append((syn, sw))
                foreign.extend(p.target for p in syn)
                described.append(f"synthetic change from {len(syn)} images of {shown_data(where)}")
        if not pairs:
            shown = os.path.commonpath(paths) if kind == "synthetic" and paths and not src.get("path") else where
            raise InputError(f"{shown}: its data source ({kind}) holds no usable image")
        if kind == "geotiff" and src.get("map") and not any_bands:  # (the backbone reads no map)
            _check_map(src["map"], pairs[0], cfg.n_map_classes)
        refuse_hidden_changes(pairs)  # (as evaluate does: trained on as unknown everywhere; found in review)
        counts = {} if any_bands else {p.target.shape[0]: p.name for p in pairs}
        if len(counts) > 1:  # "set bands = 1" would then fail on the others
            shown = " and ".join(f"{n} band{'s' * (n != 1)} ({name})" for n, name in sorted(counts.items()))
            place = os.path.commonpath(paths) if kind == "synthetic" and not src.get("path") else where
            raise InputError(f"{place}: holds images of {shown}; a run trains on images of one band count: give "
                             "them in separate runs, or make them alike")
        other = None if any_bands else next((p for p in pairs if p.target.shape[0] != cfg.bands), None)
        if other is not None:  # else the network fails on its first batch with a shape error
            n = other.target.shape[0]
            # a source of single images or a pairs folder: its image by its path (a stem was named; found in review)
            image = _image_of(src, other.name, paths)
            if n == 3 and cfg.bands > 3 and _holds_more(image, cfg.bands):  # ("images of 3 bands": a pairs folder's
                # 4-band images were too; found in review)
                raise InputError(f"{image}: images are read as their red, green and blue bands without a list of "
                                 f"bands, but the model has bands = {cfg.bands}; list the {cfg.bands} bands to read "
                                 "in a data manifest's set (its bands, docs/training.md), or set bands = 3")
            raise InputError(f"{image or where}: {'has' if image else 'images of'} {n} band{'s' * (n != 1)}, "
                             f"but the model has bands = {cfg.bands}; set bands = {n} in the training config or give "
                             f"{cfg.bands}-band images")
        labelled = None if any_bands else next(  # (the backbone reads no change label)
            (p for p in pairs if not p.synthetic and p.change is not None and p.table.to_dict() != table.to_dict()),
            None)
        if labelled is not None:  # its class indices would be read as the run's table's: a building as a "tree"
            own = (" (a Ref-Diff folder's: its CLASS_Table.txt, else read from its masks' largest value; its entry's "
                   "table = true reads them with the run's)") if kind == "refdiff" else ""
            raise InputError(f"{where}: its change labels are of the {labelled.table.name!r} class table{own}, and the "
                             f"run trains with {table.name!r} (change_table); set change_table to its table, or give "
                             f"data labelled with {table.name!r}")
        groups.append((pairs, w))
        foreign.extend(p.target for p in pairs if p.synthetic)
        described.append(f"{kind}: {len(pairs)} pairs from {shown_data(where)}")
    if not groups:
        raise OptionError("no training data: give at least one data source (`data` or the config's 'data')")
    return groups, foreign, described


def data_fingerprint(groups: Groups) -> dict[str, Any]:
    """How many pairs ``groups`` hold and a hash of every value a run trains on (each pair's name, images, labels and
    given LRs, each group's weight), so that a run resumed on data changed since it started (a pair added to its
    folder, an image edited) can be told from one resumed on its own."""
    import hashlib

    digest = hashlib.sha1()
    n = 0
    for pairs, weight in groups:
        digest.update(repr(float(weight)).encode())
        for p in pairs:
            n += 1
            digest.update(p.name.encode())
            for t in (p.target, p.ref, p.change, p.labelled, p.map, *(p.lr[s] for s in sorted(p.lr))):
                digest.update(b"-" if t is None else repr(tuple(t.shape)).encode() + t.contiguous().numpy().tobytes())
    return {"pairs": n, "sha1": digest.hexdigest()}


def absent_heldout_sets(data: str | Path) -> list[str]:
    """For ``geosr evaluate``'s notes: the sets of a manifest that hold scenes out but whose folder is absent, so
    that nothing of them is scored (a typo in a "path" passed unsaid, where one in "heldout" is refused; found in
    review); nothing for other data."""
    try:
        src = source_for_path(data)
    except InputError:
        return []
    if src["kind"] != "shared":
        return []
    return [f"set {ds.group}: its folder {ds.path} does not exist, so its held-out scenes "
            f"({', '.join(ds.heldout)}) are not scored" for ds in collection_of(src).sets
            if ds.heldout and not ds.scene_parts and not ds.path.is_dir()]  # (a crops set's held-out scenes only
    # keep its crops out of training: they are scored from their own set)


def evaluation_pairs(data: str | Path) -> list[Pair]:
    """``geosr evaluate``'s data: a manifest's held-out split, a Ref-Diff folder, an A/ B/ (label/) folder, or
    images (a folder of them at any depth, or one): HR images alone, without a reference or labels, each grouped by
    its folder below the one given (a user's own held-out tiles were refused; found in review)."""
    data = local_data(data)
    try:
        src = source_for_path(data)
    except InputNotFoundError:
        raise
    except InputError:  # an empty folder: its message lists training's layouts (images), which evaluate refuses
        src = {"kind": None}
    if src["kind"] == "shared":
        return collection_pairs(collection_of(src), split="heldout")
    if src["kind"] == "refdiff":
        return refdiff_folder(data)
    if src["kind"] == "pairs":
        return change_pair_folder(data, require_label=False)
    if src["kind"] == "synthetic":  # (a grey image repeated to three bands, as training gives it: scored as grey)
        root = Path(data) if Path(data).is_dir() else Path(data).parent
        images = source_images(src)
        names = [image_name(image, root) for image in images]
        # by their path below the folder given; where two share it, with their extensions (a.png, a.tif)
        told = Counter(n.lower() for n in names)
        pairs = []
        for image, name, pair in zip(images, names, synthetic_pairs(images, group=root.name)):
            if told[name.lower()] > 1:
                name = Path(image).relative_to(root).as_posix() if Path(image).is_relative_to(root) else name
            # no change label known anywhere: scored overall only (not as unchanged: no reference to have changed)
            pairs.append(dataclasses.replace(pair, name=name, synthetic=False,
                                             labelled=torch.zeros(pair.shape, dtype=torch.bool)))
        return pairs
    raise InputError(f"{data}: not an evaluation data set geosr knows (a data manifest, a Ref-Diff folder with "
                     "HR_512/, A/ B/ label/, or images)")


__all__ = ["source_for_path", "collection_of", "load_sources", "data_fingerprint", "evaluation_pairs"]
