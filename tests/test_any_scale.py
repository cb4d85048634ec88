"""Any integer scale from 2 to 16 (issue 20.4): classical back-ends directly, learned ones at their next trained
scale, resampled exactly onto the asked grid."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from tests.conftest import smooth_field

from geosr import upscale
from geosr.errors import ScaleError
from geosr.models.interface import ConditionBatch
from geosr.models.resample import upsample
from geosr.models.rescale import Rescaled, trained_scale_for


class _Bicubic4:
    """A stand-in 'learned' model trained for x4 only: bicubic, so the rescaled result is known."""

    name, scales, bands, halo, inputs = "b4", (4,), None, 2, frozenset()

    def __init__(self) -> None:
        self.seen: list[ConditionBatch] = []

    def __call__(self, batch: ConditionBatch, *, seed: int) -> torch.Tensor:
        assert batch.scale == 4
        self.seen.append(batch)
        return upsample(batch.lr, 4, "bicubic")


def test_trained_scale_for():
    assert trained_scale_for(6, (2, 4, 8, 16)) == 8 and trained_scale_for(3, (2, 4, 8, 16)) == 4
    assert trained_scale_for(8, (2, 4, 8, 16)) is None and trained_scale_for(5, ()) is None
    assert trained_scale_for(16, (2, 4)) is None


def test_rescaled_runs_the_trained_scale_and_resamples_onto_the_grid():
    inner = _Bicubic4()
    lr = torch.rand(1, 3, 10, 12)
    hr = (1, 1, 30, 36)
    batch = ConditionBatch(lr=lr, lr_valid=torch.ones(1, 1, 10, 12), ref=torch.rand(1, 3, 30, 36),
                           ref_valid=torch.ones(hr), change=torch.zeros(hr, dtype=torch.long),
                           changed=torch.zeros(hr), map=None, offsets=torch.tensor([[30, 6]]), scale=3, halo=0)
    out = Rescaled(inner, 4)(batch, seed=0)
    assert out.shape == (1, 3, 30, 36)
    seen = inner.seen[0]
    assert seen.ref.shape[-2:] == (40, 48) and seen.change.dtype == torch.long
    assert seen.offsets.tolist() == [[40, 8]]  # the same LR position on the x4 grid
    expected = F.interpolate(upsample(lr, 4, "bicubic"), size=(30, 36), mode="bicubic", antialias=True)
    assert torch.allclose(out, expected, atol=1e-6)
    # registered: a linear ramp stays the same ramp, sampled at the x3 pixel centres
    ramp = torch.arange(12, dtype=torch.float32).expand(1, 3, 10, 12).contiguous()
    got = Rescaled(inner, 4)(ConditionBatch(**{**batch.__dict__, "lr": ramp}), seed=0)[0, 0, 5, 6:30]
    centres = (torch.arange(6, 30, dtype=torch.float32) + 0.5) / 3 - 0.5
    assert torch.allclose(got, centres, atol=0.02)


@pytest.mark.parametrize("scale", [3, 5, 6])
def test_odd_scales_through_the_pipeline(raster_factory, tmp_path, scale):
    arr = (smooth_field(3, 24, 20, 1) * 200 + 20).astype(np.uint8)
    src = raster_factory("lr.tif", arr)
    out = tmp_path / f"x{scale}.tif"
    r = upscale(src, output=out, scale=scale, model="bicubic")
    with rasterio.open(out) as ds, rasterio.open(src) as lr:
        assert ds.shape == (24 * scale, 20 * scale)
        assert tuple(ds.bounds) == pytest.approx(tuple(lr.bounds), abs=1e-6)
        assert ds.res == pytest.approx((lr.res[0] / scale, lr.res[1] / scale), rel=1e-12)
    assert r.scale == scale
    with pytest.raises(ScaleError, match="from 2 to 16"):
        upscale(src, output=tmp_path / "x17.tif", scale=17, model="bicubic")


def test_a_loaded_model_runs_at_scales_it_lacks_as_its_name_does(raster_factory, tmp_path):
    """A model object (as `geosr evaluate` loads each model once) was refused at a scale it was not trained for
    ("trained for scale 2, 4, 8, 16, not scale 3"), where the same model by name runs at the next trained scale up
    and is resampled: `geosr evaluate -x 3 -m lite` failed while `geosr upscale -x 3 -m lite` ran."""
    from geosr.models.registry import load_model

    arr = (smooth_field(3, 24, 20, 1) * 200 + 20).astype(np.uint8)
    src = raster_factory("lr.tif", arr)
    model = load_model("lite")
    assert 3 not in model.scales
    upscale(src, output=tmp_path / "object.tif", scale=3, model=model)
    upscale(src, output=tmp_path / "name.tif", scale=3, model="lite")
    with rasterio.open(tmp_path / "object.tif") as a, rasterio.open(tmp_path / "name.tif") as b:
        assert a.shape == (72, 60) and np.array_equal(a.read(), b.read())


@pytest.mark.parametrize("scale", [3, 5, 6])
def test_box_back_projection_holds_at_untrained_scales(scale):
    """Back-projection ran at the trained scale, before the resampling onto the asked grid, so at x3 / x5 / x6 the
    output's box average missed its LR (0.55 DN at most over the bundled sample at x3, where the docs promise the LR
    up to 8-bit rounding). It now runs on the resampled output: the box average is the LR to float precision."""
    from geosr.models.consistency import LRConsistent, box_downsample
    from geosr.pipeline.job import resolve_model

    class Bicubic(_Bicubic4):
        scales = (2, 4, 8, 16)

        def __call__(self, batch: ConditionBatch, *, seed: int) -> torch.Tensor:
            return upsample(batch.lr, batch.scale, "bicubic") + 0.1 * torch.sin(torch.arange(batch.scale * 12.0))

    sr = resolve_model(LRConsistent(Bicubic(), operator="box"), scale, "cpu")
    assert isinstance(sr, LRConsistent) and isinstance(sr.inner, Rescaled) and sr.via == trained_scale_for(
        scale, Bicubic.scales)
    torch.manual_seed(0)
    lr = torch.rand(1, 3, 10, 12) * 2 - 1
    hr = (1, 1, 10 * scale, 12 * scale)
    batch = ConditionBatch(lr=lr, lr_valid=torch.ones(1, 1, 10, 12), ref=torch.rand(1, 3, *hr[2:]),
                           ref_valid=torch.ones(hr), change=torch.zeros(hr, dtype=torch.long),
                           changed=torch.zeros(hr), map=None, offsets=torch.tensor([[0, 0]]), scale=scale, halo=0)
    out = sr(batch, seed=0)
    assert float((box_downsample(out, scale) - lr).abs().max()) < 1e-5
    assert "lr_consistency" in sr.describe() and "rescaled" in sr.describe()


def test_the_reference_moved_to_the_trained_scale_is_interpolated_from_its_valid_pixels_only():
    """x3 runs at x4: the reference is moved onto the x4 grid from its valid pixels alone, so that a gap's edge takes
    no dark fringe from the zeros in it (unguarded; found by mutation testing)."""

    class Probe:
        scales, name, seen = (2, 4, 8, 16), "probe", []

        def __call__(self, batch, *, seed):
            self.seen.append(batch)
            return upsample(batch.lr, batch.scale, "bicubic")

    hr = (1, 1, 30, 36)
    ref, valid = torch.full((1, 3, 30, 36), 0.8), torch.ones(hr)
    valid[..., 18:] = 0  # the right half: no reference (zeros)
    ref[..., 18:] = 0
    batch = ConditionBatch(lr=torch.rand(1, 3, 10, 12), lr_valid=torch.ones(1, 1, 10, 12), ref=ref, ref_valid=valid,
                           change=torch.zeros(hr, dtype=torch.long), changed=torch.zeros(hr), map=None,
                           offsets=torch.tensor([[0, 0]]), scale=3, halo=0)
    probe = Probe()
    Rescaled(probe, 4)(batch, seed=0)
    moved = probe.seen[0]
    inside = moved.ref_valid[0, 0] > 0.5
    assert inside.any() and torch.allclose(moved.ref[0][:, inside], torch.tensor(0.8), atol=1e-5)
