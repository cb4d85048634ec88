"""Change detection against real change labels: geosr's detector and the classical baseline.

    python bench/bench_change_detection.py [--scales 4,8] [--split heldout|train|all] [--json out.json]

For every labelled pair of ../shared/data (``scripts/shared_data.json``): the LR is the new image degraded by
antialiased bicubic at the scale, the reference is the old HR image averaged onto the LR grid (what upscale
compares after co-registration). Each detector's LR-grid mask is brought back to the HR grid (nearest) and scored
against the HR labels where they are known: recall (share of changed HR pixels flagged: what stays stale
otherwise), precision, F1, and the share of the scene flagged.

Baseline: change-vector magnitude after a global per-band mean/std harmonization, thresholded by Otsu.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.shared_data import shared_data_pairs  # noqa: E402
from skimage.filters import threshold_otsu  # noqa: E402

from geosr.conditioning.change_detection import detect_changes  # noqa: E402
from geosr.training.sensor_degradations import degrade_named  # noqa: E402


def baseline(lr: np.ndarray, ref: np.ndarray) -> np.ndarray:
    h = (ref - ref.mean((1, 2), keepdims=True)) / (ref.std((1, 2), keepdims=True) + 1e-9)
    h = h * lr.std((1, 2), keepdims=True) + lr.mean((1, 2), keepdims=True)
    m = np.sqrt(((lr - h) ** 2).sum(0))
    return m > threshold_otsu(m)


def score(mask_lr: np.ndarray, label: np.ndarray, known: np.ndarray, scale: int) -> dict:
    m = np.kron(mask_lr.astype(np.uint8), np.ones((scale, scale), np.uint8)).astype(bool)
    h, w = m.shape
    lab, kn = label[:h, :w], known[:h, :w]
    tp = float((m & lab & kn).sum())
    fn = float((~m & lab & kn).sum())
    fp = float((m & ~lab & kn).sum())
    recall = tp / (tp + fn) if tp + fn else float("nan")
    precision = tp / (tp + fp) if tp + fp else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    return {"recall": recall, "precision": precision, "f1": f1, "flagged": float(m[kn].mean())}


def run(scales: list[int], split: str) -> dict:
    splits = ("train", "heldout") if split == "all" else (split,)
    pairs = [p for s in splits for p in shared_data_pairs(split=s) if p.ref is not None and p.change is not None
             and not p.synthetic]
    table: dict = {}
    for scale in scales:
        rows: dict[str, list[dict]] = {"baseline": [], "geosr": []}
        for p in pairs:
            hr_new, hr_old = p.target[:3].float(), p.ref[:3].float()
            H, W = hr_new.shape[-2:]
            h, w = H // scale, W // scale
            lr = degrade_named(hr_new, scale, "bicubic").numpy().astype(np.float64)
            ref = torch.nn.functional.avg_pool2d(hr_old[None, :, : h * scale, : w * scale], scale)[0].numpy()
            label = np.array([c.changed for c in p.table.classes])[p.change.numpy().clip(0)]  # class indices
            known = p.labelled.numpy() if p.labelled is not None else np.ones(label.shape, bool)
            valid = np.ones((h, w), bool)
            rows["baseline"].append(score(baseline(lr, ref.astype(np.float64)), label, known, scale))
            rows["geosr"].append(score(detect_changes(lr, valid, ref, valid).changed, label, known, scale))
        for name, r in rows.items():
            agg = {k: round(statistics.fmean(x[k] for x in r if x[k] == x[k]), 3) for k in r[0]}
            table[f"x{scale} {name}"] = agg | {"pairs": len(r)}
            print(f"x{scale} {name:9s}", "  ".join(f"{k} {v:.3f}" for k, v in agg.items()), f"({len(r)} pairs)",
                  flush=True)
    return table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scales", default="4,8")
    ap.add_argument("--split", default="all", choices=("train", "heldout", "all"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    result = run([int(s) for s in args.scales.split(",")], args.split)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
