"""Noise-level schedules and the sampler presets (``--sampler default|paper``)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from geosr.errors import OptionError


def karras_sigmas(steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> torch.Tensor:
    """EDM's schedule: sigma_i = (s_max^(1/rho) + i/(N-1) (s_min^(1/rho) - s_max^(1/rho)))^rho, i < N,
    then sigma_N = 0. Returns (steps + 1,) float64."""
    if steps < 1:
        raise OptionError(f"the number of sampler steps must be at least 1, not {steps}")
    if not 0 < sigma_min < sigma_max:
        raise OptionError(f"the sigma range must satisfy 0 < sigma_min < sigma_max, not {sigma_min}..{sigma_max}")
    if steps == 1:
        body = torch.tensor([sigma_max], dtype=torch.float64)
    else:
        ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
        lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
        body = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([body, torch.zeros(1, dtype=torch.float64)])


@dataclass(frozen=True, kw_only=True)
class SamplerPreset:
    """Everything the Heun sampler needs besides the denoiser.

    ``start``: "noise" (x_0 = sigma_max * N(0, I), geo-seeded) or "lr" (x_0 = sigma_max * LR upsampled,
    as the official Ref-Diff sampler does). ``churn`` and ``s_*`` are EDM's stochastic-sampling knobs;
    churn 0 is deterministic. ``heun_ratio_max``: the largest sigma / sigma_next of a step that gets Heun's
    correction (:func:`geosr.sampling.samplers.heun_sample`; EDM: every step but the last, inf).
    """

    name: str
    steps: int
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = math.inf
    s_noise: float = 1.0
    start: str = "noise"
    heun_ratio_max: float = 5.0

    def __post_init__(self) -> None:
        if self.start not in ("noise", "lr"):
            raise OptionError(f"the sampler start must be 'noise' or 'lr', not {self.start!r}")
        if self.churn < 0:
            raise OptionError(f"churn cannot be negative ({self.churn})")
        if not self.heun_ratio_max > 1:
            raise OptionError(f"heun_ratio_max must be above 1 ({self.heun_ratio_max})")

    def sigmas(self) -> torch.Tensor:
        return karras_sigmas(self.steps, self.sigma_min, self.sigma_max, self.rho)

    @property
    def nfe(self) -> int:
        """Network evaluations: one per step plus a Heun correction on every step but the last that lowers sigma
        at most ``heun_ratio_max`` times (churn, which raises a step's start, may skip a few more)."""
        sig = [float(s) for s in self.sigmas()]
        return self.steps + sum(corrected(a, b, self.heun_ratio_max) for a, b in zip(sig[:-1], sig[1:]))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for key in ("s_tmax", "heun_ratio_max"):
            d[key] = None if math.isinf(d[key]) else d[key]
        return d


def corrected(sigma: float, sigma_next: float, ratio_max: float) -> bool:
    """Whether a step from ``sigma`` to ``sigma_next`` gets Heun's correction: not the last (to 0), and not one that
    lowers sigma more than ``ratio_max`` times (the correction weighs the denoiser's error at sigma_next by
    (sigma - sigma_next) / (2 sigma_next): :func:`geosr.sampling.samplers.heun_sample`)."""
    return sigma_next > 0 and sigma <= ratio_max * sigma_next


PRESETS: dict[str, SamplerPreset] = {
    # geosr's default: deterministic Heun, few steps, geo-seeded Gaussian start.
    "default": SamplerPreset(name="default", steps=12),
    # the official Ref-Diff sampler: 256 Heun steps with churn, started from sigma_max * LR, every one corrected.
    "paper": SamplerPreset(
        name="paper", steps=256, churn=40.0, s_tmin=0.05, s_tmax=50.0, s_noise=1.003, start="lr",
        heun_ratio_max=math.inf,
    ),
}


def resolve_preset(preset: str | SamplerPreset = "default", steps: int | None = None, **overrides) -> SamplerPreset:
    """A preset by name (or as is), with ``steps`` and any other field replaced."""
    if isinstance(preset, SamplerPreset):
        base = preset
    else:
        if preset not in PRESETS:
            raise OptionError(f"unknown sampler {preset!r}: use one of {', '.join(PRESETS)}")
        base = PRESETS[preset]
    changes = {k: v for k, v in dict(overrides, steps=steps).items() if v is not None}
    return dataclasses.replace(base, **changes) if changes else base
