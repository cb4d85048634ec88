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
    """HR taper weights (height*scale, width*scale) of one window; no taper on the scene's own edges."""
    top, bottom = _overlaps(plan.row_starts, win.row, plan.size, plan.height)
    left, right = _overlaps(plan.col_starts, win.col, plan.size, plan.width)
    wy = taper_1d(win.height * scale, top * scale, bottom * scale)
    wx = taper_1d(win.width * scale, left * scale, right * scale)
    return (wy[:, None] * wx[None, :]).astype(np.float32)


ADD_ROWS = 32  # HR rows of a window added at a time


class RowBandAccumulator:
    """Weighted sums for the HR rows still under work; finished rows are popped and forgotten.

    Memory is bounded by the window-row band (window height x scene width), not by the scene.
    """

    def __init__(self, bands: int, width: int, start: int = 0) -> None:
        self.bands = bands
        self.width = width
        self.start = start
        self.sum = np.zeros((bands, 0, width), dtype=np.float64)
        self.weight = np.zeros((0, width), dtype=np.float64)

    @property
    def stop(self) -> int:
        return self.start + self.weight.shape[0]

    def _grow(self, stop: int) -> None:
        extra = stop - self.stop
        if extra > 0:
            self.sum = np.concatenate([self.sum, np.zeros((self.bands, extra, self.width))], axis=1)
            self.weight = np.concatenate([self.weight, np.zeros((extra, self.width))], axis=0)

    def add(self, data: np.ndarray, weight: np.ndarray, row_off: int, col_off: int) -> None:
        """Add ``data`` (bands, h, w) with ``weight`` (h, w) at HR (row_off, col_off); NaN data counts 0."""
        if row_off < self.start:
            raise ValueError(f"row {row_off} was already popped (accumulator starts at {self.start})")
        h, w = weight.shape
        self._grow(row_off + h)
        cols = slice(col_off, col_off + w)
        for i in range(0, h, ADD_ROWS):  # in bands of rows that stay in the CPU's cache: the same sums, faster
            d, wt = data[:, i : i + ADD_ROWS], weight[i : i + ADD_ROWS]
            rows = slice(row_off - self.start + i, row_off - self.start + i + wt.shape[0])
            ok = np.isfinite(d).all(axis=0)
            if ok.all():  # the usual case, without the masked copies (the same products)
                self.sum[:, rows, cols] += d * wt
                self.weight[rows, cols] += wt
                continue
            wt = np.where(ok, wt, 0.0)
            self.sum[:, rows, cols] += np.where(ok, d, 0.0) * wt
            self.weight[rows, cols] += wt

    def pop(self, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Remove and return (weighted mean, weight) of rows [start, stop); mean is NaN where weight is 0."""
        self._grow(stop)
        n = stop - self.start
        s, wt = self.sum[:, :n], self.weight[:n]
        mean = np.full(s.shape, np.nan)
        np.divide(s, wt, out=mean, where=wt > 0)
        self.sum, self.weight = self.sum[:, n:].copy(), self.weight[n:].copy()
        self.start = stop
        return mean, wt

    def state(self) -> dict[str, np.ndarray]:
        """Arrays that restore this accumulator exactly (for resume)."""
        return {"start": np.array(self.start), "sum": self.sum, "weight": self.weight}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> "RowBandAccumulator":
        acc = cls(int(state["sum"].shape[0]), int(state["sum"].shape[2]), int(state["start"]))
        acc.sum = np.array(state["sum"], dtype=np.float64)
        acc.weight = np.array(state["weight"], dtype=np.float64)
        return acc
