"""The training configuration: a frozen dataclass, loadable from a TOML / YAML / JSON file, overridable by flags.

A data source is a mapping with a ``kind``:

- ``{"kind": "refdiff", "path": "SECOND/RefSR_dataset/train", "weight": 1}`` — the Ref-Diff release layout;
- ``{"kind": "pairs", "path": "LEVIR/", "weight": 1}`` — ``A/`` (reference), ``B/`` (target), ``label/``;
- ``{"kind": "geotiff", "hr": "hr.tif", "lr": "lr.tif", "ref": "ref.tif", "mask": "cd.tif", "map": "osm.tif"}``
  (``"bands": [4, 3, 2, 8]``: those bands of each; default: the red, green and blue ``geosr upscale`` takes);
- ``{"kind": "synthetic", "paths": ["a.tif", "b.png"], "weight": 1}`` — synthetic change from single images
  (or ``"path": "folder/"``: the images that folder holds, listed at each start, a resumed run's too; not both);
- ``{"kind": "shared", "manifest": "collection.json", "weight": 1, "synthetic_weight": 1}`` — a collection of
  data sets named by a manifest (:mod:`geosr.training.manifest`; ``"path"`` overrides its root, or names a
  folder holding its own ``geosr-data.json``): its training split only, plus synthetic change from every HR
  image of that split and the manifest's single images.

``val_data`` takes sources of the same kinds (not ``shared``, which is a training split): data the run never
trains on, scored every ``val_every`` steps to keep the best checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from geosr.config import MAX_SEED
from geosr.errors import InputNotFoundError, OptionError
from geosr.models.configs import CONFIGS

# the keys of a data source that name files or folders
MAX_BATCH = 4096  # samples per step at most
SOURCE_PATH_KEYS = ("path", "manifest", "hr", "lr", "ref", "mask", "map")


def absolute_backbone(backbone: Any) -> Any:
    """A training run's ``backbone`` with a file's path made absolute (from the working folder, as it is read); a
    bundled model's name as it is."""
    from geosr.models.registry import bundled_checkpoints, looks_like_path

    if not isinstance(backbone, str) or not backbone or backbone in bundled_checkpoints() \
            or not looks_like_path(backbone):
        return backbone
    return str(Path(backbone).expanduser().absolute())


def absolute_sources(sources: Any, *, resolve: bool = False) -> Any:
    """Data sources with every path made absolute (from the working folder, as relative ones are read) and ``..``
    resolved: a run's record then names its data wherever ``--resume`` is run from (a scheduler's job starts in
    another folder), however the same folder is spelled. ``resolve``: symbolic links resolved too, for comparing
    two runs' data (a run resumed with its folder given through a link to it was refused; found in review), where
    a record keeps the paths as given."""
    if not isinstance(sources, (list, tuple)):
        return sources
    absolute = os.path.realpath if resolve else os.path.abspath
    out = []
    for src in sources:
        if isinstance(src, Mapping):
            src = dict(src)
            for k in SOURCE_PATH_KEYS:
                if isinstance(src.get(k), str) and src[k]:
                    src[k] = absolute(os.path.expanduser(src[k]))
            if isinstance(src.get("paths"), (list, tuple)):
                src["paths"] = [absolute(os.path.expanduser(p)) if isinstance(p, str) else p for p in src["paths"]]
        out.append(src)
    return tuple(out)


