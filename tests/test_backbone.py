"""The LR-space backbone: tiling, converted weights, checkpoints, degradations, training, the pipeline door."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from geosr.errors import ModelFileError
from geosr.models.backbone import BackboneConfig, build_backbone
from geosr.models.backbone_checkpoint import load_backbone, save_backbone
from geosr.models.backbone_sr import BackboneSuperResolver
from geosr.models.interface import ConditionBatch
from geosr.training.sensor_degradations import MTF30_SIGMA, NAMED, blind_degrade, degrade_named, sample_centres


def _random_backbone(seed: int = 0, **kw) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = build_backbone(BackboneConfig(**kw))
    with torch.no_grad():
        for p in net.parameters():  # the tails start at zero: give every weight a value
            p.normal_(0, 0.1)
    return net.eval()


def _batch(lr: torch.Tensor, scale: int, offsets: list[tuple[int, int]]) -> ConditionBatch:
    b, c, h, w = lr.shape
    hr = (b, 1, h * scale, w * scale)
    return ConditionBatch(lr=lr, lr_valid=torch.ones(b, 1, h, w), ref=torch.zeros(b, c, h * scale, w * scale),
                          ref_valid=torch.zeros(hr), change=torch.zeros(hr, dtype=torch.long), changed=torch.zeros(hr),
                          map=None, offsets=torch.tensor(offsets), scale=scale, halo=0)


@pytest.mark.parametrize("origin", [(16, 16), (21, 35), (3, 0)])
def test_a_window_interior_equals_the_whole_scene(origin):
    """With a receptive field inside the halo, a window at any origin computes exactly what the scene computes:
    the window is padded onto the scene's pooling grid."""
    torch.set_num_threads(1)
    net = _random_backbone(blocks=1, levels=2, dim=8, scales=(4,))
    sr = BackboneSuperResolver(net, {"halo": 16})
    scene = torch.rand(1, 3, 96, 96) * 2 - 1
    whole = sr(_batch(scene, 4, [(0, 0)]), seed=0)
    r, c = origin
    win = scene[:, :, r : r + 48, c : c + 48]
    out = sr(_batch(win, 4, [(4 * r, 4 * c)]), seed=0)
    core = out[..., 64:128, 64:128]
    expected = whole[..., 4 * r + 64 : 4 * r + 128, 4 * c + 64 : 4 * c + 128]
    assert torch.allclose(core, expected, atol=1e-5)
    if r % 4 or c % 4:  # the alignment is what makes it so: without it, the pooled cells differ
        plain = net(win, 4)[..., 64:128, 64:128]
        assert not torch.allclose(plain, expected, atol=1e-3)


def test_full_depth_windows_agree_within_a_small_tolerance():
    """With the shipped depth (8 blocks, 4 pooling levels) the field of view exceeds the halo; windows with a
    halo of 32 LR pixels agree with the scene to well under one 8-bit step."""
    torch.set_num_threads(1)
    torch.manual_seed(1)
    net = build_backbone(BackboneConfig(scales=(4,))).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(0.5)  # default init, damped like trained weights (not exploding over 8 blocks)
        net.tails["4"].weight.normal_(0, 0.02)
    scene = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 384, 384), 2) * 2 - 1
    with torch.no_grad():
        whole = net(scene, 4)
        win = net(scene[:, :, 32:160, 32:160], 4)[..., 128:384, 128:384]
    assert float((win - whole[..., 256:512, 256:512]).abs().max()) < 2 / 255


@pytest.mark.parametrize("channels_last", [True, False])
def test_the_fused_inference_path_computes_the_plain_sums(channels_last):
    """Inference on CPU fuses the GELUs and residual adds into oneDNN convolutions; training (autograd on) runs
    the plain modules. Both are float32 roundings of the same sums: each is as close to a float64 run as the
    other, and they agree to a small fraction of an 8-bit step."""
    import copy

    from geosr.models import backbone

    torch.manual_seed(2)
    net = build_backbone(BackboneConfig(scales=(4,))).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(0.5)
        net.tails["4"].weight.normal_(0, 0.02)
    for p in net.parameters():
        p.requires_grad_(False)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    lr = (torch.nn.functional.avg_pool2d(torch.rand(1, 3, 160, 144), 2) * 2 - 1).contiguous(memory_format=fmt)
    with torch.inference_mode():
        assert backbone._fusable(lr)
        fused = net(lr, 4)
        exact = copy.deepcopy(net).double()(lr.double(), 4)
    with torch.enable_grad():
        assert not backbone._fusable(lr)
        plain = net(lr, 4)
    err_fused = float((fused.double() - exact).abs().max())
    err_plain = float((plain.double() - exact).abs().max())
    assert err_fused <= 2 * err_plain + 1e-5
    assert float((fused - plain).abs().max()) < 0.25 / 127.5


