"""Synthetic change pairs from a single HR image.

Real bi-temporal pairs are scarce, so geosr makes its own: the HR image is the *target* date, and its
*reference* is the same image

1. with part of its fine detail replaced by another place's (``detail_corr`` < 1: a real reference date has
   other shadows, other crop texture, other cars, so its detail only partly matches the target's),
2. shifted radiometrically / seasonally (per-band gain, bias and gamma, a saturation change and a smooth
   illumination gradient),
3. misregistered by a sub-pixel (up to a few HR pixels) translation and, with ``warp`` > 0, a smooth local
   displacement field (building parallax, orthorectification error), and
4. with foreign patches pasted in (rectangles and ellipses cut from another image, or from a far part of
   the same one).

The change mask is exactly the set of pasted pixels (the pasting is the last step, so nothing moves them).
All draws come from the caller's :class:`numpy.random.Generator`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from geosr.training.degradations import gaussian_blur


@dataclass(frozen=True, kw_only=True)
class SyntheticChangeConfig:
    """Ranges of the synthetic reference (values in [0, 1] units, shifts in HR pixels)."""

    gain: tuple[float, float] = (0.8, 1.2)
    bias: tuple[float, float] = (-0.08, 0.08)
    gamma: tuple[float, float] = (0.8, 1.25)
    saturation: tuple[float, float] = (0.7, 1.3)
    gradient: float = 0.08  # peak amplitude of the smooth illumination field
    max_shift: float = 2.0  # misregistration, HR pixels
    patches: tuple[int, int] = (0, 4)  # number of pasted patches (inclusive)
    patch_frac: tuple[float, float] = (0.1, 0.4)  # patch side as a fraction of the image side
    p_ellipse: float = 0.5
    # detail_corr and warp are off by default (the reference's detail is the target's); the default model's
    # recipe turns both on.
    detail_corr: tuple[float, float] = (1.0, 1.0)  # correlation of the reference's fine detail with the target's
    # LR pixels: "fine detail" is the image minus its Gaussian blur of this sigma. Above ~1 a mismatch shows at
    # LR scale, so a model can tell a matching reference from another (at 0.5 it learned to distrust all).
    detail_sigma: float = 1.5
    warp: float = 0.0  # HR pixels: peak of the smooth local displacement field

    def to_dict(self) -> dict:
        return asdict(self)


def radiometric_shift(img: torch.Tensor, rng: np.random.Generator, cfg: SyntheticChangeConfig) -> torch.Tensor:
    """Seasonal / illumination change of a (C, H, W) [0, 1] image."""
    c, h, w = img.shape
    gain = torch.tensor(rng.uniform(*cfg.gain, size=c), dtype=torch.float32)[:, None, None]
    bias = torch.tensor(rng.uniform(*cfg.bias, size=c), dtype=torch.float32)[:, None, None]
    gamma = torch.tensor(rng.uniform(*cfg.gamma, size=c), dtype=torch.float32)[:, None, None]
    x = img.float().clamp(0, 1) ** gamma
    if c >= 3:
        grey = x.mean(dim=0, keepdim=True)
        x = grey + float(rng.uniform(*cfg.saturation)) * (x - grey)
    x = x * gain + bias
    if cfg.gradient > 0:
        yy = torch.linspace(-1, 1, h)[:, None]
        xx = torch.linspace(-1, 1, w)[None, :]
        a, b, ph = rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(0, 2 * math.pi)
        field = torch.sin(math.pi * 0.5 * (a * xx + b * yy) + ph)
        x = x + cfg.gradient * float(rng.uniform(0, 1)) * field
    return x.clamp(0, 1)


def subpixel_shift(img: torch.Tensor, dy: float | torch.Tensor, dx: float | torch.Tensor) -> torch.Tensor:
    """Translate a (C, H, W) image by (dy, dx) pixels (bilinear, border-replicated): scalars, or (H, W) fields
    of per-pixel displacements."""
    c, h, w = img.shape
    if not torch.is_tensor(dy) and not torch.is_tensor(dx) and abs(dy) < 1e-9 and abs(dx) < 1e-9:
        return img.float().clone()
    theta = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float32)
    grid = F.affine_grid(theta[None], (1, c, h, w), align_corners=False)
    # content moves by +d, so each output pixel samples the input at -d (normalized units: 2 / size per pixel)
    offset = torch.stack(torch.broadcast_tensors(torch.as_tensor(-2.0 * dx / w), torch.as_tensor(-2.0 * dy / h)), -1)
    return F.grid_sample(img[None].float(), grid + offset.float(), mode="bilinear", padding_mode="border",
                         align_corners=False)[0]


def smooth_field(h: int, w: int, amplitude: float, rng: np.random.Generator, knots: int = 4) -> torch.Tensor:
    """An (h, w) smooth random displacement field (a ``knots`` x ``knots`` random grid, bicubically
    interpolated) whose peak magnitude is ``amplitude``."""
    g = torch.from_numpy(rng.standard_normal((1, 1, knots, knots)).astype(np.float32))
    f = F.interpolate(g, size=(h, w), mode="bicubic", align_corners=True)[0, 0]
    return f * (amplitude / f.abs().max().clamp(min=1e-6))


def fine_detail(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """The image minus its Gaussian blur of ``sigma`` pixels."""
    return img - gaussian_blur(img, sigma)


def mix_detail(img: torch.Tensor, other: torch.Tensor, corr: float, sigma: float) -> torch.Tensor:
    """``img`` with its fine detail d replaced by corr * d + sqrt(1 - corr^2) * (``other``'s fine detail):
    for detail of equal variance, the result's detail has that variance and correlation ``corr`` with d."""
    d, e = fine_detail(img.float(), sigma), fine_detail(other.float(), sigma)
    return img.float() - d + corr * d + math.sqrt(max(0.0, 1.0 - corr * corr)) * e


def patch_mask(h: int, w: int, top: int, left: int, ph: int, pw: int, ellipse: bool) -> torch.Tensor:
    """Boolean (h, w) mask of a rectangle or the ellipse inscribed in it."""
    m = torch.zeros(h, w, dtype=torch.bool)
    if not ellipse:
        m[top : top + ph, left : left + pw] = True
        return m
    yy = (torch.arange(ph, dtype=torch.float32) + 0.5 - ph / 2) / (ph / 2)
    xx = (torch.arange(pw, dtype=torch.float32) + 0.5 - pw / 2) / (pw / 2)
    inside = (yy[:, None] ** 2 + xx[None, :] ** 2) <= 1.0
    m[top : top + ph, left : left + pw] = inside
    return m


def synthetic_reference(
    hr: torch.Tensor,
    rng: np.random.Generator,
    foreign: list[torch.Tensor] | None = None,
    cfg: SyntheticChangeConfig | None = None,
    scale: int = 8,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(reference (C, H, W), change mask (H, W) bool) for a (C, H, W) [0, 1] target image ``hr``.

    ``foreign``: images (C, h, w) to cut patches (and other detail) from; without any, they come from the
    target itself (from a position at least a patch away, so the content differs). ``scale``: the SR factor
    (``detail_sigma`` is in LR pixels).
    """
    cfg = cfg or SyntheticChangeConfig()
    c, h, w = hr.shape
    ref = hr.float()
    if cfg.detail_corr[0] < 1.0:
        corr = float(rng.uniform(*cfg.detail_corr))
        pool = [f for f in (foreign or []) if f.shape[0] == c and f.shape[1] >= h and f.shape[2] >= w]
        if pool:
            src = pool[int(rng.integers(len(pool)))]
            sy, sx = int(rng.integers(0, src.shape[1] - h + 1)), int(rng.integers(0, src.shape[2] - w + 1))
            other = src[:, sy : sy + h, sx : sx + w]
        else:
            other = torch.roll(hr, (h // 2, w // 2), (1, 2))
        ref = mix_detail(ref, other, corr, cfg.detail_sigma * scale).clamp(0, 1)
    ref = radiometric_shift(ref, rng, cfg)
    dy, dx = rng.uniform(-cfg.max_shift, cfg.max_shift, size=2)
    if cfg.warp > 0:
        amp = cfg.warp * float(rng.uniform(0, 1))
        ref = subpixel_shift(ref, float(dy) + smooth_field(h, w, amp, rng), float(dx) + smooth_field(h, w, amp, rng))
    else:
        ref = subpixel_shift(ref, float(dy), float(dx))
    mask = torch.zeros(h, w, dtype=torch.bool)
    n = int(rng.integers(cfg.patches[0], cfg.patches[1] + 1))
    for _ in range(n):
        ph = max(2, int(round(h * rng.uniform(*cfg.patch_frac))))
        pw = max(2, int(round(w * rng.uniform(*cfg.patch_frac))))
        top, left = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
        pool = [f for f in (foreign or []) if f.shape[0] == c and f.shape[1] >= ph and f.shape[2] >= pw]
        if pool:
            src = pool[int(rng.integers(len(pool)))]
            sy, sx = int(rng.integers(0, src.shape[1] - ph + 1)), int(rng.integers(0, src.shape[2] - pw + 1))
        else:
            src = hr
            sy = (top + h // 2 + int(rng.integers(0, max(1, h // 4)))) % max(1, h - ph + 1)
            sx = (left + w // 2 + int(rng.integers(0, max(1, w // 4)))) % max(1, w - pw + 1)
        piece = src[:, sy : sy + ph, sx : sx + pw].float()
        m = patch_mask(h, w, top, left, ph, pw, bool(rng.random() < cfg.p_ellipse))
        canvas = torch.zeros_like(ref)
        canvas[:, top : top + ph, left : left + pw] = piece
        ref = torch.where(m[None], canvas, ref)
        mask |= m
    return ref, mask


__all__ = [
    "SyntheticChangeConfig", "synthetic_reference", "radiometric_shift", "subpixel_shift", "smooth_field",
    "fine_detail", "mix_detail", "patch_mask",
]
