"""Classical back-ends behind the model interface: bicubic, Lanczos and reference paste."""

from __future__ import annotations

import torch

from geosr.models.interface import ConditionBatch
from geosr.models.resample import kernel_halo, upsample

# Windows of at least 32 LR pixels a side: at x16 the diffusion models' 256 output pixels are 16 LR pixels, and a
# bicubic x16 of a 300² LR took 1.4-1.8x as long in them as in windows of 32 (peak memory 457 MB -> 527 MB; 64 LR
# pixels: 1.5-1.9x, 780 MB), measured 2026-12-06 with `geosr upscale -m bicubic --window N` on 2 threads.
MIN_WINDOW_LR = 32


def classical_tiling(scale: int) -> tuple[int, float]:
    """(window output pixels, overlap share) a classical back-end's windows are planned with at ``scale``."""
    return max(256, MIN_WINDOW_LR * scale), 0.25


class KernelUpsampler:
    """Plain interpolation of the LR (the reference, mask and map are ignored)."""

    scales: tuple[int, ...] = ()
    bands: int | None = None
    inputs: frozenset[str] = frozenset()
    memory_per_hr_pixel = 200  # bytes per HR pixel of a batch, measured (bench/bench_memory.py calibrate)
    # each output pixel one kernel's sum, in one order: the same pixels with any number of threads (measured, 1 and
    # 2, bicubic and Lanczos): a `resume` with another thread count goes on
    threads_invariant = True

    def __init__(self, kind: str) -> None:
        self.name = kind
        self.kind = kind
        self.halo = kernel_halo(kind)

    def tiling_for(self, scale: int) -> tuple[int, float]:
        return classical_tiling(scale)

    def __call__(self, batch: ConditionBatch, *, seed: int) -> torch.Tensor:
        return upsample(batch.lr, batch.scale, self.kind)


class ReferencePaste:
    """The harmonized reference where it is valid and unchanged, bicubic of the LR elsewhere."""

    name = "reference-paste"
    scales: tuple[int, ...] = ()
    bands: int | None = None
    inputs: frozenset[str] = frozenset({"ref", "cd"})
    requires: frozenset[str] = frozenset({"ref"})  # without a reference it is bicubic
    halo = kernel_halo("bicubic")
    memory_per_hr_pixel = 200  # as bicubic

    def tiling_for(self, scale: int) -> tuple[int, float]:
        return classical_tiling(scale)

    def __call__(self, batch: ConditionBatch, *, seed: int) -> torch.Tensor:
        base = upsample(batch.lr, batch.scale, "bicubic")
        use_ref = (batch.ref_valid > 0.5) & (batch.changed < 0.5)
        return torch.where(use_ref, batch.ref, base)
