"""Never lose, mix or half-write data: the output path, the job lock, resume fingerprints, resources, kills,
clear errors (issue 16; one test per defect found, each failing on the code before the fix)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import make_raster, smooth_field
from geosr.cli.app import app
from geosr.config import OutputConfig, TilingConfig
from geosr.errors import OptionError, OutputExistsError, OutputLocationError, ResumeError
from geosr.io.lock import LOCK_NAME, JobLock, OutputBusyError
from geosr.io.vrt import GDAL_TYPES
from geosr.pipeline.upscale import upscale as _upscale

runner = CliRunner()
upscale = partial(_upscale, model="bicubic")
CLI = [sys.executable, "-m", "geosr.cli.app"]


@pytest.fixture
def scene(tmp_path):
    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 20, 24, seed=1) * 255).astype(np.uint8))
    ref = make_raster(tmp_path / "ref.tif", (smooth_field(3, 80, 96, seed=2) * 255).astype(np.uint8),
                      transform=rasterio.Affine(2.5, 0, 500000, 0, -2.5, 5000000))
    cd = make_raster(tmp_path / "cd.tif", np.zeros((1, 20, 24), np.uint8))
    return tmp_path, lr, ref, cd


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


# ---- 1. the output may not be an input -------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["output", "stac"])
def test_a_file_that_appears_at_the_output_while_the_run_works_is_not_replaced(scene, which):
    """Found black-box: the output's name was checked when the run was planned only; a file written there meanwhile
    (or at its STAC item's name) was replaced by the COG without --overwrite. Now the run stops before its rename,
    the file as it was, and `resume` with `overwrite` goes on from its work."""
    from geosr import upscale
    from geosr.errors import OutputExistsError

    tmp, lr, _, _ = scene
    out = tmp / "o.tif"
    theirs = out if which == "output" else tmp / "o.stac.json"

    def meanwhile(done: int, total: int) -> None:
        if 0 < done < total:  # once some windows are done
            theirs.write_text("someone else's")

    with pytest.raises(OutputExistsError, match="appeared while this run worked and is left as it is"):
        upscale(lr, output=out, scale=2, model="bicubic", window=8, overlap=2, progress=meanwhile)
    assert theirs.read_text() == "someone else's" and (tmp / "o.tif.geosr-work").is_dir()
    # `resume` alone replaced it, every row being done (found in review): the file is not this run's output
    with pytest.raises(OutputExistsError, match="already exists"):
        upscale(lr, output=out, scale=2, model="bicubic", window=8, overlap=2, resume=True)
    assert theirs.read_text() == "someone else's"
    upscale(lr, output=out, scale=2, model="bicubic", window=8, overlap=2, resume=True, overwrite=True)
    with rasterio.open(out) as ds:
        assert ds.width == 48


@pytest.mark.parametrize("suffix", [".aux.xml", ".ovr", ".msk"])
def test_a_file_that_appears_at_the_provenance_raster_s_gdal_sidecar_while_the_run_works_is_kept(scene, suffix):
    """The provenance raster's own metadata file, overviews or mask written while the run worked were deleted or
    replaced as the run put its provenance raster in place, without `overwrite`, where the output's were answered
    "appeared while this run worked" (found in review): answered so too, the file as it was."""
    from geosr import upscale

    tmp, lr, ref, cd = scene
    out = tmp / "o.tif"
    theirs = tmp / f"o.provenance.tif{suffix}"

    def meanwhile(done: int, total: int) -> None:
        if 0 < done < total:
            theirs.write_text("someone else's")

    with pytest.raises(OutputExistsError) as err:
        upscale(lr, output=out, scale=4, ref=ref, cd=cd, model="reference-paste", window=8, overlap=2,
                progress=meanwhile)
    assert str(err.value).startswith(f"{theirs}: appeared while this run worked and is left as it is")
    assert theirs.read_text() == "someone else's" and not out.exists() and not (tmp / "o.provenance.tif").exists()
    upscale(lr, output=out, scale=4, ref=ref, cd=cd, model="reference-paste", window=8, overlap=2, resume=True,
            overwrite=True)  # goes on from its work, replacing it
    assert (tmp / "o.provenance.tif").is_file()
    assert not theirs.exists() or theirs.read_text() != "someone else's"  # (its class names: geosr's own .aux.xml)


@pytest.mark.parametrize("name, what", [("o.stac.json", "STAC item"), ("o.provenance.tif", "provenance raster"),
                                        ("o.tif.ovr", "external overviews"), ("LINK:o.stac.json", "STAC item"),
                                        ("LINK:o.provenance.tif", "provenance raster")])
def test_a_folder_at_a_sidecar_s_name_is_said_to_be_in_its_way(scene, name, what):
    """A folder at the output's STAC item's or provenance raster's name was answered as if it were the output given
    as a folder: "o.stac.json: is a folder; give the path of the output file (e.g. o.stac.json/out.tif)", advice
    that does not work (found in review). It is said to be where that file goes, to be moved away, as a folder at
    the output's GDAL files' names is; nothing written, the folder kept. So is a symbolic link to a folder there
    (`o.stac.json -> elsewhere/`: it still got that advice; found in review)."""
    tmp, lr, ref, cd = scene
    link = name.startswith("LINK:")
    name = name.removeprefix("LINK:")
    folder = tmp / ("elsewhere" if link else name)
    folder.mkdir()
    (folder / "keep").write_text("mine")
    if link:
        (tmp / name).symlink_to("elsewhere", target_is_directory=True)
    before = _files(tmp)
    res = _invoke("upscale", lr, "--ref", ref, "--cd", cd, "-x", "4", "-m", "reference-paste", "-o", tmp / "o.tif",
                  "--overwrite")
    said = " ".join(res.output.split())
    where = (f"where the output's {what} goes" if what != "external overviews" else
             f"where GDAL looks for the {what} of {tmp / 'o.tif'}")
    kind = "a link to a folder" if link else "a folder"
    assert res.exit_code == 2 and f"{tmp / name}: is {kind}, {where}; move it away first" in said, said
    assert "give the path of the output file" not in said and _files(tmp) == before
    assert (tmp / name).is_symlink() is link and (folder / "keep").read_text() == "mine"


@pytest.mark.parametrize("which", ["lr", "ref"])
def test_an_input_inside_the_output_s_work_folder_is_refused(scene, which):
    """Found black-box: `geosr upscale w.tif.geosr-work/lr.tif -o w.tif` ran (exit 0) and removed its own LR with
    the work folder it clears; the reference there went the same way."""
    tmp, lr, ref, _ = scene
    work = tmp / "w.tif.geosr-work"
    work.mkdir()
    inside = work / f"{which}.tif"
    inside.write_bytes(Path(lr if which == "lr" else ref).read_bytes())
    before = inside.read_bytes()
    args = ([inside] if which == "lr" else [lr, "--ref", inside, "--cd", "none"])
    res = _invoke("upscale", *args, "-x", "2", "-m", "bicubic" if which == "lr" else "reference-paste",
                  "-o", tmp / "w.tif")
    said = " ".join(res.output.split())
    assert res.exit_code == 2 and f"lies in {work}, the output's work folder, which geosr clears" in said, said
    assert inside.read_bytes() == before and not (tmp / "w.tif").exists()


@pytest.mark.parametrize("which", ["lr", "ref", "cd", "symlink-to-lr", "hardlink-to-lr", "dotted-lr"])
def test_output_that_is_an_input_is_refused_even_with_overwrite(scene, which):
    tmp, lr, ref, cd = scene
    before = {p: p.read_bytes() for p in (lr, ref, cd)}
    out = {"lr": lr, "ref": ref, "cd": cd, "dotted-lr": tmp / "." / "sub" / ".." / "lr.tif"}.get(which)
    if which == "symlink-to-lr":
        out = tmp / "link.tif"
        out.symlink_to(lr)
    if which == "hardlink-to-lr":
        out = tmp / "hard.tif"
        os.link(lr, out)
    (tmp / "sub").mkdir(exist_ok=True)
    r = _invoke("upscale", lr, "--ref", ref, "--cd", cd, "-x", "4", "--model", "reference-paste", "-o", out,
                "--overwrite")
    assert r.exit_code == 2, r.output
    assert "of this run" in r.output and "--overwrite" not in r.output
    assert {p: p.read_bytes() for p in (lr, ref, cd)} == before
    without = _invoke("upscale", lr, "--ref", ref, "--cd", cd, "-x", "4", "-o", out)  # never suggests --overwrite
    assert without.exit_code == 2 and "--overwrite" not in without.output


@pytest.mark.parametrize("via", ["vrt-lr", "vrt-ref", "zip-lr", "zip-detect-changes", "vrt-of-vrt"])
def test_a_file_read_behind_an_input_is_refused_as_output(scene, via):
    """A VRT's source file and the archive behind a /vsizip/ path were replaced with --overwrite: the input gone."""
    import zipfile

    tmp, lr, ref, cd = scene
    vrt = tmp / "lr.vrt"
    rasterio.shutil.copy(str(lr), str(vrt), driver="VRT")
    with zipfile.ZipFile(tmp / "lr.zip", "w") as z:
        z.write(lr, "inner.tif")
    zipped = f"/vsizip/{tmp / 'lr.zip'}/inner.tif"
    ref_vrt = tmp / "ref.vrt"
    rasterio.shutil.copy(str(ref), str(ref_vrt), driver="VRT")
    outer = tmp / "outer.vrt"  # a VRT of a VRT: GDAL lists one level, the file behind was written over (review)
    with rasterio.open(vrt) as ds:
        bands = "".join(f'<VRTRasterBand dataType="{GDAL_TYPES[ds.dtypes[b - 1]]}" band="{b}"><SimpleSource>'
                        f'<SourceFilename relativeToVRT="1">lr.vrt</SourceFilename><SourceBand>{b}</SourceBand>'
                        "</SimpleSource></VRTRasterBand>" for b in range(1, ds.count + 1))
        outer.write_text(f'<VRTDataset rasterXSize="{ds.width}" rasterYSize="{ds.height}"><SRS>{ds.crs.to_wkt()}'
                         f'</SRS><GeoTransform>{",".join(map(str, ds.transform.to_gdal()))}</GeoTransform>{bands}'
                         "</VRTDataset>")
    argv, target = {
        "vrt-lr": (["upscale", vrt, "-x", "2", "-m", "bicubic"], lr),
        "vrt-of-vrt": (["upscale", outer, "-x", "2", "-m", "bicubic"], lr),
        "vrt-ref": (["upscale", lr, "--ref", ref_vrt, "--cd", "none", "-x", "4", "-m", "reference-paste"], ref),
        "zip-lr": (["upscale", zipped, "-x", "2", "-m", "bicubic"], tmp / "lr.zip"),
        "zip-detect-changes": (["detect-changes", zipped, "--ref", ref], tmp / "lr.zip"),
    }[via]
    before = target.read_bytes()
    r = _invoke(*argv, "-o", target, "--overwrite")
    assert r.exit_code == 2 and "is read by the" in r.output, r.output
    assert target.read_bytes() == before
    if via == "vrt-of-vrt":  # and --resume, batch's skip follow its change (they compare these files)
        from geosr.io.sources import gdal_files

        assert [Path(f).name for f in gdal_files(str(outer))] == ["lr.vrt", "lr.tif"]


def test_rasterize_osm_refuses_its_like_raster_as_output(scene):
    tmp, lr, _, _ = scene
    before = lr.read_bytes()
    geojson = tmp / "f.geojson"
    geojson.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    r = _invoke("rasterize-osm", "--like", lr, "--osm-file", geojson, "-o", lr, "--overwrite")
    assert r.exit_code == 2 and "of this run" in r.output
    assert lr.read_bytes() == before


_ROLES = st.sampled_from(["lr", "ref", "cd", "link-lr", "link-ref", "new", "other"])


@settings(max_examples=12, deadline=None)
@given(role=_ROLES, overwrite=st.booleans(), with_ref=st.booleans(), with_cd=st.booleans())
def test_inputs_are_never_modified_whatever_the_output_path(role, overwrite, with_ref, with_cd):
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        lr = make_raster(tmp / "lr.tif", (smooth_field(3, 12, 12, seed=1) * 255).astype(np.uint8))
        ref = make_raster(tmp / "ref.tif", (smooth_field(3, 24, 24, seed=2) * 255).astype(np.uint8),
                          transform=rasterio.Affine(5, 0, 500000, 0, -5, 5000000))
        cd = make_raster(tmp / "cd.tif", np.zeros((1, 12, 12), np.uint8))
        other = tmp / "other.tif"
        other.write_bytes(b"not geosr's")
        (tmp / "link-lr.tif").symlink_to(lr)
        (tmp / "link-ref.tif").symlink_to(ref)
        out = {"lr": lr, "ref": ref, "cd": cd, "other": other}.get(role, tmp / f"{role}.tif")
        inputs = [lr] + ([ref] if with_ref else []) + ([cd] if with_cd else [])
        before = {p: p.read_bytes() for p in inputs}
        try:
            upscale(lr, output=out, scale=2, ref=ref if with_ref else None, cd=cd if with_cd else None,
                    output_config=OutputConfig(overwrite=overwrite), ignore_unused=True)
        except OutputLocationError:
            assert Path(os.path.realpath(out)) in inputs
        except FileExistsError:
            assert not overwrite
        else:
            assert Path(os.path.realpath(out)) not in inputs
        assert {p: p.read_bytes() for p in inputs} == before


# ---- 2. nothing but a regular file is replaced -----------------------------------------------------------------
def test_a_fifo_or_device_is_never_replaced(scene):
    tmp, lr, _, _ = scene
    fifo = tmp / "pipe.tif"
    os.mkfifo(fifo)
    r = _invoke("upscale", lr, "-x", "4", "--model", "bicubic", "-o", fifo, "--overwrite")
    assert r.exit_code == 2 and "not a regular file (a FIFO)" in r.output
    assert fifo.is_fifo()
    r = _invoke("upscale", lr, "-x", "4", "--model", "bicubic", "-o", "/dev/null", "--overwrite")
    assert r.exit_code == 2 and "character device" in r.output
    assert Path("/dev/null").is_char_device()


def test_an_lr_that_is_a_fifo_is_refused_at_once(scene):
    tmp, lr, _, _ = scene
    fifo = tmp / "lr_pipe.tif"
    os.mkfifo(fifo)
    proc = subprocess.run([*CLI, "upscale", str(fifo), "-x", "4", "-o", str(tmp / "o.tif")], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "is not a regular file" in proc.stderr
    # a reference or change mask too, as the inputs' identity is taken (its content's digest waited forever on a
    # FIFO and read /dev/zero without end; found in review)
    for args in (["--ref", str(fifo)], ["--ref", "/dev/zero"], ["--ref", str(lr), "--cd", str(fifo)]):
        proc = subprocess.run([*CLI, "upscale", str(lr), *args, "-m", "reference-paste", "-x", "2", "-o",
                               str(tmp / "o.tif"), "--dry-run"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and "is not a regular file" in proc.stderr, (args, proc.stderr)


# ---- 3. resume never mixes two models --------------------------------------------------------------------------
def _tiny_checkpoint(path: Path, seed: int) -> Path:
    import torch

    from geosr.models.checkpoint import make_spec, save_checkpoint
    from geosr.models.edm import build_denoiser

    torch.manual_seed(seed)
    model = build_denoiser("tiny", n_map_classes=0, style=False).eval()
    spec = make_spec(model, name="unit-test", scales=[4], band_names=["B4", "B3", "B2"],
                     change_classes={"0": "unchanged", "1": "changed"}, normalization={"kind": "robust-stretch"},
                     training={"data": "none", "steps": 0}, metrics={})
    return save_checkpoint(path, model, spec, sidecar=False)


class _Stop(Exception):
    pass


def _interrupt_after(n: int):
    def progress(done: int, total: int) -> None:
        if done >= n:
            raise _Stop()

    return progress


def test_resume_refuses_a_model_file_changed_in_place(tmp_path):
    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 24, 24, seed=3) * 255).astype(np.uint8))
    model = _tiny_checkpoint(tmp_path / "m.safetensors", seed=0)
    out = tmp_path / "out.tif"
    opts = dict(scale=4, model=str(model), tiling=TilingConfig(window=8, overlap=2))
    with pytest.raises(_Stop):
        _upscale(lr, output=out, progress=_interrupt_after(9), **opts)  # two of four window rows done
    _tiny_checkpoint(model, seed=1)  # other weights under the same path and name
    with pytest.raises(ResumeError, match="other inputs or options"):
        _upscale(lr, output=out, resume=True, **opts)
    _tiny_checkpoint(model, seed=0)  # the same weights again: the job resumes
    result = _upscale(lr, output=out, resume=True, **opts)
    assert result.resumed_rows > 0 and out.exists()
    with rasterio.open(out) as ds:
        assert json.loads(ds.tags()["GEOSR_MODEL_SETTINGS"])["checksum"].startswith("sha256:")


def test_resume_takes_an_aoi_file_by_what_it_is_not_how_its_path_is_written(tmp_path, monkeypatch):
    """A run with `--aoi area.geojson` stopped, then resumed with `--aoi ./area.geojson` or its absolute path, was
    refused ("--aoi area.geojson -> ./area.geojson"; "--aoi changed"), and from another folder it could not be
    resumed at all (found in review). The file is compared by its identity; another file is still refused."""
    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 24, 24, seed=3) * 255).astype(np.uint8))
    with rasterio.open(lr) as ds:
        w, s, e, n = ds.bounds
    area = tmp_path / "area.geojson"
    area.write_text(json.dumps({"type": "FeatureCollection", "crs": {"type": "name", "properties": {
        "name": "EPSG:32633"}}, "features": [{"type": "Feature", "properties": {}, "geometry": {
            "type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n - 40], [w, n - 40], [w, s]]]}}]}))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out.tif"
    opts = dict(scale=4, model="bicubic", tiling=TilingConfig(window=8, overlap=2))
    with pytest.raises(_Stop):
        _upscale(lr, output=out, aoi="area.geojson", progress=_interrupt_after(9), **opts)
    other = tmp_path / "other.geojson"
    other.write_text(area.read_text().replace(str(n - 40), str(n - 80)))
    with pytest.raises(ResumeError):
        _upscale(lr, output=out, aoi=str(other), resume=True, **opts)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    result = _upscale(lr, output=out, aoi="../area.geojson", resume=True, **opts)
    assert result.resumed_rows > 0 and out.exists()


def test_a_copy_of_an_output_s_stac_item_as_the_aoi_does_not_block_that_output(tmp_path, monkeypatch):
    """The area of interest is a vector file: GDAL's raster view of a STAC item (its assets) is not what the run
    reads, and "out.tif: is read by the area of interest of this run (area.json)" refused replacing the output whose
    item gave the area (found in review)."""
    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 24, 24, seed=3) * 255).astype(np.uint8))
    monkeypatch.chdir(tmp_path)  # (the item's asset is named relative to it: "out.tif")
    out = Path("out.tif")
    assert _invoke("upscale", lr, "-x", "2", "-m", "bicubic", "-o", out).exit_code == 0
    area = Path("area.json")
    area.write_text((tmp_path / "out.stac.json").read_text())
    before = out.read_bytes()
    r = _invoke("upscale", lr, "-x", "2", "-m", "lanczos", "-o", out, "--aoi", area, "--overwrite")
    assert r.exit_code == 0 and out.read_bytes() != before, r.output


def test_resume_refuses_a_shapefile_aoi_whose_projection_file_changed(tmp_path):
    """Only the .shp of a shapefile AOI was in the job's fingerprint: given another .prj (the same numbers 100 m
    east), `resume` went on, and a batch said the old area's output was up to date (found in review)."""
    import geopandas as gpd
    from shapely.geometry import box

    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 24, 24, seed=3) * 255).astype(np.uint8))
    with rasterio.open(lr) as ds:
        w, s, e, n = ds.bounds
        crs = ds.crs
    area = tmp_path / "area.shp"
    gpd.GeoDataFrame(geometry=[box(w, s, e, n - 40)], crs=crs).to_file(area)
    out = tmp_path / "out.tif"
    opts = dict(scale=4, model="bicubic", tiling=TilingConfig(window=8, overlap=2), aoi=str(area))
    with pytest.raises(_Stop):
        _upscale(lr, output=out, progress=_interrupt_after(9), **opts)
    prj = tmp_path / "area.prj"
    moved = prj.read_text().replace('"False_Easting",500000', '"False_Easting",499900')
    assert moved != prj.read_text()
    prj.write_text(moved)
    with pytest.raises(ResumeError, match=r"area\.prj changed"):
        _upscale(lr, output=out, resume=True, **opts)


