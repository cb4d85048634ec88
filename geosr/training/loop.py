"""The training loop behind ``geosr train``.

AdamW with linear warm-up then cosine decay to 10 %, an EMA of the weights, gradient clipping, bf16
autocast on CUDA (the EDM scalings stay fp32), data parallel under ``torchrun`` (one process per device,
gloo on CPU / nccl on CUDA), a training state every ``checkpoint_every`` steps that ``--resume`` continues
from bit-for-bit in its data stream (every batch is a function of (seed, step, rank)), a validation image
grid every ``val_every`` steps, and a JSON-lines log. With ``val_data`` (data the run does not train on) the
EMA model is also scored there every ``val_every`` steps (PSNR-Y of its one-step prediction against bicubic's)
and the best-scoring one is kept as ``best.safetensors``: on small data sets longer training can overfit.
Nothing is pickled: the training state is a safetensors file plus JSON, and the result is a geosr checkpoint
(EMA weights) with its spec.

Noise levels: EDM's ln sigma ~ N(-1.2, 1.2^2), mixed with a share ``p_high_sigma`` drawn log-uniformly in
[sigma_high_min, sigma_max], so that the denoiser is also trained where few-step samplers start. A model
with a learned LR upsampler adds that upsampler's L1 loss against the HR (``upsampler_loss``).

``objective = "upsampler"`` trains that upsampler alone (its L1 loss; the denoiser is not run), e.g. to
pre-train it at LR cost; ``freeze`` keeps parameters fixed by name prefix under either objective, e.g. a
pre-trained upsampler while the denoiser learns on top of it (ResDiff's two stages), or all of the upsampler
but the output layers of scales it was not trained for.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from geosr.conditioning.changes import load_class_table
from geosr.errors import InputError, OptionError
from geosr.models.checkpoint import load_checkpoint, make_spec, save_checkpoint
from geosr.models.configs import ArchConfig
from geosr.models.edm import EDMDenoiser, build_denoiser, edm_loss, sample_sigma
from geosr.models.interface import ConditionBatch
from geosr.models.unet import Condition, make_condition
from geosr.training.config import TrainConfig
from geosr.training.datasets import (
    Pair,
    PairMixture,
    SampleMaker,
    change_pair_folder,
    geotiff_stack,
    refdiff_folder,
    shared_data_pairs,
    shared_synthetic_images,
    synthetic_pairs,
)
from geosr.training.synthetic_change import SyntheticChangeConfig

STATE = "state.safetensors"
STATE_JSON = "state.json"
MODEL = "model.safetensors"
BEST = "best.safetensors"
LOG = "train.log"


@dataclass
class TrainResult:
    checkpoint: str
    steps: int
    resumed_from: int
    seconds: float
    final_loss: float
    ema_loss: float
    log: str
    best_checkpoint: str | None = None  # with val_data: the EMA of the best-scoring validation step
    best_step: int | None = None
    best_val_gain_db: float | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


# ---- data --------------------------------------------------------------------------------------------------------
def build_data(cfg: TrainConfig, sources: tuple[Mapping[str, Any], ...] | None = None,
               ) -> tuple[list[tuple[list[Pair], float]], list[torch.Tensor], list[str]]:
    """(weighted groups of pairs, foreign images for synthetic patches, data descriptions) of ``sources``
    (default: the config's training data)."""
    groups: list[tuple[list[Pair], float]] = []
    foreign: list[torch.Tensor] = []
    described: list[str] = []
    table = load_class_table(cfg.change_table)
    for src in cfg.data if sources is None else sources:
        kind, w = src["kind"], float(src.get("weight", 1.0))
        if kind == "refdiff":
            pairs = refdiff_folder(src["path"], table=table if src.get("table") else None)
        elif kind == "pairs":
            pairs = change_pair_folder(src["path"])
        elif kind == "geotiff":
            pairs = [
                geotiff_stack(hr=src["hr"], lr=src.get("lr"), ref=src.get("ref"), mask=src.get("mask"),
                              map=src.get("map"), scale=int(src.get("scale", cfg.scales[0])), table=table)
            ]
        elif kind == "synthetic":
            pairs = synthetic_pairs(src["paths"])
        else:  # shared
            pairs = shared_data_pairs(src["path"], split="train")
            syn = synthetic_pairs(shared_synthetic_images(src["path"], pairs))
            sw = float(src.get("synthetic_weight", 1.0))
            if syn and sw > 0:
                groups.append((syn, sw))
                foreign.extend(p.target for p in syn)
                described.append(f"synthetic change from {len(syn)} images of {src['path']}")
        if not pairs:
            raise InputError(f"data source {src} holds no usable image")
        groups.append((pairs, w))
        foreign.extend(p.target for p in pairs if p.synthetic)
        described.append(f"{kind}: {len(pairs)} pairs from {src.get('path') or src.get('hr') or 'images'}")
    if not groups:
        raise OptionError("no training data: give at least one data source (--data or the config's 'data')")
    return groups, foreign, described


def init_model(path: str, arch: str | Mapping[str, Any]) -> tuple[EDMDenoiser, list[str]]:
    """The model to fine-tune from the checkpoint ``path``, and the names of its freshly initialised tensors.

    A string ``arch`` keeps the checkpoint's architecture. A mapping extends it (its keys override the
    checkpoint's), e.g. ``{"upsampler_channels": 64}`` adds a learned upsampler: every tensor of the checkpoint
    is loaded into the new model, whose new parts start from their initialisation.
    """
    src, _ = load_checkpoint(path)
    if not isinstance(arch, Mapping):
        return src.train(), []
    cfg = ArchConfig.from_dict({**src.cfg.to_dict(), **arch})
    model = build_denoiser(cfg)
    try:
        missing, unexpected = model.load_state_dict(src.state_dict(), strict=False)
    except RuntimeError as exc:
        first = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln), str(exc))
        raise OptionError(f"--init {path}: the config's architecture does not fit the checkpoint ({first})") from None
    if unexpected:
        raise OptionError(f"--init {path}: the config's architecture has no place for its tensor {unexpected[0]!r}")
    return model.train(), list(missing)


