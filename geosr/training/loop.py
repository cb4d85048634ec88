"""The training loop behind ``geosr train``.

AdamW with linear warm-up then cosine decay to 10 % (``torch.optim.lr_scheduler.LambdaLR``), an EMA of the
weights (``torch.optim.swa_utils.AveragedModel``), gradient clipping, bf16 autocast on CUDA (the EDM scalings
stay fp32), data parallel under ``torchrun`` (one process per device, gloo on CPU / nccl on CUDA), a training
state every ``checkpoint_every`` steps that ``--resume`` continues from bit-for-bit in its data stream (every
batch is a function of (seed, step, rank)), validation every ``val_every`` steps
(:mod:`geosr.training.validation`), and a JSON-lines log. Nothing is pickled: the training state is a
safetensors file plus JSON, and the result is a geosr checkpoint (EMA weights) with its spec
(:mod:`geosr.training.state`). The loss is :mod:`geosr.training.objective`'s.

``freeze`` keeps parameters fixed by name prefix, e.g. a pre-trained upsampler while the denoiser learns on
top of it (ResDiff's two stages), or all of the upsampler but the output layers of scales it was not trained for.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch.optim.lr_scheduler import LambdaLR
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from geosr.conditioning.changes import load_change_classes
from geosr.errors import (
    GeoSRError,
    InputError,
    OptionError,
    OutputWriteError,
    TrainingDivergedError,
    names_too_long_are_input_errors,
)
from geosr.io.lock import JobLock
from geosr.io.outputs import os_reason
from geosr.models.backbone_checkpoint import is_backbone_spec
from geosr.models.checkpoint import load_checkpoint, read_spec
from geosr.models.configs import ArchConfig, get_config
from geosr.models.device import resolve_device
from geosr.models.edm import EDMDenoiser, build_denoiser
from geosr.models.registry import bundled_checkpoints, resolve_checkpoint
from geosr.options import TrainOptions
from geosr.options.declare import check_callable
from geosr.training.config import (
    BACKBONE_ARCHS,
    TrainConfig,
    absolute_backbone,
    absolute_sources,
    load_config,
    recorded_sources,
    refuse_diffusion_only,
)
from geosr.training.objective import denoiser_loss, upsampler_loss
from geosr.training.outputs import LOCK, REPLACED
from geosr.training.samples import sample_stream
from geosr.training.sources import data_fingerprint, load_sources, source_for_path
from geosr.training.state import (
    BEST,
    LOG,
    MODEL,
    STATE,
    STATE_JSON,
    StateMismatchError,
    initialised_from,
    load_state,
    own_checkpoint,
    refuse_changed_settings,
    run_folder,
    save_model,
    save_state,
    saved_best,
    saved_tensors,
    state_record,
)
from geosr.training.validation import Validation, validation_set


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
    best_val_basis: str | None = None  # what best_val_gain_db measures where it is not the mean gain (arch lite)
    planned_steps: int | None = None  # the run's `steps`; more than ``steps`` when `max_minutes` stopped it first
    warnings: list[str] = field(default_factory=list)  # data the run left out (also in its log's data list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def training_config(config: TrainConfig | str | Path | None = None, *, data: Sequence[Any] | None = None,
                    val_data: Sequence[Any] | None = None, **overrides: Any) -> TrainConfig:
    """A run's config: ``config`` (a TrainConfig, a .toml / .yaml / .json file, or None: the defaults) with
    ``overrides`` of its fields (None: keep), and ``data`` / ``val_data`` as source entries or data paths (their
    kind read from the layout, :func:`geosr.training.sources.source_for_path`)."""
    for key, given in (("data", data), ("val_data", val_data)):
        if given:
            overrides[key] = tuple(s if isinstance(s, Mapping) else source_for_path(s) for s in given)
    if isinstance(config, TrainConfig):
        cfg = refuse_diffusion_only(config.replace(**overrides), overrides)
    else:
        cfg = load_config(config, **overrides)
    return cfg.replace(data=absolute_sources(cfg.data), val_data=absolute_sources(cfg.val_data),
                       backbone=absolute_backbone(cfg.backbone))


# ---- the model ------------------------------------------------------------------------------------------------------
def init_model(path: str, arch: str | Mapping[str, Any]) -> tuple[EDMDenoiser, list[str]]:
    """The model to fine-tune from the checkpoint ``path``, and the names of its freshly initialised tensors.

    A string ``arch`` keeps the checkpoint's architecture. A mapping extends it (its keys override the
    checkpoint's), e.g. ``{"upsampler_channels": 64}`` adds a learned upsampler: every tensor of the checkpoint
    is loaded into the new model, whose new parts start from their initialisation.
    """
    try:  # a bundled model's name (`geosr models`) or a checkpoint's path
        resolved = resolve_checkpoint(path)
    except OptionError:  # not the registry's list of every model: bicubic and the like are no checkpoints
        bundled = [n for n, p in bundled_checkpoints().items() if not is_backbone_spec(read_spec(p))]
        raise OptionError(f"init {path!r} is neither a checkpoint file nor a bundled model ({', '.join(bundled)})",
                          param="init") from None
    if is_backbone_spec(read_spec(resolved)):
        raise OptionError(f"init {path}: an LR-space backbone, not a diffusion model: fine-tune it with `arch` lite, "
                          "or name it as a denoiser's base (the config's backbone)", param="init")
    src, _ = load_checkpoint(resolved)
    if not isinstance(arch, Mapping):
        return src.train(), []
    cfg = ArchConfig.from_dict({**src.cfg.to_dict(), **arch})
    refuse_unloadable(cfg)
    model = build_denoiser(cfg)
    try:
        missing, unexpected = model.load_state_dict(src.state_dict(), strict=False)
    except RuntimeError as exc:
        first = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln), str(exc))
        raise OptionError(f"init {path}: the config's architecture does not fit the checkpoint ({first})",
                          param="init") from None
    if unexpected:
        raise OptionError(f"init {path}: the config's architecture has no place for its tensor {unexpected[0]!r}",
                          param="init")
    return model.train(), list(missing)


def refuse_unloadable(arch: ArchConfig) -> None:
    """Refuse (before anything is built or written) an architecture whose checkpoint geosr's loader would refuse
    (:func:`geosr.models.spec_bounds.check_spec`): a run with head_channels 5 trained, then its model could not be
    used, and an odd base_channels was an internal error (found in review)."""
    from geosr.errors import ModelFileError
    from geosr.models.spec_bounds import check_spec

    try:
        check_spec({"arch": arch.to_dict()}, "arch")
    except ModelFileError as exc:
        said = str(exc).removeprefix("arch: spec field ").replace("'arch.", "'", 1)
        raise OptionError(f"arch: {said} (geosr's loader would refuse the model this run writes)",
                          param="arch") from None


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
            raise OptionError("objective 'upsampler' needs a model with a learned upsampler "
                              "(arch upsampler_channels > 0)")
        train_it = [on and n.startswith("net.upsampler.") for n, on in zip(names, train_it)]
    for (_, p), on in zip(model.named_parameters(), train_it):
        p.requires_grad_(on)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise OptionError(f"freeze {list(cfg.freeze)} leaves nothing to train")
    return params


def backbone_base(name: str, model: EDMDenoiser, device: torch.device) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """(lr, scale) -> the frozen prediction of the backbone ``name`` (bundled name or checkpoint), the base a
    residual ``model`` learns the detail on (training's ``backbone``). Each crop is predicted on its own (a run
    predicts whole scenes, with scene-aligned windows)."""
    from geosr.models.backbone_checkpoint import load_backbone

    path = resolve_checkpoint(name)
    if not is_backbone_spec(read_spec(path)):
        raise OptionError(f"backbone {name}: {path} is not an LR-space backbone (`geosr models` lists them)")
    if not model.residual:
        raise OptionError(f"backbone {name}: the denoiser must be residual (arch residual true) to learn on a base")
    net, _ = load_backbone(path, device=device)
    net = net.eval().requires_grad_(False)

    def base(lr: torch.Tensor, scale: int) -> torch.Tensor:
        with torch.no_grad():
            return net(lr.float(), scale).float()

    return base


def ema_of(model: torch.nn.Module, decay: float) -> AveragedModel:
    """An EMA of ``model``'s weights (its buffers copied): after the n-th average (``n_averaged`` counts the
    initial weights too) ema = d * ema + (1 - d) * weights with d = min(decay, n / (n + 9)), a warm-up that lets
    the EMA follow the first steps closely."""

    def warm_ema(ema_params, params, n_averaged) -> None:
        n = int(n_averaged)
        get_ema_multi_avg_fn(min(decay, n / (n + 9)))(ema_params, params, n_averaged)

    ema = AveragedModel(model, multi_avg_fn=warm_ema, use_buffers=False)
    ema.module.eval().requires_grad_(False)
    ema.n_averaged.fill_(1)
    return ema


def warmup_cosine(cfg: TrainConfig) -> Callable[[int], float]:
    """The learning rate of step s as a share of ``cfg.lr``: (s + 1) / warmup during the warm-up, then a cosine
    from 1 down to 0.1 at ``cfg.steps`` (and 0.1 beyond)."""

    def factor(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return factor


def lr_schedule(opt: torch.optim.Optimizer, cfg: TrainConfig, start: int) -> LambdaLR:
    """:func:`warmup_cosine` of ``cfg.lr`` from step ``start`` on (a resumed run takes the config's peak rate)."""
    for group in opt.param_groups:
        group["initial_lr"] = cfg.lr
    return LambdaLR(opt, warmup_cosine(cfg), last_epoch=start - 1)


# ---- the loop ----------------------------------------------------------------------------------------------------
def _dist() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


def lead_process() -> bool:
    """Whether this process reports the run: the only one, or rank 0 of a ``torchrun`` job (the others train
    and keep quiet)."""
    return _dist()[1] == 0


BF16_ON_CPU = "`precision` bf16 applies on CUDA only (on the CPU bf16 is slower): this run trains in float32"


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's CPU threads set to ``threads`` (0: left as they are) while the run lasts, then put back: a Python
    caller's later work (an upscale, whose bytes depend on its threads) runs as before. At most the machine's CPUs
    (more only slowed a step, 100x at 5000 on 2 cores; 100000 crashed torch)."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(min(threads, os.cpu_count() or 1))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _device(cfg: TrainConfig, world: int, local: int) -> torch.device:
    """Start the process group (under torchrun) and pick the device: under torchrun, CUDA is the GPU of the
    process's local rank (``cuda`` too: as ``cuda:0`` every process took the first GPU, and DDP failed)."""
    device = resolve_device(cfg.device)  # an unknown name, or CUDA where there is none: one sentence, exit 2
    if device.type == "cuda" and (world > 1 or cfg.device.strip().lower() == "auto"):
        if device.index is not None:
            raise OptionError(f"device {cfg.device}: under torchrun each process takes the GPU of its local rank; "
                              "give cuda or auto (CUDA_VISIBLE_DEVICES picks the GPUs)", param="device")
        device = torch.device(f"cuda:{local}")
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


class _Run:
    """One training run in progress: the model, its EMA, optimizer, schedule, data stream and log."""

    def __init__(self, cfg: TrainConfig, *, resume: bool, init: str | None, overwrite: bool,
                 arch_named: str | None = None) -> None:
        if resume and init:  # the run's own weights go on: an --init would be ignored, yet recorded as used
            raise OptionError("`resume` continues the run's own weights and `init` starts a new run from others: "
                              "give one of them", param="init")
        self.t0 = time.perf_counter()
        self.arch_named = arch_named  # an architecture the caller named (an `init`'s other is warned of)
        self.cfg, self.out = cfg, Path(cfg.out)
        self.world, self.rank, self.local = _dist()
        self.device = _device(cfg, self.world, self.local)
        folder = run_folder(self.out)
        if self.rank == 0 and not resume:
            folder.check(overwrite=overwrite)
        record = self.record = state_record(self.out) if resume else None
        if resume:  # before anything is read: a run resumed with other data or another model is refused
            refuse_changed_settings(self.out, record, cfg.to_dict())
        self.table = load_change_classes(cfg.change_table)
        self.warnings: list[str] = []
        groups, foreign, self.described = load_sources(cfg, warnings=self.warnings)
        self.data_fingerprint = data_fingerprint(groups)
        then = (record or {}).get("data_fingerprint")
        if resume and isinstance(then, dict) and {k: v for k, v in then.items() if k != "validation"} != \
                self.data_fingerprint:  # (the paths alone were compared)
            now = self.data_fingerprint["pairs"]
            how = f"its sources held {then.get('pairs')} pairs then and {now} now" if then.get("pairs") != now else \
                f"the images or labels of its {now} pairs changed since"
            raise OptionError(f"resume: the run in {self.out} was started on other data: {how}; restore them, or start "
                              "another run", param="resume")
        self.stream = sample_stream(cfg, groups, foreign)
        if self.stream.skipped:
            self.described.append(f"left out, smaller than the {cfg.crop}-px crop: {', '.join(self.stream.skipped)}")
        if self.stream.no_data:
            self.described.append(f"left out, no {cfg.crop}-px crop of data: {', '.join(self.stream.no_data)}")
        self.warnings.extend(self.stream.left_out(cfg.crop))
        val_set = []
        if cfg.val_data and self.rank == 0:
            seen: dict = {}
            val_set, v_described = validation_set(cfg, groups, warnings=self.warnings, fingerprint=seen)
            # the best weights are chosen by comparing scores on these: the same data, or refused (found in review)
            if resume and isinstance(then, dict) and isinstance(then.get("validation"), dict) and \
                    then["validation"] != seen:
                raise OptionError(f"resume: the run in {self.out} was started with other validation data "
                                  "(`val_data`): its best weights were chosen by their scores there; restore them, "
                                  "or start another run", param="resume")
            self.data_fingerprint = {**self.data_fingerprint, "validation": seen}
            self.described.extend(f"validation ({cfg.val_batches} fixed batches) {d}" for d in v_described)
        started_from = None
        own = None
        if resume and not init:
            try:
                own = own_checkpoint(self.out, then="")
            except OptionError:  # neither readable: the state's weights go into what the settings build (checked
                # there: a run from an extended `init` cannot; found in review, where removing them was a dead end)
                self.warnings.append(f"{self.out / MODEL} cannot be read: the run resumes from its training state "
                                     "with the architecture its settings build, and its next save writes the model "
                                     "anew")
        if own is not None:
            # the run's own checkpoint has the architecture it was started with (an --init's, e.g. a learned
            # upsampler that cfg.arch alone does not name); load_state then restores its weights and optimizer
            init = str(own)
            started_from = initialised_from(own)
            self.arch_named = None  # (its architecture is the run's; a run from `init` with another named kept going)
        try:
            self._build(init, started_from)
            if resume and isinstance((record or {}).get("start"), dict):  # the name and inference settings the run
                # started with, as its state recorded them: a model file put in the folder since gave its own, and
                # one removed lost them (found in review)
                self.start_spec = record["start"]  # type: ignore[index]
            self.start = load_state(self.out, self.model, self.ema, self.opt) if resume else 0
        except InputError as exc:  # the checks of an `init`'s fit, and the state's weights not fitting what it builds
            if own is None or not (exc.param == "init" or isinstance(exc, StateMismatchError)):
                raise
            # its checks spoke of an `init` the user never gave, and "start again with overwrite" (found in review)
            why = str(exc).split(": ", 1)[-1].split("; ")[0]
            raise OptionError(f"resume: {own} is not the model this run saved ({why}); put the run's own back, or "
                              f"remove it to resume from the training state ({STATE})", param="resume") from None
        # (within the 64 bits a generator takes: any seed `seed` allows; the same stream as before below them)
        self.gen = torch.Generator().manual_seed((cfg.seed * 1000003 + self.rank + 7919 * self.start) % 2**64)
        if resume:  # the random streams where the unbroken run had them (each process's own, process 0 saved them)
            self._restore_rng(saved_tensors(self.out))
        self.sched = lr_schedule(self.opt, cfg, self.start)
        if self.rank == 0 and not resume:
            folder.prepare(overwrite=overwrite)
        self.out.mkdir(parents=True, exist_ok=True)
        self.validation = Validation(cfg, self.out, val_set, val_set[0] if val_set else self.stream.batch(10**9),
                                     saved_best(self.out) if resume else (-math.inf, None))
        self.step, self.last = self.start, float("nan")
        # the running mean of the loss goes on where the unbroken run had it (process 0's, as the log shows it)
        self.loss_avg = (record or {}).get("loss_avg") if self.rank == 0 else None
        self.log = (self.out / LOG).open("a", encoding="utf-8") if self.rank == 0 else None
        self._write({"event": "start", "step": self.start, "world": self.world, "device": str(self.device),
                     "data": self.described, "config": cfg.to_dict()}, default=str)

    def _build(self, init: str | None, started_from: list[str] | None = None) -> None:
        """The model, its EMA and optimizer; from ``init`` when given. ``started_from``: a resumed run's own
        checkpoint is ``init``, and what the run was first initialised from is described instead."""
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        # the start's name and inference settings (steps, LR-consistency, reference detail) go on unless the config
        # gives its own: a fine-tuned default ran 9x slower without its one-step setting and reference detail
        self.start_spec: dict = {}
        if init:
            model, fresh = init_model(init, cfg.arch)
            if self.arch_named is not None and self.arch_named != model.cfg.name:  # kept, as documented, and said:
                # `--arch small` beside a tiny checkpoint trained the tiny model without a word (found in review)
                self.warnings.append(f"init {init}: the checkpoint is a {model.cfg.name} model and keeps its "
                                     f"architecture; `arch` {self.arch_named} is not used (a table of settings "
                                     "extends it)")
            self.start_spec = read_spec(resolve_checkpoint(init))
            self.described.extend(started_from if started_from is not None else
                                  [f"initialised from {init}" + (f" ({len(fresh)} new tensors)" if fresh else "")])
            if model.cfg.n_bands != cfg.bands:  # else a shape error on the first step (exit 1)
                n = model.cfg.n_bands
                raise OptionError(f"init {init}: the checkpoint takes {n} band{'s' * (n != 1)}, and the run's images "
                                  f"have {cfg.bands} (the config's bands); give images of {n} band{'s' * (n != 1)} "
                                  f"with bands = {n}, or start from another checkpoint", param="init")
            if model.cfg.n_change_classes != self.table.n_classes:  # its spec would say one table, its weights another
                raise OptionError(f"init {init}: the checkpoint's change inputs have {model.cfg.n_change_classes} "
                                  f"classes, and the run's change_table {self.table.name!r} has "
                                  f"{self.table.n_classes}; set change_table to the table it was trained with",
                                  param="init")
        else:
            try:
                refuse_unloadable(get_config(cfg.arch, n_bands=cfg.bands, n_change_classes=self.table.n_classes,
                                              n_map_classes=cfg.n_map_classes))
                model = build_denoiser(cfg.arch, n_bands=cfg.bands, n_change_classes=self.table.n_classes,
                                       n_map_classes=cfg.n_map_classes)
            except OptionError as exc:  # an unknown name: the diffusion models' architectures, and the backbone's
                if isinstance(cfg.arch, str) and str(exc).startswith("unknown architecture '"):
                    raise OptionError(f"{exc}, or {' or '.join(BACKBONE_ARCHS)} (the LR-space model)",
                                      param=exc.param) from None
                raise
        step = model.cfg.downsampling  # the U-Net halves the crop's grid: a crop it cannot halve fails mid-network
        if cfg.crop % step:
            raise OptionError(f"the crop ({cfg.crop} HR px) must be a multiple of {step} for this architecture (its "
                              "U-Net's coarsest level)")  # from a flag or the config's file: not named as either
        model = model.to(self.device)
        if self.device.type == "cpu":
            model = model.to(memory_format=torch.channels_last)
        if cfg.backbone:
            model.base_fn = backbone_base(cfg.backbone, model, self.device)
            self.described.append(f"base: the prediction of backbone {cfg.backbone} (frozen)")
        self.model, self.ema = model, ema_of(model, cfg.ema)
        self.params = trainable(model, cfg)
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        self.up_only = cfg.objective == "upsampler"
        up = model.net.upsampler
        trains_up = up is not None and any(p.requires_grad for p in up.parameters())
        self.up_weight = cfg.upsampler_loss if trains_up else 0.0  # a frozen upsampler's loss is a constant
        self.net = model
        if self.world > 1 and not self.up_only:  # the upsampler alone runs outside DDP: see train_step
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and self.device.type == "cuda")
        self.bf16 = use_bf16 and self.device.type == "cuda"
        if cfg.precision == "bf16" and not self.bf16:  # (the log records the config's bf16: say what ran)
            self.warnings.append(BF16_ON_CPU)

    def _rng_states(self) -> dict[str, torch.Tensor]:
        """The states of the random streams a step draws from: the noise levels' generator, torch's own (dropout,
        the synthetic change) and, on CUDA, the device's."""
        states = {"noise": self.gen.get_state(), "torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            states["cuda"] = torch.cuda.get_rng_state(self.device)
        return states

    def _all_rng_states(self) -> dict[str, torch.Tensor]:
        """:meth:`_rng_states` of every process, gathered (a collective: every process calls it at the same step);
        rank r's under ``NAME.rankR``, rank 0's under ``NAME``."""
        states = self._rng_states()
        if self.world == 1:
            return states
        on = self._collective_device()
        gathered: dict[str, torch.Tensor] = {}
        for name, state in states.items():
            parts = [torch.empty_like(state, device=on) for _ in range(self.world)]
            torch.distributed.all_gather(parts, state.to(on))
            gathered.update({name if r == 0 else f"{name}.rank{r}": p.cpu() for r, p in enumerate(parts)})
        return gathered

    def _restore_rng(self, states: dict[str, torch.Tensor]) -> None:
        """Set this process's streams as :meth:`_all_rng_states` saved them (a state saved without them, e.g. by
        fewer processes, keeps the reseeded ones)."""
        own = {k.removesuffix(f".rank{self.rank}"): v for k, v in states.items()
               if (k.endswith(f".rank{self.rank}") if self.rank else "." not in k)}
        if "noise" in own:
            self.gen.set_state(own["noise"])
        if "torch" in own:
            torch.set_rng_state(own["torch"])
        if "cuda" in own and self.device.type == "cuda":
            torch.cuda.set_rng_state(own["cuda"], self.device)

    def _collective_device(self) -> torch.device:
        """Where the tensors of a collective live: the process's device under nccl, the CPU under gloo."""
        return self.device if torch.distributed.get_backend() == "nccl" else torch.device("cpu")

    def _agreed(self, flag: bool) -> bool:
        """Whether any process says ``flag`` (a collective): every process then stops, and saves, at one step
        (were one to stop alone, the others would wait for it at their next step)."""
        if self.world == 1:
            return flag
        on = self._collective_device()
        vote = torch.tensor([int(flag)], device=on)
        torch.distributed.all_reduce(vote, op=torch.distributed.ReduceOp.MAX)
        return bool(vote.item())

    def _write(self, record: dict, **kw: Any) -> None:
        if self.log is not None:
            self.log.write(json.dumps(record, **kw) + "\n")
            self.log.flush()

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.bf16 else nullcontext()

    def train_step(self) -> tuple[float, int, float]:
        """One optimizer step on the batch of (step, rank): (grad norm, scale, learning rate used)."""
        batch, hr = self.stream.batch(self.step * self.world + self.rank)
        batch, hr = batch.to(self.device), hr.to(self.device)
        if self.device.type == "cpu":
            hr = hr.contiguous(memory_format=torch.channels_last)
        if self.up_only:
            with self.autocast():
                loss = upsampler_loss(self.model, batch, hr)
        else:
            loss = denoiser_loss(self.model, self.net, batch, hr, self.cfg, self.gen, upsampler_weight=self.up_weight,
                                 autocast=self.autocast())
        if not torch.isfinite(loss):  # stopped before a step or a save makes the weights NaN (they were saved, exit 0)
            saved = (self.out / MODEL).exists()
            raise TrainingDivergedError(
                f"the training loss is not finite at step {self.step + 1}: the run diverged (a learning rate of "
                f"{self.cfg.lr:g} too high for it?); "
                f"{'the weights saved before are kept' if saved else 'no weights were saved'}; run it again with a "
                "lower `lr`")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.up_only and self.world > 1:
            for p in self.params:
                torch.distributed.all_reduce(p.grad)
                p.grad /= self.world
        gnorm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        lr = self.opt.param_groups[0]["lr"]
        self.opt.step()
        self.sched.step()
        self.ema.update_parameters(self.model)
        self.step += 1
        self.last = float(loss.detach())
        self.loss_avg = self.last if self.loss_avg is None else 0.98 * self.loss_avg + 0.02 * self.last
        return float(gnorm), batch.scale, lr

    def seconds(self) -> float:
        return time.perf_counter() - self.t0

    def save(self, path: Path, validation: dict[str, float] | None = None) -> None:
        # the model card's time is the whole run's, every resumed segment's (its device and hardware the last one's)
        total = self.seconds() + float((self.record or {}).get("seconds") or 0.0)
        save_model(path, self.ema.module, self.cfg, self.table, self.described, self.step, total, self.world,
                   self.device, validation=validation, start=self.start_spec)

    def after_step(self, gnorm: float, scale: int, lr: float, max_seconds: float | None) -> bool:
        """Log, validate and save as the config says after a step (the process of rank 0 writes; every process
        agrees on the time and gives its random states); whether the run is out of time (it saved then)."""
        cfg, step = self.cfg, self.step
        timed_out = self._agreed(max_seconds is not None and self.seconds() > max_seconds)
        saving = step % cfg.checkpoint_every == 0 or step == cfg.steps or timed_out
        states = self._all_rng_states() if saving else {}
        if self.rank != 0:
            return timed_out
        if step % cfg.log_every == 0 or step == cfg.steps:
            self._write({"step": step, "loss": round(self.last, 5), "loss_avg": round(self.loss_avg, 5),
                         "grad_norm": round(gnorm, 4), "lr": lr, "scale": scale, "seconds": round(self.seconds(), 1)})
        if self.validation.due(step):
            event = self.validation.run(step, self.ema.module, self.device, lambda v: self.save(self.out / BEST, v))
            if event is not None:
                self._write(event)
        if saving:
            extra = {"run": cfg.to_dict(), "start": self.start_spec, "best": self.validation.record(),
                     "loss_avg": self.loss_avg,
                     "data_fingerprint": self.data_fingerprint,
                     "seconds": round(self.seconds() + float((self.record or {}).get("seconds") or 0.0), 1)}
            # the model before the state: a kill between the two then leaves a state behind the model, which
            # --resume brings up to it, not a model behind a state at the last step ("nothing to do"; found in review)
            self.save(self.out / MODEL)
            save_state(self.out, step, self.model, self.ema, self.opt, extra, tensors=states)
        return timed_out

    def close(self) -> None:
        if self.log is not None:
            self._write({"event": "end", "step": self.step, "seconds": round(self.seconds(), 1)})
            self.log.close()
            self.log = None

    def result(self) -> TrainResult:
        v = self.validation
        return TrainResult(
            checkpoint=str(self.out / MODEL), steps=self.step, resumed_from=self.start, seconds=self.seconds(),
            final_loss=self.last, ema_loss=float(self.loss_avg) if self.loss_avg is not None else float("nan"),
            log=str(self.out / LOG), best_checkpoint=str(self.out / BEST) if v.best_step is not None else None,
            best_step=v.best_step, best_val_gain_db=None if v.best_step is None else round(v.best_gain, 4),
            planned_steps=self.cfg.steps, warnings=self.warnings,
        )


def _plain(value: Any) -> Any:
    """A NumPy (or other) whole number as an int, a real one as a float; anything else as it is."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return value
    return int(value) if isinstance(value, numbers.Integral) else float(value)


@names_too_long_are_input_errors
def train(
    config: TrainConfig | str | Path | None = None,
    *,
    options: TrainOptions | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    **fields: Any,
) -> TrainResult:
    """Train (or continue) a model; returns where the checkpoint is. Arch ``lite`` fine-tunes the LR-space
    backbone instead of a diffusion model (:mod:`geosr.training.backbone_run`).

    ``options`` is a :class:`~geosr.options.TrainOptions`; ``fields`` set or override its fields, and any other
    :class:`TrainConfig` field (``warmup=100``). Its run settings (``out``, ``scales``, ``steps``, ``lr``, ...;
    None: the config's), ``data`` and ``val_data`` override ``config`` (a TrainConfig or a file;
    :func:`training_config`). ``resume``: continue the run in ``cfg.out`` from its saved state. Otherwise that
    folder must be empty or new; ``overwrite`` replaces an earlier run there. ``init``: a geosr checkpoint to
    start from (fine-tuning). ``max_minutes``: stop (and save) after this much wall time even if ``cfg.steps`` is
    not reached.
    """
    check_callable(progress, "progress", "(step, steps, loss)")
    if config is not None and not isinstance(config, (TrainConfig, str, os.PathLike)):  # (a raw TypeError)
        raise OptionError(f"config {config!r}: give a TrainConfig or a config file's path", param="config")
    fields = TrainOptions.canonical(fields)  # the command line's names too (out_dir, train_steps, batch, ...)
    own = {f.name for f in dataclasses.fields(TrainOptions)}
    opts = TrainOptions.of(options, **{k: v for k, v in fields.items() if k in own})
    # TrainConfig checks these names and values; NumPy's numbers as Python's, as every other keyword takes them
    # (warmup=np.int64(1) was "not a whole number"; found in review)
    more = {k: _plain(v) for k, v in fields.items() if k not in own}
    resume, overwrite = opts.resume, opts.overwrite
    if resume and overwrite:
        raise OptionError("resume continues the run in its folder and `overwrite` replaces it: give one of them",
                          param="resume")
    if resume and config is None:  # the run's own settings, as its state records them
        _refuse_nothing_to_resume(Path(opts.out or TrainConfig.out))
        config = resumed_config(Path(opts.out or TrainConfig.out))
        started = config if opts.out else None
    else:
        started = resumed_config(Path(opts.out)) if resume and opts.out else None
    arch = opts.settings().get("arch")
    if started is not None and arch is not None and arch != started.arch:  # before the settings are checked as
        # the other architecture's (a diffusion run's crop "does not apply to arch lite"; found in review)
        raise OptionError(f"resume: the run in {opts.out} was started with `arch` {json.dumps(started.arch)}, not "
                          f"{json.dumps(arch)}; resume it with its own settings (without a config, the run's are "
                          "used) or start another run", param="resume")
    cfg = training_config(config, data=opts.data, val_data=opts.val_data, **opts.settings(), **more)
    if resume:
        _refuse_nothing_to_resume(Path(cfg.out))
    if overwrite:
        _refuse_inputs_inside(Path(cfg.out), cfg, opts.init)
    def saved() -> bool:  # what a failed run wrote is kept (and an earlier run it replaces dropped) once it saved
        return (Path(cfg.out) / STATE).exists()

    # one live run per folder; a run that fails before it saved anything leaves the folder as it found it
    claim = run_folder(Path(cfg.out)).claimed(saved=saved, resume=resume, overwrite=overwrite)
    with claim if lead_process() else nullcontext(), torch_threads(cfg.threads):
        try:
            return _train(cfg, opts, progress)
        except KeyboardInterrupt as exc:
            if not (resume or saved()):
                exc.geosr_again = "; it had saved nothing yet, so run it again as it was"  # type: ignore[attr-defined]
            raise
        except OptionError as exc:
            # an `arch` table of the config file (none given as an option): named as the config's other settings
            # are ("--arch: 'noise_channels' is odd" named a flag not given)
            if exc.param == "arch" and isinstance(config, (str, os.PathLike)) and arch is None and \
                    str(exc).startswith("arch: "):
                raise OptionError(f"bad training config: arch in {Path(config).name}: {str(exc)[6:]}") from None
            raise
        except GeoSRError:
            raise
        except Exception as exc:  # a full disk, a quota: in safetensors' words too ("internal error" before)
            reason = os_reason(exc)
            if reason is None:
                raise
            kept = "; its last save is kept for `resume`" if saved() else ""
            raise OutputWriteError(f"{cfg.out}: cannot be written: {reason}{kept}") from exc


def _train(cfg: TrainConfig, opts: TrainOptions, progress: Callable[[int, int, float], None] | None) -> TrainResult:
    if cfg.trains_backbone:  # arch lite: the LR-space backbone, fine-tuned (geosr.training.backbone_run)
        from geosr.training.backbone_run import train_backbone

        if _dist()[0] > 1:  # every process would train the same model into the same folder
            raise OptionError("--arch lite trains in one process: run geosr train without torchrun "
                              f"(this is process {_dist()[1]} of {_dist()[0]})", param="arch")

        return train_backbone(cfg, init=opts.init, resume=opts.resume, overwrite=opts.overwrite,
                              max_minutes=opts.max_minutes, progress=progress)
    max_seconds = None if opts.max_minutes is None else 60 * opts.max_minutes
    given = opts.settings().get("arch")  # named by the caller, or by a config whose arch is not the default
    named = given if isinstance(given, str) else cfg.arch if isinstance(cfg.arch, str) and \
        cfg.arch != TrainConfig.arch else None
    run = _Run(cfg, resume=opts.resume, init=opts.init, overwrite=opts.overwrite, arch_named=named)
    try:
        while run.step < cfg.steps:
            gnorm, scale, lr = run.train_step()
            if progress is not None and run.rank == 0:
                progress(run.step, cfg.steps, run.loss_avg)
            if run.after_step(gnorm, scale, lr, max_seconds):
                break
    finally:
        run.close()
    if run.world > 1:
        torch.distributed.barrier()
    return run.result()


def _refuse_inputs_inside(out: Path, cfg: TrainConfig, init: str | None) -> None:
    """Refuse an input (``init``, a data file or folder, the backbone) inside the run folder ``overwrite`` replaces:
    its files are set aside as the run starts, and the run then said "does not exist" of a file that was there."""
    paths = [init, cfg.backbone]
    for src in (*cfg.data, *cfg.val_data):
        paths += [src.get(k) for k in ("path", "hr", "lr", "ref", "mask", "map", "manifest")]
        paths += list(src.get("paths") or ())
    folder = out.resolve()
    for p in paths:
        if isinstance(p, str) and p and Path(p).expanduser().exists():
            where = Path(p).expanduser().resolve()
            if where == folder or folder in where.parents:
                raise OptionError(f"{p}: lies in {out}, the run folder `overwrite` replaces; move it out of the "
                                  "folder first", param="overwrite")


def _refuse_nothing_to_resume(folder: Path) -> None:
    """``resume`` of a folder without a saved run, refused before anything is made (it read as "no training data",
    and made the folder and its lock)."""
    # (a state a killed `overwrite` run set aside is put back by the claim: there is a run to resume)
    if not (folder / STATE).is_file() and not (folder / REPLACED / STATE).is_file():
        if (folder / LOCK).is_file():  # a run there still before its first save: named, as without `resume` (it
            with JobLock(folder / LOCK, output=folder):  # was told to start one, which the lock then refused)
                pass
        what = "does not exist" if not folder.exists() else f"holds no saved run ({STATE})"
        # a model without its state (deleted, or a kill between the two saves of the first one): the folder is not
        # empty, so a run started afresh there needs `overwrite` (advised without it, it was refused; found in review)
        kept = folder.is_dir() and any((folder / name).is_file() for name in (MODEL, BEST, STATE_JSON))
        again = "start the run again with `overwrite` (it replaces what the folder holds)" if kept else \
            "start the run without `resume`"
        raise OptionError(f"resume: {folder} {what}, so there is nothing to resume; {again}", param="resume")


def resumed_config(out: Path) -> TrainConfig | None:
    """The settings the run in ``out`` was started with, as its last state records them (None: no record)."""
    # a state a killed `overwrite` run set aside is the run's (the claim puts it back before anything runs)
    own = out if (out / STATE).is_file() or not (out / REPLACED / STATE).is_file() else out / REPLACED
    started = (state_record(own) or {}).get("run") if own.is_dir() else None
    if not isinstance(started, dict):
        return None
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    started = {**started, **{k: recorded_sources(started[k]) for k in ("data", "val_data") if k in started}}
    return TrainConfig(**{k: v for k, v in started.items() if k in names})


__all__ = ["train", "lead_process", "training_config", "TrainResult", "init_model", "trainable", "ema_of",
           "warmup_cosine", "lr_schedule"]
