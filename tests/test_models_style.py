"""The style path: AdaIN math, the flow's inverse and log-determinant, fitting and sampling."""

from __future__ import annotations

import math

import pytest
import torch

from geosr.models.style import StyleEncoder, StyleFlow, adain, channel_stats, fit_flow

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_adain_takes_the_style_statistics():
    g = torch.Generator().manual_seed(0)
    content = torch.randn(2, 5, 9, 7, generator=g) * 3 + 1
    s_mean = torch.randn(2, 5, generator=g)
    s_std = torch.rand(2, 5, generator=g) + 0.2
    out = adain(content, s_mean, s_std)
    mean, std = channel_stats(out)
    assert torch.allclose(mean, s_mean, atol=1e-5)
    assert torch.allclose(std, s_std, atol=1e-4)
    # Eq. 11 element by element
    c_mean, c_std = channel_stats(content)
    normalized = (content - c_mean[:, :, None, None]) / c_std[:, :, None, None]
    expect = s_std[:, :, None, None] * normalized + s_mean[:, :, None, None]
    assert torch.allclose(out, expect, atol=1e-5)


def test_adain_with_own_statistics_is_identity():
    content = torch.randn(1, 3, 6, 6)
    assert torch.allclose(adain(content, *channel_stats(content)), content, atol=1e-5)


def _perturbed_flow(dim: int, layers: int = 4, seed: int = 0, amount: float = 0.1) -> StyleFlow:
    torch.manual_seed(seed)
    flow = StyleFlow(dim, layers=layers, hidden=16)
    with torch.no_grad():  # leave the identity initialization so the test means something
        for c in flow.couplings:
            c.net[-1].weight.normal_(0, amount)
            c.net[-1].bias.normal_(0, amount)
        flow.shift.normal_()
        flow.log_scale.normal_(0, 0.3)
    return flow


def test_flow_inverts():
    flow = _perturbed_flow(32, layers=8)
    x = torch.randn(64, 32)
    with torch.no_grad():
        z, _ = flow(x)
        assert (z - x).abs().max() > 0.1
        assert (flow.inverse(z) - x).abs().max() < 1e-5
        z2 = torch.randn(16, 32)
        assert (flow(flow.inverse(z2))[0] - z2).abs().max() < 1e-5
    # strongly non-linear flows invert to float64 precision
    strong = _perturbed_flow(32, layers=8, amount=0.5).double()
    x64 = torch.randn(64, 32, dtype=torch.float64) * 2
    with torch.no_grad():
        assert (strong.inverse(strong(x64)[0]) - x64).abs().max() < 1e-10


def test_flow_logdet_matches_autograd_jacobian():
    flow = _perturbed_flow(6, layers=4).double()
    x = torch.randn(3, 6, dtype=torch.float64)
    _, logdet = flow(x)
    logdet = logdet.detach()
    for i in range(3):
        jac = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0][0], x[i])
        _, ref = torch.linalg.slogdet(jac)  # log |det| (the permutations flip signs)
        assert float(logdet[i]) == pytest.approx(float(ref), abs=1e-8)


def test_flow_log_prob_of_standard_normal_at_identity():
    flow = StyleFlow(4, layers=2, hidden=8)
    x = torch.zeros(1, 4)
    assert float(flow.log_prob(x).detach()) == pytest.approx(-2 * math.log(2 * math.pi))


def test_fit_and_sample_styles():
    g = torch.Generator().manual_seed(0)
    # a bimodal, correlated style distribution: far from the Gaussian the flow starts as
    mode = torch.randint(0, 2, (400, 1), generator=g).float() * 2 - 1
    mean = mode * 1.5 + 0.2 * torch.randn(400, 4, generator=g) + 2.0
    std = (0.3 * mode + 0.1 * torch.randn(400, 4, generator=g)).exp() * 0.3
    styles = torch.cat([mean, std], dim=1)
    flow = StyleFlow(8, layers=4, hidden=32)
    assert not flow.is_fitted
    losses = fit_flow(flow, styles, steps=150, lr=3e-3, batch=400)
    assert flow.is_fitted
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 1.0
    a = flow.sample_style(5, seed=3)
    assert torch.equal(a, flow.sample_style(5, seed=3))
    assert not torch.equal(a, flow.sample_style(5, seed=4))
    assert a.shape == (5, 8) and (a[:, 4:] > 0).all()
    # samples land near the data
    assert (a[:, :4].mean() - 2.0).abs() < 1.0


def test_style_encoder_statistics():
    enc = StyleEncoder(3, 8)
    s = enc(torch.randn(2, 3, 32, 40))
    assert s.shape == (2, 16) and (s[:, 8:] > 0).all()