def trainable(model: EDMDenoiser, cfg: TrainConfig) -> list[torch.nn.Parameter]:
    """Mark and return the parameters the run updates: those whose name starts with none of ``cfg.freeze``,
    and under objective "upsampler" only the upsampler's."""
    names = [n for n, _ in model.named_parameters()]
    unknown = [f for f in cfg.freeze if not any(n.startswith(f) for n in names)]
    if unknown:
        raise OptionError(f"freeze: no parameter of the model starts with {unknown[0]!r}")
    train_it = [not n.startswith(cfg.freeze) for n in names]
    if cfg.objective == "upsampler":
        if model.net.upsampler is None:
            raise OptionError("objective 'upsampler' needs a model with a learned upsampler (arch upsampler_channels > 0)")
        train_it = [on and n.startswith("net.upsampler.") for n, on in zip(names, train_it)]
    for (_, p), on in zip(model.named_parameters(), train_it):
        p.requires_grad_(on)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise OptionError(f"freeze {list(cfg.freeze)} leaves nothing to train")
    return params


def _upsampler_trains(model: EDMDenoiser) -> bool:
    up = model.net.upsampler
    return up is not None and any(p.requires_grad for p in up.parameters())


# ---- conditioning ---------------------------------------------------------------------------------------------------
def training_condition(model: EDMDenoiser, batch: ConditionBatch) -> Condition:
    """The network's condition for a batch, built as :class:`DiffusionSuperResolver` builds it."""
    cfg = model.cfg
    lr_up = model.upsample_lr(batch.lr, batch.scale)
    map_ids = batch.map if (batch.map is not None and cfg.n_map_classes) else None
    return make_condition(
        lr_up, batch.ref, batch.ref_valid, batch.change, n_change_classes=cfg.n_change_classes,
        map_ids=map_ids, n_map_classes=cfg.n_map_classes,
    )


