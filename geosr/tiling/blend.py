"""Blending overlapping windows: smooth taper weights and a streaming accumulator of window-row bands."""

from __future__ import annotations

import numpy as np

from geosr.tiling.windows import PlannedWindow, WindowPlan


def taper_1d(length: int, ramp_in: int, ramp_out: int) -> np.ndarray:
    """Weights along one axis: raised-cosine ramps of ``ramp_in`` / ``ramp_out`` pixels, 1 in between.

    A ramp-up and the neighbour's ramp-down over the same pixels sum to exactly 1, and every weight is
    strictly positive, so every covered pixel keeps a non-zero weight.
    """
    w = np.ones(length, dtype=np.float64)
    if ramp_in > 0:
        t = (np.arange(ramp_in) + 0.5) / ramp_in
        w[:ramp_in] = 0.5 - 0.5 * np.cos(np.pi * t)
    if ramp_out > 0:
        t = (np.arange(ramp_out) + 0.5) / ramp_out
        w[length - ramp_out :] *= 0.5 + 0.5 * np.cos(np.pi * t)
    return w


def _overlaps(starts: tuple[int, ...], i: int, size: int, length: int) -> tuple[int, int]:
    """Overlap (in LR px) of window ``i`` with its previous and next neighbour along one axis."""
    end = min(length, starts[i] + size)
    before = (min(length, starts[i - 1] + size) - starts[i]) if i > 0 else 0
    after = (end - starts[i + 1]) if i + 1 < len(starts) else 0
    return max(0, before), max(0, after)


def window_weights(plan: WindowPlan, win: PlannedWindow, scale: int) -> np.ndarray:
    """HR taper weights (height*scale, width*scale) of one window; no taper on the scene's own edges. A plan of
    part of the scene gives each window the weights it has in the scene's plan (its neighbours there)."""
    cols, width, rows, height, (c_first, r_first) = plan.scene_axes()
    top, bottom = _overlaps(rows, r_first + win.row, plan.size, height)
    left, right = _overlaps(cols, c_first + win.col, plan.size, width)
    wy = taper_1d(win.height * scale, top * scale, bottom * scale)
    wx = taper_1d(win.width * scale, left * scale, right * scale)
    return (wy[:, None] * wx[None, :]).astype(np.float32)


ADD_ROWS = 32  # HR rows of a window added at a time
MEAN_ROWS = 16  # HR rows divided at a time by weighted_mean


class RowBandAccumulator:
    """Weighted sums for the HR rows still under work; finished rows are popped and forgotten.

    Memory is bounded by the window-row band (window height x scene width), not by the scene. The sums live in
    buffers kept from one window row to the next (the rows under work are ``top`` to ``top + rows`` of them): a
    fresh band of a wide scene (tens of MB) costs more in first-touch page faults than the additions themselves.
    """

    def __init__(self, bands: int, width: int, start: int = 0) -> None:
        self.bands = bands
        self.width = width
        self.start = start
        self.rows = 0  # HR rows under work
        self._top = 0  # where they begin in the buffers
        self._sum = np.zeros((bands, 0, width), dtype=np.float64)
        self._weight = np.zeros((0, width), dtype=np.float64)

    @property
    def sum(self) -> np.ndarray:
        """(bands, rows, width) weighted sums of the rows under work (a view)."""
        return self._sum[:, self._top : self._top + self.rows]

    @property
    def weight(self) -> np.ndarray:
        """(rows, width) summed weights of the rows under work (a view)."""
        return self._weight[self._top : self._top + self.rows]

    @property
    def stop(self) -> int:
        return self.start + self.rows

    def _grow(self, stop: int) -> None:
        extra = stop - self.stop
        if extra <= 0:
            return
        need = self.rows + extra
        if self._top + need > self._weight.shape[0]:
            if need > self._weight.shape[0]:  # a larger buffer, once
                sums, weight = np.zeros((self.bands, need, self.width)), np.zeros((need, self.width))
            else:  # the rows under work move to the top of the same buffer
                sums, weight = self._sum, self._weight
            sums[:, : self.rows] = self.sum  # numpy copies overlapping rows as if through a temporary
            weight[: self.rows] = self.weight
            self._sum, self._weight, self._top = sums, weight, 0
        new = slice(self._top + self.rows, self._top + need)
        self._sum[:, new] = 0.0  # rows an earlier pop freed hold old sums
        self._weight[new] = 0.0
        self.rows = need

    def add(self, data: np.ndarray, weight: np.ndarray, row_off: int, col_off: int) -> None:
        """Add ``data`` (bands, h, w) with ``weight`` (h, w) at HR (row_off, col_off); NaN data counts 0."""
        if row_off < self.start:
            raise ValueError(f"row {row_off} was already popped (accumulator starts at {self.start})")
        h, w = weight.shape
        self._grow(row_off + h)
        cols = slice(col_off, col_off + w)
        first = self._top + row_off - self.start
        for i in range(0, h, ADD_ROWS):  # in bands of rows that stay in the CPU's cache: the same sums, faster
            d, wt = data[:, i : i + ADD_ROWS], weight[i : i + ADD_ROWS]
            rows = slice(first + i, first + i + wt.shape[0])
            ok = np.isfinite(d).all(axis=0)
            if ok.all():  # the usual case, without the masked copies (the same products)
                self._sum[:, rows, cols] += d * wt
                self._weight[rows, cols] += wt
                continue
            wt = np.where(ok, wt, 0.0)
            self._sum[:, rows, cols] += np.where(ok, d, 0.0) * wt
            self._weight[rows, cols] += wt

    def pop_sums(self, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Remove rows [start, stop) and return their (weighted sums, weights): views into the buffers, valid until
        the next ``add`` (copy them to keep them)."""
        self._grow(stop)
        n = stop - self.start
        rows = slice(self._top, self._top + n)
        out = self._sum[:, rows], self._weight[rows]
        self._top += n
        self.rows -= n
        self.start = stop
        return out

    def pop(self, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Remove and return (weighted mean, weight) of rows [start, stop); mean is NaN where weight is 0."""
        sums, weight = self.pop_sums(stop)
        return weighted_mean(sums, weight), weight.copy()

    def state(self) -> dict[str, np.ndarray]:
        """Arrays that restore this accumulator exactly (for resume)."""
        return {"start": np.array(self.start), "sum": self.sum, "weight": self.weight}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> "RowBandAccumulator":
        acc = cls(int(state["sum"].shape[0]), int(state["sum"].shape[2]), int(state["start"]))
        acc._sum = np.array(state["sum"], dtype=np.float64)
        acc._weight = np.array(state["weight"], dtype=np.float64)
        acc.rows = acc._weight.shape[0]
        return acc


def weighted_mean(sums: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``sums`` (bands, h, w) over ``weight`` (h, w); NaN where the weight is 0."""
    mean = np.full(sums.shape, np.nan)
    np.divide(sums, weight, out=mean, where=weight > 0)
    return mean
