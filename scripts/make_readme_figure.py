"""The README's picture: the sample scene's LR | reference | change mask | SR outputs | truth, side by side.

    python scripts/make_readme_figure.py docs/img/sample.png bicubic reference-paste [MODEL ...]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image, ImageDraw

from geosr.pipeline.upscale import upscale
from geosr.sample_scene import SAMPLE_SCALE, sample_paths

CROP = (slice(120, 376), slice(100, 356))  # a 256 x 256 window of the 400 x 400 HR grid


def tile(arr: np.ndarray, label: str) -> Image.Image:
    rgb = np.moveaxis(arr, 0, -1) if arr.ndim == 3 else np.repeat(arr[..., None], 3, axis=-1)
    lo, hi = np.percentile(rgb, (1, 99), axis=(0, 1))  # per band, like a GIS viewer's default stretch
    img = Image.fromarray((np.clip((rgb - lo) / np.maximum(hi - lo, 1e-9), 0, 1) * 255).astype(np.uint8))
    canvas = Image.new("RGB", (img.width, img.height + 22), "white")
    canvas.paste(img, (0, 22))
    ImageDraw.Draw(canvas).text((4, 5), label, fill="black")
    return canvas


def main(out: Path, models: list[str]) -> None:
    s = sample_paths()
    with rasterio.open(s["lr"]) as ds:
        lr = np.repeat(np.repeat(ds.read(), SAMPLE_SCALE, 1), SAMPLE_SCALE, 2).astype(float)
    read = lambda p: rasterio.open(p).read().astype(float)  # noqa: E731
    panels = [tile(lr[(slice(None), *CROP)], "LR 240 m (x8)"),
              tile(read(s["ref"])[(slice(None), *CROP)], "reference 2000"),
              tile(read(s["cd"])[0][CROP] * 255, "change mask")]
    with tempfile.TemporaryDirectory() as tmp:
        for m in models:
            o = Path(tmp) / f"{m}.tif"
            # (a classical model uses neither: `ignore_unused`, or it is refused)
            upscale(s["lr"], ref=s["ref"], cd=s["cd"], scale=SAMPLE_SCALE, model=m, output=o, ignore_unused=True)
            panels.append(tile(read(o)[(slice(None), *CROP)], f"geosr --model {Path(m).stem}"))
    panels.append(tile(read(s["truth"])[(slice(None), *CROP)], "truth 2003, 30 m"))
    fig = Image.new("RGB", (sum(p.width for p in panels) + 4 * (len(panels) - 1), panels[0].height), "white")
    x = 0
    for p in panels:
        fig.paste(p, (x, 0))
        x += p.width + 4
    fig.save(out)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])  # (--help was read as the picture's path)
    ap.add_argument("out", type=Path, help="the picture to write (.png)")
    ap.add_argument("models", nargs="+", help="the models whose outputs it shows, e.g. bicubic reference-paste default")
    args = ap.parse_args()
    main(args.out, args.models)
