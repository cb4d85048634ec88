"""Bad input: exit code 2, one clear sentence naming the file or option, nothing written."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import rasterio
import torch
import typer
from affine import Affine
from typer.testing import CliRunner

from conftest import make_raster, smooth_field
from geosr.cli.app import app

runner = CliRunner()


@pytest.fixture
def scene(tmp_path):
    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 20, 24) * 255).astype(np.uint8))
    return tmp_path, lr


def _case(tmp_path, lr, name, map_model=None):
    """(argv, text expected in the message) for each bad-input case (``map_model``: a model that reads a map)."""
    out = str(tmp_path / "out.tif")
    lr = str(lr)
    if name == "missing-lr":
        return ["upscale", str(tmp_path / "nope.tif"), "-o", out], "nope.tif: no such file"
    if name == "not-a-raster":
        (tmp_path / "notes.tif").write_text("hello, I am text")
        return ["upscale", str(tmp_path / "notes.tif"), "-o", out], "notes.tif: not a raster"
    if name == "corrupt-tiff":
        data = (tmp_path / "lr.tif").read_bytes()
        (tmp_path / "broken.tif").write_bytes(data[:200])
        return ["upscale", str(tmp_path / "broken.tif"), "-o", out], "broken.tif"
    if name == "folder-as-lr":
        return ["upscale", str(tmp_path), "-o", out], "is a folder"
    if name == "no-crs":
        p = make_raster(tmp_path / "nocrs.tif", np.ones((3, 8, 8), np.uint8), crs=None)
        return ["upscale", str(p), "-o", out], "nocrs.tif: has no coordinate reference system"
    if name == "ref-missing":
        return ["upscale", lr, "--ref", str(tmp_path / "old.tif"), "-o", out], "old.tif: no such file"
    if name == "ref-not-overlapping":
        p = make_raster(tmp_path / "far.tif", np.ones((3, 8, 8), np.uint8),
                        transform=Affine(10, 0, 900000, 0, -10, 1000000))
        return ["upscale", lr, "--ref", str(p), "-o", out], "far.tif: the reference does not overlap"
    if name == "ref-not-overlapping-aoi":  # "does not overlap the scene" when it did, only not the --aoi
        p = make_raster(tmp_path / "left.tif", np.ones((3, 40, 24), np.uint8),
                        transform=Affine(5, 0, 500000, 0, -5, 5000000))
        return ["upscale", lr, "--ref", str(p), "--aoi", "500180,4999850,500230,4999950", "--aoi-crs", "EPSG:32633",
                "-o", out], "left.tif: the reference does not overlap the area of interest (--aoi) within the scene"
    if name == "ref-band-count":
        p = make_raster(tmp_path / "two.tif", np.ones((2, 40, 48), np.uint8),
                        transform=Affine(5, 0, 500000, 0, -5, 5000000))
        return ["upscale", lr, "--ref", str(p), "-o", out], "two.tif: the reference gives 2 bands but the LR gives 3"
    if name == "model-one-band":
        p = make_raster(tmp_path / "pan.tif", (smooth_field(1, 20, 24) * 255).astype(np.uint8))
        return (["upscale", str(p), "-x", "4", "-o", out],
                "model default: takes 3 bands but 1 is selected (repeat its band with --bands 1,1,1, or use --model "
                "bicubic or lanczos)")
    if name == "model-four-bands":
        p = make_raster(tmp_path / "rgbn.tif", (smooth_field(4, 20, 24) * 255).astype(np.uint8))
        return (["upscale", str(p), "--bands", "1,2,3,4", "-o", out],
                "takes 3 bands but 4 are selected (pick 3 with --bands)")
    if name == "unknown-band":
        return ["upscale", lr, "--bands", "B08", "-o", out], "has no band 'B08'"
    if name == "band-index":
        return ["upscale", lr, "--bands", "1,9", "-o", out], "has no band 9"
    if name == "band-list-empty-item":  # "1,,2" ran on bands 1 and 2, "1,2," on two bands, without a word
        return ["upscale", lr, "--bands", "1,,2", "-o", out], "the band list '1,,2' has an empty item"
    if name == "one-band-reference":  # "gives 1 bands"
        p = make_raster(tmp_path / "two.tif", np.ones((3, 40, 48), np.uint8),
                        transform=Affine(5, 0, 500000, 0, -5, 5000000))
        return (["upscale", lr, "--ref", str(p), "--ref-bands", "2", "-o", out],
                "two.tif: the reference gives 1 band but the LR gives 3 bands")
    if name == "scale":
        return ["upscale", lr, "-x", "17", "-o", out], "-x 17"
    if name == "output-folder-missing":
        return ["upscale", lr, "-o", str(tmp_path / "no" / "where.tif")], "output folder"
    if name == "output-another-format":
        return ["upscale", lr, "-o", str(tmp_path / "out.png")], "out.png: geosr writes Cloud-Optimized GeoTIFFs"
    if name == "output-another-format-dry-run":
        return ["upscale", lr, "-o", str(tmp_path / "out.jpg"), "--dry-run"], "out.jpg: geosr writes Cloud-Optimized"
    if name == "output-exists":
        (tmp_path / "out.tif").write_bytes(b"precious")
        return ["upscale", lr, "-o", out], "already exists (use --overwrite"
    if name == "output-exists-dry-run":  # a dry run said ok: true for what the run refuses
        (tmp_path / "out.tif").write_bytes(b"precious")
        return ["upscale", lr, "-o", out, "--dry-run"], "already exists (use --overwrite"
    if name == "output-is-input-dry-run":
        return ["upscale", lr, "-o", lr, "--overwrite", "--dry-run"], "is the LR of this run"
    if name == "output-folder-missing-dry-run":
        return ["upscale", lr, "-o", str(tmp_path / "no" / "where.tif"), "--dry-run"], "output folder"
    if name == "output-name-too-long":  # the sidecars' names went over 255 bytes: "internal error: OSError"
        return ["upscale", lr, "-o", str(tmp_path / ("a" * 240 + ".tif"))], "the file name is too long (244 bytes)"
    if name == "palette":  # its classes were blended (0 next to 3 gave 1 and 2) and the colour table dropped
        p = make_raster(tmp_path / "classes.tif", np.zeros((1, 20, 24), np.uint8))
        with __import__("rasterio").open(p, "r+") as ds:
            ds.write_colormap(1, {0: (0, 0, 0, 255), 3: (255, 0, 0, 255)})
        return ["upscale", str(p), "-x", "2", "-m", "bicubic", "-o", out], "classes.tif: is a palette raster"
    # (the mask cases with --ignore-unused: the default model uses no mask without a reference, which is said before
    # the file is read; the map cases with a model that reads a map: one a model does not use is not read)
    if name == "mask-unknown-classes":
        m = np.zeros((1, 20, 24), np.uint8)
        m[0, 3, 3] = 7
        p = make_raster(tmp_path / "cd.tif", m)
        return ["upscale", lr, "--cd", str(p), "--ignore-unused", "-o", out], "cd.tif: holds values 7"
    if name == "mask-float":
        p = make_raster(tmp_path / "cdf.tif", np.zeros((1, 20, 24), np.float32))
        return (["upscale", lr, "--cd", str(p), "--ignore-unused", "-o", out],
                "cdf.tif: a change mask must hold whole class values")
    if name == "map-rgb":
        p = make_raster(tmp_path / "rgbmap.tif", np.zeros((3, 20, 24), np.uint8))
        with __import__("rasterio").open(p, "r+") as ds:
            ds.update_tags(GEOSR_MAP_STYLE="rgb")
        return ["upscale", lr, "--map", str(p), "-m", str(map_model), "-o", out], "rgbmap.tif: is a rendered (RGB) map"
    if name == "map-three-bands":  # (session 55) any 3-band raster was said to be "a rendered (RGB) map"
        p = make_raster(tmp_path / "photo.tif", np.zeros((3, 20, 24), np.uint8))
        return (["upscale", lr, "--map", str(p), "-m", str(map_model), "-o", out],
                "photo.tif: has 3 bands, not one band of class ids")
    if name == "map-bad-class-tag":  # (session 55) an internal error: JSONDecodeError
        p = make_raster(tmp_path / "tagged.tif", np.zeros((1, 20, 24), np.uint8))
        with __import__("rasterio").open(p, "r+") as ds:
            ds.update_tags(GEOSR_MAP_CLASSES="background,building,road")
        return (["upscale", lr, "--map", str(p), "-m", str(map_model), "-o", out],
                "tagged.tif: its tag GEOSR_MAP_CLASSES is not a JSON list")
    if name == "class-table-missing":
        return ["upscale", lr, "--cd-classes", str(tmp_path / "t.json"), "-o", out], "t.json: no such class table"
    if name == "alpha-only":  # an internal error, IndexError on an empty band selection (found in review)
        p = make_raster(tmp_path / "alpha.tif", np.full((1, 20, 24), 255, np.uint8))
        with __import__("rasterio").open(p, "r+") as ds:
            ds.colorinterp = [__import__("rasterio").enums.ColorInterp.alpha]
        return ["upscale", str(p), "-x", "2", "-m", "bicubic", "-o", out], \
            "alpha.tif: has no band of pixel values, only 1 band of alpha (transparency)"
    if name == "class-table-folder":  # an internal error, IsADirectoryError (found in review)
        (tmp_path / "tables").mkdir()
        return ["upscale", lr, "--cd-classes", str(tmp_path / "tables"), "-o", out], \
            "tables: is a folder, not a class table file"
    if name == "class-table-entry":
        (tmp_path / "t.json").write_text('{"classes": [{"value": 0, "name": "same", "changed": false}, '
                                         '{"value": 1, "changed": true}]}')
        return ["upscale", lr, "--cd-classes", str(tmp_path / "t.json"), "-o", out], 'class entry 2 of the table has ' \
            'no "name"'
    if name == "class-table-changed-text":  # "false" as a string was read as true: every pixel changed, exit 0
        (tmp_path / "t.json").write_text('{"classes": [{"value": 0, "name": "same", "changed": "false"}, '
                                         '{"value": 1, "name": "new", "changed": true}]}')
        return ["upscale", lr, "--cd-classes", str(tmp_path / "t.json"), "-o", out], 'class entry 1 of the table: ' \
            '"changed" must be true or false, not "false"'
    if name == "class-table-value-fraction":  # 3.7 was cut to 3
        (tmp_path / "t.json").write_text('{"classes": [{"value": 0, "name": "same", "changed": false}, '
                                         '{"value": 3.7, "name": "new", "changed": true}]}')
        return ["upscale", lr, "--cd-classes", str(tmp_path / "t.json"), "-o", out], 'class entry 2 of the table: ' \
            '"value" must be a whole number (the mask\'s pixel value), not 3.7'
    if name == "overlap-too-big":
        return ["upscale", lr, "--window", "8", "--overlap", "8", "-o", out], "overlap"
    if name == "overlap-over-default-window":  # was clamped silently: thousands of windows
        return ["upscale", lr, "-m", "bicubic", "-x", "2", "--overlap", "500", "-o", out], \
            "--overlap 500 must be smaller than the window (128 LR pixels, the model's default here; --window"
    if name == "unknown-model":
        return ["upscale", lr, "--model", "magic", "-o", out], "unknown model 'magic'"
    if name == "aoi-outside":
        return ["upscale", lr, "--aoi", "0,0,1,1", "-o", out], "--aoi 0,0,1,1: does not overlap"
    if name == "aoi-malformed":
        return ["upscale", lr, "--aoi", "1,2,x,4", "-o", out], "--aoi"
    if name == "all-nodata":
        p = make_raster(tmp_path / "empty.tif", np.zeros((3, 8, 8), np.uint8), nodata=0)
        return ["upscale", str(p), "-o", out], "empty.tif: has no valid pixels"
    if name == "device":
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
        return ["upscale", lr, "--device", "cuda", "-o", out], "--device cuda"
    raise AssertionError(name)


CASES = [
    "missing-lr", "not-a-raster", "corrupt-tiff", "folder-as-lr", "no-crs", "ref-missing", "ref-not-overlapping",
    "ref-not-overlapping-aoi", "ref-band-count", "model-one-band", "model-four-bands", "unknown-band", "band-index",
    "band-list-empty-item", "one-band-reference", "scale",
    "output-folder-missing", "output-another-format", "output-another-format-dry-run", "output-exists",
    "output-exists-dry-run", "output-is-input-dry-run", "output-folder-missing-dry-run", "palette",
    "output-name-too-long", "alpha-only",
    "mask-unknown-classes", "mask-float", "map-rgb", "map-three-bands", "map-bad-class-tag", "class-table-missing",
    "class-table-folder", "class-table-entry",
    "class-table-changed-text", "class-table-value-fraction", "overlap-too-big",
    "overlap-over-default-window", "unknown-model",
    "aoi-outside", "aoi-malformed", "all-nodata", "device",
]


@pytest.mark.parametrize("name", CASES)
def test_bad_input_exits_2_with_one_sentence_and_writes_nothing(scene, name, map_model):
    tmp_path, lr = scene
    argv, expected = _case(tmp_path, lr, name, map_model)
    before = {p.name: p.stat().st_size for p in tmp_path.iterdir()}
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, (result.exit_code, result.output, result.stderr)
    message = result.stderr.strip()
    assert "\n" not in message and message.startswith("geosr: error:"), message
    assert expected in message, message
    after = {p.name: p.stat().st_size for p in tmp_path.iterdir()}
    assert after == before, "nothing may be written"


def test_json_mode_reports_the_error_as_json(scene):
    tmp_path, lr = scene
    result = runner.invoke(app, ["upscale", str(tmp_path / "nope.tif"), "-o", str(tmp_path / "o.tif"), "--json"])
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert doc == {"ok": False, "exit_code": 2, "error": f"{tmp_path / 'nope.tif'}: no such file"}


def test_internal_errors_exit_1(scene, monkeypatch):
    tmp_path, lr = scene
    import geosr.io.writer as writer

    def boom(*a, **k):
        raise RuntimeError("kaput")

    monkeypatch.setattr(writer, "to_cog", boom)  # the final assembly of upscale's chunks
    result = runner.invoke(app, ["upscale", str(lr), "-x", "2", "-o", str(tmp_path / "o.tif")])
    assert result.exit_code == 1 and "internal error: RuntimeError: kaput" in result.stderr
    assert not (tmp_path / "o.tif").exists()


def test_a_gpu_out_of_memory_says_what_to_do(scene, monkeypatch):
    """torch's CUDA out-of-memory error was "internal error: OutOfMemoryError" and a page of allocator numbers."""
    import torch

    import geosr.io.writer as writer

    def boom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.1 GiB total)")

    tmp_path, lr = scene
    monkeypatch.setattr(writer, "to_cog", boom)
    result = runner.invoke(app, ["upscale", str(lr), "-x", "2", "-o", str(tmp_path / "o.tif")])
    assert result.exit_code == 1 and "GPU ran out of memory; give a smaller --window (or --batch-size" in \
        " ".join(result.stderr.split())  # (--batch-size alone did nothing for lite; found in review)
    assert "Tried to allocate" not in result.stderr and not (tmp_path / "o.tif").exists()
    # the CUDA driver's, cuBLAS's or cuDNN's out of memory is a RuntimeError: "internal error" and torch's notes
    for text in ("CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported",
                 "cuDNN error: CUDNN_STATUS_ALLOC_FAILED"):
        monkeypatch.setattr(writer, "to_cog", lambda *a, text=text, **k: (_ for _ in ()).throw(RuntimeError(text)))
        result = runner.invoke(app, ["upscale", str(lr), "-x", "2", "-o", str(tmp_path / "o.tif")])
        assert result.exit_code == 1 and "internal error" not in result.stderr, result.stderr
        assert "GPU ran out of memory" in result.stderr and "asynchronously" not in result.stderr


