"""Provenance: which output pixels could take the reference's detail, which the model made alone, and why.

Beside every output of a model that uses a reference, ``<output stem>.provenance.tif``: one uint8 band on the
output grid with a colour table, classes

    0 nodata (the LR has no data there), 1 reference detail used (the reference has data and the change mask calls
    the pixel unchanged), 2 model only (the change mask calls it changed), 3 no reference available

and the share of each class (of the output's pixels) in the run's summary and the output's tags. The classes
follow from the inputs alone (LR validity, the co-registered reference's footprint, the change mask, ``--cd
auto``'s included), read on the output grid in bands of rows as the run reads them: class 2 is what the model was
told (a diffusion model, given the reference with the mask, may keep a faint trace of it there: docs/cli-upscale.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
from rasterio.windows import Window

from geosr.io.paths import sidecar_paths
from geosr.io.writer import OutputMeta, write_row_bands
from geosr.pipeline.scene import Scene
from geosr.tiling.grid import Grid
from geosr.tiling.windows import PlannedWindow

CLASSES = ("nodata", "reference detail used", "model only (changed)", "no reference available")
COLOURS = {0: (0, 0, 0, 0), 1: (46, 139, 87, 255), 2: (220, 60, 40, 255), 3: (160, 160, 160, 255)}
# Output pixels classified at a time (one LR row's at least): about a window batch's, which the run's memory estimate
# covers (1 << 24 read a reference stack of 8.4M pixels at x2, in float64 as the stretch runs: the run's peak, up to
# twice the estimate; with a 1200 px LR and a 6000 px reference at x2 / x4, peak 1.27 / 1.48 GB -> 0.74 / 1.01 GB,
# planned 0.71 / 0.89 GB; found in review)
BAND_PIXELS = 1 << 20


def provenance_path(output: Path) -> Path:
    """``<output stem>.provenance.tif`` beside ``output``."""
    return sidecar_paths(output)["provenance raster"]


def classify(lr_valid: np.ndarray, ref_valid: np.ndarray, changed: np.ndarray) -> np.ndarray:
    """(H, W) uint8 provenance classes from validity and change on the output grid (module doc)."""
    out = np.full(lr_valid.shape, 3, np.uint8)
    out[ref_valid & ~changed] = 1
    out[ref_valid & changed] = 2
    out[~lr_valid] = 0
    return out


def _bands(scene: Scene, counts: np.ndarray) -> Iterator[tuple[int, Grid, np.ndarray]]:
    s, hr = scene.scale, scene.hr
    rows = max(1, BAND_PIXELS // max(1, hr.width * s))  # LR rows per band (each s output rows of hr.width)
    width = int(scene.area.width)
    for r0 in range(0, int(scene.area.height), rows):
        h = min(rows, int(scene.area.height) - r0)
        stack = scene.read_stack(PlannedWindow(index=0, row=0, col=0, col_off=0, row_off=r0, width=width, height=h), 0)
        lr_valid = np.repeat(np.repeat(stack.lr_valid, s, axis=0), s, axis=1)
        classes = classify(lr_valid, stack.ref_valid, stack.changed)
        counts += np.bincount(classes.ravel(), minlength=len(CLASSES))[: len(CLASSES)]
        yield r0 * s, hr.subgrid(Window(0, r0 * s, hr.width, h * s)), classes[None]


def write_provenance(scene: Scene, final: Path, work: Path, tags: dict[str, str]) -> dict[str, float]:
    """Classify every output pixel of ``scene``, write the sidecar COG at ``final`` (temporary files in ``work``)
    and return the share of each class by name."""
    counts = np.zeros(len(CLASSES), np.int64)
    meta = OutputMeta(dtype="uint8", count=1, nodata=0, descriptions=("provenance",), colormap=COLOURS,
                      categories=dict(enumerate(CLASSES)),
                      overview_resampling="mode",
                      tags={**tags, "GEOSR_PROVENANCE_CLASSES": ",".join(f"{i}={n}" for i, n in enumerate(CLASSES))})
    write_row_bands(final, scene.hr, meta, _bands(scene, counts), work)
    total = max(1, int(counts.sum()))
    return {name: round(int(n) / total, 6) for name, n in zip(CLASSES, counts)}
