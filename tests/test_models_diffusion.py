"""The diffusion super-resolver behind the pipeline's model interface."""

from __future__ import annotations

import pytest
import torch

from geosr.config import SamplerConfig
from geosr.errors import BandError, ClassTableError, OptionError, ScaleError
from geosr.models.diffusion import DiffusionSuperResolver
from geosr.models.edm import build_denoiser
from geosr.models.interface import ConditionBatch, SuperResolver
from geosr.models.style import fit_flow

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_denoiser("tiny", n_map_classes=4).eval()


def scene(seed=0, scale=4, h=16, w=40, bands=3):
    """A small LR scene with its HR-grid stacks (change, map, reference)."""
    g = torch.Generator().manual_seed(seed)
    H, W = h * scale, w * scale
    return dict(
        lr=torch.rand(bands, h, w, generator=g) * 2 - 1,
        ref=torch.rand(bands, H, W, generator=g) * 2 - 1,
        change=torch.randint(0, 2, (1, H, W), generator=g),
        map=torch.randint(0, 4, (1, H, W), generator=g),
        scale=scale,
    )


def batch_of(sc, windows, size, *, with_map=True, n_change=2, n_map=4):
    """Windows (LR row, col) of ``size`` (LR h, w) cut from a scene (no halo)."""
    s = sc["scale"]
    h, w = size
    take = lambda t, r, c, k: t[:, r * k : (r + h) * k, c * k : (c + w) * k]  # noqa: E731
    lr = torch.stack([take(sc["lr"], r, c, 1) for r, c in windows])
    ref = torch.stack([take(sc["ref"], r, c, s) for r, c in windows])
    change = torch.stack([take(sc["change"], r, c, s) for r, c in windows])
    mp = torch.stack([take(sc["map"], r, c, s) for r, c in windows]) if with_map else None
    b = len(windows)
    return ConditionBatch(
        lr=lr,
        lr_valid=torch.ones(b, 1, h, w),
        ref=ref,
        ref_valid=torch.ones(b, 1, h * s, w * s),
        change=change,
        changed=change.float(),
        map=mp,
        offsets=torch.tensor([[r * s, c * s] for r, c in windows]),
        scale=s,
        halo=0,
        n_change_classes=n_change,
        n_map_classes=n_map if with_map else 0,
    )


def test_is_a_super_resolver(model):
    sr = DiffusionSuperResolver(model, {"scales": [4], "name": "t"}, sampler=SamplerConfig(steps=2))
    assert isinstance(sr, SuperResolver)
    assert sr.name == "t" and sr.scales == (4,) and sr.bands == 3 and sr.halo == 2 and sr.nfe() == 2
    # a checkpoint may recommend its step count for the default preset; --steps wins
    assert DiffusionSuperResolver(model, {"inference": {"steps": 1}}).nfe() == 1
    assert DiffusionSuperResolver(model, {"inference": {"steps": 1}}, sampler=SamplerConfig(steps=4)).nfe() == 4
    paper = SamplerConfig(preset="paper")
    assert DiffusionSuperResolver(model, {"inference": {"steps": 1}}, sampler=paper).nfe() == 511


def test_shapes_determinism_and_padding(model):
    sr = DiffusionSuperResolver(model, {}, sampler=SamplerConfig(steps=2))
    sc = scene()
    # 9 x 11 LR at x4 = 36 x 44 HR: not divisible by the model's factor 8, padded inside and cropped
    b = batch_of(sc, [(0, 0), (0, 7)], (9, 11))
    a = sr(b, seed=3)
    assert a.shape == (2, 3, 36, 44) and a.dtype == torch.float32 and torch.isfinite(a).all()
    assert torch.equal(a, sr(b, seed=3))
    assert not torch.equal(a, sr(b, seed=4))


def test_overlapping_windows_fused_agree(model):
    sc = scene()
    b = batch_of(sc, [(0, 0), (0, 8), (0, 16)], (16, 16))  # 64 HR px windows overlapping by 32
    fused = DiffusionSuperResolver(model, {}, sampler=SamplerConfig(steps=3, fuse_overlaps=True))(b, seed=1)
    plain = DiffusionSuperResolver(model, {}, sampler=SamplerConfig(steps=3))(b, seed=1)
    assert torch.allclose(fused[0, :, :, 32:], fused[1, :, :, :32], atol=1e-5)
    assert torch.allclose(fused[1, :, :, 32:], fused[2, :, :, :32], atol=1e-5)
    assert not torch.allclose(plain[0, :, :, 32:], plain[1, :, :, :32], atol=1e-3)


def test_batch_invariant_sub_area_rerun(model):
    """A window's pixels are the same whether it runs alone or among its neighbours."""
    sc = scene()
    sr = DiffusionSuperResolver(model, {}, sampler=SamplerConfig(steps=2), batch_invariant=True)
    full = sr(batch_of(sc, [(0, 0), (0, 8), (0, 16)], (16, 16)), seed=2)
    alone = sr(batch_of(sc, [(0, 8)], (16, 16)), seed=2)
    assert torch.equal(full[1], alone[0])


