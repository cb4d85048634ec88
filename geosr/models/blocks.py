"""Building blocks of the change-aware denoiser: noise embedding, residual blocks, tiled multi-head
attention, the change-aware decoder block with its two SFT modulations (Ref-Diff Eq. 3) and the modified
SPADE of SGDM (Eq. 8-10).

Everything here is written for geosr from the papers' equations; no code is taken from the official
repositories.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SKIP_SCALE = math.sqrt(0.5)


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with at most 32 groups of at least 4 channels."""
    groups = max(1, min(32, channels // 4))
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels, eps=1e-6)


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


def conv1x1(cin: int, cout: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, bias=bias)


def scale_init_(module: nn.Module, factor: float) -> nn.Module:
    """Shrink a layer's initial weights (and zero its bias): residual branches start close to identity."""
    with torch.no_grad():
        module.weight.mul_(factor)
        if getattr(module, "bias", None) is not None:
            module.bias.zero_()
    return module


class NoiseEmbedding(nn.Module):
    """c_noise -> Fourier features (log-spaced frequencies) -> two-layer MLP -> the block embedding."""

    def __init__(self, noise_dim: int, emb_dim: int, max_freq: float = 256.0) -> None:
        super().__init__()
        if noise_dim % 2:
            raise ValueError("noise_dim must be even")
        self.noise_dim = noise_dim
        self.max_freq = max_freq
        self.mlp = nn.Sequential(nn.Linear(noise_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim), nn.SiLU())

    def features(self, c_noise: torch.Tensor) -> torch.Tensor:
        half = self.noise_dim // 2
        freqs = torch.exp(torch.linspace(0.0, math.log(self.max_freq), half, device=c_noise.device))
        arg = c_noise.float()[:, None] * (math.pi * freqs[None, :])
        return torch.cat([torch.cos(arg), torch.sin(arg)], dim=1)

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        feats = self.features(c_noise)
        return self.mlp(feats.to(self.mlp[0].weight.dtype))


class Attention(nn.Module):
    """Multi-head self-attention over tiles of at most ``tile x tile`` tokens (global when the map fits).

    q, k and v are made contiguous before ``scaled_dot_product_attention`` (1.5-3x faster on CPU). Maps
    larger than a tile are split into near-equal tiles; the last tiles are padded by edge replication.
    """

    def __init__(self, channels: int, head_channels: int, tile: int = 64) -> None:
        super().__init__()
        self.heads = max(1, channels // head_channels)
        if channels % self.heads:
            self.heads = 1
        self.tile = tile
        self.norm = group_norm(channels)
        self.qkv = conv1x1(channels, 3 * channels)
        self.proj = scale_init_(conv1x1(channels, channels), 0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x))
        nh, nw = math.ceil(h / self.tile), math.ceil(w / self.tile)
        th, tw = math.ceil(h / nh), math.ceil(w / nw)
        ph, pw = nh * th - h, nw * tw - w
        if ph or pw:
            qkv = F.pad(qkv, (0, pw, 0, ph), mode="replicate")
        hd = c // self.heads
        # (b, 3, heads, hd, nh, th, nw, tw) -> (3, b*nh*nw, heads, th*tw, hd)
        t = qkv.reshape(b, 3, self.heads, hd, nh, th, nw, tw).permute(1, 0, 4, 6, 2, 5, 7, 3)
        t = t.reshape(3, b * nh * nw, self.heads, th * tw, hd)
        q, k, v = (t[i].contiguous() for i in range(3))
        o = F.scaled_dot_product_attention(q, k, v)
        o = o.reshape(b, nh, nw, self.heads, th, tw, hd).permute(0, 3, 6, 1, 4, 2, 5).reshape(b, c, nh * th, nw * tw)
        o = o[:, :, :h, :w].contiguous(memory_format=_memory_format(x))
        return (x + self.proj(o)) * SKIP_SCALE


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


class SFT(nn.Module):
    """Spatial feature transform of Ref-Diff Eq. 3: F' = gamma(G ++ F) * F + beta(G ++ F).

    gamma and beta are two separate branches (conv3x3 -> LeakyReLU -> conv3x3) that see the guidance
    features G concatenated with the block's own features F. gamma is parametrized as 1 + g so a freshly
    built layer is close to the identity.
    """

    def __init__(self, channels: int, guide_channels: int, hidden: int) -> None:
        super().__init__()
        cin = channels + guide_channels
        self.gamma = nn.Sequential(conv3x3(cin, hidden), nn.LeakyReLU(0.1), scale_init_(conv3x3(hidden, channels), 0.1))
        self.beta = nn.Sequential(conv3x3(cin, hidden), nn.LeakyReLU(0.1), scale_init_(conv3x3(hidden, channels), 0.1))

    def forward(self, f: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        z = torch.cat([guide.to(f.dtype), f], dim=1)
        return f * (1 + self.gamma(z)) + self.beta(z)


class SPADE(nn.Module):
    """SGDM's modified SPADE (Eq. 8-10): batch-normalized LR features, modulated by gamma and beta computed
    by a shared convolution from the LR features concatenated with the map features.

    The normalization uses mini-batch statistics in training and running statistics at inference, so at
    inference it is a per-channel affine map that does not depend on the window (tiling-safe).
    """

    def __init__(self, channels: int, map_channels: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.shared = nn.Sequential(conv3x3(channels + map_channels, hidden), nn.ReLU())
        self.gamma = scale_init_(conv3x3(hidden, channels), 0.1)
        self.beta = scale_init_(conv3x3(hidden, channels), 0.1)

    def forward(self, f_lr: torch.Tensor, f_map: torch.Tensor) -> torch.Tensor:
        a = self.shared(torch.cat([f_lr, f_map], dim=1))
        return self.norm(f_lr) * (1 + self.gamma(a)) + self.beta(a)


class BasicBlock(nn.Module):
    """conv -> LeakyReLU -> conv, plus identity (the guidance extractors' residual block)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv3x3(channels, channels), nn.LeakyReLU(0.1), scale_init_(conv3x3(channels, channels), 0.5)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _resample(x: torch.Tensor, mode: str | None) -> torch.Tensor:
    if mode == "down":
        return F.avg_pool2d(x, 2)
    if mode == "up":
        return F.interpolate(x, scale_factor=2, mode="nearest")
    return x


class ResBlock(nn.Module):
    """The encoder block: GN -> SiLU -> conv (optionally 2x down/up) -> GN modulated by the noise embedding
    (learned weight w(t) and bias b(t)) -> SiLU -> dropout -> conv, residual add, optional attention."""

    def __init__(
        self,
        cin: int,
        cout: int,
        emb_dim: int,
        *,
        dropout: float = 0.0,
        resample: str | None = None,
        attention: bool = False,
        head_channels: int = 64,
        attn_tile: int = 64,
    ) -> None:
        super().__init__()
        self.resample = resample
        self.norm0 = group_norm(cin)
        self.conv0 = conv3x3(cin, cout)
        self.emb = nn.Linear(emb_dim, 2 * cout)
        self.norm1 = group_norm(cout)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = scale_init_(conv3x3(cout, cout), 0.2)
        self.skip = conv1x1(cin, cout) if cin != cout or resample else None
        self.attn = Attention(cout, head_channels, attn_tile) if attention else None

    def modulate(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        w, b = self.emb(emb).to(h.dtype)[:, :, None, None].chunk(2, dim=1)
        return h * (1 + w) + b

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv0(_resample(F.silu(self.norm0(x)), self.resample))
        h = F.silu(self.modulate(self.norm1(h), emb))
        h = self.conv1(self.dropout(h))
        x = _resample(x, self.resample)
        out = (h + (self.skip(x) if self.skip is not None else x)) * SKIP_SCALE
        return self.attn(out) if self.attn is not None else out


class ChangeAwareBlock(ResBlock):
    """Ref-Diff's change-aware decoder block: the two SFTs alternate inside the block.

    GN -> semantics-guided SFT (guidance from [LR, change mask, map]) -> SiLU -> conv (optionally 2x up)
    -> GN -> reference-texture SFT (guidance from [Ref, change mask, validity]) -> noise-embedding weight
    and bias -> SiLU -> dropout -> conv, residual add, optional attention.

    ``in_level`` / ``out_level`` say at which pyramid level each SFT takes its guidance (they differ only
    in the 2x up-sampling blocks).
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        emb_dim: int,
        *,
        guide_channels: int,
        sft_hidden: int,
        level: int,
        dropout: float = 0.0,
        up: bool = False,
        attention: bool = False,
        head_channels: int = 64,
        attn_tile: int = 64,
    ) -> None:
        super().__init__(
            cin,
            cout,
            emb_dim,
            dropout=dropout,
            resample="up" if up else None,
            attention=attention,
            head_channels=head_channels,
            attn_tile=attn_tile,
        )
        self.in_level = level
        self.out_level = level - 1 if up else level
        self.sft_sem = SFT(cin, guide_channels, sft_hidden)
        self.sft_tex = SFT(cout, guide_channels, sft_hidden)

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, emb: torch.Tensor, semantic: list[torch.Tensor], texture: list[torch.Tensor]
    ) -> torch.Tensor:
        h = self.sft_sem(self.norm0(x), semantic[self.in_level])
        h = self.conv0(_resample(F.silu(h), self.resample))
        h = self.sft_tex(self.norm1(h), texture[self.out_level])
        h = F.silu(self.modulate(h, emb))
        h = self.conv1(self.dropout(h))
        x = _resample(x, self.resample)
        out = (h + (self.skip(x) if self.skip is not None else x)) * SKIP_SCALE
        return self.attn(out) if self.attn is not None else out
