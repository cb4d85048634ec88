"""Where the reference no longer shows what the LR shows: change detection on the LR grid.

The reference is brought onto the LR grid (averaged), harmonized to the LR per band (mean and spread, fitted
robustly: a second fit leaves out the pixels the first one calls changed), and compared pixel by pixel. A pixel is
changed where either of two detectors says so (their union; recall first):

- **classical**: the larger of two cues, each in units of its own robust spread over the scene: the change vector
  magnitude (CVA; the root mean square over bands of the difference LR - reference, each band divided by
  1.4826 x the median absolute deviation of its difference) and, where both images have texture (local detail
  energy above the scene's median), the structure cue: one minus the local correlation of their detail (image
  minus a 1-pixel Gaussian blur), so that a new building on ground of the same colour still counts (where their
  detail agrees, the change vector counts half: a colour difference there is mostly season or haze). Changed
  where the score exceeds Otsu's threshold on the scene's scores, kept between two fixed z-scores (:data:`Z_MIN`,
  :data:`Z_CHANGED`; the spread of the differences is taken as at least :data:`NOISE_FLOOR` of each band's
  range, so that two near-identical images do not turn noise into change). Where the changes outnumber the rest (a
  cloud bank over most of either image), the first fit is made on *anchors*, pixels whose detail agrees in both
  images, and each band's differences are centred on the anchors' and their spread capped at a multiple of theirs;
- **learned**: a logistic model over 11 local measures (:mod:`geosr.conditioning.change_cue`), fitted on real
  labelled change pairs, thresholded per scene.

Each pixel's **evidence** is the larger of the two detectors' scores over their scene thresholds (1: on the
threshold). The cost of a missed change (stale pixels pasted from the reference) is far higher than that of a false
alarm (texture taken from the model instead), so the detector favours recall: a pixel is changed where its evidence
exceeds :data:`LEVEL` (below 1), the evidence first smoothed over about one LR pixel (:data:`EVIDENCE_SMOOTH`: a
lone flag among unchanged pixels fades, the edge of a strong change spreads into its neighbours). :func:`refine`
draws the same rule on a finer grid, the evidence interpolated bilinearly between LR pixel centres, so that the
outline of a change falls inside the LR pixels it cuts (a change filling a third of an LR pixel is not
all-or-nothing). Pixels without data in either image are unknown (``valid`` False). Where a sensor's own cloud mask
flags a pixel (``untrusted``: a Sentinel-2 L2A product's scene classification), it is changed whatever the images
say, and left out of every statistic.

numpy, scipy's ndimage filters and scikit-image's Otsu threshold: no library detects changes between two
co-registered rasters of different sensors and dates with a recall-first rule, so the combination is written here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

from geosr.conditioning.change_cue import ChangeCue, bundled_cue, fit_probability_threshold, measures
from geosr.conditioning.reference import fit_harmonization, is_uniform

# raised with every change of the rule, its settings or what it compares (a kept detection is not reused); 10: the
# reference placed by the co-registration of 2026-12-05 (docs/model-card.md, "Version 10"); 11: co-registration's
# tie points through gaps in the images ("Version 11"); 12: the shift measured where the reference meets the scene,
# a coarser reference's cubic overshoot no gap (session 52); 13: an LR pixel missing a band unknown, a shift near
# half an LR pixel found by a second look (session 54); 14: a panchromatic reference compared with the LR's fitted
# intensity, not with each band; the reference's own cloud flags gaps of the co-registration's reference, which
# needs 32 x 32 compared pixels (session 56); 15: the shift measured around an area on the LR beyond it, as the
# upscale measures it; a reference coarser than the LR keeps phase correlation's shift (session 59); 16: the
# reference's cloud flags left out at its own resolution, its shift found through each image's own gaps, and one the
# forward model cannot check through them not applied (session 69); 17: the LR's ranges (noise floor, the cue's
# measures) over all of its own pixels, not only those the reference covers (session 70); 18: bright outliers (an
# unflagged cloud) left out of the fits and the co-registration, changed where the other image is not as bright
# (session 72)
DETECTOR_VERSION = 18
METHOD = "cva+structure | learned cue"
Z_CHANGED = 2.5  # a pixel whose combined z-score passes this is changed whatever Otsu says
# and one below this never is by the classical detector (Otsu splits even a scene without any change in two).
# 2.0 with the learned cue beside it (1.25 alone): bench/bench_change_detection.py, see CHANGELOG (issue 19).
Z_MIN = 2.0
NOISE_FLOOR = 0.03  # the spread of differences is taken as at least this share of the band's 1-99% range
# LR pixels: Gaussian smoothing of the score. None: at x8 and x16 a changed building is a pixel or two of the LR,
# and smoothing by 0.7 px cost recall everywhere (bench/bench_change_detection.py, real pairs, train and held-out
# splits, x8 and x16: recall 0.56 / 0.55 / 0.79 / 0.77 with it, 0.72 / 0.70 / 0.89 / 0.77 without, F1 up on all
# four); Z_MIN and the noise floor keep single-pixel noise out.
SMOOTH = 0.0
DETAIL = 1.0  # LR pixels: "detail" is the image minus this Gaussian blur
CORRELATION = 1.5  # LR pixels: neighbourhood of the local correlation
# A pixel is changed where its evidence (score over threshold, the larger of the two detectors'), smoothed by a
# Gaussian of EVIDENCE_SMOOTH LR pixels, exceeds LEVEL, on the LR grid or, by refine(), on a grid up to REFINE times
# finer. Both chosen on the 12 training pairs (bench/bench_change_detection.py --split train, x8 / x16, on the refined
# grid), levels in steps of 0.05, as the highest F1 of changed HR pixels among the settings that keep recall at 0.8
# or more (issue 19's floor): 0.8 px and 0.7, recall 0.847 / 0.850, F1 0.365 / 0.381 (unsmoothed at 0.7: 0.808 /
# 0.804, 0.360 / 0.368; 0.6 px 0.363 / 0.377; 1.0 px 0.367 / 0.379; level 0.75 loses the recall floor; a guided
# filter with the LR's brightness as the guide instead: the same to 0.003; see the model card). With version 6's
# cue the same rule keeps 0.7: recall 0.839 / 0.832, F1 0.362 / 0.373.
LEVEL = 0.7
EVIDENCE_SMOOTH = 0.8
REFINE = 4  # the finest grid refine() is asked for: 4 gave full-resolution masks' recall and F1 (to 0.003)
STRUCTURE_WEIGHT = 3.0  # a fully uncorrelated textured pixel scores like a CVA z-score of this
ANCHOR_CORRELATION = 0.6  # anchors: textured pixels whose detail correlates above this between the two images
MIN_ANCHORS = 0.05  # share of the compared pixels; fewer anchors: none
# A band's spread of differences is taken as at most this many times its spread over the anchors: on the 17
# labelled pairs the ratio stays below 1.9 (x4-x16; 1.2 with the new image as its own reference), under a textured cloud
# over half of the LR it is 2.0-36 where there are anchors (bench: docs/model-card.md, "Version 8"); a cloud whose
# ratio stays below the cap is left to the usual statistics (at 50% cover mostly still found, see there).
SPREAD_CAP = 2.5
# Where both images are textured and their detail correlates above AGREEMENT, the CVA cue is weighed by
# AGREEMENT_WEIGHT (_cues). Chosen on the 12 training pairs (bench/bench_change_detection.py --split train, x8 / x16):
# recall and F1 are flat over 0.7-0.9 and weights 0-0.5 (0.838 / 0.833, F1 0.365 / 0.377 at 0.8 and 0.5; version 7
# 0.839 / 0.832, 0.362 / 0.373), while the share flagged with the new image as its own reference falls from 0.020 /
# 0.050 to 0.001 / 0.004; 0.5 is the largest weight that keeps that fall (0.7: 0.004 / 0.012). Correlation 0.6 cost
# x16 recall (0.818).
AGREEMENT = 0.8
AGREEMENT_WEIGHT = 0.5


@dataclass(frozen=True)
class ChangeDetection:
    """A detection on the LR grid: ``changed`` (h, w) bool, ``score`` (h, w) float32, ``valid`` (h, w) bool."""

    changed: np.ndarray
    score: np.ndarray
    valid: np.ndarray
    threshold: float
    method: str = METHOD
    probability: np.ndarray | None = None  # (h, w) float32: the learned cue's P(changed)
    probability_threshold: float | None = None
    evidence: np.ndarray | None = None  # (h, w) float32: score over threshold, the larger of the two, smoothed
    note: str | None = None  # why the rule was not the usual one (a uniform LR)

    @property
    def changed_share(self) -> float:
        n = int(self.valid.sum())
        return float((self.changed & self.valid).sum()) / n if n else 0.0

    def to_dict(self) -> dict:
        d = {"method": self.method, "threshold": round(self.threshold, 4),
             "changed_share": round(self.changed_share, 4), "valid_pixels": int(self.valid.sum())}
        if self.probability_threshold is not None:
            d["probability_threshold"] = round(self.probability_threshold, 4)
        return d


def _zscores(diff: np.ndarray, ok: np.ndarray, floor: np.ndarray, anchors: np.ndarray | None = None) -> np.ndarray:
    """RMS over bands of each band's difference over its robust spread (1.4826 MAD over ``ok``, at least ``floor``).
    With ``anchors``, a band whose spread over ``ok`` exceeds :data:`SPREAD_CAP` times that over the anchors is
    centred and scaled by the anchors' (the changes outnumber what they are compared with)."""
    z = np.zeros(diff.shape[1:], dtype=np.float64)
    for i, d in enumerate(diff):
        med, mad = _centre_spread(d[ok])
        if anchors is not None:
            med_a, mad_a = _centre_spread(d[anchors])
            if mad > SPREAD_CAP * mad_a:
                med, mad = med_a, SPREAD_CAP * mad_a
        scale = max(mad, floor[i], 1e-9)
        z += ((d - med) / scale) ** 2
    return np.sqrt(z / diff.shape[0])


