"""The options of ``geosr detect-changes``, ``rasterize-osm``, ``evaluate`` and ``train``, each declared once.

Each class is its command's validated, frozen options object (:class:`~geosr.options.declare.CommandOptions`):
the Python function takes it (``options=``) or its fields as keywords, the command line's flags are generated
from it, and outputs record it. The inputs and the output of a command (its arguments, ``--ref``, ``-o``) and
how it reports (``--quiet``, ``--json``) are not options of the work and stay in the function's signature.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping

from geosr.config import LR_CONSISTENCY_MODES, SUPPORTED_SCALES, SamplerConfig, device_name
from geosr.errors import OptionError, ScaleError
from geosr.options.declare import DEVICE_HELP, OVERWRITE_HELP, CommandOptions, check_choice, option
from geosr.options.upscale import LR_CONSISTENCY_HELP

MAP_STYLES = ("classes", "rgb")  # rasterize-osm: class ids with a colour table, or the palette's RGB
EVAL_CD_MODES = ("given", "given-lr", "auto", "none")  # evaluate: the change mask each model gets


@dataclass(frozen=True, kw_only=True)
class DetectChangesOptions(CommandOptions):
    """``geosr detect-changes``: which bands are compared, whether the reference is co-registered first."""

    command: ClassVar[str] = "detect-changes"

    bands: str | None = option(None, "--bands", str, "LR bands compared, e.g. 4,3,2 (default: as upscale picks "
                               "them).")
    ref_bands: str | None = option(None, "--ref-bands", str, "Reference bands matching --bands.")
    coregister: bool = option(True, "--coregister/--no-coregister", bool, "Estimate and undo the reference's shift "
                              "from the LR first.")
    cloud_masks: bool = option(True, "--cloud-masks/--no-cloud-masks", bool, "Take the pixels that an input's own "
                               "cloud mask flags (a Sentinel-2 product's SCL or MSK_CLASSI / MSK_CLOUDS, a Landsat "
                               "QA_PIXEL) as changed.")
    # 4 = geosr.conditioning.change_detection.REFINE (the options layer imports only the standard library)
    refine: int = option(4, "--refine", int, "Draw the changes on a grid this many times finer than the LR's "
                         "(1 to 4; 1: the LR grid), their outlines inside the LR pixels they cut.")
    overwrite: bool = option(False, "--overwrite", bool, OVERWRITE_HELP, recorded=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.refine, bool) or not isinstance(self.refine, int) or not 1 <= self.refine <= 4:
            raise OptionError(f"refine {self.refine!r} must be a whole number from 1 to 4", param="refine")


@dataclass(frozen=True, kw_only=True)
class RasterizeOSMOptions(CommandOptions):
    """``geosr rasterize-osm``: the grid (a box or a raster's), the OSM source, the classes and the rendering."""

    command: ClassVar[str] = "rasterize-osm"
    paths: ClassVar[tuple[str, ...]] = ("like", "aoi", "osm_file", "classes", "cache_folder")
    GRID: ClassVar[tuple[str, ...]] = ("bbox", "resolution", "crs", "like", "scale", "aoi", "aoi_crs")

    bbox: Any = option(None, "--bbox", str, "Area in WGS84 degrees, written as --aoi writes a box, in this order: "
                       "west (lon), south (lat), east (lon), north (lat). geosr keeps this order whatever osmnx "
                       "version is installed. (Four separate numbers, the old form, still work in this release.)",
                       metavar="LEFT,BOTTOM,RIGHT,TOP")
    resolution: float | None = option(None, ("--resolution", "-r"), float, "Pixel size in metres (with --bbox).")
    crs: Any = option(None, "--crs", str, "Output CRS with --bbox, e.g. EPSG:32633. Default: the UTM zone of the "
                      "box centre.")
    like: str | None = option(None, "--like", str, "Use this raster's grid, refined by -x: exactly the grid `geosr "
                              "upscale -x N` writes (a file, a URL or a STAC item, as upscale's inputs).",
                              metavar="PATH")  # text, not a Path: a URL's // must survive
    scale: int | None = option(None, ("-x", "--scale"), int, "With --like: the upscale factor (default 1, the "
                               "raster's own grid; above 16, a map finer than any upscale grid, which upscale "
                               "reads by mode).")
    aoi: str | None = option(None, "--aoi", str, "With --like: crop as `geosr upscale --aoi` does "
                             "('LEFT,BOTTOM,RIGHT,TOP' in --aoi-crs, or a vector file).")
    aoi_crs: str = option("EPSG:4326", "--aoi-crs", str, "CRS of an --aoi box, or of an --aoi vector file that "
                                                     "has none.")
    osm_file: str | None = option(None, "--osm-file", Path, "Work offline from a file: .osm, .osm.bz2, .osm.gz, .pbf, "
                                  ".gpkg, .geojson, .shp, .fgb. Default: the Overpass API.")
    classes: Any = option(None, "--classes", Path, "Your own class table (JSON, see docs/osm-classes.md). Default: "
                          "geosr-osm-v1.")  # Python: a MapClassTable too
    style: str = option("classes", "--style", str, "classes: one band of class ids with a colour table; rgb: the map "
                        "rendered in the palette (no labels).")
    timeout: float | None = option(None, "--timeout", float, "Overpass timeout in seconds (default 180).",
                                   recorded=False)
    overpass_url: str | None = option(None, "--overpass-url", str, "Another Overpass API endpoint (default "
                                      "https://overpass-api.de/api).")
    date: Any = option(None, "--date", str, "Online only: the map as it was then (YYYY-MM-DD, from 2012-09-12 "
                       "06:55 UTC on, its first snapshot).")
    cache_folder: str | None = option(None, "--cache-dir", Path, "Folder for Overpass responses (default "
                                      "$GEOSR_CACHE_DIR/osmnx, else $XDG_CACHE_HOME/geosr/osmnx or "
                                      "~/.cache/geosr/osmnx).",
                                      recorded=False)
    allow_empty: bool = option(False, "--allow-empty", bool, "Write a map of background only when the area holds "
                               "no feature, or none that covers a pixel's centre (nodata where an OSM file's "
                               "declared bounds leave the grid out; default: exit 2).")
    overwrite: bool = option(False, "--overwrite", bool, OVERWRITE_HELP, recorded=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        b = self.bbox
        if isinstance(b, (list, tuple)) and len(b) == 4 and all(
                isinstance(v, numbers.Real) and not isinstance(v, bool) for v in b):
            # as the command line writes it: the output's GEOSR_OPTIONS, and so its bytes, the same from either
            # spelling (a tuple was recorded as a list; found in review)
            object.__setattr__(self, "bbox", ",".join(str(v) for v in b))
        check_choice(self.style, "style", MAP_STYLES)
        t = self.timeout
        if t is not None and (isinstance(t, bool) or not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0)):
            raise OptionError(f"timeout {t!r} must be a positive number of seconds", param="timeout")
        online = [name for name in ("date", "overpass_url", "timeout", "cache_folder")
                  if getattr(self, name) is not None]
        if self.osm_file is not None and online:
            what = " and ".join(f"`{n}`" for n in online)
            raise OptionError(f"{what} {'is' if len(online) == 1 else 'are'} for the online source (the Overpass "
                              "API); leave it out with `osm_file`", param=online[0])

    @property
    def overpass_timeout(self) -> float:
        """Seconds to wait for the Overpass API (`timeout`, default 180)."""
        return 180.0 if self.timeout is None else float(self.timeout)

    def grid(self) -> dict[str, Any]:
        """The grid's options, as :class:`geosr.osm.grid.GridSpec` takes them."""
        return {name: getattr(self, name) for name in self.GRID}


@dataclass(frozen=True, kw_only=True)
class EvaluateOptions(CommandOptions):
    """``geosr evaluate``: the models, scales and settings measured, and where the results go."""

    command: ClassVar[str] = "evaluate"
    paths: ClassVar[tuple[str, ...]] = ("out",)

    models: tuple[Any, ...] = option((), ("--model", "-m"), list[str], "Model name or checkpoint path "
                                     "(repeatable). Baselines bicubic and reference-paste are always added; "
                                     "without --model, they alone are scored.",
                                     show_default=False)  # Python: SuperResolvers too
    scales: tuple[int, ...] = option((8, 16), ("-x", "--scale"), list[int], "Scale factor(s) (repeatable; default 8 "
                                     "and 16).", show_default=False)
    out: str | None = option(None, "--out-dir", Path, "Folder for metrics.json, metrics.md and PNG panels (default "
                             "geosr-eval). It must be empty or new, unless --overwrite.", recorded=False)
    steps: int | None = option(None, "--steps", int, "Sampling steps (default: the checkpoint's own setting, else "
                               "the sampler preset's).")
    lr_consistency: Any = option(None, "--lr-consistency", str, LR_CONSISTENCY_HELP)
    reference_detail: bool | None = option(None, "--ref-detail/--no-ref-detail", bool, "Add the reference's detail "
                                           "where the LR shows that it matches (default: the checkpoint's own "
                                           "setting).")
    seed: int = option(0, "--seed", int, "Noise seed.")
    cd: str = option("given", "--cd", str, "The change mask every model gets: given (the data set's), given-lr "
                     "(the data set's on the LR grid: an LR pixel is changed where most of it is; the best a "
                     "detector on the LR grid can give), auto (detected against the reference, as upscale --cd "
                     "auto) or none. The metrics' regions are the data set's labels; a pair without a label "
                     "gets auto under given and given-lr.")
    panels: bool = option(True, "--panels/--no-panels", bool, "Write PNG panels LR | Ref | mask | SR | HR.",
                          recorded=False)
    device: str = option("auto", "--device", str, DEVICE_HELP, recorded=False)
    overwrite: bool = option(False, "--overwrite", bool, "Replace an earlier evaluation in --out-dir.",
                             recorded=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        models = (os.fspath(m) if isinstance(m, os.PathLike) else m for m in _as_tuple(self.models))  # Path: a path
        object.__setattr__(self, "models", tuple(dict.fromkeys(models)))  # -m a -m a: once
        object.__setattr__(self, "scales", tuple(dict.fromkeys(_as_tuple(self.scales))))  # -x 4 -x 4: once
        if self.lr_consistency is not None:  # checked here too: classical models alone never read it
            check_choice(self.lr_consistency, "lr_consistency", LR_CONSISTENCY_MODES)
        if not self.scales:
            raise ScaleError("scale: give at least one scale factor", param="scale")
        for s in self.scales:
            if isinstance(s, bool) or not isinstance(s, int) or s not in SUPPORTED_SCALES:
                raise ScaleError(f"scale {s!r}: geosr supports whole scale factors from {SUPPORTED_SCALES[0]} to "
                                 f"{SUPPORTED_SCALES[-1]}", param="scale")
        check_choice(self.cd, "cd", EVAL_CD_MODES)
        if self.steps is not None:  # as upscale's (a huge number was an internal error)
            SamplerConfig(steps=self.steps)


@dataclass(frozen=True, kw_only=True)
class TrainOptions(CommandOptions):
    """``geosr train``: a run's settings given beside (or instead of) its config file, which they override (None:
    the config's value), and how the run goes (resume, overwrite, time limit). The merged settings are checked
    once, as a :class:`geosr.training.config.TrainConfig`."""

    command: ClassVar[str] = "train"
    paths: ClassVar[tuple[str, ...]] = ("out", "init")
    SETTINGS: ClassVar[tuple[str, ...]] = ("out", "arch", "scales", "steps", "batch_size", "crop", "lr",
                                           "checkpoint_every", "val_every", "degradation", "device", "seed")

    out: str | None = option(None, "--out-dir", Path, "Run folder: checkpoints, log, validation grids, "
                             "model.safetensors (default: the config's `out`, else runs/geosr). It must be empty or "
                             "new, unless --resume or --overwrite.")
    data: tuple[Any, ...] | None = option(None, ("--data", "-d"), list[str], "Training data (repeatable): a Ref-Diff "
                                          "folder (HR_512/...), an A/ B/ label/ folder, a data manifest (.json naming "
                                          "data sets and their held-out split; its training split is used), or HR "
                                          "images for synthetic change.")
    val_data: tuple[Any, ...] | None = option(None, "--val-data", list[str], "Validation data the run does not train "
                                              "on (repeatable; layouts as --data, not a manifest): scored every "
                                              "--val-every steps, the best model kept as OUT_DIR/best.safetensors.")
    arch: Any = option(None, "--arch", str, "Architecture: tiny, small or paper (diffusion models), or lite (the "
                       "fast LR-space model, fine-tuned from the bundled lite, or from --init).")
    scales: tuple[int, ...] | None = option(None, ("-x", "--scale"), list[int], "Scale factor(s) to train "
                                            "(repeatable).")
    steps: int | None = option(None, "--train-steps", int, "Optimizer steps (per process).")
    batch_size: int | None = option(None, "--batch", int, "Samples per optimizer step (per process).")
    crop: int | None = option(None, "--crop", int, "HR crop side (a multiple of every scale).")
    lr: float | None = option(None, "--learning-rate", float, "Peak learning rate (AdamW).")
    checkpoint_every: int | None = option(None, "--checkpoint-every", int, "Save the training state every N steps.")
    val_every: int | None = option(None, "--val-every", int, "Write a validation image grid (and, with --val-data, "
                                   "score the model) every N steps.")
    degradation: str | None = option(None, "--degradation", str, "LR synthesis: real (Ref-Diff 3.3 chain), bicubic "
                                     "or mixed.")
    device: str | None = option(None, "--device", str, DEVICE_HELP)
    seed: int | None = option(None, "--seed", int, "Seed of the data stream and the initialization.")
    init: str | None = option(None, "--init", str, "Start from this geosr checkpoint (fine-tuning; with --arch "
                              "lite, a backbone checkpoint).")
    resume: bool = option(False, "--resume", bool, "Continue the run in --out-dir from its last saved state, with "
                          "its own settings (only the run's length, save and validation intervals, device and name "
                          "may change).")
    overwrite: bool = option(False, "--overwrite", bool, "Replace an earlier run in --out-dir.")
    max_minutes: float | None = option(None, "--max-minutes", float, "Stop (and save) after this wall time.")

    def __post_init__(self) -> None:
        if self.device is not None:  # a torch.device, as upscale, evaluate and batch take it (found in review)
            object.__setattr__(self, "device", device_name(self.device))
        super().__post_init__()
        for name in ("data", "val_data", "scales"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _as_tuple(value) or None)
        for name in ("data", "val_data"):  # (data=5 was a TypeError from inside the run; found in review)
            bad = [v for v in getattr(self, name) or () if not isinstance(v, (str, os.PathLike, Mapping))]
            if bad:
                raise OptionError(f"{name} {bad[0]!r}: give a data folder's or file's path (or a table of a data "
                                  "source, as a config's `data` holds)", param=name)
        # zero in a config means "the architecture's own" batch and rate; given here, it is a mistake
        for name in ("steps", "batch_size", "crop", "checkpoint_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise OptionError(f"{name} {value} must be at least 1", param=name)
        if self.val_every is not None and self.val_every < 0:
            raise OptionError(f"val_every {self.val_every} cannot be negative (0: no validation)", param="val_every")
        if self.lr is not None and not 0 < self.lr < math.inf:
            raise OptionError(f"lr {self.lr} must be a positive, finite learning rate", param="lr")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise OptionError(f"max_minutes {self.max_minutes} must be a positive number of minutes",
                              param="max_minutes")

    def settings(self) -> dict[str, Any]:
        """The run settings given here (None: the config's), as :class:`geosr.training.config.TrainConfig` names
        them."""
        return {name: getattr(self, name) for name in self.SETTINGS}


def _as_tuple(value: Any) -> tuple:
    """A repeatable option's values as a tuple: one value (``scales=8``, ``data="tiles/"``) is a tuple of one."""
    if value is None:
        return ()
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)
