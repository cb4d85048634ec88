"""The bundled LR-space model ``lite``: golden values on the bundled sample at every scale, and no regular texture
on smooth ground."""

from __future__ import annotations

import json

import pytest
import torch

from geosr.models.registry import bundled_checkpoints, load_model

pytestmark = pytest.mark.skipif("lite" not in bundled_checkpoints(), reason="no bundled lite model")

# PSNR-Y gain over bicubic on the sample (Landsat TM, Taizhou 2003), measured when the weights were shipped;
# the test allows 0.05 dB below. x16 is scored on its 2 x 2 average against the 30 m truth.
GOLDEN_GAIN_DB = json.loads((bundled_checkpoints()["lite"].with_suffix(".json")).read_text()).get(
    "metrics", {}).get("sample_gain_db", {}) if "lite" in bundled_checkpoints() else {}


@pytest.mark.parametrize("scale", [2, 4, 8, 16])
def test_golden_gain_over_bicubic_on_the_sample(scale, tmp_path):
    from scripts.package_backbone import sample_gain  # the measurement that recorded the golden gains

    torch.set_num_threads(1)
    gain = sample_gain("lite", scale, tmp_path)
    assert str(scale) in GOLDEN_GAIN_DB, "the shipped spec records the sample's golden gains"
    assert gain >= GOLDEN_GAIN_DB[str(scale)] - 0.05


