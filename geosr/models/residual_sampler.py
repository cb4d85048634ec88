"""A diffusion model sampling detail on top of an LR-space backbone (issue 18: diffusion where it earns its cost).

The backbone predicts the HR (the posterior mean, deterministic); the diffusion model's denoiser then takes that
prediction as the LR on the HR grid it conditions on and, being residual, samples only the detail the prediction
lacks. ``steps`` 0 is the backbone's prediction alone. The backbone needs its wide halo (its pooling reaches 16 LR
pixels) and scene-aligned windows; the denoiser needs only its own small halo, so it runs on the window's inner
part and the backbone's prediction fills the rest of the halo (which the pipeline crops away).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from geosr.models.backbone_sr import BackboneSuperResolver
from geosr.models.diffusion import DiffusionSuperResolver
from geosr.models.interface import ConditionBatch


def crop_halo(batch: ConditionBatch, d: int) -> ConditionBatch:
    """``batch`` with ``d`` LR pixels of its halo taken off every side (the HR stacks ``d * scale``)."""
    if d == 0:
        return batch
    s = batch.scale
    lr_names, hr_names = ("lr", "lr_valid"), ("ref", "ref_valid", "change", "changed", "map")
    parts = {n: getattr(batch, n)[..., d:-d, d:-d] for n in lr_names}
    parts |= {n: None if getattr(batch, n) is None else getattr(batch, n)[..., d * s : -d * s, d * s : -d * s]
              for n in hr_names}
    return replace(batch, **parts, offsets=batch.offsets + d * s, halo=batch.halo - d)


class ResidualSampler:
    """``diffusion`` sampling on ``backbone``'s prediction; ``steps`` 0: the prediction alone.

    The halo is the backbone's; classes, conditioning inputs and spec are the diffusion model's (none but the LR with
    ``steps`` 0, which also takes the backbone's windows)."""

    sampling = True  # the sampler's settings apply (geosr.models.interface.samples)

    def __init__(self, diffusion: DiffusionSuperResolver, backbone: BackboneSuperResolver, *, steps: int | None = None,
                 name: str | None = None) -> None:
        self.diffusion, self.backbone = diffusion, backbone
        self.steps = steps  # None: the diffusion model's own count; 0: none
        self.name = name or f"{diffusion.name}+{backbone.name}"
        shared = [s for s in backbone.scales if not diffusion.scales or s in diffusion.scales]
        self.scales: tuple[int, ...] = tuple(shared)
        self.bands: int | None = backbone.bands
        self.halo: int = max(backbone.halo, diffusion.halo)
        self.n_change_classes: int = diffusion.n_change_classes
        self.n_map_classes: int = diffusion.n_map_classes
        self.inputs: frozenset[str] = frozenset() if steps == 0 else diffusion.inputs
        self.wants_sharpness = backbone.wants_sharpness
        self.spec = diffusion.spec
        self.checksum: str | None = None
        self.one_window_at_a_time = diffusion.one_window_at_a_time  # the backbone takes windows singly anyway
        if steps == 0:  # the backbone alone: its own windows (wide, shared evenly), one at a time
            self.tiling_for = backbone.tiling_for
            self.fit_windows = True
            self.one_window_at_a_time = True

    @property
    def ran_away(self) -> int:
        """Windows whose backbone output ran away (bicubic given instead): the run says them, as for the backbone
        alone (default+lite said nothing; found in review)."""
        return int(getattr(self.backbone, "ran_away", 0))

    @torch.inference_mode()
    def __call__(self, batch: ConditionBatch, *, seed: int) -> torch.Tensor:
        base = self.backbone(batch, seed=seed)
        if self.steps == 0:
            return base
        d = max(0, batch.halo - self.diffusion.halo)  # the denoiser's share of the halo: its own
        s = batch.scale
        h, w = base.shape[-2:]
        core = (..., slice(d * s, h - d * s), slice(d * s, w - d * s))
        out = base.clone()
        out[core] = self.diffusion(crop_halo(batch, d), seed=seed, base=base[core])
        return out

    def window_memory(self, lr_h: int, lr_w: int, scale: int) -> float:
        """Peak bytes one window adds: the backbone over the whole window, then (its activations freed) the
        denoiser over the inner part, beside the prediction (:func:`geosr.models.interface.window_memory`)."""
        backbone = self.backbone.window_memory(lr_h, lr_w, scale)
        if self.steps == 0:
            return backbone
        d = 2 * max(0, self.halo - self.diffusion.halo)
        inner = max(1, lr_h - d) * max(1, lr_w - d) * scale**2 * self.diffusion.memory_per_hr_pixel
        return max(backbone, inner + lr_h * lr_w * scale**2 * (self.bands or 1) * 4 * 2)

    def nfe(self) -> int:
        return 0 if self.steps == 0 else self.diffusion.nfe()

    def describe(self) -> dict[str, Any]:
        d = self.diffusion.describe()
        if self.steps == 0:
            d = {k: v for k, v in d.items() if k not in ("sampler", "fuse_overlaps", "style")} | {"steps": 0}
        return {**d, "model": self.name, "backbone": self.backbone.describe(),
                **({"checksum": self.checksum} if self.checksum else {})}
