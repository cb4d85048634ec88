"""The learned LR upsampler: starts as bicubic, covers x2..x16, is local, and feeds the condition and the
residual base of the denoiser; checkpoints keep it."""

from __future__ import annotations

import pytest
import torch

from geosr.config import SamplerConfig
from geosr.errors import OptionError
from geosr.models.checkpoint import load_checkpoint, make_spec, save_checkpoint
from geosr.models.configs import ArchConfig
from geosr.models.edm import build_denoiser
from geosr.models.interface import ConditionBatch
from geosr.models.resample import upsample
from geosr.models.upsampler import LearnedUpsampler, stages_for

MICRO = dict(name="micro-up", patch=2, base_channels=8, channel_mult=[1, 2], blocks_per_level=1, attn_levels=[],
             head_channels=8, dropout=0.0, sft_hidden=8, spade_hidden=8, guidance_channels=4, style=False,
             residual=True, sigma_data=0.4, upsampler_channels=16, upsampler_blocks=2)


def _perturb(module: torch.nn.Module, seed: int = 0) -> None:
    """Give every parameter (the zero-initialised ones too) random values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def test_stages_cover_powers_of_two_up_to_16():
    assert [stages_for(s) for s in (1, 2, 3, 4, 6, 8, 12, 16, 32)] == [0, 1, 0, 2, 0, 3, 0, 4, 0]


@pytest.mark.parametrize("scale", [2, 4, 8, 16, 3])
def test_a_fresh_upsampler_is_exactly_bicubic(scale):
    torch.manual_seed(0)
    up = LearnedUpsampler(3, 16, 2)
    lr = torch.rand(2, 3, 6, 5) * 2 - 1
    with torch.no_grad():
        out = up(lr, scale)
    assert out.shape == (2, 3, 6 * scale, 5 * scale)
    assert torch.equal(out, upsample(lr, scale, "bicubic"))


def test_a_trained_upsampler_corrects_covered_scales_only():
    up = LearnedUpsampler(3, 16, 2)
    _perturb(up)
    lr = torch.rand(1, 3, 8, 8) * 2 - 1
    with torch.no_grad():
        for s in (2, 8, 16):
            assert (up(lr, s) - upsample(lr, s, "bicubic")).abs().max() > 1e-3
        assert torch.equal(up(lr, 3), upsample(lr, 3, "bicubic"))  # no stages for x3: bicubic


def test_the_upsampler_is_local_so_overlapping_windows_agree_inside():
    """No statistics of the window enter: a crop's interior equals the full image's there."""
    up = LearnedUpsampler(3, 16, 2)
    _perturb(up, seed=1)
    s, margin = 8, 8  # receptive field: head + 2 blocks + body = 6 LR px, the x2 stages and bicubic < 2 more
    lr = torch.rand(1, 3, 40, 40) * 2 - 1
    with torch.no_grad():
        full = up(lr, s)
        crop = up(lr[..., 10:34, 12:36], s)
    inner_full = full[..., (10 + margin) * s : (34 - margin) * s, (12 + margin) * s : (36 - margin) * s]
    inner_crop = crop[..., margin * s : (24 - margin) * s, margin * s : (24 - margin) * s]
    assert torch.allclose(inner_full, inner_crop, atol=1e-5)
    assert (full[..., 10 * s : 34 * s, 12 * s : 36 * s] - crop).abs().max() > 1e-4  # the borders do differ


def test_the_condition_and_the_residual_base_use_the_learned_upsampling():
    from geosr.models.diffusion import DiffusionSuperResolver

    torch.manual_seed(0)
    model = build_denoiser(MICRO, n_bands=3, n_change_classes=3).eval()
    _perturb(model.net.upsampler, seed=2)
    with torch.no_grad():
        model.net.out_conv.weight.zero_()  # the U-Net adds nothing: the output is the base
        model.net.out_conv.bias.zero_()
    lr = torch.rand(1, 3, 8, 8) * 2 - 1
    z = torch.zeros(1, 1, 64, 64)
    batch = ConditionBatch(
        lr=lr, lr_valid=torch.ones(1, 1, 8, 8), ref=torch.zeros(1, 3, 64, 64), ref_valid=z, change=z.long(),
        changed=z, map=None, offsets=torch.zeros(1, 2, dtype=torch.long), scale=8, halo=0, n_change_classes=3,
    )
    sr = DiffusionSuperResolver(model, {"scales": [8]}, sampler=SamplerConfig(steps=1))
    cond, lr_up, _ = sr.condition(batch)
    with torch.no_grad():
        learned = model.upsample_lr(lr, 8)
    assert torch.allclose(lr_up, learned) and torch.allclose(cond.lr, learned)
    assert (learned - upsample(lr, 8, "bicubic")).abs().max() > 0.1
    out = sr(batch, seed=0)  # one step from sigma_max: the base, plus c_skip(80) * noise (std 80 * 2.5e-5)
    assert torch.allclose(out, learned, atol=0.02)


def test_upsampler_config_checks_and_checkpoint_round_trip(tmp_path):
    with pytest.raises(OptionError, match="upsampler"):
        ArchConfig(upsampler_channels=-1)
    assert ArchConfig().upsampler_channels == 0  # older specs (no key): plain bicubic
    assert build_denoiser("tiny").net.upsampler is None
    torch.manual_seed(0)
    model = build_denoiser(MICRO, n_bands=3, n_change_classes=3).eval()
    _perturb(model.net.upsampler)
    path = save_checkpoint(tmp_path / "m.safetensors", model, make_spec(model, name="m", scales=[8, 16]))
    loaded, spec = load_checkpoint(path)
    assert spec["arch"]["upsampler_channels"] == 16
    lr = torch.rand(1, 3, 4, 4)
    with torch.no_grad():
        assert torch.equal(loaded.upsample_lr(lr, 16), model.upsample_lr(lr, 16))
