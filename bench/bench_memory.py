"""Memory: the planned estimate against the measured peak (issue 20.7: within 30%), and the model activation
factors the estimate uses.

    python bench/bench_memory.py calibrate   # per model: peak memory one batch adds, per HR pixel of the batch
    python bench/bench_memory.py check       # CLI runs in fresh processes: estimate vs peak RSS (os.wait4)

Runs on synthetic scenes written to a temporary folder; nothing here needs ../shared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

CASES = [  # (name, model, scale, LR side, extra options)
    ("lite x4, 50 px", "lite", 4, 50, []),
    ("lite x5 (via x8), 200 px", "lite", 5, 200, []),
    ("bicubic x2, 1500 px", "bicubic", 2, 1500, []),
    ("bicubic x8, 400 px", "bicubic", 8, 400, []),
    ("lite x4, 600 px", "lite", 4, 600, []),
    ("lite x4, batch 4", "lite", 4, 600, ["--batch-size", "4"]),
    ("lite x8, 300 px", "lite", 8, 300, []),
    ("lite x16, 200 px", "lite", 16, 200, []),
    ("default x4, 96 px", "default", 4, 96, []),
    ("default x8 ref+cd, 64 px", "default", 8, 64, ["REF"]),
    ("default+lite x8 ref+cd, 64 px", "default+lite", 8, 64, ["REF"]),
    ("default+lite x4, 96 px", "default+lite", 4, 96, []),
]


def _scene(folder: Path, side: int, scale: int = 1, seed: int = 0) -> Path:
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    n = side * scale
    yy, xx = np.mgrid[0:n, 0:n] / n
    data = np.stack([np.sin(12 * xx + i) * np.cos(9 * yy) for i in range(3)]) * 80 + 120
    data = np.clip(data + rng.normal(0, 6, data.shape), 0, 255).astype(np.uint8)
    path = folder / f"scene_{side}_{scale}.tif"
    with rasterio.open(path, "w", driver="GTiff", width=n, height=n, count=3, dtype="uint8", crs="EPSG:32633",
                       transform=from_origin(300000, 5600000, 30.0 / scale, 30.0 / scale), tiled=True) as dst:
        dst.write(data)
    return path


def _calibrate_one(model: str, scale: int, batch: int) -> None:
    """In this process: plan a job, then measure the RSS one batch of windows adds while the model runs."""
    with tempfile.TemporaryDirectory() as tmp:  # (its scene was left behind; found in review)
        _calibrate_in(Path(tmp), model, scale, batch)


def _calibrate_in(folder: Path, model: str, scale: int, batch: int) -> None:
    import psutil

    from geosr.pipeline.job import plan_upscale
    from geosr.pipeline.upscale import _batches, _run_model

    # a row of at least ``batch`` windows (lite's are 232 LR px: a 200-px scene's one window measured "batch 4")
    lr = _scene(folder, 200 if batch == 1 else 240 * batch)
    with plan_upscale(str(lr), output=None, dry_run=True, model=model, scale=scale, batch_size=batch) as job:
        group = _batches(job.plan.row_windows(0), job.batch_size)[0]
        if len(group) != batch:
            raise SystemExit(f"calibration of {model} x{scale} at batch {batch}: its scene's first row holds "
                             f"{len(group)} windows")
        proc = psutil.Process()
        base = proc.memory_info().rss
        peak = [base]
        stop = threading.Event()

        def poll() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], proc.memory_info().rss)
                time.sleep(0.002)

        t = threading.Thread(target=poll)
        t.start()
        _run_model(job, group)
        stop.set()
        t.join()
        side = (job.plan.size + 2 * job.sr.halo) * scale
        pixels = len(group) * side * side
        print(json.dumps({"model": model, "scale": scale, "batch": len(group), "hr_side": side,
                          "added_mb": (peak[0] - base) / 2**20, "bytes_per_hr_pixel": (peak[0] - base) / pixels}))


def calibrate() -> None:
    for model, scale, batch in (("lite", 4, 1), ("lite", 4, 4), ("lite", 8, 1), ("lite", 2, 1),
                                ("default", 4, 1), ("default", 8, 1), ("bicubic", 4, 1), ("bicubic", 8, 1)):
        subprocess.run([sys.executable, __file__, "_one", model, str(scale), str(batch)], check=True)


def _peak_run(args: list[str]) -> tuple[dict, float]:
    p = subprocess.Popen([sys.executable, "-m", "geosr", *args, "--json"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    if status != 0:
        raise SystemExit(f"geosr {' '.join(args)} failed")
    return json.loads(out), ru.ru_maxrss / 1024  # KB on Linux


def check() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _check(Path(tmp))


def _check(folder: Path) -> None:
    worst = 0.0
    print("| job | estimate MB | peak RSS MB | estimate / peak |\n|---|---|---|---|")
    for name, model, scale, side, extra in CASES:
        lr = _scene(folder, side)
        opts = [o for o in extra if o != "REF"]
        if "REF" in extra:
            ref = _scene(folder, side, scale, seed=1)
            opts += ["--ref", str(ref), "--cd", "auto"]
        summary, peak = _peak_run(["upscale", str(lr), "-m", model, "-x", str(scale), "-o",
                                   str(folder / "out.tif"), "--overwrite", *opts])
        ratio = summary["memory_mb"] / peak
        worst = max(worst, abs(ratio - 1))
        print(f"| {name} | {summary['memory_mb']:.0f} | {peak:.0f} | {ratio:.2f} |")
    print(f"\nworst deviation {100 * worst:.0f}% (target: within 30%)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["_one"]:  # one calibration in a fresh process (calibrate's own call)
        _calibrate_one(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                         formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("what", nargs="?", choices=("check", "calibrate"), default="check",
                            help="check (default): estimate vs peak RSS; calibrate: the activation factors")
        {"check": check, "calibrate": calibrate}[parser.parse_args().what]()
