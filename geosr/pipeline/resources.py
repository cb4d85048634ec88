"""The plan against the machine: working memory against available memory, output size against free disk."""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from geosr.errors import GPU_MEMORY_ADVICE, InputError


class ResourceError(InputError):
    """A job the machine cannot hold: more memory or disk than it has."""


@dataclass(frozen=True)
class Resources:
    """What a planned job needs and what the machine has, in MB (``None``: not measured)."""

    memory_mb: float  # the run's peak, this process included
    memory_available_mb: float
    disk_mb: float  # at most at once while the output is written (geosr.io.writer.written_mb)
    disk_free_mb: float | None
    resident_mb: float = 0.0  # what this process already holds (part of memory_mb, not of what is available)
    gpu_mb: float | None = None  # on CUDA: the model's weights and forward pass over a batch (estimated)
    gpu_free_mb: float | None = None  # and what the GPU has free now

    @property
    def more_memory_mb(self) -> float:
        """Memory the run still has to take from the machine."""
        return max(0.0, self.memory_mb - self.resident_mb)

    @property
    def fits(self) -> bool:
        return self.more_memory_mb <= self.memory_available_mb and (
            self.disk_free_mb is None or self.disk_mb <= self.disk_free_mb
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "fits": self.fits}


def measure(memory_mb: float, disk_mb: float, folder: Path | None, *, gpu_mb: float | None = None,
            gpu_free_mb: float | None = None) -> Resources:
    """Needs against what this machine has now: available memory (besides what this process holds), free space in
    ``folder`` (the output's), and on CUDA the GPU's estimated need and free memory (told, not checked)."""
    free = None
    if folder is not None:
        try:
            free = shutil.disk_usage(folder).free / 2**20
        except OSError:
            free = None
    resident = psutil.Process().memory_info().rss / 2**20
    return Resources(memory_mb, psutil.virtual_memory().available / 2**20, disk_mb, free, resident, gpu_mb,
                     gpu_free_mb)


def gpu_warnings(resources: dict) -> list[str]:
    """A warning when the GPU's estimated need is beyond its free memory: told, not refused, as the estimate is
    calibrated on the CPU (bench/bench_memory.py) and CUDA's own workspaces and caching allocator differ."""
    need, free = resources.get("gpu_mb"), resources.get("gpu_free_mb")
    if need is None or free is None or need <= free:
        return []
    return [f"the model's windows may need about {_size(need)} of GPU memory and {_size(free)} is free: if it runs "
            f"out, {GPU_MEMORY_ADVICE}"]


def check(res: Resources, *, output: Path | str) -> None:
    """Raise :class:`ResourceError` with the numbers and the ways out when the job does not fit."""
    if res.more_memory_mb > res.memory_available_mb:
        raise ResourceError(
            f"{output}: the job needs about {_size(res.more_memory_mb)} more memory but "
            f"{_size(res.memory_available_mb)} is available (a smaller area with `aoi`, a smaller `window`, a bigger "
            "machine, or `force_resources`)"
        )
    if res.disk_free_mb is not None and res.disk_mb > res.disk_free_mb:
        raise ResourceError(
            f"{output}: writing it may take up to {_size(res.disk_mb)} (its staged rows and copies, were the pixels "
            f"not to compress) but its folder has {_size(res.disk_free_mb)} free (a smaller area with `aoi`, another "
            "output folder, or `force_resources`)"
        )


def _size(mb: float) -> str:
    if mb < 1:  # (a nearly full disk read "0 MB free")
        return f"{mb * 1024:.0f} KB"
    return f"{mb / 2**20:.1f} TB" if mb >= 2**20 else f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB"


def _libc_trim() -> object | None:
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS, Windows)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError, TypeError):
        return None


_TRIM = _libc_trim()


def release_freed_memory() -> None:
    """Give the memory freed since the last call back to the system, where the C library keeps it (glibc, whose
    per-thread arenas held each window's freed activations: a run's resident memory grew batch after batch, a
    1200 px LR x2 with lite from 391 to 837 MB; trimmed after each batch it peaked at 748-773 MB, as fast, its pixels
    identical; after each window at 636-651 MB, but 5-14% slower, the pages faulted in again). A no-op elsewhere.
    Hand-written: no library offers it."""
    if _TRIM is not None:
        _TRIM(0)  # type: ignore[operator]
