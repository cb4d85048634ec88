"""A training run's folder: the resumable training state (safetensors + JSON, nothing pickled), the EMA model
written as a geosr checkpoint with its spec, and the files a run owns (for ``--overwrite``)."""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.optim.swa_utils import AveragedModel

from geosr.errors import InputError
from geosr.models.checkpoint import make_spec, save_checkpoint
from geosr.training.config import TrainConfig
from geosr.training.outputs import OutputFolder

if TYPE_CHECKING:  # types only: the backbone's training imports this module without GDAL (a GPU machine's bare image)
    from geosr.conditioning.changes import ChangeClassTable
    from geosr.models.edm import EDMDenoiser

STATE = "state.safetensors"
STATE_JSON = "state.json"
MODEL = "model.safetensors"
BEST = "best.safetensors"
LOG = "train.log"
RUN_FILES = (STATE, STATE_JSON, MODEL, "model.json", BEST, "best.json", LOG, "val_*.png", "*.part")


def run_folder(out: str | Path) -> OutputFolder:
    return OutputFolder(Path(out), "geosr train", RUN_FILES)


def _averaged(ema: torch.nn.Module) -> torch.nn.Module:
    """The weights an EMA holds: an :class:`AveragedModel`'s module, or the module itself."""
    return ema.module if isinstance(ema, AveragedModel) else ema


def save_state(out: Path, step: int, model: torch.nn.Module, ema: torch.nn.Module, opt: torch.optim.Optimizer,
               extra: dict) -> None:
    """Model, EMA and optimizer tensors to ``state.safetensors``; step, param groups, scalars and ``extra`` to
    ``state.json`` (each written to a ``.part`` file, then moved into place)."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    for prefix, module in (("model", model), ("ema", _averaged(ema))):
        for k, v in module.state_dict().items():
            tensors[f"{prefix}.{k}"] = v.detach().cpu().contiguous()
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


def load_state(out: Path, model: torch.nn.Module, ema: torch.nn.Module, opt: torch.optim.Optimizer) -> int:
    """Restore what :func:`save_state` wrote; returns the step. An :class:`AveragedModel` EMA counts the initial
    weights plus one average per step."""
    from safetensors.torch import load_file

    if not (out / STATE).exists() or not (out / STATE_JSON).exists():
        raise InputError(f"{out}: no training state to resume from ({STATE} / {STATE_JSON})")
    meta = json.loads((out / STATE_JSON).read_text())
    tensors = load_file(str(out / STATE))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    _averaged(ema).load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    for idx, sc in meta.get("scalars", {}).items():
        for name, val in sc.items():
            state.setdefault(int(idx), {})[name] = torch.tensor(val, dtype=torch.float32)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    step = int(meta["step"])
    if isinstance(ema, AveragedModel):
        ema.n_averaged.fill_(step + 1)
    return step


def saved_best(out: Path) -> tuple[float, int | None]:
    """(gain in dB, step) of the best validation so far that a run's state records; (-inf, None) if none."""
    path = out / STATE_JSON
    saved = (json.loads(path.read_text()).get("best") or {}) if path.exists() else {}
    return saved.get("gain_db", -math.inf), saved.get("step")


def save_model(path: Path, ema: EDMDenoiser, cfg: TrainConfig, table: ChangeClassTable, described: list[str], step: int,
               seconds: float, world: int, device: torch.device, validation: dict[str, float] | None = None) -> None:
    """The EMA weights as a geosr checkpoint whose spec records the architecture, data and training run."""
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
        **({"backbone": cfg.backbone} if cfg.backbone else {}),
        training={
            "steps": step, "seconds": round(seconds, 1), "processes": world, "device": str(device),
            "hardware": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
            if device.type == "cpu" else torch.cuda.get_device_name(device),
            "data": described, "config": cfg.to_dict(), "description": cfg.description,
            **({"validation": {k: round(x, 4) for k, x in validation.items()}} if validation else {}),
        },
    )
    save_checkpoint(path, ema, spec)


__all__ = ["STATE", "STATE_JSON", "MODEL", "BEST", "LOG", "RUN_FILES", "run_folder", "save_state", "load_state",
           "saved_best", "save_model"]
