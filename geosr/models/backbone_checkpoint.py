"""Backbone checkpoints: the same safetensors format as the diffusion models' (:mod:`geosr.models.checkpoint`),
with ``"kind": "backbone"`` in the spec's ``arch``. Pickles are refused and every tensor is checked against the
architecture before any weight is copied, exactly as for the diffusion models."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from geosr.errors import ModelFileError
from geosr.models.backbone import BackboneConfig, LRBackbone, build_backbone
from geosr.models.checkpoint import FORMAT, SPEC_KEY, read_spec, read_tensors


def is_backbone_spec(spec: dict[str, Any]) -> bool:
    return isinstance(spec.get("arch"), dict) and spec["arch"].get("kind") == "backbone"


def save_backbone(net: LRBackbone, path: str | Path, *, name: str, sidecar: bool = False, **fields: Any) -> Path:
    """Write ``net`` and its spec (``fields`` added: training, metrics, inference, ...) to ``path``, atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    cfg = net.cfg
    spec: dict[str, Any] = {
        "format": FORMAT, "name": name, "arch": cfg.to_dict(), "scales": list(cfg.scales), "bands": cfg.n_bands,
        "band_names": ["red", "green", "blue"] if cfg.n_bands == 3 else [f"band{i + 1}" for i in range(cfg.n_bands)],
        "change_classes": {}, "map_classes": {}, "normalization": {}, "halo": 16, "training": {}, "metrics": {},
    }
    spec.update(fields)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in net.state_dict().items()}
    tmp = path.with_name(path.name + ".part")
    save_file(tensors, str(tmp), metadata={SPEC_KEY: json.dumps(spec, sort_keys=True)})
    os.chmod(tmp, 0o644)
    tmp.replace(path)
    if sidecar:
        path.with_suffix(".json").write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
    return path


def load_backbone(path: str | Path, *, device: torch.device | str = "cpu") -> tuple[LRBackbone, dict[str, Any]]:
    """A backbone checkpoint's network (eval mode) and spec; :class:`ModelFileError` for anything else."""
    path = Path(path)
    spec = read_spec(path)
    if not is_backbone_spec(spec):
        raise ModelFileError(f"model file {path} is not a backbone checkpoint")
    try:
        cfg = BackboneConfig.from_dict(spec["arch"])
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"model file {path} has a bad backbone architecture in its spec ({exc})") from None
    with torch.device("meta"):
        expected = {k: (tuple(v.shape), v.dtype) for k, v in build_backbone(cfg).state_dict().items()}
    net = build_backbone(cfg)
    net.load_state_dict(read_tensors(path, expected), strict=True)
    return net.to(device).eval(), spec
