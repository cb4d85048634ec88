"""EDM preconditioning and loss (Karras et al. 2022), in one place and always in float32.

    D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(sigma))
    c_skip = sd^2 / (sigma^2 + sd^2)      c_out = sigma sd / sqrt(sigma^2 + sd^2)
    c_in   = 1 / sqrt(sigma^2 + sd^2)     c_noise = ln(sigma) / 4
    loss   = lambda(sigma) |D(y + sigma n; sigma) - y|^2,  lambda = (sigma^2 + sd^2) / (sigma sd)^2,
    ln sigma ~ N(P_mean, P_std^2)

with sd = sigma_data = 0.5, P_mean = -1.2, P_std = 1.2. The target is the HR image itself (as in Ref-Diff).
The loss is reduced by a mean over batch and pixels (Ref-Diff sums and divides by a constant 256; the
optimizer absorbs the difference).

A *residual* architecture (``ArchConfig.residual``, as in SRDiff) denoises ``y - LR_up`` instead of ``y``:
``D(x) = LR_up + D_res(x - LR_up)``, with the scalings above taken with the config's (smaller) sigma_data.
Seen from outside it is the same denoiser of HR images, so samplers, the loss and the noise are unchanged;
the network only has to learn the missing detail, not to reproduce the LR. ``LR_up`` is the network's
:meth:`upsample_lr`: bicubic, or the learned upsampler when the architecture has one.
"""

from __future__ import annotations

import contextlib
from typing import Callable, NamedTuple

import torch
from torch import nn

from geosr.models.unet import ChangeAwareUNet, Condition, Prepared

SIGMA_DATA = 0.5
P_MEAN = -1.2
P_STD = 1.2


class Coefficients(NamedTuple):
    c_skip: torch.Tensor
    c_out: torch.Tensor
    c_in: torch.Tensor
    c_noise: torch.Tensor


def _no_autocast(device_type: str):
    """Switch autocast off (meta and other devices without autocast: nothing to switch off)."""
    if device_type not in ("cpu", "cuda", "xpu", "mps"):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, enabled=False)


def precondition(sigma: torch.Tensor | float, sigma_data: float = SIGMA_DATA) -> Coefficients:
    """The four EDM coefficients for ``sigma`` (any shape), in float32 (float64 in -> float64 out)."""
    sigma = torch.as_tensor(sigma)
    if not sigma.is_floating_point() or sigma.dtype in (torch.float16, torch.bfloat16):
        sigma = sigma.float()
    s2, d2 = sigma * sigma, sigma_data * sigma_data
    return Coefficients(
        c_skip=d2 / (s2 + d2),
        c_out=sigma * sigma_data / (s2 + d2).sqrt(),
        c_in=1 / (s2 + d2).sqrt(),
        c_noise=sigma.log() / 4,
    )