def test_a_batch_job_out_of_gpu_memory_fails_in_one_sentence_without_retries():
    """A worker's CUDA out of memory went back to Dask for a retry (--retries times, the same each time) and was
    reported as torch's page of allocator numbers (found in review)."""
    from types import SimpleNamespace

    import torch

    from geosr.pipeline.batch.results import TaskError
    from geosr.pipeline.batch.tasks import _guarded

    calls = []

    def oom():
        calls.append(1)
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.1 GiB total)")

    failed = _guarded(SimpleNamespace(id="j"), "now", 0.0, oom)
    assert calls == [1] and failed["ok"] is False and failed["error_type"] == "OutOfMemoryError"
    assert failed["error"].startswith("the GPU ran out of memory; give a smaller `window`")
    with pytest.raises(TaskError):  # anything else of geosr's is retried as before
        _guarded(SimpleNamespace(id="j"), "now", 0.0, lambda: (_ for _ in ()).throw(RuntimeError("kaput")))


def test_success_json_summary_and_info(scene):
    tmp_path, lr = scene
    out = tmp_path / "o.tif"
    result = runner.invoke(app, ["upscale", str(lr), "-x", "2", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["ok"] and doc["width"] == 48 and doc["height"] == 40 and doc["output"] == str(out)
    result = runner.invoke(app, ["info", str(lr), str(out), "--json"])
    info = json.loads(result.stdout)
    assert info["files"][1]["res"] == [5.0, 5.0]
    assert info["overlaps"][0]["covered"] == pytest.approx(1.0)
    # what it takes to run it again is in its record: the seed, bands, options (found in review: left out)
    record = info["files"][1]["geosr"]
    assert record["seed"] == 0 and record["bands"] == [1, 2, 3] and record["options"]["scale"] == 2
    assert {"sampler", "tiling", "nodata_share"} <= set(record)
    text = " ".join(runner.invoke(app, ["info", str(out)]).output.split())
    assert f"(bands 1,2,3), seed 0, on cpu (torch {torch.__version__})" in text  # (the device: found in review)
    assert json.loads(json.dumps(record["runtime"])) == {"device": "cpu", "batch_size": 1, "threads": record[
        "runtime"]["threads"], "torch": torch.__version__}
    # and the settings that decide the pixels, not the seed alone (found in review); no reference: no detail named
    assert "model settings: 1 sampling step (sampler default); LR-consistency back-projection" in text
    assert "reference detail" not in text


def test_help_shows_examples():
    result = runner.invoke(app, ["upscale", "--help"])
    assert result.exit_code == 0 and "geosr upscale s2.tif" in result.stdout


@pytest.mark.parametrize("command", ["upscale", "sample", "info", "batch", "rasterize-osm"])
def test_help_shows_no_type_beside_a_flag(command):
    """`--overwrite <bool>` read as a flag that takes a value (`geosr sample --overwrite true` copied the sample into
    a folder "true"; found in review); an option that takes one keeps its type."""
    text = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"}).stdout
    assert "<bool>" not in text and (command == "info" or re.search(r"--overwrite\s+Replace", text)), text
    if command == "upscale":
        assert re.search(r"--window\s+<int>", text), text


# ---- the library names its parameters, the CLI its flags ---------------------------------------------------------
@pytest.mark.parametrize("param,value,error,python_start,flag,cli_start", [
    ("aoi", "1,2,x,4", "OptionError", "aoi '1,2,x,4': expected", "--aoi", "--aoi '1,2,x,4': expected"),
    ("scale", 17, "ScaleError", "scale 17: geosr supports", "-x", "-x 17: geosr supports"),
])
def test_library_errors_name_the_parameter_and_the_cli_its_flag(scene, param, value, error, python_start, flag,
                                                                 cli_start):
    import pickle

    import geosr
    import geosr.errors

    tmp_path, lr = scene
    out = str(tmp_path / "o.tif")
    with pytest.raises(getattr(geosr.errors, error)) as info:
        geosr.upscale(str(lr), output=out, model="bicubic", **{param: value})
    exc = info.value
    assert exc.param == param and str(exc).startswith(python_start), str(exc)
    again = pickle.loads(pickle.dumps(exc))  # geosr batch sends errors between processes
    assert type(again) is type(exc) and str(again) == str(exc) and again.param == param

    argv = ["upscale", str(lr), flag, str(value), "--model", "bicubic", "-o", out]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, (result.output, result.stderr)
    assert result.stderr.strip().startswith(f"geosr: error: {cli_start}"), result.stderr
    result = runner.invoke(app, [*argv, "--json"])
    assert result.exit_code == 2 and json.loads(result.stdout)["error"].startswith(cli_start), result.stdout
    assert not (tmp_path / "o.tif").exists()


def test_errors_keep_their_builtin_classes_message_and_param_through_pickle():
    """Checked in a fresh interpreter: Dask's tblib, once imported by another test, replaces exception pickling
    for every class (and cannot rebuild a ValueError that is also an OSError); geosr's batch tasks therefore send
    results and TaskError across processes, never these classes."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import pickle
        from geosr.errors import InputNotFoundError, NetworkError, OutputExistsError, OutputWriteError
        for cls, builtin in [(InputNotFoundError, FileNotFoundError), (OutputExistsError, FileExistsError),
                             (OutputWriteError, OSError), (NetworkError, ConnectionError)]:
            for param in (None, "output"):
                exc = pickle.loads(pickle.dumps(cls("output x.tif: the problem", param=param)))
                assert type(exc) is cls and isinstance(exc, builtin) and exc.param == param, (cls, param)
                assert str(exc) == "output x.tif: the problem"
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_an_input_the_model_cannot_use_is_refused_unless_ignored(scene):
    """Honest conditioning: --map with the bundled model (no map path) or --ref with bicubic would change
    nothing; they exit 2 naming the model and the input, unless --ignore-unused."""
    tmp_path, lr = scene
    m = make_raster(tmp_path / "map.tif", np.ones((1, 160, 192), np.uint8),
                    transform=Affine(1.25, 0, 500000, 0, -1.25, 5000000))
    out = tmp_path / "out.tif"
    r = runner.invoke(app, ["upscale", str(lr), "--map", str(m), "-x", "8", "-o", str(out)])
    assert r.exit_code == 2 and "model default: cannot use a map (--map)" in r.output, r.output
    assert "--ignore-unused" in r.output and not out.exists()
    r = runner.invoke(app, ["upscale", str(lr), "--ref", str(lr), "--model", "bicubic", "-x", "2", "-o", str(out)])
    assert r.exit_code == 2 and "model bicubic: cannot use a reference (--ref)" in r.output, r.output
    assert "uses nothing but the LR" in r.output
    # lite uses a reference through its reference detail (`geosr models`): with that off, the sentence says so
    r = runner.invoke(app, ["upscale", str(lr), "--ref", str(lr), "-m", "lite", "--no-ref-detail", "-x", "2", "-o",
                            str(out)])
    assert r.exit_code == 2 and "cannot use a reference (--ref) with --ref-detail off" in r.output, r.output
    assert not out.exists()
    r = runner.invoke(app, ["upscale", str(lr), "--map", str(m), "-x", "8", "-o", str(out), "--ignore-unused", "-q"])
    assert r.exit_code == 0, r.output
    # a style with the default model (no style path) was refused even with --ignore-unused (found by review), in
    # words of its own; now as every unused input (`sample` named as what it is, not "a style image")
    r = runner.invoke(app, ["upscale", str(lr), "--style", "sample", "-x", "8", "-o", str(out), "--overwrite"])
    assert r.exit_code == 2 and "model default: cannot use a sampled style (--style sample)" in r.output, r.output
    r = runner.invoke(app, ["upscale", str(lr), "--style", str(lr), "-x", "8", "-o", str(out), "--overwrite"])
    assert r.exit_code == 2 and "model default: cannot use a style image (--style)" in r.output, r.output
    r = runner.invoke(app, ["upscale", str(lr), "--style", "sample", "-x", "8", "-o", str(out), "--overwrite",
                            "--ignore-unused", "-q"])
    assert r.exit_code == 0, r.output


def test_models_lists_the_scales_and_inputs_each_model_uses():
    from geosr.models.interface import model_inputs
    from geosr.models.registry import load_model

    r = runner.invoke(app, ["models", "--json"])
    listed = {m["name"]: m for m in json.loads(r.output)["models"]}
    assert listed["bicubic"]["inputs"] == [] and listed["reference-paste"]["inputs"] == ["ref", "cd"]
    assert listed["default"]["scales"] == [2, 4, 8, 16]
    assert set(listed["default"]["inputs"]) == model_inputs(load_model("default")) == {"ref", "cd"}
    # how many LR bands each takes (docs/data-contract.md): the bundled ones 3, a classical back-end any (null)
    assert listed["default"]["bands"] == load_model("default").bands == 3 and listed["lite"]["bands"] == 3
    assert listed["bicubic"]["bands"] is None
    # the terms of the default's weights travel in its spec and are listed (found in review: the model card said
    # non-commercial, the file and the listing nothing)
    from geosr.models.checkpoint import read_spec
    from geosr.models.registry import bundled_checkpoints

    terms = read_spec(bundled_checkpoints()["default"])["training"]["licences"]
    assert terms.startswith("Weights: for non-commercial research only") and "DSIFN-CD" in terms
    assert listed["default"]["licences"] == terms and listed["bicubic"]["licences"] is None
    table = " ".join(runner.invoke(app, ["models"]).output.split())
    assert "default: Weights: for non-commercial research only, as part of the training data is." in table
    assert "bands" in table
    # and lite's, fine-tuned on the same pairs (found in review: null, so `-m lite` looked free of terms)
    lite = read_spec(bundled_checkpoints()["lite"])["training"]["licences"]
    assert lite.startswith("Weights: for non-commercial research only") and "SAFMN (Apache-2.0" in lite
    assert listed["lite"]["licences"] == lite and lite in listed["default+lite"]["licences"]
    assert "lite: Weights: for non-commercial research only, as part of the fine-tuning data is." in table


def test_models_piped_keeps_every_name_whole():
    """Into a pipe rich squeezed the table into 80 columns: `reference-…`, `default+l…` (names one types)."""
    listed = [m["name"] for m in json.loads(runner.invoke(app, ["models", "--json"]).output)["models"]]
    rows = runner.invoke(app, ["models"]).output.splitlines()
    assert "…" not in "".join(rows)
    for name in listed:
        assert any(row.split("│")[1].strip() == name for row in rows if row.count("│") > 2), name


@pytest.mark.parametrize("name", ["no-crs", "aoi-crs", "osm-crs"])
def test_the_one_sentence_is_all_a_real_terminal_shows(scene, name):
    """Run as a process (stderr as a terminal gets it): no library warning or GDAL error line beside the sentence
    (rasterio's NotGeoreferencedWarning, PROJ's "ERROR 1: ..." line)."""
    import subprocess
    import sys
    import warnings

    tmp_path, lr = scene
    out = str(tmp_path / "out.tif")
    if name == "no-crs":
        import rasterio

        p = tmp_path / "nocrs.tif"  # neither CRS nor geotransform: rasterio warns when it opens it
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with rasterio.open(p, "w", driver="GTiff", width=8, height=8, count=3, dtype="uint8") as ds:
                ds.write(np.ones((3, 8, 8), np.uint8))
        argv = ["upscale", str(p), "-x", "2", "-m", "bicubic", "-o", out]
    elif name == "aoi-crs":
        argv = ["upscale", str(lr), "--aoi", "1,1,2,2", "--aoi-crs", "EPSG:99999", "-x", "2", "-m", "bicubic",
                "-o", out]
    else:  # refused before any OSM data is asked for
        argv = ["rasterize-osm", "--bbox", "10.068,48.135,10.071,48.137", "-r", "1", "--crs", "EPSG:99999", "-o", out]
    proc = subprocess.run([sys.executable, "-W", "default", "-m", "geosr.cli.app", *argv], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("geosr: error:"), proc.stderr


USAGE_ERRORS = [
    (["detect-changes", "{lr}", "--ref", "{lr}"], "Missing option '-o' / '--output'."),
    (["rasterize-osm", "--like", "{lr}"], "Missing option '-o' / '--output'."),
    (["upscale", "{lr}", "-x", "abc", "-o", "{out}"], "Invalid value for '-x' / '--scale'"),
    (["upscale", "{lr}", "--bogus", "-o", "{out}"], "No such option: --bogus"),
    (["batch"], "Missing argument 'manifest'."),
]


@pytest.mark.parametrize("argv, expected", USAGE_ERRORS)
def test_usage_errors_are_one_line_on_stderr(scene, argv, expected):
    """Found by review: without --json a usage error was a usage box of six lines wrapped at 80 columns, the
    message cut across them, also with -q; it is one line, as every other error."""
    tmp_path, lr = scene
    out = tmp_path / "out.tif"
    res = runner.invoke(app, [a.format(lr=lr, out=out) for a in argv] + ["-q"] * (argv[0] != "batch"))
    assert res.exit_code == 2 and res.stdout == "", res.output
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("geosr: error: ") and expected in line and "--help` lists the options" in line, line
    assert not out.exists()


@pytest.mark.parametrize("argv, expected", USAGE_ERRORS)
def test_json_reports_usage_errors_as_json(scene, argv, expected):
    """With --json every error is one JSON line on stdout, usage errors (a missing or malformed option) too."""
    tmp_path, lr = scene
    out = tmp_path / "out.tif"
    res = runner.invoke(app, [a.format(lr=lr, out=out) for a in argv] + ["--json"])
    assert res.exit_code == 2, res.output
    report = json.loads(res.stdout)
    assert report["ok"] is False and report["exit_code"] == 2 and expected in report["error"]
    assert not out.exists()


def test_info_overlaps_follow_rotated_grids_and_shows_each_band_s_nodata_and_unit(tmp_path):
    """`geosr info` took a rotated raster's axis-aligned box (63.5% where 75.6% overlap), showed the first band's
    nodata for every band and no units."""
    rot = Affine.translation(500000, 5000000) @ Affine.rotation(15) @ Affine.scale(10, -10)
    north_up = Affine(10, 0, 500000, 0, -10, 5000000)
    a = make_raster(tmp_path / "a.tif", np.ones((1, 30, 40), np.uint8), transform=north_up)
    b = make_raster(tmp_path / "b.tif", np.ones((1, 30, 40), np.uint8), transform=rot)
    vrt = tmp_path / "c.tif"
    with rasterio.open(vrt, "w", driver="GTiff", width=8, height=8, count=2, dtype="uint16", crs="EPSG:32633",
                       transform=north_up) as ds:
        ds.write(np.ones((2, 8, 8), np.uint16))
        ds.units = ("metre", "")
    with rasterio.open(vrt, "r+") as ds:
        ds.nodata = 0
    res = runner.invoke(app, ["info", str(a), str(b), str(vrt), "--json"])
    report = json.loads(res.stdout)
    covered = {(o["file"], o["other"]): o["covered"] for o in report["overlaps"]}
    assert covered[(str(a), str(b))] == pytest.approx(0.7562, abs=2e-3)
    assert covered[(str(b), str(a))] == pytest.approx(0.7562, abs=2e-3)
    bands = report["files"][2]["bands"]
    assert [(x["nodata"], x["unit"]) for x in bands] == [(0.0, "metre"), (0.0, "")]
    # the rotation itself is shown (it was the pixel size alone; found in review)
    assert report["files"][1]["transform"] == pytest.approx(list(rot.to_gdal()))
    assert report["files"][0]["transform"] == list(north_up.to_gdal())
    text = " ".join(runner.invoke(app, ["info", str(b)]).output.split())
    assert "(rotated grid)" in text and "(rotated grid)" not in runner.invoke(app, ["info", str(a)]).output


def test_info_overlap_of_a_whole_world_raster_and_a_small_one(tmp_path):
    """A whole-world EPSG:4326 raster "covered 0.0%" of a UTM raster inside it: the world's outline projected into
    the UTM zone is a sliver far away. The overlap is taken in the CRS of the larger file."""
    world = make_raster(tmp_path / "world.tif", np.ones((1, 20, 20), np.uint8), crs="EPSG:4326",
                        transform=Affine(18, 0, -180, 0, -9, 90))
    utm = make_raster(tmp_path / "utm.tif", np.ones((1, 20, 20), np.uint8),
                      transform=Affine(10, 0, 500000, 0, -10, 5500000))
    res = runner.invoke(app, ["info", str(utm), str(world), "--json"])
    covered = {(o["file"], o["other"]): o["covered"] for o in json.loads(res.stdout)["overlaps"]}
    assert covered[(str(utm), str(world))] == pytest.approx(1.0)
    assert covered[(str(world), str(utm))] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("west", [-179.0, 179.5], ids=["east-of-180", "west-of-180"])
def test_info_overlap_with_a_raster_across_the_antimeridian(tmp_path, west):
    """A UTM zone 1 raster across 180 degrees had a negative longitude extent (west beyond east), so a small
    raster in degrees inside it counted as the larger file: "covered 0.0%" both ways. Now 100% of the small one."""
    across = make_raster(tmp_path / "across.tif", np.ones((1, 200, 400), np.uint8), crs="EPSG:32601",
                         transform=Affine(500, 0, 250000, 0, -500, 6700000))
    small = make_raster(tmp_path / "small.tif", np.ones((1, 100, 100), np.uint8), crs="EPSG:4326",
                        transform=Affine(0.001, 0, west, 0, -0.001, 60.2))
    res = runner.invoke(app, ["info", str(across), str(small), "--json"])
    covered = {(o["file"], o["other"]): o["covered"] for o in json.loads(res.stdout)["overlaps"]}
    assert covered[(str(small), str(across))] == pytest.approx(1.0)
    assert covered[(str(across), str(small))] == pytest.approx(0.0031, abs=1e-4)


def test_info_overlaps_across_the_antimeridian_around_a_pole_and_in_an_engineering_crs(tmp_path):
    """Outlines projected into degrees broke across 180 and around a pole (a reference west of 180 "covered 0.5%" of
    a Fiji scene, 58% of whose pixels it holds; a longitude range 0..360 "covered 50%" of Europe), and a raster in
    an engineering CRS beside another was an internal error (found in review). Shares are of pixels now."""
    from rasterio.crs import CRS
    from rasterio.transform import from_bounds, from_origin

    one = np.ones((1, 100, 100), np.uint8)
    fiji = make_raster(tmp_path / "fiji.tif", one, crs="EPSG:32760", transform=from_origin(800000, 8200000, 1000, 1000))
    west = make_raster(tmp_path / "west.tif", one, crs="EPSG:4326", transform=from_bounds(-180, -18, -177, -16.5,
                                                                                            100, 100))
    world = make_raster(tmp_path / "world.tif", one, crs="EPSG:4326", transform=from_bounds(0, -90, 360, 90, 100, 100))
    europe = make_raster(tmp_path / "europe.tif", one, crs="EPSG:4326", transform=from_bounds(-5, 40, 5, 50, 100, 100))
    polar = make_raster(tmp_path / "polar.tif", one, crs="EPSG:3031", transform=from_origin(-1e6, 1e6, 2e4, 2e4))
    quarter = make_raster(tmp_path / "quarter.tif", one, crs="EPSG:3031", transform=from_origin(0, 1e6, 1e4, 1e4))
    local = make_raster(tmp_path / "local.tif", one, crs=CRS.from_wkt(
        'LOCAL_CS["arbitrary",LOCAL_DATUM["x",32767],UNIT["metre",1],AXIS["X",EAST],AXIS["Y",NORTH]]'),
        transform=from_origin(500000, 4000000, 10, 10))
    degenerate = make_raster(tmp_path / "degenerate.tif", one, transform=Affine(1, 1, 500000, 1, 1, 5000000))
    import warnings

    with warnings.catch_warnings():  # (NumPy's "invalid value" for points outside a UTM zone was printed raw)
        warnings.simplefilter("error", RuntimeWarning)
        res = runner.invoke(app, ["info", str(fiji), str(west), str(world), str(europe), str(polar), str(quarter),
                                  str(local), str(degenerate), "--json"])
    assert res.exit_code == 0, res.output
    covered = {(o["file"], o["other"]): o["covered"] for o in json.loads(res.stdout)["overlaps"]}
    assert 0.4 < covered[(str(fiji), str(west))] < 0.8  # (the reference's west edge, 180, crosses the scene)
    assert covered[(str(europe), str(world))] == 1.0 and covered[(str(fiji), str(world))] == 1.0
    assert covered[(str(quarter), str(polar))] == 1.0 and covered[(str(polar), str(quarter))] == pytest.approx(0.25)
    assert covered[(str(local), str(europe))] is None and covered[(str(europe), str(local))] is None
    assert covered[(str(europe), str(degenerate))] == 0.0  # (no area: it was an internal error)
    text = " ".join(runner.invoke(app, ["info", str(local), str(europe)]).output.split())
    assert f"how much {europe} covers of {local} is unknown: PROJ knows no way between their CRSs" in text, text


def test_a_file_name_too_long_is_bad_input_in_one_short_sentence(tmp_path):
    """An over-long output or input name was "internal error: File name too long", exit 1, echoing it whole."""
    long_name = str(tmp_path / ("a" * 300 + ".tif"))
    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 20, 24) * 255).astype(np.uint8))
    for args in (["upscale", str(lr), "-x", "2", "-m", "bicubic", "-o", long_name], ["info", long_name]):
        res = runner.invoke(app, args)
        said = " ".join(res.output.split())
        assert res.exit_code == 2 and "the file name is too long" in said and "(3" in said, said
        assert len(said) < 200
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr.tif"]


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_after_a_stop_each_command_says_how_it_continues(capsys, signal_name):
    """batch and evaluate were told to "run again with --resume", which they do not have; after Ctrl-C (SIGINT)
    none was told how to continue (found black-box: `geosr: error: interrupted` alone, while SIGTERM said it)."""
    from geosr.cli.common import Terminated, run_command

    def stopped():
        raise Terminated() if signal_name == "SIGTERM" else KeyboardInterrupt()

    said = {}
    for command in ("upscale", "batch", "evaluate", "train"):
        with pytest.raises(typer.Exit):
            run_command(stopped, command=command, json_out=True)
        said[command] = json.loads(capsys.readouterr().out)["error"]
    assert "--resume" in said["upscale"] and "--resume" in said["train"]
    assert "--resume" not in said["batch"] and "same batch again" in said["batch"]
    assert said["evaluate"] == ("terminated (SIGTERM)" if signal_name == "SIGTERM" else "interrupted")


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_a_stop_during_an_import_waits_for_its_end(tmp_path, monkeypatch, capsys, signal_name):
    """A SIGTERM in a batch's first seconds, as the command imported torch, raised inside torch's C++ module
    initialization: std::terminate, the process aborted with a page of C++ trace and no message (found in review).
    The stop now waits for the import's end, then stops the command as anywhere else."""
    import signal
    import sys
    import time

    from geosr.cli.common import run_command

    name = f"slow_import_{signal_name.lower()}"
    (tmp_path / f"{name}.py").write_text(
        "import os, signal, time\n"
        f"os.kill(os.getpid(), signal.{signal_name})\n"
        "time.sleep(0.3)  # the signal lands here, inside the import\n"
        "DONE = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Python's own, as in the CLI

    def command():
        __import__(name)
        time.sleep(5)  # the signal, sent again, stops it here

    started = time.monotonic()
    with pytest.raises(typer.Exit) as exc:
        run_command(command, command="evaluate", json_out=True)
    assert exc.value.exit_code == (143 if signal_name == "SIGTERM" else 130)
    assert getattr(sys.modules.get(name), "DONE", False)  # the import ran to its end
    assert time.monotonic() - started < 4
    assert json.loads(capsys.readouterr().out)["error"] == ("terminated (SIGTERM)" if signal_name == "SIGTERM"
                                                            else "interrupted")


def test_a_change_class_table_that_cannot_be_read_is_named(tmp_path, monkeypatch):
    """`--cd-classes t.json` this user may not read: an internal error, PermissionError (found in review)."""
    import errno
    from pathlib import Path

    from geosr.conditioning.changes import load_change_classes
    from geosr.errors import ClassTableError

    (tmp_path / "t.json").write_text("{}")
    read = Path.read_text

    def denied(self, *args, **kwargs):  # (as root, as CI may run, mode 000 does not deny)
        if self.name == "t.json":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return read(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(ClassTableError, match=r"t.json: cannot be read \(permission denied\)"):
        load_change_classes(str(tmp_path / "t.json"))


def test_a_file_this_user_may_not_read_that_no_check_named_is_a_bad_input(capsys):
    """A PermissionError no check turned into a sentence (a file in a folder this user may not enter: even whether it
    exists raises) was an internal error, exit 1 (found in review); it names the file, exit 2. Other OS errors stay
    internal."""
    import errno

    from geosr.cli.common import run_command

    def denied():
        raise PermissionError(errno.EACCES, "Permission denied", "/srv/private/scene.tif")

    with pytest.raises(typer.Exit) as exc:
        run_command(denied, command="upscale")
    assert exc.value.exit_code == 2
    assert capsys.readouterr().err.strip() == ("geosr: error: /srv/private/scene.tif: permission denied (this user "
                                               "may not read or write it, or enter its folder)")

    def broken():
        raise OSError(errno.EIO, "Input/output error", "/srv/scene.tif")

    with pytest.raises(typer.Exit) as exc:
        run_command(broken, command="upscale")
    assert exc.value.exit_code == 1


def test_a_ctrl_c_that_cut_a_line_short_still_leaves_the_last_word(capsys):
    """A Ctrl-C that lands while rich prints a line can leave its console holding every later line in a buffer
    never written (a printing loop interrupted 20,000 times: 81 such states); the "interrupted ..." line went
    missing with it (the local batch's Ctrl-C test failed so, rarely: exit 130, nothing said). The state is made
    here as the interrupt leaves it (the buffer entered, never left)."""
    from geosr.cli.common import err_console, run_command

    def stopped():
        raise KeyboardInterrupt()

    err_console._enter_buffer()  # rich's own state after such an interrupt
    try:
        with pytest.raises(typer.Exit) as exc:
            run_command(stopped, command="batch")
        said = capsys.readouterr().err  # (before the buffer is left, which would write what it holds)
    finally:
        err_console._exit_buffer()
    assert exc.value.exit_code == 130
    assert "geosr: error: interrupted; run the same batch again" in said


def test_black_box_findings_json_nan_dangling_links_evaluate_options_and_huge_like_grids(tmp_path):
    """Found black-box: `info --json` printed NaN (not JSON) for a NaN nodata; an output path that is a dangling
    link was replaced without --overwrite; evaluate took any --lr-consistency with classical models alone and
    ran a model given twice twice; rasterize-osm --like -x had no size limit (ran for hours)."""
    import os

    from geosr.errors import OptionError
    from geosr.options import EvaluateOptions
    from geosr.osm.grid import like_grid

    lr = make_raster(tmp_path / "f.tif", smooth_field(1, 12, 12, seed=1).astype(np.float32), nodata=float("nan"))
    res = runner.invoke(app, ["info", str(lr), "--json"])
    assert res.exit_code == 0

    def strict(c):
        raise AssertionError(f"{c} is not JSON")

    assert json.loads(res.stdout, parse_constant=strict)["ok"] is True
    link = tmp_path / "out.tif"
    os.symlink(tmp_path / "share" / "gone.tif", link)
    res = runner.invoke(app, ["upscale", str(lr), "-x", "2", "-m", "bicubic", "-o", str(link)])
    assert res.exit_code == 2 and "already exists, as a link" in res.output and os.path.islink(link)
    with pytest.raises(OptionError, match="lr-consistency|lr_consistency"):
        EvaluateOptions(models=("bicubic",), scales=(4,), lr_consistency="bogus")
    assert EvaluateOptions(models=("bicubic", "lanczos", "bicubic"), scales=(4,)).models == ("bicubic", "lanczos")
    # -x 4 -x 4 ran every case twice (4 cases for 2 pairs; the means the same)
    assert EvaluateOptions(models=("bicubic",), scales=(4, 8, 4)).scales == (4, 8)
    with pytest.raises(OptionError, match="would make a 240000 x 240000 pixel grid"):
        like_grid(lr, 20000)


@pytest.mark.parametrize("args", [
    ["upscale", "", "-o", "out.tif", "-x", "2", "-m", "bicubic"],
    ["upscale", "lr.tif", "--ref", "", "-o", "out.tif", "-x", "2", "-m", "bicubic"],
    ["upscale", "lr.tif", "--aoi=", "-o", "out.tif", "-x", "2", "-m", "bicubic"],
    ["detect-changes", "lr.tif", "--ref", " ", "-o", "out.tif"],
])
def test_an_empty_argument_is_refused_not_read_as_the_working_folder(tmp_path, monkeypatch, args):
    """`geosr upscale "$LR"` with LR unset read the working folder's band files and wrote an SR of them (exit 0);
    `--aoi ""` was ignored (the whole scene). Now exit 2 naming the argument, nothing written."""
    monkeypatch.chdir(tmp_path)
    for band, seed in (("B02", 1), ("B03", 2), ("B04", 3)):  # a folder geosr reads as a scene of band files
        make_raster(tmp_path / f"T33UUB_20230101T101031_{band}_10m.tif",
                    (smooth_field(1, 20, 20, seed=seed) * 255).astype(np.uint8))
    make_raster(tmp_path / "lr.tif", (smooth_field(3, 20, 20, seed=4) * 255).astype(np.uint8))
    before = sorted(p.name for p in tmp_path.iterdir())
    res = runner.invoke(app, args)
    said = " ".join(res.output.split())
    assert res.exit_code == 2 and "(an unset shell variable?)" in said, said
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 2 and "(an unset shell variable?)" in json.loads(res.stdout)["error"], res.output


def test_a_value_that_ends_in_an_equals_sign_is_not_taken_for_an_empty_one(tmp_path):
    lr = make_raster(tmp_path / "a=.tif", (smooth_field(3, 20, 20, seed=4) * 255).astype(np.uint8))
    res = runner.invoke(app, ["upscale", f"--aoi={tmp_path / 'nothing='}", str(lr), "-x", "2", "-m", "bicubic",
                              "-o", str(tmp_path / "o.tif")])
    assert res.exit_code == 2 and "nothing=" in res.output and "is empty" not in res.output, res.output


def test_an_empty_path_is_refused_by_the_python_api(tmp_path):
    from geosr.errors import InputNotFoundError, OptionError
    from geosr.pipeline.upscale import upscale

    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 20, 20, seed=4) * 255).astype(np.uint8))
    with pytest.raises(InputNotFoundError, match="the LR path is empty"):
        upscale("", output=tmp_path / "o.tif", scale=2, model="bicubic")
    for name in ("ref", "cd", "map", "aoi", "bands"):
        with pytest.raises(OptionError, match=f"{name} is empty"):
            upscale(lr, output=tmp_path / "o.tif", scale=2, model="bicubic", **{name: ""})
    assert not (tmp_path / "o.tif").exists()
    from geosr.pipeline.detect_changes import detect_changes  # every reader of rasters: the IO layer refuses it

    for lr_path, ref_path in (("", lr), (lr, " ")):
        with pytest.raises(InputNotFoundError, match="a raster's path is empty"):
            detect_changes(lr_path, ref=ref_path, output=tmp_path / "c.tif")
    assert not (tmp_path / "c.tif").exists()


def test_a_change_mask_of_several_bands_or_a_class_table_without_a_mask_is_refused(tmp_path):
    """A 3-band `--cd` ran on its first band without a word; `--cd-classes second` with `--cd none` (or no mask at
    all) was ignored without a word."""
    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 16, 16, seed=1) * 255).astype(np.uint8),
                     transform=Affine(40, 0, 500000, 0, -40, 5000000))
    ref = make_raster(tmp_path / "ref.tif", (smooth_field(3, 64, 64, seed=2) * 255).astype(np.uint8),
                      transform=Affine(10, 0, 500000, 0, -10, 5000000))
    cd3 = make_raster(tmp_path / "cd3.tif", np.zeros((3, 16, 16), np.uint8),
                      transform=Affine(40, 0, 500000, 0, -40, 5000000))
    out = str(tmp_path / "out.tif")
    for args, said in (
        (["--ref", str(ref), "--cd", str(cd3), "-m", "reference-paste"],
         f"{cd3}: a change mask has one band of classes, not 3; extract the band that holds them"),
        (["--ref", str(ref), "--cd", "none", "--cd-classes", "second", "-m", "reference-paste"],
         "--cd-classes second: names the classes of a change mask (--cd), and none is read here"),
        (["--cd-classes", "second", "-m", "bicubic"], "--cd-classes second: names the classes of a change mask"),
    ):
        res = runner.invoke(app, ["upscale", str(lr), "-x", "4", "-o", out, *args])
        said_all = " ".join(res.output.split())
        assert res.exit_code == 2 and said in said_all, (args, said_all)
        assert not (tmp_path / "out.tif").exists()
    res = runner.invoke(app, ["upscale", str(lr), "-x", "4", "-o", out, "--cd-classes", "second", "-m", "bicubic",
                              "--ignore-unused", "-q"])
    assert res.exit_code == 0, res.output


