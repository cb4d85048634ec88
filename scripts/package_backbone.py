"""Package a trained backbone run as a bundled geosr model (``geosr/weights/<name>.safetensors`` + its ``.json``).

    python scripts/package_backbone.py --checkpoint runs/backbone/model.safetensors --name lite \
        [--bench bench.json] [--reference-detail] [--lr-consistency box|bicubic|off]

The spec gets the model's name, how it runs by default (``inference``: reference detail, LR-consistency), where
its weights come from and what it saw (``training``), and the benchmark's numbers (``metrics``) when given.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from geosr.models.backbone_checkpoint import load_backbone, save_backbone

WEIGHTS = Path(__file__).resolve().parents[1] / "geosr" / "weights"
SOURCES = [
    "initial weights: SAFMN (NTIRE 2023 ESR, x4, DIV2K + Flickr2K), github.com/sunny2109/SAFMN, Apache-2.0",
    "fine-tuning: RSSCN7 (github.com/palewithout/RSSCN7; 2,800 Google Earth images; licence not stated, "
    "training only), every 100th image held out for validation",
    "fine-tuning: the training split of ../shared/data (scripts/shared_data.json; LEVIR-CD, DSIFN-CD, Landsat "
    "Nanjing; research licences, training only)",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--name", default="lite")
    ap.add_argument("--bench", type=Path)
    ap.add_argument("--reference-detail", action="store_true")
    ap.add_argument("--lr-consistency", default="off", choices=("off", "box", "bicubic"))
    args = ap.parse_args()
    net, spec = load_backbone(args.checkpoint)
    inference: dict = {"reference_detail": {"sigma": 8.0} if args.reference_detail else False,
                       "lr_consistency": False if args.lr_consistency == "off" else {"operator": args.lr_consistency}}
    training = {**spec.get("training", {}), "sources": SOURCES,
                "degradations": "blind mix: antialiased bicubic, bicubic without antialiasing, box, Gaussian PSF "
                                "(sigma 0.3-0.7 LR px, sub-pixel shifts), noise, JPEG "
                                "(geosr.training.sensor_degradations)"}
    metrics = json.loads(args.bench.read_text()) if args.bench else {}
    out = save_backbone(net, WEIGHTS / f"{args.name}.safetensors", name=args.name, sidecar=True, inference=inference,
                        training=training, metrics=metrics)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
