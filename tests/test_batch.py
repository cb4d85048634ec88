"""geosr batch on a LocalCluster of 2 worker processes (loopback), bicubic back-end, generated scenes.

One cluster serves the module (its workers import torch once); every test bounds its time, and the
fixture shuts the cluster down.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import typer
from rasterio.enums import Resampling
from typer.testing import CliRunner

from conftest import make_raster, smooth_field
from geosr.cli.batch import batch as batch_command
from geosr.config import TilingConfig
from geosr.pipeline.batch import batch, pinned_cluster, read_record, warm_worker
from geosr.pipeline.upscale import upscale

pytestmark = pytest.mark.timeout(90)

OPTS = dict(window=8, overlap=3)


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0",
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as cl:
        cl.run(warm_worker)
        yield cl


def _scene(path, h, w, seed, dtype=np.uint8, nodata=None):
    scale = 255 if dtype == np.uint8 else 60000
    return make_raster(path, (smooth_field(3, h, w, seed=seed) * scale).astype(dtype), nodata=nodata)


def _alone(job: dict, out) -> bytes:
    """The same job through geosr.upscale, alone in this process."""
    upscale(job["lr"], output=out, scale=job["x"], model=job.get("model", "bicubic"), tiling=TilingConfig(**OPTS))
    return out.read_bytes()


def _count_model_loads() -> None:
    """In a worker: empty its model cache and count load_model's calls per (model, device, sampler)."""
    import geosr.models.registry as registry
    from geosr.pipeline.batch import tasks

    real = getattr(registry.load_model, "__wrapped__", registry.load_model)
    calls: dict[str, int] = {}

    def counting(name, **kw):
        key = f"{name}/{kw.get('device')}/{kw.get('sampler')}"
        calls[key] = calls.get(key, 0) + 1
        return real(name, **kw)

    counting.__wrapped__, counting.calls = real, calls
    registry.load_model = counting
    tasks._MODELS.clear()


def _model_loads() -> dict:
    """In a worker: the loads counted since _count_model_loads (load_model is restored)."""
    import geosr.models.registry as registry

    calls = dict(getattr(registry.load_model, "calls", {}))
    registry.load_model = getattr(registry.load_model, "__wrapped__", registry.load_model)
    return calls


def _results(path) -> dict:
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}


def test_outputs_identical_to_upscale_alone_then_a_rerun_skips(tmp_path, client):
    jobs = [
        dict(id="a", lr=str(_scene(tmp_path / "a.tif", 40, 33, 1)), x=4, model="bicubic"),
        dict(id="b", lr=str(_scene(tmp_path / "b.tif", 27, 30, 2, np.uint16, nodata=0)), x=2, model="bicubic"),
        dict(id="c", lr=str(_scene(tmp_path / "c.tif", 16, 21, 3)), x=8, model="lanczos"),
    ]
    (tmp_path / "out").mkdir()
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text("".join(json.dumps({**j, "out": f"out/{j['id']}.tif", **OPTS}) + "\n" for j in jobs))
    seen = []
    client.run(_count_model_loads)
    r = batch(manifest, client=client, progress=seen.append)
    assert r.exit_code == 0 and [j.status for j in r.jobs] == ["ok"] * 3, r.to_dict()
    assert seen[-1].jobs_done == 3 and seen[-1].windows_done == seen[-1].windows_total == sum(j.windows for j in r.jobs)
    for j in jobs:
        assert (tmp_path / "out" / f"{j['id']}.tif").read_bytes() == _alone(j, tmp_path / f"alone_{j['id']}.tif")
        assert read_record(tmp_path / "out" / f"{j['id']}.tif")["job_id"] == j["id"]
    assert not list((tmp_path / "out").glob("*.geosr-work"))
    lines = _results(tmp_path / "jobs.results.jsonl")
    assert list(lines) == ["a", "b", "c"] and lines["a"]["status"] == "ok" and lines["a"]["windows"] == 48
    assert lines["b"]["seconds"] > 0 and lines["c"]["worker"].startswith("tcp://127.0.0.1")
    loads = client.run(_model_loads)  # each worker process loaded each model it used once, for all its jobs
    assert all(n == 1 for per_worker in loads.values() for n in per_worker.values()), loads
    assert {k.split("/")[0] for per_worker in loads.values() for k in per_worker} == {"bicubic", "lanczos"}, loads
    # the same manifest again: nothing to do
    mtimes = [p.stat().st_mtime_ns for p in sorted((tmp_path / "out").glob("*.tif"))]
    r = batch(manifest, client=client)
    assert [j.status for j in r.jobs] == ["skipped"] * 3 and r.exit_code == 0
    assert [p.stat().st_mtime_ns for p in sorted((tmp_path / "out").glob("*.tif"))] == mtimes
    assert {v["status"] for v in _results(tmp_path / "jobs.results.jsonl").values()} == {"skipped"}
    # an output whose sidecar is gone (its STAC item) is not up to date: it was "skipped" and never had one again
    # (found in review); the job runs again, the others are skipped
    item = tmp_path / "out" / "b.stac.json"
    said = item.read_text()
    item.unlink()
    r = batch(manifest, client=client)
    assert [j.status for j in r.jobs] == ["skipped", "ok", "skipped"] and r.exit_code == 0, r.to_dict()
    assert json.loads(item.read_text())["id"] == json.loads(said)["id"]
    assert [j.status for j in batch(manifest, client=client).jobs] == ["skipped"] * 3
    # the folder copied away and back (a restore from a backup: new modification times): still up to date (found in
    # review: the sidecars compared by size and time alone ran every job again)
    import shutil

    shutil.copytree(tmp_path / "out", tmp_path / "backup")
    shutil.rmtree(tmp_path / "out")
    shutil.copytree(tmp_path / "backup", tmp_path / "out", copy_function=shutil.copy)
    assert [j.status for j in batch(manifest, client=client).jobs] == ["skipped"] * 3


