"""A training run's folder: the resumable training state (one safetensors file, its record in the header, nothing
pickled), the EMA model written as a geosr checkpoint with its spec, and the files a run owns (for
``--overwrite``)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.optim.swa_utils import AveragedModel

from geosr.errors import GeoSRError, InputError, ModelFileError, OptionError
from geosr.models.checkpoint import make_spec, read_spec, save_checkpoint
from geosr.options import TrainOptions
from geosr.permissions import new_file_mode
from geosr.training.config import TrainConfig, absolute_backbone, absolute_sources, recorded_sources
from geosr.training.outputs import OutputFolder
from geosr.training.overlap import inherited_hashes

if TYPE_CHECKING:  # types only: the backbone's training imports this module without GDAL (a GPU machine's bare image)
    from geosr.conditioning.changes import ChangeClassTable
    from geosr.models.edm import EDMDenoiser

STATE = "state.safetensors"
STATE_JSON = "state.json"
HEADER_KEY = "geosr-training-state"  # the key of the state's record in the safetensors header
MODEL = "model.safetensors"
BEST = "best.safetensors"
LOG = "train.log"
RUN_FILES = (STATE, STATE_JSON, MODEL, "model.json", BEST, "best.json", LOG, "val_*.png", "*.part")


def run_folder(out: str | Path) -> OutputFolder:
    return OutputFolder(Path(out), "geosr train", RUN_FILES, unsaved=(LOG, "val_*.png", "*.part"))


def _averaged(ema: torch.nn.Module) -> torch.nn.Module:
    """The weights an EMA holds: an :class:`AveragedModel`'s module, or the module itself."""
    return ema.module if isinstance(ema, AveragedModel) else ema


def save_state(out: Path, step: int, model: torch.nn.Module, ema: torch.nn.Module, opt: torch.optim.Optimizer,
               extra: dict, tensors: dict[str, torch.Tensor] | None = None) -> None:
    """Model, EMA and optimizer tensors (and ``tensors``, e.g. random generator states) to ``state.safetensors``,
    with step, param groups, scalars and ``extra`` in its header: one file, written to a ``.part`` file and then
    moved into place, so that a kill never leaves weights of one step with the record of another.
    ``state.json`` is a readable copy of that record."""
    from safetensors.torch import save_file

    saved: dict[str, torch.Tensor] = {f"rng.{k}": v.detach().cpu().contiguous() for k, v in (tensors or {}).items()}
    for prefix, module in (("model", model), ("ema", _averaged(ema))):
        for k, v in module.state_dict().items():
            saved[f"{prefix}.{k}"] = v.detach().cpu().contiguous()
    sd = opt.state_dict()
    scalars: dict[str, dict[str, float]] = {}
    for idx, st in sd["state"].items():
        for name, val in st.items():
            if torch.is_tensor(val) and val.dim() > 0:
                saved[f"opt.{idx}.{name}"] = val.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[name] = float(val)
    meta = json.dumps({"step": step, "param_groups": sd["param_groups"], "scalars": scalars, **extra}, indent=1,
                      default=str)
    tmp = out / (STATE + ".part")
    save_file(saved, str(tmp), metadata={HEADER_KEY: meta})
    os.chmod(tmp, new_file_mode())  # safetensors writes 0600; the run folder's other files are as any new file
    tmp.replace(out / STATE)
    (out / (STATE_JSON + ".part")).write_text(meta)
    (out / (STATE_JSON + ".part")).replace(out / STATE_JSON)


def state_record(out: Path) -> dict[str, Any] | None:
    """The record :func:`save_state` wrote with the run's last state (step, best validation, config...); None
    where the folder holds no state. A state written before the record moved into its header has it in
    ``state.json``."""
    from safetensors import safe_open

    if not (out / STATE).exists():
        return None
    try:
        with safe_open(str(out / STATE), "pt") as f:
            header = (f.metadata() or {}).get(HEADER_KEY)
    except Exception as exc:  # safetensors' own error types; a file cut short or not a state
        raise InputError(f"{out / STATE}: not a training state that can be read ({exc})") from None
    if header is None:
        if not (out / STATE_JSON).exists():
            return None
        header = (out / STATE_JSON).read_text()
    return json.loads(header)


class StateMismatchError(InputError):
    """A training state whose weights do not fit the model the run builds."""