def draw_sigma(n: int, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    sigma = sample_sigma(n, generator=gen)
    high = torch.rand(n, generator=gen) < cfg.p_high_sigma
    lo, hi = math.log(cfg.sigma_high_min), math.log(cfg.sigma_max)
    logu = torch.rand(n, generator=gen) * (hi - lo) + lo
    return torch.where(high, logu.exp(), sigma)


# ---- saving the training state without pickle ----------------------------------------------------------------------
def save_state(out: Path, step: int, model: EDMDenoiser, ema: EDMDenoiser, opt: torch.optim.Optimizer, extra: dict) -> None:
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        tensors[f"model.{k}"] = v.detach().cpu().contiguous()
    for k, v in ema.state_dict().items():
        tensors[f"ema.{k}"] = v.detach().cpu().contiguous()
    sd = opt.state_dict()
    scalars: dict[str, dict[str, float]] = {}
    for idx, st in sd["state"].items():
        for name, val in st.items():
            if torch.is_tensor(val) and val.dim() > 0:
                tensors[f"opt.{idx}.{name}"] = val.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[name] = float(val)
    tmp = out / (STATE + ".part")
    save_file(tensors, str(tmp))
    tmp.replace(out / STATE)
    meta = {"step": step, "param_groups": sd["param_groups"], "scalars": scalars, **extra}
    (out / (STATE_JSON + ".part")).write_text(json.dumps(meta, indent=1, default=str))
    (out / (STATE_JSON + ".part")).replace(out / STATE_JSON)


def load_state(out: Path, model: EDMDenoiser, ema: EDMDenoiser, opt: torch.optim.Optimizer) -> int:
    from safetensors.torch import load_file

    if not (out / STATE).exists() or not (out / STATE_JSON).exists():
        raise InputError(f"{out}: no training state to resume from ({STATE} / {STATE_JSON})")
    meta = json.loads((out / STATE_JSON).read_text())
    tensors = load_file(str(out / STATE))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    for idx, sc in meta.get("scalars", {}).items():
        for name, val in sc.items():
            state.setdefault(int(idx), {})[name] = torch.tensor(val, dtype=torch.float32)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return int(meta["step"])


# ---- validation grid ---------------------------------------------------------------------------------------------
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
def score(model: EDMDenoiser, batches: list[tuple[ConditionBatch, torch.Tensor]], *, device: torch.device | str = "cpu",
          upsampler_only: bool = False, sigma_max: float = 80.0) -> dict[str, float]:
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
    Image.fromarray(arr).save(path)


def _stream(cfg: TrainConfig, groups: list[tuple[list[Pair], float]], foreign: list[torch.Tensor]) -> PairMixture:
    table = load_class_table(cfg.change_table)
    maker = SampleMaker(crop=cfg.crop, scales=cfg.scales, degradation=cfg.degradation, p_no_ref=cfg.p_no_ref,
                        changed_ids=tuple(i for i, c in enumerate(table.classes) if c.changed) or (0,), foreign=foreign,
                        synthetic=SyntheticChangeConfig(**cfg.synthetic))
    return PairMixture(groups, maker, batch_size=cfg.batch_size, n_change_classes=table.n_classes,
                       n_map_classes=cfg.n_map_classes, seed=cfg.seed)


def validation_set(cfg: TrainConfig) -> tuple[list[tuple[ConditionBatch, torch.Tensor]], list[str]]:
    """The run's fixed validation batches (the first ``val_batches`` of a stream over ``val_data``, made as the
    training samples are), and the descriptions of their sources."""
    groups, foreign, described = build_data(cfg, cfg.val_data)
    stream = _stream(cfg, groups, foreign)
    return [stream.batch(i) for i in range(cfg.val_batches)], described


# ---- the loop ------------------------------------------------------------------------------------------------------
def _dist() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


def train(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    progress: Callable[[int, int, float], None] | None = None,
    init: str | None = None,
    max_seconds: float | None = None,
) -> TrainResult:
    """Train (or continue) a model as ``cfg`` says; returns where the checkpoint is.

    ``init``: a geosr checkpoint to start from (fine-tuning). ``max_seconds``: stop (and save) after
    this much wall time even if ``cfg.steps`` is not reached.
    """
    t0 = time.perf_counter()
    world, rank, local = _dist()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if (torch.cuda.is_available() and cfg.device != "cpu") else "gloo"
        torch.distributed.init_process_group(backend)
    if cfg.device == "auto":
        device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(cfg.device)
    use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    table = load_class_table(cfg.change_table)
    n_change = table.n_classes

    groups, foreign, described = build_data(cfg)
    stream = _stream(cfg, groups, foreign)
    if stream.skipped:
        described.append(f"left out, smaller than the {cfg.crop}-px crop: {', '.join(stream.skipped)}")
    val_set: list[tuple[ConditionBatch, torch.Tensor]] = []
    if cfg.val_data and rank == 0:
        val_set, v_described = validation_set(cfg)
        described.extend(f"validation ({cfg.val_batches} fixed batches) {d}" for d in v_described)

    torch.manual_seed(cfg.seed)
    if init:
        model, fresh = init_model(init, cfg.arch)
        described.append(f"initialised from {init}" + (f" ({len(fresh)} new tensors)" if fresh else ""))
    else:
        model = build_denoiser(cfg.arch, n_bands=cfg.bands, n_change_classes=n_change, n_map_classes=cfg.n_map_classes)
    model = model.to(device)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    params = trainable(model, cfg)
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    start = 0
    if resume:
        start = load_state(out, model, ema, opt)
    up_only = cfg.objective == "upsampler"
    up_loss = cfg.upsampler_loss if _upsampler_trains(model) else 0.0  # a frozen upsampler's loss is a constant
    net = model
    if world > 1 and not up_only:  # the upsampler alone runs outside DDP: its gradients are averaged below
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local] if device.type == "cuda" else None)

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))

    val_batch, val_hr = val_set[0] if val_set else stream.batch(10**9)
    best_gain, best_step = -math.inf, None
    if resume and (out / STATE_JSON).exists():
        saved = json.loads((out / STATE_JSON).read_text()).get("best") or {}
        best_gain, best_step = saved.get("gain_db", -math.inf), saved.get("step")
    log_path = out / LOG
    log = log_path.open("a") if rank == 0 else None
    if log is not None:
        log.write(json.dumps({"event": "start", "step": start, "world": world, "device": str(device),
                              "data": described, "config": cfg.to_dict()}, default=str) + "\n")
    gen = torch.Generator().manual_seed(cfg.seed * 1000003 + rank + 7919 * start)
    loss_avg, last = None, float("nan")
    step = start
    per_rank_steps = cfg.steps
    try:
        while step < per_rank_steps:
            batch, hr = stream.batch(step * world + rank)
            batch, hr = batch.to(device), hr.to(device)
            if device.type == "cpu":
                hr = hr.contiguous(memory_format=torch.channels_last)
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            ctx = torch.autocast("cuda", dtype=torch.bfloat16) if (use_bf16 and device.type == "cuda") else _null()
            if up_only:
                with ctx:
                    loss = (model.upsample_lr(batch.lr, batch.scale).float() - hr).abs().mean()
            else:
                cond = training_condition(model, batch)
                if device.type == "cpu":
                    cond = cond.map_fn(lambda t: t.contiguous(memory_format=torch.channels_last))
                sigma = draw_sigma(hr.shape[0], cfg, gen).to(device)
                noise = torch.randn(hr.shape, generator=gen).to(device)
                with ctx:
                    loss = edm_loss(net, hr, cond, sigma=sigma, noise=noise) if world == 1 else _ddp_loss(net, model, hr, cond, sigma, noise)
                    if up_loss:
                        loss = loss + up_loss * (cond.lr.float() - hr).abs().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if up_only and world > 1:
                for p in params:
                    torch.distributed.all_reduce(p.grad)
                    p.grad /= world
            gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            decay = min(cfg.ema, (1 + step) / (10 + step))
            with torch.no_grad():
                for pe, pm in zip(ema.parameters(), model.parameters()):
                    pe.lerp_(pm.detach(), 1 - decay)
                for be, bm in zip(ema.buffers(), model.buffers()):
                    be.copy_(bm)
            step += 1
            last = float(loss.detach())
            loss_avg = last if loss_avg is None else 0.98 * loss_avg + 0.02 * last
            if progress is not None and rank == 0:
                progress(step, per_rank_steps, loss_avg)
            if log is not None and (step % cfg.log_every == 0 or step == per_rank_steps):
                log.write(json.dumps({"step": step, "loss": round(last, 5), "loss_avg": round(loss_avg, 5),
                                      "grad_norm": round(float(gnorm), 4), "lr": lr_at(step - 1), "scale": batch.scale,
                                      "seconds": round(time.perf_counter() - t0, 1)}) + "\n")
                log.flush()
            if rank == 0 and cfg.val_every and step % cfg.val_every == 0:
                vb = val_batch.to(device)
                with torch.no_grad():
                    sr = ema.upsample_lr(vb.lr, vb.scale) if up_only else predict(ema, vb, cfg.sigma_max)
                image_grid(val_batch, sr.cpu(), val_hr, out / f"val_{step:07d}.png")
                if val_set:
                    v = score(ema, val_set, device=device, upsampler_only=up_only, sigma_max=cfg.sigma_max)
                    better = v["gain_db"] > best_gain
                    if better:
                        best_gain, best_step = v["gain_db"], step
                        _save_model(out / BEST, ema, cfg, table, described, step, time.perf_counter() - t0, world, device,
                                    validation=v)
                    if log is not None:
                        log.write(json.dumps({"event": "val", "step": step, **{k: round(x, 4) for k, x in v.items()},
                                              "best": better}) + "\n")
            timed_out = max_seconds is not None and time.perf_counter() - t0 > max_seconds
            if rank == 0 and (step % cfg.checkpoint_every == 0 or step == per_rank_steps or timed_out):
                best = {"gain_db": best_gain, "step": best_step} if best_step is not None else None
                save_state(out, step, model, ema, opt, {"config": cfg.to_dict(), "best": best})
                _save_model(out / MODEL, ema, cfg, table, described, step, time.perf_counter() - t0, world, device)
            if timed_out:
                break
    finally:
        if log is not None:
            log.write(json.dumps({"event": "end", "step": step, "seconds": round(time.perf_counter() - t0, 1)}) + "\n")
            log.close()
    if world > 1:
        torch.distributed.barrier()
    return TrainResult(checkpoint=str(out / MODEL), steps=step, resumed_from=start, seconds=time.perf_counter() - t0,
                       final_loss=last, ema_loss=float(loss_avg) if loss_avg is not None else float("nan"), log=str(log_path),
                       best_checkpoint=str(out / BEST) if best_step is not None else None, best_step=best_step,
                       best_val_gain_db=None if best_step is None else round(best_gain, 4))