def test_a_cluster_without_workers_is_refused_and_the_last_results_kept(tmp_path, monkeypatch, client):
    """Found in review: `--scheduler` of a cluster no worker had joined showed "jobs 0/1" for ever, the earlier
    results manifest already replaced (its lines "cancelled"). It waits a while for a worker, then says so."""
    from distributed import Client, LocalCluster

    from geosr.errors import NetworkError
    from geosr.pipeline.batch import cluster

    monkeypatch.setattr(cluster, "WORKERS_WAIT_S", 1.0)
    lr = _scene(tmp_path / "a.tif", 20, 20, 1)
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text(json.dumps({"lr": str(lr), "out": str(tmp_path / "a_x2.tif"), "x": 2, **OPTS}) + "\n")
    assert batch(manifest, client=client).exit_code == 0
    (tmp_path / "a_x2.tif").unlink()  # a job to run again
    earlier = (tmp_path / "jobs.results.jsonl").read_text()
    said = "has no workers \\(none joined in 1 s\\); start workers on it"
    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as empty, Client(empty) as idle, \
            pytest.raises(NetworkError, match=said):
        batch(manifest, client=idle)
    assert (tmp_path / "jobs.results.jsonl").read_text() == earlier and '"status": "ok"' in earlier
    assert not (tmp_path / "a_x2.tif").exists()


def test_one_live_batch_per_results_manifest(tmp_path, client):
    """Two runs of one manifest at once wrote their results into one file, the last to end replacing the other's
    (jobs refused as busy listed as failed over outputs the other run wrote). The second is refused now, before
    it runs anything; the lock goes with the run."""
    from geosr.io.lock import JobLock, OutputBusyError

    lr = _scene(tmp_path / "a.tif", 20, 20, 1)
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text(json.dumps({"lr": str(lr), "out": str(tmp_path / "a_x2.tif"), "x": 2, "model": "bicubic",
                                    **OPTS}) + "\n")
    results = tmp_path / "jobs.results.jsonl"
    with JobLock(tmp_path / ".jobs.results.jsonl.lock", output=results), \
            pytest.raises(OutputBusyError, match="is being written by another geosr run"):  # a run of it, live
        batch(manifest, client=client)
    assert not results.exists() and not (tmp_path / "a_x2.tif").exists()
    r = batch(manifest, client=client)
    assert r.exit_code == 0 and results.exists() and not (tmp_path / ".jobs.results.jsonl.lock").exists()


def test_split_scene_assembles_into_the_same_bytes(tmp_path, client):
    job = dict(lr=str(_scene(tmp_path / "big.tif", 64, 45, 7)), x=4)
    (tmp_path / "jobs.yaml").write_text("jobs:\n  - {lr: big.tif, out: split.tif, x: 4, model: bicubic}\n")
    r = batch(tmp_path / "jobs.yaml", client=client, split_windows=20, **OPTS)
    (res,) = r.jobs
    assert res.status == "ok" and res.parts == 7 and res.window_rows == 13, res
    assert (tmp_path / "split.tif").read_bytes() == _alone(job, tmp_path / "whole.tif")
    assert not (tmp_path / "split.tif.geosr-work").exists()


def _corrupt_full_resolution(path) -> None:
    """A scene whose overviews are fine (checks pass) but one full-resolution tile is garbage."""
    make_raster(path, (smooth_field(3, 16, 2112, seed=4) * 255).astype(np.uint8), tiled=True, blockxsize=256,
                blockysize=16, compress="deflate")
    with rasterio.open(path, "r+") as ds:
        ds.build_overviews([2, 4], Resampling.average)
    with rasterio.open(path) as ds:
        off = int(ds.get_tag_item("BLOCK_OFFSET_7_0", "TIFF", bidx=1))
        size = int(ds.get_tag_item("BLOCK_SIZE_7_0", "TIFF", bidx=1))
    data = bytearray(path.read_bytes())
    data[off : off + size] = b"\xff" * size
    path.write_bytes(bytes(data))


def test_make_dirs_makes_each_job_s_output_folder_as_it_runs(tmp_path, client):
    """A template that puts each scene in its own folder (`out/{stem}/x2/sr.tif`): without --make-dirs every job is
    invalid (exit 2, nothing made); with it, a dry run still makes nothing and the run makes each folder. A folder
    that cannot be made (a file in the way) is that job's failure alone."""
    for name in ("a", "b", "c"):
        _scene(tmp_path / f"{name}.tif", 20, 18, ord(name))
    (tmp_path / "c").write_text("a file where c's output folder would go")
    args = ["batch", str(tmp_path / "*.tif"), "-o", str(tmp_path / "{stem}" / "x2" / "sr.tif"), "-x", "2",
            "-m", "bicubic", "--window", "8", "--overlap", "3", "--scheduler", client.scheduler.address, "-q"]
    res = CliRunner().invoke(_cli(), args)
    assert res.exit_code == 2 and "does not exist" in res.output, res.output
    res = CliRunner().invoke(_cli(), [*args, "--make-dirs", "--dry-run"])
    assert res.exit_code == 2 and f"cannot be made: {tmp_path / 'c'} is a file, not a folder" in res.output, res.output
    res = CliRunner().invoke(_cli(), [*args, "--make-dirs", "--dry-run", "--skip-invalid", "--json"])
    planned = {Path(j["lr"]).stem: j["status"] for j in json.loads(res.stdout)["jobs"]}
    assert planned == {"a": "planned", "b": "planned", "c": "failed"}, res.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    res = CliRunner().invoke(_cli(), [*args, "--make-dirs", "--skip-invalid", "--results", str(tmp_path / "r.jsonl")])
    assert res.exit_code == 1, res.output  # c failed, the others ran
    statuses = {Path(v["lr"]).stem: v["status"] for v in _results(tmp_path / "r.jsonl").values()}
    assert statuses == {"a": "ok", "b": "ok", "c": "failed"}
    for name in ("a", "b"):
        with rasterio.open(tmp_path / name / "x2" / "sr.tif") as ds:
            assert (ds.width, ds.height) == (36, 40)


