"""SIGKILL at random points, then --resume: the output is byte-identical to an uninterrupted run."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from conftest import make_raster, smooth_field
from geosr.config import TilingConfig
from geosr.errors import ResumeError
from geosr.pipeline.upscale import upscale as _upscale

upscale = partial(_upscale, model="bicubic")  # the classical path unless a test names another model

ARGS = ["-x", "4", "--window", "6", "--overlap", "2", "--model", "lanczos", "--batch-size", "2", "-q"]


def _run(lr: Path, out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "geosr.cli.app", "upscale", str(lr), "-o", str(out), *ARGS, *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _journal_lines(out: Path) -> int:
    journal = out.with_name(out.name + ".geosr-work") / "rows_00000_00016" / "journal.jsonl"
    try:
        return journal.read_text().count("\n")
    except OSError:
        return 0


@pytest.mark.slow
def test_sigkill_then_resume_gives_identical_bytes(tmp_path):
    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 64, 40, seed=5) * 60000).astype(np.uint16), nodata=0)
    clean = tmp_path / "clean.tif"
    assert _run(lr, clean).wait() == 0
    expected = clean.read_bytes()
    n_rows = 16  # window 6, overlap 2 over 64 LR rows
    rng = random.Random(1234)
    # kill once a random number of window rows is journaled (plus a random few ms), and once at the very end
    targets = [rng.randrange(0, n_rows - 1) for _ in range(3)] + [n_rows]
    for trial, target in enumerate(targets):
        out = tmp_path / f"out{trial}.tif"
        proc = _run(lr, out)
        while proc.poll() is None and _journal_lines(out) < target:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if out.exists():  # killed after the final rename: the file must be complete
            assert out.read_bytes() == expected
            continue
        res = _run(lr, out, "--resume")
        _, err = res.communicate(timeout=120)
        assert res.returncode == 0, err.decode()
        assert out.read_bytes() == expected, f"trial {trial} (killed after {target} rows): resumed output differs"
        assert not out.with_name(out.name + ".geosr-work").exists()
        assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_resume_refuses_a_journal_of_another_job(tmp_path):
    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 40, 30) * 255).astype(np.uint8))
    out = tmp_path / "out.tif"
    work = out.with_name(out.name + ".geosr-work") / "rows_00000_00007"
    work.mkdir(parents=True)
    (work / "job.json").write_text('{"something": "else"}')
    with pytest.raises(ResumeError, match="other inputs or options"):
        upscale(lr, output=out, scale=2, resume=True, tiling=TilingConfig(window=8, overlap=2))
    assert not out.exists()


def test_resume_of_a_finished_run_says_there_is_nothing_left_to_resume(tmp_path):
    """`--resume` of a run that had finished said only "already exists (use overwrite)", as if the resume had not
    been asked; it now says that no unfinished run is left, and still writes nothing (exit 2 on the CLI)."""
    from geosr.errors import OutputExistsError

    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 40, 30) * 255).astype(np.uint8))
    out = tmp_path / "out.tif"
    upscale(lr, output=out, scale=2)
    before = out.read_bytes()
    for dry_run in (False, True):
        with pytest.raises(OutputExistsError, match="no unfinished run of it is left to resume"):
            upscale(lr, output=out, scale=2, resume=True, dry_run=dry_run)
    assert out.read_bytes() == before
    with pytest.raises(OutputExistsError, match=r"already exists \(use `overwrite`"):  # not asked to resume
        upscale(lr, output=out, scale=2)


def _crash_at_chunk(n: int, monkeypatch, run) -> None:
    """Run ``run`` with the ``n``-th chunk write failing (a power cut), then restore the writer."""
    import geosr.pipeline.upscale as up

    real_chunk = up.write_chunk
    calls = {"n": 0}

    def crash(*a, **k):
        calls["n"] += 1
        if calls["n"] == n:
            raise RuntimeError("power cut")
        return real_chunk(*a, **k)

    monkeypatch.setattr(up, "write_chunk", crash)
    with pytest.raises(RuntimeError):
        run()
    monkeypatch.setattr(up, "write_chunk", real_chunk)


def test_resume_continues_from_the_journal_in_process(tmp_path, monkeypatch):
    """A crash after some rows: --resume does not redo them and gives the same bytes."""

    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 40, 30) * 255).astype(np.uint8))
    clean, out = tmp_path / "clean.tif", tmp_path / "out.tif"
    opts = dict(scale=2, tiling=TilingConfig(window=8, overlap=2))
    upscale(lr, output=clean, **opts)
    _crash_at_chunk(3, monkeypatch, lambda: upscale(lr, output=out, **opts))
    assert not out.exists()
    r = upscale(lr, output=out, resume=True, **opts)
    assert r.resumed_rows == 2
    assert out.read_bytes() == clean.read_bytes()


def test_a_run_without_resume_over_an_interrupted_one_says_it_started_over(tmp_path, monkeypatch):
    """The same command without --resume after a crash threw the finished rows away without a word (found in
    review): it still starts over, and says so."""
    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 40, 30) * 255).astype(np.uint8))
    out = tmp_path / "out.tif"
    opts = dict(scale=2, tiling=TilingConfig(window=8, overlap=2))
    _crash_at_chunk(3, monkeypatch, lambda: upscale(lr, output=out, **opts))
    r = upscale(lr, output=out, **opts)
    assert r.resumed_rows == 0 and any(w.startswith("an interrupted run of this job had finished 2 of ") and
                                       w.endswith("this run started over (`resume` continues from them)")
                                       for w in r.warnings or []), r.warnings
    assert not any("interrupted" in w for w in upscale(lr, output=tmp_path / "o2.tif", **opts).warnings or [])


def test_resume_with_other_options_says_which_and_never_starts_over_silently(tmp_path, monkeypatch):
    """A resume with another batch size said only "started with other inputs or options", naming an internal folder;
    with another window (so another plan) it silently started over. Both now refuse, saying what differs."""

    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 40, 30) * 255).astype(np.uint8))
    out = tmp_path / "out.tif"
    opts = dict(scale=2, tiling=TilingConfig(window=8, overlap=2))
    _crash_at_chunk(2, monkeypatch, lambda: upscale(lr, output=out, **opts))
    for other, said in ((dict(batch_size=3), "(`batch_size` 4 -> 3)"),
                        (dict(tiling=TilingConfig(window=10, overlap=2)), "(`window` 8 -> 10)"),
                        (dict(model="lanczos"), "(`model` bicubic -> lanczos)"),
                        (dict(compress_level=6), "(`compress_level` unset -> 6)")):  # it said "null -> 6"
        for dry in (True, False):  # a dry run says what the run would (it said ok)
            with pytest.raises(ResumeError) as err:
                upscale(lr, output=out, resume=True, dry_run=dry, **{**opts, **other})
            assert str(err.value).startswith(f"{out}: its unfinished run was started with other inputs or options "
                                             f"{said}")
        assert not out.exists()
    assert upscale(lr, output=out, resume=True, dry_run=True, **opts).resumed_rows == 1  # it said 0
    # its model time is that of the rows left (it estimated the whole plan; found in review): each clock reading a
    # second later than the last, a window's batch "takes" 1 s
    from typer.testing import CliRunner

    import geosr.pipeline.upscale as module
    from geosr.cli.app import app

    ticks = iter(range(10**6))
    monkeypatch.setattr(module.time, "perf_counter", lambda: float(next(ticks)))
    fresh = upscale(lr, output=tmp_path / "fresh.tif", dry_run=True, **opts)
    resumed = upscale(lr, output=out, resume=True, dry_run=True, **opts)
    monkeypatch.undo()
    assert resumed.estimate_s == pytest.approx(fresh.estimate_s * (fresh.window_rows - 1) / fresh.window_rows)
    res = CliRunner().invoke(app, ["upscale", str(lr), "-x", "2", "-m", "bicubic", "--batch-size", "4", "--window", "8",
                                   "--overlap", "2", "-o", str(out), "--resume", "--dry-run"])
    assert res.exit_code == 0 and f"(resuming after 1 row of {fresh.window_rows})" in res.output, res.output
    assert upscale(lr, output=out, resume=True, **opts).resumed_rows == 1


def test_resume_refuses_other_reference_settings(tmp_path, monkeypatch):
    """The reference's bands, its co-registration and the products' cloud masks change what the rows hold: a resume
    with another of them is refused, naming it (nothing tested it; found by mutation testing)."""
    rng = np.random.default_rng(0)
    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 40, 30) * 255).astype(np.uint8))
    ref = make_raster(tmp_path / "ref.tif", (rng.random((4, 80, 60)) * 255).astype(np.uint8),
                      transform=Affine(5.0, 0, 500000.0, 0, -5.0, 5000000.0))
    out = tmp_path / "out.tif"
    opts = dict(scale=2, model="reference-paste", ref=ref, cd="none", ref_bands="1,2,3",
                tiling=TilingConfig(window=8, overlap=2))
    _crash_at_chunk(2, monkeypatch, lambda: upscale(lr, output=out, **opts))
    for other, said in ((dict(ref_bands="3,2,1"), "(`ref_bands` 1,2,3 -> 3,2,1)"),
                        (dict(coregister=False), "(`coregister` true -> false)"),
                        (dict(cloud_masks=False), "(`cloud_masks` true -> false)")):
        with pytest.raises(ResumeError) as err:
            upscale(lr, output=out, resume=True, dry_run=True, **{**opts, **other})
        assert said in str(err.value), str(err.value)
    assert upscale(lr, output=out, resume=True, dry_run=True, **opts).resumed_rows == 1


def test_resume_tells_apart_how_the_model_runs(tmp_path):
    """The fingerprint that --resume checks holds the model's settings: the default model run with bicubic
    back-projection instead of its own box averaging is another job."""
    from geosr.models.consistency import LRConsistent
    from geosr.models.registry import load_model
    from geosr.pipeline.upscale import plan_upscale

    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 40, 30) * 255).astype(np.uint8))
    own = plan_upscale(lr, output=tmp_path / "a.tif", scale=8, model="default")
    bicubic = LRConsistent(load_model("default", lr_consistency=False), operator="bicubic")
    other = plan_upscale(lr, output=tmp_path / "a.tif", scale=8, model=bicubic)
    assert own.fingerprint["options"]["model_settings"]["lr_consistency"] == "back-projection (box) x6"
    assert other.fingerprint["options"]["model_settings"]["lr_consistency"] == "back-projection (bicubic) x10"
    assert own.fingerprint["options"]["model"] == other.fingerprint["options"]["model"]
    assert own.fingerprint != other.fingerprint


def test_resume_takes_the_model_s_own_settings_given_and_names_a_change_by_its_option(tmp_path):
    """Found in review: `--steps 1`, `--lr-consistency box` or `--ref-detail` given to the default model, its own
    settings (the same bytes), refused a resume of a run without them ("`steps` unset -> 1"), and a real change
    was named by the fingerprint's keys ("model_settings.sampler.steps 1 -> 2", "reference_detail ... -> unset")."""
    from geosr.pipeline.fingerprints import fingerprint_changes
    from geosr.pipeline.upscale import plan_upscale

    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 24, 24) * 255).astype(np.uint8))

    def fingerprint(**kw):
        with plan_upscale(str(lr), output=tmp_path / "o.tif", scale=4, model="default", dry_run=True, **kw) as job:
            return job.fingerprint

    own = fingerprint()
    assert fingerprint(steps=1, lr_consistency="box", ref_detail=True) == own
    assert fingerprint_changes(own, fingerprint(steps=2)) == ["`steps` 1 -> 2"]
    assert fingerprint_changes(own, fingerprint(ref_detail=False)) == ["`ref_detail` on -> off"]
    assert fingerprint_changes(own, fingerprint(seed=3)) == ["`seed` 0 -> 3"]
    # another preset named by its name and steps, not by each of its fields as `sampler` ("`sampler` 0.0 -> 40.0;
    # `sampler` 5.0 -> off; ..."), back-projection by its operator, fused overlaps without the batch size they
    # bring ("`batch_size` 1 -> 4" for a batch size given alike; all found in review)
    assert fingerprint_changes(own, fingerprint(sampler="paper")) == ["`sampler` default -> paper", "`steps` 1 -> 256"]
    assert fingerprint_changes(own, fingerprint(lr_consistency="bicubic")) == ["`lr_consistency` box -> bicubic"]
    assert fingerprint_changes(fingerprint(batch_size=4), fingerprint(batch_size=4, fuse_overlaps=True)) == \
        ["`fuse_overlaps` off -> on"]
    # a batch size changed beside a setting is named too (it was hidden by any setting's change; review)
    assert fingerprint_changes(fingerprint(batch_size=4, fuse_overlaps=True),
                               fingerprint(batch_size=8, fuse_overlaps=True, steps=2)) == \
        ["`batch_size` 4 -> 8", "`steps` 1 -> 2"]
    # on CUDA the batch size is recorded as given: its change beside fused overlaps is named too (review)
    cuda = [{**f, "runtime": {**f["runtime"], "device": "cuda", "batch_size": b}} for f, b in
            ((fingerprint(batch_size=1), 1), (fingerprint(batch_size=4, fuse_overlaps=True), 4))]
    assert fingerprint_changes(*cuda) == ["`batch_size` 1 -> 4", "`fuse_overlaps` off -> on"]
    # a model object's own style, the style option alike, is named by it (it was named by nothing; review)
    styled = {**own, "options": {**own["options"], "model_settings": {**own["options"]["model_settings"],
                                                                      "style": "image"}}}
    assert fingerprint_changes(styled, own) == ["`style` image -> off"]
    with plan_upscale(str(lr), output=tmp_path / "o.tif", scale=5, model="default", dry_run=True) as job:
        said = fingerprint_changes(own, job.fingerprint)
    assert "`scale` 4 -> 5" in said and not any("model_settings" in s for s in said), said  # (".rescaled changed")
    # a job of an earlier geosr (its sampler recorded as given) is said to be that, not options nobody changed
    # ("`sampler` default -> unset"; found in review)
    earlier = {**own, "revision": own["revision"] - 1, "options": {**own["options"], "sampler": {"preset": "default"}}}
    assert fingerprint_changes(earlier, own) == [f"geosr revision {own['revision'] - 1} -> {own['revision']}"]


