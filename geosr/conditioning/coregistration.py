"""Co-registration of the reference to the LR: a global sub-pixel shift estimated at LR scale, and a first-order
field of tie points where the compared area is large enough.

The reference is read onto the LR grid (area average, so both show the same scale), both are reduced to one
band of local detail and windowed, and phase correlation (scikit-image's, refined by an upsampled DFT) gives
the shift between them. The estimate is trusted only when the aligned pair correlates clearly better than
the unaligned one and well in absolute terms; otherwise no shift is applied and the reason is reported.

Tie points (as AROSICS places them): the same estimate on a grid of TIE_SIDE-pixel windows over the compared
area, kept where reliable. An affine field (the offset varying linearly over the scene: the rotation, scale and
shear errors of an old orthophoto's georeferencing) is fitted to them by least squares, leaving out points that
disagree with it (iteratively); it replaces the global shift when it varies by more than FIELD_MIN_LR_PX over
the area. Higher-order (terrain) distortion is not modelled.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np
from affine import Affine
from rasterio.warp import transform as transform_points
from scipy import ndimage
from skimage.registration import phase_cross_correlation

from geosr.tiling.grid import Grid

# LR pixels a side, valid in both, below which no shift is estimated: on 16 x 16 LR pixels of two registered
# images (DSIFN-CD 0_2 at x16) phase correlation found 1.4 LR px with the detail's correlation raised from 0.07
# to 0.47 by the wrap-around of so small a window
MIN_SIDE = 32
MIN_RELIABILITY = 0.3  # correlation of the aligned detail below which the estimate is not used
# A shift of at least SIGNIFICANT_SHIFT LR px must raise the detail's correlation by MATCH_GAIN / sqrt(pixels):
# three standard deviations of a correlation over the pixels / 4 independent samples of detail (its blur is about
# two pixels wide). On 32 x 32 LR pixels of two registered images (DSIFN-CD 5_3 at x8) a spurious 1.7 LR px shift
# raised it by 0.106 (needed: 0.19); a real shift of the bundled sample (50 x 50) raises it by more than 0.3.
SIGNIFICANT_SHIFT = 0.5
MATCH_GAIN = 6.0
MAX_SHIFT_FRACTION = 0.25  # of the compared area's side: larger offsets are not trusted
UPSAMPLE = 40  # phase correlation refined to 1/UPSAMPLE LR pixel
TIE_SIDE = 64  # LR pixels a side of a tie point's window (placed every TIE_SIDE / 2)
# share of a tie window that must be valid in both (a cloud mask's holes, SLC-off stripes, a footprint's edge): as
# many pixels as the smallest area a shift is estimated on. Measured (the reference rotated 0.3-0.5 degrees and
# scaled 0.4% over a real aerial image, the LR with gaps): with 0.8, a cloud mask over 30% of the LR or SLC-off-like
# stripes over 23% left no tie window, so one shift, up to 1.6 LR px off at the corners; with this bar fields within
# 0.09 LR px with clouds over 30-70% (the forward-model refinement compares valid pixels only)
TIE_VALID = MIN_SIDE * MIN_SIDE / (TIE_SIDE * TIE_SIDE)
MIN_TIE_POINTS = 12  # reliable tie points needed for a field
FIELD_MIN_LR_PX = 0.25  # a field whose offsets vary less than this over the area is taken as one shift
FIELD_MAX_RESIDUAL = 0.3  # LR px RMS of the tie points about the field beyond which it is not trusted
FIELD_F = 20.0  # the F statistic of the field against one shift (4 more parameters) it must pass
# rounds of the forward model's search, each around the best move of the last when it lay on the edge: phase
# correlation of two images with the same gaps is drawn towards no shift (the gaps' own pattern matches there), by
# more than the half LR pixel one round covers (tie points of a reference rotated 0.5 degrees with stripes over a
# third of both images: a field 0.15 LR px off)
REFINE_ROUNDS = 3
OUTLIER_LR_PX = 0.5  # a tie point further than this (and 3 median residuals) from the fitted field is left out


@dataclass(frozen=True)
class Coregistration:
    """How the reference was placed on the LR.

    ``offset_lr_px`` is where the reference's content lies relative to the LR's, in LR pixels (columns, rows):
    a reference whose transform is 30 m too far east over 10 m LR pixels reads about (3, 0). ``applied``: the
    reference was moved back by it. ``reliability``: the correlation (0-1) of the aligned detail.
    """

    offset_lr_px: tuple[float, float]
    reliability: float
    tie_points: int
    applied: bool
    reason: str | None = None
    # the affine field of offsets, in LR pixels at LR pixel (col, row) of the whole LR grid:
    # (dx, dy) = (a0 + a1*col + a2*row, b0 + b1*col + b2*row); None: one shift (offset_lr_px) everywhere
    field: tuple[float, float, float, float, float, float] | None = None
    residual_lr_px: float | None = None  # RMS distance of the kept tie points from the field

    def to_dict(self) -> dict:
        d = asdict(self)
        d["offset_lr_px"] = [round(v, 3) + 0.0 for v in self.offset_lr_px]  # (+ 0.0: no -0.0)
        d["reliability"] = round(self.reliability, 3)
        if self.field is not None:
            d["field"] = [float(f"{v:.6g}") + 0.0 for v in self.field]
            d["residual_lr_px"] = round(float(self.residual_lr_px or 0.0), 3)
        return d

    def offset_at(self, col: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The offset (dx, dy) in LR pixels at LR pixel positions (col, row) of the whole LR grid."""
        if self.field is None:
            return np.full(np.shape(col), self.offset_lr_px[0]), np.full(np.shape(row), self.offset_lr_px[1])
        a0, a1, a2, b0, b1, b2 = self.field
        return a0 + a1 * col + a2 * row, b0 + b1 * col + b2 * row


