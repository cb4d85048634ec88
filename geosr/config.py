"""Frozen, keyword-only run settings. Every output records the settings it was made with (as JSON tags)."""

from __future__ import annotations

import dataclasses
import json
import numbers
import re
from dataclasses import dataclass
from typing import Any

from geosr.errors import OptionError

SUPPORTED_SCALES = tuple(range(2, 17))  # any integer; models run at their trained scales (models/rescale.py)
COMPRESSIONS = ("DEFLATE", "LZW", "ZSTD", "NONE")  # what the COG writer is asked for; GDAL has them all
# The levels GDAL takes for the COG's codecs (DEFLATE: zlib's range, which libdeflate shares) and geosr's default.
# DEFLATE 5, not GDAL's 6: on x4 outputs of the five held-out images of ../shared/data it wrote the COG in 0.47-0.60x
# the time of level 6, 1.9-3.5% larger (GDAL 3.10, libdeflate; docs/cli-upscale.md).
COMPRESS_LEVELS = {"DEFLATE": (1, 9), "ZSTD": (1, 22)}
DEFAULT_COMPRESS_LEVEL = {"DEFLATE": 5}
BACK_PROJECTION_OPERATORS = ("box", "bicubic")  # geosr.models.consistency
LR_CONSISTENCY_MODES = ("off", *BACK_PROJECTION_OPERATORS)


