"""Train geosr's LR-space backbone on real remote-sensing images, resumably.

    python scripts/train_backbone.py --init ~/.cache/geosr/reference/backbone_init.safetensors \
        --images /data/RSSCN7 [--images more/] --out runs/backbone [--steps 20000] [--minutes 50] [--resume] \
        [--sharpness-code] [--expert soft] [--grow-blocks 24] [--val-images DIR] [--schedule-by-time]

Training images: every image under the ``--images`` folders (e.g. RSSCN7, ``palewithout/RSSCN7``), every 100th
of them kept for validation, plus the training split of ../shared/data (targets and references) when it is
there. Its held-out split is never read here (the benchmark uses it). ``--init``: the converted public
weights (``scripts/convert_safmn.py``), a trained backbone, or an expert backbone (``scripts/combine_experts.py
--rule all``), which trains routed: each crop's code picks its mix of experts; with ``--expert NAME``, that
expert alone. ``--grow-blocks N``: a larger variant, the ``--init`` network deepened to N blocks (new blocks start
as the identity, so it starts with the same outputs; give it a ``--warmup``). ``--val-images``: validate on these
images instead (then every ``--images`` file trains).
``--schedule-by-time`` with ``--minutes``: the learning rate's cosine ends when the minutes do (a run on a lent
GPU, whose step rate is not known ahead), or at ``--steps``, whichever comes first.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from geosr.errors import GeoSRError, InputError
from geosr.models.backbone_checkpoint import load_backbone, save_backbone
from geosr.models.backbone_experts import ExpertBackbone
from geosr.training.backbone_fit import BackboneTrainConfig, deepened, fit_backbone, image_files, read_images
from geosr.training.sensor_degradations import NAMED

STARTS = ("init.safetensors", "grown.safetensors")  # what expert_init and grown_init write into --out


def expert_init(path: Path, expert: str, out: Path) -> Path:
    """One expert of an expert backbone at ``path``, written as a single network (with the file's inference
    settings) to ``out/init.safetensors``: the start of a run that trains that expert alone."""
    net, spec = load_backbone(path)
    if not isinstance(net, ExpertBackbone) or expert not in net.names:
        names = list(net.names) if isinstance(net, ExpertBackbone) else []
        raise InputError(f"{path}: no expert {expert!r} (experts: {', '.join(names) or 'none, a single network'})")
    return _start(net.experts[net.names.index(expert)], spec, out / "init.safetensors",
                  expert_of=f"{path.name}:{expert}")


def grown_init(path: Path, blocks: int, out: Path) -> Path:
    """The network at ``path`` deepened to ``blocks`` blocks (:func:`deepened`: the same outputs), written with the
    file's inference settings to ``out/grown.safetensors``: the start of a run that trains a larger variant."""
    net, spec = load_backbone(path)
    return _start(deepened(net, blocks), spec, out / "grown.safetensors", grown_from=f"{path.name}:{net.cfg.blocks}")


