"""Thin a trained backbone's channel mixers to fewer hidden channels (geosr.training.backbone_prune).

    python scripts/prune_backbone.py --backbone geosr/weights/lite.safetensors --images /data/RSSCN7 \
        --hidden 48 --out runs/lite48.safetensors [--per-scale 48] [--distill-steps 1500 [--lr 2e-4] [--device auto]]
    python scripts/prune_backbone.py --backbone geosr/weights/lite.safetensors --images /data/RSSCN7 \
        --hidden 48 --thinned runs/lite48.safetensors --distill-steps 3000 --lr 1e-4 --out runs/lite48b.safetensors

Calibration LRs: random crops of the training images of ``--images`` (every 100th is held out, as
``scripts/train_backbone.py`` holds them out) degraded, for each expert, by that expert's family of LR formation
(its training ``kinds``; the blind mix when it has none) at each scale it serves. The spec is kept, with the new
``arch`` and a ``training.pruning`` record. Measure the result with ``bench/bench_backbone.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from geosr.models.backbone_checkpoint import load_backbone, save_backbone
from geosr.models.backbone_experts import ExpertBackbone
from geosr.training.backbone_fit import BackboneTrainConfig, image_files, make_batch, read_images
from geosr.training.backbone_prune import distill, prune_backbone

LR_SIDE = {2: 96, 4: 64, 8: 40, 16: 24}  # calibration crops' LR side per scale (RSSCN7 images are 400 px)


def calibration(images: list[torch.Tensor], kinds: tuple[str, ...] | None, scales: list[int], per_scale: int,
                seed: int) -> list[tuple[torch.Tensor, int]]:
    """(LR batch of 8 crops in model space, scale) pairs: about ``per_scale`` crops per scale of ``kinds``."""
    rng = np.random.default_rng(seed)
    out = []
    for s in scales:
        for _ in range(max(1, per_scale // 8)):
            lr, _hr, _code = make_batch(images, s, LR_SIDE[s], 8, rng, kinds)
            out.append((lr * 2 - 1, s))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", type=Path, required=True)
    ap.add_argument("--images", type=Path, action="append", required=True)
    ap.add_argument("--hidden", type=int, required=True, help="hidden channels per channel mixer")
    ap.add_argument("--per-scale", type=int, default=48, help="calibration crops per scale and expert")
    ap.add_argument("--distill-steps", type=int, default=0,
                    help="then fine-tune each expert this many steps towards the network it was thinned from")
    ap.add_argument("--thinned", type=Path,
                    help="a network this script already thinned from --backbone: distill it further, no pruning")
    ap.add_argument("--lr", type=float, default=2e-4, help="the distillation's learning rate")
    ap.add_argument("--device", default="auto", help="where to distill: auto (CUDA when there is one), cpu, cuda")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    net, spec = load_backbone(args.backbone)
    files = [p for i, p in enumerate(image_files(args.images)) if i % 100]
    images = read_images(files[:: max(1, len(files) // 400)])
    experts = spec.get("training", {}).get("experts", {})
    names = list(net.names) if isinstance(net, ExpertBackbone) else [spec.get("name", "backbone")]
    cal, draws = [], []
    for e, name in enumerate(names):
        config = experts.get(name, {}).get("config", {})
        kinds = config.get("kinds")
        scales = sorted(int(s) for s in config.get("scale_weights", {}) or net.cfg.scales)
        kinds = tuple(kinds) if kinds else None
        if not args.thinned:
            cal.append(calibration(images, kinds, scales, args.per_scale, args.seed + e))
        weights = {int(k): float(v) for k, v in (config.get("scale_weights") or {s: 1.0 for s in scales}).items()}
        draws.append((kinds, weights))
        print(f"{name}: {kinds or 'blind mix'} at x{', x'.join(map(str, scales))}", flush=True)
    if args.thinned:
        thin, thin_spec = load_backbone(args.thinned)
        done = thin_spec.get("training", {}).get("pruning", {}).get("distill_steps", 0)
    else:
        thin, done = prune_backbone(net, cal, args.hidden), 0
    if args.distill_steps:
        device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                              "cpu" if args.device == "auto" else args.device)
        pairs = (zip(thin.experts, net.experts) if isinstance(net, ExpertBackbone) else [(thin, net)])
        for e, (student, teacher) in enumerate(pairs):
            rng = np.random.default_rng(args.seed + 100 + e + done)
            kinds, weights = draws[e]
            scales, p = list(weights), np.array(list(weights.values())) / sum(weights.values())

            def batches(rng=rng, kinds=kinds, scales=scales, p=p):
                s = int(rng.choice(scales, p=p))
                lr, hr, _code = make_batch(images, s, BackboneTrainConfig().lr_patch[s], 16, rng, kinds)
                return lr, hr, s

            print(f"distilling {names[e]} on {device}", flush=True)
            distill(student.to(device), teacher.to(device), batches, args.distill_steps, lr=args.lr,
                    log=lambda m: print(m, flush=True))
        thin = thin.cpu()
    training = dict(spec.get("training", {}))
    training["pruning"] = {"from": args.backbone.name, "hidden": args.hidden, "per_scale": args.per_scale,
                           "distill_steps": done + args.distill_steps,
                           "method": "geosr.training.backbone_prune (greedy backward elimination, least squares)"}
    # the original's benchmark numbers and golden gains are not the thinned network's: measure those anew
    keep = {k: v for k, v in spec.items()  # (its scales: those the original was trained for, as it claims them)
            if k not in ("format", "name", "arch", "bands", "experts", "metrics")}
    keep["training"] = training
    save_backbone(thin, args.out, name=spec.get("name", "backbone"), **keep)
    print(f"wrote {args.out} ({thin.cfg.dim} x {thin.cfg.blocks}, {int(thin.cfg.dim * thin.cfg.ffn)} hidden)")


if __name__ == "__main__":
    from geosr.errors import GeoSRError

    try:
        main()
    except (GeoSRError, FileNotFoundError) as exc:  # bad input: one sentence and exit 2, as the CLI's
        print(f"prune_backbone: {exc}", file=sys.stderr)
        sys.exit(2)