def _ddp_loss(net, model, hr, cond, sigma, noise):
    """EDM loss through the DDP wrapper (so gradients are all-reduced)."""

    class _Wrap:
        sigma_data = model.sigma_data

        def __call__(self, x, s, c):
            return net(x, s, c)

    return edm_loss(_Wrap(), hr, cond, sigma=sigma, noise=noise)  # type: ignore[arg-type]


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _save_model(path: Path, ema: EDMDenoiser, cfg: TrainConfig, table, described: list[str], step: int,
                seconds: float, world: int, device: torch.device, validation: dict[str, float] | None = None) -> None:
    import platform

    spec = make_spec(
        ema,
        name=cfg.name,
        scales=list(cfg.scales),
        band_names=list(cfg.band_names)[: cfg.bands] + [f"band{i + 1}" for i in range(len(cfg.band_names), cfg.bands)],
        change_classes={str(i): c.name for i, c in enumerate(table.classes)},
        change_table=table.to_dict(),
        normalization={"kind": "robust-stretch", "percentiles": [1.0, 99.0], "range": [-1.0, 1.0],
                       "reference": "harmonized to the LR (per-band mean/std at LR scale over unchanged pixels)"},
        halo=2,
        inference=dict(cfg.inference),
        training={
            "steps": step, "seconds": round(seconds, 1), "processes": world, "device": str(device),
            "hardware": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads" if device.type == "cpu"
            else torch.cuda.get_device_name(device),
            "data": described, "config": cfg.to_dict(), "description": cfg.description,
            **({"validation": {k: round(x, 4) for k, x in validation.items()}} if validation else {}),
        },
    )
    save_checkpoint(path, ema, spec)


__all__ = ["train", "TrainResult", "build_data", "trainable", "training_condition", "predict", "score", "validation_set",
           "save_state", "load_state"]
