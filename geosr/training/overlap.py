"""Whether evaluation data is what a model was trained on, as its checkpoint's training record names its sources."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from geosr.training.config import SOURCE_PATH_KEYS

# the sources a run reads as a data manifest's training split: its folders hold the held-out split too, which an
# evaluation scores, so that data in them was trained on cannot be told from the paths alone (the bundled models')
MANIFEST_KINDS = ("shared",)


def training_sources(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The data sources a checkpoint's training run read: a diffusion run's ``training.config.data``, an LR-space
    run's ``training.data_sources`` (none for a checkpoint that does not record them)."""
    training = spec.get("training") if isinstance(spec.get("training"), dict) else {}
    config = training.get("config") if isinstance(training.get("config"), dict) else {}
    sources = training.get("data_sources", config.get("data"))
    return [s for s in sources if isinstance(s, dict)] if isinstance(sources, list) else []


def _paths(source: dict[str, Any]) -> list[str]:
    named = [source[k] for k in SOURCE_PATH_KEYS if isinstance(source.get(k), str) and source[k]]
    listed = source.get("paths") if isinstance(source.get("paths"), list) else []
    return [os.path.realpath(p) for p in [*named, *listed] if isinstance(p, str) and p]


def _within(inner: str, outer: str) -> bool:
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def trained_on(data: str | os.PathLike[str], sources: Sequence[dict[str, Any]]) -> list[str]:
    """The training sources' paths that evaluation ``data`` (a folder or a manifest) is, lies in, or holds (a data
    manifest's sources, whose folders hold its held-out split too, left out)."""
    seen = os.path.realpath(os.fspath(data))
    found = []
    for src in sources:
        if src.get("kind") not in MANIFEST_KINDS:
            found += [p for p in _paths(src) if _within(seen, p) or _within(p, seen)]
    return list(dict.fromkeys(found))


def training_data_notes(data: str | os.PathLike[str], specs: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    """A note for each model (``(name, spec)``) whose training record names ``data`` among its sources: its scores
    there are on images it was trained on, not held out."""
    notes = []
    for name, spec in specs:
        hit = trained_on(data, training_sources(spec))
        if hit:
            more = f" and {len(hit) - 3} more" if len(hit) > 3 else ""
            shown = ", ".join(Path(p).name or p for p in hit[:3]) + more
            notes.append(f"{name} was trained on {shown} (its checkpoint's training record), which this data is, lies "
                         "in or holds: its scores here are on images it was trained on, not held out")
    return notes


__all__ = ["training_sources", "trained_on", "training_data_notes"]
