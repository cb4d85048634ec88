"""Training the LR-space backbone (:mod:`geosr.models.backbone`): L1 on HR crops whose LR is drawn from the blind
degradation mix (:func:`geosr.training.sensor_degradations.blind_degrade`), Adam with a cosine schedule, an EMA of
the weights, resumable from its folder, bounded by steps and by wall-clock minutes (a run cut by ``minutes``
saves its state and continues with ``resume``). An expert backbone (:mod:`geosr.models.backbone_experts`) trains
routed: each crop's sharpness code, measured on its context as a scene's is, picks its mix of experts.

Images: single HR images (``*.png``, ``*.jpg``, ``*.tif`` in folders, 3 bands read as they are, 8-bit) held in
memory as uint8. Validation: the central crop of each validation image under each named degradation at the scale
with the largest share of the steps (x4 by default), the mean PSNR-Y gain over bicubic (the benchmark's numbers, on
other images); the best EMA is kept.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from geosr.errors import InputError, TrainingDivergedError
from geosr.models.backbone import build_backbone
from geosr.models.backbone_checkpoint import load_backbone, save_backbone
from geosr.models.backbone_experts import ExpertBackbone
from geosr.models.degradation_code import CODE_DIMS, lr_sharpness
from geosr.models.resample import upsample
from geosr.training.metrics import psnr_y
from geosr.training.overlap import inherited_hashes
from geosr.training.sensor_degradations import NAMED, blind_degrade, degrade_named
from geosr.training.state import load_state, own_checkpoint, save_state, state_record


@dataclass
class BackboneTrainConfig:
    steps: int = 20000
    batch: int = 16
    lr: float = 1e-4
    min_lr: float = 1e-6
    warmup: int = 0  # steps of linear warm-up before the cosine (a deepened network's new blocks move gently)
    ema: float = 0.999
    scale_weights: dict[int, float] = field(default_factory=lambda: {4: 0.55, 2: 0.15, 8: 0.2, 16: 0.1})
    lr_patch: dict[int, int] = field(default_factory=lambda: {2: 48, 4: 48, 8: 32, 16: 16})
    save_every: int = 100
    validate_every: int = 500
    seed: int = 0
    sharpness_code: bool = False  # give a network without one the scene sharpness code (from zero: same outputs)
    code_lr_boost: float = 3.0  # the code MLP's learning rate, times ``lr`` (it starts from zero)
    clip_grad: float = 0.1  # the gradient's norm at most (the feature modulation is quadratic in the features)
    # the families of LR formation drawn (sensor_degradations.NAMED), or family -> share; None: the whole blind
    # mix. The best EMA is the one whose worst validation gain over these families (with shares: the ones with the
    # largest share) is highest
    kinds: tuple[str, ...] | dict[str, float] | None = None
    device: str = "cpu"  # "auto": CUDA when there is one; batches are made on the CPU and moved there
    # processes making the batches beside the training (0: the training process makes each batch in turn, the
    # same batches on every run from the same state; more: each worker draws its own, the same for the same
    # count). On a GPU the crops and degradations, not the network, bound a step: 0.2 s per batch of 16 on a core
    workers: int = 0
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on the CPU (where bf16 is slower); or fp32 / bf16
    # with a time limit: the learning rate's cosine ends at the step count or at the limit, whichever comes first
    # (a run on a lent machine whose step rate is not known ahead); a resumed run's schedule restarts its clock
    schedule_by_time: bool = False

    def to_dict(self) -> dict:
        return {k: ({str(a): b for a, b in v.items()} if isinstance(v, dict) else v) for k, v in asdict(self).items()}


def validation_scale(scale_weights: dict[int, float], scales: Sequence[int]) -> int:
    """The scale validated (and the best EMA chosen at): of the ``scales`` trained, the one with the largest share
    of the steps (the larger on a tie)."""
    return max(scales, key=lambda s: (scale_weights[s], s))


def read_images(paths: Sequence[Path]) -> list[torch.Tensor]:
    """(3, H, W) uint8 tensors of RGB images. A GeoTIFF gives the bands ``geosr upscale`` takes by default (red,
    green, blue by description or colour, e.g. a Sentinel-2 stack's B04, B03, B02; else its first three, or its
    first band three times), 8-bit ones as they are, others (16-bit counts, reflectance in floating point)
    divided by their 99.5th percentile, the same for all three bands so that colours are kept."""
    from PIL import Image

    from geosr.training.pairs import read_by_gdal  # (not at import: the backbone trainer loads no GIS stack)

    out = []
    for p in paths:
        try:
            if read_by_gdal(p):
                out.append(_read_tiff(p))
                continue
            with Image.open(p) as im:
                if im.mode.startswith("I") or im.mode == "F":  # 16-bit or float grey: converted to RGB, clipped at
                    out.append(_scaled(np.asarray(im, dtype=np.float32)))  # 255 (white; found in review)
                else:
                    out.append(torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).contiguous())
        except (OSError, ValueError) as exc:  # PIL's UnidentifiedImageError and rasterio's errors are OSErrors
            if isinstance(exc, InputError):
                raise
            from geosr.io.rasters import read_failure  # (the GIS stack: not at import)

            raise InputError(f"{p}: not an image that can be read ({read_failure(exc)})") from None
    return out


def _scaled(grey: np.ndarray) -> torch.Tensor:
    """A deep grey image (H, W) as (3, H, W) uint8: divided by its 99.5th percentile, as a deep GeoTIFF is."""
    a = np.nan_to_num(grey, nan=0.0, posinf=0.0, neginf=0.0)
    return torch.from_numpy(np.repeat(_eight_bits(a, a.ravel())[None], 3, axis=0))


def _eight_bits(a: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Deep values ``a`` as uint8: divided by the 99.5th percentile of ``values`` (those with data) to 0-255."""
    return _to_eight(a, _top(values))


