"""The tiny model can fit one fixed batch: the EDM loss falls at least 5x within a bounded number of steps."""

from __future__ import annotations

import math

import pytest
import torch

from geosr.models.edm import build_denoiser, edm_loss
from geosr.models.resample import upsample
from geosr.models.unet import make_condition

MAX_STEPS = 120


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_tiny_overfits_one_batch():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    b, h = 2, 16
    yy, xx = torch.meshgrid(torch.linspace(0, 2 * math.pi, h), torch.linspace(0, 2 * math.pi, h), indexing="ij")
    hr = torch.stack([torch.sin(xx * (1 + c) + yy * c) for c in range(3)])[None].repeat(b, 1, 1, 1) * 0.8
    hr[1] = hr[1].flip(-1)
    lr = torch.nn.functional.avg_pool2d(hr, 4)
    cond = make_condition(
        upsample(lr, 4),
        hr * 0.9,
        torch.ones(b, 1, h, h),
        torch.randint(0, 2, (b, 1, h, h), generator=g),
        n_change_classes=2,
        map_ids=torch.randint(0, 3, (b, 1, h, h), generator=g),
        n_map_classes=3,
    )
    sigma = torch.tensor([0.3, 1.5])
    noise = torch.randn(hr.shape, generator=g)
    model = build_denoiser("tiny", n_map_classes=3, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(MAX_STEPS):
        loss = edm_loss(model, hr, cond, sigma=sigma, noise=noise)
        assert torch.isfinite(loss)
        first = float(loss.detach()) if first is None else first
        if float(loss.detach()) <= first / 5:
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    last = float(loss.detach())
    assert last <= first / 5, f"loss {last:.3f} after {MAX_STEPS} steps, started at {first:.3f}"