def test_a_model_that_uses_no_reference_skips_its_registration_and_detection(tmp_path):
    """`-m bicubic --ref R --ignore-unused` co-registered the reference and detected changes (the default `--cd
    auto`) for nothing, and reported both as if they had shaped the output."""
    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 16, 16, seed=1) * 255).astype(np.uint8),
                     transform=Affine(40, 0, 500000, 0, -40, 5000000))
    ref = make_raster(tmp_path / "ref.tif", (smooth_field(3, 64, 64, seed=2) * 255).astype(np.uint8),
                      transform=Affine(10, 0, 500000, 0, -10, 5000000))
    res = runner.invoke(app, ["upscale", str(lr), "--ref", str(ref), "-m", "bicubic", "--ignore-unused", "-x", "4",
                              "-o", str(tmp_path / "a.tif"), "--json"])
    summary = json.loads(res.stdout)
    assert summary["ok"] and summary["change_detection"] is None and summary["coregistration"] is None, summary
    with rasterio.open(tmp_path / "a.tif") as ds:
        assert "GEOSR_CHANGE_DETECTION" not in ds.tags() and ds.tags().get("GEOSR_COREGISTRATION") == "null"
    res = runner.invoke(app, ["upscale", str(lr), "--ref", str(ref), "-m", "reference-paste", "-x", "4",
                              "-o", str(tmp_path / "b.tif"), "--json"])
    assert json.loads(res.stdout)["change_detection"]["ran"] is True  # a model that uses it still gets it
    before = ref.read_bytes()  # unread, it is still an input: never the output
    res = runner.invoke(app, ["upscale", str(lr), "--ref", str(ref), "-m", "bicubic", "--ignore-unused", "-x", "4",
                              "-o", str(ref), "--overwrite"])
    assert res.exit_code == 2 and "is the reference of this run" in res.output and ref.read_bytes() == before


