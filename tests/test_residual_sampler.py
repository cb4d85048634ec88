"""A diffusion model sampling on a backbone's prediction (``DIFFUSION+BACKBONE``): ``steps`` 0 is the backbone,
the denoiser adds its detail inside the window, the halo keeps the prediction, the registry builds and refuses."""

from __future__ import annotations

import json
import re

import pytest
import torch

from geosr.config import SamplerConfig
from geosr.errors import InputNotFoundError, OptionError
from geosr.models.backbone import BackboneConfig, build_backbone
from geosr.models.backbone_sr import BackboneSuperResolver
from geosr.models.configs import ArchConfig
from geosr.models.diffusion import DiffusionSuperResolver
from geosr.models.edm import build_denoiser
from geosr.models.interface import ConditionBatch
from geosr.models.registry import is_composite, load_model
from geosr.models.residual_sampler import ResidualSampler, crop_halo

MICRO = dict(name="micro-res", patch=2, base_channels=8, channel_mult=[1, 2], blocks_per_level=1, attn_levels=[],
             head_channels=8, dropout=0.0, sft_hidden=8, spade_hidden=8, guidance_channels=4, style=False,
             residual=True, sigma_data=0.4)
SCALE, HALO = 4, 16


def _backbone() -> BackboneSuperResolver:
    torch.manual_seed(0)
    net = build_backbone(BackboneConfig(dim=8, blocks=1, scales=(2, 4)))
    with torch.no_grad():
        for p in net.parameters():  # the tails start at zero: give every weight a value
            p.normal_(0, 0.1)
    return BackboneSuperResolver(net.eval(), {"halo": HALO}, name="bb")


def _diffusion(adds_detail: bool) -> DiffusionSuperResolver:
    torch.manual_seed(1)
    model = build_denoiser(ArchConfig(**MICRO), n_bands=3, n_change_classes=2).eval()
    with torch.no_grad():
        model.net.out_conv.weight.normal_(0, 0.5 if adds_detail else 0.0)
        model.net.out_conv.bias.zero_()
    return DiffusionSuperResolver(model, {"scales": [SCALE], "halo": 2}, sampler=SamplerConfig(steps=1), name="dm")


def _batch(h: int = 40, w: int = 44) -> ConditionBatch:
    torch.manual_seed(2)
    H, W = h * SCALE, w * SCALE
    z = torch.zeros(1, 1, H, W)
    return ConditionBatch(lr=torch.rand(1, 3, h, w) * 2 - 1, lr_valid=torch.ones(1, 1, h, w),
                          ref=torch.rand(1, 3, H, W) * 2 - 1, ref_valid=torch.ones(1, 1, H, W), change=z.long(),
                          changed=z, map=None, offsets=torch.tensor([[64, 128]]), scale=SCALE, halo=HALO)


def test_cropping_the_halo_keeps_the_grids_together():
    batch = _batch()
    inner = crop_halo(batch, 14)
    assert inner.lr.shape[-2:] == (12, 16) and inner.ref.shape[-2:] == (48, 64)
    assert inner.halo == 2 and inner.offsets.tolist() == [[64 + 56, 128 + 56]]
    assert torch.equal(inner.ref, batch.ref[..., 56:-56, 56:-56])
    assert torch.equal(inner.lr, batch.lr[..., 14:-14, 14:-14])


def test_zero_steps_is_the_backbone_and_a_silent_denoiser_keeps_it():
    batch, backbone = _batch(), _backbone()
    expected = backbone(batch, seed=0)
    zero = ResidualSampler(_diffusion(False), backbone, steps=0)
    assert zero.halo == HALO and zero.scales == (SCALE,) and zero.inputs == frozenset() and zero.nfe() == 0
    assert torch.equal(zero(batch, seed=0), expected)
    silent = ResidualSampler(_diffusion(False), backbone)
    # one step from sigma_max: the base plus c_skip(80) * noise, about 2.5e-5 * 80 * N(0, 1)
    assert torch.allclose(silent(batch, seed=0), expected, atol=0.02)


def test_the_denoiser_adds_detail_inside_the_window_and_the_halo_keeps_the_prediction():
    batch, backbone = _batch(), _backbone()
    base = backbone(batch, seed=0)
    out = ResidualSampler(_diffusion(True), backbone)(batch, seed=0)
    ring = (HALO - 2) * SCALE
    inside = (out - base)[..., ring:-ring, ring:-ring]
    assert inside.abs().mean() > 0.05, "the denoiser's detail is added"
    edge = torch.ones_like(out, dtype=torch.bool)
    edge[..., ring:-ring, ring:-ring] = False
    assert torch.equal(out[edge], base[edge])