def test_a_kill_while_a_finished_run_removes_its_work_folder_leaves_a_finished_output(tmp_path, monkeypatch):
    """Killed while its work folder was removed (the output and its sidecars in place), a run left half a work
    folder: a plain run said the run "did not finish" (use --resume), --resume that it replaces the output (give
    --overwrite), both that a row was missing (run without --resume): a loop (found in review). The folder is set
    aside first: the output is a finished one, and its next run removes what is left."""
    import shutil

    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 24, 24, seed=3) * 255).astype(np.uint8))
    out = tmp_path / "out.tif"
    opts = dict(scale=4, model="bicubic", tiling=TilingConfig(window=8, overlap=2))
    removing = shutil.rmtree

    def killed_half_way(path, ignore_errors=False):
        files = sorted(p for p in Path(path).rglob("*") if p.is_file())
        for p in files[: len(files) // 2]:
            p.unlink()
        raise _Stop()

    monkeypatch.setattr(shutil, "rmtree", killed_half_way)
    with pytest.raises(_Stop):
        _upscale(lr, output=out, **opts)
    monkeypatch.setattr(shutil, "rmtree", removing)
    left = [p.name for p in tmp_path.glob(".out.tif.geosr-work.*.removing")]
    assert out.is_file() and not (tmp_path / "out.tif.geosr-work").exists() and len(left) == 1, left
    with pytest.raises(OutputExistsError, match=r"out\.tif: already exists \(use `overwrite`"):
        _upscale(lr, output=out, **opts)
    with pytest.raises(OutputExistsError, match="no unfinished run of it is left to resume"):
        _upscale(lr, output=out, resume=True, **opts)
    _upscale(lr, output=out, output_config=OutputConfig(overwrite=True), **opts)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr.tif", "out.stac.json", "out.tif"]


# ---- 4. one writer per output ----------------------------------------------------------------------------------
_HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from geosr.io.lock import JobLock
    lock = JobLock(Path(sys.argv[1]), output=Path(sys.argv[2])).acquire()
    (Path(sys.argv[1]).parent / "theirs.txt").write_text("in use")
    print("locked", flush=True)
    time.sleep(120)
""")


def test_a_live_writer_is_not_disturbed_and_a_dead_one_is_taken_over(scene):
    tmp, lr, _, _ = scene
    out = tmp / "out.tif"
    work = out.with_name(out.name + ".geosr-work")
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(work / LOCK_NAME), str(out)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for extra in ([], ["--resume"], ["--overwrite"]):
            r = _invoke("upscale", lr, "-x", "4", "--model", "bicubic", "-o", out, *extra)
            assert r.exit_code == 2, r.output
            assert f"being written by another geosr run (process {holder.pid} on" in r.output
        assert (work / "theirs.txt").read_text() == "in use" and not out.exists()
        with pytest.raises(OutputBusyError):
            JobLock(work / LOCK_NAME, output=out).acquire()
    finally:
        holder.kill()
        holder.wait()
    r = _invoke("upscale", lr, "-x", "4", "--model", "bicubic", "-o", out)  # the lock of a dead process is stale
    assert r.exit_code == 0, r.output
    assert out.exists() and not work.exists()


@pytest.mark.slow
def test_two_processes_on_one_output_the_second_is_refused_the_first_unharmed(tmp_path):
    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 320, 320, seed=4) * 60000).astype(np.uint16), nodata=0)
    out = tmp_path / "out.tif"
    args = ["-x", "2", "--window", "6", "--overlap", "2", "--model", "lanczos", "-q"]
    first = subprocess.Popen([*CLI, "upscale", str(lr), "-o", str(out), *args], stderr=subprocess.PIPE, text=True)
    journal = out.with_name(out.name + ".geosr-work") / "rows_00000_00080" / "journal.jsonl"
    while first.poll() is None and not (journal.exists() and journal.read_text().count("\n") >= 1):
        time.sleep(0.01)
    second = subprocess.run([*CLI, "upscale", str(lr), "-o", str(out), *args, "--overwrite"], capture_output=True,
                            text=True, timeout=300)
    assert first.poll() is None, "the first run ended before the second started: make the scene larger"
    assert second.returncode == 2, second.stderr
    assert f"is being written by another geosr run (process {first.pid}" in second.stderr
    assert first.wait(timeout=600) == 0, first.stderr.read()
    alone = tmp_path / "alone.tif"
    assert subprocess.run([*CLI, "upscale", str(lr), "-o", str(alone), *args]).returncode == 0
    assert out.read_bytes() == alone.read_bytes()
    assert _files(tmp_path) == {"lr.tif", "out.tif", "alone.tif", "out.stac.json", "alone.stac.json"}


# ---- 5. resources ----------------------------------------------------------------------------------------------
def _huge_sparse(path: Path, side: int) -> Path:
    profile = dict(driver="GTiff", width=side, height=side, count=3, dtype="uint8", crs="EPSG:32633",
                   transform=rasterio.Affine(10, 0, 500000, 0, -10, 5000000), tiled=True, blockxsize=512,
                   blockysize=512, compress="DEFLATE", sparse_ok=True)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(np.full((3, 512, 512), 100, np.uint8), window=rasterio.windows.Window(0, 0, 512, 512))
    return path


def test_a_plan_larger_than_the_machine_is_refused_with_the_numbers(tmp_path, monkeypatch):
    import psutil

    big = _huge_sparse(tmp_path / "big.tif", 50000)
    out = tmp_path / "out.tif"
    memory = psutil.virtual_memory()
    monkeypatch.setattr(psutil, "virtual_memory", lambda: memory._replace(available=8 * 2**30))  # a laptop's
    r = _invoke("upscale", big, "-x", "16", "--model", "bicubic", "-o", out)
    assert r.exit_code == 2, r.output
    assert re.search(r"needs about 1\d\.\d GB more memory but 8\.0 GB is available", r.output), r.output
    assert "--force-resources" in r.output
    assert _files(tmp_path) == {"big.tif"}
    r = _invoke("upscale", big, "-x", "16", "--model", "bicubic", "--dry-run", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)["resources"]
    assert res["fits"] is False and res["memory_mb"] - res["resident_mb"] > res["memory_available_mb"]
    assert res["disk_mb"] > 1.5e6  # 800,000^2 px x 3 bands: 1.8 TB uncompressed


def test_an_output_larger_than_the_free_disk_is_refused(scene, monkeypatch):
    import shutil

    tmp, lr, _, _ = scene
    usage = shutil.disk_usage(tmp)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=1000))
    r = _invoke("upscale", lr, "-x", "16", "--model", "bicubic", "-o", tmp / "out.tif")
    assert r.exit_code == 2 and "its folder has 1 KB free" in r.output, r.output
    assert not (tmp / "out.tif").exists()
    r = _invoke("upscale", lr, "-x", "16", "--model", "bicubic", "-o", tmp / "out.tif", "--force-resources")
    assert r.exit_code == 0, r.output


# ---- 6. kills and SIGTERM leave nothing but the output and the journal ------------------------------------------
_COG_THEN = textwrap.dedent("""
    import os, signal, sys
    import rasterio.shutil
    import geosr.io.writer as writer
    real, sig = rasterio.shutil.copy, getattr(signal, sys.argv[1])
    def copy_then_signal(src, dst, **kw):
        real(src, dst, **kw)
        open(str(dst) + ".ovr.tmp", "wb").write(b"GDAL's overview scratch")
        os.kill(os.getpid(), sig)
    writer.rasterio.shutil.copy = copy_then_signal
    from geosr.cli.app import main
    sys.argv = ["geosr", *sys.argv[2:]]
    main()
""")


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_a_kill_during_the_cog_step_leaves_only_the_journal_and_a_rerun_cleans_up(tmp_path, sig):
    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 32, 32, seed=6) * 255).astype(np.uint8))
    args = ["upscale", str(lr), "-x", "4", "--window", "8", "--overlap", "2", "--model", "lanczos", "-q"]
    clean = tmp_path / "clean.tif"
    assert subprocess.run([*CLI, *args, "-o", str(clean)]).returncode == 0
    out = tmp_path / "out.tif"
    (tmp_path / ".out.tif.deadbeef.partial.tif").write_bytes(b"left by an older geosr")
    proc = subprocess.run([sys.executable, "-c", _COG_THEN, sig, *args, "-o", str(out)], capture_output=True,
                          text=True, timeout=300)
    work = "out.tif.geosr-work"
    if sig == "SIGKILL":
        assert proc.returncode == -signal.SIGKILL
        left = _files(tmp_path) - {"lr.tif", "clean.tif", "clean.stac.json", ".out.tif.deadbeef.partial.tif"}
        assert all(f.startswith(work) for f in left) and any(".partial" in f for f in left)
    else:
        assert proc.returncode == 143 and "terminated" in proc.stderr
        left = _files(tmp_path) - {"lr.tif", "clean.tif", "clean.stac.json", ".out.tif.deadbeef.partial.tif"}
        assert all(f.startswith(work) for f in left), left
        assert not any(".partial" in f or "ovr.tmp" in f or "stitched" in f for f in left), left
        assert f"{work}/rows_00000_00005/journal.jsonl" in left  # kept for --resume
    assert not out.exists()
    assert subprocess.run([*CLI, *args, "-o", str(out), "--resume"]).returncode == 0
    assert out.read_bytes() == clean.read_bytes()
    assert _files(tmp_path) == {"lr.tif", "clean.tif", "out.tif", "clean.stac.json", "out.stac.json"}


def test_rasterize_osm_clears_what_a_killed_run_left(tmp_path):
    lr = make_raster(tmp_path / "lr.tif", np.zeros((3, 16, 16), np.uint8))
    geojson = tmp_path / "f.geojson"
    geojson.write_text(json.dumps({"type": "FeatureCollection", "features": [], "crs": {
        "type": "name", "properties": {"name": "EPSG:32633"}}}))
    work = tmp_path / "map.tif.geosr-work"
    work.mkdir()
    for i in range(5):
        (work / f"rows_{i:08d}.tif").write_bytes(b"partial rows")
    (tmp_path / ".map.tif.0badf00d.partial.tif").write_bytes(b"partial COG")
    r = _invoke("rasterize-osm", "--like", lr, "-x", "2", "--osm-file", geojson, "--allow-empty", "-o",
                tmp_path / "map.tif")
    assert r.exit_code == 0, r.output
    assert _files(tmp_path) == {"lr.tif", "f.geojson", "map.tif", "map.tif.aux.xml"}  # + its class names


# ---- 8. foreseeable failures are named, not "internal error" ---------------------------------------------------
def test_disk_full_names_the_output_and_keeps_nothing_at_its_path(scene, monkeypatch):
    import geosr.pipeline.upscale as pipeline

    tmp, lr, _, _ = scene

    def full(path, *a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(pipeline, "write_chunk", full)
    out = tmp / "out.tif"
    r = _invoke("upscale", lr, "-x", "4", "--model", "bicubic", "-o", out)
    assert r.exit_code == 1, r.output
    assert "out.tif: cannot be written: no space left on device" in r.output and "internal error" not in r.output
    assert not out.exists()


def test_gdal_reporting_a_full_disk_is_named_too(scene, monkeypatch):
    from rasterio.errors import RasterioIOError

    import geosr.io.writer as writer

    tmp, lr, _, _ = scene

    def full(*a, **k):
        raise RasterioIOError("Free disk space available is 10 bytes, whereas 100000 are at least necessary.")

    monkeypatch.setattr(writer, "to_cog", full)
    r = _invoke("upscale", lr, "-x", "4", "--model", "bicubic", "-o", tmp / "out.tif")
    assert r.exit_code == 1 and "not enough free disk space" in r.output, r.output


def _gdal_fills_the_disk(monkeypatch):
    """GDAL as on a full disk: libtiff prints why on stderr, the write raises only "Write failed" (found by review
    on a small tmpfs), and the folder has no space left."""
    import shutil
    from collections import namedtuple

    from rasterio.errors import RasterioIOError

    import geosr.io.writer as writer

    real = writer.rasterio.open

    class Filling:
        def __init__(self, ds):
            self.ds = ds

        def __getattr__(self, name):
            return getattr(self.ds, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.ds.__exit__(*exc)

        def write(self, *a, **k):
            fail()

    def fail(*a, **k):
        try:
            raise RuntimeError("TIFFAppendToStrip:Write error at scanline 256")
        except RuntimeError as cause:
            raise RasterioIOError("Write failed. See previous exception for details.") from cause

    def opening(path, mode="r", *a, **k):
        ds = real(path, mode, *a, **k)
        on_disk = not str(path).startswith("/vsimem/") and k.get("driver") != "MEM"
        return Filling(ds) if mode == "w" and on_disk else ds

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(writer.rasterio, "open", opening)
    monkeypatch.setattr(writer.rasterio.shutil, "copy", fail)  # the COG, copied from the stitched stage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(1 << 30, 1 << 30, 0))


def _writing_command(scene, command: str) -> tuple[Path, list]:
    """The output and the command line of a small run of ``command`` (upscale, detect-changes, rasterize-osm)."""
    tmp, lr, ref, _ = scene
    geojson = tmp / "f.geojson"
    geojson.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    out = tmp / "out.tif"
    return out, {"upscale": ["upscale", lr, "-x", "4", "--model", "bicubic", "-o", out, "--force-resources"],
                 "detect-changes": ["detect-changes", lr, "--ref", ref, "-o", out, "--no-coregister"],
                 "rasterize-osm": ["rasterize-osm", "--like", lr, "-x", "2", "--osm-file", geojson, "--allow-empty",
                                   "-o", out]}[command]


@pytest.mark.parametrize("command", ["upscale", "detect-changes", "rasterize-osm"])
def test_gdal_s_bare_write_failure_on_a_full_disk_is_named_too(scene, monkeypatch, command):
    """Found by review: detect-changes on a full disk exited 2 with "a finished part of the job cannot be read ...
    run again without --resume", rasterize-osm and upscale with "internal error: ... Write failed"."""
    tmp = scene[0]
    out, argv = _writing_command(scene, command)
    _gdal_fills_the_disk(monkeypatch)
    r = _invoke(*argv)
    assert r.exit_code == 1, r.output
    assert "out.tif: cannot be written: no space left on device" in r.output and "internal error" not in r.output
    kept = ["out.tif.geosr-work"] if command == "upscale" else []  # (its journal, kept for --resume)
    assert not out.exists() and [p.name for p in tmp.iterdir() if p.name.startswith((".out", "out."))] == kept


@pytest.mark.parametrize("error", ["cog-driver", "unknown"])
def test_the_cog_copy_s_own_error_on_a_full_disk_is_named_too(scene, monkeypatch, error):
    """On a 30 MB disk the COG driver's copy gave up with CPLE_AppDefinedError "TIFFRewriteDirectory:Error
    fetching directory count" (libtiff's "No space left on device" on stderr only) and 4.6 MB left free; onto a full
    tmpfs rasterio raised a bare SystemError "Unknown GDAL Error": "internal error", exit 1 (found in reviews). It is
    the full disk it is, the journal kept for --resume."""
    import shutil
    from collections import namedtuple

    from rasterio._err import CPLE_AppDefinedError

    import geosr.io.writer as writer

    def fail(*a, **k):
        if error == "unknown":
            raise SystemError("Unknown GDAL Error. To debug: https://rasterio.readthedocs.io/en/latest/topics/"
                              "errors.html")
        raise CPLE_AppDefinedError(1, 4, "TIFFRewriteDirectory:Error fetching directory count")

    tmp, lr, _, _ = scene
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(writer.rasterio.shutil, "copy", fail)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(30 << 20, 26 << 20, 4_628_480))
    r = _invoke("upscale", lr, "-x", "4", "--model", "bicubic", "-o", tmp / "out.tif", "--force-resources")
    assert r.exit_code == 1 and "out.tif: cannot be written: no space left on device; the journal is kept" in r.output
    assert not (tmp / "out.tif").exists() and (tmp / "out.tif.geosr-work").is_dir()


