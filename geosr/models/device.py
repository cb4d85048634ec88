"""Choosing the torch device, the one place that does: ``auto`` takes CUDA when there is one, else the CPU."""

from __future__ import annotations

import re

import torch

from geosr.config import DEVICE_NAME
from geosr.errors import OptionError


def resolve_device(spec: "str | torch.device | None") -> torch.device:
    """``auto`` (or None) -> ``cuda`` when available, else ``cpu``; ``cpu``, ``cuda``, ``cuda:N`` as given.

    Raises OptionError naming the parameter (``device``) for an unknown name or CUDA on a machine without it.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    name = (spec or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    # (ASCII digits, no leading zero: torch refuses "cuda:01" and "cuda:\u0661", which str.isdigit takes; review)
    if re.fullmatch(DEVICE_NAME, name, re.ASCII) and name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise OptionError(f"device {name}: no CUDA device is available here (use cpu or auto)", param="device")
        count = torch.cuda.device_count()
        if name != "cuda" and int(name[5:]) >= count:  # else torch's "invalid device ordinal" at the first tensor
            raise OptionError(f"device {name}: this machine has {count} CUDA device{'s' * (count != 1)} "
                              f"(cuda:0{f' to cuda:{count - 1}' if count > 1 else ''})", param="device")
        return torch.device(name)
    raise OptionError(f"device {spec!r}: use auto, cpu, cuda or cuda:N", param="device")