def test_the_start_line_counts_only_the_tasks_that_run(tmp_path, client, monkeypatch):
    """A job whose output folder could not be made as the batch started (after its check) fails alone; the plan line
    still counted its tasks ("3 jobs to run (3 tasks)" for 2 jobs)."""
    from geosr.errors import OutputLocationError
    from geosr.io import outputs

    for name in ("a", "b", "c"):
        _scene(tmp_path / f"{name}.tif", 20, 18, ord(name))
    real = outputs.make_output_folder

    def made(path, *args, **kwargs):
        if Path(path).parent.name == "c":  # made away meanwhile, say
            raise OutputLocationError(f"{path}: the output folder cannot be made")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(outputs, "make_output_folder", made)
    started = []
    result = batch(str(tmp_path / "*.tif"), out=str(tmp_path / "{stem}" / "sr.tif"), x=2, model="bicubic",
                   make_dirs=True, client=client, on_start=started.append, results=str(tmp_path / "r.jsonl"))
    assert [(Path(r.lr).stem, r.status) for r in result.jobs] == [("a", "ok"), ("b", "ok"), ("c", "failed")]
    assert started[0]["jobs"] == 2 and started[0]["tasks"] == 2, started


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command("batch")(batch_command)
    app.command("noop")(lambda: None)
    return app


def test_failing_jobs_do_not_stop_the_others_and_exit_1(tmp_path, client):
    _corrupt_full_resolution(tmp_path / "bad.tif")
    for i in range(2):
        _scene(tmp_path / f"good{i}.tif", 24, 20, 10 + i)
    (tmp_path / "out").mkdir()
    (tmp_path / "jobs.csv").write_text(
        "id,lr,x,window\ngood0,good0.tif,4,\nbad,bad.tif,2,64\nmissing,missing.tif,4,\ngood1,good1.tif,2,\n"
    )
    args = ["batch", str(tmp_path / "jobs.csv"), "-o", "out/{stem}.tif", "--scheduler", client.scheduler.address,
            "--retries", "1", "--skip-invalid"]
    res = CliRunner().invoke(_cli(), args)
    assert res.exit_code == 1, res.output
    lines = _results(tmp_path / "jobs.results.jsonl")
    assert {k: v["status"] for k, v in lines.items()} == {
        "good0": "ok", "bad": "failed", "good1": "ok", "missing": "failed"
    }
    assert list(lines) == ["good0", "bad", "missing", "good1"]  # the manifest's order, the invalid row among them
    assert lines["bad"]["stage"] == "run" and lines["bad"]["error_type"] == "NotARasterError"
    assert "bad.tif: pixels cannot be read, the file may be corrupt" in lines["bad"]["error"]
    assert "Decoding error" in lines["bad"]["error"]  # GDAL's own cause, carried back
    assert lines["missing"]["stage"] == "check" and "missing.tif: no such file" in lines["missing"]["error"]
    assert (tmp_path / "out" / "good0.tif").exists() and (tmp_path / "out" / "good1.tif").exists()
    assert not (tmp_path / "out" / "bad.tif").exists()
    assert "2 ok, 2 failed" in res.stdout and "Dask dashboard" in res.stderr
    import importlib.util  # the scheduler's page needs bokeh: its link was given bare, a 404 (found in review)

    bare = importlib.util.find_spec("bokeh") is not None  # (the scheduler runs in this environment)
    assert ("(install bokeh on its scheduler to see it)" not in " ".join(res.stderr.split())) == bare, res.stderr
    # --json: the same, machine-readable
    res = CliRunner().invoke(_cli(), [*args, "--json", "--quiet"])
    got = json.loads(res.stdout)
    assert res.exit_code == 1 and not got["ok"]
    assert got["counts"] == {"ok": 0, "skipped": 2, "failed": 2, "cancelled": 0, "planned": 0}


def _journal_lines(work) -> int:
    try:
        return sum(p.read_text().count("\n") for p in work.glob("rows_*/journal.jsonl"))
    except OSError:
        return 0


