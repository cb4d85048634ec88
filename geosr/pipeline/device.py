"""Choosing the torch device: ``auto`` takes CUDA when there is one, else the CPU."""

from __future__ import annotations

import torch

from geosr.errors import OptionError


def resolve_device(spec: str) -> torch.device:
    spec = (spec or "auto").lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise OptionError(f"--device {spec}: no CUDA device is available here (use --device cpu or auto)")
        return torch.device(spec)
    if spec == "cpu":
        return torch.device("cpu")
    raise OptionError(f"--device {spec!r}: use auto, cpu, cuda or cuda:N")
