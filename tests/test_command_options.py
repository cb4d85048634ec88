"""One options object per command: the CLI's flags come from it, the library takes it, both check it the same."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import rasterio
from typer.testing import CliRunner

from geosr.cli.app import app
from geosr.cli.reference import commands
from geosr.errors import InputError, OptionError
from geosr.options import (
    CommandOptions,
    DetectChangesOptions,
    EvaluateOptions,
    RasterizeOSMOptions,
    TrainOptions,
)

CLASSES = {"detect-changes": DetectChangesOptions, "rasterize-osm": RasterizeOSMOptions, "evaluate": EvaluateOptions,
           "train": TrainOptions}


@pytest.mark.parametrize("command", sorted(CLASSES))
def test_every_option_of_the_object_is_the_command_s_flag_of_the_same_name(command):
    """The command line shows each declared option under its field's name, with the declared flags and help."""
    options: type[CommandOptions] = CLASSES[command]
    params = {p.name: p for p in commands(app)[command].params}
    declared = options.flags()
    assert declared, command
    for name, _, flag in declared:
        p = params[name]
        shown = [*p.opts, *p.secondary_opts]
        assert set(shown) == {f for spec in flag.flags for f in spec.split("/")}, (command, name, shown)
        assert p.help == flag.help
    # every field a user can set on the command line is declared, and nothing else the command takes is an option
    fields = {f.name for f in dataclasses.fields(options)}
    assert {name for name, _, _ in declared} == fields


@pytest.mark.parametrize(("options", "values", "param"), [
    (RasterizeOSMOptions, {"style": "png"}, "style"),
    (RasterizeOSMOptions, {"timeout": 0}, "timeout"),
    (RasterizeOSMOptions, {"osm_file": "x.osm", "date": "2020-01-01"}, "date"),
    (EvaluateOptions, {"cd": "maybe"}, "cd"),
    (EvaluateOptions, {"scales": (3, 64)}, "scales"),
    (EvaluateOptions, {"steps": 0}, "steps"),
    (TrainOptions, {"max_minutes": -1}, "max_minutes"),
])
def test_bad_values_are_refused_when_the_object_is_made(options, values, param):
    with pytest.raises(InputError) as info:  # OptionError, or ScaleError for a scale
        options.of(**values)
    assert info.value.param == param


def test_unknown_options_and_paths():
    with pytest.raises(OptionError, match="unknown detect-changes option 'band'"):
        DetectChangesOptions.of(band="1,2,3")
    o = RasterizeOSMOptions.of(like=Path("a.tif"), cache_folder=Path("c"))
    assert o.like == "a.tif" and o.cache_folder == "c"  # paths kept as text, as a URL would be
    assert EvaluateOptions.of(scales=[4], models=["default"]).scales == (4,)
    assert TrainOptions.of(scales=[8, 16]).settings()["scales"] == (8, 16)
    # what an output records: what shaped it, not where or whether it was written
    recorded = json.loads(RasterizeOSMOptions.of(bbox="1,2,3,4", overwrite=True).to_json())
    assert recorded["bbox"] == "1,2,3,4" and "overwrite" not in recorded and "cache_folder" not in recorded


def test_the_library_and_the_cli_refuse_alike(tmp_path):
    """A bad value is refused by the object whichever door it came through: the same sentence, nothing written."""
    from geosr.pipeline.rasterize_osm import rasterize_osm

    out = tmp_path / "map.tif"
    with pytest.raises(OptionError) as info:
        rasterize_osm(out, bbox="1,2,3,4", resolution=10, style="png")
    res = CliRunner().invoke(app, ["rasterize-osm", "--bbox", "1,2,3,4", "-r", "10", "--style", "png", "-o", str(out)])
    assert res.exit_code == 2
    assert str(info.value).replace("style", "--style", 1) in " ".join(res.output.split())
    assert not out.exists()
    with pytest.raises(OptionError, match="unknown rasterize-osm option"):
        rasterize_osm(out, bbox="1,2,3,4", resolution=10, colour="red")


def test_detect_changes_records_its_options(raster_factory, tmp_path):
    """The output's GEOSR_OPTIONS tag is the options object's record (a Python caller's options object included)."""
    import numpy as np
    from rasterio.transform import from_origin

    from geosr.pipeline.detect_changes import detect_changes

    rng = np.random.default_rng(0)
    hr = (rng.random((3, 128, 128)) * 200).astype(np.uint8)
    lr = hr.reshape(3, 32, 4, 32, 4).mean(axis=(2, 4)).astype(np.uint8)
    lr_path = raster_factory("lr.tif", lr, transform=from_origin(500000, 4000000, 40, 40))
    ref_path = raster_factory("ref.tif", hr, transform=from_origin(500000, 4000000, 10, 10))
    opts = DetectChangesOptions(coregister=False)
    detect_changes(lr_path, ref=ref_path, output=tmp_path / "c.tif", options=opts, overwrite=True)
    with rasterio.open(tmp_path / "c.tif") as ds:
        recorded = json.loads(ds.tags()["GEOSR_OPTIONS"])
    assert recorded == {"bands": None, "coregister": False, "ref_bands": None}
