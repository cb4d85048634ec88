"""A light learned change detector: LR and reference on the LR grid in, the probability of change per LR pixel out.

geosr's own small network (about 50 k weights): each image is standardized per band over the valid pixels of the
compared area (so the date's light, season and sensor gain do not count; the pipeline compares bands of 2048
rows, whose statistics are the scene's), then the two images and their absolute difference go through a stack of
3x3 convolutions with growing dilation (1, 1, 2, 4, 2, 1: a field of view of 23 x 23 LR pixels, no pooling), with
residual connections, and a 1x1 convolution to one logit.

Trained on the real labelled pairs of ../shared/data and on synthetic change (``geosr.training.change_fit``);
recall is favoured at training (positive weight) and at inference (``threshold``, in the checkpoint's spec).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

FIELD = 11  # LR pixels of context each side (half the field of view)


@dataclass(frozen=True)
class ChangeNetConfig:
    name: str = "change-net"
    n_bands: int = 3
    width: int = 32
    dilations: tuple[int, ...] = (1, 1, 2, 4, 2, 1)

    def to_dict(self) -> dict:
        return {**asdict(self), "kind": "change-net", "dilations": list(self.dilations)}

    @classmethod
    def from_dict(cls, d: dict) -> "ChangeNetConfig":
        kw = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "dilations" in kw:
            kw["dilations"] = tuple(int(x) for x in kw["dilations"])
        return cls(**kw)


def standardize(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) per image and band to zero mean, unit spread over ``valid`` (B, 1, h, w); 0 where invalid."""
    w = valid.float()
    n = w.sum(dim=(2, 3), keepdim=True).clamp(min=1)
    mean = (x * w).sum(dim=(2, 3), keepdim=True) / n
    var = ((x - mean) ** 2 * w).sum(dim=(2, 3), keepdim=True) / n
    return (x - mean) / (var.sqrt() + 1e-6) * w


class ChangeNet(nn.Module):
    def __init__(self, cfg: ChangeNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.width
        self.stem = nn.Conv2d(3 * cfg.n_bands, c, 3, padding=cfg.dilations[0], dilation=cfg.dilations[0])
        self.body = nn.ModuleList(nn.Conv2d(c, c, 3, padding=d, dilation=d) for d in cfg.dilations[1:])
        self.head = nn.Conv2d(c, 1, 1)

    def forward(self, lr: torch.Tensor, ref: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Logits (B, 1, h, w) of change for LR and reference (B, C, h, w) with joint validity (B, 1, h, w)."""
        a, b = standardize(lr, valid), standardize(ref, valid)
        h = F.leaky_relu(self.stem(torch.cat([a, b, (a - b).abs()], dim=1)), 0.1)
        for conv in self.body:
            h = h + F.leaky_relu(conv(h), 0.1)
        return self.head(h)


def save_change_net(net: ChangeNet, path: str | Path, *, threshold: float, **fields: Any) -> Path:
    """Write ``net`` with its spec (the probability ``threshold`` above which a pixel is changed) atomically."""
    from safetensors.torch import save_file

    from geosr.models.checkpoint import FORMAT, SPEC_KEY

    path = Path(path)
    spec = {"format": FORMAT, "name": net.cfg.name, "arch": net.cfg.to_dict(), "threshold": float(threshold),
            **fields}
    tmp = path.with_name(path.name + ".part")
    save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, str(tmp),
              metadata={SPEC_KEY: json.dumps(spec, sort_keys=True)})
    os.chmod(tmp, 0o644)
    tmp.replace(path)
    return path


def load_change_net(path: str | Path) -> tuple[ChangeNet, dict[str, Any]]:
    """A change detector checkpoint (eval mode) and its spec; pickles and mismatched tensors are refused."""
    from geosr.errors import ModelFileError
    from geosr.models.checkpoint import read_spec, read_tensors

    path = Path(path)
    spec = read_spec(path)
    if spec["arch"].get("kind") != "change-net":
        raise ModelFileError(f"model file {path} is not a change detector")
    net = ChangeNet(ChangeNetConfig.from_dict(spec["arch"]))
    expected = {k: (tuple(v.shape), v.dtype) for k, v in net.state_dict().items()}
    net.load_state_dict(read_tensors(path, expected), strict=True)
    return net.eval(), spec

