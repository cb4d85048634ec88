"""Classical back-ends behind the model interface: bicubic, Lanczos and reference paste."""

from __future__ import annotations

import torch

from geosr.models.interface import ConditionBatch
from geosr.models.resample import kernel_halo, upsample


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

    def __call__(self, batch: ConditionBatch, *, seed: int) -> torch.Tensor:
        return upsample(batch.lr, batch.scale, self.kind)


class ReferencePaste:
    """The harmonized reference where it is valid and unchanged, bicubic of the LR elsewhere."""

    name = "reference-paste"
    threads_invariant = True  # bicubic and a choice per pixel: its resume at another thread count was refused
    scales: tuple[int, ...] = ()
    bands: int | None = None
    inputs: frozenset[str] = frozenset({"ref", "cd"})
    requires: frozenset[str] = frozenset({"ref"})  # without a reference it is bicubic
    halo = kernel_halo("bicubic")
    memory_per_hr_pixel = 200  # as bicubic

    def __call__(self, batch: ConditionBatch, *, seed: int) -> torch.Tensor:
        base = upsample(batch.lr, batch.scale, "bicubic")
        use_ref = (batch.ref_valid > 0.5) & (batch.changed < 0.5)
        return torch.where(use_ref, batch.ref, base)
