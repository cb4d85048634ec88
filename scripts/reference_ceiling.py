"""How much can the reference help on the held-out split? An upper bound, per image, in unchanged areas.

    .venv/bin/python scripts/reference_ceiling.py [--data ../shared/data] [-x 8 -x 16]

For every held-out pair (scripts/shared_data.json's held-out split; the LR made as `geosr evaluate` makes it:
antialiased bicubic, 8 bits) this prints PSNR-Y over the unchanged pixels of

- bicubic: the LR upsampled;
- detail: bicubic + the harmonized reference's own high frequencies (reference − its bicubic
  down-and-up), i.e. the reference's detail trusted everywhere;
- oracle: bicubic + a · shift(detail) per 32 × 32 HR block, with the shift (±4 HR px) and the gain
  a ∈ [0, 1] chosen *with the ground truth* for each block. No method that only transfers the reference's
  detail can beat this; it bounds what the reference contributes;

and two correlations over the unchanged pixels: "corr" of the reference's detail with the true residual
(target − bicubic), which needs the truth, and "LR agree" of the LR's own detail (LR − its Gaussian blur of
1 LR px) with the reference's at LR scale, which a model can see.

The point: where the oracle is hardly above bicubic, the reference's detail does not match the target
(other buildings, shadows, seasons) and any gain must come from single-image super-resolution.
"""

from __future__ import annotations

import argparse

import torch
from shared_data import SHARED_DATA, shared_data_pairs

from geosr.models.resample import upsample
from geosr.training.degradations import downsample, gaussian_blur
from geosr.training.evaluate import make_cases
from geosr.training.metrics import psnr_y
from geosr.training.samples import harmonize

BLOCK = 32
SHIFT = 4


def oracle_detail(bic: torch.Tensor, detail: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """bic + per block the best (shift, gain in [0, 1]) of ``detail`` against the true residual."""
    res = hr - bic
    out = bic.clone()
    H, W = bic.shape[-2:]
    shifted = [
        torch.roll(detail, (dy, dx), (1, 2)) for dy in range(-SHIFT, SHIFT + 1) for dx in range(-SHIFT, SHIFT + 1)
    ]
    for y in range(0, H, BLOCK):
        for x in range(0, W, BLOCK):
            r = res[:, y : y + BLOCK, x : x + BLOCK]
            best = None
            for d in shifted:
                d = d[:, y : y + BLOCK, x : x + BLOCK]
                a = ((d * r).sum() / (d * d).sum().clamp(min=1e-12)).clamp(0, 1)
                err = float(((r - a * d) ** 2).sum())
                if best is None or err < best[0]:
                    best = (err, a * d)
            out[:, y : y + BLOCK, x : x + BLOCK] += best[1]
    return out


def corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED_DATA), help="the shared data folder (scripts/shared_data.json's root)")
    ap.add_argument("-x", dest="scales", type=int, action="append")
    args = ap.parse_args()
    torch.set_num_threads(2)
    cases = make_cases(shared_data_pairs(args.data, split="heldout"), args.scales or [8, 16])
    print("| image | x | bicubic | detail | oracle | oracle − bicubic | corr | LR agree |")
    print("|---|---|---|---|---|---|---|---|")
    for c in cases:
        s, unchanged = c.scale, ~c.changed & c.labelled
        bic = upsample(c.lr[None], s, "bicubic")[0]
        ref = harmonize(c.ref, c.lr, c.changed, s)
        ref_lr = downsample(ref, s, "bicubic")
        detail = ref - upsample(ref_lr[None], s, "bicubic")[0]
        scores = [psnr_y(t.clamp(0, 1), c.hr, unchanged) for t in (bic, bic + detail, oracle_detail(bic, detail, c.hr))]
        hr_corr = corr((c.hr - bic).mean(0)[unchanged], detail.mean(0)[unchanged])
        lr_unchanged = downsample(unchanged[None].float(), s, "area")[0] > 0.99
        lr_agree = "–"  # too few wholly unchanged LR pixels to say
        if int(lr_unchanged.sum()) >= 16:
            lr_agree = f"{corr(*((x - gaussian_blur(x, 1.0)).mean(0)[lr_unchanged] for x in (c.lr, ref_lr))):.2f}"
        print(f"| {c.name} | {s} | {scores[0]:.2f} | {scores[1]:.2f} | {scores[2]:.2f} | {scores[2] - scores[0]:+.2f} "
              f"| {hr_corr:.2f} | {lr_agree} |")


if __name__ == "__main__":
    main()
