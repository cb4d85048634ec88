"""The window plan: overlapping windows laid on the LR grid, last row/column snapped to the edge.

Windows are in LR pixels relative to the planned area (the scene or the AOI); a window's HR window is the
same window times the scale, so every HR window edge falls on an LR pixel edge. Nothing is dropped: a
scene smaller than one window gets one window of the scene's size.
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
    """All windows over a ``width`` x ``height`` LR area, grouped in rows."""

    width: int
    height: int
    size: int
    overlap: int
    col_starts: tuple[int, ...]
    row_starts: tuple[int, ...]

    @classmethod
    def build(cls, width: int, height: int, size: int, overlap: int) -> "WindowPlan":
        if width <= 0 or height <= 0:
            raise OptionError(f"cannot plan windows over an empty area ({width} x {height} pixels)")
        return cls(
            width,
            height,
            size,
            overlap,
            tuple(starts(width, size, overlap)),
            tuple(starts(height, size, overlap)),
        )

    @property
    def n_rows(self) -> int:
        return len(self.row_starts)

    @property
    def n_cols(self) -> int:
        return len(self.col_starts)

    def __len__(self) -> int:
        return self.n_rows * self.n_cols

    def window(self, row: int, col: int) -> PlannedWindow:
        c0, r0 = self.col_starts[col], self.row_starts[row]
        return PlannedWindow(
            index=row * self.n_cols + col,
            row=row,
            col=col,
            col_off=c0,
            row_off=r0,
            width=min(self.size, self.width - c0),
            height=min(self.size, self.height - r0),
        )

    def row_windows(self, row: int) -> list[PlannedWindow]:
        return [self.window(row, c) for c in range(self.n_cols)]

    def __iter__(self) -> Iterator[PlannedWindow]:
        for r in range(self.n_rows):
            yield from self.row_windows(r)

    def row_span(self, row: int) -> tuple[int, int]:
        """LR rows [start, stop) covered by window row ``row``."""
        r0 = self.row_starts[row]
        return r0, min(self.height, r0 + self.size)

    def final_rows_after(self, row: int) -> int:
        """LR row below which nothing changes once window rows 0..``row`` are done."""
        return self.row_starts[row + 1] if row + 1 < self.n_rows else self.height
