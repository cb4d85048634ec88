"""What reference detail injection costs: the bundled default model per window, with and without it.

    python bench/bench_reference_detail.py [--reps 10] [--batch 4]

Both variants run in this process, interleaved, on the same window batches (256 x 256 HR, x8 and x16, the pipeline's
default window); the ratio is against the model without the step. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geosr.models.interface import ConditionBatch  # noqa: E402
from geosr.models.registry import load_model  # noqa: E402

SIZE = 256


def window_batch(batch: int, scale: int, halo: int) -> ConditionBatch:
    g = torch.Generator().manual_seed(0)
    h = SIZE // scale + 2 * halo
    H = h * scale
    return ConditionBatch(
        lr=torch.rand(batch, 3, h, h, generator=g) * 2 - 1, lr_valid=torch.ones(batch, 1, h, h),
        ref=torch.rand(batch, 3, H, H, generator=g) * 2 - 1, ref_valid=torch.ones(batch, 1, H, H),
        change=torch.zeros(batch, 1, H, H, dtype=torch.long), changed=torch.zeros(batch, 1, H, H), map=None,
        offsets=torch.zeros(batch, 2, dtype=torch.long), scale=scale, halo=halo, n_change_classes=3,
    )


def seconds(models: list, batch: ConditionBatch, reps: int) -> list[float]:
    """Median seconds per call of each model, their runs interleaved so that drifts of the machine hit all."""
    times: list[list[float]] = [[] for _ in models]
    with torch.no_grad():
        for m in models:
            m(batch, seed=0)  # warm-up
        for _ in range(reps):
            for m, t in zip(models, times):
                t0 = time.perf_counter()
                m(batch, seed=0)
                t.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()
    if args.reps < 1:
        ap.error("--reps: at least 1")
    torch.set_num_threads(2)
    without = load_model("default", reference_detail=False)
    with_step = load_model("default", reference_detail=True)
    print("| scale | without (s / batch) | with (s / batch) | ratio |")
    print("|---|---|---|---|")
    for scale in (8, 16):
        batch = window_batch(args.batch, scale, without.halo)
        a, b = seconds([without, with_step], batch, args.reps)
        print(f"| x{scale} | {a:.3f} | {b:.3f} | {b / a:.3f} |")


if __name__ == "__main__":
    main()