def test_the_cog_has_the_same_bytes_whatever_the_compression_threads(tmp_path, monkeypatch):
    """GDAL compresses the COG's blocks on several threads (geosr.io.writer.cog_threads); the bytes must not depend
    on how many, or resumed and batch runs would not reproduce a single run's file."""
    from affine import Affine

    from geosr.io.writer import OutputMeta, cog_threads, write_cog
    from geosr.tiling.grid import Grid

    rng = np.random.default_rng(0)
    data = np.clip(rng.normal(120, 30, (3, 1100, 1300)).cumsum(axis=2) / 20, 0, 255).astype(np.uint8)
    grid = Grid("EPSG:32633", Affine(10.0, 0, 300000.0, 0, -10.0, 5600000.0), 1300, 1100)
    meta = OutputMeta(dtype="uint8", count=3, blocksize=256)
    files = []
    for threads in ("1", "3", None):
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        if threads is None:
            monkeypatch.delenv("GDAL_NUM_THREADS", raising=False)
        else:
            monkeypatch.setenv("GDAL_NUM_THREADS", threads)
        assert cog_threads() == (threads or "ALL_CPUS")
        write_cog(tmp_path / f"t{threads}.tif", data, grid, meta)
        files.append((tmp_path / f"t{threads}.tif").read_bytes())
    assert files[0] == files[1] == files[2]
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setenv("GDAL_NUM_THREADS", "lots")  # not a count: the process's share instead
    assert cog_threads() == "2"