def test_an_output_folder_removed_meanwhile_is_one_sentence(scene, monkeypatch):
    """The output's folder removed mid-run was "internal error: RasterioIOError: Attempt to create new tiff file
    '.../o.tif.geosr-work/rows_.../.chunk_00000...partial.tif' failed" (found in review)."""
    import shutil

    import geosr.pipeline.upscale as module

    tmp, lr, _, _ = scene
    sub = tmp / "sub"
    sub.mkdir()
    written = module.write_chunk

    def then_removed(*a, **k):
        shutil.rmtree(sub, ignore_errors=True)
        return written(*a, **k)

    monkeypatch.setattr(module, "write_chunk", then_removed)
    r = _invoke("upscale", lr, "-x", "4", "--model", "bicubic", "-o", sub / "o.tif")
    assert r.exit_code == 1 and f"o.tif: cannot be written: its folder {sub} was removed while the run worked" in \
        " ".join(r.output.split()), r.output


def test_a_lock_whose_holder_has_not_written_its_name_is_not_said_to_be_a_batch_job(tmp_path):
    """A lock file still empty (its holder between flock and writing its name) was "a geosr batch job" (review)."""
    from geosr.io.lock import JobLock, OutputBusyError

    lock = tmp_path / "x.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(OutputBusyError, match=r"another geosr run \(one that has not said which\)"):
            JobLock(lock, output=tmp_path / "x.tif").acquire()
    finally:
        os.close(fd)


