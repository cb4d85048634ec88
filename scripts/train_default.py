"""Reproducible recipe of geosr's bundled default model (geosr/weights/default.safetensors).

    .venv/bin/python scripts/train_default.py --data ../shared/data --out /tmp/geosr-default [--minutes 60]
    .venv/bin/python scripts/train_default.py --data ../shared/data --out /tmp/geosr-default --resume
    .venv/bin/python scripts/train_default.py --out /tmp/geosr-default --install   # copy into geosr/weights

Data: the real change pairs of ../shared/data (LEVIR-CD, DSIFN-CD, Landsat Nanjing; training split of
geosr.training.datasets.HELDOUT) plus synthetic change made from every HR image of that split and a few
single RGB GeoTIFFs there. One model for x8 and x16. The held-out scenes are never read in training.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from geosr.training.config import TrainConfig
from geosr.training.loop import MODEL, train

# A "tiny"-class architecture sized for 2 CPU cores: space-to-depth 2, 24/48/48 channels, no attention in
# the encoder/decoder levels (the bottleneck block keeps its own), no style path. 1.85 M parameters, 7.4 MB.
# Residual: it denoises HR - bicubic(LR), whose std in model space is about 0.4 (measured on training
# batches at x8 / x16), so it starts from bicubic instead of from nothing.
ARCH = dict(
    name="tiny-cpu", patch=2, base_channels=24, channel_mult=[1, 2, 2], blocks_per_level=1, attn_levels=[],
    head_channels=24, dropout=0.0, sft_hidden=24, spade_hidden=24, guidance_channels=12, style=False,
    residual=True, sigma_data=0.4,
)


# How the default model is meant to run: one Heun step from sigma_max (the denoiser's posterior mean, which
# is what a model this small does best) and back-projection onto the LR.
INFERENCE = {"steps": 1, "lr_consistency": True}


def recipe(data: str, out: str, steps: int) -> TrainConfig:
    return TrainConfig(
        out=out,
        name="default",
        description="geosr default model: tiny-class change-aware EDM denoiser for x8 and x16 RGB, "
        "used with one-step (posterior-mean) sampling and LR-consistency back-projection",
        arch=ARCH,
        bands=3,
        band_names=("red", "green", "blue"),
        change_table="binary",
        scales=(8, 16),
        data=({"kind": "shared", "path": data, "weight": 1.0, "synthetic_weight": 1.0},),
        crop=128,
        batch_size=8,
        steps=steps,
        lr=5e-4,
        warmup=100,
        ema=0.995,
        grad_clip=1.0,
        p_high_sigma=0.8,
        sigma_high_min=10.0,
        p_no_ref=0.1,
        degradation="mixed",
        checkpoint_every=200,
        val_every=500,
        log_every=10,
        seed=0,
        threads=2,
        inference=INFERENCE,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    ap.add_argument("--out", default="/tmp/geosr-default")
    ap.add_argument("--steps", type=int, default=3600)
    ap.add_argument("--minutes", type=float, default=100.0, help="wall-time cap; the run saves and stops there")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--install", action="store_true", help="copy OUT/model.safetensors to geosr/weights/default.*")
    ap.add_argument("--metrics", help="with --install: a metrics.json of `geosr evaluate` to record in the spec")
    args = ap.parse_args()
    if args.install:
        from geosr.models.checkpoint import load_checkpoint, save_checkpoint

        weights = Path(__file__).resolve().parents[1] / "geosr" / "weights"
        model, spec = load_checkpoint(Path(args.out) / MODEL)
        spec["name"] = "default"
        spec["inference"] = INFERENCE
        if args.metrics:
            from geosr.training.evaluate import BASELINES

            summary = json.loads(Path(args.metrics).read_text())["summary"]
            # the evaluated checkpoint's path becomes "default"
            spec["metrics"] = {s: {m if m in BASELINES else "default": v for m, v in per.items()} for s, per in summary.items()}
        save_checkpoint(weights / "default.safetensors", model, spec)
        print(f"installed {weights / 'default.safetensors'}")
        return
    cfg = recipe(args.data, args.out, args.steps)
    res = train(cfg, resume=args.resume, max_seconds=args.minutes * 60)
    print(res.to_dict())


if __name__ == "__main__":
    main()
