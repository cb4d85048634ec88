"""ST-LPIPS (geosr.training.perceptual): a distance with the expected behaviour (zero, symmetric, monotone in
blur and noise, tolerant of a 1-pixel shift), strict weight loading, a pinned value, and its place among the
region metrics."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from geosr.training import metrics as M
from geosr.training import perceptual as P


@pytest.fixture(scope="module")
def net() -> P.STLPIPSAlex:
    torch.set_num_threads(1)
    net, why = P.load_st_lpips()
    if net is None:
        pytest.skip(why)
    return net


def _field(h: int = 72, w: int = 72) -> torch.Tensor:
    """A deterministic smooth RGB field in [0.15, 0.85] (no random numbers: the same on every machine)."""
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    r = 0.5 + 0.25 * torch.sin(xx / 3.0) * torch.cos(yy / 5.0) + 0.1 * torch.sin((xx + 2 * yy) / 7.0)
    g = 0.5 + 0.3 * torch.cos((xx - yy) / 4.0)
    b = 0.5 + 0.2 * torch.sin(torch.sqrt((xx - 20) ** 2 + (yy - 30) ** 2) / 2.5)
    return torch.stack([r, g, b]).float()


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    n = int(3 * sigma) * 2 + 1
    k = torch.exp(-0.5 * ((torch.arange(n) - n // 2) / sigma) ** 2)
    k = k / k.sum()
    x4 = F.pad(x[None], (n // 2,) * 4, mode="reflect")
    x4 = F.conv2d(x4, k.view(1, 1, 1, n).expand(3, 1, 1, n), groups=3)
    return F.conv2d(x4, k.view(1, 1, n, 1).expand(3, 1, n, 1), groups=3)[0]


def _noise(seed: int = 1) -> torch.Tensor:
    n = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(seed))
    return n / n.pow(2).mean().sqrt()  # unit RMS


def _d(a: torch.Tensor, b: torch.Tensor, net: P.STLPIPSAlex) -> float:
    res = P.st_lpips_maps(a, b, net)
    assert res is not None
    return res[0]


def test_zero_symmetric_and_monotone(net):
    a = _field()[:, :64, :64]
    assert _d(a, a, net) == 0.0
    b = (a + 0.05 * _noise()).clamp(0, 1)
    assert _d(a, b, net) == pytest.approx(_d(b, a, net), rel=1e-5)
    blurs = [_d(a, _blur(a, s), net) for s in (0.7, 1.5, 3.0)]
    noises = [_d(a, (a + s * _noise()).clamp(0, 1), net) for s in (0.02, 0.05, 0.1)]
    for vals in (blurs, noises):
        assert 0 < vals[0] < vals[1] < vals[2] < 2, vals
        assert vals[2] > 5 * vals[0], vals


def test_one_pixel_shift_costs_much_less_than_noise_of_no_larger_mse(net):
    big = _field()
    a, shifted = big[:, :64, :64], big[:, :64, 1:65]
    mse = float(((a - shifted) ** 2).mean())
    noisy = (a + math.sqrt(mse) * _noise()).clamp(0, 1)
    assert float(((a - noisy) ** 2).mean()) <= mse * (1 + 1e-6)
    d_shift, d_noise = _d(a, shifted, net), _d(a, noisy, net)
    assert d_shift * 2.5 < d_noise, (d_shift, d_noise)


def test_map_and_masked_mean(net):
    a = _field()[:, :64, :64]
    b = _blur(a, 1.5)
    b[:, 10:30, 20:50] = 0.9  # a "changed" block
    dist, full = P.st_lpips_maps(a, b, net)
    assert full.shape == (64, 64) and bool((full >= 0).all())
    assert float(full.mean()) == pytest.approx(dist, rel=0.05)  # the spatial form is close to the distance
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[10:30, 20:50] = True
    assert P.st_lpips(a, b) == pytest.approx(dist, rel=1e-6)
    assert P.st_lpips(a, b, mask) == pytest.approx(float(full[mask].mean()), rel=1e-6)
    assert P.st_lpips(a, b, mask) > 2 * P.st_lpips(a, b, ~mask)  # the change scores worse
    assert math.isnan(P.st_lpips(a, b, torch.zeros(64, 64, dtype=torch.bool)))
    assert P.st_lpips_maps(a[:, :20, :20], b[:, :20, :20], net) is None  # below MIN_SIDE
    grey = a[:1]  # a single band is repeated to RGB
    assert _d(grey, grey, net) == 0.0 and _d(grey, b[:1], net) > 0


def test_regression_value(net):
    a = _field()[:, :64, :64]
    d = _d(a, _blur(a, 1.5), net)
    assert 0.005 < d < 0.1  # a mild blur: small but clearly non-zero
    assert d == pytest.approx(0.0215986371, rel=1e-4)


def test_strict_loading_rejects_a_foreign_state_dict(net):
    state = {k: v.clone() for k, v in net.state_dict().items()}
    fresh = P.STLPIPSAlex()
    fresh.load_weights(dict(state))  # the real one loads
    with pytest.raises(RuntimeError, match="missing keys"):
        fresh.load_weights({k: v for k, v in state.items() if k != "lin2.model.1.weight"})
    with pytest.raises(RuntimeError, match="unexpected keys"):
        fresh.load_weights({**state, "lin5.model.1.weight": torch.zeros(1, 8, 1, 1)})
    with pytest.raises(RuntimeError, match="shape"):
        fresh.load_weights({**state, "lin0.model.1.weight": torch.zeros(1, 65, 1, 1)})
    with pytest.raises(RuntimeError, match="net.slice1.1.filt"):
        fresh.load_weights({**state, "net.slice1.1.filt": torch.full((64, 1, 3, 3), 1 / 9)})


def test_missing_package_or_weights_gives_one_line(monkeypatch):
    monkeypatch.setattr(P, "PACKAGE", "geosr_no_such_package_for_st_lpips")
    net, why = P.load_st_lpips()
    assert net is None and why.startswith("ST-LPIPS skipped") and "\n" not in why and "not installed" in why
    assert M.learned_metrics_status()["ST-LPIPS"] == why
    a = _field()[:, :64, :64]
    out = M.region_metrics(a, a, a[:, ::4, ::4], 4, {"overall": None})
    assert out["overall"]["st_lpips"] is None
    monkeypatch.setattr(P, "PACKAGE", "geosr")  # a package without the weight file
    net, why = P.load_st_lpips()
    assert net is None and why.startswith("ST-LPIPS skipped") and "\n" not in why and "weight file" in why


def test_region_metrics_report_st_lpips(net):
    a = _field()[:, :64, :64]
    b = _blur(a, 1.5)
    b[:, 10:30, 20:50] = 0.9
    changed = torch.zeros(64, 64, dtype=torch.bool)
    changed[10:30, 20:50] = True
    out = M.region_metrics(b, a, a[:, ::4, ::4], 4, {"overall": None, "unchanged": ~changed, "changed": changed})
    assert out["overall"]["st_lpips"] == pytest.approx(P.st_lpips(b, a), rel=1e-6)
    assert out["changed"]["st_lpips"] == pytest.approx(P.st_lpips(b, a, changed), rel=1e-6)
    assert out["changed"]["st_lpips"] > out["unchanged"]["st_lpips"] > 0
    assert M.learned_metrics_status()["ST-LPIPS"] == "available"


def test_markdown_table_has_st_lpips_columns():
    from geosr.training.evaluate import markdown_table

    row = {"psnr_y": 30.0, "st_lpips": 0.01234}
    md = markdown_table({4: {"m": {"overall": row, "unchanged": row, "changed": None}}}, ["m"])
    assert "ST-LPIPS all" in md and "ST-LPIPS cha" in md and "0.0123" in md