def test_a_killed_worker_still_completes_every_job(tmp_path, client):
    jobs = [dict(id="long", lr=str(_scene(tmp_path / "long.tif", 200, 33, 21)), x=4)]
    jobs += [dict(id=f"s{i}", lr=str(_scene(tmp_path / f"s{i}.tif", 30, 30, 22 + i)), x=4) for i in range(3)]
    manifest = tmp_path / "jobs.yaml"
    manifest.write_text(
        "defaults: {out: '{stem}_sr.tif', x: 4, window: 8, overlap: 3, model: bicubic}\nglob: '*.tif'\n"
    )
    out = tmp_path / "long_sr.tif"
    work = tmp_path / "long_sr.tif.geosr-work"
    got: dict = {}
    runner = threading.Thread(target=lambda: got.update(r=batch(manifest, client=client)), daemon=True)
    runner.start()
    deadline = time.monotonic() + 40
    while _journal_lines(work) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    busy = [
        a for a, keys in client.processing().items() if any(str(k).startswith("geosr-upscale-long_sr-") for k in keys)
    ]
    assert busy and not out.exists(), "the long job should be running"
    pid = client.run(os.getpid, workers=busy)[busy[0]]
    os.kill(pid, signal.SIGKILL)
    runner.join(70)
    r = got["r"]
    assert [j.status for j in r.jobs] == ["ok"] * 4, r.to_dict()
    long = next(j for j in r.jobs if j.id == "long_sr")
    assert long.resumed_rows >= 3  # the retry continued from the journal
    (tmp_path / "alone").mkdir()
    for j in jobs:
        assert (tmp_path / f"{j['id']}_sr.tif").read_bytes() == _alone(j, tmp_path / "alone" / f"{j['id']}.tif")


def test_gpu_workers_each_see_one_device():
    """The local cluster's GPU layout, checked on CPU: each worker process sees only its device."""
    from distributed import Client

    with pinned_cluster(["3", "5"], 3, dashboard=":0") as cluster, Client(cluster) as cl:
        cl.wait_for_workers(3, timeout=60)
        seen = cl.run(lambda: (os.environ["CUDA_VISIBLE_DEVICES"], os.environ["OMP_NUM_THREADS"]))
    assert sorted(v[0] for v in seen.values()) == ["3", "3", "5"]


@pytest.mark.parametrize("off", [None, "none", "OFF"])
def test_a_dashboard_turned_off_is_off_and_takes_no_well_known_port(off):
    """``--dashboard none`` (None in Python): no dashboard link, and Dask's HTTP routes, which its scheduler serves
    even without a dashboard, on a free port instead of 8787."""
    from distributed import Client

    from geosr.pipeline.batch.cluster import cluster_info, local_cluster

    cluster, _ = local_cluster(workers=1, device="cpu", dashboard=off)
    with cluster, Client(cluster) as cl:
        info = cluster_info(cl, True, off)
        port = cl.scheduler_info().get("services", {}).get("dashboard")
    assert info["dashboard"] is None and port != 8787


def test_an_interrupted_batch_reports_a_job_its_worker_finished_while_stopping_as_done(tmp_path):
    """Ctrl-C just before a job finished: its worker completed it (output and record in place) while the cluster
    stopped, and the results said "cancelled: the batch was interrupted". Only this run's record counts."""
    from geosr.pipeline.batch import plan_batch
    from geosr.pipeline.batch.records import write_record
    from geosr.pipeline.batch.results import job_result
    from geosr.pipeline.batch.run import _finished_while_stopping

    for name in ("a", "b"):
        make_raster(tmp_path / f"{name}.tif", (smooth_field(3, 16, 16) * 255).astype(np.uint8))
    (tmp_path / "jobs.yaml").write_text("jobs:\n  - {lr: a.tif, out: a_x2.tif, x: 2, model: bicubic}\n"
                                        "  - {lr: b.tif, out: b_x2.tif, x: 2, model: bicubic}\n")
    jobs = plan_batch(tmp_path / "jobs.yaml").jobs
    done = {pj.spec.id: job_result(pj, "cancelled", stage="run", error="the batch was interrupted") for pj in jobs}
    for pj, run in zip(jobs, ("this-run", "an-earlier-run")):
        out = tmp_path / pj.spec.out
        out.write_bytes(b"finished")
        write_record(out, {}, job_id=pj.spec.id, run_id=run, started="2026-12-04T08:00:00.000+00:00", seconds=2.5)
    _finished_while_stopping(jobs, done, "this-run")
    assert [done[pj.spec.id].status for pj in jobs] == ["ok", "cancelled"]
    # reported with its start and compute time, as a job collected in time is (they were null)
    ok = done[jobs[0].spec.id]
    assert (ok.started, ok.seconds) == ("2026-12-04T08:00:00.000+00:00", 2.5) and ok.finished


def test_a_job_record_holds_its_start_and_compute_time(tmp_path):
    """What a batch stopped by Ctrl-C reads back for a job its worker finished meanwhile."""
    from geosr.pipeline.batch import plan_batch
    from geosr.pipeline.batch.records import read_record
    from geosr.pipeline.batch.tasks import run_job_task

    make_raster(tmp_path / "a.tif", (smooth_field(3, 16, 16) * 255).astype(np.uint8))
    (tmp_path / "jobs.yaml").write_text("jobs:\n  - {lr: a.tif, out: a_x2.tif, x: 2, model: bicubic}\n")
    spec = plan_batch(tmp_path / "jobs.yaml").jobs[0].spec
    out = run_job_task(spec, "cpu", "run-1")
    record = read_record(spec.out)
    assert out["ok"] and record["run_id"] == "run-1" and record["started"] == out["started"]
    assert 0 < record["seconds"] <= out["seconds"] + 1e-3