def test_the_sample_on_a_full_disk_is_one_sentence(tmp_path, monkeypatch):
    import shutil

    def full(src, dst, *a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))

    monkeypatch.setattr(shutil, "copyfile", full)
    r = _invoke("sample", tmp_path / "s")
    assert r.exit_code == 1 and "cannot be written: no space left on device" in r.output, r.output
    assert "internal error" not in r.output and not [p for p in (tmp_path / "s").iterdir()]


def test_an_output_folder_that_is_a_file_is_refused(scene):
    tmp, lr, _, _ = scene
    (tmp / "notes.txt").write_text("a file")
    r = _invoke("upscale", lr, "-x", "4", "--model", "bicubic", "-o", tmp / "notes.txt" / "out.tif")
    assert r.exit_code == 2 and "notes.txt is a file, not a folder" in r.output, r.output


def test_an_output_over_a_file_of_a_shapefile_input_is_refused(scene):
    """`--aoi area.shp -o area.shx --overwrite` wrote the COG over the shapefile's index (and `-o area.dbf` over its
    attributes): the input destroyed, only the .shp itself was protected (found in review). So for rasterize-osm's
    `--osm-file`."""
    import geopandas as gpd
    from shapely.geometry import box

    tmp, lr, _, _ = scene
    with rasterio.open(lr) as ds:
        gpd.GeoDataFrame({"building": ["yes"]}, geometry=[box(*ds.bounds)], crs=ds.crs).to_file(tmp / "area.shp")
    kept = {p.name: p.read_bytes() for p in tmp.glob("area.*")}
    assert {".shx", ".dbf", ".prj"} <= {Path(n).suffix for n in kept}
    for part in ("area.shx", "area.dbf", "area.prj"):
        r = _invoke("upscale", lr, "-x", "2", "--model", "bicubic", "--aoi", tmp / "area.shp", "-o", tmp / part,
                    "--overwrite")
        assert r.exit_code == 2 and f"is the area of interest's file {part} of this run" in r.output, r.output
        r = _invoke("rasterize-osm", "--like", lr, "--osm-file", tmp / "area.shp", "-o", tmp / part, "--overwrite")
        assert r.exit_code == 2 and f"is the OSM file's file {part} of this run" in r.output, r.output
    assert {p.name: p.read_bytes() for p in tmp.glob("area.*")} == kept


def test_an_output_that_names_a_folder_is_refused_not_written_as_a_file(scene, monkeypatch):
    """`-o .` or `-o /` was an internal error (a path of an empty name; exit 1); `-o results/` (a folder not made
    yet) wrote a GeoTIFF named "results"; the API's `output=""` raised a raw ValueError (found in review)."""
    import geosr

    tmp, lr, ref, _ = scene
    monkeypatch.chdir(tmp)
    osm = tmp / "o.geojson"
    osm.write_text('{"type": "FeatureCollection", "features": []}')
    for out in (".", "/", "./", "results/"):
        for command in (["upscale", lr, "-x", "2", "--model", "bicubic"], ["detect-changes", lr, "--ref", ref],
                        ["rasterize-osm", "--like", lr, "--osm-file", osm, "--allow-empty"],
                        ["batch", "l?.tif", "-x", "2", "--model", "bicubic", "--dry-run"]):
            r = _invoke(*command, "-o", out)
            said = " ".join(r.output.split())
            assert r.exit_code == 2 and "a folder; give the path of the output file" in said, (command, said)
    assert not (tmp / "results").exists()
    for out in ("", "results/"):
        with pytest.raises(OutputLocationError, match="a folder; give the path of the output file"):
            geosr.upscale(str(lr), scale=2, model="bicubic", output=out)
    assert not (tmp / "results").exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs a /proc file system")
@pytest.mark.parametrize("command", ["upscale", "detect-changes"])
def test_an_output_folder_on_a_kernel_file_system_is_bad_input(scene, command):
    """Found black-box: `detect-changes -o /proc/out.tif` was an internal error (exit 1, a FileNotFoundError of its
    work folder), upscale blamed the free space ("its folder has 0 MB free"): root passes the access checks there."""
    tmp, lr, ref, _ = scene
    extra = ["--ref", ref] if command == "detect-changes" else ["-x", "2", "--model", "bicubic"]
    r = _invoke(command, lr, *extra, "-o", "/proc/geosr-out.tif")
    assert r.exit_code == 2, r.output
    assert "the output folder /proc is on the kernel's proc file system" in r.output, r.output


def test_a_lock_that_cannot_be_made_is_bad_input_naming_the_output(tmp_path, monkeypatch):
    """Past the checks (a read-only share seen as writable, a quota), the lock's folder or file failing to be made
    was an internal error with the work folder's path; it names the output now."""
    out = tmp_path / "o.tif"

    def refuse(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(OutputLocationError, match=r"o.tif: cannot write beside it in .* \(Permission denied\)"):
        JobLock(tmp_path / "o.tif.geosr-work" / LOCK_NAME, output=out).acquire()


@pytest.mark.parametrize("damage", ["chunk-missing", "chunk-corrupt", "carry-corrupt", "journal-garbage",
                                    "job-json-garbage"])
def test_a_damaged_work_folder_on_resume_is_named_with_the_way_out(tmp_path, damage):
    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 40, 24, seed=7) * 255).astype(np.uint8))
    out = tmp_path / "out.tif"
    args = ["upscale", lr, "-x", "4", "--window", "6", "--overlap", "2", "--model", "bicubic", "-o", out, "-q"]
    with pytest.raises(_Stop):
        upscale(lr, output=out, scale=4, tiling=TilingConfig(window=6, overlap=2), progress=_interrupt_after(12))
    rows = next(out.with_name(out.name + ".geosr-work").glob("rows_*/"))
    chunks = sorted(rows.glob("chunk_*.tif"))
    assert chunks
    if damage == "chunk-missing":
        chunks[0].unlink()
    elif damage == "chunk-corrupt":
        chunks[0].write_bytes(chunks[0].read_bytes()[:300])
    elif damage == "carry-corrupt":
        next(rows.glob("carry_*.npz")).write_bytes(b"PK\x03\x04 not a zip")
    elif damage == "journal-garbage":
        (rows / "journal.jsonl").write_text('{"row": 0, "hr_row": 0, "chunk": null}\n[1, 2, 3]\n{"row": 2}\n')
    else:
        (rows / "job.json").write_text("{not json")
    r = _invoke(*args, "--resume")
    assert r.exit_code == 2, r.output
    assert "run again without --resume" in r.output and "internal error" not in r.output
    assert not out.exists()
    assert _invoke(*args).exit_code == 0  # and starting over works


# ---- 9. user text is never markup -------------------------------------------------------------------------------
def test_messages_are_printed_verbatim_not_as_markup(scene):
    tmp, lr, _, _ = scene
    r = _invoke("upscale", tmp / "[red]x.tif", "-o", tmp / "o.tif")
    assert r.exit_code == 2 and "[red]x.tif: no such file" in r.output
    r = _invoke("upscale", lr, "--bands", "[r, g, b]", "-o", tmp / "o.tif")
    assert r.exit_code == 2 and "[r" in r.output, r.output
    named = make_raster(tmp / "[bold]scene.tif", (smooth_field(3, 8, 8) * 255).astype(np.uint8))
    r = _invoke("upscale", named, "-x", "2", "--model", "bicubic", "-o", tmp / "[bold]out.tif")
    assert r.exit_code == 0 and "[bold]out.tif" in r.output, r.output


# ---- 11. options are checked at every door ---------------------------------------------------------------------
def test_an_unknown_compression_is_refused_by_the_cli_and_python(scene):
    tmp, lr, _, _ = scene
    r = _invoke("upscale", lr, "-x", "4", "--model", "bicubic", "--compress", "BOGUS", "-o", tmp / "o.tif")
    assert r.exit_code == 2 and "--compress 'BOGUS': not one of DEFLATE, LZW, ZSTD, NONE" in r.output
    assert not (tmp / "o.tif").exists()
    with pytest.raises(OptionError) as info:
        OutputConfig(compress="BOGUS")
    assert info.value.param == "compress"  # the API names its keyword as the CLI its flag (found black-box)
    with pytest.raises(OptionError):
        TilingConfig(window=4, overlap=4)
    assert OutputConfig(compress="zstd").compress == "ZSTD"


@pytest.mark.parametrize("args, message", [
    (["--compress", "LZW", "--compress-level", "3"], "--compress-level 3: a compression level applies to DEFLATE "
                                                     "(1-9) and ZSTD (1-22), not to LZW"),
    (["--compress-level", "10"], "--compress-level 10: DEFLATE's compression level is at most 9"),
    (["--compress", "ZSTD", "--compress-level", "0"], "--compress-level must be a whole number of at least 1, not 0"),
    (["--steps", "-1"], "--steps must be a whole number of at least 0, not -1"),  # the flag, not `steps`
    (["--batch-size", "0"], "--batch-size must be a whole number of at least 1, not 0"),
])
def test_an_option_value_out_of_range_is_refused_by_its_flag(scene, args, message):
    tmp, lr, _, _ = scene
    r = _invoke("upscale", lr, "-x", "4", "--model", "bicubic", *args, "-o", tmp / "o.tif")
    assert r.exit_code == 2 and message in r.output, r.output
    assert not (tmp / "o.tif").exists()


# ---- found in review -------------------------------------------------------------------------------------------
def test_resume_with_overwrite_continues_the_same_job(tmp_path):
    """--overwrite does not change the bytes, so it is no part of the job's fingerprint."""
    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 40, 24, seed=8) * 255).astype(np.uint8))
    out = tmp_path / "out.tif"
    tiling = TilingConfig(window=6, overlap=2)
    with pytest.raises(_Stop):
        upscale(lr, output=out, scale=4, tiling=tiling, progress=_interrupt_after(12))
    result = upscale(lr, output=out, scale=4, tiling=tiling, resume=True, output_config=OutputConfig(overwrite=True))
    assert result.resumed_rows > 0


@pytest.mark.parametrize("tear", ["midway", "before its newline"])
def test_a_torn_journal_line_survives_two_resumes(tmp_path, tear):
    """A kill in the middle of a journal entry's write, or just before its newline: the entry is not taken as done
    (one whole but for its newline was, and the next entry, appended to its line, made the journal unreadable at
    the second resume: its work lost; found by mutation testing)."""
    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 64, 24, seed=9) * 255).astype(np.uint8))
    out, clean = tmp_path / "out.tif", tmp_path / "clean.tif"
    tiling = TilingConfig(window=6, overlap=2)
    upscale(lr, output=clean, scale=4, tiling=tiling)
    with pytest.raises(_Stop):
        upscale(lr, output=out, scale=4, tiling=tiling, progress=_interrupt_after(12))
    journal = next(out.with_name(out.name + ".geosr-work").glob("rows_*/journal.jsonl"))
    if tear == "midway":
        with open(journal, "a") as fh:
            fh.write('{"row": 9, "hr_r')  # a kill in the middle of a write
    else:
        kept = journal.read_bytes()
        assert kept.endswith(b"}\n")
        journal.write_bytes(kept[:-1])
    with pytest.raises(_Stop):
        upscale(lr, output=out, scale=4, tiling=tiling, resume=True, progress=_interrupt_after(30))
    assert upscale(lr, output=out, scale=4, tiling=tiling, resume=True).resumed_rows > 0
    assert out.read_bytes() == clean.read_bytes()


