"""The dry run's estimate of a job's peak memory (geosr.pipeline.job._memory_mb; bench/bench_memory.py measures it
against real peaks)."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine

from conftest import make_raster, smooth_field


def _fixed_scene(tmp_path, monkeypatch):
    """A 60 x 60 LR and a reference 8x finer, with this process's memory held constant so that two plans compare."""
    from geosr.pipeline import job as job_module

    class Fixed:
        def memory_info(self):
            return type("M", (), {"rss": 300 * 2**20})()

    monkeypatch.setattr(job_module.psutil, "Process", lambda *a: Fixed())
    lr = make_raster(tmp_path / "lr.tif", (smooth_field(3, 60, 60) * 200).astype(np.uint8))
    ref = make_raster(tmp_path / "ref.tif", (smooth_field(3, 480, 480, seed=2) * 200).astype(np.uint8),
                      transform=Affine(3.75, 0, 500000.0, 0, -3.75, 5000000.0))
    return lr, ref


def test_the_memory_estimate_counts_only_the_inputs_a_run_reads(tmp_path, monkeypatch):
    """The dry run's memory estimate counted a reference's and a change mask's stacks for every window, read or not
    (88 B per HR pixel of a batch: 1.2 GB of a lite x8 run whose peak was 1.5 GB). An absent input holds no memory:
    a reference adds its float bands and validity, a change mask its classes and flags."""
    from geosr.pipeline.job import plan_upscale

    lr, ref = _fixed_scene(tmp_path, monkeypatch)
    est = {}
    for name, extra in (("none", {}), ("ref", {"ref": ref, "cd": "none"}), ("ref+cd", {"ref": ref})):
        with plan_upscale(str(lr), output=None, dry_run=True, model="lite", scale=8, **extra) as job:
            est[name] = job.summary["memory_mb"]
            side = (job.plan.size + 2 * job.sr.halo) * 8
            n = job.plan.n_cols
    assert est["ref"] - est["none"] == pytest.approx(n * side**2 * (3 * 4 + 1) / 2**20, rel=1e-6)
    assert est["ref+cd"] - est["ref"] == pytest.approx(n * side**2 * 9 / 2**20, rel=1e-6)


def test_a_reference_given_to_a_model_that_never_reads_it_adds_no_memory(tmp_path, monkeypatch):
    """With `ignore_unused`, a classical model's run reads no reference and no mask (nothing is co-registered or
    detected for nothing), yet the estimate counted their stacks for every window of the batch."""
    from geosr.pipeline.job import plan_upscale

    lr, ref = _fixed_scene(tmp_path, monkeypatch)
    est = []
    for extra in ({}, {"ref": ref, "ignore_unused": True}):
        with plan_upscale(str(lr), output=None, dry_run=True, model="bicubic", scale=8, **extra) as job:
            est.append(job.summary["memory_mb"])
    assert est[1] == est[0]


def test_the_output_s_nodata_share_is_read_in_rows_of_bounded_size():
    """After the model finished, the nodata share read 16.7M LR pixels of every band at once (13 bands: a 5.9 GB
    peak beyond the estimate); its rows now hold about 2M values of all bands, and every row is counted."""
    from types import SimpleNamespace

    import numpy as np

    from geosr.pipeline.upscale import nodata_share

    reads: list[int] = []

    def lr_validity(r0: int, r1: int) -> np.ndarray:
        reads.append((r1 - r0) * 4000 * 13)
        valid = np.ones((r1 - r0, 4000), bool)
        valid[:, :1000] = False
        return valid

    scene = SimpleNamespace(area=SimpleNamespace(height=4000, width=4000), bands=tuple(range(1, 14)),
                            lr_validity=lr_validity)
    assert nodata_share(scene) == 0.25
    assert max(reads) <= 1 << 21 and sum(reads) == 4000 * 4000 * 13