def test_info_shares_of_overlap_are_at_most_one():
    """Two rasters of one footprint (the bundled sample's reference and truth): the share covered is 1, not the
    division's 1.0000000000000002."""
    from geosr.sample_scene import sample_paths

    p = sample_paths()
    result = runner.invoke(app, ["info", str(p["ref"]), str(p["truth"]), "--json"])
    assert result.exit_code == 0, result.output
    shares = [o["covered"] for o in json.loads(result.stdout)["overlaps"]]
    assert shares and all(s == 1.0 for s in shares), shares


def test_a_class_table_takes_whole_numbers_written_as_floats(tmp_path):
    """Strict typing (a string "false" read as true, 3.7 cut to 3) must not refuse 3.0, as pandas and numpy write
    whole numbers."""
    from geosr.conditioning.changes import load_change_classes

    (tmp_path / "t.json").write_text('{"name": "t", "classes": [{"value": 0.0, "name": "same", "changed": false}, '
                                     '{"value": 3.0, "name": "new", "changed": true}]}')
    table = load_change_classes(str(tmp_path / "t.json"))
    assert [(c.value, type(c.value), c.changed) for c in table.classes] == [(0, int, False), (3, int, True)]


def test_evaluate_on_an_empty_folder_names_the_layouts_it_reads(tmp_path):
    """An empty folder is refused with evaluate's list of layouts (a folder of images among them); a folder whose
    image cannot be read, naming it. Nothing is written."""
    for name, files, said in (("empty", (), "not an evaluation data set geosr knows (a data manifest, a Ref-Diff "
                               "folder with HR_512/, A/ B/ label/, or images)"),
                              ("pngs", ("a.png",), "a.png: not an image that can be read")):
        folder = tmp_path / name
        folder.mkdir()
        for f in files:
            (folder / f).write_bytes(b"")
        res = runner.invoke(app, ["evaluate", str(folder), "--no-panels", "--out-dir", str(tmp_path / f"ev_{name}")])
        assert res.exit_code == 2, res.output
        assert said in " ".join(res.output.split()), res.output
        assert not (tmp_path / f"ev_{name}").exists()