@dataclass(frozen=True, kw_only=True)
class TilingConfig:
    """Window plan on the LR grid. Sizes are LR pixels; ``None`` picks a default for the scale."""

    window: int | None = None
    overlap: int | None = None

    def __post_init__(self) -> None:
        _whole(self, "window", "overlap")
        _check_int("window", self.window, low=1, none_ok=True)
        _check_int("overlap", self.overlap, low=0, none_ok=True)
        if self.window is not None and self.overlap is not None and self.overlap >= self.window:
            raise OptionError(f"overlap {self.overlap} must be smaller than the window ({self.window} LR pixels)",
                              param="overlap")

    def resolved(self, scale: int, window_hr: int = 256, overlap_share: float = 0.25) -> "TilingConfig":
        """Fill in defaults: windows of about ``window_hr`` HR pixels (the model's preference; 256 for the
        diffusion models), ``overlap_share`` of them overlapping."""
        window = self.window if self.window is not None else max(8, window_hr // scale)
        if self.overlap is not None and self.overlap >= window:  # given for the default window: said, not clamped
            raise OptionError(f"overlap {self.overlap} must be smaller than the window ({window} LR pixels, the "
                              "model's default here; `window` sets another)", param="overlap")
        overlap = self.overlap if self.overlap is not None else int(window * overlap_share)
        return TilingConfig(window=window, overlap=min(overlap, window - 1))


@dataclass(frozen=True, kw_only=True)
class SamplerConfig:
    """Diffusion sampling and what follows it. Classical back-ends ignore everything but the seed.

    ``reference_detail`` None follows the checkpoint's ``inference`` setting; True / False turn reference detail
    injection (:mod:`geosr.models.reference_detail`) on / off. ``lr_consistency`` None follows the checkpoint too;
    "off", "box" or "bicubic" turn back-projection onto the LR (:mod:`geosr.models.consistency`) off, or on with
    that operator."""

    preset: str = "default"
    steps: int | None = None
    seed: int = 0
    fuse_overlaps: bool = False
    reference_detail: bool | None = None
    lr_consistency: str | None = None

    def __post_init__(self) -> None:
        _whole(self, "steps", "seed")
        check_bool(self, "fuse_overlaps", default=False)
        check_bool(self, "reference_detail", none_ok=True)
        # 0: a sampler on a backbone gives the backbone's; more than MAX_STEPS: an internal error (2**64), or a dry
        # run's timing of a window held the machine's memory (found in review)
        _check_int("steps", self.steps, low=0, none_ok=True, high=MAX_STEPS)
        _check_int("seed", self.seed, low=0, high=MAX_SEED)
        mode = self.lr_consistency
        if mode is not None and mode not in LR_CONSISTENCY_MODES:
            # (worded as evaluate's check of the same option, so the command line names the flag; review)
            raise OptionError(f"lr_consistency {mode!r}: choose one of {', '.join(LR_CONSISTENCY_MODES)}",
                              param="lr_consistency")


# How GDAL's COG driver can make overviews (its OVERVIEW_RESAMPLING), which building them in the stage also takes
OVERVIEW_RESAMPLINGS = ("nearest", "average", "bilinear", "cubic", "cubicspline", "lanczos", "mode", "rms")


@dataclass(frozen=True, kw_only=True)
class OutputConfig:
    """How the output GeoTIFF is written."""

    compress: str = "DEFLATE"
    compress_level: int | None = None  # None: DEFAULT_COMPRESS_LEVEL's, else GDAL's own
    blocksize: int = 512
    overview_resampling: str = "average"
    overwrite: bool = False

    def __post_init__(self) -> None:
        check_bool(self, "overwrite", default=False)
        _whole(self, "compress_level", "blocksize")
        if not isinstance(self.compress, str) or self.compress.upper() not in COMPRESSIONS:
            raise OptionError(f"compress {self.compress!r}: not one of {', '.join(COMPRESSIONS)}", param="compress")
        object.__setattr__(self, "compress", self.compress.upper())
        if self.compress_level is not None:
            levels = COMPRESS_LEVELS.get(self.compress)
            if levels is None:
                takes = " and ".join(f"{c} ({lo}-{hi})" for c, (lo, hi) in COMPRESS_LEVELS.items())
                raise OptionError(f"compress_level {self.compress_level}: a compression level applies to {takes}, "
                                  f"not to {self.compress}", param="compress_level")
            _check_int("compress_level", self.compress_level, low=levels[0])
            if self.compress_level > levels[1]:
                raise OptionError(f"compress_level {self.compress_level}: {self.compress}'s compression level is at "
                                  f"most {levels[1]}", param="compress_level")
        if not isinstance(self.overview_resampling, str) or \
                self.overview_resampling.lower() not in OVERVIEW_RESAMPLINGS:  # else refused after the compute
            raise OptionError(f"overview_resampling {self.overview_resampling!r}: not one of "
                              f"{', '.join(OVERVIEW_RESAMPLINGS)}", param="overview_resampling")
        object.__setattr__(self, "overview_resampling", self.overview_resampling.lower())
        _check_int("blocksize", self.blocksize, low=16)
        if self.blocksize % 16:  # else GDAL's COG driver refused it once the pixels were computed
            raise OptionError(f"blocksize {self.blocksize}: a COG's tiles are a multiple of 16 pixels a side "
                              f"(e.g. {max(16, self.blocksize // 16 * 16)})", param="blocksize")


@dataclass(frozen=True, kw_only=True)
class DeviceConfig:
    """Where and how the model runs."""

    device: str = "auto"
    batch_size: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", device_name(self.device))
        # the name checked when built, as the other configs check theirs (`tpu` waited for the run; review)
        if not isinstance(self.device, str) or not re.fullmatch(DEVICE_NAME, self.device.strip().lower(), re.ASCII):
            raise OptionError(f"device {self.device!r}: use auto, cpu, cuda or cuda:N", param="device")
        object.__setattr__(self, "device", self.device.strip().lower())  # as used and recorded (" cuda " was kept)
        _whole(self, "batch_size")
        _check_int("batch_size", self.batch_size, low=1)


MAX_STEPS = 1000  # sampling steps, given or a checkpoint's inference.steps (the paper sampler runs 256)
MAX_SEED = 2**64 - 1  # the noise hashes a seed's 64 bits (geosr.sampling.noise): 2**64 would be seed 0 again


DEVICE_NAME = r"auto|cpu|cuda(:(0|[1-9][0-9]*))?"  # the device names geosr takes (lower case, ASCII digits)


def device_name(value: Any) -> Any:
    """A device setting as text: None (not given) is "auto", a ``torch.device`` its name (torch not imported here);
    anything else as it is, for the caller to check."""
    if value is None:
        return "auto"
    return str(value) if type(value).__name__ == "device" else value


def _whole(obj: Any, *names: str) -> None:
    """Make NumPy's whole numbers (``np.int64(4)``) of the fields ``names`` of the frozen ``obj`` Python ints, as
    the flat keywords take them, before they are checked."""
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            object.__setattr__(obj, name, int(value))



def is_bool(value: Any) -> bool:
    """Whether ``value`` is a yes/no: Python's bool or NumPy's (``np.True_``: type ``bool_`` before NumPy 2,
    ``bool`` from it; NumPy is not imported here)."""
    kind = type(value)
    return isinstance(value, bool) or (kind.__module__ == "numpy" and kind.__name__ in ("bool", "bool_"))


def check_bool(obj: Any, name: str, *, none_ok: bool = False, default: bool | None = None) -> None:
    """A yes/no field of the frozen ``obj`` that is True or False (NumPy's too), None where ``none_ok`` (else None
    is ``default``, "not given", where there is one): a non-empty string such as ``"no"`` is true to Python, and
    ``overwrite="no"`` in a config object replaced a file."""
    value = getattr(obj, name)
    if value is None and none_ok:
        return
    if value is None and default is not None:
        object.__setattr__(obj, name, default)
        return
    if is_bool(value):
        object.__setattr__(obj, name, bool(value))
        return
    raise OptionError(f"{name} {value!r}: give True or False", param=name)


def _check_int(param: str, value: object, *, low: int, none_ok: bool = False, high: int | None = None) -> None:
    """Options are checked where they are made, so the CLI, a manifest and Python get the same sentence; it begins
    with the keyword ``param``, which the CLI shows as its flag (``--steps``)."""
    if value is None and none_ok:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise OptionError(f"{param} must be a whole number of at least {low}, not {value!r}", param=param)
    if high is not None and value > high:
        raise OptionError(f"{param} must be a whole number from {low} to {high}, not {value!r}", param=param)


def to_json(obj: Any) -> str:
    """Canonical JSON of a (nested) config dataclass, for tags and job fingerprints."""

    def default(o: Any) -> Any:
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return dataclasses.asdict(o)
        raise TypeError(f"not serialisable: {type(o).__name__}")

    return json.dumps(obj, default=default, sort_keys=True, separators=(",", ":"))
