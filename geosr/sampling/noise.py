"""Geo-seeded noise: every value is a pure function of (seed, stream, channel, global HR row, column).

Two overlapping windows of one scene therefore receive identical noise where they overlap, and a re-run
over a sub-area reproduces the noise of the full run. There is no generator state.

The hash is a chain of murmur3 ``fmix32`` finalizers over the 32-bit words of the key (carried in int64
tensors, masked to 32 bits after every multiply, so results are exact and the same on every device);
two hash lanes give two uniforms that Box-Muller turns into one standard normal value. Values are
computed on the CPU in float64 and rounded to float32, then moved to the requested device.
"""

from __future__ import annotations

import math

import torch

MASK = 0xFFFFFFFF
GOLDEN = 0x9E3779B1


def _fmix_int(h: int) -> int:
    h &= MASK
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & MASK
    h ^= h >> 16
    return h


def _mix_int(h: int, v: int) -> int:
    return _fmix_int(h ^ ((v * GOLDEN) & MASK))


def _fmix(h: torch.Tensor) -> torch.Tensor:
    h = h ^ (h >> 16)
    h = (h * 0x85EBCA6B) & MASK
    h = h ^ (h >> 13)
    h = (h * 0xC2B2AE35) & MASK
    return h ^ (h >> 16)


def _mix(h: torch.Tensor | int, v: torch.Tensor) -> torch.Tensor:
    return _fmix((h ^ ((v * GOLDEN) & MASK)) & MASK)


def key_prefix(seed: int, stream: int, channel: int) -> int:
    """The hash state after the (seed, stream, channel) words; seeds may be any Python int up to 64 bits."""
    seed &= (1 << 64) - 1
    h = _fmix_int(0x2545F491)
    for word in (seed & MASK, seed >> 32, stream, channel):
        h = _mix_int(h, word)
    return h


def _uniform_pair(h_rc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    h1 = _mix(h_rc, torch.tensor(1, dtype=torch.int64))
    h2 = _mix(h_rc, torch.tensor(2, dtype=torch.int64))
    u1 = (h1.double() + 0.5) / 2.0**32  # (0, 1): log is finite
    u2 = h2.double() / 2.0**32
    return u1, u2


def noise_block(seed: int, stream: int, channel: int, row0: int, col0: int, height: int, width: int) -> torch.Tensor:
    """(height, width) float32 N(0, 1) values of one channel whose top-left pixel is at global (row0, col0)."""
    rows = torch.arange(row0, row0 + height, dtype=torch.int64) & MASK
    cols = torch.arange(col0, col0 + width, dtype=torch.int64) & MASK
    h_r = _mix(key_prefix(seed, stream, channel), rows)  # (H,)
    h_rc = _mix(h_r[:, None], cols[None, :])  # (H, W)
    u1, u2 = _uniform_pair(h_rc)
    z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)
    return z.float()


def geo_noise(
    seed: int,
    offsets: torch.Tensor,
    shape: tuple[int, int, int],
    *,
    stream: int = 0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """(B, C, H, W) standard normal noise for windows whose top-left HR pixels are ``offsets`` (B, 2) as
    global (row, col). ``stream`` separates independent draws (0: the initial noise, i: the churn of
    step i)."""
    c, h, w = shape
    offs = [(int(r), int(col)) for r, col in torch.as_tensor(offsets).reshape(-1, 2).tolist()]
    out = torch.empty(len(offs), c, h, w, dtype=torch.float32)
    for b, (r, col) in enumerate(offs):
        for ch in range(c):
            out[b, ch] = noise_block(seed, stream, ch, r, col, h, w)
    return out if device is None else out.to(device)


class GeoNoise:
    """``noise(stream)`` -> (B, C, H, W) geo-seeded noise for a fixed batch of windows (the sampler's
    noise source)."""

    def __init__(self, seed: int, offsets: torch.Tensor, shape: tuple[int, int, int], device=None, dtype=torch.float32):
        self.seed = int(seed)
        self.offsets = torch.as_tensor(offsets).reshape(-1, 2).cpu()
        self.shape = tuple(shape)
        self.device = device
        self.dtype = dtype

    def __call__(self, stream: int) -> torch.Tensor:
        z = geo_noise(self.seed, self.offsets, self.shape, stream=stream)
        return z.to(device=self.device, dtype=self.dtype)