def test_resume_never_joins_rows_computed_with_another_batch_size_or_thread_count(tmp_path):
    """--resume with another --batch-size (or thread count) joined rows computed two ways (a level apart here and
    there: a file no unbroken run writes). They are in the journal's fingerprint now; geosr batch, which decides by
    what was asked, still takes a finished job as finished."""
    import torch

    from conftest import make_raster, smooth_field
    from geosr.pipeline.batch.records import comparable
    from geosr.pipeline.job import plan_upscale

    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 16, 16) * 255).astype("uint8"))

    def fingerprint(model="bicubic", **kw):
        with plan_upscale(lr, output=tmp_path / "o.tif", scale=2, model=model, **kw) as job:
            return job.fingerprint

    ref = make_raster(tmp_path / "ref.tif", (smooth_field(3, 16, 16, seed=2) * 255).astype("uint8"))
    base, lite = fingerprint(), fingerprint("lite")
    paste = fingerprint("reference-paste", ref=ref, cd="none")
    other_batch = fingerprint(batch_size=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if threads != 1 else 2)
    try:
        other_threads, lite_other_threads = fingerprint(), fingerprint("lite")
        paste_other_threads = fingerprint("reference-paste", ref=ref, cd="none")
    finally:
        torch.set_num_threads(threads)
    assert paste == paste_other_threads  # (bicubic and a choice per pixel; its resume was refused; found in review)
    assert base != other_batch and lite != lite_other_threads
    assert comparable(base) == comparable(other_batch) == comparable(other_threads)
    # bicubic and Lanczos make the same pixels with any thread count (each pixel one kernel's sum): a resume on
    # another machine was refused for "threads 2 -> 1", which no option changes (found in review)
    assert base == other_threads