def _start(net: torch.nn.Module, spec: dict, path: Path, **record: str) -> Path:
    """``net`` written to ``path`` with the name, inference settings and training record of the checkpoint whose
    ``spec`` it comes from (``record`` added to that record): the start of a run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = {k: spec[k] for k in ("inference", "tiling", "halo") if k in spec}
    return save_backbone(net, path, name=str(spec.get("name", "backbone")), **kept,
                         training={**spec.get("training", {}), **record})


def shared_training_images() -> list[torch.Tensor]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from shared_data import SHARED_DATA, shared_data_pairs

    if not SHARED_DATA.is_dir():
        return []
    out = []
    for p in shared_data_pairs(split="train"):
        for t in (p.target, p.ref):
            if t is not None and t.shape[0] >= 3:
                out.append((t[:3].clamp(0, 1) * 255).round().to(torch.uint8))
    return out


def _shares(text: str, flag: str, names: tuple[str, ...]) -> dict[str, float]:
    """``a:0.6,b:0.4`` (a name alone: share 1) as {name: share}, each name one of ``names`` and each share a finite
    number of at least 0, not all 0; InputError naming ``flag`` otherwise (a traceback, exit 1; found in review)."""
    out = {}
    for item in (t.strip() for t in text.split(",") if t.strip()):
        name, _, share = item.partition(":")
        if name.strip() not in names:
            raise InputError(f"{flag} {text!r}: {name.strip()!r} is none of {', '.join(names)}")
        try:
            value = float(share) if share else 1.0
        except ValueError:
            value = float("nan")
        if not math.isfinite(value) or value < 0:
            raise InputError(f"{flag} {text!r}: the share of {name.strip()} must be a number of at least 0")
        out[name.strip()] = value
    if not any(out.values()):
        raise InputError(f"{flag} {text!r}: give at least one share above 0")
    return out


def parse_kinds(text: str | None) -> tuple[str, ...] | dict[str, float] | None:
    """``a,b`` -> ("a", "b"); ``a:0.6,b:0.4`` -> {"a": 0.6, "b": 0.4}; None -> None."""
    if not text:
        return None
    shares = _shares(text, "--kinds", tuple(NAMED))
    return tuple(shares) if ":" not in text else shares


def parse_scale_weights(text: str) -> dict[int, float]:
    """``4:0.55,2:0.15`` -> {4: 0.55, 2: 0.15} (scales among the backbone's tails)."""
    return {int(k): v for k, v in _shares(text, "--scale-weights", ("2", "4", "8", "16")).items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--init", type=Path)
    ap.add_argument("--images", type=Path, action="append", default=[])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=0, help="steps of linear learning-rate warm-up")
    ap.add_argument("--minutes", type=float)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (bf16 autocast on CUDA)")
    ap.add_argument("--workers", type=int, default=0, help="processes making the batches (on a GPU: the cores)")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--scale-weights", help="share of the steps per scale, e.g. 4:0.55,2:0.15,8:0.2,16:0.1")
    ap.add_argument("--kinds", help="only these families of LR formation, e.g. bicubic-noaa or bicubic,box, or "
                    "with shares, e.g. bicubic-noaa:0.6,gaussian:0.2,bicubic:0.1,box:0.1 (default: the blind mix)")
    ap.add_argument("--sharpness-code", action="store_true",
                    help="add the scene sharpness code to an --init network that has none")
    ap.add_argument("--no-shared-data", action="store_true",
                    help="leave out ../shared/data's training split (e.g. given as --images already)")
    ap.add_argument("--expert", help="train this expert of an --init expert backbone alone")
    ap.add_argument("--grow-blocks", type=int,
                    help="start from a deeper network: the --init network's blocks spread among new identity blocks")
    ap.add_argument("--val-images", type=Path, help="validation images (default: every 100th of --images)")
    ap.add_argument("--validate-every", type=int, default=500)
    ap.add_argument("--save-every", type=int, default=100)
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--schedule-by-time", action="store_true",
                    help="with --minutes: the learning rate's cosine ends when the minutes do")
    args = ap.parse_args()
    if args.warmup < 0:
        ap.error("--warmup must be at least 0")
    for flag in ("steps", "batch", "validate_every", "save_every"):
        if getattr(args, flag) < 1:
            ap.error(f"--{flag.replace('_', '-')} must be at least 1")
    if args.grow_blocks is not None and not args.init:
        ap.error("--grow-blocks deepens the --init network: give --init")
    if args.expert and not (args.init or args.resume):
        ap.error("--expert names an expert of the --init expert backbone: give --init")
    if args.out.exists() and not args.out.is_dir():
        ap.error(f"--out {args.out}: is a file; a run is written into a folder")
    if not args.images and args.no_shared_data and not args.resume:
        ap.error("no training images: give --images (or leave out --no-shared-data)")
    # a new run in a new or empty folder, as geosr train's: a second run replaced a finished one's weights, and an
    # --out of the images' own folder or a user's files was written into (found in review)
    # (the start a failed --expert or --grow-blocks run wrote before its data was refused is this script's own,
    # written again: a folder holding it alone is as empty; found in review)
    if not args.resume and args.out.is_dir() and any(p.name not in STARTS for p in args.out.iterdir()):
        ap.error(f"--out {args.out}: holds files already; a new run needs a new or empty folder (--resume goes on "
                 "with the run there)")
    if args.resume and not (args.out / "state.safetensors").is_file():
        ap.error(f"--out {args.out}: holds no run to resume (no state.safetensors)")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        parse_kinds(args.kinds)  # (checked before the images are read)
        if args.scale_weights:
            parse_scale_weights(args.scale_weights)
        run(args)
    except GeoSRError as exc:  # bad input: one sentence and exit 2, as the CLI's
        print(f"train_backbone: {exc}", file=sys.stderr)
        sys.exit(2)


def run(args: argparse.Namespace) -> None:
    files = image_files(args.images) if args.images else []
    val_files = image_files([args.val_images]) if args.val_images else files[::100]
    held = set(val_files)
    train = read_images([f for f in files if f not in held])
    train += [] if args.no_shared_data else shared_training_images()
    val = read_images(val_files)
    print(f"{len(train)} training images, {len(val)} validation images", flush=True)
    if not train:
        raise InputError("no training images: give more --images (every 100th of them validates unless --val-images "
                         "is given)")
    cfg = BackboneTrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, warmup=args.warmup,
                              sharpness_code=args.sharpness_code,
                              kinds=parse_kinds(args.kinds), device=args.device, workers=args.workers,
                              validate_every=args.validate_every, save_every=args.save_every,
                              precision=args.precision, schedule_by_time=args.schedule_by_time)
    if args.expert and not args.resume:
        args.init = expert_init(args.init, args.expert, args.out)
    if args.grow_blocks is not None and not args.resume:
        args.init = grown_init(args.init, args.grow_blocks, args.out)
    if args.scale_weights:
        cfg.scale_weights = parse_scale_weights(args.scale_weights)
    result = fit_backbone(args.out, train, val, init=None if args.resume else args.init, cfg=cfg,
                          resume=args.resume, minutes=args.minutes, log=lambda s: print(s, flush=True))
    print(result)


if __name__ == "__main__":
    main()