def _fake_safmn(seed: int = 0) -> dict[str, torch.Tensor]:
    from bench.reference_nets import SAFMN

    torch.manual_seed(seed)
    net = SAFMN()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.05)
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_converted_safmn_weights_compute_safmn(tmp_path):
    """The converter's backbone equals SAFMN's network on the image whose GRN statistic it folded in."""
    from bench.reference_nets import SAFMN
    from scripts.convert_safmn import backbone_from_safmn, grn_gain

    sd = _fake_safmn()
    ref = SAFMN()
    ref.load_state_dict(sd)
    hr = torch.rand(3, 256, 256)
    lr = degrade_named(hr, 4, "bicubic")[None]
    net = backbone_from_safmn(sd, grn_gain(sd, [hr]), BackboneConfig())
    with torch.no_grad():
        assert torch.allclose((net(lr * 2 - 1, 4) + 1) / 2, ref(lr), atol=1e-4)
    path = save_backbone(net, tmp_path / "b.safetensors", name="b")
    again, spec = load_backbone(path)
    assert spec["arch"]["kind"] == "backbone" and spec["scales"] == [2, 4, 8, 16]
    for k, v in net.state_dict().items():
        assert torch.equal(again.state_dict()[k], v)


def test_pickles_and_wrong_shapes_are_refused(tmp_path):
    net = _random_backbone(scales=(4,))
    pth = tmp_path / "b.pth"
    torch.save(net.state_dict(), pth)
    with pytest.raises(ModelFileError, match="torch.save|pickle"):
        load_backbone(pth)
    good = save_backbone(net, tmp_path / "b.safetensors", name="b")
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(good), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is no dict)
    tensors["head.weight"] = tensors["head.weight"][:, :2].contiguous()
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=meta)
    with pytest.raises(ModelFileError, match="head.weight.*shape"):
        load_backbone(tmp_path / "bad.safetensors")
    spec = json.loads(meta["geosr_spec"])
    spec["arch"]["blocks"] = 10**6
    save_file({k: v for k, v in tensors.items()}, str(tmp_path / "huge.safetensors"),
              metadata={"geosr_spec": json.dumps(spec)})
    with pytest.raises(ModelFileError, match="blocks"):
        load_backbone(tmp_path / "huge.safetensors")
    # a spec that says other scales or bands than its network has: `geosr models` listed the spec's and a run used
    # the network's (a spec of x8 ran at x4 on its own x4 head; found in review)
    from geosr.models.registry import load_model

    for field, value, said in (("scales", [8], r"claims scales \[8\], and its network has heads for x4 only"),
                               ("bands", 4, r"'bands' is 4, and its network \(arch.n_bands\) takes 3")):
        path = save_backbone(net, tmp_path / f"{field}.safetensors", name="b", **{field: value})
        with pytest.raises(ModelFileError, match=said):
            load_model(str(path))
    net2 = _random_backbone(scales=(2, 4))
    assert load_model(str(save_backbone(net2, tmp_path / "four.safetensors", name="b", scales=[4]))).scales == (4,)


# ---- degradations ------------------------------------------------------------------------------------------------
def test_mtf30_sigma_gives_mtf_0_3_at_the_lr_nyquist():
    assert MTF30_SIGMA == pytest.approx(0.494, abs=1e-3)
    assert math.exp(-2 * math.pi**2 * MTF30_SIGMA**2 * 0.5**2) == pytest.approx(0.3)