def test_resume_with_another_batch_size_continues_a_model_that_takes_windows_singly(tmp_path, monkeypatch):
    """On the CPU every learned model runs a batch's windows one at a time, so its pixels do not depend on
    --batch-size; --resume still refused another batch size for it ("`batch_size` 4 -> 1"). It now continues,
    and the file is an unbroken run's, byte for byte (its options tag records the batch size asked last)."""
    import rasterio

    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 24, 20) * 255).astype(np.uint8))
    out = tmp_path / "out.tif"
    opts = dict(scale=2, model="lite", tiling=TilingConfig(window=8, overlap=2))
    for n in (1, 3):
        upscale(lr, output=tmp_path / f"clean{n}.tif", batch_size=n, **opts)
    _crash_at_chunk(2, monkeypatch, lambda: upscale(lr, output=out, batch_size=4, **opts))
    monkeypatch.undo()
    r = upscale(lr, output=out, resume=True, batch_size=1, **opts)
    assert r.resumed_rows >= 1
    assert out.read_bytes() == (tmp_path / "clean1.tif").read_bytes()
    with rasterio.open(out) as a, rasterio.open(tmp_path / "clean3.tif") as b:
        assert np.array_equal(a.read(), b.read())


def test_resume_of_an_overwriting_run_asks_for_overwrite_again(tmp_path, monkeypatch):
    """Found by review: an `overwrite` run over an earlier output, stopped midway, resumed without `overwrite`, said
    only "already exists (use `overwrite`)", as if there were no run to resume; it now says that the run replaces
    the output, and `resume` with `overwrite` continues it (a run of other options: said so)."""
    from geosr.errors import OutputExistsError

    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 40, 30) * 255).astype(np.uint8))
    clean, out = tmp_path / "clean.tif", tmp_path / "out.tif"
    opts = dict(scale=2, tiling=TilingConfig(window=8, overlap=2))
    upscale(lr, output=clean, **opts)
    upscale(lr, output=out, **{**opts, "tiling": TilingConfig(window=12, overlap=2)})  # an earlier output
    before = out.read_bytes()
    _crash_at_chunk(3, monkeypatch, lambda: upscale(lr, output=out, overwrite=True, **opts))
    with pytest.raises(OutputExistsError, match="replaces it: give `overwrite` with `resume` to continue it"):
        upscale(lr, output=out, resume=True, **opts)
    with pytest.raises(OutputExistsError, match="of other inputs or options"):
        upscale(lr, output=out, resume=True, scale=2, tiling=TilingConfig(window=10, overlap=2))
    assert out.read_bytes() == before
    r = upscale(lr, output=out, resume=True, overwrite=True, **opts)
    assert r.resumed_rows == 2 and out.read_bytes() == clean.read_bytes()


