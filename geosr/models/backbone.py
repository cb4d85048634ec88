"""The LR-space backbone: an efficient single-image super-resolver that works at the LR's own resolution.

Written for geosr from the SAFMN paper (Sun et al., "Spatially-Adaptive Feature Modulation for Efficient Image
Super-Resolution", ICCV 2023), so that its public x4 weights (Apache-2.0) can start our training
(``scripts/convert_safmn.py``); the network is geosr's own code:

- ``head``: a 3x3 conv from the bands to ``dim`` features;
- ``blocks`` x [feature modulation, channel mixer], each with an identity skip. The modulation splits the
  features into ``levels`` groups: group 0 gets a depthwise 3x3 conv at full resolution, group i > 0 is max-pooled
  by 2^(i+1), gets a depthwise 3x3 conv there and is brought back by nearest-neighbour; a 1x1 conv mixes the
  groups, and GELU of that multiplies the features. The channel mixer is conv3x3 (x ``ffn`` channels) - GELU -
  conv1x1;
- one ``tail`` per scale: a 3x3 conv to ``bands * s * s`` channels and a pixel shuffle, added to the bilinear
  upsampling of the LR.

Differences from SAFMN's challenge network, for tiling: no GRN layer (it divides by statistics of the whole
image, so a window would not see what the full scene sees; the converter folds it into ``head`` with its mean
statistic), and pooling with a fixed kernel and stride (``ceil_mode``) instead of adaptive pooling to a size that
depends on the window. A window whose LR origin is a multiple of :data:`ALIGN` pixels pools on the same grid as
the whole scene, so away from its border it computes what the whole scene computes (see ``tests``).

Inputs and outputs are in geosr's model space (about [-1, 1]); the network itself works on [0, 1] values,
the range its initial weights were trained on: its features see the input clipped to that range (the bilinear
base keeps the full range).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class BackboneConfig:
    """The backbone's shape (every field is in the checkpoint's ``arch``)."""

    name: str = "lr-backbone"
    n_bands: int = 3
    dim: int = 36
    blocks: int = 8
    ffn: float = 2.0
    levels: int = 4
    scales: tuple[int, ...] = field(default=(2, 4, 8, 16))

    def __post_init__(self) -> None:
        if self.dim % self.levels:
            raise ValueError(f"dim {self.dim} is not a multiple of levels {self.levels}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["kind"] = "backbone"
        d["scales"] = list(self.scales)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "BackboneConfig":
        keys = set(cls.__dataclass_fields__)
        kw = {k: v for k, v in d.items() if k in keys}
        if "scales" in kw:
            kw["scales"] = tuple(int(s) for s in kw["scales"])
        return cls(**kw)

    @property
    def align(self) -> int:
        """LR pixels a window's origin must be a multiple of to pool on the scene's grid."""
        return 2 ** self.levels if self.levels > 1 else 1


ALIGN = BackboneConfig().align


def _pool_up(x: torch.Tensor, k: int, conv: nn.Module) -> torch.Tensor:
    """Max-pool by ``k`` (fixed grid from the top-left; partial cells at the end), conv, nearest back."""
    h, w = x.shape[-2:]
    s = conv(F.max_pool2d(x, k, k, ceil_mode=True))
    s = s.repeat_interleave(k, dim=-2).repeat_interleave(k, dim=-1)
    return s[..., :h, :w]


class FeatureModulation(nn.Module):
    """Multi-scale spatially adaptive modulation (module doc)."""

    def __init__(self, dim: int, levels: int) -> None:
        super().__init__()
        self.levels = levels
        c = dim // levels
        self.mfr = nn.ModuleList(nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=False) for _ in range(levels))
        self.aggr = nn.Conv2d(dim, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = x.chunk(self.levels, dim=1)
        out = [self.mfr[0](parts[0])]
        out += [_pool_up(parts[i], 2 ** (i + 1), self.mfr[i]) for i in range(1, self.levels)]
        return F.gelu(self.aggr(torch.cat(out, dim=1))) * x


class ChannelMixer(nn.Module):
    def __init__(self, dim: int, ffn: float) -> None:
        super().__init__()
        hidden = int(dim * ffn)
        self.expand = nn.Conv2d(dim, hidden, 3, 1, 1, bias=False)
        self.reduce = nn.Conv2d(hidden, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduce(F.gelu(self.expand(x)))


class Block(nn.Module):
    def __init__(self, dim: int, ffn: float, levels: int) -> None:
        super().__init__()
        self.modulation = FeatureModulation(dim, levels)
        self.mixer = ChannelMixer(dim, ffn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.modulation(x)
        return x + self.mixer(x)


class LRBackbone(nn.Module):
    """(B, bands, h, w) LR in model space, scale -> (B, bands, h*scale, w*scale) in model space."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.head = nn.Conv2d(cfg.n_bands, cfg.dim, 3, 1, 1)
        self.body = nn.Sequential(*(Block(cfg.dim, cfg.ffn, cfg.levels) for _ in range(cfg.blocks)))
        self.tails = nn.ModuleDict({str(s): nn.Conv2d(cfg.dim, cfg.n_bands * s * s, 3, 1, 1) for s in cfg.scales})
        for tail in self.tails.values():  # a scale without trained weights starts as bilinear
            nn.init.zeros_(tail.weight)
            nn.init.zeros_(tail.bias)

    def forward(self, lr: torch.Tensor, scale: int) -> torch.Tensor:
        if str(scale) not in self.tails:
            raise ValueError(f"the backbone has tails for x{', x'.join(self.tails)}, not x{scale}")
        x01 = (lr + 1) * 0.5
        base = F.interpolate(x01, scale_factor=scale, mode="bilinear", align_corners=False)
        # the features see the range the weights were trained on: the modulation multiplies features by features,
        # so values far outside it (the brightest 1% of a stretched scene) would grow without bound
        detail = F.pixel_shuffle(self.tails[str(scale)](self.body(self.head(x01.clamp(0, 1)))), scale)
        return (base + detail) * 2 - 1


def build_backbone(arch: dict | BackboneConfig) -> LRBackbone:
    cfg = arch if isinstance(arch, BackboneConfig) else BackboneConfig.from_dict(arch)
    return LRBackbone(cfg)
