"""The diffusion super-resolver: denoiser + Heun sampler + geo-seeded noise behind the pipeline's
:class:`~geosr.models.interface.SuperResolver` interface.

Conditioning from a :class:`ConditionBatch`:

- the LR is upsampled to the HR grid by the model (bicubic, :mod:`geosr.models.resample`, or its learned
  upsampler, :mod:`geosr.models.upsampler`);
- the change mask and the map become one-hot stacks; a model trained with a map that receives a batch
  without one gets an all-class-0 map (class 0 of geosr's OSM table is "background / unknown"); a map
  given to a model without a map path is ignored;
- the reference is multiplied by its validity, and the validity is a channel of its own.

Windows whose sides are not multiples of the model's downsampling factor are padded (reflect) at the
bottom / right and cropped back. The noise of every pixel is a function of (seed, global HR position),
padding included, so overlapping windows see the same noise.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F

from geosr.config import SamplerConfig
from geosr.errors import BandError, ClassTableError, OptionError, ScaleError
from geosr.models.device import resolve_device
from geosr.models.edm import EDMDenoiser
from geosr.models.interface import ConditionBatch
from geosr.models.resample import kernel_halo, upsample
from geosr.models.unet import Condition, make_condition
from geosr.sampling.fusion import OverlapFusion
from geosr.sampling.noise import GeoNoise
from geosr.sampling.samplers import sample
from geosr.sampling.schedules import SamplerPreset, resolve_preset


def _pad(t: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    if not (ph or pw):
        return t
    h, w = t.shape[-2:]
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(t, (0, pw, 0, ph), mode=mode)


class DiffusionSuperResolver:
    """A change-aware diffusion model ready to super-resolve batches of windows.

    ``style``: None / "none" (identity AdaIN), "sample" (one style drawn from the model's flow with the
    run's seed, shared by every window), or a (1, bands, h, w) style image in model space.

    ``batch_invariant``: run the windows of a batch one at a time, so a window's pixels do not depend on
    which other windows share its batch (convolution kernels round differently for different batch sizes:
    on the CPU 2-3 values of 480,000 1 DN apart). This makes a re-run over a sub-area, or a split job's
    part, bit-identical to the full run; it does not apply with overlap fusion, which couples the windows
    of a batch on purpose. Default (None): on the CPU, where batching buys no speed (the bundled sample at
    x8: 3.9-4.1 s one at a time against 3.8-4.2 s in batches of 4, and a fifth less memory); not on CUDA.
    """

    sampling = True  # the sampler's settings apply (geosr.models.interface.samples)

    def __init__(
        self,
        denoiser: EDMDenoiser,
        spec: dict[str, Any] | None = None,
        *,
        sampler: SamplerConfig | None = None,
        device: str | torch.device | None = "cpu",
        style: str | torch.Tensor | None = None,
        name: str | None = None,
        autocast: bool | None = None,
        batch_invariant: bool | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.denoiser = denoiser.eval().to(self.device)
        if self.device.type == "cpu":
            self.denoiser = self.denoiser.to(memory_format=torch.channels_last)
        self.cfg = denoiser.cfg
        self.spec = dict(spec or {})
        self.name = name or str(self.spec.get("name") or self.cfg.name)
        self.checksum: str | None = None  # of the weights file, set by the loader that read it
        self.scales: tuple[int, ...] = tuple(int(s) for s in self.spec.get("scales", ()))
        self.bands: int | None = self.cfg.n_bands
        self.halo: int = int(self.spec.get("halo", kernel_halo("bicubic")))
        # bytes per HR pixel of a batch its forward pass adds to peak memory (bench/bench_memory.py: 1263-1351)
        self.memory_per_hr_pixel = float(self.spec.get("memory_per_hr_pixel", 1400))
        self.sampler = sampler or SamplerConfig()
        steps = self.sampler.steps
        if steps is None and self.sampler.preset == "default":
            steps = self.spec.get("inference", {}).get("steps")  # the checkpoint's recommended step count
        if steps == 0:
            raise OptionError(f"model {self.name} samples with at least 1 step; steps 0 is the prediction of a model "
                              "that samples on a backbone (DIFFUSION+BACKBONE, e.g. default+lite)")
        self.preset: SamplerPreset = resolve_preset(self.sampler.preset, steps)
        self.autocast = (self.device.type == "cuda") if autocast is None else autocast
        self.batch_invariant = self.device.type == "cpu" if batch_invariant is None else batch_invariant
        # the pipeline then gives the windows singly (geosr.pipeline.upscale._run_model)
        self.one_window_at_a_time = self.batch_invariant and not self.sampler.fuse_overlaps
        self._style_arg = style
        self._style_cache: dict[int, torch.Tensor | None] = {}
        self._check_style_arg(style)

    @property
    def n_change_classes(self) -> int:
        return self.cfg.n_change_classes

    @property
    def n_map_classes(self) -> int:
        return self.cfg.n_map_classes

    @property
    def inputs(self) -> frozenset[str]:
        """The reference and change mask always; the map and a style image when the network has their paths."""
        return frozenset({"ref", "cd"} | ({"map"} if self.cfg.n_map_classes else set())
                         | ({"style"} if self.cfg.style else set()))

    # -- style -------------------------------------------------------------------------------------------
    def _check_style_arg(self, style: str | torch.Tensor | None) -> None:
        if style is None or (isinstance(style, str) and style == "none"):
            return
        if not self.cfg.style:
            raise OptionError(f"model {self.name} has no style path, so `style` must be 'none'")
        if isinstance(style, str):
            if style != "sample":
                raise OptionError(f"style must be an image, 'sample' or 'none', not {style!r}", param="style")
            if not self.denoiser.net.style_flow.is_fitted:
                raise OptionError(
                    f"model {self.name} has no fitted style flow, so `style` sample cannot work; "
                    "give a style image or 'none'"
                )
        elif not torch.is_tensor(style) or style.dim() != 4 or style.shape[1] != self.cfg.n_bands:
            raise OptionError(f"a style image must be a (1, {self.cfg.n_bands}, H, W) tensor in model space")

    @torch.inference_mode()
    def style_vector(self, seed: int) -> torch.Tensor | None:
        """The (1, 2G) style every window of this run uses, or None."""
        style = self._style_arg
        if style is None or (isinstance(style, str) and style == "none"):
            return None
        key = int(seed) if isinstance(style, str) else 0
        if key not in self._style_cache:
            net = self.denoiser.net
            if isinstance(style, str):
                vec = net.style_flow.sample_style(1, seed=seed)
            else:
                vec = net.style_encoder(style.to(self.device, torch.float32)[:1])
            self._style_cache[key] = vec.float()
        return self._style_cache[key]

    # -- conditioning ------------------------------------------------------------------------------------
    def _validate(self, batch: ConditionBatch) -> None:
        c = batch.lr.shape[1]
        if c != self.cfg.n_bands:
            raise BandError(f"model {self.name} takes {self.cfg.n_bands} bands but the input has {c}")
        if self.scales and batch.scale not in self.scales:
            trained = ", x".join(map(str, self.scales))
            raise ScaleError(f"model {self.name} was trained for x{trained}, not x{batch.scale}")
        if batch.n_change_classes != self.cfg.n_change_classes:
            raise ClassTableError(
                f"model {self.name} takes {self.cfg.n_change_classes} change classes but the change table has "
                f"{batch.n_change_classes}"
            )
        if batch.map is not None and self.cfg.n_map_classes and batch.n_map_classes != self.cfg.n_map_classes:
            raise ClassTableError(
                f"model {self.name} takes {self.cfg.n_map_classes} map classes but the map table has "
                f"{batch.n_map_classes}"
            )
        H, W = batch.ref.shape[-2:]
        h, w = batch.lr.shape[-2:]
        if (h * batch.scale, w * batch.scale) != (H, W):
            raise ValueError(f"LR windows of {h}x{w} at x{batch.scale} do not match HR stacks of {H}x{W}")
        for what, ids, n in (("change", batch.change, batch.n_change_classes), ("map", batch.map, batch.n_map_classes)):
            if ids is not None and ids.numel() and self._n_for(what) and (int(ids.min()) < 0 or int(ids.max()) >= n):
                raise ClassTableError(f"the {what} stack holds class ids outside 0..{n - 1}")

    def _n_for(self, what: str) -> int:
        return self.cfg.n_change_classes if what == "change" else self.cfg.n_map_classes

    def condition(self, batch: ConditionBatch, seed: int = 0,
                  base: torch.Tensor | None = None) -> tuple[Condition, torch.Tensor, tuple[int, int]]:
        """The model's condition for ``batch`` on the padded grid, the upsampled LR, and the pad (ph, pw).
        ``base`` (B, C, H, W): the LR on the HR grid to condition on (and, for a residual model, to add the sampled
        detail to) instead of the network's own upsampling, e.g. a backbone's prediction."""
        dev = self.device
        f = self.cfg.downsampling
        H, W = batch.ref.shape[-2:]
        ph, pw = (-H) % f, (-W) % f
        lr_up = (self.denoiser.upsample_lr(batch.lr.to(dev, torch.float32), batch.scale) if base is None
                 else base.to(dev, torch.float32))
        map_ids = batch.map.to(dev) if (batch.map is not None and self.cfg.n_map_classes) else None
        cond = make_condition(
            lr_up,
            batch.ref.to(dev, torch.float32),
            batch.ref_valid.to(dev, torch.float32),
            batch.change.to(dev),
            n_change_classes=self.cfg.n_change_classes,
            map_ids=map_ids,
            n_map_classes=self.cfg.n_map_classes,
        )
        cond = cond.map_fn(lambda t: _pad(t, ph, pw))
        if dev.type == "cpu":
            cond = cond.map_fn(lambda t: t.contiguous(memory_format=torch.channels_last))
        style = self.style_vector(seed)
        cond.style = None if style is None else style.expand(batch.batch_size, -1)
        return cond, cond.lr, (ph, pw)

    # -- sampling ------------------------------------------------------------------------------------------
    def _autocast(self):
        if self.autocast and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def __call__(self, batch: ConditionBatch, *, seed: int, base: torch.Tensor | None = None) -> torch.Tensor:
        """Sample ``batch``'s HR windows; ``base``: see :meth:`condition`."""
        self._validate(batch)
        if base is not None and base.shape[-2:] != batch.ref.shape[-2:]:
            raise ValueError(f"a base of {tuple(base.shape[-2:])} does not cover HR stacks of "
                             f"{tuple(batch.ref.shape[-2:])}")
        if LR_RANGE is not None and (_beyond(batch.lr) or (base is not None and _beyond(base))):
            inside = batch.lr.clamp(-LR_RANGE, LR_RANGE)
            kept = None if base is None else base.clamp(-LR_RANGE, LR_RANGE)  # a backbone's prediction, likewise
            out = self._dispatch(replace(batch, lr=inside), seed, kept)
            # the excess added back (exactly nothing where a window is within the range): the LR's upsampled
            # band by band (through the learned upsampler, which mixes the bands, an outlier of a flat band,
            # 60000 DN over a stretch of 1 DN, saturated the others), or the base's own; a base beyond the
            # range conditioned on spread it over the other bands (3992 DN; both found in review)
            excess = upsample((batch.lr - inside).to(self.device, torch.float32), batch.scale, "bicubic") \
                if base is None else (base - kept)
            return out + excess.to(out.device, out.dtype)
        return self._dispatch(batch, seed, base)

    def _dispatch(self, batch: ConditionBatch, seed: int, base: torch.Tensor | None) -> torch.Tensor:
        """:meth:`__call__` on values within the model's range: the windows batched, or one by one."""
        fusing = self.sampler.fuse_overlaps and batch.batch_size > 1
        if self.batch_invariant and batch.batch_size > 1 and not fusing:
            return torch.cat([self._run(_window(batch, i), seed, None if base is None else base[i : i + 1])
                              for i in range(batch.batch_size)])
        return self._run(batch, seed, base)

    def _run(self, batch: ConditionBatch, seed: int, base: torch.Tensor | None = None) -> torch.Tensor:
        out_device = batch.lr.device
        H, W = batch.ref.shape[-2:]
        cond, lr_up, (ph, pw) = self.condition(batch, seed, base)
        Hp, Wp = H + ph, W + pw
        B, C = batch.batch_size, self.cfg.n_bands
        with self._autocast():
            prepared = self.denoiser.prepare(cond)
        noise = GeoNoise(seed, batch.offsets, (C, Hp, Wp), device=self.device)
        fuse = None
        if self.sampler.fuse_overlaps and B > 1:
            fuse = OverlapFusion(batch.offsets, Hp, Wp, valid=(H, W))

        def denoise(x: torch.Tensor, sigma: float) -> torch.Tensor:
            if self.device.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            s = torch.full((B,), sigma, device=self.device)
            with self._autocast():
                return self.denoiser(x, s, prepared=prepared)

        x = sample(denoise, self.preset, (B, C, Hp, Wp), noise=noise, lr=lr_up, fuse=fuse)
        return x[:, :, :H, :W].float().contiguous().to(out_device)

    def nfe(self) -> int:
        return self.preset.nfe

    def describe(self) -> dict[str, Any]:
        """What to record in the output's tags."""
        return {
            "model": self.name,
            "arch": self.cfg.name,
            "sampler": self.preset.to_dict(),
            "fuse_overlaps": self.sampler.fuse_overlaps,
            "style": self._style_arg if isinstance(self._style_arg, (str, type(None))) else "image",
            **({"checksum": self.checksum} if self.checksum else {}),
        }


# The LR values (model space: the scene's 1st / 99th percentiles at -1 / +1) the network is given at most; beyond
# them, its output (the clipped LR's upsampling and the detail sampled over it) takes the LR's own upsampling in place
# of the clipped one's. The bundled model, trained on images stretched so, answered a lone bright LR pixel at 2.55
# with -13 .. 21 (61 output pixels at 0 or 255 on the bundled sample at x16, none so). None: the LR as it is.
LR_RANGE: float | None = 2.0


def _beyond(x: torch.Tensor) -> bool:
    """Whether ``x`` holds a value beyond ±LR_RANGE (NaN is not: clamping keeps it, and a test of the clamp's
    effect, NaN != NaN, called for it again and again: a RecursionError; found in review)."""
    return LR_RANGE is not None and bool((x.abs() > LR_RANGE).any())


def _window(batch: ConditionBatch, i: int) -> ConditionBatch:
    return batch.apply(lambda t: t[i : i + 1].clone())