def test_a_run_refused_by_a_batch_job_s_lock_is_told_the_batch_not_only_its_worker(tmp_path, monkeypatch):
    """A run refused because a batch's job writes the same output was told to stop "process N", the Dask worker:
    stopping it, the batch retried the job on a new worker and wrote the output anyway (found in review). It is
    told the batch process too; the batch gives every task its own name."""
    import os
    import socket

    import geosr.pipeline.batch.tasks as tasks
    from geosr.io.lock import LOCK_NAME, JobLock, OutputBusyError
    from geosr.pipeline.batch import plan_batch
    from geosr.pipeline.batch.run import _submit

    make_raster(tmp_path / "a.tif", (smooth_field(3, 16, 16) * 255).astype(np.uint8))
    (tmp_path / "jobs.yaml").write_text("jobs:\n  - {lr: a.tif, out: a_x2.tif, x: 2, model: bicubic}\n"
                                        "  - {lr: a.tif, out: b_x2.tif, x: 2, model: bicubic, window: 8, "
                                        "split_windows: 1}\n")
    plan = plan_batch(tmp_path / "jobs.yaml")
    told = []
    rows = tasks._rows

    def other_run_tries(job, *args):
        with pytest.raises(OutputBusyError) as exc, JobLock(job.work_dir / LOCK_NAME, output=job.out_path):
            pass
        told.append(" ".join(str(exc.value).split()))
        return rows(job, *args)

    monkeypatch.setattr(tasks, "_rows", other_run_tries)
    assert tasks.run_job_task(plan.jobs[0].spec, "cpu", "run-1", batch="geosr batch, process 7 on h")["ok"]
    assert f"(geosr batch, process 7 on h, in its worker's process {os.getpid()} on {socket.gethostname()}, " \
        "since" in told[0], told
    # (the worker of a cluster of its own goes on after its batch stops: both are named; found in review)
    assert told[0].endswith("wait for it to finish or stop it and that worker"), told

    class Recorder:
        def submit(self, fn, *args, **kwargs):
            submitted.append((fn.__name__, kwargs.get("batch")))
            return fn.__name__

    submitted: list = []
    _submit(Recorder(), plan.jobs, "cpu", 0, "run-2")
    assert {name for name, _ in submitted} == {"run_job_task", "run_part_task", "run_finish_task"}
    assert {by for _, by in submitted} == {f"geosr batch, process {os.getpid()} on {socket.gethostname()}"}


def test_a_job_s_warnings_reach_its_results_line(tmp_path, monkeypatch):
    """A batch dropped every warning its jobs' runs gave (bands that are not what the model was trained on, an
    option it ignores, "bicubic is written there" where a model's output ran away; found in review): each job's
    are in its results line, once each, a split job's from all its tasks."""
    from geosr.pipeline.batch import plan_batch
    from geosr.pipeline.batch.tasks import run_finish_task, run_job_task, run_part_task
    from geosr.pipeline.upscale import ran_away_warning

    make_raster(tmp_path / "a.tif", (smooth_field(3, 16, 16) * 255).astype(np.uint8))
    (tmp_path / "jobs.yaml").write_text("jobs:\n  - {lr: a.tif, out: a_x2.tif, x: 2, model: bicubic, seed: 5}\n"
                                        "  - {lr: a.tif, out: b_x2.tif, x: 2, model: bicubic, seed: 5, window: 8}\n")
    plan = plan_batch(tmp_path / "jobs.yaml")
    seed = "model bicubic does not sample by diffusion, so `seed` changes nothing"
    assert run_job_task(plan.jobs[0].spec, "cpu", "run-1")["warnings"] == [seed]
    split = plan.jobs[1].spec
    n = plan.jobs[1].window_rows
    assert n > 1
    parts = [run_part_task(split, "cpu", "run-1", (i, i + 1)) for i in range(n)]
    for p in parts[:2]:  # as if the model's output ran away on a window in two of its tasks
        p["said"]["ran_away"] = 1
    done = run_finish_task(split, "cpu", "run-1", parts)
    assert done["ok"] and done["warnings"] == [seed, ran_away_warning("bicubic", 2)], done
    # a band of rows recomputes the rows above it whose windows reach into it: their windows are the band above's,
    # counted there only (every window running away was said as more windows than the job has; found in review)
    import geosr.pipeline.upscale as up

    plain = up._run_model

    def running_away(job, group):
        job.sr.ran_away = getattr(job.sr, "ran_away", 0) + len(group)
        return plain(job, group)

    monkeypatch.setattr(up, "_run_model", running_away)
    parts = [run_part_task(split, "cpu", "run-2", (i, i + 1)) for i in range(n)]
    said = sum(p["said"]["ran_away"] for p in parts)
    with up.plan_upscale(str(tmp_path / "a.tif"), output=None, dry_run=True, scale=2, model="bicubic",
                         window=8) as job:
        windows = job.plan.n_rows * job.plan.n_cols
    assert said == windows, (said, windows)
    # a dry run tells what each planned job's plan warns of, as `geosr upscale --dry-run` does (it told nothing;
    # found in review), and the CLI prints them
    (tmp_path / "dry.yaml").write_text("jobs:\n  - {lr: a.tif, out: c_x2.tif, x: 2, model: bicubic, seed: 5}\n"
                                       "  - {lr: a.tif, out: d_x2.tif, x: 2, model: bicubic}\n")
    dry = batch(tmp_path / "dry.yaml", dry_run=True)
    assert [j.warnings for j in dry.jobs] == [[seed], None], dry.jobs
    said = CliRunner().invoke(_cli(), ["batch", str(tmp_path / "dry.yaml"), "--dry-run"])
    assert said.exit_code == 0 and "warning: c_x2: model bicubic does not sample by diffusion, so --seed changes" \
        in " ".join(said.stderr.split()), said.stderr


