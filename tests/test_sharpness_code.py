"""The scene sharpness code (how the LR was made) and the backbone it modulates: the measure, the network's
zero start, tiling with the scene's code, and the pipeline measuring it once for the whole scene."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import rasterio
import torch

from geosr.models.backbone import BackboneConfig, build_backbone, own_codes
from geosr.models.backbone_sr import BackboneSuperResolver
from geosr.models.degradation_code import CODE_DIMS, lr_sharpness, scene_sharpness
from geosr.models.interface import ConditionBatch
from geosr.training.sensor_degradations import degrade_named


def _texture(seed: int = 0, side: int = 256) -> torch.Tensor:
    """A (3, side, side) [0, 1] image with a natural 1/f amplitude spectrum."""
    rng = np.random.default_rng(seed)
    f = np.fft.fftfreq(side)
    radius = np.hypot(f[:, None], f[None, :])
    radius[0, 0] = 1.0
    spectrum = (rng.standard_normal((side, side)) + 1j * rng.standard_normal((side, side))) / radius
    img = np.real(np.fft.ifft2(spectrum))
    img = (img - img.min()) / np.ptp(img)
    return torch.from_numpy(np.stack([img, img ** 1.2, img ** 0.8]).astype(np.float32))


def test_the_code_orders_the_degradations_and_ignores_gain_and_offset():
    hr = _texture()
    first = {kind: float(lr_sharpness(degrade_named(hr, 4, kind).numpy())[0])
             for kind in ("gaussian", "bicubic", "box", "bicubic-noaa")}
    assert first["gaussian"] < first["bicubic"] < first["box"] < first["bicubic-noaa"]
    assert first["bicubic-noaa"] - first["gaussian"] > 0.6  # well beyond the spread between scenes (about 0.2)
    lr = degrade_named(hr, 4, "bicubic").numpy()
    per_band = lr * np.array([1.0, 4.0, 0.3])[:, None, None] + np.array([0.0, -2.0, 5.0])[:, None, None]
    assert np.allclose(lr_sharpness(lr), lr_sharpness(per_band), atol=1e-4)  # each band's stretch, as upscale's


def test_flat_tiny_and_invalid_images_give_a_defined_code():
    assert lr_sharpness(np.full((3, 64, 64), 0.3)).tolist() == [0.0, 0.0]
    assert lr_sharpness(np.zeros((3, 3, 3))).tolist() == [0.0, 0.0]
    lr = degrade_named(_texture(1), 4, "bicubic").numpy()
    holed = lr.copy()
    holed[:, :20] = np.nan  # nodata left as NaN is left out, not propagated
    valid = np.isfinite(holed[0])
    code = lr_sharpness(holed, valid)
    assert np.isfinite(code).all() and np.allclose(code, lr_sharpness(lr[:, 20:]), atol=0.1)
    assert scene_sharpness([]) == (0.0,) * CODE_DIMS
    # a scene's code weighs its samples by their valid pixels
    one = scene_sharpness([(lr, np.ones(lr.shape[1:], bool))])
    assert np.allclose(one, lr_sharpness(lr), atol=1e-5)


def _coded_backbone(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = build_backbone(BackboneConfig(blocks=1, levels=2, dim=8, scales=(4,), code_dims=CODE_DIMS))
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.1)
    return net.eval()


def test_adding_the_code_changes_nothing_until_trained():
    from geosr.training.backbone_fit import with_code

    torch.manual_seed(0)
    plain = build_backbone(BackboneConfig(blocks=2, levels=2, dim=8, scales=(4,))).eval()
    with torch.no_grad():
        plain.tails["4"].weight.normal_(0, 0.1)
    grown = with_code(plain).eval()
    lr = torch.rand(2, 3, 48, 48) * 2 - 1  # large enough to be measured (MIN_PIXELS inside the margin)
    assert torch.equal(plain(lr, 4), grown(lr, 4, torch.randn(2, CODE_DIMS)))
    # and once trained, the code does change the output
    coded = _coded_backbone()
    assert not torch.allclose(coded(lr, 4, torch.zeros(2, CODE_DIMS)), coded(lr, 4, torch.ones(2, CODE_DIMS)))
    # no code: each image measures its own
    assert torch.allclose(own_codes(lr)[1], torch.from_numpy(lr_sharpness(lr[1].numpy())))
    assert torch.allclose(coded(lr[1:], 4), coded(lr[1:], 4, torch.from_numpy(lr_sharpness(lr[1].numpy()))[None]))
    assert not torch.allclose(coded(lr[1:], 4), coded(lr[1:], 4, own_codes(lr[:1])), atol=1e-5)


def test_the_code_network_sees_the_scale_and_older_code_weights_load_without_it():
    from geosr.training.backbone_fit import with_code

    torch.manual_seed(0)
    net = build_backbone(BackboneConfig(blocks=1, levels=2, dim=8, scales=(2, 4), code_dims=CODE_DIMS)).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.1)
    lr, code = torch.rand(1, 3, 24, 24) * 2 - 1, torch.tensor([[0.5, -0.2]])
    film = net.code_net(torch.cat([code, torch.full((1, 1), 0.5)], dim=1))  # x4: log2(4) / 4
    assert not torch.allclose(film, net.code_net(torch.cat([code, torch.full((1, 1), 0.25)], dim=1)))
    # a state whose code MLP had no scale input: the same network, the scale's weights at zero
    old = {k: v for k, v in net.state_dict().items()}
    old["code_net.0.weight"] = old["code_net.0.weight"][:, :CODE_DIMS].clone()
    plain = build_backbone(BackboneConfig(blocks=1, levels=2, dim=8, scales=(2, 4)))
    grown = with_code(plain, old).eval()
    assert torch.equal(grown.code_net[0].weight[:, CODE_DIMS], torch.zeros(64))
    with torch.no_grad():
        net.code_net[0].weight[:, CODE_DIMS] = 0
    assert torch.equal(grown(lr, 4, code), net(lr, 4, code)) and torch.equal(grown(lr, 2, code), net(lr, 2, code))


def _batch(lr: torch.Tensor, offsets, sharpness=None) -> ConditionBatch:
    b, c, h, w = lr.shape
    hr = (b, 1, h * 4, w * 4)
    return ConditionBatch(lr=lr, lr_valid=torch.ones(b, 1, h, w), ref=torch.zeros(b, c, h * 4, w * 4),
                          ref_valid=torch.zeros(hr), change=torch.zeros(hr, dtype=torch.long), changed=torch.zeros(hr),
                          map=None, offsets=torch.tensor(offsets), scale=4, halo=0, sharpness=sharpness)


def test_windows_told_the_scene_code_compute_what_the_scene_computes():
    torch.set_num_threads(1)
    sr = BackboneSuperResolver(_coded_backbone(), {"halo": 16})
    assert sr.wants_sharpness
    scene = torch.rand(1, 3, 96, 96) * 2 - 1
    code = tuple(float(v) for v in own_codes(scene)[0])
    whole = sr(_batch(scene, [(0, 0)], code), seed=0)
    win = scene[:, :, 21:69, 35:83]
    told = sr(_batch(win, [(84, 140)], code), seed=0)[..., 64:128, 64:128]
    expected = whole[..., 84 + 64 : 84 + 128, 140 + 64 : 140 + 128]
    assert torch.allclose(told, expected, atol=1e-5)
    own = sr(_batch(win, [(84, 140)]), seed=0)[..., 64:128, 64:128]  # its own code differs from the scene's
    assert not torch.allclose(own, expected, atol=1e-4)


def test_the_pipeline_measures_the_code_once_for_the_scene_and_records_it(tmp_path, monkeypatch):
    from geosr.models.backbone_checkpoint import save_backbone
    from geosr.pipeline.upscale import upscale

    ckpt = save_backbone(_coded_backbone(), tmp_path / "coded.safetensors", name="coded")
    hr = _texture(2, 512)
    lr = (degrade_named(hr[:1], 4, "bicubic").numpy() * 255).round().astype(np.uint8).repeat(3, axis=0)
    src = tmp_path / "lr.tif"
    profile = dict(driver="GTiff", width=128, height=128, count=3, dtype="uint8", crs="EPSG:32633",
                   transform=rasterio.transform.from_origin(500000, 4000000, 40, 40))
    with rasterio.open(src, "w", **profile) as ds:
        ds.write(lr)
    out = tmp_path / "sr.tif"
    told: list = []
    real_call = BackboneSuperResolver.__call__

    def spy(self, batch, *, seed):
        told.append(batch.sharpness)
        return real_call(self, batch, seed=seed)

    monkeypatch.setattr(BackboneSuperResolver, "__call__", spy)
    upscale(src, output=out, model=str(ckpt), scale=4, window=48, overlap=16)
    assert len(told) > 1 and len(set(told)) == 1  # every window was told the one code of the scene
    with rasterio.open(out) as ds:
        recorded = json.loads(ds.tags()["GEOSR_LR_SHARPNESS"])
    # the whole scene at full resolution (equal bands: the stretch is one gain and offset, which it ignores)
    assert np.allclose(recorded, lr_sharpness(lr.astype(np.float64)), atol=1e-3)
    assert told[0] == tuple(recorded)


@pytest.mark.parametrize("shape", [(128, 128), (24, 200)])
def test_a_large_scene_is_sampled_at_full_resolution_in_four_distinct_windows(tmp_path, shape):
    from geosr.pipeline.job import plan_upscale

    h, w = shape
    values = np.arange(h * w, dtype=np.float32).reshape(h, w)  # every pixel tells where it is
    src = tmp_path / "lr.tif"
    with rasterio.open(src, "w", driver="GTiff", width=w, height=h, count=1, dtype="float32", crs="EPSG:32633",
                       transform=rasterio.transform.from_origin(500000, 4000000, 10, 10)) as ds:
        ds.write(values[None])
    with plan_upscale(src, output=tmp_path / "o.tif", scale=2, model="bicubic") as job:
        side = 16 if h > 100 else 12  # 4 x side^2 below the area: the sampled branch
        samples = job.scene.lr_samples(side=side)
        stretch = job.scene.stretch
    assert len(samples) == 4
    starts = set()
    for data, valid in samples:
        raw = stretch.inverse(data.astype(np.float64))[0]
        assert valid.all() and data.shape[-2:] == (min(side, h), min(side, w))
        r, c = divmod(int(round(raw[0, 0])), w)
        assert np.allclose(raw, values[r : r + raw.shape[0], c : c + raw.shape[1]], atol=0.5)  # not decimated
        starts.add((r, c))
    assert len(starts) == 4  # four distinct windows, also along a narrow strip


def test_the_spec_bound_matches_the_code():
    from geosr.models import spec_bounds

    assert spec_bounds.SHARPNESS_CODE_DIMS == CODE_DIMS


@pytest.mark.parametrize("dims", [1, 3, True, 2.0])
def test_a_checkpoint_with_another_code_size_is_refused(tmp_path, dims):
    from geosr.errors import ModelFileError
    from geosr.models.backbone_checkpoint import load_backbone, save_backbone

    path = save_backbone(_coded_backbone(), tmp_path / "c.safetensors", name="c")
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    spec = json.loads(meta["geosr_spec"])
    spec["arch"]["code_dims"] = dims
    save_file(tensors, str(path), metadata={"geosr_spec": json.dumps(spec)})
    with pytest.raises(ModelFileError, match="code_dims"):  # the spec's bounds, before any shape is compared
        load_backbone(path)


def test_too_small_an_image_has_no_code():
    """Fewer than MIN_PIXELS inside the margin: one scene's texture would move the code as much as the degradation
    does, so it is zero (the blind expert's place) rather than a guess."""
    from geosr.models.degradation_code import MARGIN, MIN_PIXELS

    side = math.isqrt(MIN_PIXELS) + 2 * MARGIN
    rng = np.random.default_rng(0)
    big = rng.random((3, side, side))
    assert np.abs(lr_sharpness(big)).min() > 0.01
    assert np.array_equal(lr_sharpness(big[:, 1:, 1:]), np.zeros(CODE_DIMS, np.float32))
    valid = np.ones((side, side), bool)
    valid[side // 2] = False  # a row of holes: its neighbours are dropped too
    assert np.array_equal(lr_sharpness(big, valid), np.zeros(CODE_DIMS, np.float32))