def test_a_lock_whose_holder_note_cannot_be_written_is_released(tmp_path, monkeypatch):
    def full(self):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(JobLock, "_write_holder", full)
    with pytest.raises(OSError, match="o.tif: cannot be written: no space left on device"):
        JobLock(tmp_path / "work" / LOCK_NAME, output=tmp_path / "o.tif").acquire()
    assert not (tmp_path / "work").exists()  # the lock file and the folder it made, gone
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "journal").write_text("{}")
    with pytest.raises(OSError):
        JobLock(tmp_path / "kept" / LOCK_NAME, output=tmp_path / "o.tif").acquire()
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["journal"]  # a folder it found, left as it was
    monkeypatch.undo()
    JobLock(tmp_path / "work" / LOCK_NAME, output=tmp_path / "o.tif").acquire().release()  # not held by anyone
    # a shared holder (a split batch job's other worker) that took the lock meanwhile keeps it: its file stays, and
    # no third run takes it as free (the file was removed under it; found in review)
    lock, other = tmp_path / "split" / LOCK_NAME, []
    writer = JobLock._write_holder

    def quota(self):
        if other:
            return writer(self)
        other.append(JobLock(lock, output=tmp_path / "o.tif", shared=True))
        other[0].acquire()
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    monkeypatch.setattr(JobLock, "_write_holder", quota)
    with pytest.raises(OSError, match="o.tif: cannot be written: disk quota exceeded"):
        JobLock(lock, output=tmp_path / "o.tif", shared=True).acquire()
    assert lock.exists() and other[0].held
    with pytest.raises(OutputBusyError):
        JobLock(lock, output=tmp_path / "o.tif").acquire()
    other[0].release()


@pytest.mark.parametrize("command", ["upscale", "detect-changes", "rasterize-osm"])
def test_a_disk_full_before_the_lock_s_note_is_named_and_leaves_nothing(scene, monkeypatch, command):
    """Found by review: on a full disk the lock's note (who holds it) failed first: "internal error: OSError: [Errno
    28] No space left on device", exit 1, naming no file, and an `out.tif.geosr-work/lock` left behind."""
    tmp = scene[0]
    out, argv = _writing_command(scene, command)
    before = sorted(p.name for p in tmp.iterdir())

    def full(fd, data, offset):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("geosr.io.lock.os.pwrite", full)
    r = _invoke(*argv)
    assert r.exit_code == 1, r.output
    assert "out.tif: cannot be written: no space left on device" in r.output and "internal error" not in r.output
    assert sorted(p.name for p in tmp.iterdir()) == before


def test_cleaning_one_output_leaves_another_outputs_temporaries(tmp_path):
    from geosr.io.outputs import remove_partials

    mine = tmp_path / ".a.tif.0123abcd.partial.tif"
    other = tmp_path / ".a.tif.b.tif.89abcdef.partial.json"  # the temporary record of output a.tif.b.tif
    for p in (mine, other):
        p.write_text("x")
    assert remove_partials(tmp_path / "a.tif") == [mine]
    assert other.exists()


def test_options_given_beside_an_options_object_change_only_themselves():
    from geosr.config import DeviceConfig, SamplerConfig
    from geosr.options import UpscaleOptions

    base = UpscaleOptions(sampler=SamplerConfig(seed=7, steps=5), device=DeviceConfig(batch_size=16))
    got = base.updated({"sampler": "paper", "device": "cpu", "window": 6})
    assert (got.sampler.preset, got.sampler.seed, got.sampler.steps) == ("paper", 7, 5)
    assert (got.device.device, got.device.batch_size, got.tiling.window) == ("cpu", 16, 6)


def test_batch_skips_a_finished_job_with_sampler_options(tmp_path):
    """The fingerprint the plan computes (to skip finished jobs) is the one the worker recorded: a job that sets
    sampler options and whose output and record are in place is skipped, not refused."""
    from geosr.pipeline.batch import plan_batch
    from geosr.pipeline.batch.records import write_record
    from geosr.pipeline.batch.tasks import _open_job

    make_raster(tmp_path / "s.tif", (smooth_field(3, 16, 16, seed=4) * 255).astype(np.uint8))
    (tmp_path / "jobs.yaml").write_text("jobs:\n  - {lr: s.tif, out: s_x8.tif, x: 8, steps: 2, seed: 3}\n")
    planned = plan_batch(tmp_path / "jobs.yaml").jobs[0]
    assert planned.action == "run"
    with _open_job(planned.spec, "cpu") as job:  # what the worker records beside the output it wrote
        fingerprint = job.fingerprint
    (tmp_path / "s_x8.tif").write_bytes(b"the worker's output")
    write_record(tmp_path / "s_x8.tif", fingerprint, job_id=planned.spec.id, run_id="r1")
    again = plan_batch(tmp_path / "jobs.yaml").jobs[0]
    assert again.action == "skip", again.reason


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_once_the_output_is_in_place_waits_for_the_job_to_complete(scene, monkeypatch, sig):
    """A Ctrl-C (or SIGTERM) that arrives after the output is renamed into place, while its sidecars are written:
    the job completes (STAC item written, work folder removed) and then the signal acts, instead of leaving a
    finished output beside a work folder that --resume refuses. One that arrives before the rename stops the run
    there; a second one acts at once."""
    import geosr.pipeline.upscale as up

    folder, lr, ref, _ = scene
    out = folder / "out.tif"
    real_stac = up._write_stac

    def interrupted_stac(job):
        assert out.exists()  # the output is in place
        os.kill(os.getpid(), sig)
        time.sleep(0.05)  # a signal that was not held would have been raised by now
        real_stac(job)

    class Stopped(Exception):
        pass

    def stop(*_):
        raise Stopped()

    monkeypatch.setattr(up, "_write_stac", interrupted_stac)
    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(Stopped) as stopped:  # the signal acts, once the job is complete
            upscale(lr, output=out, scale=4)
        assert getattr(stopped.value, "geosr_completed", False)  # and says so (the CLI: nothing to resume)
        assert all(signal.getsignal(s) is stop for s in previous)  # handlers restored
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    assert out.exists() and (folder / "out.stac.json").exists()
    assert not (folder / "out.tif.geosr-work").exists()

    def twice_stac(job):
        os.kill(os.getpid(), sig)
        time.sleep(0.05)
        os.kill(os.getpid(), sig)  # asked twice: at once
        time.sleep(0.05)
        raise AssertionError("not reached")

    monkeypatch.setattr(up, "_write_stac", twice_stac)
    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(Stopped):
            upscale(lr, output=folder / "three.tif", scale=4)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)

    real_assemble = up.assemble

    def interrupted_assembly(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        return real_assemble(*args, **kwargs)

    monkeypatch.setattr(up, "_write_stac", real_stac)
    monkeypatch.setattr(up, "assemble", interrupted_assembly)
    with pytest.raises(KeyboardInterrupt):
        upscale(lr, output=folder / "two.tif", scale=4)
    assert not (folder / "two.tif").exists()


def test_sample_never_writes_through_a_link_nor_over_another_file(tmp_path):
    """`geosr sample`: copies already there are kept (running it again is harmless); another file or a link at one
    of its names is refused (exit 2, nothing written) unless --overwrite, which replaces the link, not its target."""
    precious = tmp_path / "precious.txt"
    precious.write_text("mine")
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "taizhou_2003_truth30m.tif").symlink_to(precious)
    res = _invoke("sample", folder)
    assert res.exit_code == 2 and "already exists" in res.output
    assert precious.read_text() == "mine" and sorted(p.name for p in folder.iterdir()) == ["taizhou_2003_truth30m.tif"]
    assert _invoke("sample", folder, "--overwrite").exit_code == 0
    assert precious.read_text() == "mine" and not (folder / "taizhou_2003_truth30m.tif").is_symlink()
    assert len(list(folder.iterdir())) == 4
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert _invoke("sample", folder).exit_code == 0  # the same copies: nothing to do
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    quiet = _invoke("sample", folder, "-q")  # the shared -q was "No such option" here
    assert quiet.exit_code == 0 and quiet.output == "", quiet.output
    (folder / "taizhou_2003_lr240m.tif").write_bytes(b"edited")
    assert _invoke("sample", folder).exit_code == 2
    assert (folder / "taizhou_2003_lr240m.tif").read_bytes() == b"edited"
    res = _invoke("sample", precious)
    assert res.exit_code == 2 and "is a file" in res.output
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")  # found by review: FileExistsError, exit 1
    res = _invoke("sample", tmp_path / "dangling")
    assert res.exit_code == 2 and "which does not exist; give a folder" in " ".join(res.output.split()), res.output
    assert not (tmp_path / "nowhere").exists()


def test_the_cli_says_a_job_interrupted_once_its_output_was_in_place_is_complete(scene, monkeypatch):
    """It said "run again with --resume to continue", which a retry then had refused ("already exists")."""
    import geosr.pipeline.upscale as up

    folder, lr, _, _ = scene
    real_stac = up._write_stac

    def interrupted_stac(job):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        real_stac(job)

    monkeypatch.setattr(up, "_write_stac", interrupted_stac)
    r = _invoke("upscale", lr, "-x", "2", "-m", "bicubic", "-o", folder / "o.tif")
    assert r.exit_code == 143 and "the job is complete" in r.output and "--resume" not in r.output, r.output
    assert (folder / "o.tif").exists() and (folder / "o.stac.json").exists()


def test_resume_finishes_its_own_output_whatever_the_options_spelling(scene, monkeypatch):
    """The check that the file at OUT is the run's own compared the options as given (GEOSR_OPTIONS): `cd` auto
    given at the resume, implied before (one job), or a path written otherwise, was refused as "not this run's
    output" (found in review). What geosr computes (model settings, scale, bands, stretch) tells it."""
    import geosr.pipeline.upscale as up
    from geosr.io.stac import stac_path

    tmp, lr, ref, _ = scene
    out = tmp / "own.tif"

    def killed(job):
        raise _Stop()

    monkeypatch.setattr(up, "_write_stac", killed)
    with pytest.raises(_Stop):
        upscale(lr, output=out, scale=2, ref=ref, model="reference-paste")
    monkeypatch.undo()
    result = upscale(lr, output=out, scale=2, ref=ref, model="reference-paste", cd="auto", resume=True)
    assert result.resumed_rows == result.window_rows and stac_path(out).exists()


def test_resume_finishes_a_job_stopped_after_its_output_was_in_place(tmp_path, monkeypatch):
    """Killed between the output's rename and its STAC item: --resume (without --overwrite) completes the job from
    its finished journal; another job's --resume is still refused and leaves the output as it was."""
    import geosr.pipeline.upscale as up
    from geosr.errors import OutputExistsError
    from geosr.io.stac import stac_path

    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 40, 24, seed=8) * 255).astype(np.uint8))
    out, clean = tmp_path / "out.tif", tmp_path / "clean.tif"
    tiling = TilingConfig(window=6, overlap=2)
    upscale(lr, output=clean, scale=4, tiling=tiling)
    real = up._write_stac

    def killed(job):
        raise _Stop()

    monkeypatch.setattr(up, "_write_stac", killed)
    with pytest.raises(_Stop):
        upscale(lr, output=out, scale=4, tiling=tiling)
    monkeypatch.setattr(up, "_write_stac", real)
    assert out.exists() and not stac_path(out).exists() and out.with_name(out.name + ".geosr-work").is_dir()
    before = out.read_bytes()
    with pytest.raises(OutputExistsError):  # not this job: another model
        upscale(lr, output=out, scale=4, tiling=tiling, model="lanczos", resume=True)
    # nor a plain run, which says how to finish it (it advised `overwrite` alone: a rerun of the whole; review)
    with pytest.raises(OutputExistsError, match=r"out.tif: already exists, beside the work folder of a run that did "
                                                r"not finish \(out.tif.geosr-work\); use `resume` to finish it"):
        upscale(lr, output=out, scale=4, tiling=tiling)
    assert out.read_bytes() == before
    # its dry run says what the run does (it refused, advising `overwrite`: a rerun of the whole; found in review)
    dry = upscale(lr, output=out, scale=4, tiling=tiling, resume=True, dry_run=True)
    assert dry.resumed_rows == dry.window_rows
    with pytest.raises(OutputExistsError, match="is of other inputs or options than these"):
        upscale(lr, output=out, scale=4, tiling=tiling, model="lanczos", resume=True, dry_run=True)
    result = upscale(lr, output=out, scale=4, tiling=tiling, resume=True)
    assert result.resumed_rows == result.window_rows
    with rasterio.open(out) as a, rasterio.open(clean) as b:
        assert np.array_equal(a.read(), b.read())
    assert stac_path(out).exists()
    assert not out.with_name(out.name + ".geosr-work").exists()
    with pytest.raises(OutputExistsError):  # finished: nothing left to resume
        upscale(lr, output=out, scale=4, tiling=tiling, resume=True)


