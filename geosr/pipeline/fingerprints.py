"""What tells one upscale job from another, in words: the differences between two job fingerprints
(:func:`geosr.pipeline.job.plan_upscale`'s), for a refused ``--resume`` to say what changed."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from geosr.io.paths import is_file_list

# The fingerprint's inputs, in their order there, and how a message names each
FINGERPRINT_INPUTS = (("lr", "the LR"), ("ref", "the reference"), ("cd", "the change mask"), ("map", "the map"),
                      ("style", "the style image"))
REF = 1  # the reference's place among them
# What a local input file's identity holds (geosr.pipeline.job._stat_id), recorded in the fingerprint: a journal or
# batch record that identified files otherwise (path, size and time alone: none recorded; any other) is another's
FILE_IDENTITY = ("path", "size", "mtime_ns", "sample_sha256")


def _option_names() -> dict[str, str]:
    """Each option's name (its keyword, in backticks: the CLI shows its flag) as the fingerprint holds it
    (``tiling.window``: `` `window` ``)."""
    from geosr.options import UPSCALE_OPTIONS

    return {spec.path.replace("output_config.", "output.").replace("device.", ""): f"`{spec.name}`"
            for spec in UPSCALE_OPTIONS if spec.path}


def fingerprint_changes(old: dict, new: dict) -> list[str]:
    """What differs between two job fingerprints, in words: ``the LR changed (its size or modification time)``,
    ``recorded by an earlier geosr, which identified input files by...`` (a journal or record of before
    :data:`FILE_IDENTITY`),
    ```batch_size` 1 -> 3``, ```window` 64 -> 48``, ```model` lite -> bicubic`` (the CLI shows flags; settings that
    are no option by their key: ``threads 2 -> 1``)."""
    said = []
    for key in ("version", "revision"):
        if old.get(key) != new.get(key):
            said.append(f"geosr {key} {old.get(key)} -> {new.get(key)}")
    if said:  # another geosr: its options may be recorded otherwise ("`sampler` default -> unset"; found in review)
        return said
    if old.get("file_identity") != new.get("file_identity"):  # every file would read "changed" (found in review)
        then, now = old.get("file_identity") or ("path", "size", "mtime_ns"), new.get("file_identity") or ()
        added = [f for f in now if f not in then]
        return [f"recorded by an earlier geosr, which identified input files by {_identity_words(then)} alone; "
                f"geosr now also compares their {_identity_words(added)}" if added and set(then) <= set(now) else
                f"recorded by another geosr, which identified input files by {_identity_words(then)}; geosr now "
                f"identifies them by {_identity_words(now)}"]
    a, b = old.get("inputs") or [], new.get("inputs") or []
    for i in range(max(len(a), len(b))):
        x, y = (a[i] if i < len(a) else None), (b[i] if i < len(b) else None)
        keywords = (None, "auto", "none")
        if x != y and i < len(FINGERPRINT_INPUTS) and FINGERPRINT_INPUTS[i][0] == "cd" and x in keywords and \
                y in keywords:  # (auto, recorded as none given, -> none read "the change mask was added"; review)
            with_ref = [len(f) > REF and f[REF] is not None for f in (a, b)]  # none given is auto with a reference
            said.append(f"`cd` {x or ('auto' if with_ref[0] else 'not given')} -> "
                        f"{y or ('auto' if with_ref[1] else 'not given')}")
        elif x != y and (paths := _other_file(x, y)) is not None:  # another file, not this one changed (review)
            role = FINGERPRINT_INPUTS[i][1] if i < len(FINGERPRINT_INPUTS) else "the class table or area file"
            said.append(f"{role} {paths[0]} -> {paths[1]}")
        elif x != y:
            role = FINGERPRINT_INPUTS[i][1] if i < len(FINGERPRINT_INPUTS) else "the class table or area file"
            named = next((v for v in (y, x) if isinstance(v, list) and v and isinstance(v[0], str)), None)
            if named is not None:  # a file's identity: [path, size, mtime, ...]
                # (band files as a list: named by the last one's name, "the LR B04.tif: its file B03.tif"; review)
                role += " band files" if is_file_list(named[0]) else f" {Path(named[0]).name}"
                member = _member_changed(x, y)
                if member is not None:  # a STAC item's or a product's file, not the item itself (found in review)
                    role, named = f"{role}: its file {Path(member).name}", [member]
            what = _how_changed(x, y)
            if named is not None and re.match(r"^(/vsicurl|[a-z][a-z0-9+.-]*://)", named[0], re.IGNORECASE):
                what = " (its size, Last-Modified or ETag on its server)"
            said.append(f"{role} {'was added' if x is None else 'was left out' if y is None else 'changed'}"
                        + (what if x and y and x[:1] == y[:1] else ""))
    flat_old = _said_settings({**_flat(old.get("options") or {}), **_flat(old.get("runtime") or {})})
    flat_new = _said_settings({**_flat(new.get("options") or {}), **_flat(new.get("runtime") or {})})
    other_model = flat_old.get("model") != flat_new.get("model")  # its settings differ too: the name says it
    names = _option_names()
    fused = [f.get("model_settings.fuse_overlaps") for f in (flat_old, flat_new)]
    for key in sorted(set(flat_old) | set(flat_new)):
        x, y = flat_old.get(key), flat_new.get(key)
        if x == y or (other_model and key.startswith("model_settings.")):
            continue
        if key in ("model_settings.sampler.name", "model_settings.fuse_overlaps") and (x is None or y is None):
            continue  # sampling or not: its steps say it ("`fuse_overlaps` off -> off"; found in review)
        if key == "batch_size" and fused[0] != fused[1] and 1 in (x, y) and \
                flat_old.get("device") == flat_new.get("device") == "cpu":  # windows taken singly on the CPU
            continue  # without fused overlaps, recorded as 1: "--batch-size 1 -> 4" for one given alike (review)
        if key == "model_settings.rescaled" or (key == "model_settings.style"
                                                and flat_old.get("style") != flat_new.get("style")):
            continue  # the scale and the style options say them (a model object's own style: said below)
        if key in ("model_settings.checksum", "model_settings.backbone.checksum"):
            line = f"model {flat_new.get('model')}'s weights changed"
            if line not in said:
                said.append(line)
            continue
        setting = _MODEL_SETTINGS.get(key, "sampler.preset" if key.startswith("model_settings.sampler.") else None)
        unset = "off" if setting else "unset"  # (a setting the model runs without: reference detail off)
        a, b = (v if isinstance(v, str) else unset if v is None else json.dumps(v) for v in (x, y))  # not "null"
        name = names.get(setting or key, key)
        line = f"{name} {a} -> {b}" if max(len(a), len(b)) <= 24 else f"{name} changed"
        if line not in said:
            said.append(line)
    return said


_IDENTITY_WORDS = {"path": "path", "size": "size", "mtime_ns": "modification time",
                   "sample_sha256": "sampled content", "ctime_ns": "status-change time", "inode": "inode"}


def _identity_words(fields: object) -> str:
    """``("path", "size", "mtime_ns")`` as ``path, size and modification time``."""
    words = [_IDENTITY_WORDS.get(str(f), str(f)) for f in fields] if isinstance(fields, (list, tuple)) else []
    return f"{', '.join(words[:-1])} and {words[-1]}" if len(words) > 1 else "".join(words) or "nothing"


def _how_changed(old: list | None, new: list | None) -> str:
    """How a local input file's identity changed, in words: its size or modification time, or else its content
    alone (its sampled digest: the file was replaced by one ``cp -p`` or ``tar`` gave the same size and time; it said
    "its size or modification time" of a file whose both were the same; found in review). For an input of several
    files (a STAC item, a VRT), the first that differs."""
    pairs = [(old, new)]
    pairs += [(a, b) for a, b in zip((old or [])[1:], (new or [])[1:]) if isinstance(a, list) and isinstance(b, list)]
    for a, b in pairs:
        own_a = [v for v in a or [] if not isinstance(v, list)]
        own_b = [v for v in b or [] if not isinstance(v, list)]
        if own_a == own_b:
            continue
        if own_a[:3] == own_b[:3] and len(own_a) == len(own_b) == len(FILE_IDENTITY):
            return (" (its content, keeping its size and modification time, as cp -p or tar can leave a replaced "
                    "file)")
        break
    return " (its size or modification time)"


def _other_file(old: object, new: object) -> tuple[str, str] | None:
    """Two local or remote files' identities (``[path, ...]``) at different paths, as a message names them: by
    their names, or whole where the names are the same; None for one file, or band files given as a list (an
    output made from hro.tif refused for rgb_byte.tif said "the LR rgb_byte.tif changed", a file as it was)."""
    if not (isinstance(old, list) and isinstance(new, list) and old and new and isinstance(old[0], str)
            and isinstance(new[0], str)) or old[0] == new[0] or is_file_list(old[0]) or is_file_list(new[0]):
        return None
    a, b = Path(old[0]).name, Path(new[0]).name
    return (a, b) if a != b else (old[0], new[0])


def _member_changed(old: object, new: object) -> str | None:
    """The path of the first file of a composite input (a STAC item, a product: ``[path, own stats..., [member,
    size, mtime], ...]``) whose identity differs between two fingerprints, where the composite's own does not."""
    if not (isinstance(old, list) and isinstance(new, list) and old[:1] == new[:1]):
        return None
    a, b = next(((a, b) for a, b in zip(old[1:], new[1:]) if a != b), (None, None))
    if not (isinstance(a, list) and isinstance(b, list) and a and a[:1] == b[:1] and isinstance(a[0], str)):
        return None
    return None if os.path.abspath(a[0]) == os.path.abspath(old[0]) else a[0]  # (the item is among its files)