def test_on_the_cpu_windows_run_singly_unless_fused(model):
    """Batching buys no speed on the CPU and changes a window's rounding: there the pipeline gives windows singly,
    except with overlap fusion, which couples a batch's windows on purpose."""
    assert DiffusionSuperResolver(model, {}).one_window_at_a_time
    assert not DiffusionSuperResolver(model, {}, sampler=SamplerConfig(fuse_overlaps=True)).one_window_at_a_time
    assert not DiffusionSuperResolver(model, {}, batch_invariant=False).one_window_at_a_time


def test_map_optional_and_ignored(model):
    sc = scene()
    with_map = batch_of(sc, [(0, 0)], (8, 8))
    without = batch_of(sc, [(0, 0)], (8, 8), with_map=False)
    sr = DiffusionSuperResolver(model, {}, sampler=SamplerConfig(steps=2))
    assert not torch.equal(sr(with_map, seed=0), sr(without, seed=0))  # all-background map instead
    no_map_model = build_denoiser("tiny", n_map_classes=0)
    out = DiffusionSuperResolver(no_map_model, {}, sampler=SamplerConfig(steps=2))(with_map, seed=0)
    assert out.shape == (1, 3, 32, 32)


def test_bad_batches_are_refused(model):
    sc = scene()
    sr = DiffusionSuperResolver(model, {"scales": [4]}, sampler=SamplerConfig(steps=1))
    with pytest.raises(BandError):
        sr(batch_of(scene(bands=4), [(0, 0)], (8, 8)), seed=0)
    with pytest.raises(ScaleError):
        sr(batch_of(scene(scale=2), [(0, 0)], (8, 8)), seed=0)
    with pytest.raises(ClassTableError, match="change classes"):
        sr(batch_of(sc, [(0, 0)], (8, 8), n_change=7), seed=0)
    with pytest.raises(ClassTableError, match="map classes"):
        sr(batch_of(sc, [(0, 0)], (8, 8), n_map=9), seed=0)
    bad = batch_of(sc, [(0, 0)], (8, 8))
    bad.change[0, 0, 0, 0] = 5
    with pytest.raises(ClassTableError, match="outside"):
        sr(bad, seed=0)


def test_paper_sampler_starts_from_the_lr(model):
    sc = scene()
    b = batch_of(sc, [(0, 0)], (8, 8))
    sr = DiffusionSuperResolver(model, {}, sampler=SamplerConfig(preset="paper", steps=3))
    assert sr.preset.start == "lr" and sr.preset.churn == 40.0
    out = sr(b, seed=0)
    assert out.shape == (1, 3, 32, 32) and torch.equal(out, sr(b, seed=0))


def test_style_modes(model):
    sc = scene()
    b = batch_of(sc, [(0, 0)], (8, 8))
    steps = SamplerConfig(steps=1)
    with pytest.raises(OptionError, match="no fitted style flow"):
        DiffusionSuperResolver(model, {}, sampler=steps, style="sample")
    with pytest.raises(OptionError, match="^style must be"):
        DiffusionSuperResolver(model, {}, sampler=steps, style="vivid")
    plain = DiffusionSuperResolver(model, {}, sampler=steps, style="none")(b, seed=0)
    image = torch.rand(1, 3, 48, 48) * 2 - 1
    styled = DiffusionSuperResolver(model, {}, sampler=steps, style=image)(b, seed=0)
    assert not torch.equal(plain, styled)

    fitted = build_denoiser("tiny", n_map_classes=4).eval()
    fit_flow(fitted.net.style_flow, torch.rand(64, 32) + 0.1, steps=2)
    sr = DiffusionSuperResolver(fitted, {}, sampler=steps, style="sample")
    assert torch.equal(sr.style_vector(5), sr.style_vector(5))
    assert not torch.equal(sr.style_vector(5), sr.style_vector(6))
    assert sr(b, seed=5).shape == (1, 3, 32, 32)

    no_style = build_denoiser("tiny", style=False)
    with pytest.raises(OptionError, match="no style path"):
        DiffusionSuperResolver(no_style, {}, sampler=steps, style="sample")


def test_residual_model_with_a_silent_network_is_a_gaussian_around_bicubic():
    """A residual model whose network outputs nothing is the exact denoiser of HR ~ N(bicubic, sigma_data^2):
    one step returns that mean, the bicubic LR; 32 steps of the ODE return samples of std sigma_data around
    it. A plain model with a silent network returns neither."""
    from geosr.models.resample import upsample

    torch.manual_seed(0)
    b = batch_of(scene(), [(0, 0), (0, 16)], (16, 16))
    bic = upsample(b.lr, 4, "bicubic")
    for residual in (True, False):
        d = build_denoiser("tiny", n_map_classes=4, residual=residual, sigma_data=0.4).eval()
        with torch.no_grad():
            d.net.out_conv.weight.zero_()
            d.net.out_conv.bias.zero_()
        one = DiffusionSuperResolver(d, {"scales": [4]}, sampler=SamplerConfig(steps=1))(b, seed=1) - bic
        many = DiffusionSuperResolver(d, {"scales": [4]}, sampler=SamplerConfig(steps=32))(b, seed=1) - bic
        if residual:
            assert float(one.abs().max()) < 0.02  # c_skip(80) * 80 * noise
            assert abs(float(many.mean())) < 0.05 and float(many.std()) == pytest.approx(0.4, rel=0.05)
        else:
            assert float(one.abs().max()) > 0.5 and abs(float(many.std()) - 0.4) > 0.05