def test_the_registry_builds_a_sampler_on_a_backbone_and_refuses_the_wrong_order():
    assert is_composite("default+lite") and not is_composite("default") and not is_composite("bicubic")
    sr = load_model("default+lite", sampler=SamplerConfig(steps=0), lr_consistency="off", reference_detail=False)
    assert isinstance(sr, ResidualSampler) and sr.steps == 0 and sr.halo == 16
    assert "+" in sr.checksum and sr.describe()["backbone"]["model"] == "lite"
    assert sr.tiling_for(8) == sr.backbone.tiling_for(8) and sr.fit_windows  # the backbone alone: its windows
    assert not hasattr(load_model("default+lite"), "tiling_for"), "a sampling run keeps the denoiser's windows"
    with pytest.raises(OptionError, match="diffusion model, then an LR-space backbone"):
        load_model("lite+default")
    with pytest.raises(OptionError, match="steps 0 is the prediction of a model that samples on a backbone"):
        load_model("default", sampler=SamplerConfig(steps=0))
    for half in ("default+", "+lite"):  # was "model file . is not a file"
        with pytest.raises(OptionError, match=f"model {re.escape(half)}: DIFFUSION.* one is missing"):
            load_model(half)


def test_upscale_runs_a_sampler_on_a_backbone_and_records_both(tmp_path):
    import json

    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    from geosr import upscale

    src = tmp_path / "lr.tif"
    data = (np.random.default_rng(0).random((3, 40, 48)) * 200 + 20).astype(np.uint8)
    with rasterio.open(src, "w", driver="GTiff", width=48, height=40, count=3, dtype="uint8", crs="EPSG:32633",
                       transform=from_origin(500000, 4000000, 40, 40)) as ds:
        ds.write(data)
    outs = {}
    for steps in (0, 1):
        out = tmp_path / f"o{steps}.tif"
        upscale(src, output=out, scale=2, model="default+lite", steps=steps)
        with rasterio.open(out) as ds:
            assert (ds.width, ds.height, ds.crs.to_epsg()) == (96, 80, 32633)
            settings = json.loads(ds.tags()["GEOSR_MODEL_SETTINGS"])
            outs[steps] = ds.read().astype(np.int16)
        assert settings["model"] == "default+lite" and settings["backbone"]["model"] == "lite"
        assert ("sampler" in settings) == (steps == 1)
    assert np.abs(outs[1] - outs[0]).mean() > 0.5, "the sampled detail changes the backbone's prediction"


def test_the_memory_estimate_counts_the_denoiser_on_the_inner_part_only():
    from geosr.models.interface import window_memory

    backbone, diffusion = _backbone(), _diffusion(False)
    sampler, alone = ResidualSampler(diffusion, backbone), ResidualSampler(diffusion, backbone, steps=0)
    hr = 64 * 64 * 8**2  # a 32-px window at x8 with the 16-px halo
    inner = 36 * 36 * 8**2  # the denoiser's: its own 2-px halo
    assert window_memory(sampler, 64, 64, 8) == inner * diffusion.memory_per_hr_pixel + hr * 3 * 8
    # the backbone: its LR-space features per LR pixel, its output per HR pixel
    assert window_memory(alone, 64, 64, 8) == 64 * 64 * backbone.memory_per_lr_pixel + hr * backbone.memory_per_hr_pixel
    assert window_memory(diffusion, 36, 36, 8) == inner * diffusion.memory_per_hr_pixel  # others: per HR pixel


def test_a_missing_file_with_a_plus_or_three_models_are_named_as_given(tmp_path):
    """`-m dir/x+y.safetensors` (missing) said "model file dir/x does not exist", a file never given; and
    `default+lite+lite` said "unknown model 'default+lite'" while `geosr models` lists it."""
    missing = tmp_path / "x+y.safetensors"
    with pytest.raises(InputNotFoundError, match=f"model file {re.escape(str(missing))} does not exist"):
        load_model(str(missing))
    # one side a model: the other side's file is the one named missing (it said "model file default+x... does not
    # exist"; found in review)
    gone = tmp_path / "gone.safetensors"
    with pytest.raises(InputNotFoundError, match=rf"^model default\+{re.escape(str(gone))}: its backbone file "
                                                 rf"{re.escape(str(gone))} does not exist \(nor a model file of"):
        load_model(f"default+{gone}")
    with pytest.raises(OptionError, match=r"model default\+lite\+lite: DIFFUSION\+BACKBONE names two models .*not 3"):
        load_model("default+lite+lite")
    (tmp_path / "bb.safetensors").write_bytes(b"x")  # a classical back-end's part is named as such, not as missing
    with pytest.raises(OptionError, match="bicubic is a classical back-end, neither"):
        load_model(f"bicubic+{tmp_path / 'bb.safetensors'}")


def _with_spec(src, dst, **changes):
    """A copy of the checkpoint ``src`` at ``dst`` with its spec's keys changed."""
    import json as json_

    from safetensors import safe_open
    from safetensors.torch import save_file

    from geosr.models.checkpoint import SPEC_KEY

    with safe_open(str(src), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is no mapping)
        spec = json_.loads(f.metadata()[SPEC_KEY])
    save_file(tensors, str(dst), metadata={SPEC_KEY: json_.dumps({**spec, **changes})})
    return dst


