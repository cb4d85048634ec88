"""Print every architecture's parameter count and FLOPs per forward at 256x256 (built on the meta device:
no memory, no weights, a few seconds).

    python scripts/model_stats.py [--size 256] [--json]

FLOPs are counted by torch's FlopCounterMode (convolutions, matrix products and attention; 1 multiply-add
= 2 FLOPs). "guidance" is the once-per-sampling-run part (the two guidance pyramids); "per NFE" is one
network evaluation. Class counts: 3 bands, the config's change classes (tiny/small: 2, paper: 7), and an
8-class map for tiny/small (paper: none).
"""

from __future__ import annotations

import argparse
import json

import torch
from torch.utils.flop_counter import FlopCounterMode

from geosr.models.configs import CONFIGS
from geosr.models.edm import build_denoiser
from geosr.models.unet import make_condition

MAP_CLASSES = {"tiny": 8, "small": 8, "paper": 0}


def stats(name: str, size: int = 256) -> dict:
    model = build_denoiser(name, n_map_classes=MAP_CLASSES.get(name, 0), device="meta")
    cfg = model.cfg
    n_params = sum(p.numel() for p in model.parameters())
    with torch.device("meta"):
        cond = make_condition(
            torch.zeros(1, cfg.n_bands, size, size),
            torch.zeros(1, cfg.n_bands, size, size),
            torch.zeros(1, 1, size, size),
            torch.zeros(1, 1, size, size, dtype=torch.long),
            n_change_classes=cfg.n_change_classes,
            map_ids=torch.zeros(1, 1, size, size, dtype=torch.long) if cfg.n_map_classes else None,
            n_map_classes=cfg.n_map_classes,
        )
        x = torch.zeros(1, cfg.n_bands, size, size)
        sigma = torch.ones(1)
    prep_counter = FlopCounterMode(display=False)
    with prep_counter:
        prepared = model.prepare(cond)
    fwd_counter = FlopCounterMode(display=False)
    with fwd_counter:
        model(x, sigma, prepared=prepared)
    return {
        "config": name,
        "params": n_params,
        "size": size,
        "guidance_gflop": prep_counter.get_total_flops() / 1e9,
        "nfe_gflop": fwd_counter.get_total_flops() / 1e9,
        "arch": cfg.to_dict(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = [stats(name, args.size) for name in CONFIGS]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"| config | parameters | GFLOP per NFE at {args.size}^2 | guidance GFLOP (once per run) |")
    print("|---|---:|---:|---:|")
    for r in rows:
        params = f"{r['params']:,} ({r['params'] / 1e6:.2f} M)"
        print(f"| {r['config']} | {params} | {r['nfe_gflop']:,.1f} | {r['guidance_gflop']:,.1f} |")


if __name__ == "__main__":
    main()
