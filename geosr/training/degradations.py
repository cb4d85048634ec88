"""The LR degradation model for training (Ref-Diff section 3.3) and the papers' plain bicubic protocol.

An HR image ``(C, H, W)`` float tensor with values in [0, 1] becomes an LR image ``(C, H/s, W/s)``:

1. blur at HR: isotropic Gaussian, anisotropic (rotated) Gaussian, or a motion-blur line kernel;
2. resize by 1/s with a randomly chosen interpolation (area, bilinear, bicubic; antialiased);
3. additive Gaussian noise;
4. JPEG compression (8-bit, per image).

Every random draw comes from a :class:`numpy.random.Generator` the caller seeds, so a degradation is
reproducible. The LR keeps the HR's channel count and is clipped to [0, 1]. The ranges of each scale's
preset are in :data:`PRESETS` (the 16x preset is milder: a 16x LR pixel already averages 256 HR pixels).
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from geosr.models.consistency import box_downsample  # noqa: F401 (the LR-consistency operator)
from geosr.models.resample import downsample, gaussian_blur  # noqa: F401 (re-exported)

INTERPOLATIONS = ("area", "bilinear", "bicubic")


@dataclass(frozen=True, kw_only=True)
class DegradationPreset:
    """Ranges of one scale's degradations. Blur sigmas are in LR pixels (multiplied by the scale at HR),
    noise sigma is in [0, 1] units, JPEG quality is the libjpeg 1-100 scale."""

    p_blur: float = 0.8
    p_aniso: float = 0.3  # of the blurred images: anisotropic Gaussian
    p_motion: float = 0.1  # of the blurred images: motion blur
    blur_sigma: tuple[float, float] = (0.1, 0.6)
    motion_length: tuple[float, float] = (0.5, 1.5)  # LR pixels
    p_noise: float = 0.6
    noise_sigma: tuple[float, float] = (0.0, 0.02)
    p_jpeg: float = 0.5
    jpeg_quality: tuple[int, int] = (60, 95)

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[int, DegradationPreset] = {
    2: DegradationPreset(blur_sigma=(0.2, 1.2), noise_sigma=(0.0, 0.03), jpeg_quality=(40, 95)),
    4: DegradationPreset(blur_sigma=(0.15, 0.9), noise_sigma=(0.0, 0.025), jpeg_quality=(50, 95)),
    8: DegradationPreset(),
    16: DegradationPreset(
        p_blur=0.6, blur_sigma=(0.05, 0.4), motion_length=(0.3, 1.0), p_noise=0.5, noise_sigma=(0.0, 0.012),
        p_jpeg=0.4, jpeg_quality=(75, 95),
    ),
}


def preset_for(scale: int) -> DegradationPreset:
    """The preset of ``scale`` (the nearest defined scale for others)."""
    if scale in PRESETS:
        return PRESETS[scale]
    return PRESETS[min(PRESETS, key=lambda s: abs(math.log2(s) - math.log2(max(scale, 1))))]


# ---- kernels ------------------------------------------------------------------------------------------------
def gaussian_kernel(sigma_x: float, sigma_y: float, theta: float = 0.0, size: int | None = None) -> torch.Tensor:
    """A normalized 2-D Gaussian (rotated by ``theta`` radians), odd ``size`` (default 6 sigma + 1)."""
    smax = max(sigma_x, sigma_y, 1e-3)
    if size is None:
        size = 2 * int(math.ceil(3 * smax)) + 1
    r = torch.arange(size, dtype=torch.float64) - size // 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    c, s = math.cos(theta), math.sin(theta)
    u, v = c * xx + s * yy, -s * xx + c * yy
    k = torch.exp(-0.5 * ((u / max(sigma_x, 1e-3)) ** 2 + (v / max(sigma_y, 1e-3)) ** 2))
    return (k / k.sum()).float()


def motion_kernel(length: float, theta: float) -> torch.Tensor:
    """A line of ``length`` pixels at angle ``theta``, anti-aliased, normalized."""
    size = 2 * int(math.ceil(length / 2)) + 3
    r = torch.arange(size, dtype=torch.float64) - size // 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    c, s = math.cos(theta), math.sin(theta)
    along, across = c * xx + s * yy, -s * xx + c * yy
    k = torch.clamp(1 - across.abs(), min=0) * torch.clamp(length / 2 + 0.5 - along.abs(), 0, 1)
    return (k / k.sum()).float()


def convolve(img: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve (C, H, W) with a 2-D kernel, reflect padding (shape kept)."""
    c = img.shape[0]
    kh, kw = kernel.shape
    mode = "reflect" if min(img.shape[-2:]) > max(kh, kw) // 2 else "replicate"
    x = F.pad(img[None].float(), (kw // 2, kw // 2, kh // 2, kh // 2), mode=mode)
    return F.conv2d(x, kernel.to(x)[None, None].expand(c, 1, kh, kw), groups=c)[0]


# ---- resizing -------------------------------------------------------------------------------------------------
def bicubic_degrade(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """The papers' test protocol: antialiased bicubic downsampling (MATLAB ``imresize``-like), clipped."""
    return downsample(hr, scale, "bicubic").clamp(0, 1)


# ---- JPEG -------------------------------------------------------------------------------------------------------
def jpeg(img: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG round trip of a (C, H, W) [0, 1] image at ``quality`` (RGB as one colour image, else per band)."""
    from PIL import Image

    arr = (img.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()

    def roundtrip(a: np.ndarray, mode: str) -> np.ndarray:
        buf = io.BytesIO()
        Image.fromarray(a, mode=mode).save(buf, format="JPEG", quality=int(quality))
        buf.seek(0)
        return np.asarray(Image.open(buf).convert(mode))

    if arr.shape[0] == 3:
        out = roundtrip(np.ascontiguousarray(arr.transpose(1, 2, 0)), "RGB").transpose(2, 0, 1)
    else:
        out = np.stack([roundtrip(np.ascontiguousarray(b), "L") for b in arr])
    return torch.from_numpy(out.astype(np.float32) / 255.0).to(img.device)


# ---- the whole chain -------------------------------------------------------------------------------------------
def degrade(
    hr: torch.Tensor, scale: int, rng: np.random.Generator, preset: DegradationPreset | None = None
) -> tuple[torch.Tensor, dict]:
    """Degrade a (C, H, W) [0, 1] HR image into its (C, H/s, W/s) LR; returns (lr, what was drawn)."""
    p = preset or preset_for(scale)
    info: dict = {}
    x = hr.float()
    if rng.random() < p.p_blur:
        kind = rng.random()
        if kind < p.p_motion:
            length = rng.uniform(*p.motion_length) * scale
            theta = rng.uniform(0, math.pi)
            x = convolve(x, motion_kernel(length, theta))
            info["blur"] = {"kind": "motion", "length": length, "theta": theta}
        elif kind < p.p_motion + p.p_aniso:
            sx, sy = (rng.uniform(*p.blur_sigma) * scale for _ in range(2))
            theta = rng.uniform(0, math.pi)
            x = convolve(x, gaussian_kernel(sx, sy, theta))
            info["blur"] = {"kind": "anisotropic", "sigma": (sx, sy), "theta": theta}
        else:
            s = rng.uniform(*p.blur_sigma) * scale
            x = convolve(x, gaussian_kernel(s, s))
            info["blur"] = {"kind": "isotropic", "sigma": s}
    mode = INTERPOLATIONS[int(rng.integers(len(INTERPOLATIONS)))]
    x = downsample(x, scale, mode)
    info["resize"] = mode
    if rng.random() < p.p_noise:
        sigma = rng.uniform(*p.noise_sigma)
        noise = torch.from_numpy(rng.standard_normal(x.shape).astype(np.float32))
        x = x + sigma * noise
        info["noise"] = sigma
    x = x.clamp(0, 1)
    if rng.random() < p.p_jpeg:
        q = int(rng.integers(p.jpeg_quality[0], p.jpeg_quality[1] + 1))
        x = jpeg(x, q)
        info["jpeg"] = q
    return x, info


__all__ = [
    "DegradationPreset",
    "PRESETS",
    "preset_for",
    "degrade",
    "bicubic_degrade",
    "box_downsample",
    "downsample",
    "gaussian_blur",
    "gaussian_kernel",
    "motion_kernel",
    "jpeg",
]
