"""What tells one upscale job from another, in words: the differences between two job fingerprints
(:func:`geosr.pipeline.job.plan_upscale`'s), for a refused ``--resume`` to say what changed."""

from __future__ import annotations

import json

# The fingerprint's inputs, in their order there, and how a message names each
FINGERPRINT_INPUTS = (("lr", "the LR"), ("ref", "the reference"), ("cd", "the change mask"), ("map", "the map"),
                      ("style", "the style image"))


def fingerprint_changes(old: dict, new: dict) -> list[str]:
    """What differs between two job fingerprints, in words: ``the LR changed (its size or modification time)``,
    ``batch_size 1 -> 3``, ``tiling.window 64 -> 48``, ``model lite -> bicubic``."""
    said = []
    for key in ("version", "revision"):
        if old.get(key) != new.get(key):
            said.append(f"geosr {key} {old.get(key)} -> {new.get(key)}")
    a, b = old.get("inputs") or [], new.get("inputs") or []
    for i in range(max(len(a), len(b))):
        x, y = (a[i] if i < len(a) else None), (b[i] if i < len(b) else None)
        if x != y:
            role = FINGERPRINT_INPUTS[i][1] if i < len(FINGERPRINT_INPUTS) else "the class table or area file"
            said.append(f"{role} {'was added' if x is None else 'was left out' if y is None else 'changed'}"
                        + (" (its size or modification time)" if x and y and x[:1] == y[:1] else ""))
    flat_old = {**_flat(old.get("options") or {}), **_flat(old.get("runtime") or {})}
    flat_new = {**_flat(new.get("options") or {}), **_flat(new.get("runtime") or {})}
    other_model = flat_old.get("model") != flat_new.get("model")  # its settings differ too: the name says it
    for key in sorted(set(flat_old) | set(flat_new)):
        x, y = flat_old.get(key), flat_new.get(key)
        if x == y or (other_model and key.startswith("model_settings.")):
            continue
        if key == "model_settings.checksum":
            said.append(f"model {flat_new.get('model')}'s weights changed")
            continue
        a, b = (v if isinstance(v, str) else json.dumps(v) for v in (x, y))
        said.append(f"{key} {a} -> {b}" if max(len(a), len(b)) <= 24 else f"{key} changed")
    return said


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
