"""Reference detail injection: the reference's fine detail, added where the LR shows that it matches.

A super-resolver cannot see detail finer than the LR's pixels; the reference can, but an earlier date
matches the target only in parts (other shadows, textures, parallax). This step estimates how far to trust
the reference the way pansharpening estimates its injection gains (the reference plays the panchromatic
band): at LR scale, where the truth is known, the LR's own detail is regressed locally on the reference's
detail. The regression coefficient, shrunk by the local correlation, weights the reference's detail above
the LR's Nyquist frequency, which then replaces the SR's own in unchanged areas:

    sr + g · ρ · u · (highpass(ref') − highpass(sr)),   highpass(x) = x − up(down(x))

with u the usable pixels (reference present, not changed) and ref' the reference where it has data, the SR
where it has none.

Nothing is learned, so it adds no weights; it is written here because no library does context-adaptive
detail injection on torch tensors with a change mask. Where the reference does not match (ρ ≈ 0) the SR is
left as it is; changed pixels and pixels without a reference are never touched. It works on each window of
the pipeline (the neighbourhood is clipped to the window) and comes before LR-consistency, whose
back-projection then removes the little energy the step leaks below the LR's Nyquist frequency.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from geosr.models.interface import ConditionBatch, SuperResolver, model_inputs
from geosr.models.resample import downsample, gaussian_blur, upsample

DEFAULT_SIGMA = 8.0  # LR pixels; chosen on the training split (docs/model-card.md)
DETAIL_SIGMA = 1.0  # LR pixels: "detail" at LR scale is the image minus this Gaussian blur
EPS = 1e-4  # model space (about [-1, 1]): keeps the gain finite on flat ground


def highpass(x: torch.Tensor, scale: int) -> torch.Tensor:
    """The part of (B, C, H, W) above the Nyquist frequency of the grid ``scale`` times coarser."""
    return x - upsample(downsample(x, scale, "bicubic"), scale, "bicubic")


def injection_weight(
    lr: torch.Tensor, ref_lr: torch.Tensor, sigma: float, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Per LR pixel, how much of the reference's detail to take: the local regression coefficient of the LR's
    detail on the reference's (band means, Gaussian neighbourhood of ``sigma`` LR px) times their local
    correlation, both clipped to [0, 1]. (B, C, h, w) twice -> (B, 1, h, w). ``weight`` (B, 1, h, w), each LR
    pixel's weight in the local statistics (the share of it where the reference has data), defaults to 1."""
    dl = (lr - gaussian_blur(lr, DETAIL_SIGMA)).mean(1, keepdim=True)
    dr = (ref_lr - gaussian_blur(ref_lr, DETAIL_SIGMA)).mean(1, keepdim=True)
    m = torch.ones_like(dl) if weight is None else weight
    norm = gaussian_blur(m, sigma).clamp(min=1e-6)
    cov, var_r, var_l = (gaussian_blur(m * a * b, sigma) / norm for a, b in ((dl, dr), (dr, dr), (dl, dl)))
    gain = (cov / (var_r + EPS)).clamp(0, 1)
    rho = (cov / (var_r * var_l + EPS * EPS).sqrt()).clamp(0, 1)
    return gain * rho


def inject_reference_detail(sr: torch.Tensor, batch: ConditionBatch, sigma: float = DEFAULT_SIGMA) -> torch.Tensor:
    """``sr`` (B, C, H, W, model space) with the reference's detail put in where it matches (module doc)."""
    s = batch.scale
    if not bool(batch.ref_valid.any()):
        return sr
    valid = batch.ref_valid.to(sr)
    # Where the reference has no data the SR stands in, so that its nodata edge does not leak into the detail
    # of the pixels next to it; the gain is estimated over the valid pixels only (the stand-in would agree
    # with the LR by construction). Changed areas keep the reference's content: their disagreement with the
    # LR lowers the gain around them, which measured safer than standing in there too (docs/model-card.md).
    ref = valid * batch.ref.to(sr) + (1 - valid) * sr
    w = injection_weight(batch.lr.to(sr), downsample(ref, s, "bicubic"), sigma, downsample(valid, s, "area"))
    w = F.interpolate(w, size=sr.shape[-2:], mode="bilinear", align_corners=False)
    usable = valid * (1 - batch.changed.to(sr))
    return sr + w * usable * (highpass(ref, s) - highpass(sr, s))


class ReferenceDetail:
    """A super-resolver whose output gets the reference's matching detail (:func:`inject_reference_detail`).

    Every other attribute (scales, bands, halo, class counts, spec, ...) is the wrapped model's.
    """

    def __init__(self, inner: SuperResolver, sigma: float = DEFAULT_SIGMA) -> None:
        self.inner = inner
        self.sigma = sigma

    def __getattr__(self, name: str):
        if name == "inner":  # not set yet (copying, unpickling): no endless recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def inputs(self) -> frozenset[str]:
        """The wrapped model's conditioning inputs, and the reference and change mask this step reads."""
        return model_inputs(self.inner) | {"ref", "cd"}

    def __call__(self, batch: ConditionBatch, *, seed: int) -> torch.Tensor:
        out = self.inner(batch, seed=seed)
        return inject_reference_detail(out, batch.to(out.device), self.sigma)

    def describe(self) -> dict:
        d = self.inner.describe() if hasattr(self.inner, "describe") else {"model": self.inner.name}
        return {**d, "reference_detail": f"injection, sigma {self.sigma:g} LR px"}
