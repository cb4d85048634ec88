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
    # the sidecar's own record lists its classes as the change classes are listed (`geosr info --json`)
    assert geosr_record(str(side))["provenance_classes"] == [{"value": i, "name": n} for i, n in enumerate(CLASSES)]
    with pytest.raises(OutputExistsError, match=r"out\.(stac\.json|provenance\.tif): already exists"):
        out.unlink()  # the output is gone, its sidecar is not: a new run must not replace it silently
        upscale(scene["lr"], ref=scene["ref"], cd=scene["cd"], scale=4, model="reference-paste", output=out)


def test_the_outputs_bytes_do_not_depend_on_how_its_path_is_spelled(scene, tmp_path, monkeypatch):
    """The GEOSR_PROVENANCE tag held the sidecar's path as typed: one job written as d1/out.tif and as d2/out.tif
    gave other bytes (and a local path went into a file that may be shared). It names the sidecar's file."""
    outputs = []
    for folder in ("d1", "d2"):
        (tmp_path / folder).mkdir()
        out = tmp_path / folder / "out.tif"
        upscale(scene["lr"], ref=scene["ref"], cd=scene["cd"], scale=4, model="reference-paste", output=out)
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    with rasterio.open(tmp_path / "d1" / "out.tif") as ds:
        assert json.loads(ds.tags()["GEOSR_PROVENANCE"])["path"] == "out.provenance.tif"


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


@pytest.mark.parametrize("dtype, changed_value", [("int32", 1), ("uint32", 1), ("int64", 1), ("int8", 1),
                                                  ("int16", -1)])
def test_masks_of_every_integer_type_and_negative_classes_keep_their_classes(scene, tmp_path, raster_factory, dtype,
                                                                             changed_value):
    """A mask's classes are looked up by the declared values: an int32 mask needs no table of 2^31 entries (it took
    19 GB), int8 and uint32/int64 masks ran into index errors, and a class declared as -1 was read as 0
    ("unchanged"), pasting the reference where the user marked change. The table is a JSON file (a `.json` name
    was taken for a STAC item and refused)."""
    base = upscale(scene["lr"], ref=scene["ref"], cd=scene["cd"], scale=4, model="reference-paste",
                   output=tmp_path / "base.tif")
    with rasterio.open(scene["cd"]) as ds:
        cd = ds.read(1).astype(dtype)
    cd[cd == 1] = changed_value
    mask = raster_factory(f"cd_{dtype}.tif", cd[None], transform=LR_T)
    table = tmp_path / "table.json"
    table.write_text(json.dumps({"name": "mine", "classes": [
        {"value": 0, "name": "same", "changed": False}, {"value": changed_value, "name": "new", "changed": True}]}))
    r = upscale(scene["lr"], ref=scene["ref"], cd=mask, cd_classes=str(table), scale=4, model="reference-paste",
                output=tmp_path / "out.tif")
    assert r.provenance["shares"] == base.provenance["shares"]
    with rasterio.open(tmp_path / "out.provenance.tif") as a, rasterio.open(tmp_path / "base.provenance.tif") as b:
        np.testing.assert_array_equal(a.read(1), b.read(1))


def test_a_change_mask_without_a_reference_is_refused(scene, tmp_path):
    from geosr.errors import OptionError

    with pytest.raises(OptionError, match="no reference was given"):
        upscale(scene["lr"], cd=scene["cd"], scale=4, model="reference-paste", output=tmp_path / "o.tif")
    assert not list(tmp_path.glob("o*"))
    upscale(scene["lr"], cd=scene["cd"], scale=4, model="reference-paste", ignore_unused=True,
            output=tmp_path / "o.tif")


@pytest.mark.parametrize("given, says", [({"ref_bands": "1,2,3"}, "ref_bands 1,2,3: picks the reference's bands"),
                                         ({"coregister": False}, "co-registration is turned off, and no reference")])
def test_reference_settings_without_a_reference_are_refused(scene, tmp_path, given, says):
    """`--ref-bands` or `--no-coregister` without `--ref` (a reference left out by mistake) ran silently."""
    from geosr.errors import OptionError

    with pytest.raises(OptionError, match=says):
        upscale(scene["lr"], scale=2, model="bicubic", output=tmp_path / "o.tif", **given)
    assert not list(tmp_path.glob("o*"))
    upscale(scene["lr"], scale=2, model="bicubic", ignore_unused=True, output=tmp_path / "o.tif", **given)


