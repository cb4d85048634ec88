"""One options object per command: the CLI's flags come from it, the library takes it, both check it the same."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import rasterio
from typer.testing import CliRunner

from geosr.cli.app import app
from geosr.cli.common import cli_flag
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


# What each command takes besides its options object: its inputs, shorthands and hidden old spellings, -q, --json.
NOT_OPTIONS = {"detect-changes": {"lr", "ref", "output"}, "rasterize-osm": {"output"},
               "evaluate": {"data", "no_lr_consistency", "old_out"},
               "train": {"config", "old_out", "old_steps", "old_batch_size", "old_lr"}}
# The contract of issue 17 for flags whose library name differs (the library's keyword -> the command's flag).
FLAGS = {"rasterize-osm": {"cache_folder": "--cache-dir", "scale": "-x"},
         "evaluate": {"models": "--model", "scales": "-x", "out": "--out-dir", "reference_detail": "--ref-detail"},
         "train": {"out": "--out-dir", "steps": "--train-steps", "batch_size": "--batch", "lr": "--learning-rate",
                   "scales": "-x"}}


@pytest.mark.parametrize("command", sorted(CLASSES))
def test_the_command_s_options_are_its_object_s_fields_and_nothing_else(command):
    """Every option the command line takes is a field of the command's options object, under the field's name (so
    the library's messages name it with the right flag), except the command's inputs and the reporting flags."""
    options: type[CommandOptions] = CLASSES[command]
    params = {p.name: p for p in commands(app)[command].params}
    fields = {f.name for f in dataclasses.fields(options)}
    assert set(params) - {"quiet", "json_out"} == fields | NOT_OPTIONS[command]
    for name, flag in FLAGS.get(command, {}).items():
        assert flag in params[name].opts, (command, name, params[name].opts)
        assert cli_flag(name, command) == flag


@pytest.mark.parametrize(("options", "values", "param"), [
    (RasterizeOSMOptions, {"style": "png"}, "style"),
    (RasterizeOSMOptions, {"timeout": 0}, "timeout"),
    (RasterizeOSMOptions, {"osm_file": "x.osm", "date": "2020-01-01"}, "date"),
    (EvaluateOptions, {"cd": "maybe"}, "cd"),
    (EvaluateOptions, {"scales": (3, 64)}, "scale"),
    (EvaluateOptions, {"scales": ()}, "scale"),
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
    assert TrainOptions.of(scales=8, data="tiles/").data == ("tiles/",)  # one value is a list of one
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
    res = CliRunner().invoke(app, ["evaluate", str(tmp_path), "-x", "32"])
    assert res.exit_code == 2 and "-x 32: geosr supports whole scale factors" in " ".join(res.output.split())


def test_train_takes_every_config_field_as_a_keyword(tmp_path):
    """Besides TrainOptions' fields, train() passes any other keyword to the run's TrainConfig, which checks it."""
    from geosr.training.loop import train

    with pytest.raises(OptionError, match=r"bad training config: `ema` must be in \[0, 1\), not 1.5"):
        train(None, out=str(tmp_path / "run"), ema=1.5)
    with pytest.raises(OptionError, match="unknown training option 'not_a_setting'"):
        train(None, out=str(tmp_path / "run"), not_a_setting=1)
    assert not (tmp_path / "run").exists()


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
    assert recorded == {"bands": None, "cloud_masks": True, "coregister": False, "ref_bands": None, "refine": 4}


def test_the_library_takes_the_command_line_s_names_too(tmp_path):
    """README: the Python API mirrors the command line, so each function takes its command's long flags as keywords
    (out_dir for --out-dir, train_steps for --train-steps, model for --model, cache_dir for --cache-dir) beside its
    own field names; both at once is refused, an unknown one named in one sentence."""
    for options, flags in FLAGS.items():
        cls = CLASSES[options]
        for field, flag in flags.items():
            keyword = flag.lstrip("-").replace("-", "_")
            if keyword == "x":
                continue
            assert cls.canonical({keyword: 1}) == {field: 1}, (options, keyword)
    o = EvaluateOptions.of(model=["lite"], scale=[4], out_dir=tmp_path / "e", ref_detail=False)
    assert (o.models, o.scales, o.out, o.reference_detail) == (("lite",), (4,), str(tmp_path / "e"), False)
    assert RasterizeOSMOptions.of(cache_dir="c").cache_folder == "c"
    t = TrainOptions.of(out_dir="r", train_steps=3, batch=2, learning_rate=1e-3)
    assert (t.out, t.steps, t.batch_size, t.lr) == ("r", 3, 2, 1e-3)
    with pytest.raises(OptionError, match="given twice"):
        EvaluateOptions.of(out="a", out_dir="b")
    from geosr.training.loop import train

    with pytest.raises(OptionError, match="unknown training option 'out_dirr'"):
        train(None, out_dirr=str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()



def test_python_callers_get_the_kinds_the_command_line_guarantees(tmp_path):
    """Found black-box: `overwrite="no"` (a non-empty string, true to Python) replaced an existing output;
    `bands=[3, 2, 1]`, `tiling={...}`, `options={...}`, `model=None` were AttributeErrors from inside;
    `scale=np.int64(4)` was refused as "not a whole scale factor"; an `aoi` box of four numbers was refused;
    `describe("a.tif")` read the letters of the name; batch took `workers=0` and `retries=-1`."""
    import numpy as np
    from tests.conftest import make_raster, smooth_field

    import geosr

    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 20, 24) * 200).astype(np.uint8))
    kept = tmp_path / "kept.tif"
    kept.write_bytes(b"precious")
    for call, said in (
        (lambda: geosr.upscale(lr, output=kept, scale=2, model="bicubic", overwrite="no"),
         "overwrite 'no': give True or False"),
        (lambda: geosr.upscale(lr, output=kept, scale="2", model="bicubic"), "scale '2': give a whole number"),
        (lambda: geosr.upscale(lr, output=5, scale=2, model="bicubic"), "output 5: give text or a path"),
        (lambda: geosr.upscale(lr, output=kept, scale=2, model=None), "model None: give a model's name"),
        (lambda: geosr.upscale(lr, output=tmp_path / "n.tif", scale=2, model="bicubic+lite"),
         "bicubic is a classical back-end"),
        (lambda: geosr.upscale(lr, output=kept, scale=2, model="bicubic", dry_run="yes"),
         "dry_run 'yes': give True or False"),
        (lambda: geosr.detect_changes(lr, ref=lr, output=kept, overwrite="False"), "overwrite 'False': give True"),
        (lambda: geosr.detect_changes(lr, ref=None, output=tmp_path / "d.tif"), "ref is required"),
        # found black-box: TypeErrors from os.fspath and AttributeErrors deep inside
        (lambda: geosr.detect_changes(None, ref=lr, output=tmp_path / "d.tif"), "lr is required: the LR raster"),
        (lambda: geosr.detect_changes(lr, ref=lr, output=None), "output is required"),
        (lambda: geosr.evaluate(tmp_path, models=[1], scales=[4], out=tmp_path / "ev"),
         "models: 1 is neither a model's name or path nor a super-resolver"),
        (lambda: geosr.evaluate([str(tmp_path)], scales=[4], out=tmp_path / "ev"), "give the path of the evaluation"),
        (lambda: geosr.evaluate("", scales=[4], out=tmp_path / "ev"), "give the path of the evaluation data"),
        (lambda: geosr.evaluate(tmp_path, scales=[4], out=tmp_path / "ev", panels="no"), "panels 'no': give True"),
        (lambda: geosr.copy_sample(tmp_path / "s", overwrite="no"), "overwrite 'no': give True or False"),
        (lambda: geosr.batch(str(lr), out=str(tmp_path / "b.tif"), x=2, model="bicubic", workers=0),
         "workers 0 must be at least 1"),
        (lambda: geosr.batch(str(lr), out=str(tmp_path / "b.tif"), x=2, model="bicubic", retries=-1),
         "retries must be from 0 (no retry) to 100, not -1"),
        (lambda: geosr.describe([]), "at least one raster path"),
        (lambda: geosr.rasterize_osm(5, like=lr, scale=2, osm_file=lr), "output 5: give text or a path"),
        # empty text, as the command line refuses it: copied into the working folder, ran with the default bands,
        # "model file . is not a file" (found in review)
        (lambda: geosr.copy_sample(""), "folder is empty; give a folder's path"),
        (lambda: geosr.load_model(""), "model is empty; give a value or leave it out"),
        (lambda: geosr.detect_changes(lr, ref=lr, output=tmp_path / "d.tif", bands=""),
         "bands is empty; give a value or leave it out"),
        # (a raw TypeError of pathlib; found in review)
        (lambda: geosr.rasterize_osm(tmp_path / "m.tif", like=lr, osm_file=lr, classes=5),
         "classes 5: give a class table's file or a MapClassTable"),
        (lambda: geosr.rasterize_osm(tmp_path / "m.tif", like=lr, osm_file=lr, classes={"a": 1}),
         "classes {'a': 1}: give a class table's file"),
        (lambda: geosr.evaluate(5, scales=[4]), "data 5: give the path of the evaluation data"),
        (lambda: geosr.load_model(5), "model 5: give a model's name"),
        (lambda: geosr.TrainConfig(batch_size="two"), "`batch_size` must be a whole number, not 'two'"),
    ):
        with pytest.raises(OptionError, match=said.replace("(", r"\(").replace(")", r"\)")):
            call()
    assert kept.read_bytes() == b"precious" and not (tmp_path / "ev").exists() and not (tmp_path / "s").exists()
    plain = geosr.upscale(lr, output=tmp_path / "p.tif", scale=2, model="bicubic", bands="3,2,1", window=8)
    for kw in (dict(bands=[3, 2, 1], window=np.int64(8), scale=np.int64(2)),
               dict(bands=(3, 2, 1), tiling={"window": 8}, scale=2.0),
               dict(options={"bands": "3,2,1", "window": 8, "scale": 2})):
        out = tmp_path / f"k{len(list(tmp_path.glob('k*.tif')))}.tif"
        geosr.upscale(lr, output=out, model="bicubic", **({"scale": 2} | kw if "options" not in kw else kw))
        assert out.read_bytes() != b"" and np.array_equal(rasterio.open(out).read(), rasterio.open(plain.output).read())
    with rasterio.open(lr) as ds:
        left, bottom, right, top = ds.bounds
    box = (left + 30, bottom + 30, right - 30, top - 30)
    as_text = geosr.upscale(lr, scale=2, model="bicubic", aoi=",".join(map(str, box)), aoi_crs="EPSG:32633",
                            dry_run=True)  # no output needed for a plan, as on the command line
    as_tuple = geosr.upscale(lr, scale=2, model="bicubic", aoi=box, aoi_crs="EPSG:32633", dry_run=True)
    assert (as_tuple.width, as_tuple.height, as_tuple.bounds) == (as_text.width, as_text.height, as_text.bounds)
    assert geosr.describe(lr) == geosr.describe([str(lr)]) == geosr.describe(Path(lr))
    assert geosr.upscale(lr, scale=2, model="default", reference_detail=False, dry_run=True).model == "default"
    assert json.loads(json.dumps(geosr.available_models()[0].to_dict()))["name"] == "bicubic"
    assert geosr.load_model("lite", sampler="paper").name == "lite"  # a preset's name for a SamplerConfig
    # options the Python API takes as richer objects keep them (an architecture table extends a checkpoint's)
    assert TrainOptions.of(arch={"upsampler_channels": 64}).arch == {"upsampler_channels": 64}


def test_the_python_api_refuses_wrong_kinds_wherever_a_value_arrives(tmp_path):
    """Found by review: `overwrite="no"` in a config object or table (and to plan_batch) is true to Python, and
    replaced a file the caller meant to keep; a checkpoint as a pathlib.Path was taken for a ready model
    (AttributeError); None for a yes/no option turned co-registration off; options=5, describe(5) and unknown
    run_batch settings were raw TypeErrors; a batch dry run took `device="tpu"`."""
    import numpy as np
    from tests.conftest import make_raster, smooth_field

    import geosr
    from geosr.config import OutputConfig, SamplerConfig
    from geosr.io.describe import describe
    from geosr.options import UpscaleOptions
    from geosr.pipeline.batch import plan_batch, run_batch

    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 24, 24, seed=2) * 255).astype(np.uint8))
    kept = tmp_path / "kept.tif"
    kept.write_text("precious")
    for given in (lambda: {"output_config": {"overwrite": "no"}},
                  lambda: {"options": UpscaleOptions(scale=2, model="bicubic",
                                                     output_config=OutputConfig(overwrite="no"))}):
        with pytest.raises(OptionError, match="overwrite 'no': give True or False"):
            geosr.upscale(lr, output=kept, scale=2, model="bicubic", **given())
    assert kept.read_text() == "precious"
    with pytest.raises(OptionError, match="overwrite 'no': give True or False"):
        plan_batch(str(tmp_path / "l*.tif"), out=str(kept), x=2, model="bicubic", overwrite="no")
    for make, said in ((lambda: SamplerConfig(fuse_overlaps="no"), "fuse_overlaps 'no'"),
                       (lambda: UpscaleOptions(coregister="no"), "coregister 'no'"),
                       (lambda: UpscaleOptions(model=5), "model 5: give a model's name"),
                       (lambda: geosr.detect_changes(lr, ref=lr, output=tmp_path / "c.tif", options=5), "options 5"),
                       (lambda: describe(5), "paths 5"), (lambda: describe(lr, read_all="yes"), "read_all 'yes'"),
                       (lambda: geosr.load_model("lite", device=5), "device 5")):
        with pytest.raises(OptionError, match=said):
            make()
    assert UpscaleOptions(scale=np.int64(4), coregister=None).scale == 4  # as the flat keyword takes them
    assert UpscaleOptions(coregister=None).coregister is True and DetectChangesOptions(coregister=None).coregister
    import torch

    from geosr.config import DeviceConfig  # None is "not given", a torch.device its name (as before these checks)
    assert OutputConfig(overwrite=None).overwrite is False and SamplerConfig(fuse_overlaps=None).fuse_overlaps is False
    assert DeviceConfig(device=None).device == "auto" and DeviceConfig(device=torch.device("cpu")).device == "cpu"
    lite = Path(geosr.__file__).parent / "weights" / "lite.safetensors"
    result = geosr.upscale(lr, output=tmp_path / "o.tif", scale=4, model=lite, dry_run=True)
    assert result.model == "lite"
    with pytest.raises(OptionError, match="progress 5: give a function"):
        geosr.upscale(lr, output=tmp_path / "p.tif", scale=2, model="bicubic", progress=5)
    assert not list(tmp_path.glob("p.tif*"))  # (its work folder was left)
    plan = plan_batch(str(tmp_path / "l*.tif"), out=str(tmp_path / "{stem}_b.tif"), x=2, model="bicubic")
    with pytest.raises(OptionError, match="unknown run_batch setting 'foo'"):
        run_batch(plan, foo=1)
    with pytest.raises(OptionError, match="device 'tpu': use auto, cpu, cuda or cuda:N"):
        geosr.batch(str(tmp_path / "l*.tif"), out=str(tmp_path / "{stem}_b.tif"), x=2, model="bicubic", device="tpu",
                    dry_run=True)


def test_a_cog_blocksize_not_a_multiple_of_16_is_refused_up_front():
    """OutputConfig(blocksize=100) was accepted, the pixels computed, then GDAL's COG driver refused the tile width
    (a raw error, the work folder left behind; found in review)."""
    from geosr.config import OutputConfig
    from geosr.errors import OptionError

    with pytest.raises(OptionError, match=r"^blocksize 100: a COG's tiles are a multiple of 16 pixels a side "
                                          r"\(e.g. 96\)$"):
        OutputConfig(blocksize=100)
    assert OutputConfig(blocksize=96).blocksize == 96


def test_an_overview_resampling_gdal_cannot_take_is_refused_up_front(tmp_path, raster_factory):
    """OutputConfig(overview_resampling="bogus") raised a bare KeyError once every window was computed, "max" a
    bare ValueError, and each left the work folder behind (found in review); every one accepted builds overviews."""
    import numpy as np

    import geosr
    from geosr.config import OVERVIEW_RESAMPLINGS, OutputConfig

    for value in ("bogus", "max", None):
        with pytest.raises(OptionError, match=rf"^overview_resampling {value!r}: not one of nearest, average, "):
            OutputConfig(overview_resampling=value)
    lr = raster_factory("lr.tif", (np.arange(3 * 40 * 40).reshape(3, 40, 40) % 251).astype(np.uint8))
    for value in OVERVIEW_RESAMPLINGS:
        out = tmp_path / f"o_{value}.tif"
        geosr.upscale(str(lr), scale=2, model="bicubic", output=str(out),
                      output_config=OutputConfig(overview_resampling=value.upper(), blocksize=16))
        with rasterio.open(out) as ds:
            assert ds.overviews(1) == [2, 4, 8], value


def test_huge_counts_are_refused_in_one_sentence(monkeypatch):
    """Found in review: only a lower bound was checked, so `--steps 2**64` was an internal error (and 10**9 made a
    dry run's window timing take the machine's memory), `batch --workers` 2**64 started workers until memory was
    gone, `--retries` 2**64 hung the batch (Dask could not send the task), and `train --batch` 2**64 hung."""
    from geosr.config import SamplerConfig
    from geosr.pipeline.batch import cluster
    from geosr.pipeline.batch.run import RunSettings
    from geosr.training.config import TrainConfig

    with pytest.raises(OptionError, match=r"steps must be a whole number from 0 to 1000, not 1001"):
        SamplerConfig(steps=1001)
    assert SamplerConfig(steps=1000).steps == 1000
    with pytest.raises(OptionError, match="steps must be a whole number from 0 to 1000"):
        EvaluateOptions(scales=(4,), steps=2**64)
    monkeypatch.setattr(cluster.os, "cpu_count", lambda: 2)
    monkeypatch.setattr("geosr.pipeline.batch.run.os.cpu_count", lambda: 2)
    with pytest.raises(OptionError, match=r"workers 9: a local cluster runs at most 8 \(4 per core"):
        RunSettings(workers=9)
    assert RunSettings(workers=8).workers == 8
    with pytest.raises(OptionError, match=r"retries must be from 0 \(no retry\) to 100, not 18446744073709551616"):
        RunSettings(retries=2**64)
    with pytest.raises(OptionError, match="`batch_size` must be at most 4096, not 4097"):
        TrainConfig(batch_size=4097)
    # a local cluster starts no more workers than there are tasks (the others would idle)
    started = []

    class Cluster:
        def __init__(self, n_workers, **_):
            started.append(n_workers)

    import distributed

    monkeypatch.setattr(distributed, "LocalCluster", Cluster)
    cluster.local_cluster(workers=8, device="cpu", dashboard=None, tasks=3)
    cluster.local_cluster(device="cpu", dashboard=None, tasks=1)
    assert started == [3, 1]


def test_cd_and_style_keywords_are_taken_in_any_case_unless_a_file_has_that_name(tmp_path, monkeypatch):
    """`--cd AUTO` / `--cd None` / `--style SAMPLE` said "AUTO: no such file": the keywords are read in any case, as
    the lower-case word, unless a file has that very name (then it is the file)."""
    from geosr.options import UpscaleOptions

    monkeypatch.chdir(tmp_path)
    o = UpscaleOptions.from_flat({"cd": "AUTO", "style": "Sample"})
    assert (o.cd, o.style) == ("auto", "sample")
    assert UpscaleOptions.from_flat({"cd": "None", "style": "NONE"}).cd == "none"
    (tmp_path / "AUTO").write_bytes(b"")
    assert UpscaleOptions.from_flat({"cd": "AUTO"}).cd == "AUTO"


def test_upscale_options_made_directly_take_and_refuse_what_the_keywords_do():
    """Found in review: `UpscaleOptions(scale="4")` was "scale 4: geosr supports whole scale factors from 2 to 16"
    (4.0, which `upscale(scale=4.0)` takes, too); `bands=[4, 3, 2]` and a TilingConfig as `sampler` raised
    AttributeError inside the run, `cd_classes=5` a TypeError."""
    from geosr.conditioning.changes import BUILTIN_TABLES
    from geosr.config import SamplerConfig, TilingConfig
    from geosr.errors import OptionError
    from geosr.options import UpscaleOptions

    o = UpscaleOptions(scale=4.0, bands=[4, 3, 2], ref_bands=(1, 2, 3))
    assert (o.scale, o.bands, o.ref_bands) == (4, "4,3,2", "1,2,3")
    for kwargs, said in (({"scale": "4"}, "scale '4': give a whole number"),
                         ({"sampler": TilingConfig()}, "sampler is a TilingConfig; give SamplerConfig(...)"),
                         ({"tiling": SamplerConfig()}, "tiling is a SamplerConfig; give TilingConfig(...)"),
                         ({"cd_classes": 5}, "cd_classes 5: give a class table's name or its JSON file"),
                         ({"cd_classes": BUILTIN_TABLES["binary"]}, "cd_classes ChangeClassTable(")):
        with pytest.raises(OptionError) as info:
            UpscaleOptions(**kwargs)
        assert str(info.value).startswith(said), info.value


def test_training_data_and_config_of_the_wrong_kind_are_option_errors(tmp_path):
    """Found in review: `geosr.train(data=5)` (or `[5]`, `["ev", None]`, `val_data=5`) and
    `geosr.load_train_config(5)` raised a TypeError from pathlib, where `evaluate(data=5)` names the option."""
    import geosr
    from geosr.errors import OptionError

    for kwargs in ({"data": 5}, {"data": [5]}, {"data": ["ev", None]}, {"val_data": 5}):
        with pytest.raises(OptionError, match=r"^(val_)?data (5|None): give a data folder's or file's path"):
            geosr.train(**{"data": "ev", **kwargs}, steps=1, out=str(tmp_path / "run"))
    with pytest.raises(OptionError, match=r"^config 5: give the path of a \.toml, \.yaml or \.json file"):
        geosr.load_train_config(5)
    assert not (tmp_path / "run").exists()


def test_an_output_s_bytes_and_tags_do_not_depend_on_how_its_paths_were_spelled(raster_factory, tmp_path,
                                                                                 monkeypatch):
    """Found by review: the tags held local paths as typed (GEOSR_OPTIONS' ref, detect-changes' lr and reference):
    the author's folders in an output shared, and other bytes for `data/ref.tif` than for `/abs/.../data/ref.tif`."""
    import numpy as np
    from rasterio.transform import from_origin

    rng = np.random.default_rng(1)
    hr = (rng.random((3, 64, 64)) * 200).astype(np.uint8)
    lr = hr.reshape(3, 16, 4, 16, 4).mean(axis=(2, 4)).astype(np.uint8)
    (tmp_path / "data").mkdir()
    raster_factory("data/lr.tif", lr, transform=from_origin(500000, 4000000, 40, 40))
    raster_factory("data/ref.tif", hr, transform=from_origin(500000, 4000000, 10, 10))
    monkeypatch.chdir(tmp_path)
    made = {}
    for how, folder in (("relative", "data"), ("absolute", str(tmp_path / "data"))):
        for command in (["upscale", f"{folder}/lr.tif", "--ref", f"{folder}/ref.tif", "--cd", "none", "-x", "4",
                         "-m", "reference-paste", "--no-coregister"],
                        ["detect-changes", f"{folder}/lr.tif", "--ref", f"{folder}/ref.tif", "--no-coregister"]):
            (tmp_path / how).mkdir(exist_ok=True)
            out = tmp_path / how / f"{command[0]}.tif"
            r = CliRunner().invoke(app, [*command, "-o", str(out)])
            assert r.exit_code == 0, r.output
            made[command[0], how] = out.read_bytes()
            assert str(tmp_path) not in json.dumps(_tags(out)), _tags(out)
    assert made["upscale", "relative"] == made["upscale", "absolute"]
    assert made["detect-changes", "relative"] == made["detect-changes", "absolute"]


def _tags(path: Path) -> dict:
    with rasterio.open(path) as ds:
        return ds.tags()


def test_the_device_is_no_part_of_the_recorded_options(raster_factory, tmp_path):
    """How the model runs (`device`) is no part of GEOSR_OPTIONS: the same job on `cpu` or `auto` (the CPU here)
    writes the same bytes (unguarded; found by mutation testing)."""
    import numpy as np
    from rasterio.transform import from_origin

    from geosr import upscale

    lr = raster_factory("lr.tif", (np.random.default_rng(0).random((3, 32, 32)) * 255).astype(np.uint8),
                        transform=from_origin(500000, 5000000, 10, 10))
    for device in ("cpu", "auto"):
        upscale(lr, output=tmp_path / f"{device}.tif", scale=2, model="bicubic", device=device)
    with rasterio.open(tmp_path / "cpu.tif") as ds:
        assert "device" not in json.loads(ds.tags()["GEOSR_OPTIONS"])
    assert (tmp_path / "cpu.tif").read_bytes() == (tmp_path / "auto.tif").read_bytes()
