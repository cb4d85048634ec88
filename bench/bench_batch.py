"""Benchmark geosr batch: jobs per minute with 1 and 2 local workers, and the overhead per job against a plain
loop over geosr.upscale in one process.

    .venv/bin/python bench/bench_batch.py [--jobs 24] [--size 96] [--scale 4] [--model bicubic] [--json OUT]

Every job is one generated scene (3 bands uint8, SIZE x SIZE LR pixels, windows of 16 LR px overlapping 4).
For each run it reports the wall time of the jobs alone (the cluster started and its workers warm) and the
time to start the cluster (processes plus importing torch in each), so the two can be told apart.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_scenes(folder: Path, n: int, size: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import make_raster, smooth_field

    for i in range(n):
        data = (smooth_field(3, size, size, seed=i) * 255).astype(np.uint8)
        make_raster(folder / f"scene_{i:03d}.tif", data)


def plain_loop(folder: Path, out: Path, n: int, scale: int, model: str) -> float:
    import geosr
    from geosr.config import TilingConfig

    t0 = time.perf_counter()
    for i in range(n):
        geosr.upscale(folder / f"scene_{i:03d}.tif", output=out / f"scene_{i:03d}.tif", scale=scale, model=model,
                      tiling=TilingConfig(window=16, overlap=4))
    return time.perf_counter() - t0


def batch_run(folder: Path, out: Path, workers: int, scale: int, model: str) -> dict:
    from distributed import Client

    from geosr.pipeline.batch import local_cluster, plan_batch, run_batch, warm_worker

    t0 = time.perf_counter()
    cluster, _ = local_cluster(workers=workers, device="cpu", dashboard=":0")  # as geosr batch makes it
    with cluster, Client(cluster) as client:
        client.wait_for_workers(workers)
        client.run(warm_worker)
        start = time.perf_counter() - t0
        t1 = time.perf_counter()
        plan = plan_batch(str(folder / "scene_*.tif"), out=str(out / "{stem}.tif"), x=scale, model=model,
                          window=16, overlap=4)
        t2 = time.perf_counter()
        result = run_batch(plan, client=client, results=out / "results.jsonl")
        t3 = time.perf_counter()
    assert result.ok, result.to_dict()
    return dict(workers=workers, cluster_start_s=start, check_s=t2 - t1, run_s=t3 - t2, jobs_s=t3 - t1,
                task_seconds=sum(j.seconds or 0 for j in result.jobs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=24)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--model", default="bicubic")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="geosr-bench-batch-"))
    try:
        scenes = tmp / "scenes"
        scenes.mkdir()
        make_scenes(scenes, args.jobs, args.size)
        import geosr.pipeline.upscale  # noqa: F401  (import torch before timing the loop)

        warm = tmp / "warm"
        warm.mkdir()
        plain_loop(scenes, warm, 1, args.scale, args.model)  # first-call costs out of the loop's time
        import torch

        threads = torch.get_num_threads()
        loop_out = tmp / "loop"
        loop_out.mkdir()
        loop_default_s = plain_loop(scenes, loop_out, args.jobs, args.scale, args.model)
        # Dask's worker processes run torch on one thread (OMP_NUM_THREADS=1): compare like with like
        torch.set_num_threads(1)
        shutil.rmtree(loop_out)
        loop_out.mkdir()
        loop_s = plain_loop(scenes, loop_out, args.jobs, args.scale, args.model)
        torch.set_num_threads(threads)
        runs = []
        for workers in (1, 2):
            out = tmp / f"batch{workers}"
            out.mkdir()
            runs.append(batch_run(scenes, out, workers, args.scale, args.model))
            same = all((out / p.name).read_bytes() == p.read_bytes() for p in loop_out.glob("*.tif"))
            runs[-1]["identical_to_loop"] = same
        n = args.jobs
        report = dict(
            machine=dict(cpus=os.cpu_count()), jobs=n, size=args.size, scale=args.scale, model=args.model,
            loop=dict(seconds=loop_s, jobs_per_min=60 * n / loop_s, seconds_per_job=loop_s / n, torch_threads=1),
            loop_default_threads=dict(
                seconds=loop_default_s, jobs_per_min=60 * n / loop_default_s, torch_threads=threads
            ),
            batch=[
                dict(r, jobs_per_min=60 * n / r["jobs_s"],
                     jobs_per_min_with_start=60 * n / (r["jobs_s"] + r["cluster_start_s"]),
                     overhead_per_job_s=(r["jobs_s"] - loop_s) / n if r["workers"] == 1 else None)
                for r in runs
            ],
        )
        print(f"{n} jobs, {args.size}x{args.size} LR px x{args.scale} {args.model}, {os.cpu_count()} CPUs")
        print(f"plain loop over geosr.upscale, torch on {threads} threads: {loop_default_s:.1f} s = "
              f"{60 * n / loop_default_s:.1f} jobs/min")
        print(f"plain loop over geosr.upscale, torch on 1 thread (as in a worker): {loop_s:.1f} s = "
              f"{60 * n / loop_s:.1f} jobs/min ({loop_s / n:.3f} s/job)")
        for r in report["batch"]:
            extra = (f"; overhead {r['overhead_per_job_s'] * 1000:+.0f} ms/job vs the 1-thread loop"
                     if r["overhead_per_job_s"] is not None else "")
            print(f"batch, {r['workers']} worker(s): {r['jobs_s']:.1f} s "
                  f"(check {r['check_s']:.1f} s + run {r['run_s']:.1f} s) "
                  f"= {r['jobs_per_min']:.1f} jobs/min; cluster start {r['cluster_start_s']:.1f} s "
                  f"({r['jobs_per_min_with_start']:.1f} jobs/min with it){extra}; time inside tasks "
                  f"{r['task_seconds'] / n:.3f} s/job; identical bytes: {r['identical_to_loop']}")
        if args.json:
            args.json.write_text(json.dumps(report, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
