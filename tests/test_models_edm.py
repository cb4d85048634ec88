"""EDM preconditioning and loss: hand-computed values, float32 under autocast, gradients to every path."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from geosr.models.edm import (
    P_MEAN,
    P_STD,
    EDMDenoiser,
    EDMLoss,
    build_denoiser,
    edm_loss,
    loss_weight,
    precondition,
    sample_sigma,
)
from geosr.models.unet import make_condition

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.mark.parametrize(
    "sigma, c_skip, c_out, c_in, c_noise",
    [
        (0.5, 0.5, 0.35355339, 1.41421356, -0.17328680),
        (2.0, 0.05882353, 0.48507125, 0.48507125, 0.17328680),
        (0.002, 0.999984, 0.001999984, 1.999984, -1.553652),
        (80.0, 3.9060974e-05, 0.49999023, 0.012499756, 1.0955066),
    ],
)
def test_precondition_hand_values(sigma, c_skip, c_out, c_in, c_noise):
    c = precondition(torch.tensor(sigma))
    assert c.c_skip.dtype == torch.float32
    assert float(c.c_skip) == pytest.approx(c_skip, rel=1e-4)
    assert float(c.c_out) == pytest.approx(c_out, rel=1e-5)
    assert float(c.c_in) == pytest.approx(c_in, rel=1e-5)
    assert float(c.c_noise) == pytest.approx(c_noise, rel=1e-5)
    assert float(loss_weight(torch.tensor(sigma))) == pytest.approx(1 / c_out**2, rel=1e-4)


def test_preconditioning_identities():
    sigma = torch.logspace(-3, 2, 50, dtype=torch.float64)
    c = precondition(sigma)
    assert c.c_skip.dtype == torch.float64
    # the network input has unit variance, and c_skip + c_out^2 / sd^2 = 1
    assert torch.allclose(c.c_in**2 * (sigma**2 + 0.25), torch.ones_like(sigma))
    assert torch.allclose(c.c_skip + c.c_out**2 / 0.25, torch.ones_like(sigma))


class _ConstNet(nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value
        self.seen = []

    def forward(self, x, c_noise, cond=None, prepared=None):
        self.seen.append((x.clone(), c_noise.clone()))
        return torch.full_like(x, self.value)


def test_denoiser_applies_the_scalings():
    net = _ConstNet(1.0)
    d = EDMDenoiser(net)
    x = torch.randn(2, 3, 4, 4)
    sigma = torch.tensor([0.5, 2.0])
    out = d(x, sigma)
    c = precondition(sigma)
    expect = c.c_skip[:, None, None, None] * x + c.c_out[:, None, None, None]
    assert torch.allclose(out, expect)
    x_in, c_noise = net.seen[0]
    assert torch.allclose(x_in, c.c_in[:, None, None, None] * x)
    assert torch.allclose(c_noise, torch.log(sigma) / 4)


def test_denoiser_float32_under_autocast():
    d = build_denoiser("tiny", n_map_classes=2)
    b, h = 1, 16
    cond = make_condition(
        torch.randn(b, 3, h, h), torch.randn(b, 3, h, h), torch.ones(b, 1, h, h),
        torch.zeros(b, 1, h, h, dtype=torch.long), n_change_classes=2, n_map_classes=2,
    )
    x = torch.randn(b, 3, h, h)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = d(x, torch.tensor([1.0]), cond)
        loss = edm_loss(d, x, cond, sigma=torch.tensor([0.7]))
    assert out.dtype == torch.float32
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_sigma_distribution():
    g = torch.Generator().manual_seed(0)
    s = sample_sigma(20000, generator=g)
    assert s.min() > 0
    assert float(s.log().mean()) == pytest.approx(P_MEAN, abs=0.05)
    assert float(s.log().std()) == pytest.approx(P_STD, abs=0.05)


def _tiny_batch(b=2, h=16, n_map=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    hr = torch.rand(b, 3, h, h, generator=g) * 2 - 1
    cond = make_condition(
        hr + 0.1 * torch.randn(b, 3, h, h, generator=g),
        hr.flip(-1),
        (torch.rand(b, 1, h, h, generator=g) > 0.2).float(),
        torch.randint(0, 2, (b, 1, h, h), generator=g),
        n_change_classes=2,
        map_ids=torch.randint(0, n_map, (b, 1, h, h), generator=g),
        n_map_classes=n_map,
    )
    return hr, cond


def test_loss_finite_and_reductions():
    torch.manual_seed(0)
    d = build_denoiser("tiny", n_map_classes=3)
    hr, cond = _tiny_batch()
    g = torch.Generator().manual_seed(1)
    loss = edm_loss(d, hr, cond, generator=g)
    assert loss.shape == () and torch.isfinite(loss)
    per = EDMLoss()(d, hr, cond, sigma=torch.tensor([0.1, 5.0]), reduction="none").detach()
    assert per.shape == (2,) and torch.isfinite(per).all()
    # at init the weighted loss is O(1) at every noise level (EDM's normalization)
    assert 0.05 < float(per.min()) and float(per.max()) < 20


def test_gradients_reach_sft_and_spade_paths():
    torch.manual_seed(0)
    d = build_denoiser("tiny", n_map_classes=3, dropout=0.0)
    d.train()
    hr, cond = _tiny_batch()
    cond.style = torch.cat([torch.randn(2, 16), torch.rand(2, 16) + 0.5], dim=1)
    loss = edm_loss(d, hr, cond, sigma=torch.tensor([0.4, 1.3]), generator=torch.Generator().manual_seed(2))
    loss.backward()
    net = d.net

    def grad_norm(module: nn.Module) -> float:
        return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)

    block = net.decoder[0]
    checks = {
        "semantic SFT": block.sft_sem,
        "texture SFT": block.sft_tex,
        "semantic guidance (LR)": net.semantic.lr_in,
        "texture guidance (Ref)": net.texture.inp,
        "SPADE": net.semantic.spade[0].shared,
        "map features": net.semantic.map_in,
        "style fuse": net.semantic.style_fuse,
        "noise embedding": net.noise_embed,
    }
    for what, module in checks.items():
        g = grad_norm(module)
        assert math.isfinite(g) and g > 0, f"no gradient reaches the {what}"


def _residual_setup(residual: bool):
    torch.manual_seed(0)
    d = build_denoiser("tiny", residual=residual, sigma_data=0.4)
    b, h = 2, 16
    cond = make_condition(
        torch.randn(b, 3, h, h), torch.randn(b, 3, h, h), torch.ones(b, 1, h, h),
        torch.zeros(b, 1, h, h, dtype=torch.long), n_change_classes=2,
    )
    return d, cond, torch.randn(b, 3, h, h)


def test_residual_denoiser_adds_the_lr_around_the_residual_scalings():
    d, cond, x = _residual_setup(True)
    assert d.residual and d.sigma_data == 0.4
    with torch.no_grad():
        d.net.out_conv.weight.zero_()
        d.net.out_conv.bias.zero_()
        sigma = torch.tensor([0.3, 80.0])
        out = d(x, sigma, cond)
    c = precondition(sigma, 0.4)
    expect = cond.lr + c.c_skip[:, None, None, None] * (x - cond.lr)
    assert torch.allclose(out, expect, atol=1e-6)
    # at sigma_max a fresh residual model already returns (almost exactly) the bicubic LR
    assert torch.allclose(out[1], cond.lr[1], atol=1e-3)
    # the same through a prepared condition (what samplers pass)
    with torch.no_grad():
        assert torch.allclose(d(x, sigma, prepared=d.prepare(cond)), out)


def test_residual_denoiser_needs_its_condition_and_plain_one_does_not_add_lr():
    d, cond, x = _residual_setup(True)
    with pytest.raises(ValueError, match="condition"):
        d(x, torch.tensor([1.0]))
    p, cond, x = _residual_setup(False)
    assert not p.residual and p.sigma_data == 0.4
    with torch.no_grad():
        p.net.out_conv.weight.zero_()
        p.net.out_conv.bias.zero_()
        out = p(x, torch.tensor([80.0, 80.0]), cond)
    assert out.abs().max() < 1e-3  # c_skip(80) x: nothing of the LR


def test_residual_loss_trains_the_network_on_the_residual():
    d, cond, _ = _residual_setup(True)
    loss = edm_loss(d, cond.lr.clone(), cond, sigma=torch.tensor([80.0, 80.0]), noise=torch.zeros_like(cond.lr))
    with torch.no_grad():
        d.net.out_conv.weight.zero_()
        d.net.out_conv.bias.zero_()
        zero = edm_loss(d, cond.lr.clone(), cond, sigma=torch.tensor([80.0, 80.0]), noise=torch.zeros_like(cond.lr))
    # the HR equals the LR: a network whose output is zero is exact, one with random output is not
    assert float(zero) < 1e-6 < float(loss)
