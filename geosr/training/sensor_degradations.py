"""How real LR images are made, for the backbone: four named degradations (the benchmark's) and a blind mix of
them (training).

Real LR (Sentinel-2, Landsat) comes with a sensor PSF, not with a resize kernel, so a model trained on one kernel
only is tied to it. The named degradations of a (B, C, H, W) [0, 1] HR batch at integer ``scale``:

- ``bicubic``: antialiased bicubic (MATLAB ``imresize``, PIL), the papers' protocol;
- ``bicubic-noaa``: bicubic without antialiasing (OpenCV's ``resize``): the kernel is not widened, so it aliases;
- ``box``: the mean of each scale x scale block (a perfect square detector);
- ``gaussian``: a Gaussian PSF whose MTF is 0.3 at the LR's Nyquist frequency (sigma = 0.494 LR pixels =
  0.494 * scale HR pixels), then point sampling at each LR pixel's centre (bilinear for even scales, whose
  centres fall between HR pixels).

:func:`blind_degrade` draws one per image with a random PSF width, a sub-pixel shift, noise and JPEG.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from geosr.models.resample import downsample, gaussian_blur
from geosr.training.degradations import jpeg

# Gaussian PSF with MTF(f) = exp(-2 pi^2 sigma^2 f^2) = 0.3 at f = 1 / (2 LR px): sigma in LR pixels.
MTF30_SIGMA = math.sqrt(2 * math.log(1 / 0.3)) / math.pi
NAMED = ("bicubic", "gaussian", "bicubic-noaa", "box")


def sample_centres(x: torch.Tensor, scale: int, shift: tuple[float, float] = (0.0, 0.0)) -> torch.Tensor:
    """Point-sample (B, C, H, W) at the centres of a grid ``scale`` times coarser, moved by ``shift`` (dy, dx)
    HR pixels (bilinear between HR pixels, edges replicated)."""
    b, _, hh, ww = x.shape
    h, w = hh // scale, ww // scale
    ys = (torch.arange(h, dtype=torch.float64) + 0.5) * scale - 0.5 + shift[0]
    xs = (torch.arange(w, dtype=torch.float64) + 0.5) * scale - 0.5 + shift[1]
    gy = (2 * ys + 1) / hh - 1  # grid_sample's align_corners=False coordinates
    gx = (2 * xs + 1) / ww - 1
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1).float()
    return F.grid_sample(x.float(), grid[None].expand(b, -1, -1, -1).to(x.device), mode="bilinear",
                         padding_mode="border", align_corners=False)


def gaussian_psf(x: torch.Tensor, scale: int, sigma_lr: float = MTF30_SIGMA,
                 shift: tuple[float, float] = (0.0, 0.0)) -> torch.Tensor:
    """Gaussian PSF of ``sigma_lr`` LR pixels, then point sampling (module doc)."""
    return sample_centres(gaussian_blur(x, sigma_lr * scale), scale, shift)


def degrade_named(hr: torch.Tensor, scale: int, kind: str) -> torch.Tensor:
    """One of :data:`NAMED` applied to a (B, C, H, W) or (C, H, W) [0, 1] image, clipped to [0, 1]."""
    x = hr[None] if hr.dim() == 3 else hr
    x = x[..., : x.shape[-2] // scale * scale, : x.shape[-1] // scale * scale].float()
    if kind == "bicubic":
        y = downsample(x, scale, "bicubic")
    elif kind == "bicubic-noaa":
        y = F.interpolate(x, scale_factor=1 / scale, mode="bicubic", align_corners=False, antialias=False)
    elif kind == "box":
        y = F.avg_pool2d(x, scale)
    elif kind == "gaussian":
        y = gaussian_psf(x, scale)
    else:
        raise ValueError(f"unknown degradation {kind!r}: use one of {', '.join(NAMED)}")
    y = y.clamp(0, 1)
    return y[0] if hr.dim() == 3 else y


# the blind mix's share of each family of LR formation
BLIND_SHARES = {"bicubic": 0.25, "bicubic-noaa": 0.15, "box": 0.15, "gaussian": 0.45}


def blind_degrade(hr: torch.Tensor, scale: int, rng: np.random.Generator,
                  kinds: tuple[str, ...] | dict[str, float] | None = None) -> tuple[torch.Tensor, dict]:
    """A (C, H, W) [0, 1] HR image degraded by a random draw covering real sensors (module doc); ``kinds``
    restricts the draw to those families (of :data:`NAMED`), in the blind mix's proportions, or (a mapping)
    draws them in the proportions given."""
    x = hr[None].float()
    if unknown := set(kinds or ()) - set(NAMED):
        raise ValueError(f"unknown degradation {sorted(unknown)[0]!r}: use some of {', '.join(NAMED)}")
    shares = dict(kinds) if isinstance(kinds, dict) else {k: v for k, v in BLIND_SHARES.items()
                                                          if not kinds or k in kinds}
    order = [k for k in BLIND_SHARES if shares.get(k, 0) > 0]
    if not order:
        raise ValueError("the degradation shares must not all be zero")
    cum = np.cumsum([shares[k] for k in order])
    kind = order[min(int(np.searchsorted(cum / cum[-1], rng.random(), side="right")), len(order) - 1)]
    info: dict = {}
    if kind != "gaussian":
        y = degrade_named(x, scale, kind)
        info["kind"] = kind
    else:  # sensor-like PSFs, from sharp (aliasing) to soft, sampled with a small misregistration
        sigma = float(rng.uniform(0.3, 0.7))
        shift = (float(rng.uniform(-0.25, 0.25)), float(rng.uniform(-0.25, 0.25)))
        y = gaussian_psf(x, scale, sigma, shift)
        info.update(kind="gaussian", sigma_lr=sigma, shift_hr=shift)
    y = y[0]
    if rng.random() < 0.3:
        sigma = float(rng.uniform(0.0, 0.01))
        y = y + sigma * torch.from_numpy(rng.standard_normal(y.shape).astype(np.float32))
        info["noise"] = sigma
    y = y.clamp(0, 1)
    if rng.random() < 0.15:
        q = int(rng.integers(75, 96))
        y = jpeg(y, q)
        info["jpeg"] = q
    return y, info