def test_a_south_up_reference_is_placed_like_its_north_up_copy(scene, tmp_path, raster_factory):
    """A reference stored south-up (positive y pixel size) was refused as "does not overlap the scene"."""
    with rasterio.open(scene["ref"]) as ds:
        data, t = ds.read(), ds.transform
    south_up = raster_factory("ref_su.tif", data[:, ::-1].copy(),
                              transform=Affine(t.a, 0, t.c, 0, -t.e, t.f + t.e * data.shape[1]))
    kw = dict(cd=scene["cd"], scale=4, model="reference-paste", coregister=False)
    upscale(scene["lr"], ref=scene["ref"], output=tmp_path / "a.tif", **kw)
    upscale(scene["lr"], ref=south_up, output=tmp_path / "b.tif", **kw)
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        north, south = a.read()[:, 1:63].astype(float), b.read().astype(float)
    # in place (GDAL's average onto the LR grid, which the harmonization is fitted on, differs by a level between
    # the two layouts: 1.2 levels apart on average), not a row off (5.8)
    assert np.abs(north - south[:, 1:63]).mean() < 2.0
    assert np.abs(north - south[:, 0:62]).mean() > 4.0 and np.abs(north - south[:, 2:64]).mean() > 4.0


def test_a_reference_with_an_alpha_band_takes_it_as_its_validity(scene, tmp_path, raster_factory):
    """An RGBA reference (the usual orthophoto export) crashed the warp ("the VRT already has an alpha band")."""
    with rasterio.open(scene["ref"]) as ds:
        data = ds.read()
    alpha = np.full((1, *data.shape[1:]), 255, np.uint8)
    alpha[:, :, :64] = 0  # the reference's west half transparent
    rgba = raster_factory("ref_rgba.tif", np.concatenate([data, alpha]), transform=REF_T, photometric="RGB",
                          alpha="YES")
    upscale(scene["lr"], ref=rgba, cd=scene["cd"], scale=4, model="reference-paste", output=tmp_path / "o.tif")
    with rasterio.open(tmp_path / "o.provenance.tif") as ds:
        got = ds.read(1)
    assert (got[:64, :64] == 3).all()  # transparent: no reference there
    assert (got[:64, 64:112] != 3).all() and (got[:64, 64:112] == 1).any()


def test_no_reference_is_claimed_beside_a_finer_references_edge(scene, tmp_path, raster_factory):
    """A reference finer than the output (averaged onto it) whose west edge lies on a pixel edge: GDAL's average
    warp gave the output column west of it full alpha, so that column took smeared reference values and was
    reported as "reference detail used"."""
    ref = (smooth_field(3, 128, 176, 5) * 200 + 20).astype(np.uint8)  # 5 m pixels from output column 40 on
    finer = raster_factory("ref5.tif", ref, transform=Affine(5.0, 0, 500400.0, 0, -5.0, 5000000.0))
    upscale(scene["lr"], ref=finer, cd="none", coregister=False, scale=4, model="reference-paste",
            output=tmp_path / "o.tif")
    with rasterio.open(tmp_path / "o.provenance.tif") as ds:
        got = ds.read(1)
    assert (got[:64, :40] == 3).all() and (got[:64, 40:112] == 1).all()


def test_a_gap_in_one_band_of_the_reference_is_no_reference(scene, tmp_path, raster_factory):
    """A reference pixel with one band at nodata (Landsat 7's stripes) was pasted with that band's window mean, a
    flat patch, and reported as "reference detail used"; the LR's own band does better there."""
    with rasterio.open(scene["ref"]) as ds:
        data = ds.read()
    data[0, :, :64] = 0  # band 1 without data in the reference's west half, bands 2 and 3 valid
    gap = raster_factory("ref_gap.tif", data, transform=REF_T, nodata=0)
    upscale(scene["lr"], ref=gap, cd="none", coregister=False, scale=4, model="reference-paste",
            output=tmp_path / "o.tif")
    upscale(scene["lr"], scale=4, model="bicubic", output=tmp_path / "b.tif")
    with rasterio.open(tmp_path / "o.provenance.tif") as p, rasterio.open(tmp_path / "o.tif") as o, \
            rasterio.open(tmp_path / "b.tif") as b:
        prov, out, bic = p.read(1), o.read(), b.read()
    assert (prov[:64, :64] == 3).all() and (prov[:64, 64:112] == 1).all()
    np.testing.assert_array_equal(out[:, :64, :64], bic[:, :64, :64])


