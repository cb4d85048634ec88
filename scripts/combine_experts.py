"""Combine backbones fine-tuned on one family of LR formation each into one expert backbone.

    python scripts/combine_experts.py --expert soft=runs/lite/best.safetensors:gaussian \
        --expert antialiased=runs/aa/best.safetensors:bicubic \
        --expert aliasing=runs/noaa/best.safetensors:bicubic-noaa --images RSSCN7 --out runs/experts.safetensors

Each expert's anchor at each scale (:mod:`geosr.models.backbone_experts`) is the median first number of the
sharpness code of LRs made by its family (``geosr.training.sensor_degradations.NAMED``) from the validation
images of ``--images`` (every 100th, as ``scripts/train_backbone.py`` holds them out) and the training split of
../shared/data (the only images large enough for a code at x16), so that no benchmark image decides how the
experts are mixed. At each scale the experts taking part and the mixing width (one of :data:`WIDTHS`) are those
with the best mean PSNR-Y gain over bicubic on the same images under the four named degradations (each image told
its own code, as a scene is) among those that lose at most :data:`TOLERANCE_DB` to the first expert alone (the
blind one) under any of them; with ``--rule maxmin``, the blind expert alone unless a mix raises the
worst-degradation gain (issue 18 asks for +0.5 dB under every one) by more than :data:`MAXMIN_MARGIN_DB`, and then
the best mean among the mixes within :data:`MAXMIN_TIE_DB` of the best worst-degradation gain; with ``--rule all``,
every expert at every scale (but those of ``--blind-at``, where the first runs alone), mixed linearly,
uncalibrated: the start of a routed training run, in which each crop's
code picks its mix as a scene's does (``scripts/train_backbone.py --init``), afterwards calibrated again with
``--experts RUN/best.safetensors --rule maxmin`` (the anchors kept). Package the result with
``scripts/package_backbone.py``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

import torch
from torch.func import functional_call

from geosr.models.backbone_checkpoint import load_backbone, save_backbone
from geosr.models.backbone_experts import ExpertBackbone
from geosr.models.degradation_code import MARGIN, MIN_PIXELS, lr_sharpness
from geosr.models.resample import upsample
from geosr.training.backbone_fit import image_files, read_images
from geosr.training.metrics import psnr_y
from geosr.training.sensor_degradations import NAMED, degrade_named

MIN_LR_SIDE = math.isqrt(MIN_PIXELS) + 2 * MARGIN  # smaller LRs have no code (degradation_code.MIN_PIXELS)
MAX_LR_SIDE = 128  # central crops: bounded time, codes as steady as a scene's
WIDTHS = (1.0, 0.5, 0.25, 0.1)  # linear mixing down to nearly a switch at the middle between anchors
TOLERANCE_DB = 0.02  # a mix may lose this much to the first (blind) expert alone under a degradation, no more
MAXMIN_TIE_DB = 0.01  # --rule maxmin: worst-degradation gains this close count as equal (the mean decides)
MAXMIN_MARGIN_DB = 0.05  # --rule maxmin: a mix must raise the worst gain by more than this to replace the blind one
RULES = ("tolerance", "maxmin", "all")


def _hrs(images: list[torch.Tensor], scale: int) -> list[torch.Tensor]:
    """The images large enough to be measured at ``scale``, as [0, 1] central crops of at most MAX_LR_SIDE LR px."""
    hrs = []
    for im in images:
        h, w = im.shape[-2:]
        if min(h, w) >= MIN_LR_SIDE * scale:
            s = min(h, w, MAX_LR_SIDE * scale) // scale * scale
            y, x = (h - s) // 2, (w - s) // 2
            hrs.append(im[:, y : y + s, x : x + s].float() / 255)
    if not hrs:
        raise SystemExit(f"no image is large enough for x{scale} ({MIN_LR_SIDE * scale} px)")
    return hrs


def _lr(hr: torch.Tensor, scale: int, kind: str) -> torch.Tensor:
    return (degrade_named(hr, scale, kind) * 255).round() / 255


def anchors(images: list[torch.Tensor], kinds: list[str], scales: list[int]) -> dict[int, list[float]]:
    """Median first code number of each family's LRs of ``images`` ((3, H, W) uint8), per scale."""
    return {s: [round(statistics.median(float(lr_sharpness(_lr(hr, s, kind).numpy())[0])
                                       for hr in _hrs(images, s)), 4) for kind in kinds] for s in scales}


def choose(per_kind: dict[Any, dict[str, float]], blind: Any, rule: str = "tolerance") -> Any:
    """``tolerance``: the configuration with the best mean gain among those that lose at most TOLERANCE_DB to
    ``blind`` under every degradation (``blind`` itself always qualifies). ``maxmin``: the best mean gain among
    those whose worst-degradation gain is within MAXMIN_TIE_DB of the best worst-degradation gain, where that best
    is more than MAXMIN_MARGIN_DB above ``blind``'s (else ``blind``)."""
    if rule == "maxmin":
        top = max(min(g.values()) for g in per_kind.values())
        if top <= min(per_kind[blind].values()) + MAXMIN_MARGIN_DB:
            return blind
        safe = [c for c, g in per_kind.items() if min(g.values()) >= top - MAXMIN_TIE_DB]
    else:
        safe = [c for c, g in per_kind.items() if all(g[k] >= per_kind[blind][k] - TOLERANCE_DB for k in g)]
    return max(safe, key=lambda c: statistics.fmean(per_kind[c].values()))