# Architectures that are not diffusion models: the LR-space backbone (geosr.models.backbone), fine-tuned by
# geosr.training.backbone_run from the bundled `lite` or an --init backbone checkpoint.
BACKBONE_ARCHS = ("lite",)
# Per kind of model, the defaults of the settings whose zero value in TrainConfig means "the architecture's own".
ARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "diffusion": {"scales": (8, 16), "batch_size": 4, "lr": 2e-4, "grad_clip": 1.0},
    # the backbone's: every trained scale, the batch, rate and clipping of scripts/train_backbone.py
    # (docs/model-card.md: its fine-tuning diverged within 100 steps without the clipping at 0.1)
    "backbone": {"scales": (2, 4, 8, 16), "batch_size": 16, "lr": 1e-4, "grad_clip": 0.1},
}
# Settings of the diffusion models' training that the backbone's does not have (a value other than the default is
# refused with arch lite rather than ignored; the backbone's bands are its checkpoint's, RGB).
DIFFUSION_ONLY = ("bands", "band_names", "change_table", "n_map_classes", "val_batches", "crop", "weight_decay",
                  "betas", "warmup",
                  "p_high_sigma", "sigma_high_min", "sigma_max", "p_no_ref", "synthetic", "degradation",
                  "upsampler_loss", "objective", "freeze", "backbone", "inference")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything a training run needs. Steps, batch and crop are per process."""

    out: str = "runs/geosr"
    arch: str | dict = "tiny"
    bands: int = 3
    band_names: tuple[str, ...] = ("red", "green", "blue")
    change_table: str = "binary"  # the class table of the change input (binary: 3 classes, values 0, 1, 255)
    n_map_classes: int = 0
    scales: tuple[int, ...] = ()  # (): the architecture's (ARCH_DEFAULTS), as batch_size, lr and grad_clip 0
    data: tuple[Mapping[str, Any], ...] = ()
    val_data: tuple[Mapping[str, Any], ...] = ()  # validation sources: scored every val_every steps, best kept
    val_batches: int = 4  # fixed validation batches drawn from val_data (batch_size samples each)
    crop: int = 128
    batch_size: int = 0
    steps: int = 2000
    lr: float = 0.0
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    warmup: int = 200
    ema: float = 0.999
    grad_clip: float = 0.0
    p_high_sigma: float = 0.3  # share of noise levels drawn log-uniformly in [sigma_high_min, sigma_max]
    sigma_high_min: float = 2.0  # (trains the denoiser where few-step samplers start)
    sigma_max: float = 80.0
    p_no_ref: float = 0.1
    synthetic: Mapping[str, Any] = field(default_factory=dict)  # SyntheticChangeConfig overrides, e.g. {"warp": 2.0}
    degradation: str = "real"  # "real" (Ref-Diff 3.3 chain), "bicubic" or "mixed" (half of each)
    upsampler_loss: float = 1.0  # weight of the learned upsampler's own L1 loss against the HR (models with one)
    # "edm": the denoiser (EDM loss); "upsampler": the learned upsampler alone (L1), nothing else
    objective: str = "edm"
    freeze: tuple[str, ...] = ()  # parameter-name prefixes kept fixed, e.g. ("net.upsampler",)
    # an LR-space backbone (bundled name or checkpoint) whose prediction, frozen, is the base a residual denoiser
    # learns the detail on; the checkpoint records it and loads as DIFFUSION+BACKBONE
    backbone: str | None = None
    checkpoint_every: int = 500
    val_every: int = 500
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU; or "fp32" / "bf16"
    threads: int = 0  # torch CPU threads while the run lasts, at most the CPUs; 0: torch's default
    name: str = "geosr-model"
    # recorded in the spec, e.g. {"steps": 1, "lr_consistency": true}
    inference: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def trains_backbone(self) -> bool:
        """Whether the run fine-tunes an LR-space backbone (arch ``lite``) rather than a diffusion model."""
        return isinstance(self.arch, str) and self.arch in BACKBONE_ARCHS

    def __post_init__(self) -> None:
        _check_types({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})  # a Python caller's kinds
        kind = "backbone" if self.trains_backbone else "diffusion"
        for name, value in ARCH_DEFAULTS[kind].items():
            if not getattr(self, name):
                object.__setattr__(self, name, value)
        object.__setattr__(self, "scales", tuple(int(s) for s in self.scales))
        object.__setattr__(self, "band_names", tuple(self.band_names))
        object.__setattr__(self, "freeze", tuple(str(f) for f in self.freeze))
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        for key in ("data", "val_data"):
            entries = getattr(self, key)
            bad = next((d for d in entries if not isinstance(d, Mapping)), None)
            if bad is not None:  # a path written where a source table goes
                raise OptionError(f"bad training config: {key} entry {bad!r} is not a source table such as "
                                  '{kind = "refdiff", path = "..."} (docs/training.md); a path goes on the '
                                  f"command line, with `{key}`", param=key)
            object.__setattr__(self, key, tuple(dict(d) for d in entries))
        object.__setattr__(self, "inference", dict(self.inference))
        synthetic = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(self.synthetic).items()}
        object.__setattr__(self, "synthetic", synthetic)
        problems = []
        if self.trains_backbone:  # a setting the backbone does not have is the one thing to say about it
            defaults = {f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
                        for f in dataclasses.fields(self)}
            problems.extend(f"`{name}` does not apply to arch {self.arch} (the LR-space backbone)"
                            for name in DIFFUSION_ONLY if getattr(self, name) != defaults[name])
        if any(s not in (2, 4, 8, 16) for s in self.scales) or not self.scales:
            problems.append(f"`scales` must be among 2, 4, 8, 16, not {list(self.scales)}")
        elif not self.trains_backbone and any(self.crop % s for s in self.scales):
            problems.append(f"`crop` {self.crop} must be a multiple of every scale ({list(self.scales)})")
        elif not self.trains_backbone and isinstance(self.arch, str) and self.arch in CONFIGS \
                and self.crop % CONFIGS[self.arch].downsampling:  # (said once the model was built, naming neither
            # file nor key; an architecture given as a table is still checked there)
            problems.append(f"`crop` must be a multiple of {CONFIGS[self.arch].downsampling} for arch {self.arch} "
                            f"(its U-Net's coarsest level), not {self.crop}")
        problems += [f"`{name}` must be at least 1, not {getattr(self, name)}"
                     for name in ("steps", "batch_size", "checkpoint_every", "log_every", "bands", "crop")
                     if getattr(self, name) < 1]
        if self.batch_size > MAX_BATCH:  # (a huge one hung, taking memory, before the first step; found in review)
            problems.append(f"`batch_size` must be at most {MAX_BATCH}, not {self.batch_size}")
        if self.val_every < 0:
            problems.append(f"`val_every` cannot be negative (0: no validation), not {self.val_every}")
        problems += [f"`{name}` cannot be negative, not {getattr(self, name)}" for name in ("lr", "warmup")
                     if getattr(self, name) < 0]
        # (an infinite learning rate trained, then stopped on a non-finite loss: exit 1 after the first steps)
        problems += [f"`{f.name}` must be a finite number, not {getattr(self, f.name)}"
                     for f in dataclasses.fields(self) if f.type in ("float", float)
                     and isinstance(getattr(self, f.name), (int, float)) and not math.isfinite(getattr(self, f.name))]
        if not 0 <= self.ema < 1:
            problems.append(f"`ema` must be in [0, 1), not {self.ema}")
        # (found in review: a negative `grad_clip` turned every gradient round, so the run climbed its loss; the
        # others failed at the first step as an internal error, or were taken silently)
        problems += [f"`{name}` cannot be negative, not {getattr(self, name)}"
                     for name in ("grad_clip", "weight_decay", "seed", "threads", "n_map_classes")
                     if getattr(self, name) < 0]
        if self.seed > MAX_SEED:  # torch's generators take 64 bits
            problems.append(f"`seed` must be at most {MAX_SEED}, not {self.seed}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            problems.append(f"`betas` must be two numbers in [0, 1), not {list(self.betas)}")
        problems += [f"`{name}` must be in [0, 1], not {getattr(self, name)}"
                     for name in ("p_high_sigma", "p_no_ref") if not 0 <= getattr(self, name) <= 1]
        if not 0 < self.sigma_high_min < self.sigma_max:
            problems.append(f"`sigma_high_min` and `sigma_max` must be positive, the first below the second, not "
                            f"{self.sigma_high_min} and {self.sigma_max}")
        if self.synthetic:  # imported only here: the config stays free of torch
            from geosr.training.synthetic_change import SyntheticChangeConfig

            unknown = set(self.synthetic) - {f.name for f in dataclasses.fields(SyntheticChangeConfig)}
            if unknown:
                problems.append(f"`synthetic` has no setting {', '.join(sorted(unknown))}")
            problems += synthetic_problems(self.synthetic)
        if self.degradation not in ("real", "bicubic", "mixed") and not self.trains_backbone:
            problems.append(f"`degradation` is real, bicubic or mixed, not {self.degradation!r}")
        if self.objective not in ("edm", "upsampler") and not self.trains_backbone:
            problems.append(f"`objective` is edm or upsampler, not {self.objective!r}")
        if self.upsampler_loss < 0:
            problems.append("`upsampler_loss` cannot be negative")
        if self.backbone is not None and self.objective != "edm":
            problems.append("a `backbone` is the denoiser's base: it goes with `objective` edm")
        from geosr.models.spec_bounds import inference_problem  # the checkpoint's loader would refuse it after training

        wrong = inference_problem(self.inference)
        if wrong:
            problems.append(f"`{wrong[0]}` {wrong[1]}")
        if self.precision not in ("auto", "fp32", "bf16"):
            problems.append(f"`precision` is auto, fp32 or bf16, not {self.precision!r}")
        for key in ("data", "val_data"):
            for d in getattr(self, key):
                problems.extend(_source_problems(d, self.scales))
                if isinstance(d, Mapping) and d.get("kind") == "synthetic" and "path" in d and "paths" in d:
                    # (the folder was trained on and the list ignored unsaid, a list trimmed in a copy of a run's
                    # record among them; found in review)
                    problems.append(f"`{key}` has a synthetic source with both path {_shown(d['path'])} and paths: "
                                    "give either path (a folder) or paths (a list of images)")
        if any(_names_manifest(d) for d in self.val_data):
            problems.append("`val_data` cannot be a data manifest (the run trains on its training split): give data "
                            "the run does not train on")
        elif not self.trains_backbone and any(d.get("kind") == "shared" for d in self.val_data):
            tree = next(d.get("path") for d in self.val_data if d.get("kind") == "shared")
            problems.append(f"`val_data` {tree} does not exist" if not tree or not Path(tree).is_dir() else
                            f"`val_data` {tree} is a folder of folders without a data layout: give images, A/ B/ "
                            "label/ pairs or a Ref-Diff folder (arch lite also takes such an image tree)")
        if self.val_data and self.val_batches < 1:
            problems.append(f"`val_data` needs `val_batches` of at least 1, not {self.val_batches}")
        if self.val_data and not self.val_every:
            problems.append("`val_data` needs `val_every` above 0 (validation every N steps)")
        if problems:
            raise OptionError("bad training config: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["data"] = [dict(x) for x in self.data]
        d["val_data"] = [dict(x) for x in self.val_data]
        d["inference"] = dict(self.inference)
        d["synthetic"] = dict(self.synthetic)
        return d

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with ``changes`` (None: keep). A change of the kind of model (``arch`` lite <-> a diffusion
        model) also swaps the settings that held the old kind's defaults for the new kind's."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if "arch" in changes:
            old = "backbone" if self.trains_backbone else "diffusion"
            new = "backbone" if isinstance(changes["arch"], str) and changes["arch"] in BACKBONE_ARCHS else "diffusion"
            if new != old:
                for name, value in ARCH_DEFAULTS[old].items():
                    if name not in changes and getattr(self, name) == value:
                        changes[name] = type(value)()  # (), 0, 0.0: the new kind's default
        return dataclasses.replace(self, **changes) if changes else self


# A data source's keys per kind: (required, optional); "weight" (a number, 0 to leave the source out) is every kind's
_SOURCE_KEYS = {"refdiff": ({"path"}, {"table"}), "pairs": ({"path"}, set()),
                "geotiff": ({"hr"}, {"lr", "ref", "mask", "map", "scale", "bands"}),
                "synthetic": (set(), {"paths", "path"}),  # (one of them: its images, or their folder)
                "shared": (set(), {"manifest", "path", "synthetic_weight"})}


def recorded_sources(sources: Any) -> Any:
    """A run record's data sources as a config takes them: a synthetic source recorded with both its folder
    (``path``) and the images it held (``paths``), as ``--data FOLDER`` was recorded for a while, is its folder:
    what that run trained on (a config giving both is refused)."""
    if not isinstance(sources, (list, tuple)):
        return sources
    return [{k: v for k, v in src.items() if k != "paths"} if isinstance(src, Mapping)
            and src.get("kind") == "synthetic" and "path" in src and "paths" in src else src for src in sources]


def _names_manifest(src: dict[str, Any]) -> bool:
    """Whether a data source is a data manifest (a .json file, or a folder holding one); a folder of folders
    without one (an image tree such as RSSCN7's class folders, which arch lite validates on) is none: it was refused
    as `val_data` for being a manifest (found in review)."""
    if src.get("kind") != "shared":
        return False
    from geosr.training.manifest import find_manifest

    return bool(src.get("manifest")) or (bool(src.get("path")) and find_manifest(src["path"]) is not None)


def _source_problems(src: Any, scales: Sequence[int]) -> list[str]:
    """What is wrong with one data source entry (its kind, keys and their types), in words; a key misspelt or of the
    wrong type was a KeyError or ValueError deep in loading ("internal error", exit 1), one unknown was ignored."""
    if not isinstance(src, Mapping):
        return [f"a data source is a table of settings, not {src!r}"]
    kind = src.get("kind")
    if kind not in _SOURCE_KEYS:
        return [f"unknown data source kind {kind!r} (refdiff, pairs, geotiff, synthetic or shared)"]
    required, optional = _SOURCE_KEYS[kind]
    problems = []
    missing, unknown = sorted(required - set(src)), sorted(set(src) - required - optional - {"kind", "weight"})
    if missing:
        problems.append(f"a {kind} data source needs {', '.join(missing)}")
    if unknown:
        problems.append(f"a {kind} data source has no setting {', '.join(unknown)} (it takes "
                        f"{', '.join(sorted(required | optional | {'weight'}))})")
    for key in ("path", "hr", "lr", "ref", "mask", "map", "manifest"):
        if key in src and not (isinstance(src[key], str) and src[key].strip()):
            problems.append(f"a {kind} data source's {key} is a path, not {src[key]!r}")
    if "paths" in src and (not isinstance(src["paths"], (list, tuple)) or not src["paths"]
                           or not all(isinstance(p, str) for p in src["paths"])):
        problems.append(f"a synthetic data source's paths is a list of image paths, not {src['paths']!r}")
    for key in ("weight", "synthetic_weight"):
        v = src.get(key, 1.0)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0 or v == float("inf"):
            problems.append(f"a data source's {key} is a number of at least 0, not {v!r}")
    if "table" in src and not isinstance(src["table"], bool):  # a name such as "cnam" read as true
        problems.append(f"a refdiff data source's table is true (its masks read with the run's change_table) or "
                        f"false (its own CLASS_Table.txt, else read from its masks), not {src['table']!r}")
    if "bands" in src and (not isinstance(src["bands"], (list, tuple)) or not src["bands"] or not all(
            isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in src["bands"])):
        problems.append(f"a geotiff data source's bands is a list of band numbers (from 1), not {src['bands']!r}")
    if "scale" in src and (isinstance(src["scale"], bool) or src["scale"] not in scales):
        problems.append(f"a geotiff data source's scale {src['scale']!r} is not among the scales trained "
                        f"({', '.join(map(str, scales))}): its LR would not be used")
    if kind == "synthetic" and "paths" not in src and "path" not in src:
        problems.append('a synthetic data source names its images ("paths", a list) or their folder ("path")')
    if kind == "shared" and not (src.get("manifest") or src.get("path")):
        problems.append('a shared data source names a "manifest" (a .json file) or a "path" that holds one')
    return problems


def load_config(path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """A TrainConfig from a .toml / .yaml / .json file (keys as the dataclass fields), then ``overrides``.

    A problem with a setting the file gave names it as the file's key (``scales in train.toml``); one given in
    ``overrides`` keeps the library's backticks (```scales```), which the CLI prints as its flag (as it does
    the settings a message advises)."""
    if path is not None and not isinstance(path, (str, os.PathLike)):  # (a TypeError from inside; found in review)
        raise OptionError(f"config {path!r}: give the path of a .toml, .yaml or .json file", param="config")
    values = _read_config(Path(path)) if path is not None else {}
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if "sets" in values and "sets" in unknown:  # the data where the config goes (the docs give it as --data)
        raise OptionError(f"{path}: is a data manifest (its \"sets\"), not a training config; give it as the "
                          "training data (`data`)")
    if unknown:
        raise OptionError(f"{path}: unknown training config key{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(unknown)} (docs/training.md lists the keys)")
    unknown = sorted(set(overrides) - known)
    if unknown:  # a keyword of geosr.train that is neither an option of `geosr train` nor a config key
        raise OptionError(f"unknown training option {unknown[0]!r} (neither an option of `geosr train` nor a key of "
                          "its config; docs/training.md lists both)", param=unknown[0])
    own = dict(values)
    from_file = {k for k in values if overrides.get(k) is None}
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        try:  # the file's own values first: a wrong one is wrong also where a flag replaces it
            _check_types(own, from_file=True)
        except OptionError:
            from_file = set(own)  # then every key it names is the file's
            raise
        _check_types(values)
        cfg = TrainConfig(**values)
        return refuse_diffusion_only(cfg, values)
    except TypeError as exc:  # a kind of value _check_types does not know (inside a table)
        raise OptionError(f"bad training config{f' {path}' if path is not None else ''}: {exc}") from None
    except OptionError as exc:
        if path is None or not from_file:
            raise
        message = _SUBJECT.sub(lambda m: f"{m[1]}{m[2]}{m[3]} in {Path(path).name}" if m[2] in from_file else m[0],
                               str(exc))
        raise OptionError(message, param=exc.param if exc.param not in from_file else None) from None


# the setting a problem is about, at its start (others it names, e.g. "needs `val_every`", are advice: a flag)
_SUBJECT = re.compile(r"((?:^|: |; )(?:a )?)`([a-z_]+)((?:\.[a-z_]+)?)`")  # (a table's: `synthetic.warp`)
_CONFIG_SUFFIXES = (".toml", ".yaml", ".yml", ".json")


def _read_config(p: Path) -> dict[str, Any]:
    """The table of a .toml / .yaml / .json training config (a ``[train]`` table merged into the top level)."""
    if not p.exists():
        raise InputNotFoundError(f"{p}: no such training config")
    if p.is_dir():
        raise OptionError(f"{p}: is a folder, not a training config (.toml, .yaml or .json); give training "
                          "data with `data`")
    if p.suffix.lower() not in _CONFIG_SUFFIXES:
        raise OptionError(f"{p}: a training config is a .toml, .yaml or .json file, not "
                          + (f"a {p.suffix} file" if p.suffix else "a file without a suffix")
                          + "; give training data with `data`")
    try:
        text = p.read_text(encoding="utf-8-sig")  # (TOML is UTF-8; a BOM from a Windows editor dropped)
        if p.suffix.lower() == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10: the same parser, as a package
                import tomli as tomllib  # type: ignore[no-redef]

            values = tomllib.loads(text)
        elif p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            class Loader(yaml.SafeLoader):  # YAML 1.2's floats too: 1e-4, which YAML 1.1 reads as text, was refused
                pass  # as "lr must be a number, not '1e-4'" (found in review)

            Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(
                r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)[eE][-+]?[0-9]+$"), list("-+.0123456789"))
            values = yaml.load(text, Loader=Loader) or {}  # noqa: S506 - a SafeLoader
        else:
            values = json.loads(text)
    except Exception as exc:
        raise OptionError(f"{p}: not a valid training config ({_parse_error(exc)})") from None
    if not isinstance(values, dict):
        raise OptionError(f"{p}: not a valid training config (it holds a {type(values).__name__}, not a table of "
                          "keys and values)")
    if "train" in values and isinstance(values["train"], dict):
        values = {**values["train"], **{k: v for k, v in values.items() if k != "train"}}
    return values


def _parse_error(exc: Exception) -> str:
    """A parser's complaint on one line (YAML's spans several, with the offending text drawn under it)."""
    mark = getattr(exc, "problem_mark", None)
    if getattr(exc, "problem", None) and mark is not None:
        return f"{exc.problem} at line {mark.line + 1}, column {mark.column + 1}"  # type: ignore[attr-defined]
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _check_types(values: Mapping[str, Any], *, from_file: bool = False) -> None:
    """Refuse a value of the wrong kind (``batch_size = "two"``) in one sentence, before the dataclass compares it
    with numbers; the kinds are those of the fields' defaults. ``from_file``: a null (JSON, YAML) is no value of a
    setting whose default is one (a caller's None is "the default")."""
    for f in dataclasses.fields(TrainConfig):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if from_file and f.name in values and values[f.name] is None and default is not None:
            raise OptionError(f"bad training config: `{f.name}` is null; give it a value, or leave it out for its "
                              f"default ({_shown(default)})", param=f.name)
        if f.name not in values or values[f.name] is None:
            continue
        value = values[f.name]
        if isinstance(default, bool) or default is None:
            continue
        if isinstance(default, int) and not isinstance(default, bool):
            ok, kind = isinstance(value, int) and not isinstance(value, bool), "a whole number"
        elif isinstance(default, float):
            ok, kind = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
        elif isinstance(default, tuple):
            ok, kind = isinstance(value, (list, tuple)), "a list"
            if ok and f.name == "scales":
                ok, kind = all(isinstance(v, int) and not isinstance(v, bool) for v in value), "a list of whole numbers"
        elif isinstance(default, dict):
            ok, kind = isinstance(value, Mapping), "a table"
        elif f.name == "arch":
            ok, kind = isinstance(value, (str, Mapping)), "a name or a table"
        elif isinstance(default, str):
            ok, kind = isinstance(value, str), "a string"
        else:
            continue
        if not ok:
            raise OptionError(f"bad training config: `{f.name}` must be {kind}, not {value!r}", param=f.name)


def _shown(value: Any) -> str:
    return json.dumps(list(value) if isinstance(value, tuple) else value)


# `synthetic`'s settings (geosr.training.synthetic_change.SyntheticChangeConfig, which needs torch): ranges of two
# numbers, low then high, within (lowest, highest), whole numbers or not; and single numbers within (lowest, highest)
_SYNTHETIC_RANGES = {"gain": (0.0, math.inf, False), "bias": (-math.inf, math.inf, False),
                     "gamma": (0.0, math.inf, False), "saturation": (0.0, math.inf, False),
                     "patches": (0, math.inf, True), "patch_frac": (0.0, 1.0, False), "detail_corr": (0.0, 1.0, False)}
_SYNTHETIC_NUMBERS = {"gradient": (0.0, math.inf), "max_shift": (0.0, math.inf), "p_ellipse": (0.0, 1.0),
                      "detail_sigma": (0.0, math.inf), "warp": (0.0, math.inf)}


def synthetic_problems(values: Mapping[str, Any]) -> list[str]:
    """What is wrong with the values of ``synthetic``'s settings (a kind or a range; the names are checked apart):
    they were used unchecked, failing at the first step as an internal error or quietly turning a setting off."""
    def number(v: Any, whole: bool = False) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and \
            (not whole or float(v).is_integer())

    problems = []
    for name, value in values.items():
        if name in _SYNTHETIC_RANGES:
            lo, hi, whole = _SYNTHETIC_RANGES[name]
            kind = "whole numbers" if whole else "numbers"
            if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(number(v, whole) for v in value)):
                problems.append(f"`synthetic.{name}` must be two {kind}, low then high, not {value!r}")
            elif not lo <= value[0] <= value[1] <= hi:
                within = f"within [{lo:g}, {hi:g}]" if math.isfinite(hi) else f"at least {lo:g}"
                problems.append(f"`synthetic.{name}` must be low then high, {within}, not {list(value)}")
        elif name in _SYNTHETIC_NUMBERS:
            lo, hi = _SYNTHETIC_NUMBERS[name]
            if not number(value) or not lo <= value <= hi:
                within = f"in [{lo:g}, {hi:g}]" if math.isfinite(hi) else f"a number, at least {lo:g}"
                problems.append(f"`synthetic.{name}` must be {within}, not {value!r}")
    return problems


def refuse_diffusion_only(cfg: TrainConfig, given: Mapping[str, Any]) -> TrainConfig:
    """``cfg``, unless it trains the backbone and ``given`` (the settings a file or the caller named) sets one the
    backbone does not have: refused even at its default value (TrainConfig itself sees only values that differ)."""
    if cfg.trains_backbone:
        named = [name for name in DIFFUSION_ONLY if given.get(name) is not None]
        if named:
            raise OptionError(f"bad training config: `{named[0]}` does not apply to arch {cfg.arch} (the LR-space "
                              "backbone)", param=named[0])
    return cfg


__all__ = ["TrainConfig", "load_config", "refuse_diffusion_only", "BACKBONE_ARCHS"]