def test_cd_auto_given_or_implied_is_one_job(tmp_path):
    """`--cd auto` is the default with a reference: a run started with it and resumed without it was refused for
    "the change mask was left out", and the output's GEOSR_INPUTS named "auto" as if it were the mask's file (found
    in review)."""
    from affine import Affine

    from geosr.pipeline.job import plan_upscale

    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 24, 24) * 200).astype(np.uint8))
    ref = make_raster(tmp_path / "ref.tif", (smooth_field(3, 96, 96, seed=2) * 200).astype(np.uint8),
                      transform=Affine(2.5, 0, 500000.0, 0, -2.5, 5000000.0))

    def planned(**kw):
        with plan_upscale(str(lr), output=tmp_path / "o.tif", scale=4, model="reference-paste", ref=str(ref),
                          dry_run=True, **kw) as job:
            return job.fingerprint, json.loads(job.meta.tags["GEOSR_INPUTS"])

    (implied, inputs), (given, given_inputs) = planned(), planned(cd="auto")
    assert implied == given and inputs == given_inputs == {"lr": "lr.tif", "ref": "ref.tif"}
    assert planned(cd="none")[0] != implied  # the reference trusted everywhere: another job
    # ... said as what changed: `cd` auto -> none (it said "the change mask was added", the other way "left out")
    from geosr.pipeline.fingerprints import fingerprint_changes

    assert fingerprint_changes(implied, planned(cd="none")[0]) == ["`cd` auto -> none"]
    assert fingerprint_changes(planned(cd="none")[0], given) == ["`cd` none -> auto"]
    no_ref = {**implied, "inputs": [implied["inputs"][0], None, None, *implied["inputs"][3:]]}  # auto needs a ref
    assert fingerprint_changes(no_ref, {**no_ref, "inputs": [*no_ref["inputs"][:2], "none", *no_ref["inputs"][3:]]}
                               ) == ["`cd` not given -> none"]


