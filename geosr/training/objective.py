"""What a training step optimizes: the network's condition for a batch, the noise levels, and the loss.

Noise levels: EDM's ln sigma ~ N(-1.2, 1.2^2), mixed with a share ``p_high_sigma`` drawn log-uniformly in
[sigma_high_min, sigma_max], so that the denoiser is also trained where few-step samplers start. A model
with a learned LR upsampler adds that upsampler's L1 loss against the HR (``upsampler_loss``);
``objective = "upsampler"`` trains that upsampler alone (its L1 loss; the denoiser is not run).
"""

from __future__ import annotations

import math

import torch

from geosr.models.edm import EDMDenoiser, edm_loss, sample_sigma
from geosr.models.interface import ConditionBatch
from geosr.models.unet import Condition, make_condition
from geosr.training.config import TrainConfig


def training_condition(model: EDMDenoiser, batch: ConditionBatch) -> Condition:
    """The network's condition for a batch, built as :class:`DiffusionSuperResolver` builds it."""
    cfg = model.cfg
    lr_up = model.upsample_lr(batch.lr, batch.scale)
    map_ids = batch.map if (batch.map is not None and cfg.n_map_classes) else None
    return make_condition(
        lr_up, batch.ref, batch.ref_valid, batch.change, n_change_classes=cfg.n_change_classes,
        map_ids=map_ids, n_map_classes=cfg.n_map_classes,
    )


def draw_sigma(n: int, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    sigma = sample_sigma(n, generator=gen)
    high = torch.rand(n, generator=gen) < cfg.p_high_sigma
    lo, hi = math.log(cfg.sigma_high_min), math.log(cfg.sigma_max)
    logu = torch.rand(n, generator=gen) * (hi - lo) + lo
    return torch.where(high, logu.exp(), sigma)


def upsampler_loss(model: EDMDenoiser, batch: ConditionBatch, hr: torch.Tensor) -> torch.Tensor:
    """The learned upsampler's L1 loss against the HR (objective "upsampler")."""
    return (model.upsample_lr(batch.lr, batch.scale).float() - hr).abs().mean()


def denoiser_loss(model: EDMDenoiser, net: torch.nn.Module, batch: ConditionBatch, hr: torch.Tensor, cfg: TrainConfig,
                  gen: torch.Generator, *, upsampler_weight: float, autocast) -> torch.Tensor:
    """EDM's loss of ``net`` (the model, or its DDP wrapper, whose gradients are then all-reduced) at noise levels
    of :func:`draw_sigma`, plus ``upsampler_weight`` times the learned upsampler's L1 loss."""
    cond = training_condition(model, batch)
    if hr.device.type == "cpu":
        cond = cond.map_fn(lambda t: t.contiguous(memory_format=torch.channels_last))
    sigma = draw_sigma(hr.shape[0], cfg, gen).to(hr.device)
    noise = torch.randn(hr.shape, generator=gen).to(hr.device)
    with autocast:
        loss = edm_loss(model if net is model else _Through(net, model.sigma_data), hr, cond, sigma=sigma, noise=noise)
        if upsampler_weight:
            loss = loss + upsampler_weight * (cond.lr.float() - hr).abs().mean()
    return loss


class _Through:
    """A denoiser call through a wrapper (DDP) that lacks the model's ``sigma_data``."""

    def __init__(self, net: torch.nn.Module, sigma_data: float) -> None:
        self.net, self.sigma_data = net, sigma_data

    def __call__(self, x, s, c):
        return self.net(x, s, c)


__all__ = ["training_condition", "draw_sigma", "upsampler_loss", "denoiser_loss"]
