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
from geosr.models.backbone_experts import ExpertBackbone
from geosr.models.checkpoint import FORMAT, SPEC_KEY, read_spec, read_tensors


def is_backbone_spec(spec: dict[str, Any]) -> bool:
    return isinstance(spec.get("arch"), dict) and spec["arch"].get("kind") == "backbone"


def save_backbone(net: LRBackbone | ExpertBackbone, path: str | Path, *, name: str, sidecar: bool = False,
                  **fields: Any) -> Path:
    """Write ``net`` and its spec (``fields`` added: training, metrics, inference, ...) to ``path``, atomically.
    An :class:`ExpertBackbone`'s experts are stored as ``experts.<i>.<tensor>``, their names, anchors and mixing
    widths in the spec's ``experts``."""
    from safetensors.torch import save_file

    path = Path(path)
    cfg = net.cfg
    spec: dict[str, Any] = {
        "format": FORMAT, "name": name, "arch": cfg.to_dict(), "scales": list(cfg.scales), "bands": cfg.n_bands,
        "band_names": ["red", "green", "blue"] if cfg.n_bands == 3 else [f"band{i + 1}" for i in range(cfg.n_bands)],
        "change_classes": {}, "map_classes": {}, "normalization": {}, "halo": 16, "training": {}, "metrics": {},
    }
    if isinstance(net, ExpertBackbone):
        spec["experts"] = {"names": list(net.names), "anchors": {str(k): list(v) for k, v in net.anchors.items()},
                           "widths": {str(k): v for k, v in net.widths.items()}}
    spec.update(fields)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in net.state_dict().items()}
    tmp = path.with_name(path.name + ".part")
    save_file(tensors, str(tmp), metadata={SPEC_KEY: json.dumps(spec, sort_keys=True)})
    os.chmod(tmp, 0o644)
    tmp.replace(path)
    if sidecar:  # moved into place as the weights are: a kill mid-write leaves the last whole one
        side = path.with_suffix(".json")
        part = side.with_name(side.name + ".part")
        part.write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
        part.replace(side)
    return path


def load_backbone(path: str | Path, *, device: torch.device | str = "cpu",
                  ) -> tuple[LRBackbone | ExpertBackbone, dict[str, Any]]:
    """A backbone checkpoint's network (eval mode) and spec; :class:`ModelFileError` for anything else."""
    path = Path(path)
    spec = read_spec(path)
    if not is_backbone_spec(spec):
        raise ModelFileError(f"model file {path} is not a backbone checkpoint")
    try:
        cfg = BackboneConfig.from_dict(spec["arch"])
        experts = _expert_spec(spec.get("experts"), cfg)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ModelFileError(f"model file {path} has a bad backbone architecture in its spec ({exc})") from None
    # built on the meta device and given the file's tensors: no time spent initialising weights that the file
    # replaces (the two-expert `lite` loads in 0.10 s instead of 0.13)
    with torch.device("meta"):
        one = {k: (tuple(v.shape), v.dtype) for k, v in build_backbone(cfg).state_dict().items()}
        if experts is None:
            net: LRBackbone | ExpertBackbone = build_backbone(cfg)
            expected = one
        else:
            names, anchors, widths = experts
            try:
                net = ExpertBackbone([build_backbone(cfg) for _ in names], anchors, names, widths)
            except ValueError as exc:
                raise ModelFileError(f"model file {path} has bad experts in its spec ({exc})") from None
            expected = {f"experts.{i}.{k}": v for i in range(len(names)) for k, v in one.items()}
    net.load_state_dict(read_tensors(path, expected), strict=True, assign=True)
    return net.to(device).eval(), spec


def _expert_spec(d: Any, cfg: BackboneConfig,
                 ) -> tuple[list[str], dict[int, list[float | None]], dict[int, float]] | None:
    """(names, anchors by scale, mixing widths by scale) of a spec's ``experts``, or None for a single network."""
    if d is None:
        return None
    names = [str(n) for n in d["names"]]
    anchors = {int(s): [None if a is None else float(a) for a in v] for s, v in d["anchors"].items()}
    widths = {int(s): float(w) for s, w in d.get("widths", {}).items()}
    if cfg.code_dims:
        raise ValueError("experts are blended by the sharpness code and take none themselves")
    return names, anchors, widths