def test_no_output_replaces_a_file_the_model_reads(tmp_path, monkeypatch):
    """Only a --model given as a file was protected: `-o` over a bundled model given by name, either part of a
    DIFFUSION+BACKBONE or the backbone a checkpoint's spec names, with --overwrite, replaced the weights with the
    output (found in review). Each is refused as the model of the run, and nothing is written."""
    import shutil

    from typer.testing import CliRunner

    from geosr.cli.app import app
    from geosr.models import registry
    from geosr.sample_scene import sample_paths

    weights = tmp_path / "weights"
    weights.mkdir()
    for name in ("default", "lite"):
        shutil.copy(registry.bundled_checkpoints()[name], weights / f"{name}.safetensors")
    monkeypatch.setattr(registry, "WEIGHTS_DIR", weights)  # the bundled models, copied: a failure destroys a copy
    victim = shutil.copy(weights / "lite.safetensors", tmp_path / "victim.safetensors")
    own = _with_spec(weights / "default.safetensors", tmp_path / "own.safetensors", backbone=str(victim))
    lr = str(sample_paths()["lr"])
    for model, out in (("lite", weights / "lite.safetensors"), (f"default+{victim}", victim), (str(own), victim),
                       ("default+lite", weights / "default.safetensors")):
        kept = out.read_bytes()
        res = CliRunner().invoke(app, ["upscale", lr, "-x", "4", "-m", model, "-o", str(out), "--overwrite",
                                       "--json"])
        error = json.loads(res.output)["error"]
        assert res.exit_code == 2 and error == f"{out}: is the model of this run; write the output to another path", \
            (model, error)
        assert out.read_bytes() == kept


def test_a_backbone_path_holding_a_plus_and_a_file_named_as_a_composite(tmp_path, monkeypatch):
    """DIFFUSION+BACKBONE was split at its last "+": a backbone in runs/x4+x8/ could not be named, nor loaded from a
    checkpoint's spec ("model file ...+... does not exist"); and a file named default+lite in the working folder
    replaced the bundled composite (output tagged default+lite, made by the bare backbone). Found in review."""
    import shutil

    from geosr.models import registry
    from geosr.models.residual_sampler import ResidualSampler

    folder = tmp_path / "runs" / "x4+x8"
    folder.mkdir(parents=True)
    backbone = shutil.copy(registry.bundled_checkpoints()["lite"], folder / "model.safetensors")
    own = _with_spec(registry.bundled_checkpoints()["default"], tmp_path / "own.safetensors", backbone=str(backbone))
    for spec in (f"default+{backbone}", str(own)):
        sr = registry.load_model(spec, sampler=SamplerConfig(steps=0))
        while not isinstance(sr, ResidualSampler):
            sr = sr.inner
        assert sr.backbone.checksum == registry.file_sha256(backbone)
    # named as a plain checkpoint is, whatever the spelling: the path as typed was its name (found in review)
    names = {registry.load_model(spec, sampler=SamplerConfig(steps=0)).name
             for spec in (f"default+{backbone}", f"default+{tmp_path}/runs/./x4+x8/model.safetensors")}
    assert names == {"default+x4+x8/model"}
    assert registry.load_model(str(own), sampler=SamplerConfig(steps=0)).name == \
        registry.load_model(f"{tmp_path}/./own.safetensors", sampler=SamplerConfig(steps=0)).name == "own"
    monkeypatch.chdir(tmp_path)
    shutil.copy(backbone, tmp_path / "default+lite")
    sr = registry.load_model("default+lite", sampler=SamplerConfig(steps=0))
    while not isinstance(sr, ResidualSampler):
        sr = sr.inner
    assert sr.diffusion.checksum == registry.file_sha256(registry.bundled_checkpoints()["default"])


def test_a_nan_in_the_lr_or_the_base_ends_and_the_base_s_type_is_not_the_output_s():
    """A NaN beside a base beyond the model's range (or an LR beyond it, beside a base) called the model again and
    again: clamping keeps NaN, and NaN != NaN read as "still beyond" (a RecursionError; found in review). And the
    base's excess, added back, made a float64 base's output float64."""
    dm = _diffusion(True)
    batch = _batch(8, 8)
    base = torch.rand(1, 3, 32, 32) * 2 - 1
    base[0, 0, 0, 0] = 5.0  # beyond the range
    base[0, 1, 3, 3] = float("nan")
    out = dm(batch, seed=0, base=base)
    assert out.shape == base.shape and out.dtype == torch.float32
    lr = batch.lr.clone()
    lr[0, 0, 1, 1], lr[0, 1, 2, 2] = 9.0, float("nan")
    # (with a base, the LR is not what the model is conditioned on: its NaN reaches nothing)
    assert dm(ConditionBatch(**{**batch.__dict__, "lr": lr}), seed=0, base=base.nan_to_num(0.0)).isfinite().all()
    wide = base.double().nan_to_num(0.0)
    assert dm(batch, seed=0, base=wide).dtype == torch.float32
    # beyond the range only in the base: its excess, and nothing else, added back to the clamped base's output
    kept = wide.clamp(-2, 2).float()
    assert torch.allclose(dm(batch, seed=0, base=wide) - dm(batch, seed=0, base=kept), (wide - kept).float())
