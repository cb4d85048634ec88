"""geosr: change-aware super-resolution of georeferenced satellite scenes.

The public API mirrors the command line. Importing ``geosr`` loads neither torch nor GDAL; each function
imports what it needs on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from geosr._version import __version__

_API = {
    "upscale": ("geosr.pipeline.upscale", "upscale"),
    "UpscaleResult": ("geosr.pipeline.upscale", "UpscaleResult"),
    "rasterize_osm": ("geosr.pipeline.rasterize_osm", "rasterize_osm"),
    "detect_changes": ("geosr.pipeline.detect_changes", "detect_changes"),
    "batch": ("geosr.pipeline.batch", "batch"),
    "plan_batch": ("geosr.pipeline.batch", "plan_batch"),
    "run_batch": ("geosr.pipeline.batch", "run_batch"),
    "BatchResult": ("geosr.pipeline.batch", "BatchResult"),
    "train": ("geosr.training.loop", "train"),
    "TrainResult": ("geosr.training.loop", "TrainResult"),
    "TrainConfig": ("geosr.training.config", "TrainConfig"),
    "load_train_config": ("geosr.training.config", "load_config"),
    "evaluate": ("geosr.training.evaluate", "evaluate"),
    "EvalResult": ("geosr.training.evaluate", "EvalResult"),
    "describe": ("geosr.io.describe", "describe"),
    "sample_paths": ("geosr.sample_scene", "sample_paths"),
    "copy_sample": ("geosr.sample_scene", "copy_sample"),
    "load_model": ("geosr.models.registry", "load_model"),
    "available_models": ("geosr.models.registry", "available_models"),
    "describe_model": ("geosr.models.registry", "describe_model"),
    "TilingConfig": ("geosr.config", "TilingConfig"),
    "SamplerConfig": ("geosr.config", "SamplerConfig"),
    "OutputConfig": ("geosr.config", "OutputConfig"),
    "DeviceConfig": ("geosr.config", "DeviceConfig"),
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        module, attr = _API[name]
        value = getattr(import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'geosr' has no attribute {name!r}")
