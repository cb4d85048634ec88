"""The provenance sidecar: classes against a constructed scene, shares, tags, and when it is (not) written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from affine import Affine
from tests.conftest import smooth_field

from geosr import upscale
from geosr.errors import OutputExistsError
from geosr.io.describe import geosr_record
from geosr.pipeline.provenance import CLASSES, classify

LR_T = Affine(40.0, 0, 500000.0, 0, -40.0, 5000000.0)
REF_T = Affine(10.0, 0, 500000.0, 0, -10.0, 5000000.0)


def test_classify_follows_validity_and_change():
    lr_valid = np.array([[True, True, True, False]])
    ref_valid = np.array([[True, True, False, True]])
    changed = np.array([[False, True, False, False]])
    assert classify(lr_valid, ref_valid, changed).tolist() == [[1, 2, 3, 0]]


@pytest.fixture
def scene(raster_factory):
    """A 32 x 32 LR (40 m, nodata in its last 4 columns), a reference over its top half (10 m), a change mask
    marking LR rows 4-7 x columns 8-15 as changed."""
    lr = (smooth_field(3, 32, 32, 1) * 200 + 20).astype(np.uint8)
    lr[:, :, 28:] = 0
    ref = np.zeros((3, 64, 128), np.uint8)
    ref[:] = (smooth_field(3, 64, 128, 2) * 200 + 20).astype(np.uint8)
    cd = np.zeros((1, 32, 32), np.uint8)
    cd[0, 4:8, 8:16] = 1
    return {"lr": raster_factory("lr.tif", lr, transform=LR_T, nodata=0),
            "ref": raster_factory("ref.tif", ref, transform=REF_T),
            "cd": raster_factory("cd.tif", cd, transform=LR_T)}


def test_the_sidecar_holds_the_expected_classes_and_shares(scene, tmp_path):
    out = tmp_path / "out.tif"
    r = upscale(scene["lr"], ref=scene["ref"], cd=scene["cd"], scale=4, model="reference-paste", output=out)
    side = tmp_path / "out.provenance.tif"
    with rasterio.open(side) as ds, rasterio.open(out) as o:
        got = ds.read(1)
        assert (ds.crs, ds.transform, ds.shape) == (o.crs, o.transform, o.shape)
        assert ds.colormap(1)[1][:3] != ds.colormap(1)[2][:3]
        tags = o.tags()
    expected = np.full((128, 128), 3, np.uint8)  # no reference below row 16 (LR) = 64 (HR)
    expected[:64] = 1
    expected[16:32, 32:64] = 2  # changed, with the reference
    expected[:, 112:] = 0  # the LR's nodata
    np.testing.assert_array_equal(got, expected)
    shares = r.provenance["shares"]
    for i, name in enumerate(CLASSES):
        assert shares[name] == pytest.approx((expected == i).mean(), abs=1e-6)
    assert json.loads(tags["GEOSR_PROVENANCE"])["shares"] == shares
    assert geosr_record(str(out))["provenance"]["shares"] == shares
    with pytest.raises(OutputExistsError, match="provenance"):
        out.unlink()  # the output is gone, its sidecar is not: a new run must not replace it silently
        upscale(scene["lr"], ref=scene["ref"], cd=scene["cd"], scale=4, model="reference-paste", output=out)


def test_no_sidecar_without_a_reference_or_for_a_model_that_ignores_it(scene, tmp_path):
    a = upscale(scene["lr"], scale=4, model="bicubic", output=tmp_path / "a.tif")
    b = upscale(scene["lr"], ref=scene["ref"], scale=4, model="bicubic", ignore_unused=True,
                output=tmp_path / "b.tif")
    assert a.provenance is None and b.provenance is None
    assert not list(tmp_path.glob("*.provenance.tif"))


def test_a_run_killed_while_assembling_leaves_no_sidecar_and_resumes(scene, tmp_path, monkeypatch):
    import geosr.pipeline.upscale as up

    out = tmp_path / "out.tif"
    real = up.assemble

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(up, "assemble", killed)
    with pytest.raises(KeyboardInterrupt):
        upscale(scene["lr"], ref=scene["ref"], cd=scene["cd"], scale=4, model="reference-paste", output=out)
    assert not out.exists() and not (tmp_path / "out.provenance.tif").exists()
    monkeypatch.setattr(up, "assemble", real)
    r = upscale(scene["lr"], ref=scene["ref"], cd=scene["cd"], scale=4, model="reference-paste", output=out,
                resume=True)
    assert r.resumed_rows > 0 and (tmp_path / "out.provenance.tif").exists()


def test_an_earlier_runs_sidecar_goes_with_the_output_it_described(scene, tmp_path):
    """A run without a reference over an output that had one: refused without `overwrite` (the sidecar is not
    replaced silently), and with it the old sidecar, which describes pixels that are gone, is removed."""
    out = tmp_path / "out.tif"
    upscale(scene["lr"], ref=scene["ref"], cd=scene["cd"], scale=4, model="reference-paste", output=out)
    side = tmp_path / "out.provenance.tif"
    assert side.exists() and (tmp_path / "out.provenance.tif.aux.xml").exists()
    out.unlink()
    with pytest.raises(OutputExistsError, match="provenance"):
        upscale(scene["lr"], scale=4, model="bicubic", output=out)
    assert side.exists() and not out.exists()
    r = upscale(scene["lr"], scale=4, model="bicubic", output=out, overwrite=True)
    assert r.provenance is None and out.exists()
    assert not side.exists() and not (tmp_path / "out.provenance.tif.aux.xml").exists()
    mine = tmp_path / "mine.provenance.tif"  # a file of that name that geosr did not write stays
    mine.write_bytes(b"not geosr's")
    upscale(scene["lr"], scale=4, model="bicubic", output=tmp_path / "mine.tif", overwrite=True)
    assert mine.read_bytes() == b"not geosr's"