def _centre_spread(v: np.ndarray) -> tuple[float, float]:
    """Median and 1.4826 x median absolute deviation of ``v``."""
    med = float(np.median(v))
    return med, 1.4826 * float(np.median(np.abs(v - med)))


def _detail(img: np.ndarray) -> np.ndarray:
    mean = img.mean(axis=0)
    return mean - ndimage.gaussian_filter(mean, DETAIL, mode="reflect")


def _unit(x: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """``x`` over the root of its mean square over ``ok`` (as it is when that is 0)."""
    rms = float(np.sqrt(np.mean(x[ok] ** 2))) if ok.any() else 0.0
    return x / rms if rms > 0 else x


def _correlation(lr: np.ndarray, ref: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The local correlation of the two images' detail and where both are textured (detail energy above the
    scene's median in each), (h, w) each; neither depends on a linear map of either image's values (each detail
    is scaled to unit mean square over ``ok`` first, so that the small constant guarding the division does not
    depend on the images' units)."""
    a, b = (_unit(_detail(img) * ok, ok) for img in (lr, ref))
    g = lambda x: ndimage.gaussian_filter(x, CORRELATION, mode="reflect")  # noqa: E731
    va, vb, cov = g(a * a), g(b * b), g(a * b)
    rho = cov / np.sqrt(va * vb + 1e-12)
    textured = ok & (va > np.median(va[ok])) & (vb > np.median(vb[ok])) if ok.any() else ok
    return rho, textured


def _anchors(correlation: tuple[np.ndarray, np.ndarray], valid: np.ndarray) -> np.ndarray | None:
    """Pixels that surely show the same ground, chosen by structure alone (no radiometric fit needed): textured in
    both images, their detail correlated above :data:`ANCHOR_CORRELATION` (``correlation``: :func:`_correlation`);
    None when fewer than :data:`MIN_ANCHORS` of the compared pixels (or 64) are."""
    rho, textured = correlation
    anchors = textured & (rho > ANCHOR_CORRELATION)
    return anchors if anchors.sum() >= max(64, MIN_ANCHORS * valid.sum()) else None


def detect_changes(lr: np.ndarray, lr_valid: np.ndarray, ref: np.ndarray, ref_valid: np.ndarray,
                   threshold: float | None = None, cue: ChangeCue | None = None,
                   untrusted: np.ndarray | None = None, own: np.ndarray | None = None) -> ChangeDetection:
    """Compare (C, h, w) LR and reference on the same grid (physical values; validity (h, w) bool each).

    ``threshold`` fixes the classical score's threshold (e.g. one fitted on a sample of a larger scene); None fits
    it here. ``cue``: the learned cue (default: the bundled one). ``untrusted`` (h, w) bool: where a sensor's own
    mask says either image does not show the ground (cloud, shadow, snow): changed, whatever the images say, and
    left out of every fit and statistic (a cloud taken for the norm hides the changes beside it). The evidence there
    is that of the nearest pixels compared (:func:`refine` draws the images' changes around it as if it were not
    there; the caller adds the mask's own outline). ``own`` (h, w) bool: the LR's own pixels, not its edge replicated
    beyond the scene, where the LR's ranges are taken (:func:`_ranges`; default everywhere). Either image's bright
    outliers (:func:`bright_outliers`: a cloud no mask flags, or white tanks and roofs), over BRIGHT_SHARE of the
    compared pixels or more, are left out of every fit and statistic too: changed where the other image is not as
    bright there (BRIGHT_TOO: a cloud over the ground, a new white roof), else their evidence is that of the nearest
    pixels compared (a white tank both show).
    """
    known = lr_valid & ref_valid
    a, b = _brightness(lr, lr_valid), _brightness(ref, ref_valid)
    core_a, core_b = lr_valid & (a > OUTLIER_SPREADS), ref_valid & (b > OUTLIER_SPREADS)
    bright = (with_margin(core_a, lr_valid) | with_margin(core_b, ref_valid)) & known
    if outweighs(core_a | core_b, bright, known, 100):
        # an unflagged cloud over 7% of a Landsat LR set its ranges and thresholds: 17% of the labelled changes
        # beside it were found, against 83% without it (found in review); forced to "changed", white tanks lost
        # the reference that showed them (found in review)
        found = _trusted(lr, lr_valid & ~bright, ref, ref_valid, threshold, cue, untrusted, own)
        assert found.evidence is not None
        # (each image's outliers themselves, not the margin around them, which may be dark ground; the other image
        # bright too: as far above its own bulk, in its own spreads, within BRIGHT_TOO)
        lit = (core_a & (b < BRIGHT_TOO * a)) | (core_b & (a < BRIGHT_TOO * b))
        evidence = nearest_filled(found.evidence, found.valid)
        evidence = np.where(lit & known, np.maximum(evidence, 2 * LEVEL + 1), evidence).astype(np.float32)
        return replace(found, changed=(found.changed | (lit & known) | (evidence > LEVEL) & bright) & known,
                       valid=known, evidence=evidence)
    return _trusted(lr, lr_valid, ref, ref_valid, threshold, cue, untrusted, own)


def _trusted(lr: np.ndarray, lr_valid: np.ndarray, ref: np.ndarray, ref_valid: np.ndarray, threshold: float | None,
             cue: ChangeCue | None, untrusted: np.ndarray | None, own: np.ndarray | None) -> ChangeDetection:
    """:func:`detect_changes` with the ``untrusted`` pixels changed and left out of the detection."""
    if untrusted is not None and untrusted.any():
        known = lr_valid & ref_valid
        found = _detect(lr, lr_valid & ~untrusted, ref, ref_valid, threshold, cue, own)
        assert found.evidence is not None
        evidence = nearest_filled(found.evidence, found.valid).astype(np.float32)
        return replace(found, changed=found.changed | (known & untrusted), valid=known, evidence=evidence)
    return _detect(lr, lr_valid, ref, ref_valid, threshold, cue, own)


def _detect(lr: np.ndarray, lr_valid: np.ndarray, ref: np.ndarray, ref_valid: np.ndarray, threshold: float | None,
            cue: ChangeCue | None, own: np.ndarray | None) -> ChangeDetection:
    """:func:`detect_changes` over the pixels valid in both, every one of them trusted."""
    valid = lr_valid & ref_valid
    if not valid.any():
        z = np.zeros(valid.shape, np.float32)
        return ChangeDetection(np.zeros(valid.shape, bool), z, valid, float("inf"), evidence=z)
    if uniform(lr, valid) and not uniform(ref, valid):
        evidence = np.where(valid, 2 * LEVEL + 1, 0.0).astype(np.float32)  # changed, however finely refined
        return ChangeDetection(valid.copy(), np.zeros(valid.shape, np.float32), valid, float("inf"), METHOD,
                               evidence=evidence, note=UNIFORM_NOTE)
    x, score, t = _classical(_filled(lr, valid), _filled(ref, valid), valid, threshold,
                             _ranges(lr, lr_valid if own is None else lr_valid & own))
    p = np.where(valid, (cue or bundled_cue()).probability(x).reshape(valid.shape), 0.0)
    p_t = fit_probability_threshold(p[valid])
    raw = nearest_filled(np.maximum(score / t, p / p_t), valid)
    evidence = np.where(valid, ndimage.gaussian_filter(raw, EVIDENCE_SMOOTH, mode="nearest"), 0.0).astype(np.float32)
    return ChangeDetection((evidence > LEVEL) & valid, score.astype(np.float32), valid, float(t), METHOD,
                           p.astype(np.float32), p_t, evidence)


def pan_intensity(lr: np.ndarray, valid: np.ndarray, pan: np.ndarray) -> np.ndarray:
    """The (1, h, w) intensity of the (C, h, w) ``lr`` that the (h, w) panchromatic ``pan`` would show: the linear
    combination of its bands (and an offset) fitted to ``pan`` by least squares over ``valid``, refitted without the
    pixels it fits worst (the changes), as component-substitution pan-sharpening synthesizes it. Comparing each band
    with a panchromatic reference instead reads the LR's own colour as change (a near-infrared band against a
    visible pan: 88% of an unchanged same-date scene flagged); a fit that cannot be made gives the bands' mean."""
    mean = lr.mean(axis=0, keepdims=True)
    ok = valid.copy()
    for _ in range(2):  # fit, leave out the worst-fitting pixels, fit again
        if ok.sum() <= 4 * (lr.shape[0] + 1):
            return mean
        design = np.concatenate([lr[:, ok], np.ones((1, int(ok.sum())), lr.dtype)]).T.astype(np.float64)
        coef, *_ = np.linalg.lstsq(design, pan[ok].astype(np.float64), rcond=None)
        if not np.isfinite(coef).all():
            return mean
        fitted = np.tensordot(coef[:-1], lr, axes=1) + coef[-1]
        residual = np.abs(pan - fitted)
        spread = 1.4826 * np.median(residual[ok])
        ok = valid & (residual <= 2.5 * spread) if spread > 0 else ok
    return fitted[None].astype(lr.dtype)


# A compared area whose LR is uniform in every band (reference.is_uniform: a cloud, fill, a blank scene) shows none
# of the detail the reference may show: every cue read "unchanged" against a reference whose contrast the
# harmonization had fitted to none (a flat LR against the sample's reference: 0% changed, and reference-paste pasted
# the reference everywhere). Unless the reference is as uniform, every pixel is changed.
UNIFORM_NOTE = ("the LR is uniform where both images have data (a cloud, fill or a blank scene) while the reference "
                "shows detail: every pixel there is taken as changed")


def uniform(img: np.ndarray, valid: np.ndarray) -> bool:
    """Whether every band of the (C, h, w) ``img`` is uniform over ``valid`` (:func:`is_uniform`)."""
    return all(is_uniform(band[valid]) for band in img)


def refine_factor(scale: int) -> int:
    """How much finer than the LR grid upscale's detection is drawn at ``scale``: the largest divisor of the scale up
    to :data:`REFINE`, so that every fine pixel is a whole block of output pixels."""
    return max(d for d in range(1, REFINE + 1) if scale % d == 0)


def refine(evidence: np.ndarray, valid: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """(changed, valid) on the grid ``factor`` times finer than that of the (h, w) ``evidence`` and ``valid``: the
    evidence interpolated bilinearly between pixel centres (unknown pixels take their nearest known neighbour's
    first, so that a scene's edge is not pulled down) over :data:`LEVEL`; a fine pixel is known where its LR pixel
    is. ``factor`` 1 gives the LR grid's own rule."""
    valid = valid.astype(bool)
    if factor == 1:
        return (evidence > LEVEL) & valid, valid
    known = np.repeat(np.repeat(valid, factor, axis=0), factor, axis=1)
    return (interpolated(nearest_filled(evidence, valid), factor) > LEVEL) & known, known


def interpolated(evidence: np.ndarray, factor: int) -> np.ndarray:
    """(h, w) ``evidence`` (known everywhere) on the grid ``factor`` times finer, bilinear between pixel centres."""
    return ndimage.zoom(np.asarray(evidence, np.float64), factor, order=1, mode="nearest", grid_mode=True)


def nearest_filled(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(h, w) ``values`` in float64 with every pixel outside ``valid`` taking its nearest valid pixel's value (none
    valid: as they are)."""
    out = np.asarray(values, np.float64)
    if not valid.any() or valid.all():
        return out
    nearest = ndimage.distance_transform_edt(~valid, return_distances=False, return_indices=True)
    return out[tuple(nearest)]


def detection_measures(lr: np.ndarray, lr_valid: np.ndarray, ref: np.ndarray, ref_valid: np.ndarray) -> np.ndarray:
    """The learned cue's measures of every pixel, (h * w, n), as :func:`detect_changes` computes them (to fit
    the cue: ``scripts/fit_change_cue.py``)."""
    valid = lr_valid & ref_valid
    return _classical(_filled(lr, valid), _filled(ref, valid), valid, None, _ranges(lr, lr_valid))[0]


OUTLIER_SPREADS = 4.0  # bright_outliers: this many 10-90% spreads above the 90th percentile
OUTLIER_MARGIN = 2  # pixels around bright outliers left out with them
# the share of the compared pixels bright outliers must cover to be left out: fewer barely move a statistic (white
# roofs over 0.12% of Taizhou at 30 m), and left out they changed its detection elsewhere (1009 pixels more changed)
BRIGHT_SHARE = 0.0025
# an outlier of one image is no change where the other is at least this share as bright (in spreads above its 90th
# percentile: a white tank both show); a fixed bar of 1 spread let bare soil beside a new white roof, or under a
# cloud, pass (1.9% of a Landsat scene), and the roof or the cloud's holes took their unchanged neighbours' evidence
# (found in review)
BRIGHT_TOO = 0.5


def bright_outliers(img: np.ndarray, valid: np.ndarray, margin: int = OUTLIER_MARGIN) -> np.ndarray:
    """(h, w) bool: the valid pixels of (C, h, w) ``img`` whose bands' mean lies OUTLIER_SPREADS times the 10-90%
    spread (at least a quarter of the median) above the 90th percentile (:func:`_brightness`), and the pixels within
    ``margin`` of them: an opaque cloud no mask flags, but also white tanks and roofs (SpaceNet-6's tanks, Taizhou's
    factory roofs at 30 m: ground, which is why they are only left out of statistics, never changed for being
    bright). Such pixels set a scene's 99th percentile once they cover 1% of it, and their edges outweigh the
    ground's detail in a correlation (a disc at DN 250 over 0.6% of a Landsat scene made its 2 LR px shift
    untrusted, at reliability 0.18 against 0.58; found in review). Over a tenth of a scene or more, a cloud is its
    own 90th percentile: none is found."""
    return with_margin(valid & (_brightness(img, valid) > OUTLIER_SPREADS), valid, margin)


def outweighs(cores: np.ndarray, bright: np.ndarray, compared: np.ndarray, least: int) -> bool:
    """Whether bright outliers are left out of a statistic over the ``compared`` pixels (change detection's, the
    reference's harmonization): their ``cores`` (:func:`bright_outliers` without a margin) cover BRIGHT_SHARE of
    them or more, and ``least`` of them are not ``bright`` (the cores with their margins)."""
    return bool((cores & compared).sum() >= BRIGHT_SHARE * compared.sum() and (compared & ~bright).sum() >= least)


def with_margin(core: np.ndarray, valid: np.ndarray, margin: int = OUTLIER_MARGIN) -> np.ndarray:
    """``core`` with the ``valid`` pixels within ``margin`` of it: the pixels a bright outlier covers in part, below
    the bar, whose edges weigh as much (a cloud over 7.6% of a reference, averaged onto the LR grid, kept the match
    at reliability 0.03)."""
    return ndimage.binary_dilation(core, iterations=margin) & valid if core.any() and margin else core


def _brightness(img: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(h, w): how far the bands' mean of (C, h, w) ``img`` lies above its 90th percentile over ``valid``, in 10-90%
    spreads (at least a quarter of the median); 0 everywhere with under 100 valid pixels or no spread."""
    if valid.sum() < 100:
        return np.zeros(valid.shape)
    mean = img.mean(axis=0)
    q10, q50, q90 = np.percentile(mean[valid], [10, 50, 90])
    spread = max(q90 - q10, 0.25 * abs(q50))
    return (mean - q90) / spread if spread > 0 else np.zeros(valid.shape)


def _ranges(lr: np.ndarray, lr_valid: np.ndarray) -> tuple[np.ndarray, float]:
    """The LR's 1-99% range of each band and of the bands' mean, over all of its valid pixels, not only those the
    reference covers: the scale of the differences' noise floor and of the learned cue's measures. Taken over a
    reference covering 100 x 100 of a 400 x 400 Landsat scene (a uniform patch), both shrank, and 62% of its
    labelled unchanged pixels were flagged, against 7.8% with the whole reference (found in review)."""
    ok = lr_valid if lr_valid.any() else np.ones(lr_valid.shape, bool)
    lo, hi = np.percentile(lr[:, ok], [1, 99], axis=1)
    mean = lr.mean(axis=0)[ok]
    return hi - lo, float(np.percentile(mean, 99) - np.percentile(mean, 1))


def _filled(img: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``img`` in float64 with each band's mean over ``valid`` wherever a pixel is not valid (in either image): the
    neighbourhood measures then see the same flat fill in both images there, whatever values (0, NaN) the
    readers left in them."""
    out = img.astype(np.float64)
    if valid.all():
        return out
    for band in out:
        inside = band[valid]
        band[~valid] = inside.mean() if inside.size else 0.0
    return out


def _classical(lr: np.ndarray, ref: np.ndarray, valid: np.ndarray, threshold: float | None,
               ranges: tuple[np.ndarray, float]) -> tuple[np.ndarray, np.ndarray, float]:
    """The classical detector: the learned cue's measures, the score and its threshold (``threshold`` or fitted),
    in units of the LR's ``ranges`` (:func:`_ranges`).

    Statistics over every compared pixel take the changes for the norm once they cover much of the scene (under a
    textured cloud over half of an x4 LR, version 7 flagged 49% of the cloud). When they do (:func:`_outnumbered`), the
    harmonization is fitted first on the anchors (:func:`_anchors`) and the differences' spread is bounded by
    theirs (:func:`_zscores`); otherwise both come from every compared pixel. Then a second fit leaves out the pixels
    the first pass calls changed. The detail's correlation (structure cue, anchors) is taken once, before any fit:
    a fit would change it only through the weights of the bands in their mean."""
    correlation = _correlation(lr, ref, valid)
    anchors = _anchors(correlation, valid)
    if anchors is not None and not _outnumbered(lr, ref, valid, anchors):
        anchors = None  # the usual statistics: the anchors only bound what the changes would otherwise set
    ok = valid if anchors is None else anchors
    for _ in range(2):  # fit, find the changes, fit again without them
        harmonized = fit_harmonization(lr, valid, ref, ok).apply(ref)  # the reference's mean/std fit
        score, z, structure = _cues(lr, harmonized, valid, correlation, ranges[0], anchors)
        t = threshold if threshold is not None else fit_threshold(score[valid])
        ok = valid & (score <= t)
        if ok.sum() < 16:
            ok = valid if anchors is None else anchors
    return measures(lr, harmonized, valid, z, structure, score, ranges[1]), score, t


def _outnumbered(lr: np.ndarray, ref: np.ndarray, valid: np.ndarray, anchors: np.ndarray) -> bool:
    """Whether the differences from a fit on the anchors spread over every compared pixel more than
    :data:`SPREAD_CAP` times as much as over the anchors, in any band: the changes outnumber the rest."""
    diff = lr - fit_harmonization(lr, valid, ref, anchors).apply(ref)
    return any(_centre_spread(d[valid])[1] > SPREAD_CAP * _centre_spread(d[anchors])[1] for d in diff)


def _cues(lr: np.ndarray, ref: np.ndarray, valid: np.ndarray, correlation: tuple[np.ndarray, np.ndarray],
          band_range: np.ndarray, anchors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The combined score, the CVA z-score and the structure cue of every pixel (0 outside ``valid``), given the
    detail's ``correlation`` (:func:`_correlation`) and the LR's range of each band (:func:`_ranges`)."""
    z = np.where(valid, _zscores(lr - ref, valid, NOISE_FLOOR * band_range, anchors), 0.0)
    rho, textured = correlation
    structure = np.where(textured, np.clip(1 - rho, 0, 2) / 2, 0.0)
    # where both images show the same detail, a difference of brightness or colour alone is seldom a change of the
    # ground (another season, a haze): the CVA cue counts half there (AGREEMENT_WEIGHT), the structure cue in full
    colour = np.where(textured & (rho > AGREEMENT), AGREEMENT_WEIGHT * z, z)
    s = np.maximum(colour, STRUCTURE_WEIGHT * structure)
    if SMOOTH:
        s = ndimage.gaussian_filter(np.where(valid, s, 0.0), SMOOTH, mode="reflect")
    return np.where(valid, s, 0.0), z, structure


def fit_threshold(scores: np.ndarray) -> float:
    """Otsu's threshold on ``scores``, at most :data:`Z_CHANGED` (recall first) and at least :data:`Z_MIN`."""
    if scores.size < 2 or float(scores.max()) - float(scores.min()) < 1e-9:
        return Z_CHANGED
    return float(np.clip(threshold_otsu(scores, nbins=256), Z_MIN, Z_CHANGED))