def test_an_undeclared_mask_value_found_mid_run_leaves_no_work_folder(tmp_path, monkeypatch):
    """A large mask's values are checked in a sample first, the rest window by window: a value found mid-run was
    refused (exit 2) but left `OUT.geosr-work/` with a journal no resume could go on from (found in review)."""
    import geosr.pipeline.upscale as up
    from geosr.errors import ClassTableError

    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 40, 30) * 255).astype(np.uint8))
    out = tmp_path / "out.tif"
    real = up.run_rows

    def refused(job, **kw):
        (job.work_dir / "rows_00000_00001").mkdir(parents=True, exist_ok=True)  # as a run leaves it
        raise ClassTableError("mask.tif: holds values 7 that the 'binary' change class table does not declare")

    monkeypatch.setattr(up, "run_rows", refused)
    with pytest.raises(ClassTableError):
        upscale(lr, output=out, scale=2)
    assert not out.exists() and not out.with_name("out.tif.geosr-work").exists()
    monkeypatch.setattr(up, "run_rows", real)
    assert upscale(lr, output=out, scale=2).resumed_rows == 0


def test_detect_changes_and_rasterize_osm_keep_an_interrupted_upscale_s_rows(tmp_path, monkeypatch):
    """Found in review: `geosr detect-changes -o OUT` (and rasterize-osm) into the name of an interrupted upscale
    cleared OUT.geosr-work without a word, its finished rows lost and its `--resume` refused. Refused (exit 2,
    nothing written) unless --overwrite; the upscale then resumes."""
    from typer.testing import CliRunner

    from geosr.cli.app import app

    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 40, 30) * 255).astype(np.uint8))
    from affine import Affine

    ref = make_raster(tmp_path / "ref.tif", (smooth_field(3, 80, 60, seed=4) * 255).astype(np.uint8),
                      transform=Affine(5.0, 0, 500000.0, 0, -5.0, 5000000.0))
    out = tmp_path / "out.tif"
    opts = dict(scale=2, tiling=TilingConfig(window=8, overlap=2))
    _crash_at_chunk(3, monkeypatch, lambda: upscale(lr, output=out, **opts))
    for args in (["detect-changes", str(lr), "--ref", str(ref)],
                 ["rasterize-osm", "--like", str(lr), "--osm-file", str(tmp_path / "none.osm")]):
        res = CliRunner().invoke(app, [*args, "-o", str(out), "--json"])
        assert res.exit_code == 2, res.output
        assert json.loads(res.stdout)["error"] == (
            f"{out}: an interrupted geosr upscale into it left 2 finished window rows in out.tif.geosr-work, which its "
            "--resume continues from; finish that run, or use --overwrite to replace it")
        assert not out.exists()
    assert upscale(lr, output=out, resume=True, **opts).resumed_rows == 2
    assert CliRunner().invoke(app, ["detect-changes", str(lr), "--ref", str(ref), "-o", str(out),
                                    "--overwrite"]).exit_code == 0


def test_a_dry_run_of_a_resume_names_the_change_mask_the_run_kept(tmp_path, monkeypatch):
    """Found in review: after a kill, `--resume --dry-run` said the change mask was "to be detected" (and budgeted
    the detection) where the resume reads the mask the killed run kept in its work folder."""
    from affine import Affine

    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 40, 30) * 255).astype(np.uint8))
    ref = make_raster(tmp_path / "ref.tif", (smooth_field(3, 80, 60, seed=4) * 255).astype(np.uint8),
                      transform=Affine(5.0, 0, 500000.0, 0, -5.0, 5000000.0))
    out = tmp_path / "out.tif"
    opts = dict(scale=2, ref=ref, cd="auto", model="reference-paste", tiling=TilingConfig(window=8, overlap=2))
    assert upscale(lr, output=out, dry_run=True, **opts).change_detection == {"method": "auto", "ran": False}
    _crash_at_chunk(3, monkeypatch, lambda: upscale(lr, output=out, **opts))
    monkeypatch.undo()
    dry = upscale(lr, output=out, resume=True, dry_run=True, **opts)
    assert dry.change_detection["kept"] is True and 0 <= dry.change_detection["changed_share"] <= 1
    assert upscale(lr, output=out, resume=True, **opts).resumed_rows == dry.resumed_rows == 2