@pytest.mark.parametrize("kind", NAMED)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_named_degradations_keep_flat_fields_and_shape(kind, scale):
    hr = torch.full((3, 48, 48), 0.37)
    lr = degrade_named(hr, scale, kind)
    assert lr.shape == (3, 48 // scale, 48 // scale)
    assert torch.allclose(lr, torch.full_like(lr, 0.37), atol=1e-5)


def test_named_degradations_are_what_they_say():
    torch.manual_seed(0)
    hr = torch.rand(1, 3, 64, 64)
    assert torch.allclose(degrade_named(hr, 4, "box"), torch.nn.functional.avg_pool2d(hr, 4))
    # no antialiasing keeps more of the finest detail than the antialiased kernel
    noaa, aa = degrade_named(hr, 4, "bicubic-noaa"), degrade_named(hr, 4, "bicubic")
    assert float(noaa.std()) > 1.5 * float(aa.std())
    # point sampling at LR centres: odd scales take the central HR pixel itself
    assert torch.allclose(sample_centres(hr, 3), hr[..., 1:63:3, 1:63:3], atol=1e-6)
    # the Gaussian PSF removes most of a checkerboard at the LR's Nyquist frequency
    y, x = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    stripes = (0.5 + 0.4 * torch.cos(math.pi * x / 4)).expand(1, 3, 64, 64)
    assert float(degrade_named(stripes, 4, "gaussian")[..., 2:-2, 2:-2].std()) < 0.4 * 0.3


def test_blind_degradation_is_reproducible_and_in_range():
    hr = torch.rand(3, 64, 64)
    a, ia = blind_degrade(hr, 4, np.random.default_rng(7))
    b, ib = blind_degrade(hr, 4, np.random.default_rng(7))
    assert torch.equal(a, b) and ia == ib
    rng = np.random.default_rng(1)
    kinds = [blind_degrade(hr[:, :16, :16], 4, rng)[1]["kind"] for _ in range(1000)]
    assert set(kinds) == set(NAMED)
    assert 0 <= float(a.min()) and float(a.max()) <= 1 and a.shape == (3, 16, 16)
    for kind, share in {"bicubic": 0.25, "bicubic-noaa": 0.15, "box": 0.15, "gaussian": 0.45}.items():
        assert abs(kinds.count(kind) / 1000 - share) < 0.045  # the blind mix's proportions (3 sigma)
    # one family, or two in the mix's proportions (1 : 0.6), for an expert of that family
    assert {blind_degrade(hr, 4, rng, ("bicubic-noaa",))[1]["kind"] for _ in range(20)} == {"bicubic-noaa"}
    pair = [blind_degrade(hr[:, :16, :16], 4, rng, ("box", "bicubic"))[1]["kind"] for _ in range(1000)]
    assert set(pair) == {"box", "bicubic"} and abs(pair.count("bicubic") / 1000 - 0.625) < 0.046
    with pytest.raises(ValueError, match="unknown degradation 'lanczos'"):
        blind_degrade(hr, 4, np.random.default_rng(0), ("lanczos",))
    shared = [blind_degrade(hr[:, :16, :16], 4, rng, {"bicubic-noaa": 3, "gaussian": 1, "box": 0})[1]["kind"]
              for _ in range(1000)]  # shares given: drawn in those proportions, a zero share never
    assert set(shared) == {"bicubic-noaa", "gaussian"} and abs(shared.count("bicubic-noaa") / 1000 - 0.75) < 0.041


# ---- training and the pipeline door --------------------------------------------------------------------------------
def test_a_short_training_run_from_converted_weights_resumes(tmp_path):
    from scripts.convert_safmn import backbone_from_safmn

    from geosr.training.backbone_fit import BackboneTrainConfig, fit_backbone

    torch.set_num_threads(1)
    sd = _fake_safmn()
    init = save_backbone(backbone_from_safmn(sd, torch.ones(36), BackboneConfig(dim=36, scales=(2, 4))),
                         tmp_path / "init.safetensors", name="b")
    rng = np.random.default_rng(0)
    images = [torch.from_numpy(rng.integers(0, 255, (3, 96, 96), dtype=np.uint8)) for _ in range(3)]
    cfg = BackboneTrainConfig(steps=3, batch=2, save_every=1, validate_every=2, scale_weights={4: 1.0, 2: 1.0},
                              lr_patch={2: 16, 4: 16})
    out = tmp_path / "run"
    first = fit_backbone(out, images, images[:1], init=init, cfg=cfg, log=lambda s: None)
    assert first["step"] == 3 and math.isfinite(first["best"]["min"])
    before = load_backbone(out / "model.safetensors")[0].state_dict()
    cfg.steps = 5
    second = fit_backbone(out, images, images[:1], cfg=cfg, resume=True, log=lambda s: None)
    assert second["step"] == 5
    after = load_backbone(out / "model.safetensors")[0].state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert json.loads((out / "state.json").read_text())["step"] == 5


def test_training_validates_at_the_scale_it_trains_most(tmp_path, monkeypatch):
    """The best weights of a run trained mostly at x8 are chosen by their x8 gains, on crops of 48 LR pixels; a
    scale the network has no tail for is not trained, so not validated either."""
    from scripts.convert_safmn import backbone_from_safmn

    import geosr.training.backbone_fit as bf

    assert bf.validation_scale({8: 0.6, 16: 0.4}, [8, 16]) == 8
    assert bf.validation_scale({2: 0.5, 4: 0.5}, [2, 4]) == 4
    seen = []

    def net(x: torch.Tensor, scale: int) -> torch.Tensor:
        seen.append((x.shape[-1], scale))
        return torch.nn.functional.interpolate(x, scale_factor=scale, mode="bilinear")

    img = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (3, 400, 400), dtype=np.uint8))
    out = bf.validate(net, [img], 8)
    assert seen and all(s == (48, 8) for s in seen) and math.isfinite(out["min"])
    # the wiring: x8 has the largest share, but a network with x2 and x4 tails trains and validates at x4
    torch.set_num_threads(1)
    init = save_backbone(backbone_from_safmn(_fake_safmn(), torch.ones(36), BackboneConfig(dim=36, scales=(2, 4))),
                         tmp_path / "init.safetensors", name="b")
    scales = []
    real = bf.validate

    def spy(n, images, scale, **kw):
        scales.append(scale)
        return real(n, images, scale, **kw)

    monkeypatch.setattr(bf, "validate", spy)
    images = [torch.from_numpy(np.random.default_rng(i).integers(0, 255, (3, 96, 96), dtype=np.uint8))
              for i in range(2)]
    cfg = bf.BackboneTrainConfig(steps=2, batch=2, save_every=1, validate_every=1,
                                 scale_weights={8: 0.6, 4: 0.4}, lr_patch={4: 16, 8: 8})
    result = bf.fit_backbone(tmp_path / "run", images, images[:1], init=init, cfg=cfg, log=lambda s: None)
    assert scales == [4, 4] and result["best"]["scale"] == 4


