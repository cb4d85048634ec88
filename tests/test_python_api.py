"""The Python API takes what Python callers pass (paths, NumPy values) as the CLI takes its text, and refuses
what it cannot use before any work, with geosr's own errors (found in review of the API against the CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

import geosr
from conftest import make_raster, smooth_field
from geosr.errors import InputError, NameTooLongError, OptionError


@pytest.fixture
def lr(tmp_path) -> Path:
    return make_raster(tmp_path / "lr.tif", (smooth_field(3, 16, 16) * 200 + 20).astype(np.uint8))


def test_numpy_values_are_taken_as_python_s(lr, tmp_path):
    """NumPy 2's booleans (type `bool`, no longer `bool_`) were refused by every yes/no option ("give True or
    False"); an array of bands was an AttributeError."""
    out = tmp_path / "a.tif"
    geosr.upscale(lr, output=out, scale=2, model="bicubic", bands=np.array([3, 1]))
    with rasterio.open(out) as ds:
        assert ds.count == 2 and json.loads(ds.tags()["GEOSR_BANDS"]) == [3, 1]
    geosr.upscale(lr, output=out, scale=2, model="bicubic", overwrite=np.True_, dry_run=np.False_)
    assert geosr.describe(str(out), read_all=np.True_)["files"][0]["width"] == 32
    with pytest.raises(OptionError, match="overwrite 'no': give True or False"):
        geosr.upscale(lr, output=out, scale=2, model="bicubic", overwrite="no")
    # a whole np.float32 is a whole number, as np.float64 was (it was "give a whole number"; found in review)
    assert geosr.upscale(lr, output=out, scale=2, model="bicubic", seed=np.float32(3.0), overwrite=True,
                         window=np.float32(8)).window_size == 8
    with pytest.raises(OptionError, match="give a whole number"):
        geosr.upscale(lr, output=out, scale=2, model="bicubic", seed=np.float32(3.5), overwrite=True)


def test_an_option_given_twice_is_refused_and_a_sampler_table_taken(lr, tmp_path):
    """Found in review: ref_detail and its other name reference_detail could both be given, the last winning
    without a word; a table of the sampler's fields (sampler={"steps": 2}) was refused as "give text", where
    tiling={"window": 16} was taken."""
    from geosr.options import UpscaleOptions

    with pytest.raises(OptionError, match=r"upscale option 'reference_detail' is given twice \(also as "
                                          r"'ref_detail'\)"):
        geosr.upscale(lr, output=tmp_path / "a.tif", scale=2, ref_detail=True, reference_detail=False, dry_run=True)
    assert UpscaleOptions.from_flat({"sampler": {"steps": 2, "seed": 4}}).sampler.steps == 2
    with pytest.raises(OptionError, match="sampler: .*'stepz'"):
        UpscaleOptions.from_flat({"sampler": {"stepz": 2}})
    for both in ({"sampler": {"steps": 2}, "steps": 3}, {"seed": 9, "sampler": {"seed": 4}},
                 {"tiling": {"window": 16}, "window": 32}):  # a field beside its table won without a word
        with pytest.raises(OptionError, match=r"is given twice \(also in '(sampler|tiling)'\)"):
            UpscaleOptions.from_flat(both)
    assert UpscaleOptions.from_flat({"sampler": "paper", "steps": 3}).sampler.steps == 3  # the preset's name
    from geosr.config import SamplerConfig

    assert UpscaleOptions.from_flat({"sampler": SamplerConfig(steps=2), "steps": 3}).sampler.steps == 3  # updated
    both = UpscaleOptions.from_flat({"sampler": {"steps": 2}, "seed": 3, "tiling": {"window": 16}, "overlap": 4})
    assert (both.sampler.steps, both.sampler.seed, both.tiling.window, both.tiling.overlap) == (2, 3, 16, 4)