@pytest.mark.parametrize("how", ["copied in place, times kept (cp -p)", "moved in place, times kept (tar x)"])
def test_resume_refuses_a_reference_or_mask_replaced_keeping_its_size_and_modification_time(tmp_path, monkeypatch,
                                                                                           how):
    """A reference or change mask replaced by another file of the same size and modification time (as `cp -p` or
    `tar x` leave it) was taken for the one the journal names: --resume went on, its output rows of the old input
    and the new mixed (found in review). A digest of its content tells them apart: refused, saying how."""
    import os
    import shutil

    import rasterio
    from affine import Affine

    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 40, 30) * 200).astype(np.uint8))
    grid = dict(transform=Affine(2.5, 0, 500000.0, 0, -2.5, 5000000.0))
    make_raster(tmp_path / "ref.tif", (smooth_field(3, 160, 120, seed=2) * 200).astype(np.uint8), **grid)
    make_raster(tmp_path / "cd.tif", np.zeros((1, 160, 120), np.uint8), **grid)
    for name, data in (("ref", (smooth_field(3, 160, 120, seed=5) * 200).astype(np.uint8)),
                       ("cd", np.ones((1, 160, 120), np.uint8))):  # another file of the same layout and size
        shutil.copyfile(tmp_path / f"{name}.tif", tmp_path / f"other_{name}.tif")
        with rasterio.open(tmp_path / f"other_{name}.tif", "r+") as ds:
            ds.write(data)
    out = tmp_path / "out.tif"
    opts = dict(scale=4, model="reference-paste", ref=str(tmp_path / "ref.tif"), cd=str(tmp_path / "cd.tif"),
                tiling=TilingConfig(window=8, overlap=2))
    for name, role in (("ref", "the reference ref.tif"), ("cd", "the change mask cd.tif")):
        _crash_at_chunk(2, monkeypatch, lambda: upscale(lr, output=out, **opts))
        target, other = tmp_path / f"{name}.tif", tmp_path / f"other_{name}.tif"
        kept = target.read_bytes()
        st = target.stat()
        assert other.stat().st_size == st.st_size  # (the same size: only the pixels differ)
        if how.startswith("copied"):
            shutil.copyfile(other, target)
        else:
            os.replace(shutil.copy(other, tmp_path / "extracted.tif"), target)
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        for dry in (True, False):
            with pytest.raises(ResumeError) as err:
                upscale(lr, output=out, resume=True, dry_run=dry, **opts)
            assert str(err.value).startswith(
                f"{out}: its unfinished run was started with other inputs or options ({role} changed (its "
                "content, keeping its size and modification time, as cp -p or tar can leave a replaced file)); "), \
                str(err.value)
        assert not out.exists()
        target.write_bytes(kept)  # (the next input's turn)


def test_resume_of_a_journal_that_identified_files_by_size_and_time_alone_says_so(tmp_path, monkeypatch):
    """A journal written before geosr compared a digest of a file's content names each input by path, size and
    modification time: its resume says that it was recorded so (each input read "changed", which none was); one that
    identified them otherwise (by status-change time and inode, as an unreleased geosr did) says what it used."""
    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 40, 30) * 255).astype(np.uint8))
    out = tmp_path / "out.tif"
    opts = dict(scale=2, tiling=TilingConfig(window=8, overlap=2))
    _crash_at_chunk(3, monkeypatch, lambda: upscale(lr, output=out, **opts))
    (job,) = out.with_name(out.name + ".geosr-work").glob("rows_*/job.json")
    kept = job.read_text()
    recorded = json.loads(kept)
    assert recorded.pop("file_identity") == ["path", "size", "mtime_ns", "sample_sha256"]
    recorded["inputs"][0] = recorded["inputs"][0][:3]  # [path, size, mtime_ns], as it was recorded

    def refused(record: dict) -> str:
        job.write_text(json.dumps(record))
        with pytest.raises(ResumeError) as err:
            upscale(lr, output=out, resume=True, **opts)
        said = str(err.value)
        assert said.startswith(f"{out}: its unfinished run was started with other inputs or options (recorded "
                               "by "), said
        return said

    assert "an earlier geosr, which identified input files by path, size and modification time alone; geosr now also " \
        "compares their sampled content); " in refused(recorded)
    recorded["file_identity"] = ["path", "size", "mtime_ns", "ctime_ns", "inode"]
    recorded["inputs"][0] += [1, 2]
    assert "another geosr, which identified input files by path, size, modification time, status-change time and " \
        "inode; geosr now identifies them by path, size, modification time and sampled content); " in refused(recorded)
    job.write_text(kept)
    assert upscale(lr, output=out, resume=True, **opts).resumed_rows > 0  # (the journal as written: resumed)


