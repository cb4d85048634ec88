"""The window plan: overlapping windows laid on the LR grid, last row/column snapped to the edge.

Windows are laid over the whole scene and given in LR pixels relative to the planned area (the scene or the
AOI): an AOI is processed in the scene's own windows, so its pixels are those of a run over the whole scene. A
window's HR window is the same window times the scale, so every HR window edge falls on an LR pixel edge.
Nothing is dropped: a scene smaller than one window gets one window of the scene's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from geosr.errors import OptionError


def starts(length: int, size: int, overlap: int) -> list[int]:
    """Start offsets of windows of ``size`` with ``overlap`` covering ``[0, length)``; the last is snapped."""
    if size <= 0:
        raise OptionError(f"the window size must be positive, not {size}")
    if not 0 <= overlap < size:
        raise OptionError(f"the overlap must be at least 0 and smaller than the window ({size}), not {overlap}")
    if length <= size:
        return [0]
    stride = size - overlap
    out = list(range(0, length - size, stride))
    out.append(length - size)
    return out


def fitted_size(width: int, height: int, size: int, overlap: int) -> int:
    """The smallest window size with which no axis of a ``width`` x ``height`` area needs more windows than with
    ``size``, so that the windows share the area evenly: with ``size`` alone the last window is snapped to
    the edge and may overlap the one before almost entirely (a 1024-pixel axis in windows of 512 with 32 of
    overlap: three windows of 512, the third 480 pixels over the second; fitted, three of 363)."""
    fit = 1
    for length in (width, height):
        n = len(starts(length, size, overlap))
        fit = max(fit, min(size, length) if n == 1 else -(-(length + (n - 1) * overlap) // n))
    return fit


@dataclass(frozen=True)
class PlannedWindow:
    """One window: its place in the plan and its LR pixel window (relative to the planned area)."""

    index: int
    row: int
    col: int
    col_off: int
    row_off: int
    width: int
    height: int

    def hr(self, scale: int) -> tuple[int, int, int, int]:
        """(col_off, row_off, width, height) of the window on the HR grid."""
        return (self.col_off * scale, self.row_off * scale, self.width * scale, self.height * scale)


@dataclass(frozen=True)
class WindowPlan:
    """The windows of the scene's plan that reach a ``width`` x ``height`` LR area, grouped in rows.

    Windows are laid over the whole scene (``scene_width`` x ``scene_height``) and offset relative to the area
    (``origin``: its top-left in the scene), so that an area of interest is processed in the very windows, with
    the very blending weights, that a run over the whole scene uses there: its pixels are the whole run's. A
    window may begin before the area or end after it (never beyond the scene); the area's own pixels are those
    kept. ``col_starts`` / ``row_starts``: the windows' offsets relative to the area; ``first``: the index of the
    first window column and row in the scene's plan."""

    width: int
    height: int
    size: int
    overlap: int
    col_starts: tuple[int, ...]
    row_starts: tuple[int, ...]
    scene_width: int = 0  # 0: the area is the scene
    scene_height: int = 0
    origin: tuple[int, int] = (0, 0)  # (col, row) of the area in the scene
    scene_col_starts: tuple[int, ...] = ()  # the scene plan's, for the blending weights (): col_starts
    scene_row_starts: tuple[int, ...] = ()
    first: tuple[int, int] = (0, 0)  # (col, row) index of this plan's first window in the scene's plan

    @classmethod
    def build(cls, width: int, height: int, size: int, overlap: int,
              area: tuple[int, int, int, int] | None = None) -> "WindowPlan":
        """The plan of a ``width`` x ``height`` scene, or of its part ``area`` (col_off, row_off, width, height)."""
        if width <= 0 or height <= 0:
            raise OptionError(f"cannot plan windows over an empty area ({width} x {height} pixels)")
        cols, rows = tuple(starts(width, size, overlap)), tuple(starts(height, size, overlap))
        if area is None or tuple(area) == (0, 0, width, height):
            return cls(width, height, size, overlap, cols, rows)
        c0, r0, aw, ah = (int(v) for v in area)
        if aw <= 0 or ah <= 0:
            raise OptionError(f"cannot plan windows over an empty area ({aw} x {ah} pixels)")
        # the scene's windows that reach [c0, c0 + aw): a window ends at the scene's edge at the latest
        ci = [i for i, c in enumerate(cols) if c < c0 + aw and min(width, c + size) > c0]
        ri = [i for i, r in enumerate(rows) if r < r0 + ah and min(height, r + size) > r0]
        return cls(aw, ah, size, overlap, tuple(cols[i] - c0 for i in ci), tuple(rows[i] - r0 for i in ri),
                   width, height, (c0, r0), cols, rows, (ci[0], ri[0]))

    @property
    def n_rows(self) -> int:
        return len(self.row_starts)

    @property
    def n_cols(self) -> int:
        return len(self.col_starts)

    def __len__(self) -> int:
        return self.n_rows * self.n_cols

    def _limits(self) -> tuple[int, int]:
        """Where the scene ends, relative to the area (columns, rows)."""
        if not self.scene_width:
            return self.width, self.height
        return self.scene_width - self.origin[0], self.scene_height - self.origin[1]

    def window(self, row: int, col: int) -> PlannedWindow:
        c0, r0 = self.col_starts[col], self.row_starts[row]
        limit_w, limit_h = self._limits()
        return PlannedWindow(
            index=row * self.n_cols + col,
            row=row,
            col=col,
            col_off=c0,
            row_off=r0,
            width=min(self.size, limit_w - c0),
            height=min(self.size, limit_h - r0),
        )

    def row_windows(self, row: int) -> list[PlannedWindow]:
        return [self.window(row, c) for c in range(self.n_cols)]

    def __iter__(self) -> Iterator[PlannedWindow]:
        for r in range(self.n_rows):
            yield from self.row_windows(r)

    def scene_axes(self) -> tuple[tuple[int, ...], int, tuple[int, ...], int, tuple[int, int]]:
        """(column starts, scene width, row starts, scene height, first (col, row) index) of the scene's plan, in
        the area's offsets: what a window's blending weights are computed from."""
        if not self.scene_width:
            return self.col_starts, self.width, self.row_starts, self.height, (0, 0)
        c0, r0 = self.origin
        return (tuple(c - c0 for c in self.scene_col_starts), self.scene_width - c0,
                tuple(r - r0 for r in self.scene_row_starts), self.scene_height - r0, self.first)

    def row_span(self, row: int) -> tuple[int, int]:
        """LR rows [start, stop) of the area covered by window row ``row``."""
        r0 = self.row_starts[row]
        return max(0, r0), min(self.height, r0 + self.size)

    def final_rows_after(self, row: int) -> int:
        """LR row of the area above which nothing changes once window rows 0..``row`` are done."""
        return max(0, min(self.height, self.row_starts[row + 1])) if row + 1 < self.n_rows else self.height
