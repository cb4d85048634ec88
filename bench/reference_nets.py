"""The two public efficient-SR networks the backbone benchmark compares against, as reference points.

Written for geosr's benchmark from the papers (SAFMN, ICCV 2023, in its NTIRE 2023 ESR form; RLFN, CVPRW 2022,
in its NTIRE 2024 ESR baseline form) and the tensor names of their public x4 weights in ``sunny2109/SAFMN``
(Apache-2.0). They take and return [0, 1] RGB at x4. Weights come from the safetensors files that
``scripts/convert_safmn.py`` writes; nothing here unpickles.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from geosr.models.backbone import FeatureModulation


class _GRN(nn.Module):
    """Global response normalization: scales each channel by its L2 energy over the image relative to the mean."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, dim, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, dim, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.norm(x, p=2, dim=(2, 3), keepdim=True)
        return x + self.gamma * (x * (g / (g.mean(dim=1, keepdim=True) + 1e-6))) + self.beta


class _SAFM(FeatureModulation):
    """geosr's feature modulation (same weights) with SAFMN's own pooling: adaptive, to sizes the image sets."""

    def __init__(self, dim: int, levels: int = 4) -> None:
        super().__init__(dim, levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        parts = x.chunk(self.levels, dim=1)
        out = []
        for i, p in enumerate(parts):
            if i == 0:
                out.append(self.mfr[0](p))
                continue
            s = self.mfr[i](F.adaptive_max_pool2d(p, (h // 2 ** (i + 1), w // 2 ** (i + 1))))
            out.append(F.interpolate(s, size=(h, w), mode="nearest"))
        return F.gelu(self.aggr(torch.cat(out, 1))) * x


class _CCM(nn.Module):
    def __init__(self, dim: int, ffn: float) -> None:
        super().__init__()
        self.ccm = nn.Sequential(nn.Conv2d(dim, int(dim * ffn), 3, 1, 1, bias=False), nn.GELU(),
                                 nn.Conv2d(int(dim * ffn), dim, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ccm(x)


class _SAFMBlock(nn.Module):
    def __init__(self, dim: int, ffn: float) -> None:
        super().__init__()
        self.safm = _SAFM(dim)
        self.ccm = _CCM(dim, ffn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.safm(x)
        return x + self.ccm(x)


class SAFMN(nn.Module):
    """SAFMN as submitted to NTIRE 2023 ESR (dim 36, 8 blocks, x4)."""

    def __init__(self, dim: int = 36, blocks: int = 8, ffn: float = 2.0, scale: int = 4) -> None:
        super().__init__()
        self.scale = scale
        self.norm = _GRN(dim)
        self.to_feat = nn.Conv2d(3, dim, 3, 1, 1)
        self.feats = nn.Sequential(*(_SAFMBlock(dim, ffn) for _ in range(blocks)))
        self.to_img = nn.Sequential(nn.Conv2d(dim, 3 * scale * scale, 3, 1, 1), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return self.to_img(self.feats(self.norm(self.to_feat(x)))) + base


class _ESA(nn.Module):
    def __init__(self, f: int, n: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(n, f, 1)
        self.conv_f = nn.Conv2d(f, f, 1)
        self.conv2 = nn.Conv2d(f, f, 3, 2, 0)
        self.conv3 = nn.Conv2d(f, f, 3, 1, 1)
        self.conv4 = nn.Conv2d(f, n, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1 = self.conv1(x)
        c3 = self.conv3(F.max_pool2d(self.conv2(c1), 7, 3))
        c3 = F.interpolate(c3, x.shape[-2:], mode="bilinear", align_corners=False)
        return x * torch.sigmoid(self.conv4(c3 + self.conv_f(c1)))


class _RLFB(nn.Module):
    def __init__(self, n: int, mid: int, esa: int = 16) -> None:
        super().__init__()
        self.c1_r = nn.Conv2d(n, mid, 3, 1, 1)
        self.c2_r = nn.Conv2d(mid, mid, 3, 1, 1)
        self.c3_r = nn.Conv2d(mid, n, 3, 1, 1)
        self.c5 = nn.Conv2d(n, n, 1)
        self.esa = _ESA(esa, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(self.c1_r(x), 0.05)
        y = F.leaky_relu(self.c2_r(y), 0.05)
        y = F.leaky_relu(self.c3_r(y), 0.05) + x
        return self.esa(self.c5(y))


class RLFN(nn.Module):
    """RLFN as the NTIRE 2024 ESR baseline (46 features, 4 blocks, x4; trained on [0, 255] values)."""

    def __init__(self, feats: int = 46, mid: int = 48, scale: int = 4) -> None:
        super().__init__()
        self.conv_1 = nn.Conv2d(3, feats, 3, 1, 1)
        for i in range(1, 5):
            setattr(self, f"block_{i}", _RLFB(feats, mid))
        self.conv_2 = nn.Conv2d(feats, feats, 3, 1, 1)
        self.upsampler = nn.Sequential(nn.Conv2d(feats, 3 * scale * scale, 3, 1, 1), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.conv_1(x * 255.0)
        y = f
        for i in range(1, 5):
            y = getattr(self, f"block_{i}")(y)
        return self.upsampler(self.conv_2(y) + f) / 255.0


def load_reference(name: str, folder: Path) -> nn.Module:
    """``safmn`` or ``rlfn`` with its converted public weights from ``folder``, in eval mode."""
    net = {"safmn": SAFMN, "rlfn": RLFN}[name]()
    net.load_state_dict(load_file(str(folder / f"{name}_x4.safetensors")), strict=True)
    return net.eval()
