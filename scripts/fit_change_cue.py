"""Fit the learned cue of geosr's change detector (``geosr/weights/change_cue.json``) on real labelled pairs.

    python scripts/fit_change_cue.py [--scales 8,16] [--out geosr/weights/change_cue.json] [--leave-out GROUP] \
        [--unchanged-weight W] [--synthetic-weight W]

Data: the training split of ../shared/data (``scripts/shared_data.json``; its held-out scenes are never read),
each labelled pair made as ``bench/bench_change_detection.py`` makes it: the LR is the new image degraded by
antialiased bicubic at each scale, the reference the old image averaged onto the LR grid. Every LR pixel gives
the detector's measures (:func:`geosr.conditioning.change_detection.detection_measures`) and a label (most of
its HR pixels labelled changed), where most of them are labelled at all. The model is a logistic regression on
standardized measures, L2-penalized, fitted by Newton's method, each pair weighing alike; a few hundred numbers,
so it is written here rather than taken from a learning library the project does not otherwise need.

``--leave-out levir --out X.json`` (or dsifn, landsat) fits without that data set, to measure how the cue carries
over to imagery it never saw: ``python bench/bench_change_detection.py --split all --group levir --cue X.json`` (an
experiment needs its own ``--out``: the default replaces the bundled cue).
``--unchanged-weight W`` adds every training image against itself as another date could show it (all pixels
unchanged), ``--synthetic-weight W`` every training image with synthetic changes pasted in, each sample weighing W
against a real pair's 1 (both measured, neither used for the bundled cue: docs/model-card.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.shared_data import shared_data_pairs  # noqa: E402

from geosr.conditioning.change_cue import CUE_PATH, MEASURES  # noqa: E402
from geosr.conditioning.change_detection import DETECTOR_VERSION, detection_measures  # noqa: E402
from geosr.training.sensor_degradations import degrade_named  # noqa: E402

L2 = 1e-2  # on standardized measures
UNCHANGED_WEIGHT = 0.0  # each image-against-itself sample's weight (a real pair's: 1)


def samples(scales: list[int], leave_out: str | None = None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(pair name @ scale, measures of its labelled LR pixels, their labels) for every training pair and scale
    (but those of the data set ``leave_out``)."""
    out = []
    pairs = [p for p in shared_data_pairs(split="train") if p.ref is not None and p.change is not None
             and not p.synthetic and p.group.split("/")[0] != leave_out]
    for p in pairs:
        label = np.array([c.changed for c in p.table.classes])[p.change.numpy().clip(0)]
        known = p.labelled.numpy() if p.labelled is not None else np.ones(label.shape, bool)
        for scale in scales:
            hr_new, hr_old = p.target[:3].float(), p.ref[:3].float()
            h, w = hr_new.shape[-2] // scale, hr_new.shape[-1] // scale
            lr = degrade_named(hr_new, scale, "bicubic").numpy().astype(np.float64)
            ref = torch.nn.functional.avg_pool2d(hr_old[None, :, : h * scale, : w * scale], scale)[0].numpy()
            valid = np.ones((h, w), bool)
            x = detection_measures(lr, valid, ref.astype(np.float64), valid)
            share = label[: h * scale, : w * scale].reshape(h, scale, w, scale).mean(axis=(1, 3)).ravel()
            kn = known[: h * scale, : w * scale].reshape(h, scale, w, scale).mean(axis=(1, 3)).ravel() > 0.5
            out.append((f"{p.name}@x{scale}", x[kn], (share[kn] > 0.5).astype(np.float64)))
    return out


