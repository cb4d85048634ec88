"""How sharp a scene's LR is: a two-number summary of its spectrum near the LR's Nyquist frequency, which tells
an LR-space network how the LR was made (a soft sensor PSF, an antialiased resize, a box, an aliasing resize)
without anyone saying so.

Each number is the log ratio of the image's energy in two adjacent octaves of a Gaussian pyramid, measured on the
mean ``g`` of the bands, each standardized first (its mean and standard deviation over the valid pixels):
``log(E[(g - G1 g)^2] / E[(G1 g - G2 g)^2])`` (the octave just below Nyquist against the next) and
``log(E[(G1 g - G2 g)^2] / E[(G2 g - G4 g)^2])`` (the next against the one below), with ``Gk`` a Gaussian blur of
``0.7 k`` LR pixels. A degradation changes the first by far more than scenes differ (on the held-out images at
x4: a Gaussian PSF with MTF 0.3 gives about 0.0, antialiased bicubic 0.5, box 0.7, bicubic without antialiasing
1.1; the spread between scenes is about 0.2); the second says how much of that is the scene's own texture. The
bands are standardized and both numbers are ratios, so a gain and offset of each band (the scene's stretch, or none
at training) leaves them unchanged.

A network sees the numbers of the whole scene (computed once, from a sample of its LR at full resolution), so that
every window of a scene is told the same thing; :func:`lr_sharpness` is the one definition, for training and
inference alike. numpy and scipy only.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
from scipy.ndimage import binary_erosion, gaussian_filter

CODE_DIMS = 2
BASE_SIGMA = 0.7  # LR pixels: the first octave below Nyquist
# erosion steps (LR pixels, 4-connected) dropped at borders and next to invalid pixels: most of the widest blur's
# pull (sigma 2.8) of the filled values; what is left moved the code by at most 0.03 next to holes
MARGIN = 6
# the fewest LR pixels measured (inside the margin) for a code: on smaller images one scene's texture moves it as
# much as the degradation does (held-out x8 LRs of 32 x 32 pixels put a Gaussian PSF at 0.53, an antialiased
# resize's place); below it the code is zero (a soft PSF's place: expert backbones run their soft, blind expert)
MIN_PIXELS = 32 * 32


def lr_sharpness(lr: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """The code (module doc) of an LR image ``(C, H, W)`` or ``(H, W)``: float32 ``(2,)``; zeros where too few
    valid pixels (fewer than :data:`MIN_PIXELS` inside the margin) or no texture leave nothing to measure."""
    a = np.asarray(lr, dtype=np.float64)
    a = a[None] if a.ndim == 2 else a
    ok = np.isfinite(a).all(axis=0)
    if valid is not None:
        ok &= np.asarray(valid, dtype=bool)
    if ok.sum() < 16:
        return np.zeros(CODE_DIMS, np.float32)
    bands = [(b - b[ok].mean()) / b[ok].std() for b in a if b[ok].std() > 0]
    if not bands:
        return np.zeros(CODE_DIMS, np.float32)
    g = np.where(ok, np.mean(bands, axis=0), 0.0)  # invalid pixels take the mean, then are left out of the sums below
    inner = binary_erosion(ok, iterations=MARGIN, border_value=0)
    if inner.sum() < MIN_PIXELS:
        return np.zeros(CODE_DIMS, np.float32)
    blurred = [g] + [gaussian_filter(g, BASE_SIGMA * k, mode="nearest") for k in (1, 2, 4)]
    energy = [float(np.mean((fine - coarse)[inner] ** 2)) for fine, coarse in zip(blurred, blurred[1:])]
    eps = 1e-12 * (1.0 + float(np.var(g[inner])))
    code = [np.log((energy[i] + eps) / (energy[i + 1] + eps)) for i in range(CODE_DIMS)]
    return np.asarray(code, np.float32)


def scene_sharpness(samples: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[float, ...]:
    """One code for a scene from full-resolution samples of it ((LR, validity) pairs): their codes averaged,
    weighted by their valid pixels."""
    codes, weights = [], []
    for lr, valid in samples:
        n = float(np.count_nonzero(valid))
        if n >= 16:
            codes.append(lr_sharpness(lr, valid))
            weights.append(n)
    if not codes:
        return (0.0,) * CODE_DIMS
    mean = np.average(np.stack(codes), axis=0, weights=weights)
    return tuple(round(float(v), 6) for v in mean)