def load_state(out: Path, model: torch.nn.Module, ema: torch.nn.Module, opt: torch.optim.Optimizer) -> int:
    """Restore what :func:`save_state` wrote; returns the step. An :class:`AveragedModel` EMA counts the initial
    weights plus one average per step."""
    from safetensors.torch import load_file

    meta = state_record(out)
    if meta is None:
        raise InputError(f"{out}: no training state to resume from ({STATE})")
    tensors = load_file(str(out / STATE))
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        _averaged(ema).load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    except RuntimeError as exc:  # torch's missing / unexpected / size-mismatched tensors
        # e.g. a run started from an `init` that extended its architecture, resumed without its model file (which
        # gives that architecture): the config's alone builds another
        raise StateMismatchError(f"{out / STATE}: its weights are not of the architecture the run's settings build "
                         f"({str(exc).splitlines()[0].rstrip(':.')}); a run started from an `init` resumes "
                         f"from its model file ({MODEL}): without a readable one, start the run again with "
                         "`overwrite`") from None
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


def saved_tensors(out: Path, prefix: str = "rng.") -> dict[str, torch.Tensor]:
    """The extra ``tensors`` the last :func:`save_state` saved (``prefix`` stripped); {} for an older state."""
    from safetensors import safe_open

    with safe_open(str(out / STATE), "pt") as f:
        return {k[len(prefix):]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}  # noqa: SIM118


# Settings a resumed run may change: how long it runs, how often it logs and saves, where, on what, its name.
RESUMABLE = ("out", "steps", "checkpoint_every", "val_every", "log_every", "device", "precision", "threads", "name",
             "description", "inference")


def _comparable_sources(then: Any, now: Any) -> tuple[Any, Any]:
    """Two runs' data sources as compared: by where their files lie (a folder given through a link to it is the
    same; found in review), a folder of images by its folder where both name one (its images are compared by the
    data's fingerprint, which tells one added since), else by its images: a folder's as it holds them now, where
    the other names a list (a run recorded before folders were). A record with both (a folder and its images)
    is its folder."""
    from geosr.training.sources import folder_images

    then, now = (json.loads(json.dumps(absolute_sources(recorded_sources(v), resolve=True))) for v in (then, now))
    if not isinstance(then, list) or not isinstance(now, list):
        return then, now
    for a, b in zip(then, now):
        if isinstance(a, dict) and isinstance(b, dict) and a.get("kind") == b.get("kind") == "synthetic" \
                and ("path" in a) != ("path" in b):
            for src in (a, b):
                if isinstance(src.get("path"), str) and Path(src["path"]).is_dir():
                    src["paths"] = [os.path.realpath(p) for p in folder_images(Path(src.pop("path")))]
    return then, now


def refuse_changed_settings(out: Path, record: dict[str, Any] | None, cfg: dict[str, Any]) -> None:
    """Refuse to resume the run in ``out`` with settings (``cfg``, a TrainConfig's dict) other than those it was
    started with (``record["run"]``), beyond :data:`RESUMABLE`: the model it writes would not be what its record
    says. A state without the record (an older run) is not checked."""
    done = (record or {}).get("step")
    if isinstance(done, int) and isinstance(cfg.get("steps"), int) and cfg["steps"] < done:
        # else the run "resumed" for no step and rewrote its record and model as a shorter run's
        raise OptionError(f"resume: the run in {out} has done {done} steps already, more than `steps` "
                          f"{cfg['steps']}: give more than {done} to train it further", param="resume")
    started = (record or {}).get("run")
    if not isinstance(started, dict):
        return
    now = json.loads(json.dumps(cfg, default=str))
    # a run started before its record named its data by absolute paths: read from the working folder, as it was
    started = {**started, **{k: json.loads(json.dumps(absolute_sources(started[k]))) for k in ("data", "val_data")
                             if k in started}}
    if "backbone" in started:  # so was its backbone's file
        started["backbone"] = absolute_backbone(started["backbone"])
    compared = {k: _comparable_sources(started[k], now[k]) for k in ("data", "val_data") if k in started and k in now}
    changed = [k for k in sorted(set(started) | set(now)) if k not in RESUMABLE and (
        compared[k][0] != compared[k][1] if k in compared else started.get(k) != now.get(k))]  # (shown as given)
    if changed:
        k = changed[0]
        more = f" ({', '.join(f'`{c}`' for c in changed[1:])} too)" if len(changed) > 1 else ""
        def shown(v: Any) -> str:
            text = json.dumps(v)
            return text if len(text) <= 100 else text[:97] + "..."

        # (the CLI names `k` by its flag; one named otherwise than a config file's key, as that key too: a config's
        # `lr` was named "--learning-rate", a flag not used; found in review)
        also = f" ({k} in a config file)" if k in TrainOptions.cli_names().values() else ""
        raise OptionError(f"resume: the run in {out} was started with `{k}`{also} {shown(started.get(k))}, not "
                          f"{shown(now.get(k))}{more}; resume it with its own settings (without a "
                          "config, the run's are used) or start another run", param="resume")


def saved_best(out: Path) -> tuple[float, int | None]:
    """(gain in dB, step) of the best validation so far that a run's state records; (-inf, None) if none."""
    saved = (state_record(out) or {}).get("best") or {}
    return saved.get("gain_db", -math.inf), saved.get("step")


