"""``geosr train --arch lite``: fine-tune the LR-space backbone (:mod:`geosr.models.backbone`) on one's own images.

The run starts from the bundled ``lite`` (or ``--init``, any backbone checkpoint, e.g. an earlier run's) and
trains it as :mod:`geosr.training.backbone_fit` does (L1 on HR crops whose LR is drawn from the blind sensor mix,
Adam with a cosine schedule, an EMA, routed experts), with the run folder, log, resume, time limit and result of
``geosr train``. Its images are every HR image the training sources hold, kept in memory as 8 bits: single images
(a folder of them, nested folders too), and the targets and references of change pairs (a data manifest's
training split, ``A/ B/`` folders, Ref-Diff folders).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from geosr.errors import InputError, OptionError
from geosr.training.config import TrainConfig
from geosr.training.overlap import path_hashes

# a backbone run's network is in its model file only: without it (or its best weights) there is nothing to resume
LOST = "the run's network is kept in {files} alone: start the run again with `overwrite`"
DATA_SIDE = 96  # an image smaller than this on either side holds no training crop at any scale (x2: 48 LR px)
MAX_WORKERS = 16  # batch-making processes at most (scripts/train_backbone.py --workers sets any number)


def train_backbone(
    cfg: TrainConfig,
    *,
    init: str | None,
    resume: bool,
    overwrite: bool,
    max_minutes: float | None,
    progress: Callable[[int, int, float], None] | None = None,
):
    """Run (or continue) a backbone fine-tuning as ``cfg`` says; returns :class:`geosr.training.loop.TrainResult`.
    Everything the run needs is checked before its folder is touched."""
    from geosr.models.backbone_checkpoint import is_backbone_spec
    from geosr.models.checkpoint import read_spec
    from geosr.models.registry import resolve_checkpoint
    from geosr.training.backbone_fit import BackboneTrainConfig, fit_backbone, training_device
    from geosr.training.loop import BF16_ON_CPU, TrainResult
    from geosr.training.sensor_degradations import NAMED
    from geosr.training.state import (
        BEST,
        LOG,
        MODEL,
        STATE,
        initialised_from,
        own_checkpoint,
        refuse_changed_settings,
        run_folder,
        state_record,
    )

    t0 = time.perf_counter()
    training_device(cfg.device)  # checked before the run folder is touched
    out = Path(cfg.out)
    folder = run_folder(out)
    start_path = own = None
    if resume:
        if init:
            raise OptionError("`resume` continues the run's own weights and `init` starts a new run from others: "
                              "give one of them", param="init")
        # its model gives the network (a damaged one: its best weights, of the same network)
        own = own_checkpoint(out, then=LOST) if (out / STATE).exists() else None
        if own is None:
            raise InputError(f"{out}: no backbone run to resume (no {STATE if (out / MODEL).exists() else MODEL})")
        if not is_backbone_spec(read_spec(own)):
            raise InputError(f"{out}: holds a diffusion model's run, not a backbone's; resume it with its own `arch`")
        refuse_changed_settings(out, state_record(out), cfg.to_dict())
    else:
        folder.check(overwrite=overwrite)
        start_path = resolve_checkpoint(init or str(cfg.arch))
        if not is_backbone_spec(read_spec(start_path)):
            raise OptionError(f"{start_path}: not an LR-space backbone checkpoint, which arch lite fine-tunes "
                              "(`geosr models` lists the bundled ones)", param="init")
    # (torch's threads: set by geosr.training.loop.train for the run's length)
    train, described = backbone_images(cfg.data, cfg)
    val, v_described = backbone_images(cfg.val_data, cfg, role="validation") if cfg.val_data else ([], [])
    from geosr.training.validation import image_fingerprint

    trained = {image_fingerprint(t) for t in train}
    # every image trained on, hashed: a resume on data changed since the run started is refused (as the diffusion
    # trainer's); a run saved before this record is not checked
    hashes = sorted(f"{shape}{h}" for shape, h in map(image_fingerprint, train))
    data = {"images": len(train), "sha1": hashlib.sha1("".join(hashes).encode()).hexdigest()}
    if val:  # and those validated on: the best weights are chosen by comparing their scores (found in review)
        seen = sorted(f"{shape}{h}" for shape, h in map(image_fingerprint, val))
        data["validation"] = {"images": len(val), "sha1": hashlib.sha1("".join(seen).encode()).hexdigest()}
    then = (state_record(out) or {}).get("data_fingerprint") if resume else None
    if isinstance(then, dict) and isinstance(then.get("validation"), dict) and \
            then["validation"] != data.get("validation"):
        raise OptionError(f"resume: the run in {out} was started with other validation data (`val_data`): its best "
                          "weights were chosen by their scores there; restore them, or start another run",
                          param="resume")
    if isinstance(then, dict) and {k: v for k, v in then.items() if k != "validation"} != \
            {k: v for k, v in data.items() if k != "validation"}:
        how = f"its sources held {then.get('images')} images then and {len(train)} now" if \
            then.get("images") != len(train) else f"its {len(train)} images changed since"
        raise OptionError(f"resume: the run in {out} was started on other data: {how}; restore them, or start another "
                          "run", param="resume")
    overlap = sum(image_fingerprint(t) in trained for t in val)
    if overlap:  # the best weights would be chosen partly on images trained on (as the diffusion trainer refuses)
        raise OptionError(f"val_data: {overlap} of its {len(val)} images {'is' if overlap == 1 else 'are'} also in "
                          "`data`, which the run trains on: validate on images the run does not train on",
                          param="val_data")
    # what the weights started from, as the diffusion trainer records it; a resumed run keeps its first run's
    described += initialised_from(own) if own is not None else [f"initialised from {init or cfg.arch}"]
    scales, left_out = fitting_scales(cfg.scales, train)
    warnings = []
    if left_out:
        described.append(f"left out x{', x'.join(map(str, left_out))}: no image holds its crop")
        patch = BackboneTrainConfig().lr_patch
        crops = " or ".join(f"{patch[s] * s} x {patch[s] * s} pixels at x{s}" for s in left_out)
        warnings.append(f"x{', x'.join(map(str, left_out))} left out (trained at x{', x'.join(map(str, scales))} "
                        f"only): no training image holds a crop of {crops}")
    if not resume:
        folder.prepare(overwrite=overwrite)
    device = training_device(cfg.device)
    if cfg.precision == "bf16" and device.type != "cuda":
        warnings.append(BF16_ON_CPU)
    shares = BackboneTrainConfig().scale_weights  # the backbone trainer's own shares, for the scales asked
    bcfg = BackboneTrainConfig(
        steps=cfg.steps, batch=cfg.batch_size, lr=cfg.lr, ema=cfg.ema, clip_grad=cfg.grad_clip, seed=cfg.seed,
        scale_weights={s: shares[s] for s in scales}, save_every=cfg.checkpoint_every,
        validate_every=cfg.val_every if val else 10**12, device=str(device), precision=cfg.precision,
        workers=batch_workers(device),
    )
    state = {"last": float("nan"), "avg": float("nan")}
    # what each save records beside fit_backbone's own: the run's settings, the loss's running mean (for --resume)
    extra: dict[str, Any] = {"run": cfg.to_dict(), "loss_avg": None, "data_fingerprint": data}
    if resume:
        extra["loss_avg"] = (state_record(out) or {}).get("loss_avg")
        state["avg"] = float(extra["loss_avg"]) if extra["loss_avg"] is not None else float("nan")
    with (out / LOG).open("a", encoding="utf-8") as log_file:
        def write(record: dict[str, Any]) -> None:
            log_file.write(json.dumps(record, default=str, allow_nan=False) + "\n")
            log_file.flush()

        previous = _saved_step(out) if resume else 0
        write({"event": "start", "step": previous, "arch": cfg.arch, "init": str(start_path) if start_path else None,
               "device": str(device), "workers": bcfg.workers,
               "data": described + [f"validation {d}" for d in v_described], "config": cfg.to_dict()})

        def log(line: str) -> None:  # fit_backbone's lines (saves, validations), kept as records
            write({"message": line, "seconds": round(time.perf_counter() - t0, 1)})

        def step_done(step: int, steps: int, loss: float, scale: int) -> None:
            state["last"] = loss
            state["avg"] = loss if math.isnan(state["avg"]) else 0.98 * state["avg"] + 0.02 * loss
            extra["loss_avg"] = state["avg"]
            if step % cfg.log_every == 0 or step == steps:
                write({"step": step, "loss": round(loss, 5), "loss_avg": round(state["avg"], 5), "scale": scale,
                       "seconds": round(time.perf_counter() - t0, 1)})
            if progress is not None:
                progress(step, steps, state["avg"])

        result = fit_backbone(out, train, val, init=start_path, cfg=bcfg, resume=resume, minutes=max_minutes,
                              log=log, progress=step_done, name=None if cfg.name == TrainConfig.name else cfg.name,
                              record={"data": described + [f"validation {d}" for d in v_described],
                                      # (its sources' paths, hashed: the card names no user's folder, and evaluate
                                      # still tells an evaluation on them; geosr.training.overlap)
                                      "data_path_hashes": path_hashes(cfg.to_dict()["data"]),
                                      **({"description": cfg.description} if cfg.description else {})},
                              state_extra=extra)
        best = result["best"]
        has_best = best.get("step") is not None and (out / BEST).exists()
        write({"event": "end", "step": result["step"], "seconds": round(time.perf_counter() - t0, 1),
               "best": best if has_best else None})
    return TrainResult(
        checkpoint=str(out / MODEL), steps=result["step"], resumed_from=previous, seconds=time.perf_counter() - t0,
        final_loss=state["last"], ema_loss=state["avg"], log=str(out / LOG),
        best_checkpoint=str(out / BEST) if has_best else None, best_step=best.get("step") if has_best else None,
        best_val_gain_db=round(float(best["min"]), 4) if has_best else None,
        best_val_basis=f"x{best['scale']}, the worst of the LR formations {', '.join(NAMED)}" if has_best else None,
        planned_steps=cfg.steps, warnings=warnings,
    )


def batch_workers(device: torch.device) -> int:
    """Processes making the batches: on a GPU every core this process may use but one, at most
    :data:`MAX_WORKERS` (each holds a few batches in pinned memory); on the CPU none (its cores run the network)."""
    if device.type != "cuda":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(MAX_WORKERS, cores - 1))


def fitting_scales(scales: Sequence[int], images: Sequence[torch.Tensor]) -> tuple[list[int], list[int]]:
    """(the scales some training image holds a crop of, those none does); an error when none fits."""
    from geosr.training.backbone_fit import BackboneTrainConfig

    patch = BackboneTrainConfig().lr_patch
    largest = max(min(t.shape[-2:]) for t in images)
    fits = [s for s in scales if patch[s] * s <= largest]
    if not fits:
        need = min(patch[s] * s for s in scales)
        raise InputError(f"no training image holds a crop at x{', x'.join(map(str, scales))}: the smallest needs "
                         f"{need} x {need} pixels and the largest image's shorter side is {largest}")
    return fits, [s for s in scales if s not in fits]


def _saved_step(out: Path) -> int:
    from geosr.training.state import state_record

    return int((state_record(out) or {}).get("step", 0))


def backbone_images(sources: Sequence[Mapping[str, Any]], cfg: TrainConfig, role: str = "training",
                    ) -> tuple[list[torch.Tensor], list[str]]:
    """(3, H, W) uint8 HR images of the config's ``sources`` and what each source gave: single images read as
    they are (8-bit, or stretched to it), change pairs' targets and references (each image once), and the
    images under a folder that holds no data layout (e.g. RSSCN7's class folders). Images too small for any
    crop are left out."""
    from geosr.training.backbone_fit import read_images
    from geosr.training.manifest import find_manifest
    from geosr.training.pairs import IMAGE_EXTS, images_under
    from geosr.training.sources import load_sources, shown_data, source_images

    images: list[torch.Tensor] = []
    described: list[str] = []
    for src in sources:
        kind = src["kind"]
        if kind == "synthetic":  # single images: read as 8 bits straight away (thousands fit in memory)
            listed = source_images(src)  # (a folder's images now, as the diffusion trainer lists them)
            got = read_images([Path(p) for p in listed])
            # (as the diffusion trainer names them: a fine-tuned lite's card named no data of the user's; review)
            where = f"{len(listed)} images of {shown_data(src.get('path') or src.get('hr') or 'images')}"
        elif kind == "shared" and src.get("path") and not src.get("manifest") and find_manifest(src["path"]) is None:
            # (labels are no imagery, nor a macOS ._x.tif; found in review)
            files = images_under(Path(src["path"]), labels=False)
            if not files:
                raise InputError(f"{src['path']}: holds no images ({', '.join(IMAGE_EXTS)}) and no data layout "
                                 "geosr knows")
            got = read_images(files)
            where = f"{len(files)} images under {shown_data(src['path'])}"
        else:
            groups, _, _ = load_sources(cfg, (src,), any_bands=True)  # a grey pair: its grey in all three bands
            # a collection's synthetic-change group holds its pairs' own images again (the same tensors)
            unique = {id(t): t for pairs, _ in groups for p in pairs for t in (p.target, p.ref) if t is not None}
            got = [_to8(t) for t in unique.values()]
            where = f"{sum(len(pairs) for pairs, _ in groups if not pairs[0].synthetic)} pairs"
            where += f" of {shown_data(src.get('path') or src.get('manifest') or src.get('hr'))}"
        kept = [t[:3] if t.shape[0] >= 3 else t[:1].expand(3, -1, -1).contiguous() for t in got
                if min(t.shape[-2:]) >= DATA_SIDE]
        images.extend(kept)
        described.append(f"{kind}: {len(kept)} HR images from {where}"
                         + (f" ({len(got) - len(kept)} smaller than {DATA_SIDE} px left out)" if len(kept) < len(got)
                            else ""))
    if not images:
        raise InputError(f"no {role} image of at least {DATA_SIDE} x {DATA_SIDE} pixels in the data given")
    return images, described


def _to8(t: torch.Tensor) -> torch.Tensor:
    """A pair's image (unit space) as 8 bits."""
    return (t.clamp(0, 1) * 255).round().to(torch.uint8)


__all__ = ["train_backbone", "backbone_images", "fitting_scales", "batch_workers"]