TOO_SMALL = "too small an overlap to estimate a shift"
POOR_MATCH = "the images do not match well enough to trust it"
BEYOND = "offset beyond"
NOT_ESTIMATED = Coregistration((0.0, 0.0), 0.0, 0, False, "not asked for")


def estimate_offset(lr: np.ndarray, lr_valid: np.ndarray, ref: np.ndarray, ref_valid: np.ndarray) -> Coregistration:
    """The reference's offset from the LR, both (C, h, w) on the same LR grid, with their validity."""
    both = lr_valid & ref_valid
    rows, cols = np.nonzero(both.any(axis=1))[0], np.nonzero(both.any(axis=0))[0]
    # 32 rows and columns, and as many pixels as a 32 x 32 square: a thin band across the window (399 LR px on a
    # diagonal) spans them with too few pixels, and its shift was applied 0.4 LR px off
    if len(rows) < MIN_SIDE or len(cols) < MIN_SIDE or both.sum() < MIN_SIDE * MIN_SIDE:
        return Coregistration((0.0, 0.0), 0.0, 0, False, TOO_SMALL)
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    a, b = _detail(lr[(slice(None), *box)], both[box]), _detail(ref[(slice(None), *box)], both[box])
    if a.std() < 1e-9 or b.std() < 1e-9:
        return Coregistration((0.0, 0.0), 0.0, 0, False, "no texture to match (flat or empty)")  # (none compared)
    (dy, dx), _, _ = phase_cross_correlation(a, b, upsample_factor=UPSAMPLE, normalization="phase")
    before, after = _ncc(a, b), _ncc(a, _shifted(b, dy, dx))
    if not (lr_valid[box] == both[box]).all() or not (ref_valid[box] == both[box]).all():
        # with the gaps of both in both, their shared pattern matches best where it lies, at no shift: (a reference
        # 1.5 LR px off, small flagged clouds over a fifth of it: 0.05 LR px, reliability 0.65, applied). The peak of
        # each image's detail outside its own gaps, which move with it, is taken where it matches better so, and is
        # judged so too, on the pixels valid in both (the match at no shift was raised by the shared pattern as well)
        pa, pb = _own_detail(lr[(slice(None), *box)], lr_valid[box]), _own_detail(ref[(slice(None), *box)],
                                                                                  ref_valid[box])
        (oy, ox), _, _ = phase_cross_correlation(pa, pb, upsample_factor=UPSAMPLE, normalization="phase")
        # all three compared on the same pixels, valid in both whichever way the reference is moved (a pixel set that
        # changed with the move made the scores incomparable; see refine_offset)
        moves = [(0.0, 0.0), (dy, dx), (oy, ox)]
        same = lr_valid[box].copy()
        for my, mx in moves:
            same &= _shifted(ref_valid[box].astype(float), my, mx) > 0.99
        if same.sum() >= MIN_SIDE * MIN_SIDE:
            at_zero, at_first, at_own = (_ncc(pa[same], _shifted(pb, my, mx)[same]) for my, mx in moves)
            if at_own > at_first:
                (dy, dx), before, after = (oy, ox), at_zero, at_own
    offset = (-float(dx), -float(dy))  # the shift that registers the reference is minus its offset
    limit = MAX_SHIFT_FRACTION * min(a.shape)
    if max(abs(offset[0]), abs(offset[1])) > limit:  # (its reliability: the match where the two still overlap)
        overlap = max(_overlap_ncc(a, b, dy, dx), 0.0)
        # a poor match first: "offset beyond 12 LR px" at reliability 0.10 told of a reference 17 px off, where
        # clouds had hidden a 1.5 px shift (found in review)
        why = f"{BEYOND} {limit:.0f} LR px: not trusted" if overlap >= MIN_RELIABILITY else POOR_MATCH
        return Coregistration(offset, overlap, 1, False, why)
    if after <= before and before >= MIN_RELIABILITY:  # they match well, and best where they are
        return Coregistration(offset, before, 1, False, "the estimated shift does not improve the match: left where "
                                                        "it is")
    if after < MIN_RELIABILITY or after <= before:
        return Coregistration(offset, max(after, 0.0), 1, False, POOR_MATCH)
    if math.hypot(*offset) >= SIGNIFICANT_SHIFT and after - before < MATCH_GAIN / math.sqrt(both[box].sum()):
        return Coregistration(offset, after, 1, False, LITTLE_GAIN)
    return Coregistration(offset, after, 1, True)


