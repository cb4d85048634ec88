"""Training the learned change detector (:mod:`geosr.models.change_net`) on the LR grid.

Examples, each an (LR, reference on the LR grid, soft label, known) set of LR-grid tensors:

- **real pairs** (labelled bi-temporal scenes): the new date degraded by one of the named degradations at x4, x8
  or x16, the old date averaged onto the LR grid, the label the share of changed HR pixels in each LR pixel;
- **synthetic change** on single images: the reference is the image under a random change of light and season
  (per-band gain, bias and gamma, a little blur and noise), the LR is the image with patches of other images
  pasted in (or the reference gets them), the label the pasted area. Any real difference counts as change.

Loss: binary cross-entropy on known pixels with a positive weight (recall first). Adam, a fixed number of steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from geosr.models.change_net import ChangeNet
from geosr.training.sensor_degradations import NAMED, degrade_named


@dataclass
class Example:
    lr: torch.Tensor  # (C, h, w) [0, 1]
    ref: torch.Tensor  # (C, h, w) [0, 1] on the LR grid
    label: torch.Tensor  # (h, w) share of changed HR pixels
    known: torch.Tensor  # (h, w) bool


def real_examples(targets: Sequence[torch.Tensor], refs: Sequence[torch.Tensor], changed: Sequence[torch.Tensor],
                  known: Sequence[torch.Tensor], scales: Sequence[int] = (4, 8, 16)) -> list[Example]:
    """LR-grid examples of labelled pairs (HR tensors in [0, 1], changed / known (H, W) bool), every scale and
    named degradation."""
    out = []
    for t, r, c, k in zip(targets, refs, changed, known):
        for s in scales:
            h, w = t.shape[-2] // s, t.shape[-1] // s
            if min(h, w) < 16:
                continue
            crop = (..., slice(0, h * s), slice(0, w * s))
            ref = F.avg_pool2d(r[crop][None].float(), s)[0]
            lab = F.avg_pool2d(c[crop][None, None].float(), s)[0, 0]
            kn = F.avg_pool2d(k[crop][None, None].float(), s)[0, 0] > 0.5
            for kind in NAMED:
                out.append(Example(degrade_named(t[crop].float(), s, kind), ref, lab, kn))
    return out


def synthetic_example(images: Sequence[torch.Tensor], rng: np.random.Generator, scale: int, side: int = 64) -> Example:
    """One synthetic example of ``side`` LR pixels from uint8 (3, H, W) images (module doc)."""
    hr_side = side * scale

    def crop(img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        s = min(hr_side, h, w)
        y, x = int(rng.integers(h - s + 1)), int(rng.integers(w - s + 1))
        c = img[:, y : y + s, x : x + s].float() / 255
        if s < hr_side:
            c = F.interpolate(c[None], size=(hr_side, hr_side), mode="bilinear", align_corners=False)[0]
        return c

    base = crop(images[int(rng.integers(len(images)))])
    new = base.clone()
    mask = torch.zeros(hr_side, hr_side)
    for _ in range(int(rng.integers(0, 5))):
        other = crop(images[int(rng.integers(len(images)))])
        ph, pw = (int(rng.integers(hr_side // 12, hr_side // 3)) for _ in range(2))
        y, x = int(rng.integers(hr_side - ph)), int(rng.integers(hr_side - pw))
        new[:, y : y + ph, x : x + pw] = other[:, y : y + ph, x : x + pw]
        mask[y : y + ph, x : x + pw] = 1
    old = base
    if rng.random() < 0.5:  # the change may be in either date
        old, new = new, old
    gain = torch.tensor(rng.uniform(0.7, 1.3, 3), dtype=torch.float32)[:, None, None]
    bias = torch.tensor(rng.uniform(-0.1, 0.1, 3), dtype=torch.float32)[:, None, None]
    gamma = float(rng.uniform(0.7, 1.4))
    old = (old.clamp(0, 1) ** gamma * gain + bias).clamp(0, 1)
    if rng.random() < 0.5:
        old = F.avg_pool2d(F.pad(old[None], (1, 1, 1, 1), mode="replicate"), 3, 1)[0]
    old = (old + float(rng.uniform(0, 0.02)) * torch.randn_like(old)).clamp(0, 1)
    kind = NAMED[int(rng.integers(len(NAMED)))]
    lr = degrade_named(new, scale, kind)
    return Example(lr, F.avg_pool2d(old[None], scale)[0], F.avg_pool2d(mask[None, None], scale)[0, 0],
                   torch.ones(side, side, dtype=torch.bool))


def _patch(ex: Example, side: int, rng: np.random.Generator) -> Example:
    h, w = ex.label.shape
    s = min(side, h, w)
    y, x = int(rng.integers(h - s + 1)), int(rng.integers(w - s + 1))
    sl = (slice(y, y + s), slice(x, x + s))
    return Example(ex.lr[(..., *sl)], ex.ref[(..., *sl)], ex.label[sl], ex.known[sl])


def fit_change_net(net: ChangeNet, real: Sequence[Example], images: Sequence[torch.Tensor], *, steps: int = 3000,
                   batch: int = 16, side: int = 48, lr: float = 2e-3, pos_weight: float = 3.0, seed: int = 0,
                   log: Callable[[str], None] = print) -> ChangeNet:
    """Train ``net`` on half real, half synthetic batches of ``side`` x ``side`` LR patches."""
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    net.train()
    losses: list[float] = []
    for step in range(1, steps + 1):
        exs = []
        for i in range(batch):
            if real and (i % 2 == 0 or not images):
                exs.append(_patch(real[int(rng.integers(len(real)))], side, rng))
            else:
                exs.append(synthetic_example(images, rng, int(rng.choice([4, 8])), side))
        s = min(e.label.shape[-1] for e in exs), min(e.label.shape[-2] for e in exs)
        exs = [Example(e.lr[..., : s[1], : s[0]], e.ref[..., : s[1], : s[0]], e.label[: s[1], : s[0]],
                       e.known[: s[1], : s[0]]) for e in exs]
        lrs, refs = torch.stack([e.lr for e in exs]), torch.stack([e.ref for e in exs])
        label, known = torch.stack([e.label for e in exs])[:, None], torch.stack([e.known for e in exs])[:, None]
        valid = torch.ones_like(known)
        logits = net(lrs, refs, valid)
        loss = F.binary_cross_entropy_with_logits(logits, label.clamp(0, 1), reduction="none",
                                                  pos_weight=torch.tensor(pos_weight))
        loss = (loss * known).sum() / known.sum().clamp(min=1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 200 == 0 or step == steps:
            log(f"step {step} loss {np.mean(losses[-200:]):.4f}")
    return net.eval()


def threshold_for_recall(net: ChangeNet, examples: Sequence[Example], recall: float = 0.8) -> float:
    """The probability threshold at which ``net`` reaches ``recall`` of the changed LR pixels (label > 0.5) of
    ``examples`` (pooled)."""
    probs = []
    with torch.no_grad():
        for e in examples:
            p = torch.sigmoid(net(e.lr[None], e.ref[None], torch.ones(1, 1, *e.label.shape)))[0, 0]
            probs.append(p[e.known & (e.label > 0.5)])
    pos = torch.cat(probs) if probs else torch.zeros(0)
    if pos.numel() == 0:
        return 0.5
    return float(torch.quantile(pos, 1 - recall).clamp(0.01, 0.99))
