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
  upsampling of the LR;
- with ``code_dims`` > 0, a small MLP turns the scene's sharpness code (:mod:`geosr.models.degradation_code`: how
  the LR was made, measured on the whole scene) and the scale into a per-channel scale and shift of every block's
  input, so one network serves soft sensor PSFs and aliasing resizes alike. Its last layer starts at zero: a
  network that gains it computes exactly what it did before.

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

import math
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
    code_dims: int = 0  # > 0: the blocks are modulated by the scene's sharpness code (degradation_code)

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
        unknown = sorted(set(d) - keys - {"kind"})  # a newer or other network's: it would run as this one
        if unknown:
            raise ValueError(f"unknown architecture keys: {', '.join(unknown)}")
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
    return F.interpolate(s, scale_factor=k, mode="nearest")[..., :h, :w]


try:  # oneDNN's convolution with a fused activation or addend (absent from builds without it)
    _CONV_POINTWISE = torch.ops.mkldnn._convolution_pointwise
except (AttributeError, RuntimeError):  # pragma: no cover - every CPU build of torch >= 2.1 has it
    _CONV_POINTWISE = None


def _fusable(x: torch.Tensor) -> bool:
    """Whether this pass can use oneDNN's fused convolutions: CPU, float32, no autograd (inference only)."""
    return (_CONV_POINTWISE is not None and x.device.type == "cpu" and x.dtype == torch.float32
            and not torch.is_grad_enabled() and torch.backends.mkldnn.is_available())