# how the model runs (the fingerprint's model_settings) by the option that sets it, as a message names it (it
# said "model_settings.sampler.steps 1 -> 2"; found in review); another of the sampler's: `sampler`
_MODEL_SETTINGS = {"model_settings.sampler.steps": "sampler.steps", "model_settings.sampler.name": "sampler.preset",
                   "model_settings.lr_consistency": "sampler.lr_consistency",
                   "model_settings.reference_detail": "sampler.reference_detail",
                   "model_settings.fuse_overlaps": "sampler.fuse_overlaps", "model_settings.steps": "sampler.steps",
                   "model_settings.style": "style"}


def _said_settings(flat: dict) -> dict:
    """The model's settings of a flattened fingerprint as a message names them: its sampler by its preset's name and
    step count alone (its other fields follow from those: listed one by one, each was "`sampler` 0.0 -> 40.0"), the
    steps of a model without a sampler as its steps, and back-projection by its operator ("box", not "changed")."""
    out = {k: v for k, v in flat.items() if not k.startswith("model_settings.sampler.")}
    steps = flat.get("model_settings.sampler.steps", flat.get("model_settings.steps"))
    if steps is not None:
        out["model_settings.steps"] = steps
    if "model_settings.sampler.name" in flat:
        out["model_settings.sampler.name"] = flat["model_settings.sampler.name"]
    for key in ("model_settings.fuse_overlaps", "model_settings.reference_detail"):  # on or off, as their flags
        if key in flat and flat[key] is not None:
            out[key] = "on" if flat[key] else "off"
    consistency = flat.get("model_settings.lr_consistency")
    if isinstance(consistency, str):
        found = re.search(r"\((\w+)\)", consistency)
        out["model_settings.lr_consistency"] = found.group(1) if found else consistency
    return out


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# the output's tags that tell which job made it: its inputs (by name), options and model, and the LR's stretch,
# measured from its pixels (two scenes of one name apart); not the harmonization: a dry run's, before a change
# detection, is not the run's
JOB_TAGS = ("GEOSR_INPUTS", "GEOSR_OPTIONS", "GEOSR_MODEL_SETTINGS", "GEOSR_SCALE", "GEOSR_BANDS", "GEOSR_STRETCH")


# those of them geosr computes rather than records as given (an option's spelling, a path relative or absolute, a
# batch size that changes no pixel): what tells a job's own output at a `resume` that finishes it
COMPUTED_TAGS = ("GEOSR_MODEL_SETTINGS", "GEOSR_SCALE", "GEOSR_BANDS", "GEOSR_STRETCH")


def made_by(output: Path, tags: dict[str, str], keys: tuple[str, ...] = JOB_TAGS) -> bool:
    """Whether the file at ``output`` is a geosr output of the job whose output tags are ``tags`` (compared by
    ``keys``)."""
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        with rasterio.open(output) as ds:
            held = ds.tags()
    except (RasterioIOError, OSError):
        return False
    return all(held.get(k) == tags.get(k) for k in keys)
