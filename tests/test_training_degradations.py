"""Degradations keep shapes and ranges, are reproducible by seed; synthetic change masks are exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geosr.training.degradations import (
    PRESETS,
    bicubic_degrade,
    box_downsample,
    convolve,
    degrade,
    gaussian_blur,
    gaussian_kernel,
    jpeg,
    motion_kernel,
)
from geosr.training.synthetic_change import (
    SyntheticChangeConfig,
    fine_detail,
    mix_detail,
    smooth_field,
    subpixel_shift,
    synthetic_reference,
)


def _img(c=3, h=64, w=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(c, h, w, generator=g)


@pytest.mark.parametrize("scale", [2, 4, 8, 16])
def test_degrade_shape_range_and_seed(scale):
    hr = _img(h=64, w=48 if scale < 16 else 64)
    a, info_a = degrade(hr, scale, np.random.default_rng(7))
    b, info_b = degrade(hr, scale, np.random.default_rng(7))
    c, _ = degrade(hr, scale, np.random.default_rng(8))
    assert a.shape == (3, hr.shape[1] // scale, hr.shape[2] // scale)
    assert a.dtype == torch.float32 and float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(a, b) and info_a == info_b
    assert not torch.equal(a, c)


def test_every_degradation_kind_is_drawn():
    hr = _img(h=32, w=32)
    kinds, modes, jpegs, noises = set(), set(), 0, 0
    for seed in range(60):
        _, info = degrade(hr, 4, np.random.default_rng(seed))
        kinds.add(info.get("blur", {}).get("kind"))
        modes.add(info["resize"])
        jpegs += "jpeg" in info
        noises += "noise" in info
    assert {"isotropic", "anisotropic", "motion", None} <= kinds
    assert modes == {"area", "bilinear", "bicubic"}
    assert jpegs and noises


def test_16x_preset_is_milder():
    p8, p16 = PRESETS[8], PRESETS[16]
    assert p16.blur_sigma[1] < p8.blur_sigma[1] and p16.noise_sigma[1] < p8.noise_sigma[1]
    assert p16.jpeg_quality[0] > p8.jpeg_quality[0]


def test_kernels_normalized_and_bicubic_protocol():
    for k in (gaussian_kernel(1.5, 1.5), gaussian_kernel(2.0, 0.5, 0.7), motion_kernel(5.0, 0.3)):
        assert abs(float(k.sum()) - 1) < 1e-5 and k.shape[0] % 2 == 1
    flat = torch.full((3, 32, 32), 0.25)
    assert torch.allclose(bicubic_degrade(flat, 8), torch.full((3, 4, 4), 0.25), atol=1e-6)
    assert torch.allclose(box_downsample(flat, 4), torch.full((3, 8, 8), 0.25))
    j = jpeg(_img(h=16, w=16), 90)
    assert j.shape == (3, 16, 16) and 0 <= float(j.min()) and float(j.max()) <= 1


def test_synthetic_mask_covers_exactly_the_pasted_pixels():
    hr = _img(h=64, w=64) * 0.5  # values in [0, 0.5]
    foreign = [torch.full((3, 64, 64), 0.9)]  # a value the target never takes
    cfg = SyntheticChangeConfig(gain=(1, 1), bias=(0, 0), gamma=(1, 1), saturation=(1, 1), gradient=0.0,
                                max_shift=0.0, patches=(2, 4))
    for seed in range(5):
        ref, mask = synthetic_reference(hr, np.random.default_rng(seed), foreign, cfg)
        assert mask.any()
        pasted = (ref - 0.9).abs().max(dim=0).values < 1e-6
        assert torch.equal(pasted, mask)
        assert torch.allclose(ref[:, ~mask], hr[:, ~mask], atol=1e-6)


def test_synthetic_mask_stays_exact_with_detail_mixing_and_warp():
    hr = _img(h=64, w=64) * 0.5
    foreign = [torch.full((3, 64, 64), 0.9)]
    cfg = SyntheticChangeConfig(gain=(1, 1), bias=(0, 0), gamma=(1, 1), saturation=(1, 1), gradient=0.0,
                                max_shift=0.0, patches=(2, 4), detail_corr=(0.2, 0.8), warp=2.0)
    for seed in range(3):
        ref, mask = synthetic_reference(hr, np.random.default_rng(seed), foreign, cfg, scale=4)
        assert mask.any()
        assert torch.equal((ref - 0.9).abs().max(dim=0).values < 1e-6, mask)
        assert not torch.allclose(ref[:, ~mask], hr[:, ~mask], atol=1e-3)  # detail mixed and warped


def test_mix_detail_sets_the_detail_correlation_and_keeps_its_variance():
    img, other = _img(c=1, h=128, w=128, seed=1), _img(c=1, h=128, w=128, seed=2)
    d = fine_detail(img, 2.0)
    assert torch.allclose(mix_detail(img, other, 1.0, 2.0), img, atol=1e-6)
    for corr in (0.0, 0.5, 0.8):
        m = fine_detail(mix_detail(img, other, corr, 2.0), 2.0)
        r = float(torch.corrcoef(torch.stack([m.flatten(), d.flatten()]))[0, 1])
        assert abs(r - corr) < 0.05, (corr, r)
        assert abs(float(m.std() / d.std()) - 1) < 0.05


def test_separable_gaussian_blur_is_the_2d_convolution():
    img = _img(h=40, w=36)
    for sigma in (0.7, 3.0):
        assert torch.allclose(gaussian_blur(img, sigma), convolve(img, gaussian_kernel(sigma, sigma)), atol=1e-5)


def test_displacement_fields():
    img = torch.zeros(1, 16, 16)
    img[0, 8, 8] = 1
    moved = subpixel_shift(img, 2.0, -1.0)
    assert (moved[0] > 1e-4).nonzero().tolist() == [[10, 7]]  # content moves by (+dy, +dx)
    assert torch.allclose(subpixel_shift(img, torch.full((16, 16), 2.0), torch.full((16, 16), -1.0)), moved)
    f = smooth_field(64, 64, 3.0, np.random.default_rng(0))
    assert f.shape == (64, 64) and abs(float(f.abs().max()) - 3.0) < 1e-5
    assert float((f[1:] - f[:-1]).abs().max()) < 0.5  # smooth: at most half a pixel change per pixel


def test_synthetic_reference_is_seeded_and_shifted():
    hr = _img(h=48, w=48)
    a, ma = synthetic_reference(hr, np.random.default_rng(3))
    b, mb = synthetic_reference(hr, np.random.default_rng(3))
    assert torch.equal(a, b) and torch.equal(ma, mb)
    assert a.shape == hr.shape and float(a.min()) >= 0 and float(a.max()) <= 1
    assert not torch.allclose(a, hr)