def _conv_gelu(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """GELU(conv(x)) in one oneDNN pass (stride 1, 'same' padding)."""
    p = conv.kernel_size[0] // 2
    return _CONV_POINTWISE(x, conv.weight, conv.bias, [p, p], [1, 1], [1, 1], conv.groups, "gelu", [None], "none")


def _conv_add(x: torch.Tensor, other: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """conv(x) + other in one oneDNN pass (stride 1, 'same' padding)."""
    p = conv.kernel_size[0] // 2
    return _CONV_POINTWISE.binary(x, other, conv.weight, conv.bias, [p, p], [1, 1], [1, 1], conv.groups, "add",
                                  None, None, [], None)


class FeatureModulation(nn.Module):
    """Multi-scale spatially adaptive modulation (module doc)."""

    def __init__(self, dim: int, levels: int) -> None:
        super().__init__()
        self.levels = levels
        c = dim // levels
        self.mfr = nn.ModuleList(nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=False) for _ in range(levels))
        self.aggr = nn.Conv2d(dim, dim, 1, bias=False)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The input to the 1x1 mixing conv: each group's multi-scale spatial response."""
        parts = x.chunk(self.levels, dim=1)
        out = [self.mfr[0](parts[0])]
        out += [_pool_up(parts[i], 2 ** (i + 1), self.mfr[i]) for i in range(1, self.levels)]
        return torch.cat(out, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.aggr(self.gate(x))) * x

    def fused_gate(self, x: torch.Tensor) -> torch.Tensor:
        """GELU(aggr(gate(x))) for inference on a CPU, the same sums regrouped (see Block.forward). The 1x1 mixing
        conv is linear and commutes with nearest upsampling, so each pooled group's share of it is computed at
        its own resolution and added coarse to fine; the groups are pooled from one another (a max over nested
        cells); no concatenation. Thin channel slices of a channels-last tensor are slow to pool, copy and
        concatenate: 0.93x the block's time at 304 x 304 LR px, 0.95-0.98x the network's, 2 threads."""
        if self.levels == 1:
            return _conv_gelu(self.mfr[0](x), self.aggr)
        c, h, w = x.shape[1] // self.levels, *x.shape[-2:]
        part = [self.aggr.weight[:, i * c:(i + 1) * c].contiguous() for i in range(self.levels)]
        pooled = [F.max_pool2d(x, 4, 4, ceil_mode=True)[:, c:]]  # groups 1.. at 1/4, then each next halved
        for _ in range(2, self.levels):
            pooled.append(F.max_pool2d(pooled[-1][:, c:], 2, 2, ceil_mode=True))
        acc: torch.Tensor | None = None
        for i in range(self.levels - 1, 0, -1):
            z = F.conv2d(self.mfr[i](pooled[i - 1][:, :c]), part[i])
            acc = z if acc is None else z + F.interpolate(acc, scale_factor=2, mode="nearest")[..., :z.shape[-2],
                                                                                                 :z.shape[-1]]
        fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        coarse = F.interpolate(acc, scale_factor=4, mode="nearest")[..., :h, :w].contiguous(memory_format=fmt)
        return F.gelu(_CONV_POINTWISE.binary(self.mfr[0](x[:, :c]), coarse, part[0], None, [0, 0], [1, 1], [1, 1],
                                             1, "add", None, None, [], None))


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
        if _fusable(x):
            # the same sums with the GELUs and the residual add fused into the convolutions: 0.7-0.8x the time of the
            # plain path on 2 CPU threads, and as close to a float64 run (bench/bench_backbone.py --parts speed)
            x = torch.addcmul(x, self.modulation.fused_gate(x), x)
            return _conv_add(_conv_gelu(x, self.mixer.expand), x, self.mixer.reduce)
        x = x + self.modulation(x)
        return x + self.mixer(x)


class LRBackbone(nn.Module):
    """(B, bands, h, w) LR in model space, scale -> (B, bands, h*scale, w*scale) in model space."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.head = nn.Conv2d(cfg.n_bands, cfg.dim, 3, 1, 1)
        self.body = nn.Sequential(*(Block(cfg.dim, cfg.ffn, cfg.levels) for _ in range(cfg.blocks)))
        if cfg.code_dims:
            # the code and log2(scale) / 4: what a code means depends on the scale (the HR's own softness shows in
            # an x2 LR, not in an x16 one)
            self.code_net = nn.Sequential(nn.Linear(cfg.code_dims + 1, 64), nn.GELU(),
                                          nn.Linear(64, cfg.blocks * 2 * cfg.dim))
            nn.init.zeros_(self.code_net[2].weight)
            nn.init.zeros_(self.code_net[2].bias)
        self.tails = nn.ModuleDict({str(s): nn.Conv2d(cfg.dim, cfg.n_bands * s * s, 3, 1, 1) for s in cfg.scales})
        for tail in self.tails.values():  # a scale without trained weights starts as bilinear
            nn.init.zeros_(tail.weight)
            nn.init.zeros_(tail.bias)

    @property
    def uses_code(self) -> bool:
        """Whether the network is told the scene's sharpness code (the pipeline then measures it)."""
        return bool(self.cfg.code_dims)

    def forward(self, lr: torch.Tensor, scale: int, code: torch.Tensor | None = None) -> torch.Tensor:
        """``code``: (B, code_dims) sharpness codes of the scenes the windows come from; None measures each
        input image itself (right for whole images, not for windows of a larger scene)."""
        if str(scale) not in self.tails:
            raise ValueError(f"the backbone has tails for x{', x'.join(self.tails)}, not x{scale}")
        x01 = (lr + 1) * 0.5
        # the features see the range the weights were trained on: the modulation multiplies features by features,
        # so values far outside it (the brightest 1% of a stretched scene) would grow without bound
        h = self.head(x01.clamp(0, 1))
        if self.cfg.code_dims:
            if code is None:
                code = own_codes(lr)
            code = code.to(h.device, h.dtype)
            code = torch.cat([code, torch.full_like(code[:, :1], math.log2(scale) / 4)], dim=1)
            film = self.code_net(code).view(-1, self.cfg.blocks, 2, self.cfg.dim, 1, 1)
            for i, block in enumerate(self.body):  # bounded: a scale in (0, 2), a shift in (-1, 1)
                h = block(h * (1 + torch.tanh(film[:, i, 0])) + torch.tanh(film[:, i, 1]))
        else:
            h = self.body(h)
        detail = F.pixel_shuffle(self.tails[str(scale)](h), scale)
        # (bilinear((lr + 1) / 2) + detail) * 2 - 1 in one pass at the output's size: bilinear weights sum to 1, so
        # the base in model space is bilinear(lr) (0.85x the network's time at x16, 0.96x at x8; the same to 4e-6)
        return torch.add(F.interpolate(lr, scale_factor=scale, mode="bilinear", align_corners=False), detail, alpha=2)


def own_codes(lr: torch.Tensor) -> torch.Tensor:
    """The sharpness code of each image of a (B, C, h, w) batch, measured on the image itself."""
    import numpy as np

    from geosr.models.degradation_code import lr_sharpness

    a = lr.detach().float().cpu().numpy()
    return torch.from_numpy(np.stack([lr_sharpness(x) for x in a]))


def build_backbone(arch: dict | BackboneConfig) -> LRBackbone:
    cfg = arch if isinstance(arch, BackboneConfig) else BackboneConfig.from_dict(arch)
    return LRBackbone(cfg)
