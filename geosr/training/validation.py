"""Watching a run: a validation image grid every ``val_every`` steps and, with ``val_data`` (data the run does not
train on), the EMA model's score there (PSNR-Y of its one-step prediction against bicubic's); the best-scoring
model is kept as ``best.safetensors``, since on small data sets longer training can overfit."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Callable

import torch

from geosr.errors import OptionError
from geosr.models.edm import EDMDenoiser
from geosr.models.interface import ConditionBatch
from geosr.training.config import TrainConfig
from geosr.training.objective import training_condition
from geosr.training.samples import sample_stream
from geosr.training.sources import Groups, data_fingerprint, load_sources

Batches = list[tuple[ConditionBatch, torch.Tensor]]


@torch.no_grad()
def predict(model: EDMDenoiser, batch: ConditionBatch, sigma_max: float = 80.0, seed: int = 0) -> torch.Tensor:
    """One-step (posterior-mean) prediction D(sigma_max * z; sigma_max) for a training-shaped batch."""
    was = model.training
    model.eval()
    cond = training_condition(model, batch)
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(batch.ref.shape, generator=gen).to(batch.ref.device)
    s = torch.full((batch.batch_size,), sigma_max, device=batch.ref.device)
    out = model(z * sigma_max, s, cond)
    model.train(was)
    return out


def _unit(x: torch.Tensor) -> torch.Tensor:
    return ((x.detach().float().cpu() + 1) / 2).clamp(0, 1)


@torch.no_grad()
def score(model: EDMDenoiser, batches: Batches, *, device: torch.device | str = "cpu", upsampler_only: bool = False,
          sigma_max: float = 80.0) -> dict[str, float]:
    """Mean PSNR-Y (dB, model space mapped to [0, 1]) over the samples of ``batches`` of the model's one-step
    prediction (or its learned upsampler's output) and of bicubic, and the gain of the one over the other."""
    from geosr.models.resample import upsample
    from geosr.training.metrics import psnr_y

    ours, bic = [], []
    for batch, hr in batches:
        b = batch.to(device)
        sr = model.upsample_lr(b.lr, b.scale) if upsampler_only else predict(model, b, sigma_max)
        base = upsample(b.lr, b.scale, "bicubic")
        for i in range(hr.shape[0]):
            target = _unit(hr[i])
            ours.append(psnr_y(_unit(sr[i]), target))
            bic.append(psnr_y(_unit(base[i]), target))
    p, q = sum(ours) / len(ours), sum(bic) / len(bic)
    return {"psnr_y": p, "bicubic_psnr_y": q, "gain_db": p - q}


def image_grid(batch: ConditionBatch, sr: torch.Tensor, hr: torch.Tensor, path: Path, max_rows: int = 4) -> None:
    """PNG rows of LR (nearest) | Ref | mask | SR | HR, model space -> 8 bit."""
    from PIL import Image

    s = batch.scale
    rows = []
    for i in range(min(max_rows, batch.batch_size)):
        lr = batch.lr[i].repeat_interleave(s, -2).repeat_interleave(s, -1)
        mask = batch.changed[i].expand_as(hr[i]) * 2 - 1
        tiles = [lr, batch.ref[i], mask, sr[i], hr[i]]
        rows.append(torch.cat([t[:3].cpu().float() for t in tiles], dim=-1))
    img = torch.cat(rows, dim=-2)
    arr = ((img.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    if arr.shape[2] == 1:
        arr = arr[:, :, 0]
    part = Path(path).with_name(Path(path).name + ".part")  # a kill mid-write leaves no truncated PNG
    Image.fromarray(arr).save(part, format="PNG")
    part.replace(path)


def validation_set(cfg: TrainConfig, training: Groups | None = None, warnings: list[str] | None = None,
                   fingerprint: dict | None = None) -> tuple[Batches, list[str]]:
    """The run's fixed validation batches (the first ``val_batches`` of a stream over ``val_data``, made as the
    training samples are), and the descriptions of their sources. An image that is also one of the ``training``
    groups' is refused: a validation set overlapping the training data chose the "best" weights partly on images
    trained on (found in review: `val_data` equal to `data` gave the training batches themselves). ``warnings``
    gets what of the validation data is left out, ``fingerprint`` its :func:`data_fingerprint`."""
    left: list[str] = []
    groups, foreign, described = load_sources(cfg, cfg.val_data, warnings=left)
    if training:
        trained = {image_fingerprint(p.target): p.name for pairs, _ in training for p in pairs}
        both = next((p for pairs, _ in groups for p in pairs if image_fingerprint(p.target) in trained), None)
        if both is not None:
            raise OptionError(f"val_data holds {both.name}, which the run also trains on (as "
                              f"{trained[image_fingerprint(both.target)]} of `data`): validate on images the run does "
                              "not train on", param="val_data")
    if fingerprint is not None:  # what the data holds (geosr.training.sources.data_fingerprint), for --resume
        fingerprint.update(data_fingerprint(groups))
    stream = sample_stream(cfg, groups, foreign, what="validation")
    if warnings is not None:
        warnings.extend(f"validation data: {w}" for w in left + stream.left_out(cfg.crop))
    return [stream.batch(i) for i in range(cfg.val_batches)], described


def image_fingerprint(image: torch.Tensor) -> tuple[tuple[int, ...], str]:
    """An image's shape and the hash of its values: the same image whichever source read it."""
    return tuple(image.shape), hashlib.sha1(image.contiguous().numpy().tobytes()).hexdigest()


class Validation:
    """What a run does every ``val_every`` steps: the grid of one batch (``grid``: the first validation batch, else a
    training batch) and, with ``batches``, the EMA model's score; the best score and its step are remembered."""

    def __init__(self, cfg: TrainConfig, out: Path, batches: Batches, grid: tuple[ConditionBatch, torch.Tensor],
                 best: tuple[float, int | None] = (-math.inf, None)) -> None:
        self.cfg, self.out, self.batches, self.grid = cfg, out, batches, grid
        self.best_gain, self.best_step = best
        self.upsampler_only = cfg.objective == "upsampler"

    def due(self, step: int) -> bool:
        """Every ``val_every`` steps and at the run's last (a run shorter than ``val_every`` was never validated, and
        a longer one's last steps were not; found in review)."""
        return bool(self.cfg.val_every) and (step % self.cfg.val_every == 0 or step == self.cfg.steps)

    def run(
        self, step: int, ema: EDMDenoiser, device: torch.device, on_best: Callable[[dict[str, float]], None]
    ) -> dict | None:
        """Write the grid of ``step``; with validation batches score ``ema`` (calling ``on_best`` with the scores
        when it beats the best so far) and return the log event, else None."""
        batch, hr = self.grid
        vb = batch.to(device)
        with torch.no_grad():
            sr = ema.upsample_lr(vb.lr, vb.scale) if self.upsampler_only else predict(ema, vb, self.cfg.sigma_max)
        image_grid(batch, sr.cpu(), hr, self.out / f"val_{step:07d}.png")
        if not self.batches:
            return None
        v = score(ema, self.batches, device=device, upsampler_only=self.upsampler_only, sigma_max=self.cfg.sigma_max)
        better = v["gain_db"] > self.best_gain
        if better:
            self.best_gain, self.best_step = v["gain_db"], step
            on_best(v)
        return {"event": "val", "step": step, **{k: round(x, 4) for k, x in v.items()}, "best": better}

    def record(self) -> dict | None:
        """The best so far, as the training state keeps it."""
        return {"gain_db": self.best_gain, "step": self.best_step} if self.best_step is not None else None


__all__ = ["predict", "score", "image_grid", "validation_set", "image_fingerprint", "Validation"]
