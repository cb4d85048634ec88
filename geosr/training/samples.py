"""Training samples: random co-located windows of pairs in model space, stacked into batches.

:class:`TrainingSampleMaker` cuts a random co-located crop (the same crop, flip and 90-degree rotation for every
input), degrades the target into its LR (unless an LR is given), maps everything into the model space the
pipeline uses (the per-scene robust stretch of the LR, :class:`geosr.conditioning.radiometry.Stretch`; the
reference harmonized to the LR at LR scale over unchanged pixels with
:func:`geosr.conditioning.reference.fit_harmonization`), and :func:`collate` stacks samples into a
:class:`~geosr.models.interface.ConditionBatch` plus the HR target. :class:`PairMixture` is the seeded,
endless stream of such batches a run trains on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch

from geosr.conditioning.changes import load_change_classes
from geosr.conditioning.reference import fit_harmonization
from geosr.errors import InputError
from geosr.models.interface import ConditionBatch
from geosr.training.config import TrainConfig
from geosr.training.degradations import DegradationPreset, bicubic_degrade, box_downsample, degrade, preset_for
from geosr.training.pairs import MIN_CROP_DATA, Pair, to_model
from geosr.training.synthetic_change import SyntheticChangeConfig, synthetic_reference


@dataclass
class TrainingSample:
    """One training sample in model space (no batch axis)."""

    lr: torch.Tensor  # (C, h, w)
    ref: torch.Tensor  # (C, H, W)
    ref_valid: torch.Tensor  # (1, H, W)
    change: torch.Tensor  # (1, H, W) int64
    changed: torch.Tensor  # (1, H, W)
    hr: torch.Tensor  # (C, H, W) target
    scale: int
    map: torch.Tensor | None = None
    name: str = ""


def augment(tensors: list[torch.Tensor | None], k: int, flip: bool) -> list[torch.Tensor | None]:
    """The same 90-degree rotation (k quarter turns) and horizontal flip for every (..., H, W) tensor."""
    out = []
    for t in tensors:
        if t is None:
            out.append(None)
            continue
        if flip:
            t = t.flip(-1)
        out.append(torch.rot90(t, k, dims=(-2, -1)).contiguous())
    return out


def harmonize(ref: torch.Tensor, lr: torch.Tensor, changed: torch.Tensor, scale: int) -> torch.Tensor:
    """The reference fitted to the LR (per band mean / std at LR scale over unchanged pixels), as the
    pipeline does with :func:`geosr.conditioning.reference.fit_harmonization`."""
    ref_lr = box_downsample(ref, scale).numpy().astype(np.float64)
    unchanged = box_downsample(changed[None].float(), scale)[0].numpy() < 0.5
    lr_np = lr.numpy().astype(np.float64)
    h = fit_harmonization(lr_np, np.ones(lr_np.shape[1:], bool), ref_lr, unchanged)
    gain = torch.tensor(h.gain, dtype=torch.float32)[:, None, None]
    bias = torch.tensor(h.bias, dtype=torch.float32)[:, None, None]
    return ref.float() * gain + bias


@dataclass
class TrainingSampleMaker:
    """Random co-located crops -> model-space samples.

    ``crop``: HR crop side (a multiple of every scale). ``scales``: the scales to draw from.
    ``degradation``: "real" (Ref-Diff's random chain, :func:`degrade`), "bicubic" (the papers' test
    protocol) or "mixed" (each sample one or the other, evenly).
    ``p_no_ref``: probability of dropping the reference (ref_valid all 0) so the model also works without.
    ``changed_ids``: class indices a synthetic change is labelled with (one drawn per sample).
    """

    crop: int = 128
    scales: tuple[int, ...] = (8,)
    degradation: str = "real"
    p_no_ref: float = 0.1
    changed_ids: tuple[int, ...] = (1, 2)
    synthetic: SyntheticChangeConfig = field(default_factory=SyntheticChangeConfig)
    presets: dict[int, DegradationPreset] | None = None
    foreign: list[torch.Tensor] = field(default_factory=list)

    def make(self, pair: Pair, rng: np.random.Generator, scale: int | None = None) -> TrainingSample:
        s = int(scale or self.scales[int(rng.integers(len(self.scales)))])
        target, ref, change, map_, lr, has_ref = self._window(pair, rng, s)
        P = target.shape[-1]
        if pair.synthetic:
            ref, mask = synthetic_reference(target, rng, self.foreign, self.synthetic, scale=s)
            cid = int(self.changed_ids[int(rng.integers(len(self.changed_ids)))])
            change, changed = torch.where(mask, torch.tensor(cid), torch.tensor(0)), mask
        elif change is None and ref is not None:
            # a reference without a mask (a Ref-Diff case whose CD_mask/ file is missing, a stack without `mask`):
            # nothing known of change, so unknown, as upscale reads a mask's no data (taught "unchanged" everywhere,
            # a model learned to copy a reference that had changed; found in review)
            change = torch.full((P, P), pair.table.unknown_index, dtype=torch.int64)
            changed = torch.ones(P, P, dtype=torch.bool)
        elif change is None:  # no reference: nothing for the change to say
            change, changed = torch.zeros(P, P, dtype=torch.int64), torch.zeros(P, P, dtype=torch.bool)
        else:
            table_changed = torch.tensor([c.changed for c in pair.table.classes], dtype=torch.bool)
            changed = table_changed[change.clamp(0, len(table_changed) - 1)]
        if lr is None:
            lr = self._degrade(target, s, rng)
        stretch = pair.stretch(s)
        lr_m, hr_m = to_model(lr, stretch), to_model(target, stretch)
        if ref is not None and rng.random() >= self.p_no_ref:
            # where the reference has no data it is given as none, as upscale gives it (was its fill as real pixels)
            ref_valid = torch.ones(1, P, P) if has_ref is None else has_ref[None].float()
            ref_m = to_model(harmonize(ref, lr, changed | (ref_valid[0] == 0), s), stretch)
        else:
            ref_m, ref_valid = torch.zeros_like(hr_m), torch.zeros(1, P, P)
        return TrainingSample(
            lr=lr_m, ref=ref_m * ref_valid, ref_valid=ref_valid, change=change[None].long(),
            changed=changed[None].float(), hr=hr_m, scale=s, map=None if map_ is None else map_[None].long(),
            name=pair.name,
        )

    def _window(self, pair: Pair, rng: np.random.Generator, s: int) -> list[torch.Tensor | None]:
        """[target, ref, change, map, given LR, where the reference has data] of a random crop of whole LR pixels,
        rotated and flipped alike (None: not given, or everywhere)."""
        H, W = pair.shape
        P = min(self.crop, H // s * s, W // s * s)
        if P < s:
            raise InputError(f"{pair.name}: {H}x{W} is smaller than one LR pixel at x{s}")
        origins = pair.crop_origins(P, s)
        if origins is not None and len(origins[0]):  # a target with nodata: a crop where it has data
            flat, width = origins
            r0, c0 = (v * s for v in divmod(int(flat[int(rng.integers(len(flat)))]), width))
        else:
            r0 = int(rng.integers(0, H // s - P // s + 1)) * s
            c0 = int(rng.integers(0, W // s - P // s + 1)) * s
        rows, cols = slice(r0, r0 + P), slice(c0, c0 + P)
        given = pair.lr.get(s)
        crops = [
            pair.target[:, rows, cols],
            pair.ref[:, rows, cols] if pair.ref is not None else None,
            pair.change[rows, cols] if pair.change is not None else None,
            pair.map[rows, cols] if pair.map is not None else None,
            given[:, r0 // s : (r0 + P) // s, c0 // s : (c0 + P) // s] if given is not None else None,
            pair.ref_valid[rows, cols] if pair.ref_valid is not None and pair.ref is not None else None,
        ]
        k, flip = int(rng.integers(4)), bool(rng.random() < 0.5)
        return augment(crops, k, flip)

    def _degrade(self, target: torch.Tensor, s: int, rng: np.random.Generator) -> torch.Tensor:
        if self.degradation == "bicubic" or (self.degradation == "mixed" and rng.random() < 0.5):
            return bicubic_degrade(target, s)
        return degrade(target, s, rng, (self.presets or {}).get(s) or preset_for(s))[0]


def collate(
    samples: Sequence[TrainingSample], *, n_change_classes: int, n_map_classes: int = 0
) -> tuple[ConditionBatch, torch.Tensor]:
    """Stack samples of one scale into (ConditionBatch with halo 0, HR targets (B, C, H, W))."""
    scale = samples[0].scale
    if any(s.scale != scale for s in samples):
        raise ValueError("a batch holds samples of one scale")

    def st(name: str) -> torch.Tensor:
        return torch.stack([getattr(s, name) for s in samples])

    lr = st("lr")
    has_map = n_map_classes > 0 and all(s.map is not None for s in samples)
    batch = ConditionBatch(
        lr=lr, lr_valid=torch.ones(lr.shape[0], 1, *lr.shape[-2:]), ref=st("ref"), ref_valid=st("ref_valid"),
        change=st("change").clamp(0, n_change_classes - 1), changed=st("changed"), map=st("map") if has_map else None,
        offsets=torch.zeros(len(samples), 2, dtype=torch.int64), scale=scale, halo=0,
        n_change_classes=n_change_classes, n_map_classes=n_map_classes,
    )
    return batch, st("hr")


class PairMixture:
    """An endless, seeded stream of batches from weighted groups of pairs (one scale per batch).

    ``groups``: [(pairs, weight)]; a pair is drawn from a group with probability proportional to its area.
    """

    def __init__(
        self,
        groups: Sequence[tuple[Sequence[Pair], float]],
        maker: TrainingSampleMaker,
        *,
        batch_size: int,
        n_change_classes: int,
        n_map_classes: int = 0,
        seed: int = 0,
        what: str = "training",
    ) -> None:
        # every sample of a batch must have the full crop: pairs smaller than it are left out (and named), and so are
        # pairs with no crop of data at some scale (nodata but for small patches)
        def no_data(p: Pair) -> bool:
            return any((o := p.crop_origins(maker.crop, s)) is not None and not len(o[0]) for s in maker.scales)

        # each pair judged on its own (by name, a small image left out its namesakes in other folders: tile_001 of
        # one source cost every tile_001; found in review)
        drawn = [p for pairs, w in groups if w > 0 for p in pairs]
        small = {id(p) for p in drawn if min(p.shape) < maker.crop}
        empty = {id(p) for p in drawn if id(p) not in small and no_data(p)}
        self.skipped = sorted({p.name for p in drawn if id(p) in small})
        self.no_data = sorted({p.name for p in drawn if id(p) in empty})
        left = small | empty
        fits = [([p for p in pairs if id(p) not in left], float(w)) for pairs, w in groups if w > 0]
        self.groups = [(p, w) for p, w in fits if p]
        if not self.groups:
            why = [f"smaller than the {maker.crop}-px crop ({', '.join(self.skipped[:3])})"] if self.skipped else []
            why += [f"without a {maker.crop}-px crop of data ({', '.join(self.no_data[:3])})"] if self.no_data else []
            raise InputError(f"no {what} data: every data source is empty" + "".join(f" or {w}" for w in why))
        self.maker = maker
        self.batch_size = batch_size
        self.n_change_classes = n_change_classes
        self.n_map_classes = n_map_classes
        self.seed = seed
        gw = np.array([w for _, w in self.groups])
        self._gp = gw / gw.sum()
        self._pp = []
        for pairs, _ in self.groups:
            a = np.array([p.shape[0] * p.shape[1] for p in pairs], dtype=np.float64)
            self._pp.append(a / a.sum())

    def left_out(self, crop: int) -> list[str]:
        """What was left out, in words (one line per reason), for a run's warnings."""
        out = []
        for names, why in ((self.skipped, f"smaller than the {crop}-px crop"),
                           (self.no_data, f"without a {crop}-px crop of data ({MIN_CROP_DATA:.0%} of it or more)")):
            if names:
                out.append(f"{len(names)} image{'s' * (len(names) != 1)} left out, {why}: {', '.join(names[:5])}"
                           + (" ..." if len(names) > 5 else ""))
        return out

    def batch(self, step: int) -> tuple[ConditionBatch, torch.Tensor]:
        """The batch of ``step`` (a function of (seed, step): resuming replays the same stream)."""
        rng = np.random.default_rng([self.seed, step])
        scale = int(self.maker.scales[int(rng.integers(len(self.maker.scales)))])
        samples = []
        for _ in range(self.batch_size):
            g = int(rng.choice(len(self.groups), p=self._gp))
            pairs = self.groups[g][0]
            pair = pairs[int(rng.choice(len(pairs), p=self._pp[g]))]
            samples.append(self.maker.make(pair, rng, scale))
        return collate(samples, n_change_classes=self.n_change_classes, n_map_classes=self.n_map_classes)

    def __iter__(self) -> Iterator[tuple[ConditionBatch, torch.Tensor]]:
        step = 0
        while True:
            yield self.batch(step)
            step += 1


def sample_stream(
    cfg: TrainConfig, groups: Sequence[tuple[Sequence[Pair], float]], foreign: list[torch.Tensor],
    what: str = "training",
) -> PairMixture:
    """The batch stream a training config asks for, over ``groups`` (:func:`geosr.training.sources.load_sources`;
    ``what`` they are, as an error names them: training or validation data)."""
    table = load_change_classes(cfg.change_table)
    maker = TrainingSampleMaker(crop=cfg.crop, scales=cfg.scales, degradation=cfg.degradation, p_no_ref=cfg.p_no_ref,
                        changed_ids=tuple(i for i, c in enumerate(table.classes) if c.changed) or (0,), foreign=foreign,
                        synthetic=SyntheticChangeConfig(**cfg.synthetic))
    return PairMixture(groups, maker, batch_size=cfg.batch_size, n_change_classes=table.n_classes,
                       n_map_classes=cfg.n_map_classes, seed=cfg.seed, what=what)


__all__ = ["TrainingSample", "TrainingSampleMaker", "PairMixture", "augment", "harmonize", "collate", "sample_stream"]