def test_sample_copies_are_readable_as_any_new_file(tmp_path):
    """The copies took mkstemp's private mode (0600): other users of a shared demo folder could not read them."""
    from geosr.sample_scene import copy_sample

    mask = os.umask(0o022)
    try:
        paths = copy_sample(tmp_path / "demo")
    finally:
        os.umask(mask)
    assert {oct(p.stat().st_mode & 0o777) for p in paths.values()} == {oct(0o644)}



@pytest.mark.parametrize("command", ["upscale", "detect-changes"])
@pytest.mark.parametrize("kind", ["link", "file"])
def test_a_link_or_a_file_at_the_work_folder_s_name_is_refused(tmp_path, command, kind):
    """A link named OUT.geosr-work to the inputs' folder: the run emptied the folder it points to, deleting its own
    inputs (found black-box). A file there: an internal error after the work. Both: one sentence, exit 2, nothing
    written, nothing touched."""
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    out.mkdir()
    lr = make_raster(data / "lr.tif", (smooth_field(3, 40, 40, seed=2) * 255).astype(np.uint8))
    ref = make_raster(data / "ref.tif", (smooth_field(3, 40, 40, seed=3) * 255).astype(np.uint8))
    work = out / "o.tif.geosr-work"
    if kind == "link":
        work.symlink_to(data, target_is_directory=True)
    else:
        work.write_text("mine")
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    args = ["upscale", lr, "-x", "2", "-m", "bicubic"] if command == "upscale" else ["detect-changes", lr, "--ref", ref]
    res = _invoke(*args, "-o", out / "o.tif")
    assert res.exit_code == 2 and "o.tif.geosr-work: is " in res.output, res.output
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before
    assert sorted(p.name for p in out.iterdir()) == ["o.tif.geosr-work"]


def test_the_stac_item_is_never_written_through_a_file_left_at_a_fixed_name(scene, tmp_path):
    """The item was written to `<stem>.stac.json.part` in place: a link there to an input was written through."""
    tmp, lr = scene[0], scene[1]
    before = Path(lr).read_bytes()
    (tmp / "o.stac.json.part").symlink_to(lr)
    upscale(lr, output=tmp / "o.tif", scale=2)
    assert Path(lr).read_bytes() == before and json.loads((tmp / "o.stac.json").read_text())["type"] == "Feature"


def test_a_dry_run_refuses_a_file_at_a_sidecar_s_name_as_the_run_does(scene):
    """`upscale --dry-run` said the job was fine where an existing `<stem>.stac.json` would refuse the run."""
    tmp, lr = scene[0], scene[1]
    (tmp / "o.stac.json").write_text("{}")
    for dry in (True, False):
        with pytest.raises(OutputExistsError, match="o.stac.json: already exists"):
            upscale(lr, output=tmp / "o.tif", scale=2, dry_run=dry)
    assert not (tmp / "o.tif").exists() and (tmp / "o.stac.json").read_text() == "{}"


def test_a_name_too_long_is_refused_in_a_folder_still_to_be_made(tmp_path):
    """With a folder to make (batch --make-dirs) the name's length went unchecked; the run then failed mid-job."""
    from geosr.io.outputs import check_output_path

    name = "a" * 240 + ".tif"
    for folder in (tmp_path, tmp_path / "new" / "deeper"):
        with pytest.raises(OutputLocationError, match=r"the file name is too long \(244 bytes\)"):
            check_output_path(folder / name, overwrite=False, make_folder=True)
    assert check_output_path(tmp_path / "new" / "ok.tif", overwrite=False, make_folder=True).name == "ok.tif"
    assert not (tmp_path / "new").exists()
    # the longest name the margin allows runs, its sidecars (longer names, within that margin) included
    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 20, 20, seed=4) * 255).astype(np.uint8))
    longest = "b" * (255 - 40 - 4) + ".tif"
    upscale(lr, output=tmp_path / longest, scale=2)
    assert (tmp_path / longest).exists() and (tmp_path / longest.replace(".tif", ".stac.json")).exists()


def test_a_missing_results_folder_is_refused_unless_make_dirs(tmp_path):
    """`--results typo/deeper/r.jsonl` made both folders (exit 0); now refused as an output folder is."""
    make_raster(tmp_path / "lr.tif", (smooth_field(3, 20, 20, seed=4) * 255).astype(np.uint8))
    manifest = tmp_path / "jobs.yaml"
    manifest.write_text("jobs:\n  - {lr: lr.tif, out: o.tif, x: 2, model: bicubic}\n")
    results = tmp_path / "typo" / "deeper" / "r.jsonl"
    args = ("batch", manifest, "--results", results, "--dashboard", "none", "--workers", "1")
    res = _invoke(*args)
    said = " ".join(res.output.split())
    assert res.exit_code == 2 and f"the folder {results.parent} does not exist; make it, or give --make-dirs" in said
    assert not (tmp_path / "typo").exists() and not (tmp_path / "o.tif").exists()
    res = _invoke(*args, "--dry-run")  # refused as the run is
    assert res.exit_code == 2 and "does not exist" in res.output and not (tmp_path / "typo").exists()
    res = _invoke(*args, "--dry-run", "--make-dirs")  # fine, and nothing made
    assert res.exit_code == 0 and not (tmp_path / "typo").exists(), res.output
    res = _invoke(*args, "--make-dirs")
    assert res.exit_code == 0 and json.loads(results.read_text().splitlines()[0])["status"] == "ok", res.output


def test_a_results_folder_not_writable_is_refused_by_a_dry_run_too(tmp_path, monkeypatch):
    """`batch --dry-run --results ro/r.jsonl` passed (exit 0) where the run refused it (found in review)."""
    import geosr.pipeline.batch.run as batch_run

    make_raster(tmp_path / "lr.tif", (smooth_field(3, 20, 20, seed=4) * 255).astype(np.uint8))
    manifest = tmp_path / "jobs.yaml"
    manifest.write_text("jobs:\n  - {lr: lr.tif, out: o.tif, x: 2, model: bicubic}\n")
    (tmp_path / "ro").mkdir()
    allowed = os.access
    # (as root, as CI may run, a folder of mode 555 is writable)
    monkeypatch.setattr(batch_run.os, "access", lambda p, mode: Path(p).name != "ro" and allowed(p, mode))
    res = _invoke("batch", manifest, "--results", tmp_path / "ro" / "r.jsonl", "--dry-run")
    said = " ".join(res.output.split())
    assert res.exit_code == 2 and f"the folder {tmp_path / 'ro'} is not writable (--results)" in said, said
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jobs.yaml", "lr.tif", "ro"]


def test_batch_results_never_replace_an_input_the_manifest_or_another_file(tmp_path):
    """`--results` overwrote whatever it named: the job's own LR, the manifest, any raster (exit 0)."""
    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 20, 20, seed=4) * 255).astype(np.uint8))
    other = make_raster(tmp_path / "other.tif", (smooth_field(3, 20, 20, seed=5) * 255).astype(np.uint8))
    manifest = tmp_path / "jobs.yaml"
    manifest.write_text("jobs:\n  - {lr: lr.tif, out: o.tif, x: 2, model: bicubic}\n")
    before = {p: p.read_bytes() for p in (lr, other, manifest)}
    for target, said in ((lr, "is an input of job o"), (manifest, "is the manifest"),
                         (other, "is not a geosr batch results manifest")):
        res = _invoke("batch", manifest, "--results", target, "--dashboard", "none", "--workers", "1")
        assert res.exit_code == 2 and said in " ".join(res.output.split()), res.output
    assert {p: p.read_bytes() for p in before} == before and not (tmp_path / "o.tif").exists()


def test_batch_results_never_take_the_place_of_a_job_s_coming_output_its_sidecars_or_a_refused_row_s_files(tmp_path):
    """`--results out/o.tif` where that was a job's output not made yet was accepted: the job wrote its COG, then
    the results manifest replaced it (refused only once the file existed). Its record and sidecars, and the files of
    a row refused with --skip-invalid, were not looked at either."""
    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 20, 20, seed=4) * 255).astype(np.uint8))
    make_raster(tmp_path / "bad.tif", (smooth_field(3, 20, 20, seed=5) * 255).astype(np.uint8))
    manifest = tmp_path / "jobs.yaml"
    manifest.write_text("jobs:\n  - {lr: lr.tif, out: out/o.tif, x: 2, model: bicubic}\n"
                        "  - {lr: bad.tif, out: out/bad_sr.tif, x: banana, model: bicubic}\n")
    out = tmp_path / "out"
    out.mkdir()
    cases = ((out / "o.tif", "is the output of job o"), (out / "o.tif.geosr.json", "is the batch record of job o"),
             (out / "o.stac.json", "is the STAC item of job o"),
             (tmp_path / "bad.tif", "is an input of jobs.yaml job 2"),
             (out / "bad_sr.tif", "is the output of jobs.yaml job 2"))
    for target, said in cases:
        res = _invoke("batch", manifest, "--results", target, "--skip-invalid", "--dashboard", "none",
                      "--workers", "1")
        assert res.exit_code == 2 and said in " ".join(res.output.split()), (target, res.output)
        assert sorted(p.name for p in out.iterdir()) == [], res.output
    before = lr.read_bytes()
    res = _invoke("batch", manifest, "--results", out / "r.jsonl", "--skip-invalid", "--dashboard", "none",
                  "--workers", "1")
    assert res.exit_code == 1 and lr.read_bytes() == before, res.output  # the invalid row fails, the job runs
    with rasterio.open(out / "o.tif") as ds:
        assert ds.width == 40


@pytest.mark.parametrize("kind", ["link", "folder"])
def test_a_link_or_a_folder_at_the_output_s_aux_xml_is_refused(scene, kind):
    """GDAL's `OUT.aux.xml`: a folder there was an internal error after the work, a link was replaced silently."""
    tmp, lr = scene[0], scene[1]
    pam = tmp / "o.tif.aux.xml"
    if kind == "link":
        pam.symlink_to(lr)
    else:
        pam.mkdir()
    before = Path(lr).read_bytes()
    res = _invoke("upscale", lr, "-x", "2", "-m", "bicubic", "-o", tmp / "o.tif")
    assert res.exit_code == 2 and "o.tif.aux.xml: is a" in res.output, res.output
    assert Path(lr).read_bytes() == before and not (tmp / "o.tif").exists()


@pytest.mark.parametrize("name", ["o.tif.aux.xml", "o.provenance.tif.aux.xml"])
def test_a_metadata_file_at_the_output_s_or_its_sidecar_s_name_is_kept_unless_overwrite(scene, name):
    """A user's `OUT.tif.aux.xml` (and `OUT.provenance.tif.aux.xml`) with no output beside it was deleted (replaced)
    without `--overwrite`, while an existing `OUT.stac.json` or `OUT.provenance.tif` was refused."""
    tmp, lr, ref, cd = scene
    pam = tmp / name
    pam.write_text('<PAMDataset><Metadata><MDI key="NOTES">mine</MDI></Metadata></PAMDataset>')
    args = ("upscale", lr, "--ref", ref, "--cd", cd, "-x", "2", "-m", "reference-paste", "-o", tmp / "o.tif")
    res = _invoke(*args)
    assert res.exit_code == 2 and f"{name}: already exists" in res.output, res.output
    assert "mine" in pam.read_text() and not (tmp / "o.tif").exists()
    res = _invoke(*args, "--overwrite")
    assert res.exit_code == 0 and (tmp / "o.tif").exists(), res.output
    assert not pam.exists() or "mine" not in pam.read_text()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_that_comes_while_gdal_builds_overviews_stops_the_run(tmp_path, monkeypatch, sig):
    """Found black-box: a Ctrl-C (or SIGTERM) while GDAL built the overviews ran its handler inside rasterio's log
    callback, which swallowed the KeyboardInterrupt: GDAL carried on, the output was written and the run exited 0.
    Here the signal comes inside the overview step and is swallowed as that callback does."""
    from geosr.io import writer

    real = writer.build_stage_overviews

    def interrupted(dst, meta):
        with contextlib.suppress(KeyboardInterrupt):  # what rasterio's log callback does with it
            signal.raise_signal(sig)
        real(dst, meta)

    monkeypatch.setattr(writer, "build_stage_overviews", interrupted)
    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 24, 24, seed=1) * 255).astype(np.uint8))
    out = tmp_path / "out.tif"
    res = runner.invoke(app, ["upscale", str(lr), "-x", "2", "-m", "bicubic", "-o", str(out)])
    assert res.exit_code in (130, 143), res.output
    assert not out.exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are put back