def another_date(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(C, h, w) ``img`` (0-1) as another date or sensor could show the same, unchanged ground on the LR grid: per
    band gain 0.7-1.3, offset +-0.08 and gamma 0.8-1.25, a blur of up to 0.7 pixel and a shift of up to 0.3 pixel
    (what co-registration leaves)."""
    from scipy import ndimage

    out = np.empty_like(img)
    sigma, shift = rng.uniform(0, 0.7), rng.uniform(-0.3, 0.3, 2)
    for i, band in enumerate(img):
        b = np.clip(band, 0, 1) ** rng.uniform(0.8, 1.25) * rng.uniform(0.7, 1.3) + rng.uniform(-0.08, 0.08)
        b = ndimage.gaussian_filter(b, sigma, mode="reflect") if sigma > 0.05 else b
        out[i] = ndimage.shift(b, shift, order=1, mode="nearest")
    return out


def no_change_samples(scales: list[int], leave_out: str | None = None,
                      seed: int = 0) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, measures, all-zero labels): each training image (both dates of every pair) against itself as another
    date would show it (:func:`another_date`), at every scale: what the cue must not flag."""
    rng = np.random.default_rng(seed)
    out = []
    pairs = [p for p in shared_data_pairs(split="train") if p.ref is not None and p.change is not None
             and not p.synthetic and p.group.split("/")[0] != leave_out]
    for p in pairs:
        for date, hr in (("new", p.target[:3].float()), ("old", p.ref[:3].float())):
            for scale in scales:
                h, w = hr.shape[-2] // scale, hr.shape[-1] // scale
                lr = degrade_named(hr, scale, "bicubic").numpy().astype(np.float64)
                same = torch.nn.functional.avg_pool2d(hr[None, :, : h * scale, : w * scale], scale)[0].numpy()
                ref = another_date(same.astype(np.float64), rng)
                valid = np.ones((h, w), bool)
                x = detection_measures(lr, valid, ref, valid)
                out.append((f"{p.name}/{date}@x{scale} unchanged", x, np.zeros(len(x))))
    return out


def synthetic_change(hr: np.ndarray, donor: np.ndarray, rng: np.random.Generator,
                     scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(new HR image, (H, W) bool change) made from the (C, H, W) ``hr`` (0-1): another date's light (per band gain
    0.8-1.2, offset +-0.05, gamma 0.85-1.15 over the whole scene) and 3-12 changed rectangles of 1-6 LR pixels a side,
    each filled with a piece of ``donor`` (another scene), a flat colour (a new roof, a cleared lot) or this scene's
    own content from elsewhere."""
    C, H, W = hr.shape
    new = np.clip(hr, 0, 1) ** rng.uniform(0.85, 1.15, (C, 1, 1)) * rng.uniform(0.8, 1.2, (C, 1, 1))
    new = new + rng.uniform(-0.05, 0.05, (C, 1, 1))
    changed = np.zeros((H, W), bool)
    for _ in range(rng.integers(3, 13)):
        h, w = (rng.integers(1, 7, 2) * scale).tolist()
        h, w = min(h, H // 2), min(w, W // 2)
        r, c = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
        kind = rng.integers(3)
        if kind == 0 and donor.shape[1] >= h and donor.shape[2] >= w:
            r2, c2 = int(rng.integers(0, donor.shape[1] - h + 1)), int(rng.integers(0, donor.shape[2] - w + 1))
            patch = donor[:, r2:r2 + h, c2:c2 + w]
        elif kind == 1:
            patch = np.broadcast_to(rng.uniform(0.05, 0.95, (C, 1, 1)), (C, h, w))
        else:
            r2, c2 = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
            patch = hr[:, r2:r2 + h, c2:c2 + w]
        new[:, r:r + h, c:c + w] = patch
        changed[r:r + h, c:c + w] = True
    return np.clip(new, 0, 1), changed


def synthetic_samples(scales: list[int], leave_out: str | None = None,
                      seed: int = 0) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, measures, labels) of :func:`synthetic_change` on both dates of every training pair (the donor: the next
    pair's other date), at every scale; labels as for real pairs (an LR pixel mostly changed)."""
    rng = np.random.default_rng(seed)
    pairs = [p for p in shared_data_pairs(split="train") if p.ref is not None and p.change is not None
             and not p.synthetic and p.group.split("/")[0] != leave_out]
    out = []
    for i, p in enumerate(pairs):
        donor_pair = pairs[(i + 1) % len(pairs)]
        for date, hr in (("new", p.target[:3].float()), ("old", p.ref[:3].float())):
            donor = (donor_pair.ref if date == "new" else donor_pair.target)[:3].numpy().astype(np.float64)
            for scale in scales:
                H, W = hr.shape[-2] // scale * scale, hr.shape[-1] // scale * scale
                base = hr[:, :H, :W].numpy().astype(np.float64)
                new, changed = synthetic_change(base, donor, rng, scale)
                h, w = H // scale, W // scale
                lr = degrade_named(torch.from_numpy(new).float(), scale, "bicubic").numpy().astype(np.float64)
                ref = torch.nn.functional.avg_pool2d(torch.from_numpy(base)[None], scale)[0].numpy()
                valid = np.ones((h, w), bool)
                x = detection_measures(lr, valid, ref, valid)
                share = changed.reshape(h, scale, w, scale).mean(axis=(1, 3)).ravel()
                out.append((f"{p.name}/{date}@x{scale} synthetic", x, (share > 0.5).astype(np.float64)))
    return out


Samples = list[tuple[str, np.ndarray, np.ndarray]]


def fit(data: Samples, extra: tuple[tuple[Samples, float], ...] = ()) -> dict:
    """The logistic model over the pooled samples, each pair's pixels weighing 1 / its pixel count; the pixels of
    each sample of an ``extra`` (samples, weight) weigh that weight / its pixel count."""
    share = [1.0] * len(data)
    data = list(data)
    for more, weight in extra:
        if weight <= 0:
            continue
        data += more
        share += [weight] * len(more)
    x = np.concatenate([d[1] for d in data])
    y = np.concatenate([d[2] for d in data])
    weight = np.concatenate([np.full(len(d[2]), a / max(1, len(d[2]))) for d, a in zip(data, share)])
    weight /= weight.mean()
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-9
    xs = np.c_[(x - mean) / std, np.ones(len(x))]
    w = np.zeros(xs.shape[1])
    penalty = L2 * np.r_[np.ones(len(w) - 1), 0.0]
    for _ in range(100):
        p = 1 / (1 + np.exp(-xs @ w))
        grad = xs.T @ (weight * (p - y)) / len(y) + penalty * w
        hess = (xs * (weight * p * (1 - p))[:, None]).T @ xs / len(y) + np.diag(penalty)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return {"mean": mean.tolist(), "std": std.tolist(), "weights": w[:-1].tolist(), "bias": float(w[-1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", default="8,16")
    ap.add_argument("--out", type=Path, default=None,
                    help=f"where to write the cue (default: the bundled {CUE_PATH.relative_to(ROOT)}, only for a fit "
                         "of the bundled recipe: give it for any experiment)")
    ap.add_argument("--leave-out", help="a data set group of scripts/shared_data.json not to fit on")
    ap.add_argument("--unchanged-weight", type=float, default=UNCHANGED_WEIGHT,
                    help="weight of each image-against-itself sample (a real pair weighs 1; 0: none)")
    ap.add_argument("--synthetic-weight", type=float, default=0.0,
                    help="weight of each synthetic-change sample (a real pair weighs 1; 0: none)")
    args = ap.parse_args()
    experiment = args.leave_out or args.scales != "8,16" or args.unchanged_weight != UNCHANGED_WEIGHT \
        or args.synthetic_weight
    if args.out is None and experiment:  # (it replaced the cue every run loads with a leave-one-out fit; review)
        ap.error("--out is needed with --leave-out, --scales or a sample weight: the default would replace the "
                 "bundled cue, which every `--cd auto` run loads")
    if args.leave_out:
        from scripts.shared_data import MANIFEST

        from geosr.training.manifest import load_collection

        groups = {ds.group for ds in load_collection(MANIFEST).sets}
        if args.leave_out not in groups:  # (a typo left nothing out, and was recorded as left out)
            ap.error(f"--leave-out {args.leave_out}: no such data set group (the groups: {', '.join(sorted(groups))})")
    args.out = args.out or CUE_PATH
    scales = [int(s) for s in args.scales.split(",")]
    data = samples(scales, args.leave_out)
    unchanged = no_change_samples(scales, args.leave_out) if args.unchanged_weight > 0 else []
    synthetic = synthetic_samples(scales, args.leave_out) if args.synthetic_weight > 0 else []
    model = fit(data, ((unchanged, args.unchanged_weight), (synthetic, args.synthetic_weight)))
    record = {
        "format": "geosr-change-cue-1", "measures": list(MEASURES), **model,
        "training": {"data": "training split of scripts/shared_data.json (LEVIR-CD, DSIFN-CD, Landsat "
                             "Taizhou/Nanjing), LR by antialiased bicubic, reference averaged onto the LR grid",
                     "samples": [name for name, _, _ in data], "pixels": int(sum(len(d[2]) for d in data)),
                     "unchanged_samples": len(unchanged), "unchanged_weight": args.unchanged_weight,
                     "synthetic_samples": len(synthetic), "synthetic_weight": args.synthetic_weight,
                     "left_out": args.leave_out, "scales": scales, "l2": L2,
                     "label": "LR pixel with most of its HR pixels labelled changed",
                     "detector_version": DETECTOR_VERSION, "script": "scripts/fit_change_cue.py"},
    }
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}: {record['training']['pixels']} pixels of {len(data)} pair-scales")


if __name__ == "__main__":
    main()
