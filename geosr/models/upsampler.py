"""The learned LR upsampler: bicubic plus a correction computed at the LR's own resolution.

The change-aware U-Net runs on the HR grid, where a window of 256 x 256 HR pixels at x8 holds only 32 x 32 LR
pixels of information: most of its compute goes to pixels that carry none. This module (an EDSR-style stack of
residual blocks at LR resolution, then x2 pixel-shuffle stages) spends its compute where the information is,
as ResDiff (Shang et al., AAAI 2024) does with its CNN prior: it predicts the bulk of the HR image, and the
diffusion model adds what it cannot.

- ``out = bicubic(LR) + correction``; the correction's last layers start at zero, so a fresh upsampler *is*
  bicubic and a model gaining one starts exactly where it was.
- The x2 stages are shared across scales: x2 runs the first, x16 all four; each scale has its own output
  layer. A scale that is not 2, 4, 8 or 16 gets plain bicubic.
- No statistics of the window enter (no normalisation layers, no mean removal), so overlapping windows agree
  away from their borders.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from geosr.models.blocks import conv3x3
from geosr.models.resample import upsample

MAX_STAGES = 4  # x16


class _ResBlock(nn.Module):
    """conv - ReLU - conv with an identity skip; the second conv starts at zero."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.a = conv3x3(channels, channels)
        self.b = conv3x3(channels, channels)
        nn.init.zeros_(self.b.weight)
        nn.init.zeros_(self.b.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(F.relu(self.a(x)))


def stages_for(scale: int) -> int:
    """How many x2 stages make ``scale`` (0: not a power of two the upsampler covers)."""
    n = int(scale).bit_length() - 1
    return n if scale == 1 << n and 1 <= n <= MAX_STAGES else 0


class LearnedUpsampler(nn.Module):
    """(B, C, h, w) LR in model space, integer scale -> (B, C, h*scale, w*scale)."""

    def __init__(self, n_bands: int, channels: int, blocks: int) -> None:
        super().__init__()
        self.head = conv3x3(n_bands, channels)
        self.body = nn.Sequential(*(_ResBlock(channels) for _ in range(blocks)), conv3x3(channels, channels))
        self.stages = nn.ModuleList()
        self.outs = nn.ModuleList()
        c = channels
        for _ in range(MAX_STAGES):
            o = max(16, c // 2)  # the HR-side stages stay narrow: they run on 4x, 16x, ... more pixels
            self.stages.append(nn.Sequential(conv3x3(c, 4 * o), nn.PixelShuffle(2), nn.LeakyReLU(0.1)))
            out = conv3x3(o, n_bands)
            nn.init.zeros_(out.weight)
            nn.init.zeros_(out.bias)
            self.outs.append(out)
            c = o

    def forward(self, lr: torch.Tensor, scale: int) -> torch.Tensor:
        base = upsample(lr, scale, "bicubic")
        n = stages_for(scale)
        if n == 0:
            return base
        h = self.head(lr.to(base.dtype))
        h = h + self.body(h)
        for stage in self.stages[:n]:
            h = stage(h)
        return base + self.outs[n - 1](h).to(base.dtype)