def test_no_regular_texture_on_a_flat_noisy_field():
    """The old default drew a grid with the scale's period on smooth fields: the mean of each of the s x s output
    phases then differs. On flat ground plus sensor noise every phase must have the same mean."""
    torch.set_num_threads(1)
    sr = load_model("lite", reference_detail=False, lr_consistency=False)
    g = torch.Generator().manual_seed(0)
    for scale in (4, 8):
        lr01 = 0.45 + 0.01 * torch.randn(1, 3, 96, 96, generator=g)
        with torch.no_grad():
            out = sr.net(lr01 * 2 - 1, scale)[..., 32:-32, 32:-32]
        h, w = out.shape[-2:]
        phases = out.reshape(3, h // scale, scale, w // scale, scale).mean(dim=(1, 3))  # (3, s, s)
        spread = (phases - phases.mean(dim=(1, 2), keepdim=True)).abs().max()
        assert float(spread) < 2 * 0.5 / 255  # under half an 8-bit step of the [0, 1] range, in model space


def test_each_window_runs_the_network_once_whatever_the_batch_size(tmp_path, monkeypatch):
    """A lone window in its batch ran as a batch of two (for the diffusion model's kernels), which for `lite`,
    whose network takes windows singly anyway, computed it twice: a one-window scene cost twice its time. Each window
    now goes through all of lite's steps alone, so its pixels cannot depend on the batch size either."""
    import numpy as np
    import rasterio
    from affine import Affine

    from conftest import make_raster, smooth_field
    from geosr import upscale
    from geosr.models import backbone

    calls = []
    forward = backbone.LRBackbone.forward
    monkeypatch.setattr(backbone.LRBackbone, "forward", lambda self, *a, **k: calls.append(1) or forward(self, *a, **k))
    data = (smooth_field(3, 40, 60) * 200 + 20).astype(np.uint8)
    lr = make_raster(tmp_path / "lr.tif", data)
    ref = make_raster(tmp_path / "ref.tif", (smooth_field(3, 160, 240, seed=3) * 255).astype(np.uint8),
                      transform=Affine(2.5, 0, 500000.0, 0, -2.5, 5000000.0))
    pixels = []
    for batch in (2, 1):  # three windows a row: batches of two and one
        calls.clear()
        res = upscale(lr, output=tmp_path / f"b{batch}.tif", scale=4, model="lite", batch_size=batch, ref=ref,
                      cd="none", window=24, overlap=4)
        assert len(calls) == res.windows, (batch, len(calls), res.windows)
        with rasterio.open(res.output) as ds:
            pixels.append(ds.read())
    assert res.windows == 6 and np.array_equal(*pixels)


def test_a_scene_the_network_runs_away_on_gets_bicubic_and_a_warning(tmp_path):
    """On a 3 x 1 px scene, or one of three flat stripes, the LR-space network's output ran away (1e6 in model space)
    and was written as noise of 0 and 255, exit 0, no warning (found in review). Such a window gets bicubic, and the
    run says so."""
    import numpy as np
    import rasterio
    from affine import Affine

    from geosr import upscale

    vals = np.array([[219, 114, 225], [127, 111, 153], [233, 224, 118]], np.uint8)
    stripes = np.broadcast_to(vals[:, np.searchsorted([4, 20], np.arange(40), side="right")][:, None, :],
                              (3, 31, 40)).copy()
    tiny = np.array([[[141, 157, 182]], [[173, 174, 185]], [[150, 136, 104]]], np.uint8)
    for name, data in (("stripes", stripes), ("tiny", tiny)):
        with rasterio.open(tmp_path / f"{name}.tif", "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
                           count=3, dtype="uint8", crs="EPSG:32633",
                           transform=Affine(10, 0, 500000, 0, -10, 5700000)) as ds:
            ds.write(data)
        result = upscale(tmp_path / f"{name}.tif", output=tmp_path / f"{name}_x2.tif", scale=2, model="lite")
        bicubic = upscale(tmp_path / f"{name}.tif", output=tmp_path / f"{name}_b.tif", scale=2, model="bicubic")
        assert any("its output ran away on 1 of the windows" in w for w in result.warnings), result.warnings
        with rasterio.open(tmp_path / f"{name}_x2.tif") as a, rasterio.open(tmp_path / f"{name}_b.tif") as b:
            assert np.array_equal(a.read(), b.read()), name
        assert not bicubic.warnings
    lite = load_model("lite")  # one model for two runs (as geosr evaluate's): each run counts its own windows
    for i in range(2):
        again = upscale(tmp_path / "stripes.tif", output=tmp_path / f"again{i}.tif", scale=2, model=lite)
        assert [w for w in again.warnings if "ran away" in w] == [
            "model lite: its output ran away on 1 of the windows computed (a scene of a few pixels or of flat "
            "areas); bicubic is written there"], again.warnings
    # a diffusion model sampling on it says so too (default+lite said nothing; found in review)
    composite = upscale(tmp_path / "stripes.tif", output=tmp_path / "dl.tif", scale=2, model="default+lite", steps=0)
    assert any("ran away on 1 of the windows" in w for w in composite.warnings), composite.warnings


def test_an_overshoot_in_the_cropped_halo_alone_is_no_run_away():
    """On a textured 4-band LR at x4, 349 output pixels of 2.9M overshot in a window's halo (which the pipeline
    crops) and the whole window got bicubic, with a warning (found in review). Only the window's core is judged;
    a run-away there is still caught."""
    import torch

    from geosr.models.backbone_checkpoint import load_backbone
    from geosr.models.backbone_sr import BackboneSuperResolver
    from geosr.models.interface import ConditionBatch
    from geosr.models.registry import resolve_checkpoint
    from geosr.models.resample import upsample

    net, spec = load_backbone(resolve_checkpoint("lite"))
    sr = BackboneSuperResolver(net, spec, device=torch.device("cpu"), name="lite")
    lr = torch.rand(1, 3, 40, 40) * 2 - 1
    halo, s, NAN = 8, 4, float("nan")
    hr = (1, 1, 160, 160)
    batch = ConditionBatch(lr=lr, lr_valid=torch.ones(1, 1, 40, 40), ref=torch.zeros(1, 3, 160, 160),
                           ref_valid=torch.zeros(hr), change=torch.zeros(hr, dtype=torch.long), changed=torch.zeros(hr),
                           map=None, offsets=torch.tensor([(0, 0)]), scale=s, halo=halo)
    # (the halo's outer 6 of 8 LR px: 24 output rows nothing reads; its inner 2 a diffusion model sampling on it reads)
    for where, value, ran_away in (((slice(2, 5), slice(50, 60)), 9.0, 0), ((slice(70, 73), slice(70, 80)), 9.0, 1),
                                   ((slice(26, 28), slice(50, 60)), 9.0, 1), ((slice(2, 5), slice(50, 60)), NAN, 1)):
        def spiking(x, scale, code, where=where, value=value):
            out = upsample(x, scale, "bicubic")
            out[..., where[0], where[1]] = value  # (9: 4.5 times the LR's range; NaN anywhere is never kept)
            return out

        sr.net, sr.ran_away = spiking, 0
        got = sr(batch, seed=0)
        assert sr.ran_away == ran_away, (where, value)
        assert (float(got.amax()) == 9.0) == (ran_away == 0) and bool(torch.isfinite(got).all())
