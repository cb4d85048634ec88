"""LR-consistency: make an SR output agree with its LR when taken back to the LR grid.

Two operators take the SR back to the LR grid:

- ``box``: the average over each LR pixel's block. The SR aggregated to the LR grid then equals the LR
  exactly (radiometry is conserved pixel by pixel), whatever made the LR.
- ``bicubic``: antialiased bicubic downsampling (:func:`geosr.models.resample.downsample`), the degradation
  of geosr's ``bicubic`` training samples and of the papers' test protocol (``geosr evaluate``'s LR): a wider,
  smoother point-spread function than the box, closer to a sensor's. The box average of the result then
  agrees with the LR closely but not exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from geosr.config import BACK_PROJECTION_OPERATORS as OPERATORS
from geosr.errors import OptionError
from geosr.models.interface import ConditionBatch, SuperResolver
from geosr.models.resample import downsample, upsample

ITERATIONS = {"box": 6, "bicubic": 10}  # bicubic has no exact last step: 10 rounds leave ~3e-4 RMS (model space)


def _check(operator: str) -> None:
    if operator not in OPERATORS:
        raise OptionError(f"LR-consistency operator is one of {', '.join(OPERATORS)}, not {operator!r}")


def box_downsample(img: torch.Tensor, scale: int) -> torch.Tensor:
    """Box average over ``scale`` x ``scale`` blocks of (..., H, W) (the LR-consistency metric's operator), in
    float32, or in float64 when given it (the metric: an output that averages to its LR exactly scored 143 dB, not
    infinite; found in review)."""
    shape = img.shape
    x = img.reshape(-1, 1, shape[-2], shape[-1])
    x = x if x.dtype == torch.float64 else x.float()
    return F.avg_pool2d(x, scale).reshape(*shape[:-2], shape[-2] // scale, shape[-1] // scale)


def back_project(sr: torch.Tensor, lr: torch.Tensor, scale: int, iterations: int | None = None,
                 operator: str = "box") -> torch.Tensor:
    """Replace the SR's low-frequency component, as ``operator`` sees it, by the LR's: iterated back-projection
    ``sr += bicubic_up(lr - down(sr))``; for ``box`` then one exact step with the (by then tiny) residual spread
    evenly over each LR pixel's block. (B, C, H, W) and (B, C, H/s, W/s) in model space."""
    _check(operator)
    down = box_downsample if operator == "box" else (lambda t, s: downsample(t, s, "bicubic"))
    x = sr.float()
    for _ in range(ITERATIONS[operator] if iterations is None else iterations):
        x = x + upsample(lr.float() - down(x, scale), scale, "bicubic")
    if operator == "box":
        res = lr.float() - box_downsample(x, scale)
        x = x + res.repeat_interleave(scale, -2).repeat_interleave(scale, -1)
    return x


class LRConsistent:
    """A super-resolver whose output is made consistent with its LR by :func:`back_project`.

    Every other attribute (scales, bands, halo, class counts, spec, ...) is the wrapped model's.
    """

    def __init__(self, inner: SuperResolver, iterations: int | None = None, operator: str = "box") -> None:
        _check(operator)
        self.inner = inner
        self.operator = operator
        self.iterations = ITERATIONS[operator] if iterations is None else iterations

    def __getattr__(self, name: str):
        if name == "inner":  # not set yet (copying, unpickling): no endless recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __call__(self, batch: ConditionBatch, *, seed: int) -> torch.Tensor:
        out = self.inner(batch, seed=seed)
        return back_project(out, batch.lr.to(out.device), batch.scale, self.iterations, self.operator)

    def describe(self) -> dict:
        d = self.inner.describe() if hasattr(self.inner, "describe") else {"model": self.inner.name}
        return {**d, "lr_consistency": f"back-projection ({self.operator}) x{self.iterations}"}
