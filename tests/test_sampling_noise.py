"""Geo-seeded noise: a pure function of (seed, stream, channel, global HR row, col)."""

from __future__ import annotations

import torch

from geosr.sampling.noise import GeoNoise, geo_noise, noise_block


def test_statistics_are_standard_normal():
    z = geo_noise(7, torch.tensor([[0, 0], [1000, -3000]]), (3, 128, 128))
    assert z.dtype == torch.float32 and torch.isfinite(z).all()
    assert abs(float(z.mean())) < 0.01
    assert abs(float(z.std()) - 1) < 0.01
    # tails of a normal, not of a uniform
    assert 0.04 < float((z.abs() > 2).float().mean()) < 0.052
    # no correlation between neighbours, rows, channels or windows
    for a, b in [
        (z[:, :, :, 1:], z[:, :, :, :-1]),
        (z[:, :, 1:, :], z[:, :, :-1, :]),
        (z[:, 0], z[:, 1]),
        (z[0], z[1]),
    ]:
        corr = torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1]
        assert abs(float(corr)) < 4 / a.numel() ** 0.5  # 4 standard errors


def test_same_key_same_noise_other_key_other_noise():
    base = noise_block(1, 0, 0, 10, 20, 16, 16)
    assert torch.equal(base, noise_block(1, 0, 0, 10, 20, 16, 16))
    for other in [
        noise_block(2, 0, 0, 10, 20, 16, 16),
        noise_block(1, 1, 0, 10, 20, 16, 16),
        noise_block(1, 0, 1, 10, 20, 16, 16),
        noise_block(2**40 + 1, 0, 0, 10, 20, 16, 16),
    ]:
        assert not torch.allclose(base, other)


def test_overlapping_windows_get_identical_noise():
    # two windows of one row, overlapping by 16 columns, and one of the next row overlapping both
    offsets = torch.tensor([[0, 0], [0, 48], [40, 30]])
    z = geo_noise(3, offsets, (3, 64, 64), stream=5)
    assert torch.equal(z[0, :, :, 48:], z[1, :, :, :16])
    assert torch.equal(z[0, :, 40:, 30:], z[2, :, :24, :34])
    assert torch.equal(z[1, :, 40:, :46], z[2, :, :24, 18:])


def test_sub_area_rerun_reproduces_the_noise():
    full = geo_noise(11, torch.tensor([[-16, -16]]), (2, 96, 80))
    sub = geo_noise(11, torch.tensor([[20, 8]]), (2, 30, 40))
    assert torch.equal(full[0, :, 36:66, 24:64], sub[0])


def test_noise_source_streams():
    src = GeoNoise(5, torch.tensor([[0, 0]]), (3, 8, 8))
    assert torch.equal(src(0), src(0))
    assert not torch.equal(src(0), src(1))
    assert src(2).shape == (1, 3, 8, 8)
