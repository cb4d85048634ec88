"""The LR-space backbone behind the pipeline's :class:`~geosr.models.interface.SuperResolver` interface.

Every window is padded (edge-replicated) at the top and left to the next multiple of the backbone's pooling grid
in scene coordinates, so that every window pools on the grid the whole scene would: with the halo of the
checkpoint (16 LR pixels by default), overlapping windows then agree to a few thousandths of the model-space
range and the pipeline's blending hides the rest (``tests/test_backbone.py`` measures it). A backbone told the
sharpness code (``code_dims``, or experts mixed by it: :mod:`geosr.models.backbone_experts`) is given the
scene's (``ConditionBatch.sharpness``, measured by the pipeline on the whole scene) so that every window is told
the same. The backbone uses no conditioning input itself; wrapped in
:class:`~geosr.models.reference_detail.ReferenceDetail` it takes the reference's matching detail.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from geosr.errors import BandError, ModelFileError, ScaleError
from geosr.models.backbone import LRBackbone, own_codes
from geosr.models.backbone_experts import ExpertBackbone
from geosr.models.device import resolve_device
from geosr.models.interface import ConditionBatch
from geosr.models.resample import upsample

# The backbone's windows: about WINDOW_LR LR pixels a side at every scale (the network's cost per pixel rises with
# the window, the halo's share falls), at most MAX_WINDOW_HR output pixels a side (the output tensors' memory at x16).
# Whole `upscale -m lite`, 2 threads, interleaved medians, against windows of 1024 output pixels: x2 (1024² LR)
# 0.94x the time, x4 0.86x / 0.93x (512² / 1024² LR), x8 (256²) 0.74x, x16 (128²) 0.80x.
WINDOW_LR = 272
MAX_WINDOW_HR = 2048


class BackboneSuperResolver:
    """A :class:`LRBackbone` ready to super-resolve batches of windows (deterministic: ``seed`` is unused)."""

    inputs: frozenset[str] = frozenset()

    def __init__(self, net: LRBackbone | ExpertBackbone, spec: dict[str, Any] | None = None, *,
                 device: str | torch.device | None = "cpu", name: str | None = None) -> None:
        self.device = resolve_device(device)
        self.net = net.eval().to(self.device)
        if self.device.type == "cpu":
            self.net = self.net.to(memory_format=torch.channels_last)
        self.spec = dict(spec or {})
        self.name = name or str(self.spec.get("name", "backbone"))
        self.checksum: str | None = None
        # the scales its spec claims (a run trains some of its heads: those), of those its network has
        claimed = self.spec.get("scales")
        self.scales: tuple[int, ...] = tuple(s for s in net.cfg.scales if not isinstance(claimed, list)
                                             or s in claimed)
        if not self.scales:
            raise ModelFileError(f"model {self.name}: its spec claims scales {claimed}, and its network has heads "
                                 f"for x{', x'.join(map(str, net.cfg.scales))} only")
        self.bands: int | None = net.cfg.n_bands
        if self.spec.get("bands", net.cfg.n_bands) != net.cfg.n_bands:  # (`geosr models` lists the spec's)
            raise ModelFileError(f"model {self.name}: its spec says {self.spec['bands']} bands, and its network "
                                 f"takes {net.cfg.n_bands}")
        self.halo: int = int(self.spec.get("halo", 16))
        # bytes a window's forward pass adds to peak memory: the LR-space network's features per LR pixel, the
        # upsampled output per HR pixel (bench/bench_memory.py calibrate on 232 px windows: 100 / 121 / 297 MB at
        # x2 / x4 / x8, 325 MB for 136 px at x16; one bytes-per-HR-pixel figure was 2x off at x8 or at x2)
        self.memory_per_lr_pixel = float(self.spec.get("memory_per_lr_pixel", 1200))
        self.memory_per_hr_pixel = float(self.spec.get("memory_per_hr_pixel", 75))
        self.one_window_at_a_time = True  # __call__ runs a batch's windows singly (their pooling phases differ)
        self.ran_away = 0  # windows whose output ran away, given bicubic instead (:func:`_within_reach`)
        self.align = net.cfg.align
        # a network modulated by the scene's sharpness code asks the pipeline to measure it on the whole scene
        self.wants_sharpness = bool(net.uses_code)
        # windows shrunk to share the scene evenly (any size suits the network: tiling.windows.fitted_size). Whole
        # CLI at x4, 2 threads, interleaved: 0.62x, 0.79x, 0.85x the time of unfitted windows on 512², 768², 1024² LR
        self.fit_windows = True

    def tiling_for(self, scale: int) -> tuple[int, float]:
        """(window output pixels, overlap share) the pipeline plans this model's windows with at ``scale``: about
        :data:`WINDOW_LR` LR pixels a side, at most :data:`MAX_WINDOW_HR` output pixels, unless the checkpoint's
        spec sets ``tiling.window_hr``."""
        tiling = self.spec.get("tiling", {})
        window_hr = int(tiling["window_hr"]) if "window_hr" in tiling else min(WINDOW_LR * scale, MAX_WINDOW_HR)
        return window_hr, float(tiling.get("overlap_share", 0.0625))

    def retained_memory(self, lr_h: int, lr_w: int) -> float:
        """Bytes a run holds beyond one window's pass (:meth:`window_memory`): one more window's LR-space features,
        which glibc keeps in its threads' arenas as the next window runs (without it lite runs on 4-band LRs of
        300-1200 px at x2-x8 peaked 3-29% over their estimate, the memory given back after each batch; with it,
        estimate / peak 0.85-1.05, and 0.93-1.14 on bench/bench_memory.py check's lite cases; 2026-12-07, review)."""
        return lr_h * lr_w * self.memory_per_lr_pixel

    def window_memory(self, lr_h: int, lr_w: int, scale: int) -> float:
        """Peak bytes one window of ``lr_h`` x ``lr_w`` LR pixels adds at ``scale``
        (:func:`geosr.models.interface.window_memory`)."""
        return lr_h * lr_w * (self.memory_per_lr_pixel + scale**2 * self.memory_per_hr_pixel)

    @torch.inference_mode()
    def __call__(self, batch: ConditionBatch, *, seed: int) -> torch.Tensor:
        c, s = batch.lr.shape[1], batch.scale
        if c != self.bands:
            raise BandError(f"model {self.name} takes {self.bands} band{'s' * (self.bands != 1)} but the input has {c}")
        if s not in self.scales:
            raise ScaleError(f"model {self.name} was trained for x{', x'.join(map(str, self.scales))}, not x{s}")
        code = None
        if self.wants_sharpness:  # the scene's code; without one (a caller outside the pipeline) each window's own
            code = own_codes(batch.lr) if batch.sharpness is None else torch.tensor([batch.sharpness])
        outs = []
        for i in range(batch.batch_size):  # windows may sit at different phases of the pooling grid
            row, col = (int(v) // s for v in batch.offsets[i])
            pt, pl = row % self.align, col % self.align
            lr = batch.lr[i : i + 1].to(self.device, torch.float32)
            if pt or pl:
                lr = F.pad(lr, (pl, 0, pt, 0), mode="replicate")
            if self.device.type == "cpu":
                lr = lr.contiguous(memory_format=torch.channels_last)
            c = None if code is None else code[min(i, len(code) - 1) : i + 1].to(self.device)
            sr = self.net(lr, s, c)[..., pt * s :, pl * s :].float()
            own = batch.lr[i : i + 1].to(self.device, torch.float32)
            # judged where it is read: all of it finite, and within reach on the core and the 2 LR px of halo around
            # it that a diffusion model sampling on it reads (a rescale's kernel reaches less; NaN or 1e6 there spread
            # into the core; found in review)
            if not (bool(torch.isfinite(sr).all()) and _within_reach(_core(sr, max(0, batch.halo - 2) * s), own)):
                sr = upsample(own, s, "bicubic")
                self.ran_away += 1
            outs.append(sr.contiguous())
        return torch.cat(outs).to(batch.lr.device)

    def describe(self) -> dict[str, Any]:
        experts = {"experts": list(self.net.names)} if isinstance(self.net, ExpertBackbone) else {}
        return {"model": self.name, "arch": self.net.cfg.name, "steps": 0, **experts,
                **({"checksum": self.checksum} if self.checksum else {})}


def _core(sr: torch.Tensor, margin: int) -> torch.Tensor:
    """``sr`` without ``margin`` output pixels of its halo, which nothing reads: an overshoot there (349 pixels of
    2.9M at the outer edge of a window's halo at the scene's edge, on a textured 4-band LR at x4) put bicubic over
    the whole window, and a warning (found in review)."""
    h, w = sr.shape[-2:]
    return sr[..., margin : h - margin, margin : w - margin] if margin and min(h, w) > 2 * margin else sr


def _within_reach(sr: torch.Tensor, lr: torch.Tensor) -> bool:
    """Whether the network's output ``sr`` stays finite and within twice its window's LR range (model space) plus
    2: on a scene of a few pixels or of flat stripes the network ran away (values of 1e6 and more, written as noise
    of 0 and 255, exit 0; found in review), where a real image's overshoot is a fraction of its range."""
    return bool(torch.isfinite(sr).all()) and float(sr.abs().amax()) <= 2 * float(lr.abs().amax()) + 2
