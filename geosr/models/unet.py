"""The change-aware U-Net (Ref-Diff section 3.2) with SGDM's map guidance and style path.

Inputs at the encoder: ``[c_in x, LR upsampled, Ref * validity, change one-hot, map one-hot, validity]``.
Two guidance pyramids feed the decoder's SFTs:

- *semantic*: LR features from ``[LR, change one-hot]``, fused at every level with map features through
  SGDM's modified SPADE, and (optionally) re-styled by AdaIN at full resolution;
- *texture*: features of ``[Ref * validity, validity, change one-hot]``.

Neither pyramid depends on the noisy image or on sigma, so :meth:`ChangeAwareUNet.prepare` computes them
once per sampling run and every network evaluation reuses them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from geosr.models.blocks import (
    SPADE,
    BasicBlock,
    ChangeAwareBlock,
    NoiseEmbedding,
    ResBlock,
    conv1x1,
    conv3x3,
    group_norm,
    scale_init_,
)
from geosr.models.configs import ArchConfig
from geosr.models.resample import upsample
from geosr.models.style import StyleEncoder, StyleFlow, adain, split_style
from geosr.models.upsampler import LearnedUpsampler


@dataclass
class Condition:
    """The conditioning of B windows on their (padded) HR grid, in model space.

    lr          (B, C, H, W) LR upsampled to the HR grid (:meth:`ChangeAwareUNet.upsample_lr`)
    ref         (B, C, H, W) reference, 0 where invalid
    ref_valid   (B, 1, H, W) 1 where the reference has data
    change      (B, K, H, W) one-hot change classes
    map         (B, M, H, W) one-hot map classes, or None (model without a map)
    style       (B, 2*G) ``[mean | std]`` style, or None (identity AdaIN)
    """

    lr: torch.Tensor
    ref: torch.Tensor
    ref_valid: torch.Tensor
    change: torch.Tensor
    map: torch.Tensor | None = None
    style: torch.Tensor | None = None

    def tensors(self) -> list[torch.Tensor]:
        return [t for t in (self.lr, self.ref, self.ref_valid, self.change, self.map) if t is not None]

    def map_fn(self, fn) -> "Condition":
        def app(t):
            return None if t is None else fn(t)

        return Condition(app(self.lr), app(self.ref), app(self.ref_valid), app(self.change), app(self.map), self.style)

    def index(self, sel) -> "Condition":
        """Select windows (a slice or an index tensor) from every tensor, the style included."""
        style = None if self.style is None else self.style[sel]
        c = self.map_fn(lambda t: t[sel])
        c.style = style
        return c


def one_hot(ids: torch.Tensor, n: int) -> torch.Tensor:
    """(B, 1, H, W) integer ids -> (B, n, H, W) float one-hot."""
    if ids.dim() == 4:
        ids = ids[:, 0]
    return F.one_hot(ids.long(), n).permute(0, 3, 1, 2).float()


def make_condition(
    lr_up: torch.Tensor,
    ref: torch.Tensor,
    ref_valid: torch.Tensor,
    change_ids: torch.Tensor,
    *,
    n_change_classes: int,
    map_ids: torch.Tensor | None = None,
    n_map_classes: int = 0,
    style: torch.Tensor | None = None,
) -> Condition:
    """Build a :class:`Condition` from class-id rasters (one-hot inside) and HR-grid images.

    A model trained with a map but given none gets an all-class-0 map ("background / unknown").
    """
    valid = ref_valid.float()
    change = one_hot(change_ids, n_change_classes)
    map_oh = None
    if n_map_classes > 0:
        if map_ids is None:
            map_ids = torch.zeros_like(change_ids)
        map_oh = one_hot(map_ids, n_map_classes)
    return Condition(lr=lr_up.float(), ref=ref.float() * valid, ref_valid=valid, change=change, map=map_oh, style=style)


def unshuffle(x: torch.Tensor, patch: int) -> torch.Tensor:
    """Space-to-depth by ``patch`` (identity for 1)."""
    return F.pixel_unshuffle(x, patch) if patch > 1 else x


class SemanticGuidance(nn.Module):
    """LR (+ change) features per level, fused with map features by SPADE; optional AdaIN re-styling."""

    def __init__(self, cfg: ArchConfig) -> None:
        super().__init__()
        w = cfg.guidance_channels
        self.has_map = cfg.n_map_classes > 0
        self.has_style = cfg.style
        p2 = cfg.patch**2
        self.patch = cfg.patch
        self.lr_in = nn.Sequential(conv3x3((cfg.n_bands + cfg.n_change_classes) * p2, w), nn.LeakyReLU(0.1))
        self.lr_blocks = nn.ModuleList(BasicBlock(w) for _ in range(cfg.levels))
        self.lr_down = nn.ModuleList(conv3x3(w, w, stride=2) for _ in range(cfg.levels - 1))
        if self.has_map:
            self.map_in = nn.Sequential(conv3x3(cfg.n_map_classes * p2, w), nn.LeakyReLU(0.1))
            self.map_down = nn.ModuleList(
                nn.Sequential(conv3x3(w, w, stride=2), nn.LeakyReLU(0.1)) for _ in range(cfg.levels - 1)
            )
            self.spade = nn.ModuleList(SPADE(w, w, cfg.spade_hidden) for _ in range(cfg.levels))
        if self.has_style:
            self.style_fuse = scale_init_(conv1x1(2 * w, w), 0.5)

    def forward(self, cond: Condition) -> list[torch.Tensor]:
        f = self.lr_in(unshuffle(torch.cat([cond.lr, cond.change], dim=1), self.patch))
        m = self.map_in(unshuffle(cond.map, self.patch)) if self.has_map else None
        out = []
        for level, block in enumerate(self.lr_blocks):
            if level > 0:
                f = F.leaky_relu(self.lr_down[level - 1](f), 0.1)
                if m is not None:
                    m = self.map_down[level - 1](m)
            f = block(f)
            if m is not None:
                f = self.spade[level](f, m)
            if level == 0 and self.has_style:
                styled = f if cond.style is None else adain(f, *split_style(cond.style))
                f = f + self.style_fuse(torch.cat([f, styled], dim=1))
            out.append(f)
        return out


class TextureGuidance(nn.Module):
    """Features of [Ref * validity, validity, change one-hot] per level."""

    def __init__(self, cfg: ArchConfig) -> None:
        super().__init__()
        w = cfg.guidance_channels
        self.patch = cfg.patch
        self.inp = nn.Sequential(conv3x3((cfg.n_bands + 1 + cfg.n_change_classes) * cfg.patch**2, w), nn.LeakyReLU(0.1))
        self.blocks = nn.ModuleList(BasicBlock(w) for _ in range(cfg.levels))
        self.down = nn.ModuleList(conv3x3(w, w, stride=2) for _ in range(cfg.levels - 1))

    def forward(self, cond: Condition) -> list[torch.Tensor]:
        f = self.inp(unshuffle(torch.cat([cond.ref, cond.ref_valid, cond.change], dim=1), self.patch))
        out = []
        for level, block in enumerate(self.blocks):
            if level > 0:
                f = F.leaky_relu(self.down[level - 1](f), 0.1)
            f = block(f)
            out.append(f)
        return out


@dataclass
class Prepared:
    """What does not change across the network evaluations of one sampling run."""

    cond_input: torch.Tensor  # the condition channels of the encoder input
    lr: torch.Tensor  # the upsampled LR (what a residual model's output is added to)
    semantic: list[torch.Tensor]
    texture: list[torch.Tensor]


class ChangeAwareUNet(nn.Module):
    """F_theta of the EDM denoiser: (c_in x, c_noise, condition) -> (B, bands, H, W)."""

    def __init__(self, cfg: ArchConfig) -> None:
        super().__init__()
        self.cfg = cfg
        chans = cfg.level_channels
        emb, g, drop = cfg.emb_dim, cfg.guidance_channels, cfg.dropout
        attn_kw = dict(head_channels=cfg.head_channels, attn_tile=cfg.attn_tile)

        self.noise_embed = NoiseEmbedding(cfg.noise_dim, emb)
        self.upsampler = (
            LearnedUpsampler(cfg.n_bands, cfg.upsampler_channels, cfg.upsampler_blocks)
            if cfg.upsampler_channels
            else None
        )
        self.semantic = SemanticGuidance(cfg)
        self.texture = TextureGuidance(cfg)
        if cfg.style:
            self.style_encoder = StyleEncoder(cfg.n_bands, g)
            self.style_flow = StyleFlow(2 * g, cfg.flow_layers, cfg.flow_hidden)

        self.stem = conv3x3(cfg.in_channels * cfg.patch**2, cfg.base_channels)
        self.encoder = nn.ModuleList()
        skips = [cfg.base_channels]
        c = cfg.base_channels
        for level in range(cfg.levels):
            for _ in range(cfg.blocks_per_level):
                attn = level in cfg.attn_levels
                self.encoder.append(ResBlock(c, chans[level], emb, dropout=drop, attention=attn, **attn_kw))
                c = chans[level]
                skips.append(c)
            if level < cfg.levels - 1:
                self.encoder.append(ResBlock(c, c, emb, dropout=drop, resample="down", **attn_kw))
                skips.append(c)

        bottom = cfg.levels - 1
        dec_kw = dict(guide_channels=g, sft_hidden=cfg.sft_hidden, dropout=drop, **attn_kw)
        self.middle = nn.ModuleList(
            [
                ChangeAwareBlock(c, c, emb, level=bottom, attention=True, **dec_kw),
                ChangeAwareBlock(c, c, emb, level=bottom, **dec_kw),
            ]
        )
        self.decoder = nn.ModuleList()
        for level in reversed(range(cfg.levels)):
            for _ in range(cfg.blocks_per_level + 1):
                cin = c + skips.pop()
                attn = level in cfg.attn_levels
                self.decoder.append(ChangeAwareBlock(cin, chans[level], emb, level=level, attention=attn, **dec_kw))
                c = chans[level]
            if level > 0:
                self.decoder.append(ChangeAwareBlock(c, c, emb, level=level, up=True, **dec_kw))
        assert not skips
        self.out_norm = group_norm(c)
        self.out_conv = scale_init_(conv3x3(c, cfg.n_bands * cfg.patch**2), 0.2)

    def upsample_lr(self, lr: torch.Tensor, scale: int) -> torch.Tensor:
        """The LR on the HR grid: the learned upsampler when the architecture has one, else bicubic."""
        return self.upsampler(lr, scale) if self.upsampler is not None else upsample(lr, scale, "bicubic")

    def prepare(self, cond: Condition) -> Prepared:
        """Compute the condition channels and both guidance pyramids (once per sampling run)."""
        maps = [cond.map] if cond.map is not None else []
        cond_input = torch.cat([cond.lr, cond.ref, cond.change, *maps, cond.ref_valid], dim=1)
        return Prepared(cond_input=cond_input, lr=cond.lr, semantic=self.semantic(cond), texture=self.texture(cond))

    def forward(
        self, x: torch.Tensor, c_noise: torch.Tensor, cond: Condition | None = None, prepared: Prepared | None = None
    ) -> torch.Tensor:
        if prepared is None:
            if cond is None:
                raise ValueError("give a condition or a prepared condition")
            prepared = self.prepare(cond)
        emb = self.noise_embed(c_noise)
        cond_input = prepared.cond_input.to(x.dtype)
        h = self.stem(unshuffle(torch.cat([x, cond_input], dim=1), self.cfg.patch))
        skips = [h]
        for block in self.encoder:
            h = block(h, emb)
            skips.append(h)
        for block in self.middle:
            h = block(h, emb, prepared.semantic, prepared.texture)
        for block in self.decoder:
            if block.resample != "up":
                h = torch.cat([h, skips.pop()], dim=1)
            h = block(h, emb, prepared.semantic, prepared.texture)
        out = self.out_conv(F.silu(self.out_norm(h)))
        return F.pixel_shuffle(out, self.cfg.patch) if self.cfg.patch > 1 else out
