"""Any integer scale for a model trained at a few: run it at the next trained scale up, then resample exactly.

A model trained for x2, x4, x8 and x16 asked for x6 runs at x8 on the same LR window (its reference, change mask
and map brought onto the x8 grid: the reference bilinear from its valid pixels, classes and validity nearest),
and its x8 output is resampled onto the x6 grid by antialiased bicubic. Both grids subdivide the same LR pixels
(pixel-centre aligned), so the result is registered exactly; what the x8 output holds above the x6 Nyquist
frequency is filtered out, not aliased. Measured against bicubic in docs/model-card.md.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F

from geosr.models.interface import ConditionBatch, SuperResolver, model_inputs


def trained_scale_for(scale: int, scales: tuple[int, ...]) -> int | None:
    """The smallest trained scale above ``scale`` (None: none, or ``scale`` is trained itself)."""
    if not scales or scale in scales:
        return None
    above = [s for s in scales if s > scale]
    return min(above) if above else None


def _to_grid(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Classes or validity on another grid (nearest)."""
    return F.interpolate(t.float(), size=size, mode="nearest").to(t.dtype)


def _valid_only(ref: torch.Tensor, valid: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The reference on another grid from its valid pixels only (no dark fringe where it ends)."""
    w = valid.float()
    num = F.interpolate(ref.float() * w, size=size, mode="bilinear", align_corners=False)
    den = F.interpolate(w, size=size, mode="bilinear", align_corners=False)
    return torch.where(den > 1e-6, num / den.clamp(min=1e-6), torch.zeros_like(num))


class Rescaled:
    """``inner`` at its trained scale ``via``, resampled onto the asked scale (module doc). Every other attribute
    is the wrapped model's; ``scales`` is () (the wrapper answers for the scale it was made for)."""

    scales: tuple[int, ...] = ()

    def __init__(self, inner: SuperResolver, via: int) -> None:
        self.inner = inner
        self.via = via

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (copying, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def inputs(self) -> frozenset[str]:
        return model_inputs(self.inner)

    def __call__(self, batch: ConditionBatch, *, seed: int) -> torch.Tensor:
        s, v = batch.scale, self.via
        h, w = batch.lr.shape[-2:]
        size = (h * v, w * v)
        up = replace(
            batch,
            scale=v,
            ref=_valid_only(batch.ref, batch.ref_valid, size),
            ref_valid=_to_grid(batch.ref_valid, size),
            change=_to_grid(batch.change, size),
            changed=_to_grid(batch.changed, size),
            map=None if batch.map is None else _to_grid(batch.map, size),
            offsets=torch.div(batch.offsets, s, rounding_mode="floor") * v,
        )
        out = self.inner(up, seed=seed)
        return F.interpolate(out.float(), size=(h * s, w * s), mode="bicubic", align_corners=False, antialias=True)

    def describe(self) -> dict:
        d = self.inner.describe() if hasattr(self.inner, "describe") else {"model": self.inner.name}
        return {**d, "rescaled": f"run at x{self.via}, resampled by antialiased bicubic"}