def test_a_reference_s_bands_picked_by_colour_are_named_when_they_do_not_match(tmp_path):
    """A 6-band reference whose first three bands GDAL calls red, green, blue gives 3 bands by default: against a
    6-band LR the refusal said "gives 3 bands" without saying which, or why."""
    t = Affine(10, 0, 500000, 0, -10, 5000000)
    rng = np.random.default_rng(0)
    with rasterio.open(tmp_path / "lr.tif", "w", driver="GTiff", width=32, height=32, count=6, dtype="uint8",
                       crs="EPSG:32633", transform=t) as ds:
        ds.write(rng.integers(0, 255, (6, 32, 32), dtype=np.uint8))
    with rasterio.open(tmp_path / "ref.tif", "w", driver="GTiff", width=128, height=128, count=6, dtype="uint8",
                       crs="EPSG:32633", transform=t @ Affine.scale(0.25), photometric="RGB") as ds:
        ds.write(rng.integers(0, 255, (6, 128, 128), dtype=np.uint8))
    out = tmp_path / "o.tif"
    res = CliRunner().invoke(app, ["upscale", str(tmp_path / "lr.tif"), "--ref", str(tmp_path / "ref.tif"), "-x", "4",
                                   "-m", "reference-paste", "-o", str(out)])
    assert res.exit_code == 2 and not out.exists()
    assert "the reference gives 3 bands (its bands 1,2,3, found by name or colour as red, green, blue) but the LR " \
           "gives 6 bands (choose matching bands with --ref-bands / --bands)" in res.output


