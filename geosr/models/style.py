"""SGDM's style path: a style encoder, AdaIN (Eq. 11) and an affine-coupling normalizing flow (Eq. 13).

A *style* is a (B, 2*C) tensor ``[mean | std]`` of the style encoder's per-channel feature statistics.
The flow models ``[mean | log std]`` so that a sampled style always has a positive std. When a user gives
no style image, ``StyleFlow.sample`` draws one (``--style sample``); with ``--style none`` the AdaIN branch
is the identity (the content keeps its own statistics).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from geosr.models.blocks import conv3x3

EPS = 1e-5


def channel_stats(f: torch.Tensor, eps: float = EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel spatial mean and std of (B, C, H, W) features, as (B, C) each."""
    f = f.float()
    mean = f.mean(dim=(2, 3))
    std = (f.var(dim=(2, 3), unbiased=False) + eps).sqrt()
    return mean, std


def adain(content: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """AdaIN (SGDM Eq. 11): sigma_s * (F - mu(F)) / sigma(F) + mu_s, statistics per sample and channel."""
    mean, std = channel_stats(content, eps)
    normalized = (content.float() - mean[:, :, None, None]) / std[:, :, None, None]
    out = normalized * style_std[:, :, None, None].float() + style_mean[:, :, None, None].float()
    return out.to(content.dtype)


def split_style(style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 2C) ``[mean | std]`` -> (mean, std)."""
    mean, std = style.chunk(2, dim=1)
    return mean, std


class StyleEncoder(nn.Module):
    """A light CNN on an HR style image: 3 stride-2 stages, then tanh; its feature statistics are the style.

    Takes (B, bands, H, W) in model space (any size of at least 8x8) and returns (B, 2*channels).
    """

    def __init__(self, bands: int, channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv3x3(bands, channels)]
        for _ in range(3):
            layers += [conv3x3(channels, channels), nn.LeakyReLU(0.1)]
            layers += [conv3x3(channels, channels, stride=2), nn.LeakyReLU(0.1)]
        layers += [conv3x3(channels, channels), nn.Tanh()]
        self.body = nn.Sequential(*layers)
        self.channels = channels

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        mean, std = channel_stats(self.body(image))
        return torch.cat([mean, std], dim=1)


class AffineCoupling(nn.Module):
    """y_a = x_a; y_b = x_b * exp(s(x_a)) + t(x_a), with s softly bounded by ``clamp * tanh(. / clamp)``."""

    def __init__(self, dim: int, hidden: int, clamp: float = 2.0) -> None:
        super().__init__()
        self.d_a = dim // 2
        self.d_b = dim - self.d_a
        self.clamp = clamp
        self.net = nn.Sequential(
            nn.Linear(self.d_a, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, 2 * self.d_b),
        )
        with torch.no_grad():  # start as the identity map
            self.net[-1].weight.zero_()
            self.net[-1].bias.zero_()

    def _st(self, xa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self.net(xa).chunk(2, dim=1)
        return self.clamp * torch.tanh(s / self.clamp), t

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xa, xb = x[:, : self.d_a], x[:, self.d_a :]
        s, t = self._st(xa)
        return torch.cat([xa, xb * torch.exp(s) + t], dim=1), s.sum(dim=1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        ya, yb = y[:, : self.d_a], y[:, self.d_a :]
        s, t = self._st(ya)
        return torch.cat([ya, (yb - t) * torch.exp(-s)], dim=1)


class StyleFlow(nn.Module):
    """A RealNVP-style flow on style vectors: a fixed standardization, then ``layers`` x [fixed permutation,
    affine coupling]. ``forward`` maps data to latent z ~ N(0, I) and returns the log-determinant of that
    map; NLL (SGDM Eq. 13) = D/2 log 2 pi + |z|^2 / 2 - log|det|.

    Works on ``[mean | log std]``; :meth:`sample_style` returns ``[mean | std]`` ready for AdaIN.
    """

    def __init__(self, dim: int, layers: int = 8, hidden: int = 64, seed: int = 0) -> None:
        super().__init__()
        self.dim = dim
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("perms", torch.stack([torch.randperm(dim, generator=g) for _ in range(layers)]))
        self.register_buffer("shift", torch.zeros(dim))
        self.register_buffer("log_scale", torch.zeros(dim))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.uint8))
        self.couplings = nn.ModuleList(AffineCoupling(dim, hidden) for _ in range(layers))

    @property
    def is_fitted(self) -> bool:
        return bool(self.fitted.item())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = (x - self.shift) * torch.exp(-self.log_scale)
        logdet = (-self.log_scale.sum()).expand(x.shape[0])
        for perm, coupling in zip(self.perms, self.couplings):
            h, ld = coupling(h[:, perm])
            logdet = logdet + ld
        return h, logdet

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        h = z
        for perm, coupling in zip(reversed(self.perms), reversed(self.couplings)):
            h = coupling.inverse(h)
            h = h[:, torch.argsort(perm)]
        return h * torch.exp(self.log_scale) + self.shift

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        z, logdet = self(x)
        return -0.5 * (z**2).sum(dim=1) - 0.5 * self.dim * math.log(2 * math.pi) + logdet

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood (SGDM Eq. 13)."""
        return -self.log_prob(x).mean()

    @staticmethod
    def to_flow_space(style: torch.Tensor) -> torch.Tensor:
        mean, std = split_style(style)
        return torch.cat([mean, std.clamp_min(EPS).log()], dim=1)

    @staticmethod
    def from_flow_space(u: torch.Tensor) -> torch.Tensor:
        mean, log_std = u.chunk(2, dim=1)
        return torch.cat([mean, log_std.exp()], dim=1)

    @torch.no_grad()
    def sample_style(self, n: int = 1, *, seed: int = 0, temperature: float = 1.0) -> torch.Tensor:
        """``n`` styles ``[mean | std]`` drawn with a fixed seed (CPU generator: the same on every device)."""
        g = torch.Generator().manual_seed(int(seed))
        z = torch.randn(n, self.dim, generator=g) * temperature
        z = z.to(device=self.shift.device, dtype=self.shift.dtype)
        return self.from_flow_space(self.inverse(z))


def fit_flow(
    flow: StyleFlow, styles: torch.Tensor, *, steps: int = 2000, lr: float = 1e-3, batch: int = 512, seed: int = 0
) -> list[float]:
    """Fit ``flow`` by maximum likelihood on (N, 2C) styles ``[mean | std]``; returns the NLL per step."""
    u = StyleFlow.to_flow_space(styles.detach().float()).to(flow.shift.device)
    with torch.no_grad():
        flow.shift.copy_(u.mean(dim=0))
        flow.log_scale.copy_(u.std(dim=0).clamp_min(1e-4).log() if len(u) > 1 else torch.zeros_like(flow.shift))
    opt = torch.optim.Adam(flow.couplings.parameters(), lr=lr, weight_decay=1e-5)
    g = torch.Generator().manual_seed(seed)
    losses = []
    flow.train()
    for _ in range(steps):
        idx = torch.randint(len(u), (min(batch, len(u)),), generator=g)
        loss = flow.nll(u[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    flow.eval()
    flow.fitted.fill_(1)
    return losses


__all__ = ["adain", "channel_stats", "split_style", "StyleEncoder", "AffineCoupling", "StyleFlow", "fit_flow"]