LITTLE_GAIN = "the shift improves the match too little to trust it"


def second_look(lr: np.ndarray, lr_valid: np.ndarray, fine: np.ndarray, fine_valid: np.ndarray, k: int,
                margin: int, first: Coregistration, compared: int) -> Coregistration:
    """A shift :func:`estimate_offset` found but did not trust for its small gain, judged again by the forward model
    (:func:`refine_offset`'s comparison): the refined shift against none, on the same pixels, with the same bar
    (``compared``: the pixels the first estimate compared). Phase correlation on the LR grid alone rounds a shift
    near half an LR pixel to the aliased half (the bundled sample moved 0.5 LR px east read 0.5-0.6, -0.125 and
    gained 0.088 where 0.12 was asked; the forward model found it, and a shift of 0.45 or 0.6 px was undone)."""
    if first.applied or first.reason != LITTLE_GAIN:
        return first
    trial = replace(first, applied=True)
    refined = refine_offset(lr, lr_valid, fine, fine_valid, k, margin, trial)
    if refined is trial:  # the forward model found no better match
        return first
    h, w = lr.shape[1:]
    r0, c0 = (margin * k + round(v * k) for v in refined.offset_lr_px[::-1])
    if r0 < 0 or c0 < 0 or r0 + h * k > fine.shape[1] or c0 + w * k > fine.shape[2]:
        return first
    zero, moved = (fine[:, margin * k:(margin + h) * k, margin * k:(margin + w) * k],
                   fine_valid[margin * k:(margin + h) * k, margin * k:(margin + w) * k]), \
        (fine[:, r0:r0 + h * k, c0:c0 + w * k], fine_valid[r0:r0 + h * k, c0:c0 + w * k])

    def on_lr(image: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # k x k block means
        blocks = image.mean(axis=0).reshape(h, k, w, k).mean(axis=(1, 3))
        return blocks, np.asarray(valid.reshape(h, k, w, k).all(axis=(1, 3)))

    (z, z_ok), (m, m_ok) = on_lr(*zero), on_lr(*moved)
    valid = lr_valid & z_ok & m_ok
    if valid.sum() < MIN_SIDE * MIN_SIDE:
        return first
    a = _detail(lr, valid)
    before, after = _ncc(a, _detail(z[None], valid)), _ncc(a, _detail(m[None], valid))
    if after - before < MATCH_GAIN / math.sqrt(compared):
        return first
    return refined


def refine_offset(
    lr: np.ndarray, lr_valid: np.ndarray, fine: np.ndarray, fine_valid: np.ndarray, k: int, margin: int,
    first: Coregistration,
) -> Coregistration:
    """Refine an applied estimate to about 1/(4k) LR pixel by the forward model: the reference read on the LR
    grid refined by ``k`` (``fine``, with ``margin`` LR pixels around the LR's extent), moved by whole fine
    pixels around ``first`` (``k / 2`` of them each way; again around the best if it lies on that square's edge,
    up to REFINE_ROUNDS times) and averaged back onto the LR grid, is compared with the LR (correlation of their
    detail, over the pixels valid under every move); a parabola through the best and its neighbours gives the
    fraction. Phase correlation on the LR alone is limited by its aliasing; this compares what the LR sensor would
    have seen."""
    if not first.applied:
        return first
    h, w = lr.shape[1:]
    # summed-area tables of the band and of its gaps: each candidate's k x k block means in four lookups
    band = np.pad(fine.mean(axis=0).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    gaps = np.pad((~fine_valid).cumsum(0).cumsum(1), ((1, 0), (1, 0)))

    def blocks(table: np.ndarray, r0: int, c0: int) -> np.ndarray:
        s = table[np.ix_(r0 + k * np.arange(h + 1), c0 + k * np.arange(w + 1))]
        return s[1:, 1:] - s[:-1, 1:] - s[1:, :-1] + s[:-1, :-1]

    x0, y0 = (round(v * k) for v in first.offset_lr_px)
    half = max(1, k // 2)
    for rnd in range(REFINE_ROUNDS):  # a best move on the edge of the candidates: look again around it
        scores = np.full((2 * half + 1, 2 * half + 1), -np.inf)
        plain = scores.copy()
        candidates = [(i, j, margin * k + dy, margin * k + dx)
                      for i, dy in enumerate(range(y0 - half, y0 + half + 1))
                      for j, dx in enumerate(range(x0 - half, x0 + half + 1))]
        candidates = [c for c in candidates if c[2] >= 0 and c[3] >= 0 and c[2] + h * k <= fine.shape[1]
                      and c[3] + w * k <= fine.shape[2]]
        # every candidate is scored on the same LR pixels (valid whichever way the reference is moved): with gaps
        # in the reference (SLC-off stripes, masked clouds) a pixel set that changed with each move made the scores
        # incomparable and pulled the refined offset by up to half a fine pixel
        valid = lr_valid.copy()
        for _, _, r0, c0 in candidates:
            valid &= blocks(gaps, r0, c0) == 0
        if candidates and valid.sum() >= MIN_SIDE * MIN_SIDE:  # (none: every move leaves the margin read)
            # scored twice: plainly, and with each detail clipped to its 98th percentile, the reference's bound
            # its unmoved candidate's, one for every move so that the scores compare; the search follows the
            # robust scores (a changed patch's strong edges, a flat new roof over 2% of the scene, outweighed the
            # texture and pulled the plain correlation 0.2 LR px off; found in review)
            a = _detail(lr, valid)
            clipped = _clipped(a, valid)
            moved = {(i, j): _detail((blocks(band, r0, c0) / (k * k))[None], valid) for i, j, r0, c0 in candidates}
            bound = _bound(moved[(half, half)] if (half, half) in moved else next(iter(moved.values())), valid)
            for (i, j), detail in moved.items():
                scores[i, j] = _ncc(clipped, np.clip(detail, -bound, bound))
                plain[i, j] = _ncc(a, detail)
        i, j = (int(v) for v in np.unravel_index(np.argmax(scores), scores.shape))
        if not np.isfinite(scores[i, j]) or (0 < i < 2 * half and 0 < j < 2 * half) or rnd == REFINE_ROUNDS - 1:
            break
        x0, y0 = x0 + j - half, y0 + i - half
    # (judged, and reported, by the plain correlation: phase correlation's reliability, to which it is compared, and
    # the thresholds on it are of that kind, not of the clipped one)
    if not np.isfinite(scores[i, j]) or plain.max() < first.reliability - 0.05:
        return first

    def peak(grid: np.ndarray) -> tuple[tuple[float, float], float]:  # a parabola through the best and its neighbours
        i, j = (int(v) for v in np.unravel_index(np.argmax(grid), grid.shape))
        fy = _vertex(grid[i - 1, j], grid[i, j], grid[i + 1, j]) if 0 < i < 2 * half else 0.0
        fx = _vertex(grid[i, j - 1], grid[i, j], grid[i, j + 1]) if 0 < j < 2 * half else 0.0
        return (float((x0 - half + j + fx) / k), float((y0 - half + i + fy) / k)), float(grid[i, j])

    offset, _ = peak(scores)
    score = float(plain[i, j])  # the plain correlation of the robust best move
    # the plain correlation where the two agree: clipping costs precision where nothing pulls it (four real images
    # as references of their own 4x average, 20 known shifts: 0.0069 LR px mean error plain, 0.0117 clipped)
    near, near_score = peak(plain)
    if np.isfinite(near_score) and math.dist(near, offset) <= ROBUST_AGREE:
        offset, score = near, near_score
    return Coregistration(offset, score, first.tie_points, True)


def estimate_field(lr: np.ndarray, lr_valid: np.ndarray, ref: np.ndarray, ref_valid: np.ndarray,
                   origin: tuple[int, int], first: Coregistration,
                   fine: tuple[np.ndarray, np.ndarray, int, int] | None = None) -> Coregistration:
    """Tie points over (C, h, w) LR and reference on the same LR grid, whose top-left pixel is ``origin`` (col,
    row) of the whole LR grid, and the affine field through them; ``first`` (the global estimate) is returned
    when there are too few reliable points or the field is as good as one shift. ``fine``: the reference on the
    grid ``k`` times finer with ``margin`` LR pixels around (:func:`refine_offset`'s ``fine, fine_valid, k,
    margin``), by which each tie point is refined as the global shift is: phase correlation alone draws sub-pixel
    offsets towards whole pixels (under a 0.4% scale error, tie points 0.13 and 0.25 LR px off read 0.07 and 0.12)."""
    h, w = lr.shape[1:]
    if h < 2 * TIE_SIDE or w < 2 * TIE_SIDE:
        return first
    step = TIE_SIDE // 2
    points = []
    for r0 in range(0, h - TIE_SIDE + 1, step):
        for c0 in range(0, w - TIE_SIDE + 1, step):
            win = (slice(r0, r0 + TIE_SIDE), slice(c0, c0 + TIE_SIDE))
            if (lr_valid[win] & ref_valid[win]).mean() < TIE_VALID:
                continue
            t = estimate_offset(lr[(slice(None), *win)], lr_valid[win], ref[(slice(None), *win)], ref_valid[win])
            if t.applied and fine is not None:
                band, ok, k, margin = fine
                span = (TIE_SIDE + 2 * margin) * k
                part = (slice(r0 * k, r0 * k + span), slice(c0 * k, c0 * k + span))
                refined = refine_offset(lr[(slice(None), *win)], lr_valid[win], band[(slice(None), *part)], ok[part],
                                        k, margin, t)
                # a point the forward model could not refine (too few pixels valid under every move, a poor match)
                # is left out rather than kept at phase correlation's estimate, drawn towards whole pixels
                t = refined if refined is not t else NOT_ESTIMATED
            if t.applied:
                points.append((origin[0] + c0 + TIE_SIDE / 2, origin[1] + r0 + TIE_SIDE / 2, *t.offset_lr_px))
    if len(points) < MIN_TIE_POINTS:
        return first
    p = np.array(points)
    keep = np.ones(len(p), bool)
    for _ in range(5):  # fit, leave out the points far from the fit, fit again
        if keep.sum() < MIN_TIE_POINTS:
            return first
        design = np.column_stack([np.ones(keep.sum()), p[keep, 0], p[keep, 1]])
        ax = np.linalg.lstsq(design, p[keep, 2], rcond=None)[0]
        ay = np.linalg.lstsq(design, p[keep, 3], rcond=None)[0]
        full = np.column_stack([np.ones(len(p)), p[:, 0], p[:, 1]])
        dist = np.hypot(full @ ax - p[:, 2], full @ ay - p[:, 3])
        limit = max(OUTLIER_LR_PX, 3 * float(np.median(dist[keep])))
        new = dist <= limit
        if (new == keep).all():
            break
        keep = new
    cols, rows = p[keep, 0], p[keep, 1]
    if keep.sum() < MIN_TIE_POINTS or np.ptp(cols) < w / 3 or np.ptp(rows) < h / 3:  # too few, or too clustered
        return first
    field = (float(ax[0]), float(ax[1]), float(ax[2]), float(ay[0]), float(ay[1]), float(ay[2]))
    corners_c = np.array([origin[0], origin[0] + w, origin[0], origin[0] + w], float)
    corners_r = np.array([origin[1], origin[1], origin[1] + h, origin[1] + h], float)
    fx = ax[0] + ax[1] * corners_c + ax[2] * corners_r
    fy = ay[0] + ay[1] * corners_c + ay[2] * corners_r
    cx, cy = origin[0] + w / 2, origin[1] + h / 2
    centre = (float(ax[0] + ax[1] * cx + ax[2] * cy), float(ay[0] + ay[1] * cx + ay[2] * cy))
    n = int(keep.sum())
    residual = float(np.sqrt(np.mean(dist[keep] ** 2)))
    variation = float(np.hypot(fx - centre[0], fy - centre[1]).max())
    # one shift unless the field explains the tie points far better than one shift does (an F test: 2n values,
    # 6 parameters against 2), varies by more than FIELD_MIN_LR_PX, and the points lie close to it
    rss_field = float((dist[keep] ** 2).sum())
    rss_shift = float(((p[keep, 2:] - p[keep, 2:].mean(axis=0)) ** 2).sum())
    f_stat = ((rss_shift - rss_field) / 4) / max(rss_field / max(2 * n - 6, 1), 1e-12)
    if variation < FIELD_MIN_LR_PX or residual > FIELD_MAX_RESIDUAL or f_stat < FIELD_F:
        return Coregistration(first.offset_lr_px, first.reliability, int(keep.sum()), first.applied, first.reason)
    # (the field keeps its own constant: the global shift is the offset where the content weighs most, not at the
    # centre, and set as the field's centre it put it 0.1 LR px off under a rotation of 0.5 degrees)
    return Coregistration(centre, first.reliability, int(keep.sum()), True, None, field, residual)


def _vertex(left: float, mid: float, right: float) -> float:
    """Where a parabola through three equally spaced values peaks, relative to the middle one (within ±0.5)."""
    den = left - 2 * mid + right
    return 0.0 if den >= 0 or not np.isfinite(den) else float(np.clip(0.5 * (left - right) / den, -0.5, 0.5))


def field_transform(ref_crs, ref_transform: Affine, lr: Grid, coreg: Coregistration) -> Affine:
    """The reference's transform corrected by ``coreg``'s field (measured on the LR grid ``lr``): the affine
    transform that places each reference pixel where the field says its content belongs, fitted through a 5 x 5
    grid of points over the LR (exact when both CRSs are the same, a local linearization otherwise)."""
    if coreg.field is None:
        return corrected_transform(ref_crs, ref_transform, lr, coreg.offset_lr_px)
    grid_c, grid_r = np.meshgrid(np.linspace(0, lr.width, 5), np.linspace(0, lr.height, 5))
    cols, rows = grid_c.ravel(), grid_r.ravel()
    dx, dy = coreg.offset_at(cols, rows)
    # the content at LR pixel (col, row) lies in the reference at (col + dx, row + dy): the reference pixel there
    # is to be placed at (col, row)
    seen_x, seen_y = _apply(lr.transform, cols + dx, rows + dy)
    true_x, true_y = _apply(lr.transform, cols, rows)
    sx, sy = transform_points(lr.crs, ref_crs, seen_x.tolist(), seen_y.tolist())
    tx, ty = transform_points(lr.crs, ref_crs, true_x.tolist(), true_y.tolist())
    pc, pr = _apply(~ref_transform, np.array(sx), np.array(sy))  # reference pixels showing that content
    design = np.column_stack([pc, pr, np.ones(len(pc))])
    a, b, c = np.linalg.lstsq(design, np.array(tx), rcond=None)[0]
    d, e, f = np.linalg.lstsq(design, np.array(ty), rcond=None)[0]
    return Affine(a, b, c, d, e, f)


def _apply(t: Affine, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An affine transform applied to arrays of points."""
    return t.a * x + t.b * y + t.c, t.d * x + t.e * y + t.f


def corrected_transform(ref_crs, ref_transform: Affine, lr: Grid, offset_lr_px: tuple[float, float]) -> Affine:
    """The reference's transform moved back by ``offset_lr_px`` (measured on the LR grid ``lr``)."""
    cx, cy = lr.transform @ (lr.width / 2, lr.height / 2)
    dx, dy = offset_lr_px
    mx, my = lr.transform.a * dx + lr.transform.b * dy, lr.transform.d * dx + lr.transform.e * dy
    (x0, x1), (y0, y1) = transform_points(lr.crs, ref_crs, [cx, cx - mx], [cy, cy - my])
    return Affine.translation(x1 - x0, y1 - y0) @ ref_transform


def _detail(img: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """One band of local detail: the bands' mean, minus its local mean, outside ``valid`` zero, tapered."""
    band = img.mean(axis=0)
    band = np.where(valid, band, band[valid].mean())
    detail = band - _box_blur(band, 3)
    detail = np.where(valid, detail, 0.0)
    taper = np.outer(np.hanning(detail.shape[0]), np.hanning(detail.shape[1]))
    return (detail - detail[valid].mean()) * taper


def _own_detail(img: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """:func:`_detail` of an image's own valid pixels: its local mean taken over them alone (normalized convolution),
    where :func:`_detail` fills the gaps with the mean first, which bends the detail beside each gap: two images with
    different gaps (each its own) then differed most where they should agree."""
    band = np.where(valid, img.mean(axis=0), 0.0)
    weight = _box_blur(valid.astype(float), 3)
    local = _box_blur(band, 3) / np.maximum(weight, 1e-9)
    detail = np.where(valid, band - local, 0.0)
    taper = np.outer(np.hanning(detail.shape[0]), np.hanning(detail.shape[1]))
    return np.where(valid, detail - detail[valid].mean(), 0.0) * taper


ROBUST_AGREE = 0.06  # LR px: plain and clipped refinements closer than this agree (clean scenes: up to 0.035)
ROBUST_QUANTILE = 0.98  # the refinement's clip: this quantile of each detail image's magnitude


def _bound(detail: np.ndarray, valid: np.ndarray) -> float:
    """The ROBUST_QUANTILE of ``detail``'s magnitude over ``valid``; inf where that is 0 (a detail mostly flat is
    not clipped to nothing). A quantile, not a multiple of the median: over a scene mostly flat (water) the median
    is the noise's, and a clip at a few of it flattened the texture (0.10-0.15 LR px off; found in review)."""
    bound = float(np.quantile(np.abs(detail[valid]), ROBUST_QUANTILE)) if valid.any() else 0.0
    return bound if bound > 0 else math.inf


def _clipped(detail: np.ndarray, valid: np.ndarray) -> np.ndarray:
    bound = _bound(detail, valid)
    return np.clip(detail, -bound, bound)


def _box_blur(img: np.ndarray, radius: int) -> np.ndarray:
    """The mean over a (2 radius + 1)^2 box, the image mirrored at its edges (its edge pixels not repeated)."""
    return ndimage.uniform_filter(img, 2 * radius + 1, mode="mirror")


def _shifted(img: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """``img`` moved by (dy, dx) pixels (a Fourier shift: exact for sub-pixel amounts, circular at edges)."""
    fy = np.fft.fftfreq(img.shape[0])[:, None]
    fx = np.fft.fftfreq(img.shape[1])[None, :]
    return np.fft.ifft2(np.fft.fft2(img) * np.exp(-2j * np.pi * (fy * dy + fx * dx))).real


def _overlap_ncc(a: np.ndarray, b: np.ndarray, dy: float, dx: float) -> float:
    """:func:`_ncc` of ``a`` and ``b`` moved by the whole pixels nearest (dy, dx), over where they still overlap
    (without :func:`_shifted`'s wrap-around, which dominates a large shift); 0 without an overlap."""
    iy, ix = int(round(dy)), int(round(dx))
    h, w = a.shape
    if abs(iy) >= h or abs(ix) >= w:
        return 0.0
    # b moved by (iy, ix): its pixel (y - iy, x - ix) lies at (y, x)
    a_part = a[max(0, iy):h + min(0, iy), max(0, ix):w + min(0, ix)]
    b_part = b[max(0, -iy):h - max(0, iy), max(0, -ix):w - max(0, ix)]
    return _ncc(a_part, b_part)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else 0.0
