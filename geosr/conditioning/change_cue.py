"""The learned cue of change detection: a logistic model of "this LR pixel changed" over local image measures.

:func:`measures` describes each LR pixel by :data:`MEASURES` (the classical detector's z-score and structure cue,
their neighbourhood, and how the two images differ in texture, brightness and colour), all in units of the scene
(robust spreads, the LR's 1-99% range), so that the model carries over between sensors and value scales. The model
(:class:`ChangeCue`, ``geosr/weights/change_cue.json``) was fitted by ``scripts/fit_change_cue.py`` on the
training split of real labelled change pairs (LEVIR-CD, DSIFN-CD, Landsat; their held-out scenes never seen),
each pair weighted alike; the json records its data and settings. A pixel is flagged where its probability
exceeds Otsu's threshold of the scene's probabilities, kept in [:data:`P_MIN`, :data:`P_MAX`].

numpy and scipy only: 11 measures and a logistic model need no learning framework at run time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

CUE_PATH = Path(__file__).resolve().parents[1] / "weights" / "change_cue.json"
# Only how the two dates differ, never what the scene looks like: with the LR's and the reference's own texture and
# brightness among the measures (detector version 5) the cue learned which data set it was looking at; fitted
# without LEVIR-CD, it flagged 36% / 52% (x8 / x16) of LEVIR's images compared with themselves, without those
# measures 9% / 24%, at the same F1 on the pairs it saw (docs/model-card.md, "Version 6").
MEASURES = ("z", "structure", "z_blur1", "z_blur2", "z_max3", "z_min3", "structure_blur1", "log_texture_ratio",
            "brightness_change", "colour_change", "score")
P_MIN = 0.2  # a scene's threshold on the probability is kept in [P_MIN, P_MAX]: Otsu splits even a scene without
P_MAX = 0.5  # change in two, and a scene that changed almost everywhere still has its changes flagged
TEXTURE = 1.0  # LR pixels: the Gaussian neighbourhood of the local texture (standard deviation)


def measures(lr: np.ndarray, ref: np.ndarray, valid: np.ndarray, z: np.ndarray, structure: np.ndarray,
             score: np.ndarray, span: float | None = None) -> np.ndarray:
    """(h * w, len(MEASURES)) measures of every pixel of the (C, h, w) LR and the harmonized reference on its grid,
    given the classical detector's z-score, structure cue and combined score ((h, w) each), in units of ``span``,
    the LR's 1-99% range of its bands' mean (default: over ``valid``)."""
    def blur(x: np.ndarray, s: float) -> np.ndarray:
        return ndimage.gaussian_filter(x, s, mode="reflect")

    def texture(m: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(blur(m * m, TEXTURE) - blur(m, TEXTURE) ** 2, 0))

    m_lr, m_ref = lr.mean(axis=0), ref.mean(axis=0)
    if span is None:
        inside = m_lr[valid] if valid.any() else m_lr.ravel()
        span = float(np.percentile(inside, 99) - np.percentile(inside, 1))
    span += 1e-9
    t_lr, t_ref = texture(m_lr), texture(m_ref)
    d = lr - ref
    colour = np.sqrt(((d - d.mean(axis=0, keepdims=True)) ** 2).mean(axis=0)) / span
    columns = [z, structure, blur(z, 1), blur(z, 2), ndimage.maximum_filter(z, 3), ndimage.minimum_filter(z, 3),
               blur(structure, 1), np.log((t_lr + 1e-3 * span) / (t_ref + 1e-3 * span)), (m_lr - m_ref) / span,
               colour, score]
    return np.stack(columns, axis=-1).reshape(-1, len(MEASURES))


@dataclass(frozen=True)
class ChangeCue:
    """A logistic model over :data:`MEASURES`: standardized by ``mean`` / ``std``, then ``weights`` and ``bias``."""

    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray
    bias: float

    @classmethod
    def from_dict(cls, d: dict) -> "ChangeCue":
        if tuple(d["measures"]) != MEASURES:
            raise ValueError(f"change cue: measures {d['measures']} are not this geosr's {list(MEASURES)}")
        return cls(np.asarray(d["mean"], float), np.asarray(d["std"], float), np.asarray(d["weights"], float),
                   float(d["bias"]))

    def probability(self, x: np.ndarray) -> np.ndarray:
        """P(changed) of each row of measures ``x``."""
        t = ((x - self.mean) / self.std) @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(t, -50, 50)))


@cache
def bundled_cue() -> ChangeCue:
    """The bundled model (``geosr/weights/change_cue.json``), read once."""
    return ChangeCue.from_dict(json.loads(CUE_PATH.read_text()))


def fit_probability_threshold(p: np.ndarray) -> float:
    """Otsu's threshold on the probabilities ``p`` of a scene, kept in [:data:`P_MIN`, :data:`P_MAX`]."""
    if p.size < 2 or float(p.max()) - float(p.min()) < 1e-9:
        return P_MAX
    return float(np.clip(threshold_otsu(p, nbins=256), P_MIN, P_MAX))