def test_an_output_another_batch_wrote_meanwhile_is_not_replaced(tmp_path):
    """Two batches writing one output (planned while it was absent) both said "ok": the second replaced the first's
    output without a word. The job now replaces only what its plan found there, or what it wrote itself."""
    from geosr.pipeline.batch import plan_batch
    from geosr.pipeline.batch.records import read_record, record_path
    from geosr.pipeline.batch.tasks import run_job_task

    for name, seed in (("a", 1), ("b", 2)):
        make_raster(tmp_path / f"{name}.tif", (smooth_field(3, 16, 16, seed=seed) * 255).astype(np.uint8))
        (tmp_path / f"{name}.yaml").write_text(f"jobs:\n  - {{lr: {name}.tif, out: x.tif, x: 2, model: bicubic}}\n")
    first, second = (plan_batch(tmp_path / f"{n}.yaml").jobs[0] for n in ("a", "b"))
    assert first.replaces == () and second.replaces == ()
    assert run_job_task(second.spec, "cpu", "run-b", second.replaces)["ok"]
    theirs = (tmp_path / "x.tif").read_bytes()
    out = run_job_task(first.spec, "cpu", "run-a", first.replaces)
    assert not out["ok"] and out["error_type"] == "OutputExistsError", out
    assert "x.tif: appeared while this run worked and is left as it is (another run or program wrote it; run the " \
        "batch with `overwrite` to replace it" in out["error"] and "resume" not in out["error"], out
    assert (tmp_path / "x.tif").read_bytes() == theirs and read_record(tmp_path / "x.tif")["run_id"] == "run-b"
    # planned again, the refused job's journal (left in the work folder) does not make the other's output its own
    replan = plan_batch(tmp_path / "a.yaml").jobs[0]
    assert replan.action == "fail" and replan.error_type == "OutputExistsError", replan
    # two scenes of one name in two folders, the same options: still two jobs (their outputs' tags tell them apart)
    for name, seed in (("one", 3), ("two", 4)):
        (tmp_path / name).mkdir()
        make_raster(tmp_path / name / "scene.tif", (smooth_field(3, 16, 16, seed=seed) * 255).astype(np.uint8))
        (tmp_path / f"{name}.yaml").write_text(f"jobs:\n  - {{lr: {name}/scene.tif, out: y.tif, x: 2, "
                                               "model: bicubic}\n")
    one, two = (plan_batch(tmp_path / f"{n}.yaml").jobs[0] for n in ("one", "two"))
    assert run_job_task(two.spec, "cpu", "run-two", two.replaces)["ok"]
    out = run_job_task(one.spec, "cpu", "run-one", one.replaces)
    assert not out["ok"] and out["error_type"] == "OutputExistsError" and read_record(tmp_path / "y.tif")[
        "run_id"] == "run-two", out
    replan = plan_batch(tmp_path / "one.yaml").jobs[0]  # its journal beside the other's recorded output: not its own
    assert replan.action == "fail", replan
    # ... also when the two scenes have one histogram (one upside down: the same stretch, so the same tags); the
    # other run's record beside the output tells (both said "ok", the output the second's scene; found in review)
    pixels = (smooth_field(3, 16, 16, seed=5) * 255).astype(np.uint8)
    for name, scene in (("up", pixels), ("down", pixels[:, ::-1].copy())):
        (tmp_path / name).mkdir()
        make_raster(tmp_path / name / "scene.tif", scene)
        (tmp_path / f"{name}.yaml").write_text(f"jobs:\n  - {{lr: {name}/scene.tif, out: z.tif, x: 2, "
                                               "model: bicubic}\n")
    up, down = (plan_batch(tmp_path / f"{n}.yaml").jobs[0] for n in ("up", "down"))
    assert run_job_task(up.spec, "cpu", "run-up", up.replaces)["ok"]
    theirs = (tmp_path / "z.tif").read_bytes()
    out = run_job_task(down.spec, "cpu", "run-down", down.replaces)
    assert not out["ok"] and out["error_type"] == "OutputExistsError", out
    assert (tmp_path / "z.tif").read_bytes() == theirs and read_record(tmp_path / "z.tif")["run_id"] == "run-up"
    # the same job in two runs at once (planned twice while its output was absent): the same bytes, both ok
    (tmp_path / "up2.yaml").write_text((tmp_path / "up.yaml").read_text().replace("z.tif", "w.tif"))
    once, twice = (plan_batch(tmp_path / "up2.yaml").jobs[0] for _ in range(2))
    assert run_job_task(once.spec, "cpu", "run-once", once.replaces)["ok"]
    assert run_job_task(twice.spec, "cpu", "run-twice", twice.replaces)["ok"]
    record_path(tmp_path / "x.tif").unlink()
    # this job's own output, put in place by an attempt killed before its record: replaced by the next attempt
    assert run_job_task(second.spec, "cpu", "run-b2", second.replaces)["ok"]
    # planned with the output in place (--overwrite): that very file is replaced
    again = plan_batch(tmp_path / "a.yaml", overwrite=True).jobs[0]
    assert again.replace and {p for p, *_ in again.replaces} >= {str(tmp_path / "x.tif")}
    assert run_job_task(again.spec, "cpu", "run-c", again.replaces)["ok"]
    assert read_record(tmp_path / "x.tif")["run_id"] == "run-c"
    # GDAL's file beside the output made after the plan (QGIS's "Build pyramids": x.tif.ovr) is someone's too: the
    # job with the output planned for replacing deleted it without a word
    later = plan_batch(tmp_path / "b.yaml", overwrite=True).jobs[0]
    (tmp_path / "x.tif.ovr").write_bytes(b"pyramids")
    out = run_job_task(later.spec, "cpu", "run-d", later.replaces)
    assert not out["ok"] and out["error"].startswith(f"{tmp_path / 'x.tif.ovr'}: appeared while this run worked"), out
    assert (tmp_path / "x.tif.ovr").read_bytes() == b"pyramids" and read_record(tmp_path / "x.tif")["run_id"] == \
        "run-c"
    # ... also by a forced re-run of the job that made the output (its record says the output is its own)
    (tmp_path / "x.tif.ovr").unlink()
    forced = plan_batch(tmp_path / "a.yaml", force=True).jobs[0]
    (tmp_path / "x.tif.ovr").write_bytes(b"pyramids")
    out = run_job_task(forced.spec, "cpu", "run-e", forced.replaces)
    assert not out["ok"] and out["error"].startswith(f"{tmp_path / 'x.tif.ovr'}: appeared while this run worked"), out
    assert (tmp_path / "x.tif.ovr").read_bytes() == b"pyramids"