def _top(values: np.ndarray) -> float:
    """The 99.5th percentile of ``values``, which a deep image is divided by (0 where none)."""
    return float(np.percentile(values, 99.5)) if values.size else 0.0


def _to_eight(a: np.ndarray, hi: float) -> np.ndarray:
    return np.clip(a / (hi if hi > 0 else 1.0) * 255, 0, 255).round().astype(np.uint8)


# the most values a deep GeoTIFF's percentile is taken from (every n-th beyond): the whole of a 7200 x 7200 image
# in float32 copies peaked at 3.5 GB (found in review)
PERCENTILE_VALUES = 1 << 24


def _read_tiff(p: Path) -> torch.Tensor:
    """A GeoTIFF's default bands as (3, H, W) uint8 (:func:`read_images`), cut to the rows and columns where it has
    data; nodata within counts as 0. Read and converted band by band, each in its own type until then: the image
    as float32 and its copies took 20 bytes a pixel."""
    import rasterio

    from geosr.io.rasters import inspect_raster, some_default_bands

    with warnings.catch_warnings():  # training images need no georeferencing
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        chosen = some_default_bands(inspect_raster(p, require_crs=False))  # (an alpha band alone: refused)
        bands = list(chosen[:3]) if len(chosen) >= 3 else [chosen[0]] * 3
        read: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        with rasterio.open(p) as ds:
            for b in dict.fromkeys(bands):
                band = ds.read(b, masked=True)
                read[b] = (np.ma.getdata(band), np.ma.getmaskarray(band))
            eight_bit = ds.dtypes[bands[0] - 1] == "uint8"
    empty = np.ones(read[bands[0]][1].shape, dtype=bool)  # where no band has data (masked, or not a number)
    for raw, mask in read.values():
        empty &= mask | ~np.isfinite(raw) if raw.dtype.kind == "f" else mask
    if empty.all():  # a blank image of zeros, trained on silently
        raise InputError(f"{p}: holds no valid pixel (every one is nodata or not a number)")
    # cut to where it has data: a scene's nodata margin, read as 0, made black crops trained on (found in review)
    rows, cols = np.flatnonzero(~empty.all(axis=1)), np.flatnonzero(~empty.all(axis=0))
    cut = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    del empty

    def values(b: int) -> np.ndarray:  # band b in float32, its nodata and non-numbers 0
        raw, mask = read[b]
        a = raw[cut].astype(np.float32)
        a[mask[cut]] = 0.0
        return np.nan_to_num(a, copy=False, nan=0.0, posinf=0.0, neginf=0.0)

    out = np.empty((3, rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1), dtype=np.uint8)
    if eight_bit:
        for i, b in enumerate(bands):
            out[i] = values(b).round()
        return torch.from_numpy(out)
    # one divisor for the three bands, from the values with data (of every n-th pixel in a large image)
    step = max(1, -(-3 * out[0].size // PERCENTILE_VALUES))
    hi = _top(np.concatenate([values(b).ravel()[::step][~read[b][1][cut].ravel()[::step]] for b in bands]))
    for i, b in enumerate(bands):
        out[i] = _to_eight(values(b), hi)
    return torch.from_numpy(out)


def image_files(folders: Sequence[Path]) -> list[Path]:
    from geosr.training.pairs import IMAGE_EXTS, images_under

    files = sorted(p for f in folders for p in images_under(Path(f)))  # (a macOS ._x.tif is no image; review)
    if not files:
        raise InputError(f"no images ({', '.join(IMAGE_EXTS)}) under {', '.join(map(str, folders))}")
    return files


def make_batch(images: Sequence[torch.Tensor], scale: int, lr_side: int, batch: int,
               rng: np.random.Generator, kinds: tuple[str, ...] | dict[str, float] | None = None,
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(LR, HR, code) in [0, 1]: random crops, flips and quarter turns, each LR drawn by :func:`blind_degrade`
    (``kinds``: from those families only) and stored as 8 bits. Each crop is degraded with up to twice its side of
    context around it, and its sharpness code (:func:`geosr.models.degradation_code.lr_sharpness`) measured on all
    of that, as a scene's is at inference."""
    side = lr_side * scale
    if not any(min(img.shape[-2:]) >= side for img in images):
        raise InputError(f"no training image holds a {side} x {side} crop (x{scale} with {lr_side}-pixel LR patches)")
    lrs, hrs, codes = [], [], []
    while len(hrs) < batch:
        img = images[int(rng.integers(len(images)))]
        h, w = img.shape[-2:]
        if h < side or w < side:
            continue
        ctx_h, ctx_w = (min(2 * side, n) // scale * scale for n in (h, w))
        y, x = int(rng.integers(h - ctx_h + 1)), int(rng.integers(w - ctx_w + 1))
        region = img[:, y : y + ctx_h, x : x + ctx_w].float() / 255
        if rng.random() < 0.5:
            region = region.flip(-1)
        region = torch.rot90(region, int(rng.integers(4)), dims=(-2, -1))
        lr, _ = blind_degrade(region, scale, rng, kinds)
        lr = (lr * 255).round() / 255
        codes.append(torch.from_numpy(lr_sharpness(lr.numpy())))
        ly, lx = int(rng.integers(lr.shape[-2] - lr_side + 1)), int(rng.integers(lr.shape[-1] - lr_side + 1))
        lrs.append(lr[:, ly : ly + lr_side, lx : lx + lr_side])
        hrs.append(region[:, ly * scale : (ly + lr_side) * scale, lx * scale : (lx + lr_side) * scale])
    return torch.stack(lrs), torch.stack(hrs), torch.stack(codes)


@torch.inference_mode()
def validate(net: torch.nn.Module, images: Sequence[torch.Tensor], scale: int = 4, side: int | None = None,
             kinds: tuple[str, ...] | None = None, device: torch.device | None = None) -> dict[str, float]:
    """Mean PSNR-Y gain over bicubic per named degradation, on the central ``side`` crops of ``images`` (default:
    48 LR pixels, at least 192 HR); ``min`` is the worst of ``kinds`` (default: of all). The network runs on
    ``device`` (default: the CPU), the scores on the CPU."""
    side = side or max(192, 48 * scale)
    out = {}
    for kind in NAMED:
        gains = []
        for img in images:
            h, w = img.shape[-2:]
            s = min(side, h, w) // scale * scale
            hr = img[:, (h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s].float() / 255
            lr = (degrade_named(hr, scale, kind) * 255).round()[None] / 255
            sr = (net((lr * 2 - 1).to(device or "cpu"), scale).float().cpu() + 1) / 2
            crop = (slice(None), slice(scale, -scale), slice(scale, -scale))
            bic = upsample(lr, scale)[0].clamp(0, 1)
            gains.append(psnr_y(sr[0].clamp(0, 1)[crop], hr[crop]) - psnr_y(bic[crop], hr[crop]))
        out[kind] = statistics.fmean(gains)
    out["mean"] = statistics.fmean(out.values())
    out["min"] = min(v for k, v in out.items() if k in (kinds or NAMED))
    return out


def _selected(kinds: tuple[str, ...] | dict[str, float] | None) -> tuple[str, ...] | None:
    """The families whose worst validation gain picks the best weights: those drawn, or those with the top share."""
    if isinstance(kinds, dict):
        top = max(kinds.values())
        return tuple(k for k, v in kinds.items() if v == top)
    return kinds


def with_code(net: torch.nn.Module, weights: dict[str, torch.Tensor] | None = None) -> torch.nn.Module:
    """``net`` with a sharpness-code MLP added (:class:`geosr.models.backbone.BackboneConfig`'s ``code_dims``),
    whose zero last layer leaves every output as it was. ``weights``: a state whose code MLP did not see the scale
    (one input fewer): its MLP is kept, the scale's column starting at zero."""
    from dataclasses import replace

    grown = build_backbone(replace(net.cfg, code_dims=CODE_DIMS))
    state = dict(weights if weights is not None else net.state_dict())
    first = state.get("code_net.0.weight")
    if first is not None and first.shape[1] == CODE_DIMS:
        state["code_net.0.weight"] = torch.cat([first, torch.zeros_like(first[:, :1])], dim=1)
    missing = grown.load_state_dict(state, strict=False)
    if missing.unexpected_keys or any(not k.startswith("code_net.") for k in missing.missing_keys):
        raise InputError(f"cannot add a sharpness code to this backbone: {missing}")
    return grown


def deepened(net: torch.nn.Module, blocks: int) -> torch.nn.Module:
    """``net`` with ``blocks`` blocks instead of its own, its trained blocks spread evenly among new ones whose
    last convolutions (the modulation's 1x1 mixing, the mixer's reduction) are zero: each new block is the
    identity, so the deeper network computes ``net``'s outputs exactly and training starts where ``net`` is
    (Net2Net's function-preserving growth). A sharpness code's MLP gets zero rows for the new blocks."""
    from dataclasses import replace

    if isinstance(net, ExpertBackbone):
        raise InputError("an expert backbone is deepened one expert at a time: train that expert alone")
    old = net.cfg.blocks
    if blocks <= old:
        raise InputError(f"a deepened backbone needs more than its {old} blocks, not {blocks}")
    grown = build_backbone(replace(net.cfg, blocks=blocks))
    at = [round(i * blocks / old) for i in range(old)]  # where each trained block goes
    state = grown.state_dict()
    for k, v in net.state_dict().items():
        if k.startswith("body."):
            i, rest = k.split(".", 2)[1:]
            state[f"body.{at[int(i)]}.{rest}"] = v
        elif k == "code_net.2.weight" or k == "code_net.2.bias":  # (blocks * 2 * dim, ...) rows, block-major
            per_block = v.reshape(old, -1, *v.shape[1:])
            rows = per_block.new_zeros((blocks, *per_block.shape[1:]))
            rows[at] = per_block
            state[k] = rows.reshape(-1, *v.shape[1:])
        else:
            state[k] = v
    for i in sorted(set(range(blocks)) - set(at)):
        torch.nn.init.zeros_(state[f"body.{i}.modulation.aggr.weight"])
        torch.nn.init.zeros_(state[f"body.{i}.mixer.reduce.weight"])
    grown.load_state_dict(state)
    return grown


class _BatchStream(torch.utils.data.IterableDataset):
    """Endless training batches (scale, LR, HR, code), made in a worker process: each worker draws its scales and
    crops from its own generator, seeded by (seed, the run's first step, worker)."""

    def __init__(self, images: Sequence[torch.Tensor], scales: Sequence[int], weights: np.ndarray,
                 cfg: BackboneTrainConfig, start: int) -> None:
        self.images, self.scales, self.p = images, list(scales), weights / weights.sum()
        self.cfg, self.start = cfg, start

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.cfg.seed, self.start, 1 + (info.id if info is not None else 0)])
        torch.set_num_threads(1)
        while True:
            scale = int(rng.choice(self.scales, p=self.p))
            yield (scale, *make_batch(self.images, scale, self.cfg.lr_patch[scale], self.cfg.batch, rng,
                                      self.cfg.kinds))


def _worker_batches(images: Sequence[torch.Tensor], scales: Sequence[int], weights: np.ndarray,
                    cfg: BackboneTrainConfig, start: int):
    """An iterator over :class:`_BatchStream`'s batches from ``cfg.workers`` processes (in turn, so the same for the
    same count), pinned for a copy to CUDA."""
    loader = torch.utils.data.DataLoader(_BatchStream(images, scales, weights, cfg, start), batch_size=None,
                                         num_workers=cfg.workers, prefetch_factor=4,
                                         pin_memory=training_device(cfg.device).type == "cuda")
    return iter(loader)


def training_device(name: str) -> torch.device:
    """``auto`` (CUDA when there is one, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    from geosr.models.device import resolve_device

    return resolve_device(name)  # an unknown name, or CUDA where there is none: one sentence naming `device`


def fit_backbone(
    out: Path,
    train_images: Sequence[torch.Tensor],
    val_images: Sequence[torch.Tensor],
    *,
    init: Path | None = None,
    cfg: BackboneTrainConfig | None = None,
    resume: bool = False,
    minutes: float | None = None,
    log: Callable[[str], None] = print,
    progress: Callable[[int, int, float, int], None] | None = None,
    name: str | None = None,
    record: dict | None = None,
    state_extra: dict | None = None,
) -> dict:
    """Train into ``out`` (``state.*``, ``model.safetensors`` = EMA, ``best.safetensors`` = best validated EMA).
    The checkpoints keep the start's inference settings (reference detail, tiling, halo) and its name unless
    ``name`` is given; ``record`` is added to their spec's training record (e.g. the data);
    ``progress(step, steps, loss, scale)`` is called after every step with that step's loss; ``state_extra`` is
    added to the training state's record."""
    cfg = cfg or BackboneTrainConfig()
    out.mkdir(parents=True, exist_ok=True)
    if init is None and not resume:
        raise InputError("a backbone run starts from converted weights (init) or resumes one")
    device = training_device(cfg.device)
    bf16 = device.type == "cuda" and cfg.precision in ("auto", "bf16")
    # a resumed run's network: its model, or its best weights where the model is unreadable (a kill, a full disk)
    net, spec = load_backbone(init if init is not None else
                              own_checkpoint(out, then="start the run again") or out / "model.safetensors")
    kept = {k: spec[k] for k in ("inference", "tiling", "halo") if k in spec}
    name = name or spec.get("name", "backbone")
    if isinstance(net, ExpertBackbone) and cfg.sharpness_code:
        raise InputError("an expert backbone is blended by the sharpness code already; train it without "
                         "sharpness_code")
    if cfg.sharpness_code and not net.cfg.code_dims:
        if init is None:
            raise InputError("a resumed backbone run keeps its network: add the sharpness code when starting one")
        net = with_code(net)
    net.to(device).train()  # in place
    ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema))
    code_params = list(net.code_net.parameters()) if net.cfg.code_dims else []
    rest = [p for p in net.parameters() if all(p is not q for q in code_params)]
    groups = [{"params": rest, "boost": 1.0}]
    if code_params:
        groups.append({"params": code_params, "boost": cfg.code_lr_boost})
    opt = torch.optim.Adam(groups, lr=cfg.lr, betas=(0.9, 0.99))
    step = load_state(out, net, ema, opt) if resume else 0
    meta = (state_record(out) or {}) if resume else {}
    best = meta.get("best") or {"min": -math.inf}  # written as null before a validation
    rng = np.random.default_rng([cfg.seed, step])
    largest = max(min(img.shape[-2:]) for img in train_images)
    scales = [s for s in cfg.scale_weights if str(s) in net.tails and cfg.lr_patch[s] * s <= largest]
    if not scales:
        raise InputError(f"no training image holds a crop at any of x{', x'.join(map(str, cfg.scale_weights))} "
                         f"(the largest image's shorter side is {largest} px; x{min(cfg.scale_weights)} needs "
                         f"{cfg.lr_patch[min(cfg.scale_weights)] * min(cfg.scale_weights)})")
    weights = np.array([cfg.scale_weights[s] for s in scales], dtype=np.float64)
    val_scale = validation_scale(cfg.scale_weights, scales)
    if best.get("scale", 4) != val_scale:  # a resumed run's best was validated at another scale: not comparable
        best = {"min": -math.inf}
    # the scales it claims: those this run trained (a run at x4 alone claimed its start's four, its x8 and x16
    # heads run on a body fitted at x4 only without a word; found in review)
    trained = sorted(scales)
    t_end = time.monotonic() + 60 * minutes if minutes else math.inf
    batches = _worker_batches(train_images, scales, weights, cfg, step) if cfg.workers > 0 else None

    # the sources behind the start's weights (a resumed run's own record holds them already)
    lineage = inherited_hashes(spec) if init is not None else {}

    def training(at: int) -> dict:
        return {**spec.get("training", {}), **(record or {}), **lineage, "steps": at, "config": cfg.to_dict()}

    def save(at: int, best_so_far: dict) -> None:
        saved_best = best_so_far if math.isfinite(best_so_far["min"]) else None  # JSON has no -Infinity
        # the model first (geosr.training.loop: a kill between the two leaves no model behind its state)
        save_backbone(ema.module, out / "model.safetensors", name=name, sidecar=True, **kept, scales=trained,
                      training=training(at))
        save_state(out, at, net, ema, opt, {"best": saved_best, "config": cfg.to_dict(), **(state_extra or {})})

    try:
        step, best = _loop(net, ema, opt, cfg, device, bf16, train_images, val_images, scales, weights, val_scale,
                           step, best, rng, batches, t_end, log, progress, save,
                           lambda v, at: save_backbone(ema.module, out / "best.safetensors", name=name,
                                                       sidecar=True, **kept, scales=trained,
                                                       training={**training(at), "validation": _rounded(v)},
                                                       metrics={"validation_gain_db": _rounded(v)}))
    finally:  # the workers stop now, also when a step failed (the traceback would keep their iterator alive)
        getattr(batches, "_shutdown_workers", lambda: None)()
    save(step, best)
    if step % cfg.save_every:  # (the last save was not logged: a run shorter than save_every logged none; review)
        log(f"saved at step {step}")
    return {"step": step, "best": best}


def _rounded(scores: dict[str, float]) -> dict[str, float]:
    return {k: round(x, 4) for k, x in scores.items()}


def _loop(net, ema, opt, cfg: BackboneTrainConfig, device: torch.device, bf16: bool, train_images, val_images,
          scales: list[int], weights: np.ndarray, val_scale: int, step: int, best: dict, rng: np.random.Generator,
          batches, t_end: float, log: Callable[[str], None], progress, save: Callable[[int, dict], None],
          save_best: Callable[[dict, int], None]) -> tuple[int, dict]:
    """:func:`fit_backbone`'s steps until ``cfg.steps`` or ``t_end``: (step, best) where they stopped. At a step
    that both validates and saves, the validation comes first, so the saved state knows the best so far."""
    losses: list[float] = []
    t0 = time.monotonic()
    first = step
    while step < cfg.steps and time.monotonic() < t_end:
        if batches is None:
            scale = int(rng.choice(scales, p=weights / weights.sum()))
            made = make_batch(train_images, scale, cfg.lr_patch[scale], cfg.batch, rng, cfg.kinds)
        else:
            scale, *made = next(batches)
        lr, hr, code = (t.to(device, non_blocking=True) for t in made)
        done = step / cfg.steps
        if cfg.schedule_by_time and math.isfinite(t_end):  # the share of the time or of the steps, the larger
            now = time.monotonic()
            done = max(done, first / cfg.steps + (1 - first / cfg.steps) * (now - t0) / max(t_end - t0, 1e-9))
        warm = min(1.0, (step + 1) / cfg.warmup) if cfg.warmup else 1.0
        for g in opt.param_groups:  # cosine from the group's peak to min_lr over the run
            peak = cfg.lr * g.get("boost", 1.0)  # states saved before the groups had it: one group
            g["lr"] = warm * (cfg.min_lr + 0.5 * (peak - cfg.min_lr) * (1 + math.cos(math.pi * min(done, 1.0))))
        # an expert backbone blends each crop's weights by its code, as a scene's at run time: each expert learns
        # from the crops it will be given (routed), in proportion to its share of the mix
        with torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            sr = net(lr * 2 - 1, scale, code if net.uses_code else None)
        loss = F.l1_loss(sr.float(), hr * 2 - 1)
        if not torch.isfinite(loss):
            raise TrainingDivergedError(f"backbone training: the loss is not finite at step {step + 1}; run it again "
                                        "with a lower `lr`")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.clip_grad)
        opt.step()
        ema.update_parameters(net)
        step += 1
        losses.append(loss.item())
        if progress is not None:
            progress(step, cfg.steps, losses[-1], scale)
        if (step % cfg.validate_every == 0 or step == cfg.steps) and val_images:  # (the last step too, as above)
            v = validate(ema.module.eval(), val_images, val_scale, kinds=_selected(cfg.kinds), device=device)
            log("validation " + " ".join(f"{k} {x:+.3f}" for k, x in v.items()))
            if v["min"] > best["min"]:
                best = {**v, "step": step, "scale": val_scale}
                save_best(v, step)
        if step % cfg.save_every == 0:
            save(step, best)  # (said as saved once it is: the log named no save; found in review)
            log(f"saved at step {step}: loss {statistics.fmean(losses[-cfg.save_every:]):.4f}, "
                f"{(time.monotonic() - t0) / len(losses):.2f} s/step")
    return step, best