@pytest.mark.parametrize("role", ["LR", "reference"])
def test_a_crs_that_cannot_be_placed_on_the_earth_is_refused_before_anything_is_written(tmp_path, role):
    """A local engineering CRS: as the LR, the output was written and then its WGS 84 footprint failed (exit 1, a
    page of PROJ JSON; `--resume` failed the same way); as the reference, "internal error: CPLE_NotSupportedError"."""
    import rasterio
    from rasterio.crs import CRS

    local = CRS.from_wkt('ENGCRS["site grid",EDATUM["site"],CS[Cartesian,2],AXIS["easting",east,ORDER[1],'
                         'LENGTHUNIT["metre",1]],AXIS["northing",north,ORDER[2],LENGTHUNIT["metre",1]]]')
    odd = tmp_path / "local.tif"
    with rasterio.open(odd, "w", driver="GTiff", width=32, height=32, count=3, dtype="uint8", crs=local,
                       transform=Affine(0.5, 0, 1000, 0, -0.5, 2000)) as ds:
        ds.write(np.random.default_rng(0).integers(0, 255, (3, 32, 32), dtype=np.uint8))
    lr = tmp_path / "lr.tif"
    with rasterio.open(lr, "w", driver="GTiff", width=32, height=32, count=3, dtype="uint8", crs="EPSG:32633",
                       transform=Affine(10, 0, 500000, 0, -10, 5000000)) as ds:
        ds.write(np.random.default_rng(1).integers(0, 255, (3, 32, 32), dtype=np.uint8))
    args = [str(odd)] if role == "LR" else [str(lr), "--ref", str(odd), "-m", "reference-paste"]
    result = runner.invoke(app, ["upscale", *args, "-x", "2", "-o", str(tmp_path / "out.tif")])
    assert result.exit_code == 2 and "cannot be transformed to longitude/latitude" in result.stderr, result.output
    assert "internal error" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["local.tif", "lr.tif"]
    mars = tmp_path / "mars.tif"  # (geographic, of another body: not "a local engineering CRS")
    with rasterio.open(mars, "w", driver="GTiff", width=32, height=32, count=1, dtype="uint8",
                       crs=CRS.from_user_input("IAU_2015:49900"), transform=Affine(0.01, 0, 10, 0, -0.01, 5)) as ds:
        ds.write(np.ones((1, 32, 32), np.uint8))
    result = runner.invoke(app, ["upscale", str(mars), "-x", "2", "-o", str(tmp_path / "out.tif")])
    assert result.exit_code == 2 and "is of another body than the Earth" in result.stderr, result.output


def test_a_tiff_of_several_pages_is_refused_and_its_pages_are_read(tmp_path):
    """A TIFF of two pages (two images, not overviews) ran on its first page, the second unsaid, where the docs say
    a container is refused naming its rasters (found in review); `geosr info` still describes the first page."""
    profile = dict(driver="GTiff", width=16, height=16, count=3, dtype="uint8", crs="EPSG:32633",
                   transform=Affine(10, 0, 500000, 0, -10, 5000000))
    pages = tmp_path / "pages.tif"
    with rasterio.open(pages, "w", **profile) as ds:
        ds.write(np.full((3, 16, 16), 50, np.uint8))
    with rasterio.open(pages, "w", APPEND_SUBDATASET="YES", **profile) as ds:  # GDAL's way to add a page
        ds.write(np.full((3, 16, 16), 150, np.uint8))
    result = runner.invoke(app, ["upscale", str(pages), "-x", "2", "-m", "bicubic", "-o", str(tmp_path / "o.tif")])
    assert result.exit_code == 2, result.output
    assert f"is a container of 2 rasters (GTIFF_DIR:1:{pages}, GTIFF_DIR:2:{pages})" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pages.tif"]
    assert runner.invoke(app, ["info", str(pages)]).exit_code == 0
    bare = tmp_path / "bare.tif"  # a first page without a CRS: the container is refused first (its fix, not the CRS)
    with rasterio.open(bare, "w", **{**profile, "crs": None}) as ds:
        ds.write(np.full((3, 16, 16), 50, np.uint8))
    with rasterio.open(bare, "w", APPEND_SUBDATASET="YES", **profile) as ds:
        ds.write(np.full((3, 16, 16), 150, np.uint8))
    result = runner.invoke(app, ["upscale", str(bare), "-x", "2", "-m", "bicubic", "-o", str(tmp_path / "o.tif")])
    assert result.exit_code == 2 and "is a container of 2 rasters" in result.stderr, result.output
    bare.unlink()
    result = runner.invoke(app, ["upscale", f"GTIFF_DIR:2:{pages}", "-x", "2", "-m", "bicubic", "-o",
                                 str(tmp_path / "o.tif")])
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "o.tif") as out:
        assert (out.read() == 150).all()


def test_an_rpc_image_and_a_container_of_rasters_are_told_what_to_do(tmp_path):
    """An image with RPCs was told to assign a CRS (which would not place it); a NetCDF of several variables "holds
    no pixels" (info) or "has no coordinate reference system" (upscale), its rasters unnamed."""
    import rasterio
    import rasterio.shutil
    from rasterio.rpc import RPC

    rpc = RPC(height_off=0, height_scale=1, lat_off=45, lat_scale=0.1, line_den_coeff=[1] + [0] * 19,
              line_num_coeff=[0, 0, -1] + [0] * 17, line_off=16, line_scale=16, long_off=15, long_scale=0.1,
              samp_den_coeff=[1] + [0] * 19, samp_num_coeff=[0, 1] + [0] * 18, samp_off=16, samp_scale=16)
    with rasterio.open(tmp_path / "rpc.tif", "w", driver="GTiff", width=32, height=32, count=1, dtype="uint8",
                       rpcs=rpc) as ds:
        ds.write(np.ones((1, 32, 32), np.uint8))
    result = runner.invoke(app, ["upscale", str(tmp_path / "rpc.tif"), "-x", "2", "-o", str(tmp_path / "o.tif")])
    assert result.exit_code == 2 and "orthorectify it first (e.g. gdalwarp -rpc" in result.stderr, result.output
    # info said "NO CRS, pixel 1 x 1": GDAL's stand-in for no geotransform read as a size (found in review)
    result = runner.invoke(app, ["info", str(tmp_path / "rpc.tif")])
    assert result.exit_code == 0 and "pixel 1 x 1" not in result.output, result.output
    assert "rational polynomial coefficients: orthorectify it with gdalwarp -rpc" in result.output
    assert "no geotransform" in result.output
    described = json.loads(runner.invoke(app, ["info", str(tmp_path / "rpc.tif"), "--json"]).output)["files"][0]
    assert described["rpcs"] is True and described["res"] is None and described["bounds"] is None
    if "netCDF" not in rasterio.drivers.raster_driver_extensions().values():
        return
    with rasterio.open(tmp_path / "three.tif", "w", driver="GTiff", width=8, height=8, count=3, dtype="float32",
                       crs="EPSG:32633", transform=Affine(10, 0, 500000, 0, -10, 5000000)) as ds:
        ds.write(np.ones((3, 8, 8), np.float32))
    rasterio.shutil.copy(tmp_path / "three.tif", tmp_path / "c.nc", driver="netCDF")
    for command in (["info"], ["upscale", "-x", "2", "-o", str(tmp_path / "o.tif")]):
        result = runner.invoke(app, [command[0], str(tmp_path / "c.nc"), *command[1:]])
        assert result.exit_code == 2 and "is a container of 3 rasters (netcdf:" in result.stderr.lower(), result.output
        assert "give the one to read by its name as listed" in result.stderr
    # one of them by its name as listed (found by review: "no such file"), as GDAL's tools take it
    with pytest.warns(rasterio.errors.NotGeoreferencedWarning), rasterio.open(tmp_path / "c.nc") as ds:
        name = ds.subdatasets[1]
    result = runner.invoke(app, ["upscale", name, "-x", "2", "-m", "bicubic", "-o", str(tmp_path / "o.tif")])
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "o.tif") as out:
        assert out.shape == (16, 16) and json.loads(out.tags()["GEOSR_INPUTS"]) == {"lr": "netcdf:c.nc:Band2"}
    item = json.loads((tmp_path / "o.stac.json").read_text())
    assert [link["href"] for link in item["links"] if link["rel"] == "derived_from"] == ["c.nc"]
    page = f"GTIFF_DIR:1:{tmp_path / 'o.tif'}"  # a TIFF's first image: the container may not be the output
    result = runner.invoke(app, ["upscale", page, "-x", "2", "-m", "bicubic", "-o", str(tmp_path / "o.tif"),
                                 "--overwrite"])
    assert result.exit_code == 2 and "o.tif: is read by the LR of this run" in result.stderr, result.output
    gone = name.replace("c.nc", "gone.nc")
    result = runner.invoke(app, ["upscale", gone, "-x", "2", "-m", "bicubic", "-o", str(tmp_path / "p.tif")])
    assert result.exit_code == 2 and f"{gone}: no such file (" in result.stderr, result.output


def test_a_subdataset_name_reads_its_container_s_file():
    from geosr.io.paths import subdataset_file

    assert subdataset_file('NETCDF:"/d/a b.nc":tas') == "/d/a b.nc"
    assert subdataset_file("GPKG:scene.gpkg:table") == "scene.gpkg"
    assert subdataset_file('HDF5:"/d/x.h5"://group/var') == "/d/x.h5"
    assert subdataset_file("GTIFF_DIR:2:/d/pages.tif") == "/d/pages.tif"
    assert subdataset_file("SENTINEL2_L2A:/d/MTD_MSIL2A.xml:10m:EPSG_32633") == "/d/MTD_MSIL2A.xml"
    assert subdataset_file("PDF:1:doc.pdf") == "doc.pdf" and subdataset_file("NITF_IM:0:x.ntf") == "x.ntf"
    assert subdataset_file('HDF4_EOS:EOS_GRID:"x.hdf":grid:field') == "x.hdf"
    assert subdataset_file("GPKG:C:\\d\\a.gpkg:t") == "C:\\d\\a.gpkg"
    assert subdataset_file("HDF5:a.h5://g/v") == "a.h5"  # unquoted: a.h5 is no URL's scheme
    from geosr.io.paths import subdataset_container

    # a container on a server or in an archive, its URL's colons (and port) its own
    assert subdataset_container("GPKG:/vsicurl/http://h:8080/a.gpkg:t") == "/vsicurl/http://h:8080/a.gpkg"
    assert subdataset_container("GTIFF_DIR:1:/vsicurl/https://h:81/s.tif") == "/vsicurl/https://h:81/s.tif"
    assert subdataset_container("GPKG:/vsizip/z.zip/g.gpkg:t") == "/vsizip/z.zip/g.gpkg"
    for other in ("scene.tif", "C:/data/scene.tif", "https://h/a.tif", "/vsizip/a.zip/b.tif", "s3://b/k.tif",
                  "scene:v2.tif", "WMS:http://h/", 'NETCDF:"/vsicurl/https://h/a.nc":v'):  # (the last: remote)
        assert subdataset_file(other) is None, other


