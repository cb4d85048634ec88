"""Co-registration of a reference under small clouds its own cloud mask flags: moved back right, refused, or wrong.

    python bench/bench_coregistration_clouds.py [--scale 4] [--shift 1.5,-0.75] [--every 1] [--dark] [--images 102,12]

A LEVIR-CD image (../shared/data, 1024 x 1024 at 0.5 m, research only: read, never bundled) is the reference of its
own ``scale``x average (the LR), written as Landsat Collection 2 Level-2 band folders. The reference is moved by
``shift`` LR px (columns, rows) and covered by small white disks (``--dark``: dark ones) over 0-30% of it, softened
a little beyond their edges, and flagged in its QA_PIXEL at its own pixel size or twice it, with 0.5% flags
scattered beside them or none. Each layout runs ``geosr upscale --ref ... -m reference-paste --cd none --json`` and
reads its ``coregistration``: RIGHT (applied within 0.15 LR px of the shift), WRONG (applied, further off), refused
(not applied; its reason). A shift of 0,0 asks that nothing be moved. Session 69, 2026-12-07: x4 (1.5, -0.75) 96
right / 2 refused / 0 wrong of 98 (before the flags were left out at the reference's resolution: 22 / 76 / 0); x8
--shift=-2.2,0.6 (a value beginning with "-" needs the "=") --every 3: 33 / 0 / 0; x16 --every 2: 13 / 36 / 0; 0,0
at x4 and x16 --every 3: none moved.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from scipy import ndimage
from typer.testing import CliRunner

from geosr.cli.app import app

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "levir_cd" / "ucdscm_full1024_geotiff"
STEM = "LC08_L2SP_016039_20200101_20200102_02_T1"
CLEAR, CLOUD = 21824, 1 << 3  # QA_PIXEL: clear land; cloud


def _folder(path: Path, data: np.ndarray, res: float, at: tuple[float, float], qa: np.ndarray, qa_res: float) -> None:
    """Band files SR_B4, SR_B3, SR_B2 and their QA_PIXEL, the grid's corner moved by ``at`` metres (east, north)."""
    path.mkdir(parents=True, exist_ok=True)
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=1, dtype="uint16",
                   crs="EPSG:32617", transform=from_origin(500000.0 + at[0], 3500000.0 + at[1], res, res))
    for i, band in enumerate(("SR_B4", "SR_B3", "SR_B2")):
        with rasterio.open(path / f"{STEM}_{band}.TIF", "w", **profile) as ds:
            ds.write(np.clip(data[i], 1, 65000).astype(np.uint16), 1)
    profile.update(width=qa.shape[1], height=qa.shape[0],
                   transform=from_origin(500000.0 + at[0], 3500000.0 + at[1], qa_res, qa_res))
    with rasterio.open(path / f"{STEM}_QA_PIXEL.TIF", "w", **profile) as ds:
        ds.write(qa.astype(np.uint16), 1)


def _disks(shape: tuple[int, int], share: float, seed: int, rmin: float, rmax: float,
           scatter: float) -> tuple[np.ndarray, np.ndarray]:
    """Disks over ``share`` of the grid, and the flags: the disks and ``scatter`` of the pixels beside them."""
    rng = np.random.default_rng(seed)
    out = np.zeros(shape, bool)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    while out.mean() < share:
        cy, cx, r = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(rmin, rmax)
        out |= (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
    return out, out | (rng.random(shape) < scatter) if scatter else out.copy()


def run_layout(root: Path, image: str, scale: int, shift: tuple[float, float], share: float, seed: int,
               radius: tuple[int, int], qa_coarse: int, scatter: float, dark: bool) -> dict:
    with rasterio.open(DATA / f"test_{image}_A.tif") as ds:
        hr = ds.read().astype(np.float64)[:, :1024, :1024] * 40 + 2000
    n = 1024 // scale
    lr = hr.reshape(3, n, scale, n, scale).mean(axis=(2, 4))
    side = 1024 // qa_coarse
    cloud, flags = _disks((side, side), share, seed, radius[0] / qa_coarse, radius[1] / qa_coarse, scatter)
    soft = ndimage.gaussian_filter(np.kron(cloud, np.ones((qa_coarse, qa_coarse))).astype(float), 1.0)
    ref = hr * (1 - soft) + (300 if dark else 30000) * soft
    lr_res = 0.5 * scale
    _folder(root / "lr", lr, lr_res, (0.0, 0.0), np.full((n, n), CLEAR), lr_res)
    _folder(root / "ref", ref, 0.5, (shift[0] * lr_res, -shift[1] * lr_res), np.where(flags, CLOUD, CLEAR),
            0.5 * qa_coarse)
    res = CliRunner().invoke(app, ["upscale", str(root / "lr"), "--ref", str(root / "ref"), "-x", str(scale), "-m",
                                   "reference-paste", "--cd", "none", "-o", str(root / "o.tif"), "--json",
                                   "--overwrite"])
    if res.exit_code:
        return {"error": res.output[-300:]}
    return json.loads(res.stdout)["coregistration"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--shift", default="1.5,-0.75", help="LR px, columns, rows (--shift=-2.2,0.6 where it begins "
                    "with a minus)")
    ap.add_argument("--every", type=int, default=1, help="run every Nth layout")
    ap.add_argument("--dark", action="store_true", help="dark disks (shadow-like) instead of white")
    ap.add_argument("--images", default="102,12", help="LEVIR-CD test image numbers")
    args = ap.parse_args()
    shift = tuple(float(v) for v in args.shift.split(","))
    layouts = [(img, share, seed, r, qc, sc) for img in args.images.split(",") for share in (0.0, 0.12, 0.2, 0.3)
               for seed in (1, 2) for r in ((2, 8), (6, 20)) for qc in (1, 2) for sc in (0.0, 0.005)
               if not (share == 0 and (seed, r, qc, sc) != (1, (2, 8), 1, 0.0))][::args.every]
    counts = {"RIGHT": 0, "WRONG": 0, "refused": 0, "error": 0}
    with tempfile.TemporaryDirectory() as tmp:
        for img, share, seed, r, qc, sc in layouts:
            found = run_layout(Path(tmp), img, args.scale, shift, share, seed, r, qc, sc, args.dark)
            if "error" in found:
                verdict = "error"
            elif not found["applied"]:
                verdict = "refused"
            else:
                verdict = "RIGHT" if np.allclose(found["offset_lr_px"], shift, atol=0.15) else "WRONG"
            counts[verdict] += 1
            print(f"image {img} cloud {share:.2f} seed {seed} radius {r} qa/{qc} scatter {sc}: {verdict} "
                  f"{found.get('offset_lr_px')} reliability {found.get('reliability')} {found.get('reason') or ''}"
                  f"{found.get('error', '')}", flush=True)
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