def test_resume_goes_on_after_an_input_was_read_its_access_time_reset_or_its_mode_changed(tmp_path, monkeypatch):
    """Only a replaced input is another: a backup that reads the inputs and gives their access time back (`tar
    --atime-preserve`, with utime, which sets the status-change time) or a `chmod` refused a resume, saying the file
    was replaced (found in review: the identity held its status-change time; it also held an inode, which a FUSE
    mount without use_ino or a copy on another node does not keep). The resumed output is the unbroken run's."""
    import os

    from affine import Affine

    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 40, 30) * 200).astype(np.uint8))
    grid = dict(transform=Affine(2.5, 0, 500000.0, 0, -2.5, 5000000.0))
    ref = make_raster(tmp_path / "ref.tif", (smooth_field(3, 160, 120, seed=2) * 200).astype(np.uint8), **grid)
    cd = make_raster(tmp_path / "cd.tif", np.zeros((1, 160, 120), np.uint8), **grid)
    clean = tmp_path / "clean" / "out.tif"  # (one name: its provenance raster's is in its tags)
    clean.parent.mkdir()
    opts = dict(scale=4, model="reference-paste", ref=str(ref), cd=str(cd), tiling=TilingConfig(window=8, overlap=2))
    upscale(lr, output=clean, **opts)
    for touch in ("access time reset", "chmod"):
        out = tmp_path / touch / "out.tif"
        out.parent.mkdir()
        _crash_at_chunk(2, monkeypatch, partial(upscale, lr, output=out, **opts))
        for f in (lr, ref, cd):
            st = f.stat()
            if touch == "chmod":
                os.chmod(f, 0o600)
            else:
                f.read_bytes()
                os.utime(f, ns=(st.st_atime_ns - 10**9, st.st_mtime_ns))
            assert (f.stat().st_size, f.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
            assert f.stat().st_ctime_ns != st.st_ctime_ns
        assert upscale(lr, output=out, resume=True, **opts).resumed_rows > 0, touch
        assert out.read_bytes() == clean.read_bytes()


def test_a_sampled_digest_reads_a_bounded_part_of_a_large_file(tmp_path, monkeypatch):
    """An input's content digest reads at most 128 KiB (8 chunks of 16 KiB, the first and last among them), a file
    of up to 128 KiB whole; a change in a sampled chunk changes it, one between them does not (its stated limit)."""
    from geosr.pipeline import job

    data = bytearray(np.random.default_rng(0).integers(0, 256, 5 * 2**20 + 123, np.uint8).tobytes())
    big = tmp_path / "big.bin"
    big.write_bytes(data)
    digest = job._sampled_sha256(str(big))
    read = []
    real_open = open

    class Counting:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def __getattr__(self, name):
            return getattr(self.f, name)

        def read(self, n=-1):
            block = self.f.read(n)
            read.append(len(block))
            return block

    monkeypatch.setattr("builtins.open", lambda *a, **k: Counting(real_open(*a, **k)))
    assert job._sampled_sha256(str(big)) == digest and sum(read) == 2**17 and len(read) == 8
    monkeypatch.undo()
    for at, seen in ((0, True), (len(data) - 1, True), (200_000, False)):
        changed = bytearray(data)
        changed[at] ^= 0xFF
        big.write_bytes(changed)
        assert (job._sampled_sha256(str(big)) != digest) is seen, at
    small = tmp_path / "small.bin"
    for at in (0, 60_000, 2**17 - 1):  # a file of 128 KiB: every byte counts
        changed = bytearray(data[: 2**17])
        small.write_bytes(changed)
        before = job._sampled_sha256(str(small))
        changed[at] ^= 0xFF
        small.write_bytes(changed)
        assert job._sampled_sha256(str(small)) != before, at