@pytest.mark.parametrize("suffix", [".ovr", ".msk"])
def test_an_earlier_output_s_external_overviews_or_mask_never_pass_to_the_new_one(scene, suffix):
    """`--overwrite` removed the earlier output's `.aux.xml` but not its external overviews (`OUT.tif.ovr`, QGIS's
    "Build pyramids") or mask (`OUT.tif.msk`): GDAL read them as the new output's, so zoomed-out views showed the
    old pixels, or the whole new output read as nodata. Beside no output, such a file is refused without
    `--overwrite`, as `.aux.xml` is."""
    tmp, lr = scene[0], scene[1]
    out = tmp / "o.tif"
    assert _invoke("upscale", lr, "-x", "4", "-m", "bicubic", "-o", out, "-q").exit_code == 0
    side = tmp / f"o.tif{suffix}"
    with rasterio.open(out) as ds:
        w, h = (ds.width // 2, ds.height // 2) if suffix == ".ovr" else (ds.width, ds.height)
    with rasterio.open(side, "w", driver="GTiff", width=w, height=h, count=3 if suffix == ".ovr" else 1,
                       dtype="uint8") as o:
        o.write(np.full((o.count, h, w), 7 if suffix == ".ovr" else 0, np.uint8))
        if suffix == ".msk":
            o.update_tags(INTERNAL_MASK_FLAGS_1="2", INTERNAL_MASK_FLAGS_2="2", INTERNAL_MASK_FLAGS_3="2")
    res = _invoke("upscale", lr, "-x", "4", "-m", "lanczos", "-o", out, "--overwrite", "-q")
    assert res.exit_code == 0, res.output
    assert not side.exists()
    with rasterio.open(out) as ds:
        assert (ds.read_masks(1) > 0).all()
        small = ds.read(1, out_shape=(ds.height // 2, ds.width // 2))
        assert not (small == 7).all()
    out.unlink()
    side.write_bytes(b"someone's")
    res = _invoke("upscale", lr, "-x", "4", "-m", "bicubic", "-o", out)
    assert res.exit_code == 2 and f"o.tif{suffix}: already exists" in res.output, res.output
    assert side.read_bytes() == b"someone's" and not out.exists()


# ---- session 57 (found in review) --------------------------------------------------------------------------------
@pytest.mark.parametrize("role, side", [("--cd", ".msk"), ("LR", ".ovr"), ("--ref", ".aux.xml")])
def test_an_input_at_the_name_of_the_output_s_gdal_side_file_is_refused_even_with_overwrite(scene, role, side):
    """The run removes the output's .aux.xml, .ovr and .msk as it puts it in place: with --overwrite a change mask
    at out.tif.msk (or an LR at out.tif.ovr) was deleted, exit 0."""
    tmp, lr, ref, cd = scene
    out = tmp / "out.tif"
    upscale(str(lr), output=str(out), scale=2)
    victim = tmp / f"out.tif{side}"
    src = {"--cd": cd, "LR": lr, "--ref": ref}[role]
    victim.write_bytes(src.read_bytes())
    args = {"--cd": [lr, "--ref", ref, "--cd", victim], "LR": [victim], "--ref": [lr, "--ref", victim]}[role]
    r = _invoke("upscale", *args, "-x", "2", "-m", "reference-paste", "-o", out, "--overwrite")
    assert r.exit_code == 2 and "where GDAL keeps the" in r.output, r.output
    assert victim.read_bytes() == src.read_bytes()


def test_an_input_named_as_the_output_s_temporary_file_is_refused(scene):
    """A killed run's temporaries (.NAME.XXXXXXXX.partial*) are cleared at the next run's start: an input of that
    name was deleted, exit 0."""
    tmp, lr, _, _ = scene
    victim = tmp / ".out.tif.deadbeef.partial.tif"
    victim.write_bytes(lr.read_bytes())
    r = _invoke("upscale", victim, "-x", "2", "-m", "bicubic", "-o", tmp / "out.tif")
    assert r.exit_code == 2 and "the name of a temporary file of" in r.output, r.output
    assert victim.read_bytes() == lr.read_bytes()


@pytest.mark.parametrize("where", ["stac", "work"])
def test_a_change_class_table_is_an_input_no_output_may_replace(scene, where):
    """--cd-classes was not counted as an input: the STAC item replaced it (--overwrite), and one inside the
    output's work folder was deleted with it, exit 0 both."""
    from geosr.conditioning.changes import load_change_classes

    tmp, lr, ref, cd = scene
    table = json.dumps(load_change_classes("binary").to_dict())
    victim = tmp / "out.stac.json" if where == "stac" else tmp / "out.tif.geosr-work" / "classes.json"
    victim.parent.mkdir(exist_ok=True)
    victim.write_text(table)
    r = _invoke("upscale", lr, "--ref", ref, "--cd", cd, "--cd-classes", victim, "-x", "2", "-m",
                "reference-paste", "-o", tmp / "out.tif", "--overwrite")
    assert r.exit_code == 2 and "change class table of this run" in r.output, r.output
    assert victim.read_text() == table


def test_outputs_sharing_their_sidecars_names_are_refused(scene):
    """x.tif and x.TIF (or x.tiff) both write x.provenance.tif and x.stac.json: with --overwrite the second run
    replaced the first's sidecars (x.tif's provenance tag then named a raster of another size), and two such
    runs at once were not kept apart by the one-per-output lock. An output named as a provenance raster
    (a.provenance.tif) replaced a.tif's."""
    tmp, lr, ref, _ = scene
    upscale(str(lr), output=str(tmp / "x.tif"), scale=2, ref=str(ref), model="reference-paste")
    before = (tmp / "x.provenance.tif").read_bytes()
    for name in ("x.TIF", "x.tiff"):
        r = _invoke("upscale", lr, "--ref", ref, "-x", "4", "-m", "reference-paste", "-o", tmp / name, "--overwrite")
        assert r.exit_code == 2 and "x.tif beside it has the same stem" in r.output, r.output
        # without --overwrite too: "x.stac.json: already exists (use --overwrite ...)" led to the refusal above
        r = _invoke("upscale", lr, "--ref", ref, "-x", "4", "-m", "reference-paste", "-o", tmp / name)
        assert r.exit_code == 2 and "x.tif beside it has the same stem" in r.output, r.output
    assert (tmp / "x.provenance.tif").read_bytes() == before
    (tmp / "y.tif.geosr-work").mkdir()  # a run of y.tif under way (or killed)
    r = _invoke("upscale", lr, "-x", "2", "-m", "bicubic", "-o", tmp / "y.TIF")
    assert r.exit_code == 2 and "y.tif beside it has the same stem" in r.output, r.output
    r = _invoke("upscale", lr, "-x", "2", "-m", "bicubic", "-o", tmp / "x.provenance.tif", "--overwrite")
    assert r.exit_code == 2 and "the provenance raster of x.tif" in r.output, r.output
    assert (tmp / "x.provenance.tif").read_bytes() == before
    # the same output again is its own
    upscale(str(lr), output=str(tmp / "x.tif"), scale=2, ref=str(ref), model="reference-paste",
            output_config=OutputConfig(overwrite=True))
    # a name the STAC item writes percent-encoded (a#1.tif as a%231.tif) is still known as its owner
    upscale(str(lr), output=str(tmp / "a#1.tif"), scale=2, ref=str(ref), model="reference-paste")
    r = _invoke("upscale", lr, "-x", "2", "-m", "bicubic", "-o", tmp / "a#1.TIF", "--overwrite")
    assert r.exit_code == 2 and "a#1.tif beside it has the same stem" in r.output, r.output
    # an output of another suffix, or of none, owns them too: c.cog's were replaced by c.tif's run (found in review)
    for first, second in (("c.cog", "c.tif"), ("d", "d.tif")):
        upscale(str(lr), output=str(tmp / first), scale=2, model="bicubic")
        r = _invoke("upscale", lr, "-x", "2", "-m", "bicubic", "-o", tmp / second, "--overwrite")
        assert r.exit_code == 2 and f"{first} beside it has the same stem" in r.output, r.output
    (tmp / "e.cog.geosr-work").mkdir()  # a run of e.cog under way
    r = _invoke("upscale", lr, "-x", "2", "-m", "bicubic", "-o", tmp / "e.tif")
    assert r.exit_code == 2 and "e.cog beside it has the same stem" in r.output, r.output


def test_a_run_of_an_output_of_the_same_stem_started_meanwhile_is_seen_under_the_lock(scene, monkeypatch):
    """`-o x.tif --overwrite` and `-o x.tiff --overwrite` started at once: each planned while the other's work folder
    was absent, both exit 0, and x.tiff's STAC item was x.tif's (found in review). The check is made again under
    the job's lock, once its own work folder is there."""
    from geosr.errors import OutputLocationError
    from geosr.pipeline import upscale as upscale_module

    tmp, lr, _, _ = scene
    planned = upscale_module.plan_upscale

    def other_run_starts(*args, **kwargs):
        job = planned(*args, **kwargs)
        (tmp / "x.tiff.geosr-work").mkdir()  # x.tiff's run, begun after this one was planned
        return job

    monkeypatch.setattr(upscale_module, "plan_upscale", other_run_starts)
    with pytest.raises(OutputLocationError, match="x.tiff beside it has the same stem"):
        upscale(str(lr), output=str(tmp / "x.tif"), scale=2, model="bicubic",
                output_config=OutputConfig(overwrite=True))
    assert sorted(p.name for p in tmp.glob("x.*")) == ["x.tiff.geosr-work"]  # nothing of this run left
    # a split job's part (a shared holder) alone in its folder leaves nothing either; beside another part, it does
    monkeypatch.undo()
    (tmp / "x.tiff.geosr-work").rmdir()
    with planned(str(lr), output=str(tmp / "x.tif"), scale=2, model="bicubic") as job:
        (tmp / "x.tiff.geosr-work").mkdir()  # x.tiff's run, begun after this one was planned
        with pytest.raises(OutputLocationError, match="x.tiff beside it has the same stem"), job.lock(shared=True):
            pass
        assert not (tmp / "x.tif.geosr-work").exists()
        other = JobLock(tmp / "x.tif.geosr-work" / "lock", output=tmp / "x.tif", shared=True).acquire()
        try:
            with pytest.raises(OutputLocationError), job.lock(shared=True):
                pass
            assert (tmp / "x.tif.geosr-work" / "lock").exists()  # the other part's
        finally:
            other.release()


def test_a_work_folder_on_another_file_system_is_one_sentence(scene, monkeypatch):
    """A mount point at OUT.geosr-work made the final rename fail with EXDEV: "internal error: OSError", exit 1."""
    import geosr.io.outputs as outputs

    tmp, lr, _, _ = scene

    def elsewhere(src, dst):
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), str(src), str(dst))

    monkeypatch.setattr(outputs.os, "replace", elsewhere)
    r = _invoke("upscale", lr, "-x", "2", "-m", "bicubic", "-o", tmp / "out.tif")
    assert r.exit_code == 1 and "is on another file system than the output's folder" in r.output, r.output
    assert "internal error" not in r.output and not (tmp / "out.tif").exists()


def test_a_chunk_written_short_on_a_full_disk_is_not_journaled_as_done(tmp_path, monkeypatch):
    """Found by review: libtiff can write a chunk short at its close on a full disk with GDAL raising nothing; the
    chunk was renamed into place and journaled, and a `resume` after space was freed called the work folder
    damaged. On a (nearly) full disk a chunk is read back before it is kept."""
    from rasterio.errors import RasterioIOError

    import geosr.io.writer as writer
    from geosr.io.writer import OutputMeta, write_chunk
    from geosr.tiling.grid import Grid

    grid = Grid(rasterio.crs.CRS.from_epsg(32633), rasterio.Affine(10, 0, 500000, 0, -10, 5000000), 32, 16)
    meta = OutputMeta(dtype="uint8", count=1, nodata=None)
    data = np.ones((1, 16, 32), np.uint8)
    real = writer.rasterio.open

    def short(path, mode="r", *a, **k):  # as a chunk written short reads
        if mode == "r":
            raise RasterioIOError("Read failed. See previous exception for details.")
        return real(path, mode, *a, **k)

    monkeypatch.setattr(writer.rasterio, "open", short)
    write_chunk(tmp_path / "rows.tif", data, None, grid, meta)  # room left: not read back
    assert (tmp_path / "rows.tif").is_file()
    monkeypatch.setattr(writer, "full_disk", lambda folder: True)
    with pytest.raises(OSError) as told:
        write_chunk(tmp_path / "rows2.tif", data, None, grid, meta)
    assert told.value.errno == errno.ENOSPC and not (tmp_path / "rows2.tif").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.tif"]


def test_two_manifests_of_one_stem_do_not_share_a_results_manifest(tmp_path):
    """jobs.yaml and jobs.csv beside it both default to jobs.results.jsonl: the second batch replaced the first's
    records without a word (found in review). It is refused, naming the other manifest."""
    make_raster(tmp_path / "a.tif", (smooth_field(3, 20, 20, seed=4) * 255).astype(np.uint8))
    make_raster(tmp_path / "b.tif", (smooth_field(3, 20, 20, seed=5) * 255).astype(np.uint8))
    (tmp_path / "jobs.yaml").write_text("jobs:\n  - {lr: a.tif, out: a_x2.tif, x: 2, model: bicubic}\n")
    (tmp_path / "jobs.csv").write_text("lr,out,x,model\nb.tif,b_x2.tif,2,bicubic\n")
    res = _invoke("batch", tmp_path / "jobs.yaml", "--dashboard", "none", "--workers", "1", "-q")
    assert res.exit_code == 0, res.output
    results = tmp_path / "jobs.results.jsonl"
    kept = results.read_bytes()
    res = _invoke("batch", tmp_path / "jobs.csv", "--dashboard", "none", "--workers", "1", "--json")
    error = json.loads(res.output)["error"]
    assert res.exit_code == 2 and error == (f"{results}: holds the results of another manifest (jobs.yaml), which "
                                            "this batch would replace; give its results another path (--results)")
    assert results.read_bytes() == kept and not (tmp_path / "b_x2.tif").exists()
    res = _invoke("batch", tmp_path / "jobs.yaml", "--dashboard", "none", "--workers", "1", "-q")  # its own: fine
    assert res.exit_code == 0, res.output


def test_two_globs_run_from_one_folder_do_not_share_a_results_manifest(tmp_path, monkeypatch):
    """Every glob batch run from one folder defaults to its geosr-batch.results.jsonl: a batch of other scenes
    replaced the first's results (its failures too) without a word (found in review). Refused, as for manifests;
    the same glob again, or one sharing outputs with it, goes on."""
    monkeypatch.chdir(tmp_path)
    for i, site in enumerate(("site1", "site2")):
        (tmp_path / site).mkdir()
        make_raster(tmp_path / site / f"s{i}.tif", (smooth_field(3, 20, 20, seed=i) * 255).astype(np.uint8))
    common = ["-o", "{stem}_x2.tif", "-x", "2", "-m", "bicubic", "--dashboard", "none", "--workers", "1"]
    assert _invoke("batch", "site1/*.tif", *common, "-q").exit_code == 0
    results = tmp_path / "geosr-batch.results.jsonl"
    kept = results.read_bytes()
    res = _invoke("batch", "site2/*.tif", *common, "--json")
    error = json.loads(res.output)["error"]
    assert res.exit_code == 2 and error == (f"{results}: holds the results of another batch (of 1 other output, e.g. "
                                            f"{tmp_path / 's0_x2.tif'}), which this batch would replace; give its "
                                            "results another path with --results (or this one, to replace it)"), error
    assert results.read_bytes() == kept and not (tmp_path / "s1_x2.tif").exists()
    assert _invoke("batch", "site*/*.tif", *common, "-q").exit_code == 0  # s0's output among its own: fine
    # named with --results, it is the user's to replace (found in review: refused in the same words, which asked for
    # what they had done)
    res = _invoke("batch", "site2/*.tif", "-o", "{stem}_l.tif", "-x", "2", "-m", "lanczos", "--dashboard", "none",
                  "--workers", "1", "--results", str(results), "-q")
    assert res.exit_code == 0, res.output


def test_an_output_that_would_be_a_band_of_the_lr_s_folder_is_refused(tmp_path):
    """`upscale FOLDER -o FOLDER/..._B11_10m.tif` wrote into the folder of band files it read: the next read of the
    folder stacked the output too (a finer one made the scene's own bands "left out")."""
    from s2_products import SENSING, TILE, band_files

    band_files(tmp_path / "bands")
    before = _files(tmp_path / "bands")
    out = tmp_path / "bands" / f"{TILE}_{SENSING}_B11_10m.tif"
    res = _invoke("upscale", tmp_path / "bands", "-x", "2", "-m", "bicubic", "-o", out)
    said = " ".join(res.output.split())
    assert res.exit_code == 2 and said == (f"geosr: error: {out}: lies in {tmp_path / 'bands'}, the folder of band "
                                           "files the LR of this run is read from, where it would be read as one "
                                           "of its bands; write the output to another path"), said
    assert _files(tmp_path / "bands") == before
    # a Level-2A granule's IMG_DATA, read through its R10m folder: a band file in IMG_DATA itself would be listed
    from s2_products import l2a_product

    safe, _ = l2a_product(tmp_path / "p")
    img = next(safe.rglob("IMG_DATA"))
    out = img / f"{TILE}_{SENSING}_B04_x2.tif"
    res = _invoke("upscale", img, "-x", "2", "-m", "bicubic", "-o", out)
    assert res.exit_code == 2 and "the folder of band files the LR of this run is read from" in res.output
    assert not out.exists()
    # a name the folder does not read as a band is an output like any other
    assert _invoke("upscale", tmp_path / "bands", "-x", "2", "-m", "bicubic", "-o",
                   tmp_path / "bands" / "sr.tif").exit_code == 0


def test_sample_run_again_says_so_and_suggests_a_command_that_runs(tmp_path):
    """Run again after the demo, `geosr sample` said "copied" (every file was kept) and suggested the upscale command
    without --overwrite, which then failed on the output the demo had written."""
    first = _invoke("sample", tmp_path / "demo")
    assert first.exit_code == 0 and "sample scene copied to" in first.output and "--overwrite" not in first.output
    (tmp_path / "demo" / "sr_x8.tif").write_bytes(b"the demo's output")
    again = _invoke("sample", tmp_path / "demo")
    said = " ".join(again.output.split())
    assert again.exit_code == 0 and said.startswith(f"the sample scene is in {tmp_path / 'demo'}/; try:"), said
    assert said.endswith(f"-o {tmp_path / 'demo' / 'sr_x8.tif'} --overwrite"), said
    # the output removed, its provenance raster left: the run would refuse that too (found in review)
    (tmp_path / "demo" / "sr_x8.tif").unlink()
    (tmp_path / "demo" / "sr_x8.provenance.tif").write_bytes(b"an earlier run's provenance")
    said = " ".join(_invoke("sample", tmp_path / "demo").output.split())
    assert said.endswith(f"-o {tmp_path / 'demo' / 'sr_x8.tif'} --overwrite"), said


def test_the_sample_command_for_a_folder_named_like_an_option_runs(tmp_path, monkeypatch):
    """`geosr sample -- -demo` suggested `geosr upscale -demo/...`, which reads as options ("No such option: -d";
    found in review): its paths start with ./ now, and the command's arguments parse as paths."""
    import shlex

    monkeypatch.chdir(tmp_path)
    res = _invoke("sample", "--", "-demo")
    assert res.exit_code == 0, res.output
    command = " ".join(res.output.split()).split("try: ", 1)[1]
    words = shlex.split(command)
    assert words[:3] == ["geosr", "upscale", "./-demo/taizhou_2003_lr240m.tif"], words
    assert all(not w.startswith("-d") for w in words) and words[words.index("-o") + 1] == "./-demo/sr_x8.tif"


def test_a_write_the_file_system_refused_in_gdal_is_named_not_an_internal_error():
    """A file size limit or a quota hit while GDAL wrote (libtiff's errno lost: "Write failed" over
    "TIFFAppendToStrip:Write error at scanline 145") was "internal error: RasterioIOError", exit 1 (found in review):
    named now, as a full disk is."""
    from rasterio.errors import RasterioIOError

    from geosr.io.outputs import os_reason

    def chain(outer: str, inner: str) -> BaseException:
        try:
            try:
                raise RuntimeError(inner)
            except RuntimeError as exc:
                raise RasterioIOError(outer) from exc
        except RasterioIOError as exc:
            return exc

    said = os_reason(chain("Write failed. See previous exception for details.",
                           "TIFFAppendToStrip:Write error at scanline 145"))
    assert said == "the file system refused the write (a full disk, a quota or a file size limit)"
    assert os_reason(chain("Write failed", "_tiffWriteProc: File too large.")) == "file too large (a file size limit)"
    assert os_reason(chain("Read failed", "TIFFReadEncodedTile() failed")) is None


def test_every_file_behind_a_mosaic_of_many_vrts_is_protected(tmp_path):
    """The files behind nested VRTs were followed for 63 VRTs in all: a mosaic of 70 tile VRTs left 7 tiles free to
    be written over with --overwrite (found in review of the change that follows nested VRTs)."""
    from geosr.io.sources import gdal_files

    tiles = tmp_path / "tiles"
    tiles.mkdir()
    sources = []
    for i in range(70):
        tif = make_raster(tiles / f"t{i}.tif", np.full((1, 8, 8), i, np.uint8),
                          transform=rasterio.Affine(10, 0, 500000 + 80 * i, 0, -10, 5000000))
        rasterio.shutil.copy(str(tif), str(tiles / f"t{i}.vrt"), driver="VRT")
        sources.append(f'<SimpleSource><SourceFilename relativeToVRT="1">tiles/t{i}.vrt</SourceFilename>'
                       f'<SourceBand>1</SourceBand><DstRect xOff="{8 * i}" yOff="0" xSize="8" ySize="8"/>'
                       "</SimpleSource>")
    with rasterio.open(tiles / "t0.tif") as ds:
        crs = ds.crs.to_wkt()
    mosaic = tmp_path / "mosaic.vrt"
    mosaic.write_text(f'<VRTDataset rasterXSize="560" rasterYSize="8"><SRS>{crs}</SRS><GeoTransform>500000,10,0,'
                      f'5000000,0,-10</GeoTransform><VRTRasterBand dataType="Byte" band="1">{"".join(sources)}'
                      "</VRTRasterBand></VRTDataset>")
    found = {Path(f).name for f in gdal_files(str(mosaic))}
    assert {f"t{i}.tif" for i in range(70)} <= found
    r = _invoke("upscale", mosaic, "-x", "2", "-m", "bicubic", "-o", tiles / "t69.tif", "--overwrite")
    assert r.exit_code == 2 and "is read by the LR of this run" in r.output, r.output


def test_a_vrt_chain_deeper_than_geosr_follows_is_refused_naming_the_input(tmp_path):
    """The refusal named an inner VRT of the chain (v2.vrt), not the input given (found in review)."""
    from geosr.errors import InputError
    from geosr.io.sources import VRT_DEPTH, gdal_files

    src = make_raster(tmp_path / "base.tif", np.ones((1, 8, 8), np.uint8))
    previous = src
    for i in range(1, VRT_DEPTH + 3):
        with rasterio.open(previous) as ds:
            head = (f'<VRTDataset rasterXSize="8" rasterYSize="8"><SRS>{ds.crs.to_wkt()}</SRS><GeoTransform>'
                    f'{",".join(map(str, ds.transform.to_gdal()))}</GeoTransform>')
        (tmp_path / f"v{i}.vrt").write_text(
            head + '<VRTRasterBand dataType="Byte" band="1"><SimpleSource><SourceFilename relativeToVRT="1">'
            f"{previous.name}</SourceFilename><SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>")
        previous = tmp_path / f"v{i}.vrt"
    top = str(previous)
    with pytest.raises(InputError, match=rf"^{re.escape(top)}: nests VRTs more than {VRT_DEPTH} deep \(down to "):
        gdal_files(top)
    assert "base.tif" in {Path(f).name for f in gdal_files(str(tmp_path / "v3.vrt"))}
