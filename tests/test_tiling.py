"""Window plans and blending weights: coverage, snapping, exact partition of unity in overlaps."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.crs import CRS

from geosr.errors import NoOverlapError, OptionError
from geosr.tiling.blend import RowBandAccumulator, taper_1d, window_weights
from geosr.tiling.grid import Grid, hr_grid
from geosr.tiling.windows import WindowPlan, fitted_size, starts


@given(length=st.integers(1, 500), size=st.integers(1, 64), data=st.data())
def test_starts_cover_everything_and_snap_to_the_edge(length, size, data):
    overlap = data.draw(st.integers(0, size - 1))
    s = starts(length, size, overlap)
    assert s[0] == 0
    assert s == sorted(set(s))
    end = min(length, s[-1] + size)
    assert end == length  # the last window reaches the edge
    for a, b in zip(s, s[1:]):
        assert b - a <= size - overlap  # neighbours overlap by at least the requested overlap
        assert b <= a + size  # no gap
    assert all(0 <= x and (x + size <= length or length <= size) for x in s)


@given(w=st.integers(1, 600), h=st.integers(1, 600), size=st.integers(2, 128), data=st.data())
@settings(max_examples=60, deadline=None)
def test_fitted_windows_are_no_more_and_cover_no_more_pixels(w, h, size, data):
    overlap = data.draw(st.integers(0, size - 1))
    fit = fitted_size(w, h, size, overlap)
    assert 1 <= fit <= size
    plans = [WindowPlan.build(w, h, s, min(overlap, s - 1)) for s in (size, fit)]
    assert plans[1].n_rows <= plans[0].n_rows and plans[1].n_cols <= plans[0].n_cols
    computed = [sum(win.width * win.height for win in plan) for plan in plans]
    assert computed[1] <= computed[0]
    for plan in plans:  # both cover the area, each pair of neighbours overlapping by at least the overlap
        for length, first in ((w, plan.col_starts), (h, plan.row_starts)):
            assert first[0] == 0 and first[-1] + min(plan.size, length) == length
            assert all(b - a <= plan.size - plan.overlap for a, b in zip(first, first[1:]))


@given(w=st.integers(1, 200), h=st.integers(1, 200), size=st.integers(2, 48), scale=st.sampled_from([1, 2, 3]),
       data=st.data())
@settings(max_examples=80, deadline=None)
def test_an_area_is_planned_in_the_scene_s_own_windows_and_weights(w, h, size, scale, data):
    """A plan of part of the scene holds exactly the scene plan's windows that reach the part, at the same places
    and with the same blending weights: blended, the part's pixels are the whole scene's."""
    overlap = data.draw(st.integers(0, size - 1))
    c0, r0 = data.draw(st.integers(0, w - 1)), data.draw(st.integers(0, h - 1))
    aw, ah = data.draw(st.integers(1, w - c0)), data.draw(st.integers(1, h - r0))
    whole = WindowPlan.build(w, h, size, overlap)
    part = WindowPlan.build(w, h, size, overlap, area=(c0, r0, aw, ah))
    reaching = [win for win in whole if win.col_off < c0 + aw and win.col_off + win.width > c0
                and win.row_off < r0 + ah and win.row_off + win.height > r0]
    assert len(part) == len(reaching) and (part.width, part.height) == (aw, ah)
    weights = np.zeros((h * scale, w * scale))
    for mine, theirs in zip(part, reaching):
        assert (mine.col_off + c0, mine.row_off + r0, mine.width, mine.height) == \
            (theirs.col_off, theirs.row_off, theirs.width, theirs.height)
        wt = window_weights(part, mine, scale)
        assert np.array_equal(wt, window_weights(whole, theirs, scale))
        rows = slice(theirs.row_off * scale, (theirs.row_off + theirs.height) * scale)
        cols = slice(theirs.col_off * scale, (theirs.col_off + theirs.width) * scale)
        weights[rows, cols] += wt
    inside = (slice(r0 * scale, (r0 + ah) * scale), slice(c0 * scale, (c0 + aw) * scale))
    assert (weights[inside] > 0).all()  # every pixel of the part is reached
    assert part.final_rows_after(part.n_rows - 1) == ah and all(
        0 <= part.final_rows_after(r) <= ah for r in range(part.n_rows))
    if (c0, r0, aw, ah) == (0, 0, w, h):
        assert part == whole


def test_a_fitted_window_for_the_documented_case():
    assert fitted_size(1024, 1024, 512, 32) == 363 and starts(1024, 363, 32) == [0, 331, 661]
    assert starts(1024, 512, 32) == [0, 480, 512]  # unfitted: the third window 480 pixels over the second
    assert fitted_size(300, 100, 512, 32) == 300  # one window: the area itself


@given(w=st.integers(1, 120), h=st.integers(1, 120), size=st.integers(4, 48), data=st.data())
@settings(max_examples=40, deadline=None)
def test_plan_weights_cover_every_pixel(w, h, size, data):
    overlap = data.draw(st.integers(0, size - 1))
    scale = data.draw(st.sampled_from([1, 2, 4]))
    plan = WindowPlan.build(w, h, size, overlap)
    total = np.zeros((h * scale, w * scale))
    for win in plan:
        assert win.width == min(size, w) and win.height == min(size, h)  # all windows alike: they batch
        c0, r0, ww, hh = win.hr(scale)
        wt = window_weights(plan, win, scale)
        assert wt.shape == (hh, ww) and (wt > 0).all()
        total[r0 : r0 + hh, c0 : c0 + ww] += wt
    assert (total > 0).all()


def test_taper_ramps_sum_to_one_across_an_overlap():
    left = taper_1d(20, 0, 6)
    right = taper_1d(20, 6, 0)
    np.testing.assert_allclose(left[-6:] + right[:6], 1.0, atol=1e-12)
    assert left[:14].min() == 1.0


def test_accumulator_streams_rows_and_restores_from_state():
    acc = RowBandAccumulator(bands=1, width=4)
    acc.add(np.ones((1, 3, 4)), np.ones((3, 4)), 0, 0)
    acc.add(np.full((1, 3, 4), 3.0), np.ones((3, 4)), 2, 0)
    mean, wt = acc.pop(2)
    np.testing.assert_allclose(mean, 1.0)
    restored = RowBandAccumulator.from_state(acc.state())
    mean, wt = restored.pop(5)
    np.testing.assert_allclose(mean[0, 0], 2.0)  # row 2: (1 + 3) / 2
    np.testing.assert_allclose(mean[0, 1:], 3.0)
    with pytest.raises(ValueError):
        restored.add(np.ones((1, 1, 4)), np.ones((1, 4)), 0, 0)


def test_accumulator_ignores_nan_and_reports_uncovered_as_nan():
    acc = RowBandAccumulator(bands=2, width=3)
    data = np.ones((2, 2, 3))
    data[1, 0, 0] = np.nan
    acc.add(data, np.ones((2, 3)), 0, 0)
    mean, wt = acc.pop(3)
    assert wt[0, 0] == 0 and np.isnan(mean[:, 0, 0]).all()
    assert np.isnan(mean[:, 2]).all()  # row 2 never covered


@given(
    w=st.integers(1, 50), h=st.integers(1, 50), scale=st.sampled_from([2, 4, 8, 16]),
    px=st.floats(0.1, 1000), x0=st.floats(-1e6, 1e6), y0=st.floats(-1e6, 1e7),
)
def test_hr_grid_is_the_lr_grid_refined_exactly(w, h, scale, px, x0, y0):
    lr = Grid(CRS.from_epsg(32633), Affine(px, 0, x0, 0, -px, y0), w, h)
    hr, area = hr_grid(lr, scale)
    assert (hr.width, hr.height) == (w * scale, h * scale)
    assert hr.transform == lr.transform @ Affine.scale(1 / scale)
    np.testing.assert_allclose(hr.bounds, lr.bounds, rtol=0, atol=1e-6 * max(1.0, abs(x0), abs(y0)))


def test_window_of_bounds_snaps_outward_and_refuses_disjoint_bounds():
    g = Grid(CRS.from_epsg(32633), Affine(10, 0, 0, 0, -10, 100), 10, 10)
    win = g.window_of_bounds((15, 45, 34, 81))
    assert (win.col_off, win.row_off, win.width, win.height) == (1, 1, 3, 5)
    with pytest.raises(NoOverlapError):
        g.window_of_bounds((200, 200, 300, 300))


@pytest.mark.parametrize("size, overlap", [(0, 0), (8, 8), (8, -1)])
def test_bad_window_options_are_refused(size, overlap):
    with pytest.raises(OptionError):
        starts(100, size, overlap)