def test_a_quiet_batch_whose_job_meets_a_network_fault_prints_nothing(tmp_path):
    """`geosr batch -q` printed about 100 lines on stderr for one job whose server failed while it ran: each attempt's
    traceback (geosr's worker log) and Dask's "Compute Failed" error. A condition geosr names (a NetworkError) is now
    one line in the worker's log at info level, and Dask's report of it is left to the batch's results: the one
    line a failed batch gets, exit 1, the results name the NetworkError."""
    import subprocess
    import sys

    from tests.range_server import serving

    www = tmp_path / "www"
    www.mkdir()
    _scene(www / "lr.tif", 64, 64, seed=1)
    (tmp_path / "out").mkdir()
    with serving(www, "1") as url:  # the batch's check reads it once; the job's attempts get 503
        manifest = tmp_path / "m.json"
        manifest.write_text(json.dumps({"jobs": [{"id": "a", "lr": f"{url}/lr.tif", "output": "out/a.tif", "scale": 2,
                                                  "model": "bicubic"}]}))
        done = subprocess.run([sys.executable, "-m", "geosr", "batch", str(manifest), "-q", "--workers", "1",
                               "--retries", "1", "--dashboard", "none"], cwd=tmp_path, capture_output=True, text=True,
                              timeout=300)
    said = f"geosr: error: 1 failed of 1 job (each job's error: {tmp_path / 'm.results.jsonl'})\n"
    assert done.returncode == 1 and done.stdout == "" and done.stderr == said, done.stderr
    (row,) = [json.loads(x) for x in (tmp_path / "m.results.jsonl").read_text().splitlines() if '"id": "a"' in x]
    assert row["status"] == "failed" and row["error_type"] == "NetworkError", row


def test_distributed_s_cancel_race_on_ctrl_c_logs_nothing(caplog, monkeypatch):
    """CI saw Tornado's "Exception in callback ... sync.<locals>.cancel ... NameError" traceback around the batch's
    "interrupted" line: distributed's wait, interrupted before its coroutine starts, schedules a cancel that reads
    an unset variable. Reproduced here (the first wait raises, as Ctrl-C does); the batch drops that one record."""
    from distributed.utils import LoopRunner, sync

    from geosr.pipeline.batch.cluster import _drop_cancel_race

    def interrupted_once():
        runner = LoopRunner(asynchronous=False)
        runner.start()
        real_wait, first = threading.Event.wait, []

        def wait(self, timeout=None):  # the main thread's first wait is interrupted (other threads wait as ever)
            if threading.current_thread() is threading.main_thread() and not first:
                first.append(1)
                raise KeyboardInterrupt
            return real_wait(self, timeout)

        async def job():
            return 1

        gate = threading.Lock()  # the loop waits until the cancel is queued behind sync's coroutine, as in the race
        gate.acquire()
        runner.loop.add_callback(lambda: (gate.acquire(), gate.release()))
        monkeypatch.setattr(threading.Event, "wait", wait)
        with pytest.raises(KeyboardInterrupt):
            sync(runner.loop, job)
        monkeypatch.setattr(threading.Event, "wait", real_wait)
        gate.release()
        time.sleep(0.3)  # the cancel callback runs on the loop's thread
        runner.stop()
        records = [r for r in caplog.records if r.name == "tornado.application"]
        caplog.clear()
        return records

    # a batch run earlier in this process installed the filter: the test starts without it
    monkeypatch.setattr(logging.getLogger("tornado.application"), "filters", [])
    with caplog.at_level(logging.ERROR, logger="tornado.application"):
        assert any(isinstance(r.exc_info[1], NameError) for r in interrupted_once())  # the race is still there
        _drop_cancel_race()
        _drop_cancel_race()  # once per process
        assert sum(type(f).__name__ == "_CancelRace" for f in logging.getLogger("tornado.application").filters) == 1
        assert interrupted_once() == []