def test_the_registry_loads_a_backbone_checkpoint(tmp_path):
    from geosr.models.interface import model_inputs
    from geosr.models.registry import load_model

    path = save_backbone(_random_backbone(scales=(2, 4)), tmp_path / "lite.safetensors", name="lite",
                         inference={"reference_detail": {"sigma": 8.0}, "lr_consistency": False})
    sr = load_model(str(path))
    # (named by its folder too: "lite" alone is the bundled model's name)
    assert sr.scales == (2, 4) and sr.describe()["model"] == f"{tmp_path.name}/lite"
    assert model_inputs(sr) == {"ref", "cd"}  # through the reference-detail step
    plain = load_model(str(path), reference_detail=False)
    assert model_inputs(plain) == frozenset()
    lr = torch.rand(1, 3, 20, 20) * 2 - 1
    out = plain(_batch(lr, 4, [(0, 0)]), seed=0)
    assert out.shape == (1, 3, 80, 80)


def test_images_too_small_for_every_scale_are_refused_not_looped_on():
    from geosr.errors import InputError
    from geosr.training.backbone_fit import make_batch

    small = [torch.zeros(3, 100, 100, dtype=torch.uint8)]
    with pytest.raises(InputError, match="256 x 256"):
        make_batch(small, 16, 16, 2, np.random.default_rng(0))


def test_backbone_windows_share_the_scene_evenly_unless_the_user_sets_them(tmp_path):
    """Any window size suits the backbone: the plan shrinks its default windows to share the scene evenly
    (tiling.windows.fitted_size) instead of snapping a last window almost onto the one before."""
    import rasterio

    from geosr.pipeline.job import plan_upscale

    src = tmp_path / "lr.tif"
    with rasterio.open(src, "w", driver="GTiff", width=300, height=200, count=3, dtype="uint8", crs="EPSG:32633",
                       transform=rasterio.transform.from_origin(500000, 4000000, 40, 40)) as ds:
        ds.write(np.random.default_rng(0).integers(0, 255, (3, 200, 300), dtype=np.uint8))
    with plan_upscale(src, output=tmp_path / "o.tif", scale=4, model="lite", dry_run=True) as job:
        fitted = job.plan
    with plan_upscale(src, output=tmp_path / "o.tif", scale=4, model="lite", dry_run=True, window=256) as job:
        given = job.plan
    with plan_upscale(src, output=tmp_path / "o.tif", scale=4, model="bicubic", dry_run=True) as job:
        other = job.plan
    # 272 LR px at x4 with 17 of overlap; the 300 px axis needs two windows either way, the 200 px one a single
    # window: fitted, two windows of 200 (the short axis whole) instead of two of 272
    assert (given.size, given.col_starts, given.row_starts) == (256, (0, 44), (0,))
    assert (fitted.size, fitted.overlap, fitted.col_starts, fitted.row_starts) == (200, 17, (0, 100), (0,))
    assert other.size == 64  # other models keep their own windows
    with plan_upscale(src, output=tmp_path / "o.tif", scale=16, model="lite", dry_run=True) as job:
        plan = job.plan  # at most 2048 output px a side: 128 LR px at x16 (8 overlapping), fitted: 3 x 2 of 106
        assert (plan.size, plan.overlap, len(plan.col_starts), len(plan.row_starts)) == (106, 8, 3, 2)