def own_checkpoint(out: Path, then: str) -> Path | None:
    """A resumed run's own checkpoint, which gives its architecture: its model, else its best weights (of the same
    architecture) where a kill or a full disk left the model unreadable; None where it has neither file. Where
    neither can be read, an error that ends with ``then`` (``{files}``: their names)."""
    files = [out / name for name in (MODEL, BEST) if (out / name).is_file()]
    for path in files:
        try:
            read_spec(path)
            return path
        except ModelFileError:
            continue
    if files:  # (a damaged model blocked every resume with "not a safetensors file"; found in review)
        raise OptionError(f"resume: {files[0]} cannot be read" + (" (nor its best weights)" if len(files) > 1 else "")
                          + "; " + then.format(files=" and ".join(f.name for f in files)), param="resume")
    return None


def initialised_from(model: Path) -> list[str]:
    """What the run that wrote ``model`` says it was initialised from (its ``--init``, as its record's data
    lists it), for a resumed run to say the same; [] when it started from scratch or the checkpoint cannot say."""
    try:
        data = (read_spec(model).get("training") or {}).get("data") or []
    except GeoSRError:
        return []
    return [d for d in data if isinstance(d, str) and d.startswith("initialised from ")]


def spec_band_names(cfg: TrainConfig) -> list[str]:
    """The trained model's band names: the config's, or ``band1``... where the config kept the RGB default for
    another number of bands (a grey model's band is not "red")."""
    default = next(f.default for f in dataclasses.fields(TrainConfig) if f.name == "band_names")
    names = list(cfg.band_names) if cfg.bands == 3 or tuple(cfg.band_names) != default else []
    return names[: cfg.bands] + [f"band{i + 1}" for i in range(len(names), cfg.bands)]


def _backbone_from(model: Path, backbone: str) -> str:
    """The spec's ``backbone``: a bundled name, or the file's path relative to the model's folder, so that a run's
    folder copied with its backbone beside it loads anywhere (the loader reads it from there)."""
    if not Path(backbone).is_absolute():
        return backbone
    return os.path.relpath(Path(backbone).resolve(), Path(model).resolve().parent)  # as the loader reads it


def save_model(path: Path, ema: EDMDenoiser, cfg: TrainConfig, table: ChangeClassTable, described: list[str], step: int,
               seconds: float, world: int, device: torch.device, validation: dict[str, float] | None = None,
               start: dict | None = None) -> None:
    """The EMA weights as a geosr checkpoint whose spec records the architecture, data and training run. ``start``:
    the spec of the checkpoint the run started from (``init``), whose name and inference settings are kept where the
    config gives none of its own."""
    start = start or {}
    own_name = cfg.name != TrainConfig.name or not isinstance(start.get("name"), str)
    spec = make_spec(
        ema,
        name=cfg.name if own_name else start["name"],
        scales=list(cfg.scales),
        band_names=spec_band_names(cfg),
        change_classes={str(i): c.name for i, c in enumerate(table.classes)},
        change_table=table.to_dict(),
        normalization={"kind": "robust-stretch", "percentiles": [1.0, 99.0], "range": [-1.0, 1.0],
                       "reference": "harmonized to the LR (per-band mean/std at LR scale over unchanged pixels)"},
        halo=2,
        inference={**(start.get("inference") or {}), **cfg.inference},
        **({"backbone": _backbone_from(path, cfg.backbone)} if cfg.backbone else {}),
        training={
            "steps": step, "seconds": round(seconds, 1), "processes": world, "device": str(device),
            "hardware": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
            if device.type == "cpu" else torch.cuda.get_device_name(device),
            "data": described, "config": cfg.to_dict(), "description": cfg.description,
            **({"validation": {k: round(x, 4) for k, x in validation.items()}} if validation else {}),
            **_inherited_terms(start),
            **inherited_hashes(start),  # (the sources behind the start's weights: evaluate tells them too)
        },
    )
    save_checkpoint(path, ema, spec)


def _inherited_terms(start: dict) -> dict[str, str]:
    """The terms a run's weights take from the checkpoint they started from (its spec's ``training.licences``): a
    model fine-tuned from the bundled default recorded none (found in review)."""
    terms = (start.get("training") or {}).get("licences")
    if not isinstance(terms, str) or not terms:
        return {}
    return {"licences": f"Initialised from {start.get('name') or 'a checkpoint'}, whose terms carry over: {terms}"}


__all__ = ["STATE", "STATE_JSON", "MODEL", "BEST", "LOG", "RUN_FILES", "RESUMABLE", "run_folder", "save_state",
           "state_record", "load_state", "saved_tensors", "refuse_changed_settings", "saved_best", "save_model",
           "initialised_from"]
