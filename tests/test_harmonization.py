"""Radiometric harmonization of the reference: local gain and bias fields over the scene (issue 19.3), the
unchanged pixels it is fitted on."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from tests.test_detect_changes import _textured

from conftest import make_raster, smooth_field
from geosr.conditioning.changes import BINARY
from geosr.conditioning.reference import fit_harmonization, fit_local_harmonization
from geosr.pipeline.scene import Scene
from geosr.tiling.grid import Grid, hr_grid


def test_local_harmonization_follows_a_gain_that_varies_over_the_scene():
    """A reference whose brightness drifts across the scene (another light, haze) is mapped back far better by the
    local fields than by one global fit, and windows read at any position see the same continuous fields."""
    lr = _textured(192, 192, 4) * 100 + 20
    ramp = np.linspace(0.6, 1.4, 192)[None, None, :]
    ref = (lr - 20) * ramp + 5 * ramp  # gain and bias both drift from left to right
    ok = np.ones((192, 192), bool)
    glob = fit_harmonization(lr, ok, ref, ok)
    local = fit_local_harmonization(lr, ok, ref, ok)
    assert local.field_gain is not None and local.field_gain.shape[1:] == (6, 6)
    err_global = np.abs(glob.apply(ref) - lr)[:, 32:-32, 32:-32].mean()
    err_local = np.abs(local.apply(ref, origin=(0, 0), step=1.0) - lr)[:, 32:-32, 32:-32].mean()
    assert err_local < 0.3 * err_global
    # a window at (40, 72), 4 output pixels per LR pixel, agrees with the whole area resampled there
    win = np.repeat(np.repeat(ref[:, 40:56, 72:96], 4, axis=1), 4, axis=2)
    got = local.apply(win, origin=(40, 72), step=0.25)
    whole = local.apply(ref, origin=(0, 0), step=1.0)
    np.testing.assert_allclose(got[:, 1::4, 1::4], whole[:, 40:56, 72:96], atol=0.05 * np.abs(whole).mean())
    assert local.to_dict()["local"]["cells"] == [6, 6]
    small = fit_local_harmonization(lr[:, :64, :64], ok[:64, :64], ref[:, :64, :64], ok[:64, :64])
    assert small.field_gain is None  # under three cells a side: the global fit


def test_local_harmonization_is_placed_along_rows_as_along_columns_on_an_oblong_scene():
    """The fields' cells on a scene of 150 x 400 LR pixels are 37.5 rows by 33.3 columns: a gain drifting down the
    rows is followed as well as the same drift across the columns of the scene turned (the fields placed half a cell
    off along rows, or with the cells' sides swapped, passed the square scene's test above unseen; found by mutation
    testing)."""
    rng = np.random.default_rng(0)
    lr = rng.random((1, 150, 400)) * 100 + 20
    ok = np.ones((150, 400), bool)
    errors = {}
    for axis, n in ((1, 150), (2, 400)):
        ramp = np.linspace(0.6, 1.4, n).reshape((1, n, 1) if axis == 1 else (1, 1, n))
        ref = (lr - 20) * ramp + 5 * ramp
        local = fit_local_harmonization(lr, ok, ref, ok)
        assert local.cell == pytest.approx((37.5, 400 / 12))
        mapped = local.apply(ref, origin=(0, 0), step=1.0)
        errors[axis] = float(np.abs(mapped - lr)[:, 32:-32, 32:-32].mean())
        # the scene turned: the same fields, turned
        turned = fit_local_harmonization(lr.transpose(0, 2, 1), ok.T, ref.transpose(0, 2, 1), ok.T)
        np.testing.assert_allclose(turned.apply(ref.transpose(0, 2, 1), origin=(0, 0), step=1.0).transpose(0, 2, 1),
                                   mapped, atol=1e-6)
    # (a steeper drift down the 150 rows than across the 400 columns; placed half a cell off along rows: 2.3 and
    # more, with the cells' sides swapped: 2.7 across the columns)
    assert errors[1] < 2.1 and errors[2] < 0.4, errors


def test_the_scene_fit_leaves_out_lr_pixels_partly_changed(tmp_path):
    """The fit of reference to LR reads the change mask onto the LR grid by its largest value: an LR pixel of which a
    part changed mixes two dates in its reference average (the mode read it unchanged, and the fit followed it)."""
    s, n = 4, 32
    lr = (0.1 + 0.4 * smooth_field(1, n, n, seed=3)[0]).astype(np.float32)
    ref = np.repeat(np.repeat((lr - 0.1) / 2, s, 0), s, 1)  # the reference: LR = 2 * ref + 0.1 where unchanged
    cd = np.zeros_like(ref, dtype=np.uint8)
    for i in range(n):
        for j in range(n):
            if (i + j) % 2 == 0:  # in every other LR pixel, a quarter of its HR pixels changed (the mode: unchanged)
                cd[i * s, j * s:(j + 1) * s] = 1
    ref[cd == 1] = 0.9  # what stood there at the reference's date
    fine = Affine(10.0 / s, 0, 500000.0, 0, -10.0 / s, 5000000.0)
    make_raster(tmp_path / "lr.tif", lr)
    make_raster(tmp_path / "ref.tif", ref.astype(np.float32), transform=fine)
    make_raster(tmp_path / "cd.tif", cd, transform=fine)
    with rasterio.open(tmp_path / "lr.tif") as ds:
        hr, area = hr_grid(Grid(ds.crs, ds.transform, ds.width, ds.height), s)
    with Scene.open(str(tmp_path / "lr.tif"), scale=s, hr=hr, area=area, ref=str(tmp_path / "ref.tif"),
                    cd=str(tmp_path / "cd.tif"), cd_table=BINARY, local_harmonization=False) as scene:
        fit = scene.harmonization
    assert fit is not None and fit.pixels == n * n // 2
    assert abs(fit.gain[0] - 2.0) < 0.01 and abs(fit.bias[0] - 0.1) < 0.005, fit


def test_the_scene_fit_leaves_out_lr_pixels_where_the_reference_saturates(tmp_path):
    """A brighter 8-bit reference clipped at 255 (an overexposed orthophoto) squeezes its bright values: the fit of
    reference to LR leaves out the LR pixels whose reference block holds a clipped value, so it still finds the
    reference's own gain and bias (it found a gain near 1.1 in place of 2/3, found in review)."""
    s, n = 4, 48
    truth = 60 + 160 * smooth_field(1, n * s, n * s, seed=5)[0]  # 60..220
    ref = np.clip(np.rint(truth * 1.5 + 20), 0, 255).astype(np.uint8)  # a third of it above 255
    lr = truth.reshape(n, s, n, s).mean(axis=(1, 3)).astype(np.float32)
    assert 0.15 < (ref == 255).mean() < 0.6
    fine = Affine(10.0 / s, 0, 500000.0, 0, -10.0 / s, 5000000.0)
    make_raster(tmp_path / "lr.tif", lr)
    make_raster(tmp_path / "ref.tif", ref, transform=fine)
    with rasterio.open(tmp_path / "lr.tif") as ds:
        hr, area = hr_grid(Grid(ds.crs, ds.transform, ds.width, ds.height), s)
    with Scene.open(str(tmp_path / "lr.tif"), scale=s, hr=hr, area=area, ref=str(tmp_path / "ref.tif"),
                    local_harmonization=False) as scene:
        fit = scene.harmonization
    assert fit is not None and fit.pixels < n * n
    assert abs(fit.gain[0] - 1 / 1.5) < 0.02 and abs(fit.bias[0] + 20 / 1.5) < 2.0, fit


def test_a_local_gain_stays_within_half_and_twice_the_scene_s():
    """A cell where the reference is nearly flat (a blank roof, a cloud's shadow): its fitted gain would amplify the
    reference's noise 4 times; it is kept within half and twice the scene's gain, as documented (unguarded; found by
    mutation testing)."""
    lr = _textured(192, 192, 1) * 100 + 20
    ref = lr.copy()
    ref[:, 64:96, 64:96] = 60 + (lr[:, 64:96, 64:96] - 60) * 0.05  # one cell of 32 px: nearly flat
    ok = np.ones((192, 192), bool)
    local = fit_local_harmonization(lr, ok, ref, ok)
    assert local.field_gain is not None
    for band, g0 in zip(local.field_gain, local.gain):
        assert 0.5 * g0 - 1e-9 <= float(band.min()) and float(band.max()) <= 2 * g0 + 1e-9, (g0, band.max())