def test_a_class_table_given_as_a_path_object(lr, tmp_path):
    """`cd_classes=Path(...)` was "TypeError: not serialisable: PosixPath" (a str worked)."""
    cd = make_raster(tmp_path / "cd.tif", np.zeros((1, 16, 16), np.uint8))
    table = tmp_path / "table.json"
    table.write_text(json.dumps({"name": "mine", "classes": [{"value": 0, "name": "same", "changed": False},
                                                             {"value": 1, "name": "new", "changed": True}]}))
    geosr.upscale(lr, output=tmp_path / "p.tif", scale=2, model="reference-paste", ref=lr, cd=cd,
                  cd_classes=table)
    with rasterio.open(tmp_path / "p.tif") as ds:
        assert json.loads(ds.tags()["GEOSR_CHANGE_CLASSES"])["name"] == "mine"


def test_a_required_path_given_as_none_is_refused(lr, tmp_path, monkeypatch):
    """`upscale(None, ...)` read a file named "None" in the working folder; `rasterize_osm(None, ...)` was a
    TypeError; `batch(None)` looked for a manifest named "None"."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "None").write_bytes(lr.read_bytes())
    with pytest.raises(OptionError, match="^lr is required"):
        geosr.upscale(None, output="x.tif", scale=2, model="bicubic")
    with pytest.raises(OptionError, match="^output is required"):
        geosr.rasterize_osm(None, like=str(lr), osm_file="map.osm")
    for fn in (geosr.batch, geosr.plan_batch):
        with pytest.raises(OptionError, match="^manifest is required"):
            fn(None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["None", "lr.tif"]


@pytest.mark.parametrize("call", ["detect_changes", "rasterize_osm", "evaluate", "train", "plan_batch", "batch"])
def test_a_progress_that_cannot_be_called_is_refused_before_any_work(lr, tmp_path, call):
    """Only upscale checked it: the others ran their work first (a detection, a training step), then failed on
    "TypeError: 'int' object is not callable"."""
    (tmp_path / "jobs.yaml").write_text("jobs:\n  - {lr: lr.tif, out: o.tif, x: 2, model: bicubic}\n")
    calls = {
        "detect_changes": lambda: geosr.detect_changes(lr, ref=lr, output=tmp_path / "c.tif", progress=5),
        "rasterize_osm": lambda: geosr.rasterize_osm(tmp_path / "m.tif", like=str(lr), osm_file="map.osm",
                                                     progress=5),
        "evaluate": lambda: geosr.evaluate(tmp_path, out=tmp_path / "ev", progress=5),
        "train": lambda: geosr.train(data=str(tmp_path), out=tmp_path / "run", progress=5),
        "plan_batch": lambda: geosr.plan_batch(tmp_path / "jobs.yaml", progress=5),
        "batch": lambda: geosr.batch(tmp_path / "jobs.yaml", check_progress=5),
    }
    with pytest.raises(OptionError, match=r"progress 5: give a function of \("):
        calls[call]()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jobs.yaml", "lr.tif"]


def test_a_name_too_long_for_the_file_system_is_an_input_error(lr, tmp_path):
    """A raw OSError ("File name too long") from every API call: the CLI said it in one sentence, exit 2, but the
    docstrings promise an InputError to Python callers too."""
    long = tmp_path / ("a" * 300 + ".tif")
    calls = [lambda: geosr.upscale(lr, output=long, scale=2, model="bicubic"),
             lambda: geosr.upscale(long, output=tmp_path / "o.tif", scale=2, model="bicubic"),
             lambda: geosr.describe(str(long)),
             lambda: geosr.copy_sample(tmp_path / ("b" * 300)),
             lambda: geosr.train(data=[str(tmp_path / ("d" * 300))], out=tmp_path / "run")]  # (review: lost once)
    for call in calls:
        with pytest.raises(NameTooLongError) as err:
            call()
        assert isinstance(err.value, InputError) and "the file name is too long for this file system" in str(
            err.value), err.value
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr.tif"]


def test_sampling_settings_beside_a_loaded_model_must_be_its_own(lr, tmp_path):
    """A model passed loaded ran as it was loaded: `steps=2`, another sampler or `lr_consistency="off"` beside it
    changed nothing, yet the output's GEOSR_OPTIONS (and evaluate's metrics.json) recorded them as applied."""
    loaded = geosr.load_model("default")
    for given in ({"steps": 2}, {"sampler": "paper"}, {"lr_consistency": "off"}, {"fuse_overlaps": True}):
        with pytest.raises(OptionError, match=r"model default was loaded with other settings and runs with those"):
            geosr.upscale(lr, output=tmp_path / "o.tif", scale=2, model=loaded, **given)
    with pytest.raises(OptionError, match=r"^steps: model default was loaded with other settings"):
        geosr.evaluate(tmp_path, models=[loaded], steps=4, out=tmp_path / "ev")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr.tif"]
    for same in ({"steps": 1}, {"reference_detail": True}, {"lr_consistency": "box"}):  # how it runs: accepted
        geosr.upscale(lr, output=tmp_path / "same.tif", scale=2, model=loaded, overwrite=True, **same)
    # (found in review) a diffusion model on a backbone at 0 steps is refused other steps; a backbone loaded with
    # overlap fusion takes it again (upscale's warning says it changes nothing for a model that does not sample)
    bare = geosr.load_model("default+lite", sampler=geosr.SamplerConfig(steps=0))
    with pytest.raises(OptionError, match=r"^steps: model default\+lite was loaded with other settings"):
        geosr.upscale(lr, output=tmp_path / "o.tif", scale=2, model=bare, steps=4)
    fused = geosr.load_model("lite", sampler=geosr.SamplerConfig(fuse_overlaps=True))
    geosr.upscale(lr, output=tmp_path / "lite.tif", scale=2, model=fused, fuse_overlaps=True)
    two = geosr.load_model("default", sampler=geosr.SamplerConfig(steps=2))
    geosr.upscale(lr, output=tmp_path / "o.tif", scale=2, model=two, steps=2, seed=3)  # its own: runs
    with rasterio.open(tmp_path / "o.tif") as ds:
        assert json.loads(ds.tags()["GEOSR_MODEL_SETTINGS"])["sampler"]["steps"] == 2


class _PathLike:
    """A path type of its own (as upath's or py.path's): ``__fspath__`` alone, its str() its repr."""

    def __init__(self, path) -> None:
        self.path = str(path)

    def __fspath__(self) -> str:
        return self.path


def test_any_path_like_is_a_path(lr, tmp_path):
    """An os.PathLike other than pathlib.Path was taken by its str(), its repr: `upscale(lr=...)` had "no such
    file", and `batch(out=...)` wrote the output under "<...PL object at 0x...>" in the working folder, reported ok
    (found in review)."""
    from geosr.pipeline.batch.plan import plan_batch

    out = tmp_path / "a.tif"
    r = geosr.upscale(_PathLike(lr), output=_PathLike(out), scale=2, model="reference-paste", ref=_PathLike(lr),
                      cd="none")
    assert r.output == str(out) and out.exists()
    plan = plan_batch(_PathLike(tmp_path / "lr*.tif"), out=_PathLike(tmp_path / "b" / "{stem}.tif"), x=np.float32(2.0),
                      window=np.float32(8.0), make_dirs=True)  # (a whole np.float32, as upscale takes it)
    job = plan.jobs[0]
    assert job.action == "run" and job.spec.out == str(tmp_path / "b" / "lr.tif"), job
    assert job.spec.x == 2 and job.spec.window == 8


def test_train_takes_a_torch_device_and_numpy_numbers(tmp_path):
    """`train(device=torch.device("cpu"))` was "must be a string", `warmup=np.int64(1)` "not a whole number",
    `ema=np.float32(0.99)` "must be a number", where upscale, evaluate and batch take them (found in review)."""
    import torch

    from geosr.options.commands import TrainOptions
    from geosr.training.loop import _plain, training_config

    assert TrainOptions(device=torch.device("cpu")).device == "cpu"
    cfg = training_config(None, warmup=_plain(np.int64(1)), ema=_plain(np.float32(0.5)))
    assert cfg.warmup == 1 and cfg.ema == 0.5 and type(cfg.warmup) is int
