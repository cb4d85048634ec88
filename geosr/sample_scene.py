"""The bundled sample scene: Landsat-5 TM over Taizhou, 2003 at 240 m (LR), 2000 at 30 m (reference),
the 2000-2003 change mask and the 2003 scene at 30 m (ground truth). Public domain imagery (USGS)."""

from __future__ import annotations

import shutil
from pathlib import Path

SAMPLE_DIR = Path(__file__).resolve().parent / "weights" / "sample"
SAMPLE_FILES = {
    "lr": "taizhou_2003_lr240m.tif",
    "ref": "taizhou_2000_ref30m.tif",
    "cd": "taizhou_change_2000_2003.tif",
    "truth": "taizhou_2003_truth30m.tif",
}
SAMPLE_SCALE = 8


def sample_paths() -> dict[str, Path]:
    """Paths of the bundled sample files inside the installed package."""
    return {k: SAMPLE_DIR / v for k, v in SAMPLE_FILES.items()}


def copy_sample(folder: str | Path) -> dict[str, Path]:
    """Copy the sample scene into ``folder`` (created if needed) and return the copies' paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for key, src in sample_paths().items():
        out[key] = folder / src.name
        shutil.copyfile(src, out[key])
    return out
