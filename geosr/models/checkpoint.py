"""Checkpoints: one ``.safetensors`` file whose metadata holds the model's JSON spec (key ``geosr_spec``),
optionally with a sidecar ``.json`` holding the same spec for humans.

Loading never unpickles: pickles and zip archives (``torch.save``) are refused from their magic bytes
before anything else is read, the spec's numbers are checked against bounds before anything is built from
them (:mod:`geosr.models.spec_bounds`), and every tensor's name, shape and dtype is checked against a model
built on the meta device before any weight is copied.

The spec::

    {"format": "geosr-checkpoint/1", "name": ..., "arch": {ArchConfig fields}, "scales": [8], "bands": 3,
     "band_names": [...], "change_classes": {...}, "map_classes": {...}, "normalization": {...},
     "halo": 2, "training": {...}, "metrics": {...}}
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import torch

from geosr.errors import InputNotFoundError, ModelFileError, OptionError
from geosr.models.configs import ArchConfig
from geosr.models.edm import EDMDenoiser, build_denoiser
from geosr.models.spec_bounds import check_spec
from geosr.permissions import new_file_mode

FORMAT = "geosr-checkpoint/1"
SPEC_KEY = "geosr_spec"
MAX_HEADER = 100 * 2**20

_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def make_spec(model: EDMDenoiser, **fields: Any) -> dict[str, Any]:
    """A spec for ``model``: its architecture plus the given fields (scales, band_names, class tables, ...)."""
    cfg = model.cfg
    spec: dict[str, Any] = {
        "format": FORMAT,
        "name": fields.pop("name", cfg.name),
        "arch": cfg.to_dict(),
        "scales": [8],
        "bands": cfg.n_bands,
        "band_names": [f"band{i + 1}" for i in range(cfg.n_bands)],
        "change_classes": {str(i): f"class{i}" for i in range(cfg.n_change_classes)},
        "map_classes": {str(i): f"class{i}" for i in range(cfg.n_map_classes)},
        "normalization": {},
        "halo": 2,
        "training": {},
        "metrics": {},
    }
    spec.update(fields)
    return spec


def save_checkpoint(
    path: str | Path, model: EDMDenoiser, spec: dict[str, Any] | None = None, *, sidecar: bool = True
) -> Path:
    """Write ``model``'s weights and ``spec`` to ``path`` (a .safetensors file), atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    spec = dict(spec) if spec is not None else make_spec(model)
    spec["format"] = FORMAT
    spec["arch"] = model.cfg.to_dict()
    spec.setdefault("bands", model.cfg.n_bands)
    text = json.dumps(spec, sort_keys=True)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".part")
    save_file(tensors, str(tmp), metadata={SPEC_KEY: text})
    os.chmod(tmp, new_file_mode())  # safetensors writes 0600; a checkpoint is meant to be shared
    tmp.replace(path)
    if sidecar:  # (through a .part file too: a kill mid-write left a truncated copy beside whole weights)
        side = path.with_suffix(".json")
        part = side.with_name(side.name + ".part")
        part.write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
        part.replace(side)
    return path


def _check_magic(path: Path) -> int:
    """Refuse anything that is not a safetensors file; return the header length."""
    try:
        there, a_file = path.exists(), path.is_file()
        if there and a_file:
            size = path.stat().st_size
            with path.open("rb") as f:
                head = f.read(9)
    except OSError as exc:  # (unreadable, or in a folder this user may not enter: an internal error; review)
        raise ModelFileError(f"model file {path} cannot be read ({(exc.strerror or str(exc)).lower()})") from None
    if not there:
        raise InputNotFoundError(f"model file {path} does not exist")
    if not a_file:
        raise ModelFileError(f"model file {path} is not a file{_run_weights(path)}")
    if len(head) == 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 1 < n <= MAX_HEADER and 8 + n <= size and head[8:9] == b"{":
            return n  # the safetensors layout: u64 header length, then a JSON object
    if head[:2] == b"PK":
        raise ModelFileError(
            f"model file {path} is a zip archive (a torch.save checkpoint), which geosr refuses to load because "
            "unpickling can run code; convert it to safetensors"
        )
    if head[:1] == b"\x80" or head[:1] in (b"(", b"]", b"}", b"c"):
        raise ModelFileError(
            f"model file {path} is a Python pickle, which geosr refuses to load because unpickling can run code; "
            "convert it to safetensors"
        )
    raise ModelFileError(f"model file {path} is not a safetensors file{_run_weights(path)}")


