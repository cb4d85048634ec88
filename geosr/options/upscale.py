"""The options of ``geosr upscale``, declared once: by a table, since a batch manifest needs more per option than
the other commands' field declarations (:mod:`geosr.options.declare`) hold.

:class:`UpscaleOptions` is the validated, frozen options object of one upscale job (its run settings are the
config dataclasses of :mod:`geosr.config`). :data:`UPSCALE_OPTIONS` declares each option once, flat, as users
name it: its flags and help for the CLI, its key in a batch manifest, and where it lives in
:class:`UpscaleOptions`. The Typer command (:mod:`geosr.cli.upscale`), the manifest's schema
(:mod:`geosr.pipeline.batch.manifest`), the Python API (``geosr.upscale(..., window=6)``) and the tag
``GEOSR_OPTIONS`` of every output are all derived from it, so a new option is one entry here and one field.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

from geosr.config import (
    SUPPORTED_SCALES,
    DeviceConfig,
    OutputConfig,
    SamplerConfig,
    TilingConfig,
    check_bool,
)
from geosr.errors import OptionError, ScaleError
from geosr.options.declare import DEVICE_HELP, OVERWRITE_HELP, coerce, refuse_empty

SAMPLER_PRESETS = ("default", "paper")
LR_CONSISTENCY_HELP = (
    "Diffusion models: back-project the SR onto the LR: off, box (each LR pixel's block averages to it exactly) or "
    "bicubic (the bicubic degradation). Default: the checkpoint's own setting (the default model: box)."
)


CD_KEYWORDS = ("auto", "none")  # --cd values that are not files
STYLE_KEYWORDS = ("none", "sample")  # --style values that are not files


@dataclass(frozen=True, kw_only=True)
class UpscaleOptions:
    """Every option of one upscale job but its LR and output paths; checked when made (OptionError)."""

    # the options that may name a file (a box, a keyword, a built-in table or a model's name otherwise): an output
    # records such a file by its name (geosr.io.paths.recorded_options)
    paths: ClassVar[tuple[str, ...]] = ("ref", "cd", "map", "cd_classes", "aoi", "model", "style")

    scale: int = 8
    ref: str | None = None
    cd: str | None = None
    map: str | None = None
    bands: str | None = None
    ref_bands: str | None = None
    cd_classes: str = "binary"
    aoi: str | None = None
    aoi_crs: str = "EPSG:4326"
    model: Any = "default"  # a name, a checkpoint path, or a ready SuperResolver (Python only)
    style: str | None = None
    tiling: TilingConfig = field(default_factory=TilingConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    output_config: OutputConfig = field(default_factory=OutputConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    force_resources: bool = False
    coregister: bool = True  # with a reference: estimate its shift from the LR and undo it
    cloud_masks: bool = True  # with a reference: the inputs' own cloud masks are changed (geosr.io.sensor_masks)
    ignore_unused: bool = False  # run although the model cannot use a given --ref / --cd / --map / --style

    def __post_init__(self) -> None:
        # the kinds the flat keywords are given in (found in review: scale "4" was "scale 4: geosr supports whole
        # scale factors from 2 to 16", 4.0 refused here and taken by upscale(scale=4.0); bands [4, 3, 2] an
        # AttributeError inside; a TilingConfig as `sampler` one too)
        object.__setattr__(self, "scale", coerce("scale", self.scale, int))
        for name in ("bands", "ref_bands"):
            object.__setattr__(self, name, coerce(name, getattr(self, name), str))
        for name, kind in (("sampler", SamplerConfig), ("tiling", TilingConfig), ("output_config", OutputConfig),
                           ("device", DeviceConfig)):
            if not isinstance(getattr(self, name), kind):
                raise OptionError(f"{name} is a {type(getattr(self, name)).__name__}; give {kind.__name__}(...) or "
                                  "a table of its fields", param=name)
        if not isinstance(self.cd_classes, (str, os.PathLike)):  # (a table object failed inside the run: review)
            raise OptionError(f"cd_classes {self.cd_classes!r}: give a class table's name or its JSON file",
                              param="cd_classes")
        for name, default in (("force_resources", False), ("coregister", True), ("cloud_masks", True),
                              ("ignore_unused", False)):
            check_bool(self, name, default=default)  # None: "not given" (read as off, it turned co-registration off)
        if isinstance(self.scale, bool) or not isinstance(self.scale, int) or self.scale not in SUPPORTED_SCALES:
            raise ScaleError(
                f"scale {self.scale}: geosr supports whole scale factors from {SUPPORTED_SCALES[0]} to "
                f"{SUPPORTED_SCALES[-1]}",
                param="scale",
            )
        if self.sampler.preset not in SAMPLER_PRESETS:
            raise OptionError(f"sampler {self.sampler.preset!r}: choose one of {', '.join(SAMPLER_PRESETS)}",
                              param="sampler")
        if isinstance(self.model, os.PathLike):  # a checkpoint's path as a pathlib.Path (was taken for a model)
            object.__setattr__(self, "model", os.fspath(self.model))
        elif not isinstance(self.model, str) and not (hasattr(self.model, "scales") and callable(self.model)):
            raise OptionError(f"model {self.model!r}: give a model's name (`geosr models`), a checkpoint's path or a "
                              "SuperResolver", param="model")
        for name in ("ref", "cd", "map", "aoi", "style"):  # paths arrive as str or os.PathLike
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):  # (a PathLike's str() may be its repr; review)
                object.__setattr__(self, name, os.fspath(value) if isinstance(value, os.PathLike) else str(value))
        if isinstance(self.cd_classes, os.PathLike):  # (else text)
            object.__setattr__(self, "cd_classes", os.fspath(self.cd_classes))
        for name, words in (("cd", CD_KEYWORDS), ("style", STYLE_KEYWORDS)):  # --cd AUTO, --style None: the
            value = getattr(self, name)  # keyword, unless a file has that name (it was "AUTO: no such file")
            if isinstance(value, str) and value.lower() in words and not os.path.lexists(value):
                object.__setattr__(self, name, value.lower())
        refuse_empty(self, ("ref", "cd", "map", "aoi", "style", "bands", "ref_bands", "cd_classes", "model"))
        if self.aoi is None and self.aoi_crs != "EPSG:4326":  # (it would be ignored, a typo in it unnoticed)
            raise OptionError("aoi_crs applies to `aoi` only (the CRS of an area-of-interest box)", param="aoi_crs")

    @classmethod
    def from_flat(cls, values: Mapping[str, Any]) -> "UpscaleOptions":
        """Build from flat option names (``window=6``, ``compress="LZW"``), as the CLI and manifests give them;
        nested config objects (``tiling=TilingConfig(...)``) are taken as they are."""
        return cls._build({}, values)

    def updated(self, values: Mapping[str, Any]) -> "UpscaleOptions":
        """These options with ``values`` (flat names or fields) applied; a flat value changes only its own
        setting (``sampler="paper"`` keeps this sampler's seed and steps)."""
        return self._build({f: getattr(self, f) for f in _FIELDS}, values)

    @classmethod
    def _build(cls, top: dict[str, Any], values: Mapping[str, Any]) -> "UpscaleOptions":
        top = dict(top)
        nested: dict[str, dict[str, Any]] = {}
        given: dict[str, str] = {}
        for raw, value in values.items():
            name = _ALIASES.get(raw, raw)
            if name in given:  # (ref_detail=True, reference_detail=False: the last won; found in review)
                raise OptionError(f"upscale option {raw!r} is given twice (also as {given[name]!r})", param=name)
            given[name] = raw
            spec = OPTIONS_BY_NAME.get(name)
            if name in _FIELDS and (spec is None or dataclasses.is_dataclass(value) or isinstance(value, Mapping)):
                # sampler=SamplerConfig(...), or a table of its fields (sampler={"steps": 2} was "give text")
                top[name] = value if dataclasses.is_dataclass(value) else _config(name, value)
                continue
            if spec is None:
                raise OptionError(f"unknown upscale option {name!r}")
            if spec.path is None:
                raise OptionError(f"{name!r} is a way to run a job, not an option of it")
            if name == "model" and value is None:
                raise OptionError("model None: give a model's name (`geosr models`), a checkpoint's path or a "
                                  "SuperResolver", param="model")
            if not (name == "model" and not isinstance(value, (str, list, tuple))):  # a SuperResolver (Python)
                value = coerce(name, value, spec.type)
            head, _, leaf = spec.path.partition(".")
            if leaf:
                nested.setdefault(head, {})[leaf] = value
                if isinstance(values.get(head), Mapping) and leaf in values[head]:  # set in its table too (the
                    # field won without a word; found in review); over a config object it is that object updated
                    raise OptionError(f"upscale option {raw!r} is given twice (also in {head!r})", param=name)
            else:
                top[head] = value
        for head, leaves in nested.items():
            base = top.get(head) or _default(_FIELDS[head])
            top[head] = dataclasses.replace(base, **leaves)
        return cls(**top)

    def flat(self) -> dict[str, Any]:
        """The options under their flat names (a manifest row, the tag ``GEOSR_OPTIONS``)."""
        out = {}
        for spec in UPSCALE_OPTIONS:
            if spec.path is not None:
                value: Any = self
                for part in spec.path.split("."):
                    value = getattr(value, part)
                plain = isinstance(value, (str, int, float, bool, type(None)))
                out[spec.name] = value if plain else getattr(value, "name", str(value))  # a SuperResolver: its name
        return out

    def to_json(self) -> str:
        """The options that shape the output (not where or whether it runs: device, overwrite, ...), as JSON."""
        kept = {k: v for k, v in self.flat().items() if OPTIONS_BY_NAME[k].recorded}
        return json.dumps(kept, sort_keys=True, separators=(",", ":"))


_FIELDS = {f.name: f for f in dataclasses.fields(UpscaleOptions)}
# other spellings a Python caller may use: SamplerConfig's and load_model's name of --ref-detail
_ALIASES = {"reference_detail": "ref_detail"}


def _config(name: str, value: Any) -> Any:
    """A nested config given as a table of its fields (``tiling={"window": 16}``) as the config object; the
    object itself as it is; anything else refused."""
    default = _default(_FIELDS[name])
    if not dataclasses.is_dataclass(default):
        return value
    if isinstance(value, Mapping):
        try:
            return dataclasses.replace(default, **value)  # type: ignore[type-var]  # an instance, checked above
        except TypeError as exc:
            raise OptionError(f"{name}: {exc}", param=name) from None
    if not isinstance(value, type(default)):
        raise OptionError(f"{name} {value!r}: give a {type(default).__name__} or a table of its fields", param=name)
    return value


def _default(f: dataclasses.Field) -> Any:
    """A field's default value (made by its factory when it has one)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise TypeError(f"{f.name} has no default")


@dataclass(frozen=True)
class OptionSpec:
    """One user-facing option: flat ``name`` (the Python keyword), where it lives in UpscaleOptions (``path``,
    None for a way of running: resume, dry run), its CLI ``flags`` and ``help``, its ``type`` and whether a batch
    manifest may set it per job (``manifest``: the key, or None)."""

    name: str
    path: str | None
    flags: tuple[str, ...]
    help: str
    type: type = str
    manifest: str | None = ""  # "" = the name itself
    cli_path: bool = False  # shown as a PATH in the CLI
    recorded: bool = True  # in the output's GEOSR_OPTIONS tag (False: how it ran, not what it made)
    default: Any = None  # for options without a path (a way of running)

    @property
    def manifest_key(self) -> str | None:
        return self.name if self.manifest == "" else self.manifest

    def default_value(self) -> Any:
        if self.path is None:
            return self.default
        head, _, leaf = self.path.partition(".")
        f = _FIELDS[head]
        base = _default(f)
        return getattr(base, leaf) if leaf else base


def _o(name, path, flags, help, type=str, **kw) -> OptionSpec:  # noqa: A002 - the table reads best so
    return OptionSpec(name, path, tuple(flags), help, type, **kw)


UPSCALE_OPTIONS: tuple[OptionSpec, ...] = (
    _o("scale", "scale", ["-x", "--scale"],
       "Scale factor: a whole number from 2 to 16 (a model runs at the next scale it was trained for, then is "
       "resampled).", int, manifest="x"),
    _o("ref", "ref", ["--ref"], "Older high-resolution reference raster (any CRS and resolution; any input LR "
       "takes, a STAC item included).", cli_path=True),
    _o("cd", "cd", ["--cd"], "Change mask raster (class values, see --cd-classes); `auto` (the default with --ref) "
       "detects the changes against the reference; `none`: treat the reference as unchanged everywhere.",
       cli_path=True),
    _o("map", "map", ["--map"], "Map class raster from `geosr rasterize-osm`.", cli_path=True),
    _o("bands", "bands", ["--bands"], "LR bands, by index, description or what they hold: '4,3,2', 'B04,B03,B02' or "
       "'red,green,blue'. Default: RGB by band description, else all."),
    _o("ref_bands", "ref_bands", ["--ref-bands"], "Reference bands matching --bands (default: its RGB bands, "
       "else all)."),
    _o("cd_classes", "cd_classes", ["--cd-classes"], "Change class table: binary, second, cnam-cd, or a JSON file."),
    _o("aoi", "aoi", ["--aoi"], "Area of interest: 'LEFT,BOTTOM,RIGHT,TOP' (in --aoi-crs) or a vector file."),
    _o("aoi_crs", "aoi_crs", ["--aoi-crs"], "CRS of an --aoi box, or of an --aoi vector file that has none "
       "(default EPSG:4326)."),
    _o("model", "model", ["--model", "-m"], "Model name (see `geosr models`) or checkpoint path. `default`: the "
       "bundled diffusion model (x2, x4, x8, x16); DIFFUSION+BACKBONE (e.g. default+lite): the first sampling detail "
       "on the second's prediction."),
    _o("style", "style", ["--style"], "Diffusion models with a style path (SGDM): a style image (any raster), "
       "'sample' (a style drawn from the model's flow) or 'none' (default).", manifest=None),
    _o("window", "tiling.window", ["--window"], "Window size in LR pixels (default: the model's; 256 HR pixels for "
       "the diffusion models, 272 LR pixels (at most 2048 HR) for the LR-space ones).", int),
    _o("overlap", "tiling.overlap", ["--overlap"], "Window overlap in LR pixels (default: the model's; a quarter "
       "window for the diffusion models, a sixteenth for the LR-space ones).", int),
    _o("seed", "sampler.seed", ["--seed"], "Noise seed (same seed, same output).", int),
    _o("sampler", "sampler.preset", ["--sampler"], "Sampler preset of diffusion models: default or paper."),
    _o("steps", "sampler.steps", ["--steps"], "Sampling steps (default: with --sampler default the checkpoint's, "
       "else the preset's: paper 256); 0 "
       "with a DIFFUSION+BACKBONE model (e.g. default+lite): the backbone's prediction, back-projected by the "
       "diffusion model's LR-consistency.", int),
    _o("fuse_overlaps", "sampler.fuse_overlaps", ["--fuse-overlaps/--no-fuse-overlaps"],
       "Average overlapping windows at every diffusion step.", bool),
    _o("ref_detail", "sampler.reference_detail", ["--ref-detail/--no-ref-detail"], "Diffusion models: add the "
       "reference's detail where the LR shows that it matches (default: the checkpoint's own setting; the default "
       "model: on).", bool),
    _o("lr_consistency", "sampler.lr_consistency", ["--lr-consistency"], LR_CONSISTENCY_HELP),
    _o("device", "device.device", ["--device"], DEVICE_HELP, manifest=None, recorded=False),
    _o("batch_size", "device.batch_size", ["--batch-size"],
       "Windows per model call on CUDA (on the CPU a learned model takes windows singly).", int),
    _o("compress", "output_config.compress", ["--compress"], "COG compression (DEFLATE, LZW, ZSTD, NONE)."),
    _o("compress_level", "output_config.compress_level", ["--compress-level"], "DEFLATE (1-9) or ZSTD (1-22) "
       "level: higher writes smaller files, slower (default: DEFLATE 5, ZSTD GDAL's 9).", int),
    _o("overwrite", "output_config.overwrite", ["--overwrite"], OVERWRITE_HELP, bool, recorded=False),
    _o("coregister", "coregister", ["--coregister/--no-coregister"], "With --ref: measure the reference's shift "
       "against the LR (phase correlation at LR scale) and undo it; an unreliable estimate is reported, not used.",
       bool),
    _o("cloud_masks", "cloud_masks", ["--cloud-masks/--no-cloud-masks"], "With --ref: take the pixels that an "
       "input's own cloud mask flags (a Sentinel-2 product's SCL or MSK_CLASSI / MSK_CLOUDS, a Landsat QA_PIXEL) "
       "as changed (not with --cd none, which trusts the reference everywhere), and leave them out of the "
       "reference's harmonization and co-registration.", bool),
    _o("ignore_unused", "ignore_unused", ["--ignore-unused"], "Run although the model cannot use a given "
       "--ref, --cd, --map or --style (default: refused, since it would change nothing).", bool, recorded=False),
    _o("force_resources", "force_resources", ["--force-resources"], "Run even when the plan needs more memory or "
       "disk than the machine has.", bool, recorded=False),
    _o("resume", None, ["--resume"], "Continue an interrupted run of the same job.", bool, manifest=None,
       default=False),
    _o("dry_run", None, ["--dry-run"], "Print the plan (windows, memory, output size); write nothing.", bool,
       manifest=None, default=False),
)
OPTIONS_BY_NAME = {o.name: o for o in UPSCALE_OPTIONS}
