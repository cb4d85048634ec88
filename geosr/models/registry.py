"""Model names -> super-resolvers: the classical back-ends, bundled checkpoints and local paths."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from geosr.errors import OptionError
from geosr.models.classical import KernelUpsampler, ReferencePaste
from geosr.models.interface import SuperResolver

CLASSICAL: dict[str, Callable[[], SuperResolver]] = {
    "bicubic": lambda: KernelUpsampler("bicubic"),
    "lanczos": lambda: KernelUpsampler("lanczos"),
    "reference-paste": ReferencePaste,
}


@dataclass(frozen=True)
class ModelInfo:
    """One entry of ``geosr models``."""

    name: str
    kind: str
    description: str


def available_models() -> list[ModelInfo]:
    """Every model name ``--model`` accepts without a path."""
    return [
        ModelInfo("bicubic", "classical", "bicubic interpolation of the LR (Keys a=-0.5)"),
        ModelInfo("lanczos", "classical", "Lanczos-3 interpolation of the LR"),
        ModelInfo("reference-paste", "classical", "harmonized reference where unchanged, bicubic where changed"),
    ]


def load_model(spec: str, *, device: str = "cpu") -> SuperResolver:
    """Resolve a model name or path to a ready super-resolver on ``device``."""
    if spec in CLASSICAL:
        return CLASSICAL[spec]()
    names = ", ".join(m.name for m in available_models())
    raise OptionError(f"unknown model {spec!r}: use one of {names}, or the path of a geosr checkpoint")