def _run_weights(path: Path) -> str:
    """Where a training run's weights are, when ``path`` is its folder or another of its files (state, model.json):
    "not a file" said nothing of where to look (found in review)."""
    folder = path if path.is_dir() else path.parent
    for name in ("model.safetensors", "best.safetensors"):
        if (folder / name).is_file() and (folder / name) != path:
            return f" (a training run's weights are {folder / name})"
    return ""


def read_spec(path: str | Path) -> dict[str, Any]:
    """The spec inside a checkpoint (no weights are read), its numbers checked against geosr's bounds
    (:func:`geosr.models.spec_bounds.check_spec`)."""
    from safetensors import safe_open

    path = Path(path)
    _check_magic(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types
        raise ModelFileError(f"model file {path} is not a readable safetensors file ({exc})") from None
    if SPEC_KEY not in meta:
        raise ModelFileError(f"model file {path} has no geosr spec (metadata key {SPEC_KEY!r}){_run_weights(path)}")
    try:
        spec = json.loads(meta[SPEC_KEY])
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"model file {path} holds a spec that is not valid JSON ({exc.msg})") from None
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        got = spec.get("format") if isinstance(spec, dict) else type(spec).__name__
        raise ModelFileError(f"model file {path} has spec format {got!r}, expected {FORMAT!r}")
    if not isinstance(spec.get("arch"), dict):
        raise ModelFileError(f"model file {path} has a spec without an architecture ('arch')")
    check_spec(spec, path)  # bounded before anything is built from it
    return spec


def _config_from_spec(path: Path, spec: dict[str, Any]) -> ArchConfig:
    try:
        return ArchConfig.from_dict(spec["arch"])
    except (OptionError, TypeError, ValueError) as exc:
        raise ModelFileError(f"model file {path} has a bad architecture in its spec ({exc})") from None


def read_tensors(path: Path, expected: dict[str, tuple[tuple[int, ...], torch.dtype]]) -> dict[str, torch.Tensor]:
    """Every tensor of the safetensors file ``path``, after checking that the names, shapes and dtypes are exactly
    ``expected`` and the values finite (:class:`ModelFileError` naming the first offending key otherwise)."""
    from safetensors import safe_open

    tensors: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt", device="cpu") as f:
        keys = set(f.keys())
        for key in sorted(expected):
            if key not in keys:
                raise ModelFileError(f"model file {path} lacks the tensor {key!r} that its architecture needs")
        for key in sorted(keys):
            if key not in expected:
                raise ModelFileError(f"model file {path} holds a tensor {key!r} that its architecture does not have")
            sl = f.get_slice(key)
            shape, dtype = tuple(sl.get_shape()), _DTYPES.get(sl.get_dtype())
            want_shape, want_dtype = expected[key]
            if shape != want_shape:
                raise ModelFileError(
                    f"model file {path} has tensor {key!r} of shape {list(shape)}, expected {list(want_shape)}"
                )
            if dtype != want_dtype:
                raise ModelFileError(
                    f"model file {path} has tensor {key!r} of dtype {sl.get_dtype()}, expected {want_dtype}"
                )
        for key in sorted(keys):
            tensors[key] = f.get_tensor(key)
            if tensors[key].is_floating_point() and not bool(torch.isfinite(tensors[key]).all()):
                # (a diverged training's weights: every output would be NaN, written as one flat value)
                raise ModelFileError(f"model file {path} has tensor {key!r} with values that are not finite (NaN or "
                                     "infinite): the training that made it diverged")
    return tensors


def load_checkpoint(path: str | Path, *, device: torch.device | str = "cpu") -> tuple[EDMDenoiser, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint`; returns ``(model in eval mode, spec)``.

    Refuses (:class:`ModelFileError`) pickles, zip archives, files without a spec, and any tensor that is
    missing, unexpected, or of the wrong shape or dtype (the first offending key is named).
    """
    path = Path(path)
    spec = read_spec(path)
    cfg = _config_from_spec(path, spec)
    expected = {k: (tuple(v.shape), v.dtype) for k, v in build_denoiser(cfg, device="meta").state_dict().items()}
    tensors = read_tensors(path, expected)
    model = build_denoiser(cfg)
    model.load_state_dict(tensors, strict=True)
    return model.to(device).eval(), spec


__all__ = ["FORMAT", "SPEC_KEY", "make_spec", "save_checkpoint", "load_checkpoint", "read_spec", "read_tensors"]
