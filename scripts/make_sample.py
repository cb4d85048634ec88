"""Build the bundled sample scene (geosr/weights/sample/) from the public-domain Landsat-5 TM pair.

Source: Taizhou (China) Landsat-5 TM scenes of 2000 and 2003 with a change mask, as published in
ChenHongruixuan/ChangeDetectionRepository (MIT; Landsat imagery is public domain, courtesy of the U.S.
Geological Survey). Run once by a developer with ../shared/data present; the outputs are committed.

    python scripts/make_sample.py ../shared/data/change_lowres/landsat_taizhou_nanjing
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from PIL import Image

OUT = Path(__file__).resolve().parents[1] / "geosr" / "weights" / "sample"
FACTOR = 8
RGB = (3, 2, 1)  # TM band 3 = red, 2 = green, 1 = blue
NAMES = ("red", "green", "blue")


def write(path: Path, data: np.ndarray, profile: dict, descriptions=(), tags=None) -> None:
    prof = dict(profile, count=data.shape[0], dtype=data.dtype.name, driver="GTiff", tiled=True,
                blockxsize=128, blockysize=128, compress="deflate", predictor=2, interleave="pixel")
    prof.pop("nodata", None)
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(data)
        for i, d in enumerate(descriptions):
            dst.set_band_description(i + 1, d)
        dst.update_tags(**(tags or {}))


def main(src: Path) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    credit = "Landsat-5 TM, courtesy of the U.S. Geological Survey (public domain)"
    with rasterio.open(src / "Taizhou_2003TM.tif") as ds:
        new = ds.read(list(RGB))
        profile = ds.profile
    with rasterio.open(src / "Taizhou_2000TM.tif") as ds:
        old = ds.read(list(RGB))
    mask = (np.array(Image.open(src / "Taizhou_change_mask.png")) > 0).astype(np.uint8)[None]
    c, h, w = new.shape
    lr = new.reshape(c, h // FACTOR, FACTOR, w // FACTOR, FACTOR).astype(np.float64).mean(axis=(2, 4))
    lr = np.rint(lr).astype(np.uint8)
    lr_profile = dict(profile, width=w // FACTOR, height=h // FACTOR,
                      transform=profile["transform"] @ Affine.scale(FACTOR))
    write(OUT / "taizhou_2003_lr240m.tif", lr, lr_profile, NAMES,
          {"SOURCE": credit + "; 2003 scene, 8x8 box-averaged to 240 m", "TM_BANDS": "3,2,1"})
    write(OUT / "taizhou_2000_ref30m.tif", old, profile, NAMES,
          {"SOURCE": credit + "; 2000 scene at 30 m", "TM_BANDS": "3,2,1"})
    write(OUT / "taizhou_2003_truth30m.tif", new, profile, NAMES,
          {"SOURCE": credit + "; 2003 scene at 30 m (ground truth of the sample)", "TM_BANDS": "3,2,1"})
    write(OUT / "taizhou_change_2000_2003.tif", mask, profile, ("change",),
          {"SOURCE": "change mask 2000-2003, ChenHongruixuan/ChangeDetectionRepository (MIT)",
           "CLASSES": "0=unchanged,1=changed"})


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])  # (--help was read as the data folder)
    ap.add_argument("source", type=Path, help="the Landsat Taizhou / Nanjing folder of ../shared/data")
    main(ap.parse_args().source)