def test_geosr_alone_prints_its_help_once():
    """`geosr` with no arguments printed its whole help twice (exit 2)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "geosr"], capture_output=True, text=True, timeout=120)
    said = proc.stdout + proc.stderr
    assert proc.returncode == 2 and said.count("Usage:") == 1 and "upscale" in said, said


def test_an_input_ignored_is_not_read_nor_named_a_source(scene):
    """Found in review: with `--ignore-unused`, a map, style image or reference the model does not use was still
    listed as a source of the output (STAC derived_from links, lineage, GEOSR_INPUTS: "from lr, map, style" for
    bicubic pixels), and a map the run ignores, far from the scene, failed it."""
    import json

    import rasterio

    tmp_path, lr = scene
    far = make_raster(tmp_path / "far.tif", np.ones((1, 16, 16), np.uint8),
                      transform=Affine(1.25, 0, 900000, 0, -1.25, 5000000))
    out = tmp_path / "out.tif"
    r = runner.invoke(app, ["upscale", str(lr), "-m", "bicubic", "--map", str(far), "--style", str(lr), "--ref",
                            str(lr), "--ignore-unused", "-x", "2", "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    item = json.loads(out.with_name("out.stac.json").read_text())
    assert [link["href"] for link in item["links"] if link["rel"] == "derived_from"] == ["lr.tif"]
    assert item["properties"]["processing:lineage"].endswith(" from lr"), item["properties"]["processing:lineage"]
    with rasterio.open(out) as ds:
        assert list(json.loads(ds.tags()["GEOSR_INPUTS"])) == ["lr"]


def test_a_map_s_classes_are_checked_against_the_model_s(scene, map_model, tmp_path_factory):
    """Found in review: only the number of a map's classes was compared with the model's, and an untagged map's
    number was its largest value + 1, so a geosr map reprojected by a tool that drops tags (rio warp) was refused as
    "the map table has 6" where its scene held no class above 5, a land-cover raster went in as OSM classes, a map of
    another class table (water as 1) as the model's, and values beyond the tag's classes as background."""
    import json

    import torch

    from geosr.models.checkpoint import load_checkpoint, read_spec, save_checkpoint

    tmp_path, lr = scene
    out = tmp_path / "out.tif"

    def a_map(name: str, values: np.ndarray, classes: list[str] | None = None):
        p = make_raster(tmp_path / name, values.astype(np.uint8)[None], transform=Affine(1.25, 0, 500000, 0, -1.25,
                                                                                           5000000))
        if classes is not None:
            with rasterio.open(p, "r+") as ds:
                ds.update_tags(GEOSR_MAP_CLASSES=json.dumps(classes), OSM_ATTRIBUTION="© OpenStreetMap contributors")
        return p

    def run(m, model=map_model):
        return runner.invoke(app, ["upscale", str(lr), "--map", str(m), "-m", str(model), "-x", "8", "-o", str(out),
                                   "--overwrite", "--json", "--steps", "1"])

    import rasterio

    ones = np.zeros((160, 192))
    ones[40:80, 50:90] = 1
    r = run(a_map("untagged.tif", ones))  # read in the model's classes, and said so
    assert r.exit_code == 0, r.output
    said = json.loads(r.stdout.strip().splitlines()[-1])["warnings"]
    assert any("untagged.tif: names no classes (no GEOSR_MAP_CLASSES tag): its values are read as model map's 2 "
               "map classes" in w for w in said), said
    ones[0, 0] = 5
    r = run(a_map("landcover.tif", ones))
    assert r.exit_code == 2 and "landcover.tif: holds class 5, and model map takes 2 map classes" in r.output
    r = run(a_map("three.tif", ones * 0, ["background", "building", "water"]))
    assert r.exit_code == 2 and "its classes (background, building, water) are not model map's (class0, " \
        "class1)" in " ".join(r.output.split()), r.output
    r = run(a_map("beyond.tif", ones, ["background", "building"]))  # value 5 in a 2-class map
    assert r.exit_code == 2 and "beyond.tif: holds value 5, not one of the 2 classes its GEOSR_MAP_CLASSES tag " \
        "names (0 to 1)" in " ".join(r.output.split()), r.output
    # refused as the map is opened, by a dry run too: it was found only as its window was read, minutes into a run
    ones[0, 0], ones[-1, -1] = 0, 5  # in the last of 12 windows
    r = runner.invoke(app, ["upscale", str(lr), "--map", str(a_map("corner.tif", ones, ["background", "building"])),
                            "-m", str(map_model), "-x", "8", "--steps", "1", "--window", "8", "--overlap", "2",
                            "--dry-run"])
    assert r.exit_code == 2 and "corner.tif: holds value 5, not one of the 2 classes" in " ".join(r.output.split())
    ones[0, 0], ones[-1, -1] = 5, 0
    # beyond the scene a larger map's values are none of the run's: not refused (found in review)
    wide = np.zeros((320, 384))
    wide[300, 370] = 5
    r = runner.invoke(app, ["upscale", str(lr), "--map", str(a_map("wide.tif", wide, ["background", "building"])),
                            "-m", str(map_model), "-x", "8", "--steps", "1", "--dry-run"])
    assert r.exit_code == 0, r.output
    # a model that names its classes: a map of another table is refused; the OSM notice goes on with the pixels
    model, spec = load_checkpoint(map_model)
    named = save_checkpoint(tmp_path_factory.mktemp("named") / "named.safetensors", model,
                            {**spec, "map_classes": {"0": "background", "1": "building"}}, sidecar=False)
    assert read_spec(named)["map_classes"]["1"] == "building"
    ones[0, 0] = 1
    r = run(a_map("water.tif", ones, ["background", "water"]), named)
    assert r.exit_code == 2 and "(background, water) are not model named's (background, building)" in \
        " ".join(r.output.split()), r.output
    r = run(a_map("osm.tif", ones, ["background", "building"]), named)
    assert r.exit_code == 0, r.output
    with rasterio.open(out) as ds:
        assert ds.tags()["OSM_ATTRIBUTION"] == "© OpenStreetMap contributors"
    # its nodata is no class (found in review): an untagged map with a reprojection's fill 255 was refused as
    # "holds class 255"; a nodata value that is a class (1, building) lost that class without a word
    ones[0, 0] = 0
    filled = ones.copy()
    filled[:, :20] = 255
    untagged = a_map("filled.tif", filled)
    with rasterio.open(untagged, "r+") as ds:
        ds.nodata = 255
    r = run(untagged)
    assert r.exit_code == 0, r.output
    hidden = a_map("hidden.tif", ones, ["background", "building"])
    with rasterio.open(hidden, "r+") as ds:
        ds.nodata = 1
    r = run(hidden, named)
    said = json.loads(r.stdout.strip().splitlines()[-1])["warnings"] if r.exit_code == 0 else r.output
    assert any("hidden.tif: its nodata value 1 is the class 'building', so those pixels are read as background "
               "(class 0); unset the map's nodata value" in w for w in said), said
    del torch


def test_info_names_model_settings():
    """`info` words the recorded settings: steps and sampler of a diffusion model, reference detail with a reference
    (off included), a backbone and its experts; a backbone alone samples nothing."""
    from geosr.cli.info import _settings

    diffusion = {"inputs": {"lr": "a.tif", "ref": "b.tif"},
                 "model_settings": {"sampler": {"name": "paper", "steps": 20}, "reference_detail": None,
                                    "lr_consistency": None, "fuse_overlaps": True}}
    assert _settings(diffusion) == ("20 sampling steps (sampler paper); reference detail off; LR-consistency off; "
                                    "overlaps fused")
    lite = {"inputs": {"lr": "a.tif"}, "model_settings": {"steps": 0, "experts": ["soft", "aliasing"],
                                                          "reference_detail": "injection, sigma 8 LR px"}}
    assert _settings(lite) == "experts soft, aliasing"
    # as outputs record them: a setting that is off is absent; a scale run at another (found in review)
    off = {"inputs": {"lr": "a.tif", "ref": "b.tif"}, "model_settings": {"sampler": {"name": "default", "steps": 1}}}
    assert _settings(off) == "1 sampling step (sampler default); reference detail off; LR-consistency off"
    x3 = {"model_settings": {"steps": 0, "rescaled": "run at x4, resampled by antialiased bicubic"}}
    assert _settings(x3) == "run at x4, resampled by antialiased bicubic"
    both = {"model_settings": {"steps": 0, "backbone": {"model": "lite", "experts": ["soft"]}}}
    assert _settings(both) == "0 sampling steps; LR-consistency off; backbone lite; experts soft"
    assert _settings({"model_settings": {"model": "bicubic"}}) == "" and _settings({}) == ""
    # a classical back-end has no reference detail to be off (reference-paste said "reference detail off" beside a
    # provenance of 97% reference; found in review)
    assert _settings({"inputs": {"lr": "a.tif", "ref": "b.tif"}, "model_settings": {"model": "reference-paste"}}) == ""
    lite_ref = {"inputs": {"lr": "a.tif", "ref": "b.tif"}, "model_settings": {"arch": "lr-backbone", "steps": 0}}
    assert _settings(lite_ref) == "reference detail off"


def test_names_that_are_not_utf8_are_read_or_refused_in_one_sentence(tmp_path):
    """Found in review: band names in Latin-1 (an ENVI header's "Grün") and file names that are not UTF-8 (as
    unpacked from an old archive) were internal errors (UnicodeDecodeError / UnicodeEncodeError), exit 1. The
    band names read as Latin-1; such a file name is refused, exit 2, the bytes shown as �, nothing written."""
    import os

    data = (smooth_field(3, 20, 20) * 255).astype(np.uint8)
    data.tofile(tmp_path / "scene.img")
    (tmp_path / "scene.hdr").write_bytes(
        "ENVI\nsamples = 20\nlines = 20\nbands = 3\nheader offset = 0\nfile type = ENVI Standard\ndata type = 1\n"
        "interleave = bsq\nbyte order = 0\nmap info = {UTM, 1, 1, 500000, 5000000, 10, 10, 33, North, WGS-84}\n"
        "band names = {Rot (Kanal \xe4), Gr\xfcn, Blau & co}\n".encode("latin-1"))
    res = runner.invoke(app, ["info", str(tmp_path / "scene.img"), "--json"])
    assert res.exit_code == 0, res.output
    assert [b["description"] for b in json.loads(res.stdout)["files"][0]["bands"]] == ["Rot (Kanal ä)", "Grün",
                                                                                       "Blau & co"]
    res = runner.invoke(app, ["upscale", str(tmp_path / "scene.img"), "-x", "2", "-m", "bicubic", "-q", "-o",
                              str(tmp_path / "o.tif")])
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "o.tif") as ds:
        assert ds.descriptions == ("Rot (Kanal ä)", "Grün", "Blau & co")
    latin = os.fsdecode(b"caf\xe9.tif")
    make_raster(tmp_path / "plain.tif", data)
    os.rename(tmp_path / "plain.tif", os.fsencode(tmp_path) + b"/caf\xe9.tif")  # (rasterio cannot write it)
    for args, said in (([str(tmp_path / latin), "-o", str(tmp_path / "o2.tif")], "caf�.tif: the file's name is not "
                        "valid UTF-8, which GDAL cannot open; rename it in UTF-8"),
                       ([str(tmp_path / "scene.img"), "-o", str(tmp_path / os.fsdecode(b"sr\xe9.tif"))],
                        "sr�.tif: the output's name is not valid UTF-8, which GDAL cannot write; name it in UTF-8")):
        res = runner.invoke(app, ["upscale", *args, "-x", "2", "-m", "bicubic", "--json"])
        assert res.exit_code == 2 and json.loads(res.stdout)["error"].endswith(said), res.output
    res = runner.invoke(app, ["info", str(tmp_path / latin)])
    assert res.exit_code == 2 and "caf�.tif: the file's name is not valid UTF-8" in res.output
    # as a band file of a list, and as an area of interest (a "not a vector file" naming \udce9 there; review)
    os.rename(os.fsencode(tmp_path) + b"/caf\xe9.tif", os.fsencode(tmp_path) + b"/B04_caf\xe9.tif")
    plain = make_raster(tmp_path / "B03.tif", data[:1])
    member = tmp_path / os.fsdecode(b"B04_caf\xe9.tif")
    listed = f"{member},{plain}"
    for args in ([listed], [str(tmp_path / "scene.img"), "--aoi", str(tmp_path / os.fsdecode(b"a\xe9.geojson"))]):
        if "--aoi" in args:
            (tmp_path / "ok.geojson").write_text('{"type": "FeatureCollection", "features": []}')
            os.rename(tmp_path / "ok.geojson", os.fsencode(tmp_path) + b"/a\xe9.geojson")
        res = runner.invoke(app, ["upscale", *args, "-x", "2", "-m", "bicubic", "-o", str(tmp_path / "o3.tif"),
                                  "--json"])
        assert res.exit_code == 2 and "name is not valid UTF-8, which GDAL cannot open; rename it in UTF-8" in \
            json.loads(res.stdout)["error"], res.output
    assert not (tmp_path / "o2.tif").exists() and not (tmp_path / "o3.tif").exists()


def test_output_paths_are_named_as_typed_and_a_path_too_long_is_refused_before_the_run(tmp_path, monkeypatch):
    """Found in review: `-o file:///tmp/o.tif` was shown as file://tmp/o.tif, `/vsimem/o.tif` called a URL, and
    `-o x.tif/` beside a file x.tif advised x.tif/out.tif, which cannot be made; an output path of 4,046 bytes ran a
    row, then failed naming an internal file, its work folder left behind (every later run failed the same)."""
    import os

    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 16, 16) * 255).astype(np.uint8))
    deep = tmp_path
    while len(os.fsencode(deep)) < 3800:
        deep = deep / ("d" * 200)
    deep = deep / ("e" * (4000 - len(os.fsencode(deep)) - 1))  # o.tif: 4,006 bytes, its work folder's 4,017
    deep.mkdir(parents=True)
    from pathlib import Path

    from geosr.errors import OutputLocationError
    from geosr.io.outputs import check_output_path

    with pytest.raises(OutputLocationError, match="^file:///tmp/o.tif: is a URL"):  # (a Path drops a slash)
        check_output_path(Path("file:///tmp/o.tif"), overwrite=False)
    for out, said in (("file:///tmp/o.tif", "file:///tmp/o.tif: is a URL; outputs are written to local paths"),
                      ("/vsimem/o.tif", "/vsimem/o.tif: is a GDAL virtual path; outputs are written to local paths"),
                      ("GPKG:x.gpkg:t", "GPKG:x.gpkg:t: is a GDAL subdataset name; geosr writes Cloud-Optimized "
                                        "GeoTIFFs: give the output a .tif path"),
                      (f"{lr}/", f"{lr}/: a trailing slash names a folder, and {lr} is a file; give the output "
                                 "file's path"),
                      (str(deep / "o.tif"), f"o.tif: the output's path is too long ({len(os.fsencode(deep)) + 6} "
                                            "bytes): files geosr writes in its work folder take up to 100 more")):
        res = runner.invoke(app, ["upscale", str(lr), "-x", "2", "-m", "bicubic", "-o", out, "--json"])
        assert res.exit_code == 2 and said in json.loads(res.stdout)["error"], res.output
    assert os.listdir(deep) == []
    # a short relative name in that deep working folder is no long path: the run passes it as given (review)
    monkeypatch.chdir(deep)
    res = runner.invoke(app, ["upscale", str(lr), "-x", "2", "-m", "bicubic", "-o", "o.tif"])
    assert res.exit_code == 0 and (deep / "o.tif").is_file(), res.output


def test_an_untagged_map_below_0_is_refused_and_a_coarse_map_is_warned_of(scene, map_model):
    """Found in review: a map naming no classes with -1 (an undeclared nodata) over half of it was read as class 0
    without a word (a tagged one was refused), and a map on the LR's own grid given to an x8 run was read by
    nearest, each of its pixels an 8 x 8 block of the model's map input, without a word."""
    tmp_path, lr = scene
    out = tmp_path / "out.tif"
    values = np.zeros((160, 192), np.int16)
    values[:80] = -1
    neg = make_raster(tmp_path / "neg.tif", values[None], transform=Affine(1.25, 0, 500000, 0, -1.25, 5000000))
    r = runner.invoke(app, ["upscale", str(lr), "--map", str(neg), "-m", str(map_model), "-x", "8", "-o", str(out),
                            "--steps", "1", "--dry-run", "--json"])
    assert r.exit_code == 2 and json.loads(r.stdout)["error"].endswith(
        "neg.tif: holds value -1, and a map's classes are 0 and up; mend the map, or declare it its nodata value")
    coarse = make_raster(tmp_path / "coarse.tif", np.zeros((1, 20, 24), np.uint8))  # the LR's 10 m grid
    r = runner.invoke(app, ["upscale", str(lr), "--map", str(coarse), "-m", str(map_model), "-x", "8", "-o",
                            str(out), "--steps", "1", "--dry-run", "--json"])
    assert r.exit_code == 0, r.output
    said = json.loads(r.stdout.strip().splitlines()[-1])["warnings"]
    assert any(w.endswith("coarse.tif: its pixels are 8.0 times the output's a side, so the model reads its classes "
                          "in blocks; rasterize it on the output's grid (geosr rasterize-osm --like LR -x 8)")
               for w in said), said
    fine = make_raster(tmp_path / "fine.tif", np.zeros((1, 160, 192), np.uint8),
                       transform=Affine(1.25, 0, 500000, 0, -1.25, 5000000))
    r = runner.invoke(app, ["upscale", str(lr), "--map", str(fine), "-m", str(map_model), "-x", "8", "-o",
                            str(out), "--steps", "1", "--dry-run", "--json"])
    assert r.exit_code == 0 and not any("times the output" in w for w in json.loads(
        r.stdout.strip().splitlines()[-1])["warnings"] or []), r.output


