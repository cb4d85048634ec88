"""Whether evaluation data is what a model was trained on, as its checkpoint's training record names its sources."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any, Sequence

from geosr.training.config import SOURCE_PATH_KEYS

# the sources a run reads as a data manifest's training split: which of the manifest's images it trained on (its
# folders hold the held-out split too) cannot be told from the record alone (the bundled models')
MANIFEST_KINDS = ("shared",)


# how many files and folders below evaluation data are compared with a run's hashed sources at most
WALK_LIMIT = 20000
# how many source paths a card records hashed at most (beyond, their folders)
LISTED_LIMIT = 256
# a card's record of the hashed sources of the runs behind the checkpoint its run started from
INHERITED = "inherited_path_hashes"


def training_sources(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The data sources a checkpoint's training run read, by path: a diffusion run's ``training.config.data`` (none
    for a checkpoint that does not record them; an LR-space run records them hashed: :func:`training_hashes`)."""
    training = spec.get("training") if isinstance(spec.get("training"), dict) else {}
    config = training.get("config") if isinstance(training.get("config"), dict) else {}
    sources = config.get("data")
    return [s for s in sources if isinstance(s, dict)] if isinstance(sources, list) else []


def training_hashes(spec: dict[str, Any], key: str = "data_path_hashes") -> set[str]:
    """The hashed paths of the sources an LR-space run read (``training.data_path_hashes``: :func:`path_hashes`), or
    with ``key`` ``inherited_path_hashes``, those of the runs behind the checkpoint it started from."""
    training = spec.get("training") if isinstance(spec.get("training"), dict) else {}
    got = training.get(key)
    return {h for h in got if isinstance(h, str)} if isinstance(got, list) else set()


def inherited_hashes(start: dict[str, Any]) -> dict[str, list[str]]:
    """The record of a run initialised from the checkpoint whose spec is ``start``: the hashed source paths of the
    runs behind those weights (``start``'s own, by path or hashed, and what it inherited), so that evaluation on the
    data a model's ancestors were trained on is told too (a run fine-tuned from one trained on tiles/ and evaluated
    on tiles/ went unnoted; found in review). {} when ``start`` names none. (It grows by at most LISTED_LIMIT
    entries per generation.)"""
    got = training_hashes(start) | training_hashes(start, INHERITED) | set(path_hashes(training_sources(start)))
    return {INHERITED: sorted(got)} if got else {}


def _hash(path: str) -> str:
    return hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:20]


def path_hashes(sources: Sequence[Any]) -> list[str]:
    """The paths of training ``sources`` (resolved) as a card records them: hashed, naming no user's folder (a card
    that held /home/me/client/tiles was found in review), yet comparable with evaluation data's; of more than
    LISTED_LIMIT files listed, their folders (the card's size bounded)."""
    paths = {p for src in sources if isinstance(src, dict) and src.get("kind") not in MANIFEST_KINDS
             for p in _paths(src)}
    if len(paths) > LISTED_LIMIT:
        paths = {os.path.dirname(p) for p in paths}
    return sorted(_hash(p) for p in paths)


def _paths(source: dict[str, Any]) -> list[str]:
    named = [source[k] for k in SOURCE_PATH_KEYS if isinstance(source.get(k), str) and source[k]]
    listed = source.get("paths") if isinstance(source.get("paths"), list) else []
    return [os.path.realpath(p) for p in [*named, *listed] if isinstance(p, str) and p]


def _within(inner: str, outer: str) -> bool:
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def evaluated_paths(data: str | os.PathLike[str]) -> list[str]:
    """Where evaluation ``data`` reads its images: the folder or file given (a ``file://`` URL's path), or for a
    data manifest the folders of its data sets, whose held-out scenes it scores."""
    from geosr.training.manifest import load_collection
    from geosr.training.sources import local_data

    seen = os.path.realpath(local_data(data))
    if os.path.isfile(seen) and seen.lower().endswith(".json"):
        with contextlib.suppress(Exception):  # (not a manifest: read as given, as evaluation_pairs reads it)
            return [os.path.realpath(ds.path) for ds in load_collection(seen).sets]
    return [seen]


def trained_on(data: str | os.PathLike[str], sources: Sequence[dict[str, Any]],
               hashes: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """The training sources' paths that evaluation ``data`` (a folder or a manifest: :func:`evaluated_paths`) is,
    lies in, or holds (a data manifest's sources left out: their record names the manifest, not which of its images
    a run trained on); for sources known by their ``hashes``, the path here that matched (the data, a folder above
    it, or a file or folder below it, up to WALK_LIMIT of them)."""
    found = []
    for seen in evaluated_paths(data):
        for src in sources:
            if src.get("kind") not in MANIFEST_KINDS:
                found += [p for p in _paths(src) if _within(seen, p) or _within(p, seen)]
        if hashes:
            found += [p for p in _around(seen) if _hash(p) in hashes]
    return list(dict.fromkeys(found))


def _around(path: str) -> list[str]:
    """``path``, the folders above it, and what lies below it (at most WALK_LIMIT entries)."""
    out, p = [path], path
    while os.path.dirname(p) != p:
        p = os.path.dirname(p)
        out.append(p)
    if os.path.isdir(path):
        for top, dirs, files in os.walk(path):
            out += [os.path.join(top, n) for n in dirs + files]
            if len(out) > WALK_LIMIT:
                break
    return out


def training_data_notes(data: str | os.PathLike[str], specs: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    """A note for each model (``(name, spec)``) whose training record names ``data`` among its sources: its scores
    there are on images it was trained on, not held out."""
    notes = []
    for name, spec in specs:
        hit = trained_on(data, training_sources(spec), training_hashes(spec))
        before = [] if hit else trained_on(data, [], training_hashes(spec, INHERITED))
        if hit or before:
            found = hit or before
            more = f" and {len(found) - 3} more" if len(found) > 3 else ""
            shown = ", ".join(Path(p).name or p for p in found[:3]) + more
            said = "was trained on" if hit else "was initialised from weights trained on"
            whose = "it was trained on" if hit else "its starting weights were trained on"
            notes.append(f"{name} {said} {shown} (its checkpoint's training record), which this data is, lies in or "
                         f"holds: its scores here are on images {whose}, not held out")
    return notes


__all__ = ["training_sources", "training_hashes", "inherited_hashes", "path_hashes", "trained_on",
           "training_data_notes"]