def test_reference_paste_without_a_reference_is_refused(scene, tmp_path):
    """reference-paste without a reference was bicubic, silently (exit 0, no warning)."""
    from typer.testing import CliRunner

    from geosr.cli.app import app

    out = tmp_path / "o.tif"
    res = CliRunner().invoke(app, ["upscale", str(scene["lr"]), "-x", "2", "-m", "reference-paste", "-o", str(out)])
    assert res.exit_code == 2 and not out.exists()
    assert "model reference-paste: takes its detail from a reference, and no reference was given" in res.output
    assert "--ref" in res.output and "--ignore-unused" in res.output
    bicubic = upscale(scene["lr"], scale=2, model="bicubic", output=tmp_path / "b.tif")
    paste = upscale(scene["lr"], scale=2, model="reference-paste", ignore_unused=True, output=out)
    with rasterio.open(bicubic.output) as a, rasterio.open(paste.output) as b:
        np.testing.assert_array_equal(a.read(), b.read())


def test_the_summary_names_the_change_mask_given_or_to_be_detected(scene, tmp_path):
    """The plain summary said nothing of a change mask of one's own, nor that a dry run with a reference will
    detect one (only `--json` had `change_detection`)."""
    from typer.testing import CliRunner

    from geosr.cli.app import app

    common = ["upscale", str(scene["lr"]), "--ref", str(scene["ref"]), "-x", "4", "-m", "reference-paste"]
    res = CliRunner().invoke(app, [*common, "--cd", str(scene["cd"]), "-o", str(tmp_path / "o.tif")])
    assert res.exit_code == 0, res.output
    assert f"change mask: {scene['cd']} (given)" in res.output
    res = CliRunner().invoke(app, [*common, "-o", str(tmp_path / "d.tif"), "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "change mask: to be detected against the reference when the run starts (--cd auto)" in res.output
    # a dry run with a mask of one's own names it too (it had no provenance to go by), also with co-registration
    # off; a model that uses no reference, run with `--ignore-unused`, reads no mask
    for extra in ([], ["--no-coregister"]):
        res = CliRunner().invoke(app, [*common, "--cd", str(scene["cd"]), "--dry-run", *extra])
        assert res.exit_code == 0, res.output
        assert f"change mask: {scene['cd']} (given)" in res.output
    res = CliRunner().invoke(app, [*common[:-1], "bicubic", "--cd", str(scene["cd"]), "--ignore-unused",
                                   "--dry-run", "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["change_mask"] is None, res.output
    # no --cd: detected (auto), so no mask was given; `change_mask` said "None", a string
    res = CliRunner().invoke(app, [*common, "-o", str(tmp_path / "j.tif"), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["change_mask"] is None, res.output


def test_a_sidecar_over_an_input_is_named_as_the_sidecar(scene, tmp_path):
    """`-o o.tif` whose provenance raster would go over the reference (o.provenance.tif) was refused as if the
    output itself were the reference."""
    import shutil

    from typer.testing import CliRunner

    from geosr.cli.app import app

    ref = tmp_path / "o.provenance.tif"
    shutil.copy(scene["ref"], ref)
    res = CliRunner().invoke(app, ["upscale", str(scene["lr"]), "--ref", str(ref), "-x", "4", "-m", "reference-paste",
                                   "-o", str(tmp_path / "o.tif")])
    assert res.exit_code == 2 and not (tmp_path / "o.tif").exists()
    assert "o.provenance.tif (where the output's provenance raster goes): is the reference of this run" in res.output


def test_a_change_mask_whose_nodata_is_a_class_is_worth_a_word(scene, raster_factory, tmp_path):
    """A binary mask with nodata 0 (as GIS tools often set) reads every "unchanged" pixel as no data, so unknown and
    the model's own: the reference was used nowhere, without a word. The run says so, naming the mask."""
    cd = np.zeros((1, 32, 32), np.uint8)
    cd[0, 4:8, 8:16] = 1
    masked = raster_factory("cd0.tif", cd, transform=LR_T, nodata=0)
    r = upscale(scene["lr"], ref=scene["ref"], cd=masked, scale=4, model="reference-paste", output=tmp_path / "a.tif")
    said = [w for w in r.warnings if "nodata value 0 is the class 'unchanged'" in w]
    assert len(said) == 1 and said[0].startswith(f"{masked}:") and "gdal_edit.py -unsetnodata" in said[0], said
    r = upscale(scene["lr"], ref=scene["ref"], cd=scene["cd"], scale=4, model="reference-paste",
                output=tmp_path / "b.tif")
    assert not [w for w in r.warnings if "nodata value" in w]


def test_geosr_s_own_detected_mask_is_read_without_a_nodata_warning(scene, tmp_path):
    """`geosr detect-changes` writes 255 (unknown) as nodata, which the binary table names "changed (255)": given to
    `upscale --cd`, the file its help calls ready for it drew a warning to unset its nodata value. A changed class
    read as no data is treated alike (the model's own pixels), so only an unchanged one is worth a word."""
    from geosr.pipeline.detect_changes import detect_changes

    mask = detect_changes(scene["lr"], ref=scene["ref"], output=tmp_path / "detected.tif").path
    with rasterio.open(mask) as ds:
        assert ds.nodata == 255
    r = upscale(scene["lr"], ref=scene["ref"], cd=mask, scale=4, model="reference-paste", output=tmp_path / "a.tif")
    assert not [w for w in r.warnings if "nodata value" in w], r.warnings


def test_a_mask_finer_than_the_output_keeps_every_change(scene, tmp_path, raster_factory):
    """A change mask finer than the output was read by the mode of each output pixel's mask pixels: isolated changed
    pixels and thin lines were lost (0.8% of 1-px changes kept), and the stale reference pasted there under
    "reference detail used" (found in review). An output pixel is changed where any of its mask pixels is."""
    cd = np.zeros((1, 128, 256), np.uint8)  # 5 m: 2 x 2 mask pixels per 10 m output pixel
    cd[0, ::8, ::8] = 1  # isolated changed pixels
    cd[0, 101, :] = 1  # a line one mask pixel thin, straddling no output row's middle
    mask = raster_factory("cd_fine.tif", cd, transform=Affine(5.0, 0, 500000.0, 0, -5.0, 5000000.0))
    got = _provenance_with(scene, tmp_path, mask)
    expected = np.ones_like(got)
    expected[::4, ::4] = 2
    expected[50, :] = 2
    np.testing.assert_array_equal(got, expected)


def test_the_classes_the_model_is_given_say_changed_wherever_the_provenance_does(scene, tmp_path, raster_factory,
                                                                                 monkeypatch):
    """The diffusion model reads the change classes (``WindowStack.change``), the provenance and reference-paste the
    flag (``changed``): an output pixel changed by a finer mask's single changed pixel, or by a product's cloud flags,
    kept its mode's class "unchanged" for the model, unseen by the tests of the flag (found by mutation testing)."""
    from geosr.pipeline import scene as scene_module

    cd = np.zeros((1, 128, 256), np.uint8)
    cd[0, ::8, ::8] = 1  # isolated changed pixels: each output pixel's mode is unchanged
    mask = raster_factory("cd_fine.tif", cd, transform=Affine(5.0, 0, 500000.0, 0, -5.0, 5000000.0))
    stacks, read = [], scene_module.Scene.read_stack

    def kept(self, *args, **kwargs):
        stacks.append(read(self, *args, **kwargs))
        return stacks[-1]

    monkeypatch.setattr(scene_module.Scene, "read_stack", kept)
    flagged = np.zeros((64, 128), bool)
    flagged[40:48, 100:120] = True  # a cloud the LR product's own mask flags, over unchanged mask pixels

    def untrusted(self, crs, transform, w, h, **_):
        rows, cols = np.mgrid[0:h, 0:w]
        x = transform.a * (cols + 0.5) + transform.b * (rows + 0.5) + transform.c
        y = transform.d * (cols + 0.5) + transform.e * (rows + 0.5) + transform.f
        r, c = ((5000000.0 - y) // 10).astype(int), ((x - 500000.0) // 10).astype(int)
        inside = (r >= 0) & (r < 64) & (c >= 0) & (c < 128)
        return np.where(inside, flagged[r.clip(0, 63), c.clip(0, 127)], False)

    monkeypatch.setattr(scene_module.Scene, "untrusted", untrusted)
    upscale(scene["lr"], ref=scene["ref"], cd=mask, scale=4, model="reference-paste", output=tmp_path / "out.tif")
    from geosr.conditioning.changes import BINARY

    said_changed = np.array([c.changed for c in BINARY.classes])
    for stack in stacks:
        assert stack.changed.any()
        np.testing.assert_array_equal(said_changed[stack.change], stack.changed)


def _provenance_with(scene, tmp_path, mask):
    """The provenance classes of a reference-paste x4 run with the change mask ``mask``, where there is a reference
    and LR data."""
    upscale(scene["lr"], ref=scene["ref"], cd=mask, scale=4, model="reference-paste", output=tmp_path / "out.tif")
    with rasterio.open(tmp_path / "out.provenance.tif") as ds:
        return ds.read(1)[:64, :112]


@pytest.mark.parametrize("kind", ["nodata", "internal mask"])
def test_a_finer_mask_s_pixels_without_data_make_their_output_pixel_unknown(scene, tmp_path, raster_factory, kind):
    """An output pixel over mask pixels of which some have no data read as its pixels with data say (GDAL's warps
    skip no data): 1 unchanged pixel among 15 without data pasted the reference there, where 15 pixels of the class
    255 made it changed (found in review). Now unknown (changed) either way. And a mask whose no data is an internal
    mask, not a nodata value, was refused: "holds values 9 that the 'binary' change class table does not declare"."""
    cd = np.zeros((1, 128, 256), np.uint8)  # 5 m: 2 x 2 mask pixels per 10 m output pixel
    cd[0, ::8, ::8] = 9  # one mask pixel of four without data, under every fourth output pixel
    transform = Affine(5.0, 0, 500000.0, 0, -5.0, 5000000.0)
    if kind == "nodata":
        mask = raster_factory("cd_fine.tif", cd, transform=transform, nodata=9)
    else:
        mask = raster_factory("cd_fine.tif", cd, transform=transform)
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(mask, "r+") as ds:
            ds.write_mask(np.where(cd[0] == 9, 0, 255).astype(np.uint8))
    got = _provenance_with(scene, tmp_path, mask)
    expected = np.ones_like(got)
    expected[::4, ::4] = 2
    np.testing.assert_array_equal(got, expected)


def test_a_finer_mask_whose_table_puts_unchanged_above_changed_is_read_by_mode_with_a_word(scene, tmp_path,
                                                                                          raster_factory):
    """The largest value under an output pixel says whether one changed only where changed values are the larger:
    another table keeps the mode, and says a small change may be lost."""
    table = tmp_path / "inverted.json"
    table.write_text(json.dumps({"name": "inverted", "classes": [{"value": 0, "name": "changed", "changed": True},
                                                                 {"value": 1, "name": "same", "changed": False}]}))
    cd = np.ones((1, 128, 256), np.uint8)
    cd[0, ::8, ::8] = 0  # isolated changed pixels, lost to the mode
    mask = raster_factory("cd_inv.tif", cd, transform=Affine(5.0, 0, 500000.0, 0, -5.0, 5000000.0))
    r = upscale(scene["lr"], ref=scene["ref"], cd=mask, cd_classes=str(table), scale=4, model="reference-paste",
                output=tmp_path / "out.tif")
    assert any("a change smaller than an output pixel may be lost" in w for w in r.warnings), r.warnings
    with rasterio.open(tmp_path / "out.provenance.tif") as ds:
        assert (ds.read(1)[:64, :112] == 1).all()


@pytest.mark.parametrize("scale", [2, 8])
def test_the_sidecar_is_classified_in_bands_of_bounded_size_whatever_the_band(scene, tmp_path, monkeypatch, scale):
    """The pass read the reference for 1 << 24 LR rows' worth at a time (8.4M output pixels at x2, their stack in
    float64): the run's peak memory, up to twice its estimate (found in review). Each band now holds at most
    BAND_PIXELS output pixels (one LR row at least), and the classes do not depend on the band."""
    from geosr.pipeline import provenance

    seen: list[int] = []
    real = provenance._bands

    def counted(sc, counts):
        for row, grid, classes in real(sc, counts):
            seen.append(classes.size)
            yield row, grid, classes

    monkeypatch.setattr(provenance, "_bands", counted)
    sides = {}
    for band in (1 << 24, 4 * 32 * scale * scale):  # one band for all, and bands of 4 LR rows (32 s output px wide)
        monkeypatch.setattr(provenance, "BAND_PIXELS", band)
        seen.clear()
        out = tmp_path / f"o{band}.tif"
        upscale(scene["lr"], ref=scene["ref"], cd=scene["cd"], scale=scale, model="reference-paste", output=out)
        assert sum(seen) == (32 * scale) ** 2 and max(seen) <= max(band, 32 * scale * scale)
        with rasterio.open(tmp_path / f"o{band}.provenance.tif") as ds:
            sides[band] = ds.read(1)
    assert len({s.tobytes() for s in sides.values()}) == 1 and seen == [4 * 32 * scale * scale] * 8
