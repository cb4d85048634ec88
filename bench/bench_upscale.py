"""Peak memory and wall time of `geosr upscale` (bicubic) against output size, and the cost of tiling +
blending against a whole-image bicubic of the same scene. Each run is its own process so peak RSS is its own.

    python bench/bench_upscale.py               # 4, 16, 64, 256 MiPx outputs (2^20 pixels; x4, 3-band uint8)
    python bench/bench_upscale.py --sizes 4 16  # a quicker subset

Prints a markdown table; ratios are against runs in this same script on this machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCALE = 4


def make_scene(path: Path, side: int) -> None:
    import numpy as np
    import rasterio
    from affine import Affine

    profile = dict(driver="GTiff", width=side, height=side, count=3, dtype="uint8", crs="EPSG:32633",
                   transform=Affine(10, 0, 500000, 0, -10, 5000000), tiled=True, blockxsize=256,
                   blockysize=256, compress="deflate")
    yy, xx = np.mgrid[0:256, 0:side]
    with rasterio.open(path, "w", **profile) as dst:
        for r0 in range(0, side, 256):
            h = min(256, side - r0)
            y = yy[:h] + r0
            band = (127 + 60 * np.sin(xx[:h] / 7.0) * np.cos(y / 11.0) + 40 * np.sin((xx[:h] + y) / 29.0))
            data = np.stack([band, band * 0.8 + 20, 255 - band]).clip(0, 255).astype("uint8")
            dst.write(data, window=((r0, r0 + h), (0, side)))


def child(mode: str, src: str, out: str) -> None:
    """Run one job in this process and print its wall time and peak RSS as JSON."""
    t0 = time.perf_counter()
    if mode == "geosr":
        from geosr.pipeline.upscale import upscale

        upscale(src, output=out, scale=SCALE, model="bicubic")
    else:  # whole-image bicubic with the same kernel and the same COG writer, on the raw DN (no stretch fitted or
        # applied: geosr's time includes its stretch; found in review: this said "the same stretch")
        import numpy as np
        import rasterio
        import torch

        from geosr.io.writer import OutputMeta, write_cog
        from geosr.models.resample import upsample
        from geosr.tiling.grid import Grid

        with rasterio.open(src) as ds:
            data = ds.read().astype(np.float32)
            grid = Grid(ds.crs, ds.transform, ds.width, ds.height).refined(SCALE)
        up = upsample(torch.from_numpy(data)[None], SCALE, "bicubic")[0].numpy()
        out_arr = np.clip(np.rint(up), 0, 255).astype(np.uint8)
        write_cog(out, out_arr, grid, OutputMeta(dtype="uint8", count=3))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": time.perf_counter() - t0, "peak_mb": peak}))


def run(mode: str, src: Path, out: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", mode, str(src), str(out)],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="*", default=[4, 16, 64, 256], help="output sizes in MiPx (2^20 pixels)")
    ap.add_argument("--whole-max", type=int, default=64, help="largest output (MiPx) for the whole-image baseline")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not args.sizes or min(args.sizes) < 1:
        ap.error("--sizes: output sizes are whole MiPx of 1 or more")
    if args.child:
        child(*args.child)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for mp in args.sizes:
            side = int(round((mp * 2**20) ** 0.5 / SCALE))
            src = tmp / f"lr_{mp}.tif"
            make_scene(src, side)
            g = run("geosr", src, tmp / f"g_{mp}.tif")
            w = run("whole", src, tmp / f"w_{mp}.tif") if mp <= args.whole_max else None
            rows.append((mp, side, g, w))
            print(f"{mp} MiPx done: geosr {g}, whole {w}", file=sys.stderr)
            for f in tmp.glob(f"*_{mp}.tif"):
                f.unlink()
    print("| output MiPx (2^20 px) | LR side | geosr s | geosr peak MB | whole-image s | whole-image peak MB "
          "| time ratio geosr/whole |")
    print("|---|---|---|---|---|---|---|")
    for mp, side, g, w in rows:
        ws, wm, ratio = ("-", "-", "-") if w is None else (f"{w['seconds']:.1f}", f"{w['peak_mb']:.0f}",
                                                         f"{g['seconds'] / w['seconds']:.2f}")
        print(f"| {mp} | {side} | {g['seconds']:.1f} | {g['peak_mb']:.0f} | {ws} | {wm} | {ratio} |")


if __name__ == "__main__":
    main()
