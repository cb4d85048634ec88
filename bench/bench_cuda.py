"""geosr on CUDA against the CPU on one machine: do the outputs agree, how good and how fast is each.

    python bench/bench_cuda.py [--reps 3] [--side 1024] [--out cuda.json]

Agreement: ``geosr upscale`` on the bundled sample at x8 (its reference and change mask) and x4 (no reference), for
bicubic, ``lite``, ``default`` and ``default+lite``, once with ``--device cpu`` and twice with ``--device cuda``:
the largest difference and the share of differing values between the CPU and CUDA outputs, whether two CUDA runs
give the same bytes, and each output's PSNR against the sample's 30 m truth (the diffusion model runs in bf16 on
CUDA, so its outputs may differ from the CPU's by a little; the truth says whether that costs anything).

Speed: the whole ``geosr upscale -x 4`` (read, windows, model, blending, COG) on a noise LR of SIDE² px, seconds per
output megapixel, medians of ``--reps`` interleaved runs, on CUDA for every model and on the CPU for bicubic and
``lite``, with each CUDA run's peak GPU memory. Needs a CUDA device (exit 2 without one).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

MODELS = ("bicubic", "lite", "default", "default+lite")


def _read(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as ds:
        return ds.read().astype(np.float64)


def _psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    h, w = min(a.shape[-2], b.shape[-2]), min(a.shape[-1], b.shape[-1])
    mse = float(np.mean((a[..., :h, :w] - b[..., :h, :w]) ** 2))
    return round(10 * np.log10(peak**2 / mse), 3) if mse > 0 else float("inf")


def agreement(tmp: Path) -> list[dict]:
    from geosr import upscale
    from geosr.sample_scene import copy_sample

    s = copy_sample(tmp / "sample")
    names = {p.name: p for p in s.values()}
    lr = names["taizhou_2003_lr240m.tif"]
    truth = _read(names["taizhou_2003_truth30m.tif"])
    peak = 255.0  # 8 bits, as the model card's other sample figures (the truth's maximum, 174, was taken before)
    jobs = [(8, {"ref": str(names["taizhou_2000_ref30m.tif"]), "cd": str(names["taizhou_change_2000_2003.tif"])}),
            (4, {})]
    rows = []
    for scale, extra in jobs:
        for model in MODELS:
            outs, secs = {}, {}
            given = {} if model == "bicubic" else extra  # bicubic refuses a reference it would not use
            for run in ("cpu", "cuda", "cuda2"):
                out = tmp / f"{model}_x{scale}_{run}.tif"
                t0 = time.perf_counter()
                upscale(lr, output=out, scale=scale, model=model, device=run.rstrip("2"), overwrite=True, **given)
                secs[run] = round(time.perf_counter() - t0, 2)
                outs[run] = _read(out)
            cpu, cuda = outs["cpu"], outs["cuda"]
            diff = np.abs(cpu - cuda)
            row = {"scale": scale, "model": model, "reference": bool(given), "seconds": secs,
                   "max_abs_diff": float(diff.max()), "share_differing": round(float((diff > 0).mean()), 6),
                   "cuda_runs_identical": bool(np.array_equal(cuda, outs["cuda2"])),
                   "cpu_vs_cuda_psnr": _psnr(cpu, cuda, peak)}
            if scale == 8:  # the truth is on the x8 output's 30 m grid
                row["psnr_truth"] = {"cpu": _psnr(cpu, truth, peak), "cuda": _psnr(cuda, truth, peak)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def speed(tmp: Path, side: int, reps: int) -> dict:
    import rasterio
    from affine import Affine

    from geosr import upscale

    arr = (np.random.default_rng(0).random((3, side, side)) * 200 + 20).astype(np.uint8)
    src = tmp / "noise.tif"
    with rasterio.open(src, "w", driver="GTiff", width=side, height=side, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=Affine(10, 0, 500000, 0, -10, 5000000)) as dst:
        dst.write(arr)
    runs = [(m, "cuda") for m in MODELS] + [("bicubic", "cpu"), ("lite", "cpu")]
    times: dict[str, list[float]] = {f"{m}@{d}": [] for m, d in runs}
    peak_mb: dict[str, float] = {}
    upscale(src, output=tmp / "warm.tif", scale=4, model="lite", device="cuda", overwrite=True)  # CUDA's start
    for rep in range(reps):  # interleaved, each rep starting one later
        for model, dev in runs[rep % len(runs):] + runs[: rep % len(runs)]:
            torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            upscale(src, output=tmp / "o.tif", scale=4, model=model, device=dev, overwrite=True)
            times[f"{model}@{dev}"].append(time.perf_counter() - t0)
            if dev == "cuda":
                peak_mb[f"{model}@{dev}"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    mp = side * side * 16 / 1e6
    out = {"side": side, "s_per_output_mp": {k: round(statistics.median(v) / mp, 4) for k, v in times.items()},
           "peak_gpu_mb": peak_mb}
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--side", type=int, default=1024)
    ap.add_argument("--parts", default="agree,speed")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("bench_cuda: no CUDA device here", file=sys.stderr)
        sys.exit(2)
    result: dict = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        if "agree" in args.parts:
            result["agreement"] = agreement(Path(tmp))
        if "speed" in args.parts:
            result["speed"] = speed(Path(tmp), args.side, args.reps)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
