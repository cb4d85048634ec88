"""LR-consistency: make an SR output agree with its LR when box-averaged back to the LR grid."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from geosr.models.interface import ConditionBatch, SuperResolver
from geosr.models.resample import upsample


def box_downsample(img: torch.Tensor, scale: int) -> torch.Tensor:
    """Box average over ``scale`` x ``scale`` blocks of (..., H, W) (the LR-consistency operator)."""
    shape = img.shape
    x = img.reshape(-1, 1, shape[-2], shape[-1]).float()
    return F.avg_pool2d(x, scale).reshape(*shape[:-2], shape[-2] // scale, shape[-1] // scale)


def back_project(sr: torch.Tensor, lr: torch.Tensor, scale: int, iterations: int = 6) -> torch.Tensor:
    """Replace the SR's box-downsampled (low-frequency) component by the LR's: iterated back-projection
    ``sr += bicubic_up(lr - box_down(sr))``, then one exact step with the (by then tiny) residual spread
    evenly over each LR pixel's block; (B, C, H, W) and (B, C, H/s, W/s) in model space."""
    x = sr.float()
    for _ in range(iterations):
        x = x + upsample(lr.float() - box_downsample(x, scale), scale, "bicubic")
    res = lr.float() - box_downsample(x, scale)
    return x + res.repeat_interleave(scale, -2).repeat_interleave(scale, -1)


class LRConsistent:
    """A super-resolver whose output is made consistent with its LR by :func:`back_project`.

    Every other attribute (scales, bands, halo, class counts, spec, ...) is the wrapped model's.
    """

    def __init__(self, inner: SuperResolver, iterations: int = 6) -> None:
        self.inner = inner
        self.iterations = iterations

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def __call__(self, batch: ConditionBatch, *, seed: int) -> torch.Tensor:
        out = self.inner(batch, seed=seed)
        return back_project(out, batch.lr.to(out.device), batch.scale, self.iterations)

    def describe(self) -> dict:
        d = self.inner.describe() if hasattr(self.inner, "describe") else {"model": self.inner.name}
        return {**d, "lr_consistency": f"back-projection x{self.iterations}"}