@torch.inference_mode()
def calibrate(net: ExpertBackbone, images: list[torch.Tensor], rule: str = "tolerance") -> None:
    """Per scale, the experts taking part (any non-empty subset) and the mixing width (:data:`WIDTHS`) that
    :func:`choose` picks by ``rule`` from their PSNR-Y gains over bicubic under the named degradations, the first
    expert alone being the blind one; set on ``net``."""
    full = dict(net.anchors)
    for s in net.cfg.scales:
        configs = []
        present = [i for i, a in enumerate(full[s]) if a is not None]  # experts without an anchor here stay out
        for k in range(1, len(present) + 1):
            for subset in itertools.combinations(present, k):
                for w in (WIDTHS if k > 1 else WIDTHS[:1]):
                    configs.append((tuple(a if i in subset else None for i, a in enumerate(full[s])), w))
        gains: dict[tuple, dict[str, list[float]]] = {c: {k: [] for k in NAMED} for c in configs}
        for kind in NAMED:
            for hr in _hrs(images, s):
                lr = _lr(hr, s, kind)[None]
                code0 = float(lr_sharpness(lr[0].numpy())[0])
                crop = (slice(None), slice(s, -s), slice(s, -s))
                target = hr[crop]
                bicubic = psnr_y(upsample(lr, s, "bicubic")[0].clamp(0, 1)[crop], target)
                done: dict[tuple, float] = {}  # the same mix for several configurations: run it once
                for config in configs:
                    net.anchors[s], net.widths[s] = config
                    mix = tuple(net.mix(code0, s))
                    if mix not in done:
                        sr = functional_call(net.experts[0], net.blended(mix), (lr * 2 - 1, s))
                        done[mix] = psnr_y(((sr + 1) / 2)[0].clamp(0, 1)[crop], target) - bicubic
                    gains[config][kind].append(done[mix])
        per_kind = {c: {k: statistics.fmean(v) for k, v in g.items()} for c, g in gains.items()}
        means = {c: statistics.fmean(g.values()) for c, g in per_kind.items()}
        blind = per_kind[configs[0]]  # the first expert taking part, alone
        best = choose(per_kind, configs[0], rule)
        net.anchors[s], net.widths[s] = best
        taking = [n for n, a in zip(net.names, best[0]) if a is not None]
        print(f"x{s}: {', '.join(taking)}, width {best[1]}: mean gain {means[best]:+.3f}",
              {k: round(v, 3) for k, v in per_kind[best].items()}, f"(the first alone {means[configs[0]]:+.3f},",
              {k: round(v, 3) for k, v in blind.items()}, f"; all linearly {means[(full[s], 1.0)]:+.3f})", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--expert", action="append", default=[], help="name=checkpoint:family")
    ap.add_argument("--experts", type=Path, help="an expert backbone to calibrate again (its anchors kept), instead "
                    "of --expert")
    ap.add_argument("--images", type=Path, action="append", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rule", choices=RULES, default="tolerance", help="how each scale's mix is chosen (module doc)")
    ap.add_argument("--blind-at", default="", help="with --rule all: scales (e.g. 8,16) where the first expert runs "
                    "alone")
    args = ap.parse_args()
    if bool(args.expert) == bool(args.experts):
        ap.error("give the experts either one by one (--expert) or as one expert backbone (--experts)")
    if args.blind_at and args.rule != "all":
        ap.error("--blind-at sets up a routed start (--rule all); the other rules choose each scale's experts")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from train_backbone import shared_training_images

    val = read_images(image_files(args.images)[::100]) + shared_training_images()
    if args.experts:
        combined, spec = load_backbone(args.experts)
        if not isinstance(combined, ExpertBackbone):
            raise SystemExit(f"{args.experts}: not an expert backbone")
        combined.eval()
        training = {**spec.get("training", {}), "calibrated_from": args.experts.name}
    else:
        names, nets, kinds, experts = [], [], [], {}
        for item in args.expert:
            name, rest = item.split("=", 1)
            path, kind = rest.rsplit(":", 1)
            net, spec = load_backbone(path)
            names.append(name)
            nets.append(net)
            kinds.append(kind)
            experts[name] = {"family": kind, "file": Path(path).name, **spec.get("training", {})}
        table = anchors(val, kinds, list(nets[0].cfg.scales))
        print("anchors:", json.dumps(table))
        combined = ExpertBackbone(nets, table, names).eval()
        training = {"experts": experts}
    if args.rule != "all":
        calibrate(combined, val, args.rule)
    for scale in (int(v) for v in args.blind_at.split(",") if v.strip()):
        combined.anchors[scale] = (combined.anchors[scale][0],) + (None,) * (len(combined.experts) - 1)
    save_backbone(combined, args.out, name=args.out.stem, training={**training, "rule": args.rule})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
