"""Resampling in model space: separable upsampling kernels (bicubic, Lanczos) applied as two small matrix
products, antialiased downsampling and a separable Gaussian blur.

The upsampling kernels are written by hand because torch has no Lanczos kernel, and one implementation for both
kernels keeps their pixel alignment (pixel centres, like GDAL) and edge handling (replicate) identical.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F


def cubic(t: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    """Keys' cubic convolution kernel (a = -0.5, as GDAL and PIL use)."""
    t = t.abs()
    t2, t3 = t * t, t * t * t
    near = (a + 2) * t3 - (a + 3) * t2 + 1
    far = a * t3 - 5 * a * t2 + 8 * a * t - 4 * a
    return torch.where(t <= 1, near, torch.where(t < 2, far, torch.zeros_like(t)))


def lanczos3(t: torch.Tensor) -> torch.Tensor:
    """Lanczos kernel with 3 lobes."""
    t = t.abs()
    out = torch.sinc(t) * torch.sinc(t / 3)
    return torch.where(t < 3, out, torch.zeros_like(t))


KERNELS = {"bicubic": (cubic, 2), "lanczos": (lanczos3, 3)}


@lru_cache(maxsize=64)
def _matrix(kind: str, n_in: int, scale: int) -> torch.Tensor:
    """(n_in*scale, n_in) float64 interpolation matrix; taps beyond the ends replicate the edge pixel."""
    kernel, support = KERNELS[kind]
    n_out = n_in * scale
    u = (torch.arange(n_out, dtype=torch.float64) + 0.5) / scale - 0.5
    base = torch.floor(u).long()
    taps = base[:, None] + torch.arange(-support + 1, support + 1)[None, :]
    w = kernel(u[:, None] - taps.to(torch.float64))
    w = w / w.sum(dim=1, keepdim=True)
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    m.scatter_add_(1, taps.clamp(0, n_in - 1), w)
    return m


def upsample(x: torch.Tensor, scale: int, kind: str = "bicubic") -> torch.Tensor:
    """Upsample (B, C, h, w) by an integer ``scale`` with a separable kernel, pixel-centre aligned."""
    if kind not in KERNELS:
        raise ValueError(f"unknown kernel {kind!r}")
    my = _matrix(kind, x.shape[-2], scale).to(device=x.device, dtype=torch.float32)
    mx = _matrix(kind, x.shape[-1], scale).to(device=x.device, dtype=torch.float32)
    return torch.einsum("yh,bchw,xw->bcyx", my, x.float(), mx)


def kernel_halo(kind: str) -> int:
    """LR pixels of context the kernel needs so that a window's core matches the whole image."""
    return math.ceil(KERNELS[kind][1])


def downsample(img: torch.Tensor, scale: int, mode: str = "bicubic") -> torch.Tensor:
    """(C, H, W) or (B, C, H, W) -> 1/scale, antialiased (area = box average)."""
    x = img[None] if img.dim() == 3 else img
    h, w = x.shape[-2] // scale, x.shape[-1] // scale
    x = x[..., : h * scale, : w * scale].float()
    if mode == "area":
        y = F.avg_pool2d(x, scale)
    elif mode in ("bilinear", "bicubic"):
        y = F.interpolate(x, size=(h, w), mode=mode, align_corners=False, antialias=True)
    else:
        raise ValueError(f"unknown interpolation {mode!r}")
    return y[0] if img.dim() == 3 else y


def gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Isotropic Gaussian blur of (..., H, W) as two 1-D passes, reflect padding (replicate where the image is
    smaller than the kernel's radius); the shape is kept."""
    size = 2 * int(math.ceil(3 * max(sigma, 1e-3))) + 1
    r = torch.arange(size, dtype=torch.float64) - size // 2
    k = torch.exp(-0.5 * (r / max(sigma, 1e-3)) ** 2)
    k = (k / k.sum()).to(device=img.device, dtype=torch.float32)
    shape = img.shape
    x = img.reshape(-1, 1, *shape[-2:]).float()
    mode = "reflect" if min(shape[-2:]) > size // 2 else "replicate"
    x = F.conv2d(F.pad(x, (size // 2, size // 2, 0, 0), mode=mode), k.view(1, 1, 1, size))
    x = F.conv2d(F.pad(x, (0, 0, size // 2, size // 2), mode=mode), k.view(1, 1, size, 1))
    return x.reshape(shape)
