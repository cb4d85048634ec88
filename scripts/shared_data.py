"""geosr's real data beside this repository (``../shared/data``) and its fixed held-out split, for the scripts and
the tests.

The lists (which folders, in which layout, which scenes are held out, which single images feed synthetic
change) are data, in the manifest ``scripts/shared_data.json`` beside this file, which the commands read as it
is:

    geosr train --data scripts/shared_data.json ...          # its training split + synthetic change
    geosr evaluate scripts/shared_data.json -m default ...   # its held-out split

A copy of the data elsewhere: a config source {"kind": "shared", "manifest": "scripts/shared_data.json",
"path": "/elsewhere/data"} (``path`` replaces the manifest's root).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MANIFEST = Path(__file__).resolve().with_name("shared_data.json")
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # the manifest's root


def _spec() -> dict[str, Any]:
    return json.loads(MANIFEST.read_text())


def _heldout() -> dict[str, tuple[str, ...]]:
    held: dict[str, tuple[str, ...]] = {}
    for s in _spec()["sets"]:
        held[s["group"]] = tuple(dict.fromkeys((*held.get(s["group"], ()), *s.get("heldout", ()))))
    return held


# Held out by scene, per group: training never sees these scenes (nor crops of them).
HELDOUT: dict[str, tuple[str, ...]] = _heldout()
# Single HR images (relative to the data folder, bands or None) used for synthetic change.
SYNTHETIC_SOURCES: tuple[tuple[str, tuple[int, ...] | None], ...] = tuple(
    (s["path"], tuple(s["bands"]) if s.get("bands") else None) for s in _spec().get("synthetic", ())
)


def shared_source(data_dir: str | Path | None = None, *, weight: float = 1.0, synthetic_weight: float = 1.0) -> dict:
    """The training config's source entry for the shared data (at ``data_dir``, default the manifest's root)."""
    src: dict[str, Any] = {"kind": "shared", "manifest": str(MANIFEST), "weight": weight,
                           "synthetic_weight": synthetic_weight}
    if data_dir is not None:
        src["path"] = str(data_dir)
    return src


def shared_data_pairs(data_dir: str | Path = SHARED_DATA, *, split: str) -> list:
    """The pairs of ``split`` ("train" or "heldout") of the shared data at ``data_dir``."""
    from geosr.training.manifest import collection_pairs, load_collection

    return collection_pairs(load_collection(MANIFEST, root=data_dir), split=split)


__all__ = ["MANIFEST", "SHARED_DATA", "HELDOUT", "SYNTHETIC_SOURCES", "shared_source", "shared_data_pairs"]
