"""Configs and the change-aware U-Net: builds, sizes, shapes, attention tiling, memory formats."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from geosr.errors import OptionError
from geosr.models.blocks import SFT, SPADE, Attention
from geosr.models.configs import CONFIGS, ArchConfig, get_config
from geosr.models.edm import build_denoiser
from geosr.models.unet import make_condition

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _cond(b, h, w, cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    return make_condition(
        torch.randn(b, cfg.n_bands, h, w, generator=g),
        torch.randn(b, cfg.n_bands, h, w, generator=g),
        torch.ones(b, 1, h, w),
        torch.randint(0, cfg.n_change_classes, (b, 1, h, w), generator=g),
        n_change_classes=cfg.n_change_classes,
        map_ids=torch.randint(0, max(cfg.n_map_classes, 1), (b, 1, h, w), generator=g) if cfg.n_map_classes else None,
        n_map_classes=cfg.n_map_classes,
    )


def test_every_config_builds_on_meta():
    for name in CONFIGS:
        model = build_denoiser(name, device="meta")
        assert all(p.is_meta for p in model.parameters())
        assert n_params(model) > 0


def test_paper_size_on_meta():
    model = build_denoiser("paper", device="meta")
    n = n_params(model)
    # the published Ref-Diff network has ~116.7 M parameters; geosr's differs by the noise-embedding weight
    # (scale and shift) and the narrow guidance pyramids
    assert 110e6 < n < 130e6, n
    cfg = model.cfg
    assert cfg.base_channels == 128 and cfg.channel_mult == (2, 2, 2) and cfg.blocks_per_level == 4


def test_tiny_and_small_build_for_real():
    tiny = build_denoiser("tiny", n_bands=4, n_change_classes=7, n_map_classes=9)
    assert n_params(tiny) <= 5_000_000
    small = build_denoiser("small", device="meta")
    assert n_params(tiny) < n_params(small) < n_params(build_denoiser("paper", device="meta"))


def test_config_round_trip_and_errors():
    cfg = get_config("tiny", n_map_classes=5)
    assert ArchConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(OptionError, match="unknown architecture"):
        get_config("huge")
    with pytest.raises(OptionError, match="unknown architecture keys"):
        ArchConfig.from_dict({**cfg.to_dict(), "wings": 2})
    with pytest.raises(OptionError, match="attn_levels"):
        get_config("tiny", attn_levels=(7,))


@pytest.mark.parametrize("h, w", [(16, 16), (24, 40)])
def test_forward_shapes(h, w):
    torch.manual_seed(0)
    model = build_denoiser("tiny", n_map_classes=3).eval()
    cfg = model.cfg
    assert h % cfg.downsampling == 0 and w % cfg.downsampling == 0
    cond = _cond(2, h, w, cfg)
    x = torch.randn(2, 3, h, w)
    with torch.no_grad():
        out = model(x, torch.tensor([0.5, 3.0]), cond)
    assert out.shape == (2, 3, h, w) and torch.isfinite(out).all()


def test_without_map_and_without_style():
    torch.manual_seed(0)
    model = build_denoiser("tiny", n_map_classes=0, style=False).eval()
    assert not hasattr(model.net, "style_flow") and not hasattr(model.net.semantic, "spade")
    cond = _cond(1, 16, 16, model.cfg)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 16, 16), 1.0, cond).shape == (1, 3, 16, 16)


def _tiny_with_input(h: int, w: int):
    """A tiny model with map classes, a condition and an input of h x w, all seeded."""
    torch.manual_seed(0)
    model = build_denoiser("tiny", n_map_classes=2).eval()
    return model, _cond(1, h, w, model.cfg), torch.randn(1, 3, h, w)


def test_prepared_condition_reused():
    model, cond, x = _tiny_with_input(16, 16)
    with torch.no_grad():
        prepared = model.prepare(cond)
        assert torch.equal(model(x, 0.8, cond), model(x, 0.8, prepared=prepared))


def test_channels_last_matches():
    model, cond, x = _tiny_with_input(16, 24)
    with torch.no_grad():
        a = model(x, 0.8, cond)
        model = model.to(memory_format=torch.channels_last)
        cl = cond.map_fn(lambda t: t.contiguous(memory_format=torch.channels_last))
        b = model(x.contiguous(memory_format=torch.channels_last), 0.8, cl)
    assert torch.allclose(a, b, atol=1e-4)


def _reference_attention(attn: Attention, x: torch.Tensor, rows: slice = slice(None)) -> torch.Tensor:
    """Plain multi-head attention among the tokens of ``rows`` (GroupNorm over the whole map)."""
    qkv = attn.qkv(attn.norm(x))[:, :, rows]
    x = x[:, :, rows]
    b, c, h, w = x.shape
    q, k, v = qkv.reshape(b, 3, attn.heads, c // attn.heads, h * w).unbind(1)
    logits = torch.einsum("bndq,bndk->bnqk", q, k) / (c // attn.heads) ** 0.5
    o = torch.einsum("bnqk,bndk->bndq", logits.softmax(-1), v).reshape(b, c, h, w)
    return (x + attn.proj(o)) * 0.5**0.5


def test_attention_global_matches_reference_and_tiles():
    torch.manual_seed(0)
    attn = Attention(16, head_channels=8, tile=8).eval()
    assert attn.heads == 2
    x = torch.randn(2, 16, 8, 6)
    with torch.no_grad():
        assert torch.allclose(attn(x), _reference_attention(attn, x), atol=1e-5)
        # larger than a tile: split into 8x8 tiles that attend only among themselves
        big = torch.randn(1, 16, 16, 8)
        out = attn(big)
        assert torch.allclose(out[:, :, :8], _reference_attention(attn, big, slice(0, 8)), atol=1e-5)
        assert torch.allclose(out[:, :, 8:], _reference_attention(attn, big, slice(8, 16)), atol=1e-5)
        assert not torch.allclose(out, _reference_attention(attn, big), atol=1e-3)
        odd = attn(torch.randn(1, 16, 11, 9))  # padded tiles
        assert odd.shape == (1, 16, 11, 9) and torch.isfinite(odd).all()


def test_sft_is_eq3_and_sees_features():
    torch.manual_seed(0)
    sft = SFT(4, 2, 8)
    f, g = torch.randn(1, 4, 5, 5), torch.randn(1, 2, 5, 5)
    z = torch.cat([g, f], 1)
    assert torch.allclose(sft(f, g), f * (1 + sft.gamma(z)) + sft.beta(z))
    # gamma and beta depend on the block's own features, not only on the guidance (Eq. 3)
    f2 = f + 1
    assert not torch.allclose(sft.gamma(torch.cat([g, f2], 1)), sft.gamma(z))


def test_spade_uses_lr_and_map_features():
    torch.manual_seed(0)
    spade = SPADE(4, 3, 8).eval()
    f, m = torch.randn(2, 4, 6, 6), torch.randn(2, 3, 6, 6)
    a = spade.shared(torch.cat([f, m], 1))
    expect = F.batch_norm(f, spade.norm.running_mean, spade.norm.running_var, eps=spade.norm.eps)
    assert torch.allclose(spade(f, m), expect * (1 + spade.gamma(a)) + spade.beta(a), atol=1e-6)
    assert not torch.allclose(spade(f, m), spade(f, m + 1))
