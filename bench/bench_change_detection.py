"""Change detection against real change labels: geosr's detector and the classical baseline.

    python bench/bench_change_detection.py [--scales 4,8] [--split heldout|train|all] [--group levir] \
        [--cue change_cue.json] [--json out.json]
    python bench/bench_change_detection.py --clouds 0.4,0.5,0.6 [--cloudy lr|reference] [--scales 4,8]
    python bench/bench_change_detection.py --clouds 0.4,0.5,0.6 --sensor-mask [--scales 4,8]
    python bench/bench_change_detection.py --clouds 0.2 --shadow [--scales 4,8]

For every labelled pair of ../shared/data (``scripts/shared_data.json``): the LR is the new image degraded by
antialiased bicubic at the scale, the reference is the old HR image averaged onto the LR grid (what upscale
compares after co-registration). Each detector's mask (on the LR grid, or geosr's on the grid upscale draws it on,
:func:`~geosr.conditioning.change_detection.refine_factor` times finer) is brought to the HR grid (nearest) and
scored against the HR labels where they are known: recall (share of changed HR pixels flagged: what stays stale
otherwise), precision, F1, and the share of the scene flagged; ``no_change_flagged``: the share flagged when the
reference is the new image itself (false alarms where nothing changed).

Baseline: change-vector magnitude after a global per-band mean/std harmonization, thresholded by Otsu.
``--group``: only that data set's pairs; ``--cue``: geosr's detector with another learned cue (e.g. one fitted
without that data set: ``scripts/fit_change_cue.py --leave-out``).

``--clouds COVERS``: instead, each pair's new image against itself (averaged onto the LR grid), with a synthetic
cloud bank over the given shares of the LR (``--cloudy reference``: of the reference): bright, soft-edged, with an 8%
billowy texture (real Landsat 8 cumulus at 30 m measured 5% relative local spread, clear ground 3%). Reports the
share of the cloud's core flagged (what a detector must flag: the ground under it is not what the other image
shows) and of the clear ground (false alarms), on the LR grid (``run`` scores the refined grid upscale draws).
``--sensor-mask``: the LR's cloud is also given to the detector as its product's own cloud mask would flag it
(opacity above 10%), as upscale does with a Sentinel-2 L2A product's scene classification. ``--shadow``: the bank
darkens the ground by 30% instead of whitening it, its detail kept (a cloud's shadow).
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

from geosr.conditioning.change_cue import ChangeCue  # noqa: E402
from geosr.conditioning.change_detection import detect_changes, refine, refine_factor  # noqa: E402
from geosr.training.sensor_degradations import degrade_named  # noqa: E402


def baseline(lr: np.ndarray, ref: np.ndarray) -> np.ndarray:
    h = (ref - ref.mean((1, 2), keepdims=True)) / (ref.std((1, 2), keepdims=True) + 1e-9)
    h = h * lr.std((1, 2), keepdims=True) + lr.mean((1, 2), keepdims=True)
    m = np.sqrt(((lr - h) ** 2).sum(0))
    return m > threshold_otsu(m)


def score(mask: np.ndarray, label: np.ndarray, known: np.ndarray, scale: int, factor: int = 1) -> dict:
    """Recall, precision and F1 of ``mask`` (on the grid ``factor`` times finer than the LR's) against the HR
    labels; ``_lr``: of the LR pixels mostly changed, an LR pixel flagged where most of it is."""
    step = scale // factor
    m = np.kron(mask.astype(np.uint8), np.ones((step, step), np.uint8)).astype(bool)
    h, w = m.shape
    lab, kn = label[:h, :w], known[:h, :w]
    tp = float((m & lab & kn).sum())
    fn = float((~m & lab & kn).sum())
    fp = float((m & ~lab & kn).sum())
    recall = tp / (tp + fn) if tp + fn else float("nan")
    precision = tp / (tp + fp) if tp + fp else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    # the same on the LR grid: an LR pixel is changed when most of its HR pixels are (known when most are known)
    hh, ww = h // scale, w // scale

    def lr_share(x: np.ndarray) -> np.ndarray:
        return x[: hh * scale, : ww * scale].reshape(hh, scale, ww, scale).mean(axis=(1, 3))

    share, kn_lr, m_lr = lr_share(lab), lr_share(kn) > 0.5, lr_share(m) > 0.5
    lab_lr = share > 0.5
    tp_lr = float((m_lr & lab_lr & kn_lr).sum())
    fn_lr = float((~m_lr & lab_lr & kn_lr).sum())
    fp_lr = float((m_lr & ~lab_lr & kn_lr).sum())
    return {"recall": recall, "precision": precision, "f1": f1, "flagged": float(m[kn].mean()),
            "recall_lr": tp_lr / (tp_lr + fn_lr) if tp_lr + fn_lr else float("nan"),
            "f1_lr": 2 * tp_lr / (2 * tp_lr + fp_lr + fn_lr) if tp_lr + fp_lr + fn_lr else float("nan")}


def _mean(values: list[float]) -> float | None:
    """The mean to 3 decimals; None (null in the JSON) when no pair has the number (e.g. Nanjing alone at x16: no
    LR pixel mostly changed)."""
    return round(statistics.fmean(values), 3) if values else None


def learned(path: Path):
    """f(lr, ref) -> LR-grid mask of the learned detector at ``path`` (its own threshold)."""
    from geosr.models.change_net import load_change_net

    net, spec = load_change_net(path)

    def detect(lr: np.ndarray, ref: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            p = torch.sigmoid(net(torch.from_numpy(lr).float()[None], torch.from_numpy(ref).float()[None],
                                  torch.ones(1, 1, *lr.shape[1:])))[0, 0].numpy()
        return p > spec["threshold"]

    return detect


def run(scales: list[int], split: str, change_net: Path | None = None, group: str | None = None,
        cue: Path | None = None) -> dict:
    splits = ("train", "heldout") if split == "all" else (split,)
    pairs = [p for s in splits for p in shared_data_pairs(split=s) if p.ref is not None and p.change is not None
             and not p.synthetic and group in (None, p.group.split("/")[0])]
    change_cue = ChangeCue.from_dict(json.loads(cue.read_text())) if cue else None
    table: dict = {}
    for scale in scales:
        rows: dict[str, list[dict]] = {"baseline": [], "geosr": []}
        net = learned(change_net) if change_net else None
        if net:
            rows["learned"] = []
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
            found = detect_changes(lr, valid, ref, valid, cue=change_cue)
            k = refine_factor(scale)
            fine = refine(found.evidence, found.valid, k)[0]
            # no change at all: the new image itself as the reference, averaged onto the LR grid
            same = torch.nn.functional.avg_pool2d(hr_new[None, :, : h * scale, : w * scale], scale)[0].numpy()
            rows["baseline"][-1]["no_change_flagged"] = float(baseline(lr, same.astype(np.float64)).mean())
            same_found = detect_changes(lr, valid, same, valid, cue=change_cue)
            no_change = refine(same_found.evidence, same_found.valid, k)[0].mean()
            rows["geosr"].append(score(fine, label, known, scale, k) | {"no_change_flagged": float(no_change)})
            if net:
                rows["learned"].append(score(net(lr, ref), label, known, scale))
        for name, r in rows.items():
            if not r:  # no labelled pair in this group and split
                continue
            agg = {k: _mean([x[k] for x in r if x[k] == x[k]]) for k in r[0]}
            table[f"x{scale} {name}"] = agg | {"pairs": len(r)}
            shown = "  ".join(f"{k} {'-' if v is None else f'{v:.3f}'}" for k, v in agg.items())
            print(f"x{scale} {name:9s}", shown, f"({len(r)} pairs)", flush=True)
    return table


def cloud_bank(h: int, w: int, cover: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(alpha, core) of a cloud bank over ``cover`` of an (h, w) image: a smooth random field's top share, edges
    softened over about 1.5 px, alpha times an 8% multiplicative billow texture."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal((h, w)), min(h, w) / 10)
    core = field > np.quantile(field, 1 - cover)
    alpha = np.clip(ndimage.gaussian_filter(core.astype(float), 1.5) * 1.3, 0, 1)
    billows = sum(ndimage.gaussian_filter(rng.standard_normal((h, w)), s) * s for s in (1, 2, 4))
    return alpha * (1 + 0.08 * billows / billows.std()), core


SHADOW = 0.3  # how much a synthetic shadow darkens the ground (--shadow)


def run_clouds(scales: list[int], split: str, covers: list[float], cloudy: str, sensor_mask: bool = False,
               shadow: bool = False) -> dict:
    """Share of a synthetic cloud's core flagged, and of the clear ground, per scale and cover (module doc);
    ``sensor_mask``: the LR's cloud as its product's own mask would flag it (wherever the cloud's opacity passes
    10%) is given to the detector, as upscale gives a Sentinel-2 L2A product's SCL; ``shadow``: the bank darkens
    the ground by 30% instead, its detail kept (a cloud's shadow)."""
    splits = ("train", "heldout") if split == "all" else (split,)
    pairs = [p for s in splits for p in shared_data_pairs(split=s) if not p.synthetic]
    table: dict = {}
    for scale in scales:
        for cover in covers:
            in_cloud, clear = [], []
            for i, p in enumerate(pairs):
                hr = p.target[:3].float()
                h, w = hr.shape[-2] // scale, hr.shape[-1] // scale
                lr = degrade_named(hr, scale, "bicubic").numpy().astype(np.float64)
                ref = torch.nn.functional.avg_pool2d(hr[None, :, : h * scale, : w * scale], scale)[0].numpy()
                ref = ref.astype(np.float64)
                alpha, core = cloud_bank(h, w, cover, i)
                white = np.percentile(lr, 99.5) * 1.05
                if shadow:
                    dark = 1 - SHADOW * np.clip(alpha, 0, 1)
                    lr, ref = (lr * dark, ref) if cloudy == "lr" else (lr, ref * dark)
                elif cloudy == "lr":
                    lr = lr * (1 - np.clip(alpha, 0, 1)) + alpha * white
                else:
                    ref = ref * (1 - np.clip(alpha, 0, 1)) + alpha * white
                valid = np.ones((h, w), bool)
                flags = alpha > 0.1 if sensor_mask else None
                changed = detect_changes(lr, valid, ref, valid, untrusted=flags).changed
                in_cloud.append(float(changed[core].mean()))
                if (~core & (alpha < 0.01)).any():  # (a small LR under a large cloud may have no clear pixel)
                    clear.append(float(changed[~core & (alpha < 0.01)].mean()))
            row = {"cloud_flagged": _mean(in_cloud), "cloud_flagged_min": round(min(in_cloud), 3) if in_cloud else None,
                   "clear_flagged": _mean(clear), "pairs": len(in_cloud), "pairs_with_clear_ground": len(clear)}
            table[f"x{scale} cover {cover}"] = row
            print(f"x{scale} {'shadow' if shadow else 'cloud'} over {cover:.0%} of the {cloudy}:", row, flush=True)
    return table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scales", default="4,8")
    ap.add_argument("--split", default="all", choices=("train", "heldout", "all"))
    ap.add_argument("--change-net", type=Path, help="a learned detector's checkpoint to score as well")
    ap.add_argument("--group", help="only this data set (a group of scripts/shared_data.json: levir, dsifn, landsat)")
    ap.add_argument("--cue", type=Path, help="the learned cue to use (default: geosr's bundled one)")
    ap.add_argument("--clouds", help="covers (e.g. 0.4,0.5,0.6): the synthetic cloud part instead (module doc)")
    ap.add_argument("--cloudy", default="lr", choices=("lr", "reference"), help="which image the clouds cover")
    ap.add_argument("--sensor-mask", action="store_true",
                    help="with --clouds over the LR: give the detector the cloud as the LR product's own mask flags it")
    ap.add_argument("--shadow", action="store_true", help="with --clouds: the bank darkens the ground by 30%% instead")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.shadow and not args.clouds:
        ap.error("--shadow is a kind of --clouds bank: give --clouds COVERS")
    if args.group:  # (a typo measured nothing and wrote {}; found in review)
        from scripts.shared_data import MANIFEST

        from geosr.training.manifest import load_collection

        groups = sorted({ds.group for ds in load_collection(MANIFEST).sets})
        if args.group not in groups:
            ap.error(f"--group {args.group}: no such data set group (the groups: {', '.join(groups)})")
    if args.clouds:  # covers are shares of the LR, not percentages (40 was a numpy quantile error)
        try:
            covers = [float(c) for c in args.clouds.split(",")]
        except ValueError:
            covers = []
        if not covers or not all(0 < c <= 1 for c in covers):
            ap.error(f"--clouds {args.clouds}: covers are shares of the scene above 0 and at most 1, e.g. 0.4,0.5")
    if args.sensor_mask and not (args.clouds and args.cloudy == "lr"):
        ap.error("--sensor-mask is the LR product's cloud mask: it needs --clouds over the LR (--cloudy lr)")
    if args.clouds:
        if args.group or args.cue or args.change_net:
            ap.error("--clouds runs geosr's own detector on every pair: --group, --cue and --change-net do not apply")
        result = run_clouds([int(s) for s in args.scales.split(",")], args.split,
                            [float(c) for c in args.clouds.split(",")], args.cloudy, args.sensor_mask, args.shadow)
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        return
    result = run([int(s) for s in args.scales.split(",")], args.split, args.change_net, args.group, args.cue)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