def test_ctrl_c_on_a_local_batch_stops_it_with_one_line(tmp_path):
    """A terminal's Ctrl-C reaches the whole process group: each local worker printed Dask's KeyboardInterrupt
    traceback (or died mid-import) and the scheduler logged broken connections, around geosr's own "interrupted".
    The workers now start with SIGINT blocked and the batch closes them: exit 130, one line."""
    import subprocess
    import sys

    for i in range(6):
        _scene(tmp_path / f"s{i}.tif", 64, 64, seed=i)
    cmd = [sys.executable, "-m", "geosr", "batch", str(tmp_path / "s*.tif"), "-o", str(tmp_path / "{stem}_x2.tif"),
           "-x", "2", "-m", "bicubic", "--workers", "2", "--dashboard", "none"]

    def own_group_default_sigint():
        os.setsid()
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=own_group_default_sigint)
    seen = []
    for line in proc.stderr:  # the cluster is up once the plan line names its workers
        seen.append(line)
        if "Dask workers" in line:
            break
    os.killpg(proc.pid, signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 130
    err = "".join(seen) + rest
    assert "Traceback" not in err and "distributed" not in err and "KeyboardInterrupt" not in err, err
    assert rest.strip().splitlines()[-1] == ("geosr: error: interrupted; run the same batch again to continue "
                                             "(finished jobs are skipped, the others resume)"), err


def test_one_model_serves_every_seed_in_a_worker_and_the_planner():
    """The models kept per worker (and by the planner) were keyed by the sampler with its seed, which no model reads
    (each run passes its own): a manifest of per-job seeds loaded and kept one more copy of the model per seed."""
    from geosr.config import SamplerConfig
    from geosr.pipeline.batch.plan import _ClientModels
    from geosr.pipeline.batch.tasks import worker_model

    loaded = {id(worker_model("default", device="cpu", sampler=SamplerConfig(seed=s))) for s in range(3)}
    planner = _ClientModels()
    checked = {id(planner.get("default", sampler=SamplerConfig(seed=s))) for s in range(3)}
    assert len(loaded) == len(checked) == 1
    other_steps = worker_model("default", device="cpu", sampler=SamplerConfig(seed=5, steps=2))
    assert id(other_steps) not in loaded  # what the model does depend on still keeps models apart


def test_each_worker_thread_has_its_own_model(tmp_path):
    """One model served every thread of a worker: the lite experts blend their weights into one module per scene,
    so on a worker of 3 threads scenes of different sharpness took each other's weights (half a scene wrong, up
    to 255 DN, exit 0, and its record then marked it up to date). Each thread now keeps its own (asserted: the
    race is timing-dependent), and scenes run on such a worker give upscale's pixels."""
    from dask.distributed import Client

    from geosr.pipeline.batch.tasks import worker_model

    got: dict[str, int] = {}

    def load(name: str) -> None:
        got[name] = id(worker_model("lite", device="cpu"))

    threads = [threading.Thread(target=load, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got["a"] != got["b"] and id(worker_model("lite", device="cpu")) == id(worker_model("lite", device="cpu"))
    # scenes of other sharpness (and so other expert mixes) at once on one worker of 3 threads
    scenes = []
    for i, sigma in enumerate((0.0, 1.5, 3.0)):
        data = (smooth_field(3, 96, 96, seed=i) * 255).astype(np.uint8)
        if sigma:
            from scipy.ndimage import gaussian_filter

            data = np.stack([gaussian_filter(b.astype(float), sigma) for b in data]).round().astype(np.uint8)
        scenes.append(make_raster(tmp_path / f"s{i}.tif", data))
    manifest = tmp_path / "jobs.csv"
    manifest.write_text("lr,out\n" + "".join(f"{s.name},out_{s.stem}.tif\n" for s in scenes))
    with Client(processes=False, n_workers=1, threads_per_worker=3, dashboard_address=None) as client:
        batch(str(manifest), x=4, model="lite", client=client)
    for s in scenes:
        upscale(str(s), output=str(tmp_path / f"solo_{s.stem}.tif"), scale=4, model="lite")
        with rasterio.open(tmp_path / f"out_{s.stem}.tif") as a, rasterio.open(tmp_path / f"solo_{s.stem}.tif") as b:
            assert np.array_equal(a.read(), b.read()), s.name


@pytest.mark.parametrize("greeting", [None, b"SSH-2.0-OpenSSH_9.6\r\n"])
def test_a_scheduler_address_where_another_service_listens_is_one_sentence_in_time(tmp_path, monkeypatch, greeting):
    """`--scheduler` at a port where a service that is no Dask scheduler listens: one that says nothing first (an
    HTTP server: the dashboard's 8787 for 8786) made the batch wait for ever; one that greets first (sshd) was
    "internal error: MemoryError: Unable to allocate 2.82 EiB" (found in review)."""
    import socket
    import threading
    import time

    from geosr.errors import NetworkError
    from geosr.pipeline.batch import cluster

    monkeypatch.setattr(cluster, "SCHEDULER_TIMEOUT_S", 1)
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                accepted.append(conn)
                if greeting:
                    conn.sendall(greeting)

    threading.Thread(target=serve, daemon=True).start()
    _scene(tmp_path / "a.tif", 20, 18, 1)
    address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    t0 = time.monotonic()
    try:
        with pytest.raises(NetworkError, match=f"scheduler {address}: no Dask scheduler answers there \\((it "
                                               "accepted the connection, but nothing answered|what answered is no)"):
            batch(str(tmp_path / "*.tif"), out=str(tmp_path / "{stem}_x2.tif"), x=2, model="bicubic",
                  scheduler=address, results=str(tmp_path / "r.jsonl"))
    finally:
        server.close()
        for conn in accepted:  # (a handshake still waiting ends)
            conn.close()
    assert time.monotonic() - t0 < 30 and not (tmp_path / "a_x2.tif").exists()


def test_make_dirs_makes_no_folder_when_the_cluster_never_comes_up(tmp_path, monkeypatch):
    """--make-dirs made every job's output folder before connecting: a batch whose scheduler never answered
    stopped at once and left the folders behind."""
    from geosr.errors import GeoSRError
    from geosr.pipeline.batch import cluster

    monkeypatch.setattr(cluster, "SCHEDULER_TIMEOUT_S", 1)
    _scene(tmp_path / "a.tif", 20, 18, 1)
    with pytest.raises(GeoSRError, match="no Dask"):
        batch(str(tmp_path / "*.tif"), out=str(tmp_path / "new" / "deep" / "a.tif"), x=2, model="bicubic",
              make_dirs=True, scheduler="tcp://127.0.0.1:1", results=str(tmp_path / "r.jsonl"))
    assert not (tmp_path / "new").exists()
