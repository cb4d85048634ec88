"""The model interface the pipeline talks to: a batch of window stacks in, HR windows out.

All tensors are in the normalized model space (see docs/data-contract.md): the LR is stretched per scene
to roughly [-1, 1], the reference is harmonized to the LR and then stretched the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Protocol, runtime_checkable

import torch


@dataclass
class ConditionBatch:
    """The conditioning stack of ``B`` windows.

    ``halo`` extra LR pixels of context surround every window on all sides (the model's own need); HR
    tensors cover the same padded extent, so ``H = (h + 2*halo) * scale``. Pixels outside the scene are
    filled (LR: edge-replicated; reference: 0 with ``ref_valid`` 0).

    lr          (B, C, h', w')  float32, LR in model space, invalid pixels filled with 0
    lr_valid    (B, 1, h', w')  float32, 1 where the LR has data
    ref         (B, C, H, W)    float32, harmonized reference in model space, 0 where invalid
    ref_valid   (B, 1, H, W)    float32, 1 where the reference has data (all 0 when there is none)
    change      (B, 1, H, W)    int64, change class ids of the change table (0.. n_change_classes-1)
    changed     (B, 1, H, W)    float32, 1 where the change table calls the class "changed"
    map         (B, 1, H, W)    int64, map class ids (0.. n_map_classes-1), or None without a map
    offsets     (B, 2)          int64, global HR (row, col) of each stack's top-left pixel in the scene
    sharpness   the scene's LR sharpness code (geosr.models.degradation_code), the same for every window; None
                when the model does not ask for it (its ``wants_sharpness``)
    """

    lr: torch.Tensor
    lr_valid: torch.Tensor
    ref: torch.Tensor
    ref_valid: torch.Tensor
    change: torch.Tensor
    changed: torch.Tensor
    map: torch.Tensor | None
    offsets: torch.Tensor
    scale: int
    halo: int
    n_change_classes: int = 2
    n_map_classes: int = 0
    sharpness: tuple[float, ...] | None = None

    @property
    def batch_size(self) -> int:
        return int(self.lr.shape[0])

    def apply(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "ConditionBatch":
        """A copy with ``fn`` applied to every tensor (a missing map stays None)."""
        names = ("lr", "lr_valid", "ref", "ref_valid", "change", "changed", "map", "offsets")
        return replace(self, **{n: None if getattr(self, n) is None else fn(getattr(self, n)) for n in names})

    def to(self, device: torch.device | str) -> "ConditionBatch":
        return self.apply(lambda t: t.to(device))


CONDITIONING_INPUTS = ("ref", "cd", "map", "style")  # what a model may take besides the LR

# Peak memory a model's forward pass adds, in bytes per HR pixel of the batch (halo included), when it does not
# say (its ``memory_per_hr_pixel``); measured by bench/bench_memory.py, which also checks the estimate it feeds.
DEFAULT_MEMORY_PER_HR_PIXEL = 1500


def memory_per_hr_pixel(sr: object) -> float:
    """What ``sr``'s forward pass adds to peak memory per HR pixel of a batch (bytes); a model whose
    ``one_window_at_a_time`` is true takes it per HR pixel of one window."""
    return float(getattr(sr, "memory_per_hr_pixel", DEFAULT_MEMORY_PER_HR_PIXEL))


def window_memory(sr: object, lr_h: int, lr_w: int, scale: int) -> float:
    """Bytes ``sr``'s forward pass adds to peak memory for one window of ``lr_h`` x ``lr_w`` LR pixels (halo
    included) at ``scale``: its ``window_memory`` where it has one (a model whose parts see different extents of the
    window), else :func:`memory_per_hr_pixel` times the window's HR pixels."""
    own = getattr(sr, "window_memory", None)
    return float(own(lr_h, lr_w, scale)) if callable(own) else lr_h * lr_w * scale**2 * memory_per_hr_pixel(sr)


def model_inputs(sr: object) -> frozenset[str]:
    """The conditioning inputs ``sr`` uses (its ``inputs``; a model that does not say is taken to use all)."""
    return frozenset(getattr(sr, "inputs", CONDITIONING_INPUTS))


def model_requires(sr: object) -> frozenset[str]:
    """The conditioning inputs without which ``sr`` is another, plainer model (its ``requires``; none by
    default): reference-paste without a reference is bicubic."""
    return frozenset(getattr(sr, "requires", frozenset()))


def samples(sr: object) -> bool:
    """Whether ``sr`` draws its output by diffusion sampling (its ``sampling``), so that the sampler's settings
    (preset, steps, overlap fusion) apply to it."""
    return bool(getattr(sr, "sampling", False))


@runtime_checkable
class SuperResolver(Protocol):
    """What ``geosr upscale --model`` runs. Deterministic for a given seed and window position."""

    name: str
    scales: tuple[int, ...]  # supported scale factors; empty: any
    bands: int | None  # number of bands it takes; None: any
    halo: int  # LR pixels of context it needs around every window
    # optional: ``inputs``, the conditioning inputs it uses (a subset of CONDITIONING_INPUTS; see model_inputs);
    # ``sampling``, true for a diffusion sampler (see samples)

    def __call__(self, batch: ConditionBatch, *, seed: int) -> torch.Tensor:
        """Return (B, C, H, W) HR windows in model space covering the padded extent of ``batch``."""
        ...
