"""The options of geosr's commands, each declared once (:mod:`geosr.options.declare`): ``upscale``'s in
:mod:`geosr.options.upscale` (also a batch manifest's schema), the others' in :mod:`geosr.options.commands`."""

from geosr.options.commands import DetectChangesOptions, EvaluateOptions, RasterizeOSMOptions, TrainOptions
from geosr.options.declare import CommandOptions
from geosr.options.upscale import (
    LR_CONSISTENCY_HELP,
    OPTIONS_BY_NAME,
    SAMPLER_PRESETS,
    UPSCALE_OPTIONS,
    OptionSpec,
    UpscaleOptions,
)

__all__ = ["CommandOptions", "DetectChangesOptions", "EvaluateOptions", "LR_CONSISTENCY_HELP", "OPTIONS_BY_NAME",
           "OptionSpec", "RasterizeOSMOptions", "SAMPLER_PRESETS", "TrainOptions", "UPSCALE_OPTIONS",
           "UpscaleOptions"]
