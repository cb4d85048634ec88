"""Local radiometric harmonization of the reference (issue 19.3): gain and bias fields over the scene."""

from __future__ import annotations

import numpy as np
from tests.test_detect_changes import _textured

from geosr.conditioning.reference import fit_harmonization, fit_local_harmonization


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