def loss_weight(sigma: torch.Tensor | float, sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2 = 1 / c_out^2."""
    sigma = torch.as_tensor(sigma).float() if not torch.is_tensor(sigma) or not sigma.is_floating_point() else sigma
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def sample_sigma(
    n: int, *, p_mean: float = P_MEAN, p_std: float = P_STD, generator: torch.Generator | None = None, device=None
) -> torch.Tensor:
    """Training noise levels: ln sigma ~ N(p_mean, p_std^2), (n,) float32 on ``device``."""
    gen_device = generator.device if generator is not None else (device or "cpu")
    z = torch.randn(n, generator=generator, device=gen_device)
    return (z * p_std + p_mean).exp().to(device or z.device)


class EDMDenoiser(nn.Module):
    """D(x; sigma, condition) around a :class:`ChangeAwareUNet`; the scalings run in float32 even under
    autocast (the network itself may run in bf16)."""

    def __init__(self, net: ChangeAwareUNet, sigma_data: float | None = None) -> None:
        super().__init__()
        self.net = net
        cfg = getattr(net, "cfg", None)
        self.sigma_data = float(getattr(cfg, "sigma_data", SIGMA_DATA) if sigma_data is None else sigma_data)
        self.residual = bool(getattr(cfg, "residual", False))
        # Where the LR on the HR grid comes from instead of the network's own upsampling: (lr, scale) -> base, e.g. a
        # frozen backbone's prediction while a residual denoiser learns the detail on it (training's `backbone`).
        # A plain attribute, not a module: its weights are not the denoiser's and are not saved with it.
        self.base_fn: Callable[[torch.Tensor, int], torch.Tensor] | None = None

    @property
    def cfg(self):
        return self.net.cfg

    def prepare(self, cond: Condition) -> Prepared:
        return self.net.prepare(cond)

    def upsample_lr(self, lr: torch.Tensor, scale: int) -> torch.Tensor:
        """The LR on the HR grid as the condition holds it (and a residual model adds its output to)."""
        return self.net.upsample_lr(lr, scale) if self.base_fn is None else self.base_fn(lr, scale)

    def forward(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor | float,
        cond: Condition | None = None,
        prepared: Prepared | None = None,
    ) -> torch.Tensor:
        base = None
        if self.residual:
            if prepared is None:
                if cond is None:
                    raise ValueError("a residual denoiser needs its condition (the LR)")
                prepared = self.net.prepare(cond)
            base = prepared.lr.float()
        with _no_autocast(x.device.type):
            x = x.float() if base is None else x.float() - base
            sigma = torch.as_tensor(sigma, device=x.device, dtype=torch.float32).reshape(-1)
            if sigma.numel() == 1:
                sigma = sigma.expand(x.shape[0])
            c = precondition(sigma, self.sigma_data)
            x_in = c.c_in[:, None, None, None] * x
        f = self.net(x_in, c.c_noise, cond, prepared)
        with _no_autocast(x.device.type):
            d = c.c_skip[:, None, None, None] * x + c.c_out[:, None, None, None] * f.float()
            return d if base is None else d + base


def edm_loss(
    denoiser: EDMDenoiser,
    hr: torch.Tensor,
    cond: Condition,
    *,
    sigma: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    p_mean: float = P_MEAN,
    p_std: float = P_STD,
    reduction: str = "mean",
) -> torch.Tensor:
    """The EDM-weighted denoising loss of a batch of HR targets ``hr`` (B, C, H, W) in model space.

    ``sigma`` (B,) and ``noise`` (like ``hr``) are drawn when not given. ``reduction``: "mean" (a scalar)
    or "none" (per-sample losses, (B,)).
    """
    with _no_autocast(hr.device.type):
        hr = hr.float()
        b = hr.shape[0]
        if sigma is None:
            sigma = sample_sigma(b, p_mean=p_mean, p_std=p_std, generator=generator).to(hr.device)
        sigma = torch.as_tensor(sigma, device=hr.device, dtype=torch.float32).reshape(-1).expand(b)
        if noise is None:
            gen_device = generator.device if generator is not None else hr.device
            noise = torch.randn(hr.shape, generator=generator, device=gen_device).to(hr.device)
        x = hr + sigma[:, None, None, None] * noise.float()
    d = denoiser(x, sigma, cond)
    with _no_autocast(hr.device.type):
        per_pixel = loss_weight(sigma, denoiser.sigma_data)[:, None, None, None] * (d.float() - hr) ** 2
        per_sample = per_pixel.mean(dim=(1, 2, 3))
        if reduction == "none":
            return per_sample
        if reduction == "mean":
            return per_sample.mean()
        raise ValueError(f"unknown reduction {reduction!r}")


class EDMLoss:
    """``EDMLoss()(denoiser, hr, cond)``: :func:`edm_loss` with fixed P_mean / P_std."""

    def __init__(self, p_mean: float = P_MEAN, p_std: float = P_STD) -> None:
        self.p_mean = p_mean
        self.p_std = p_std

    def __call__(self, denoiser: EDMDenoiser, hr: torch.Tensor, cond: Condition, **kw) -> torch.Tensor:
        return edm_loss(denoiser, hr, cond, p_mean=self.p_mean, p_std=self.p_std, **kw)


def build_denoiser(
    config="tiny",
    n_bands: int | None = None,
    n_change_classes: int | None = None,
    n_map_classes: int | None = None,
    *,
    device: torch.device | str | None = None,
    **overrides,
) -> EDMDenoiser:
    """Build an :class:`EDMDenoiser` from a config name, dict or :class:`ArchConfig`.

    Class counts and bands override the config's; ``device="meta"`` builds without memory (to count
    parameters or check a checkpoint's shapes).
    """
    from geosr.models.configs import get_config

    cfg = get_config(
        config, n_bands=n_bands, n_change_classes=n_change_classes, n_map_classes=n_map_classes, **overrides
    )
    if device is not None and torch.device(device).type == "meta":
        with torch.device("meta"):
            return EDMDenoiser(ChangeAwareUNet(cfg))
    model = EDMDenoiser(ChangeAwareUNet(cfg))
    return model.to(device) if device is not None else model