def test_an_untagged_map_s_negative_value_a_sample_missed_is_refused_where_it_is_read(tmp_path, monkeypatch):
    """Found in review: a map too large to scan whole (sampled) naming no classes, its -1 in a block the sample
    skipped, was read there as background without a word; a tagged map's was refused. Both are, as read."""
    from rasterio.windows import Window

    import geosr.pipeline.scene as sc
    from geosr.errors import ClassTableError
    from geosr.io.rasters import inspect_raster
    from geosr.tiling.windows import PlannedWindow

    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 256, 256) * 255).astype(np.uint8),
                     transform=Affine(4, 0, 500000, 0, -4, 5000000))
    m = np.random.default_rng(1).integers(0, 4, (1024, 1024)).astype(np.int16)
    m[16:32, 16:32] = -1
    path = make_raster(tmp_path / "map.tif", m[None], transform=Affine(1, 0, 500000, 0, -1, 5000000), tiled=True,
                       blockxsize=16, blockysize=16)
    monkeypatch.setattr(sc, "FULL_READ_LIMIT", 100)  # (a map over 8192^2 px: a sample of its blocks)
    with rasterio.open(path) as ds:
        assert Window(16, 16, 16, 16) not in sc.block_sample(ds, Window(0, 0, 1024, 1024))
    info = inspect_raster(lr)
    with sc.Scene.open(str(lr), scale=4, hr=info.grid.refined(4), area=Window(0, 0, 256, 256), map=str(path)) as scene:
        assert scene.map_sampled
        with pytest.raises(ClassTableError, match=r"map.tif: holds value -1, and a map's classes are 0 and up"):
            scene.read_stack(PlannedWindow(index=0, row=0, col=0, col_off=0, row_off=0, width=256, height=256), 0)


def test_an_alpha_band_beside_a_nodata_value_reads_without_rasterio_s_warning(tmp_path):
    """Found in review: an RGBA raster that also declares nodata (as GDAL's GPKG driver shows one) printed rasterio's
    NodataShadowWarning twice, with Python source lines, on stderr (under --json too); its alpha still masks."""
    import warnings

    from rasterio.enums import ColorInterp
    from rasterio.errors import NodataShadowWarning

    from geosr import upscale

    rgb = (smooth_field(3, 32, 32) * 200 + 20).astype(np.uint8)
    alpha = np.full((1, 32, 32), 255, np.uint8)
    alpha[:, :, :16] = 0
    lr = make_raster(tmp_path / "rgba.tif", np.concatenate([rgb, alpha]), nodata=0)
    with rasterio.open(lr, "r+") as ds:
        ds.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        result = upscale(lr, output=tmp_path / "o.tif", scale=2, model="bicubic")
    assert not [w for w in said if issubclass(w.category, NodataShadowWarning)], [str(w.message) for w in said]
    assert abs(result.nodata_share - 0.5) < 0.01


def test_a_crs_without_a_short_name_is_labelled_in_summaries_and_archive_names_are_refused(tmp_path):
    """Found in review: a compound or custom CRS was printed as its whole WKT in the one-line summaries (960
    characters); `-o n.tif.gz` or `n.zip` wrote a plain TIFF under an archive's name."""
    from rasterio.crs import CRS

    from geosr.cli.common import crs_label

    compound = CRS.from_user_input("EPSG:32633+5773").to_wkt()
    assert crs_label(compound) == "WGS 84 / UTM zone 33N + EGM96 height (EPSG:32633+5773)"
    assert crs_label("+proj=tmerc +lat_0=0 +lon_0=15.5 +k=0.9996 +x_0=500000 +y_0=0 +ellps=WGS84 +units=m +no_defs") \
        == "a custom Transverse Mercator (no EPSG code; its WKT in --json)"
    assert crs_label("EPSG:32633") == "EPSG:32633"
    assert crs_label("+proj=utm +zone=33 +ellps=bessel +towgs84=577.326,90.129,463.919,5.137,1.474,5.297,2.4232 "
                     "+units=m +no_defs").startswith("a custom Transverse Mercator")  # (not its datum shift)
    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 16, 16) * 255).astype(np.uint8), crs=compound)
    res = runner.invoke(app, ["upscale", str(lr), "-x", "2", "-m", "bicubic", "-o", str(tmp_path / "o.tif")])
    line = next(x for x in res.output.splitlines() if x.startswith("wrote"))
    assert "(EPSG:32633+5773)" in line and len(line) < 300, line
    for name in ("n.tif.gz", "n.zip"):
        res = runner.invoke(app, ["upscale", str(lr), "-x", "2", "-m", "bicubic", "-o", str(tmp_path / name)])
        assert res.exit_code == 2 and "geosr writes Cloud-Optimized GeoTIFFs; give the output a .tif name" in \
            res.output and not (tmp_path / name).exists(), res.output
