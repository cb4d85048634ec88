"""Train geosr's learned change detector on the real labelled pairs of ../shared/data and synthetic change.

    python scripts/train_change_net.py --images /data/RSSCN7 --out geosr/weights/change_detector.safetensors \
        [--steps 3000] [--recall 0.85] [--threads 1]

Only the training split of ``scripts/shared_data.json`` is read (its held-out pairs are the benchmark's,
``bench/bench_change_detection.py``). The probability threshold is chosen on the training pairs for ``--recall``
of their changed LR pixels and written into the checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from geosr.models.change_net import ChangeNet, ChangeNetConfig, save_change_net
from geosr.training.backbone_fit import image_files, read_images
from geosr.training.change_fit import fit_change_net, real_examples, threshold_for_recall


def labelled_pairs(split: str) -> tuple[list, list, list, list]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from shared_data import shared_data_pairs

    t, r, c, k = [], [], [], []
    for p in shared_data_pairs(split=split):
        if p.ref is None or p.change is None or p.synthetic:
            continue
        t.append(p.target[:3].clamp(0, 1))
        r.append(p.ref[:3].clamp(0, 1))
        c.append(torch.from_numpy(np.array([x.changed for x in p.table.classes])[p.change.numpy().clip(0)]))
        k.append(p.labelled if p.labelled is not None else torch.ones(p.change.shape, dtype=torch.bool))
    return t, r, c, k


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, action="append", default=[])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--recall", type=float, default=0.85)
    ap.add_argument("--max-images", type=int, default=700)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    real = real_examples(*labelled_pairs("train"))
    files = image_files(args.images) if args.images else []
    images = read_images(files[:: max(1, len(files) // args.max_images)] if files else [])
    print(f"{len(real)} real examples, {len(images)} images for synthetic change", flush=True)
    net = fit_change_net(ChangeNet(ChangeNetConfig()), real, images, steps=args.steps, seed=args.seed,
                         log=lambda s: print(s, flush=True))
    threshold = threshold_for_recall(net, real, args.recall)
    save_change_net(net, args.out, threshold=threshold,
                    training={"steps": args.steps, "recall": args.recall, "real_examples": len(real),
                              "synthetic_images": len(images),
                              "data": ["../shared/data training split (labelled pairs)", *map(str, args.images)]})
    print(f"wrote {args.out} (threshold {threshold:.3f})")


if __name__ == "__main__":
    main()