def test_the_training_script_reads_families_with_or_without_shares():
    from scripts.train_backbone import parse_kinds

    from geosr.training.backbone_fit import _selected

    assert parse_kinds(None) is None and parse_kinds("bicubic,box") == ("bicubic", "box")
    shares = parse_kinds("bicubic-noaa:0.6,gaussian:0.2,box")
    assert shares == {"bicubic-noaa": 0.6, "gaussian": 0.2, "box": 1.0}
    assert _selected(shares) == ("box",) and _selected(("bicubic",)) == ("bicubic",) and _selected(None) is None


@pytest.mark.parametrize("levels, h, w", [(4, 37, 53), (4, 64, 48), (3, 17, 9), (2, 5, 70), (1, 12, 12)])
def test_the_fused_gate_regroups_the_plain_gate_and_mixing(levels, h, w):
    """The inference gate computes each pooled group's share of the 1x1 mixing at the group's own resolution and
    adds them coarse to fine: the same values as GELU(aggr(gate(x))), partial pooling cells at the edges included."""
    from geosr.models.backbone import FeatureModulation

    torch.manual_seed(levels + h)
    mod = FeatureModulation(4 * levels, levels).eval()
    x = torch.randn(2, 4 * levels, h, w)
    with torch.inference_mode():
        plain = torch.nn.functional.gelu(mod.aggr(mod.gate(x)))
        fused = mod.fused_gate(x)
        fused_cl = mod.fused_gate(x.contiguous(memory_format=torch.channels_last))
    assert float((fused - plain).abs().max()) < 1e-5 and float((fused_cl - plain).abs().max()) < 1e-5


def test_lite_s_memory_per_window_follows_its_lr_features_and_its_output():
    """One figure per HR pixel (120 B) put a 232-px window of `lite` at 25 MB at x2 and 413 MB at x8, where
    bench/bench_memory.py calibrate measured 100 and 297 MB (121 at x4; 325 for 136 px at x16): the dry run's
    estimate of a lite run at x8 was 1.5-1.9x its peak. The LR-space features now count per LR pixel."""
    from geosr.models.interface import window_memory
    from geosr.models.registry import load_model

    lite = load_model("lite")
    for side, scale, measured_mb in ((232, 2, 100), (232, 4, 121), (232, 8, 297), (136, 16, 325)):
        assert window_memory(lite, side, side, scale) / 2**20 == pytest.approx(measured_mb, rel=0.25), scale


def test_a_write_cut_short_leaves_the_last_whole_model_card(tmp_path, monkeypatch):
    """Found by review: a backbone run's model.json was written in place (O_TRUNC), so a kill mid-write left it
    truncated at its final name; it now goes through a .part file, as the weights do."""
    import pathlib

    net = _random_backbone(scales=(4,))
    path = save_backbone(net, tmp_path / "model.safetensors", name="first", sidecar=True)
    whole = path.with_suffix(".json").read_text()
    real = pathlib.Path.write_text

    def cut_short(self, text, *args, **kwargs):
        real(self, text[: len(text) // 2], *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(pathlib.Path, "write_text", cut_short)
    with pytest.raises(KeyboardInterrupt):
        save_backbone(net, path, name="second", sidecar=True)
    assert path.with_suffix(".json").read_text() == whole


def test_packaging_keeps_the_scales_a_run_claims(tmp_path, monkeypatch):
    """scripts/package_backbone.py wrote every head's scale whatever the run it packaged had trained (a lite run at
    x4 alone, packaged, claimed x2-x16 again; found in review)."""
    import sys

    from scripts import package_backbone as pb

    net = _random_backbone(scales=(2, 4))
    run = save_backbone(net, tmp_path / "run.safetensors", name="run", scales=[4])
    monkeypatch.setattr(pb, "WEIGHTS", tmp_path)
    monkeypatch.setattr(pb, "sample_gains", lambda out: {})
    monkeypatch.setattr(sys, "argv", ["package_backbone.py", "--checkpoint", str(run), "--name", "packed"])
    pb.main()
    assert load_backbone(tmp_path / "packed.safetensors")[1]["scales"] == [4]
