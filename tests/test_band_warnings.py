"""A warning when the selected bands are not the bands the model was trained on (issue 20.6)."""

from __future__ import annotations

import json

import numpy as np
import torch

from geosr import upscale
from geosr.io.rasters import band_roles, inspect_raster
from geosr.models.backbone import BackboneConfig, build_backbone
from geosr.models.backbone_checkpoint import save_backbone


def test_false_colour_into_an_rgb_model_is_warned_about(raster_factory, tmp_path):
    torch.manual_seed(0)
    model = save_backbone(build_backbone(BackboneConfig(dim=8, blocks=1, levels=2, scales=(2,))),
                          tmp_path / "rgb.safetensors", name="rgb")  # band_names red, green, blue
    arr = np.random.default_rng(0).integers(10, 200, (4, 16, 16)).astype(np.uint8)
    src = raster_factory("s2.tif", arr, descriptions=("B02", "B03", "B04", "B08"))
    assert band_roles(inspect_raster(str(src)), (4, 3, 2)) == ("nir", "red", "green")
    from geosr.io.rasters import parse_bands

    s2 = inspect_raster(str(raster_factory("s2_5.tif", np.zeros((5, 4, 4), np.uint8),
                                           descriptions=("B02", "B03", "B04", "B05", "B08"))))
    assert parse_bands("rededge,red edge,nir,red", s2) == (4, 4, 5, 3)  # STAC's common name as well
    false = upscale(src, output=tmp_path / "f.tif", scale=2, model=str(model), bands="B08,B04,B03")
    assert len(false.warnings) == 1 and "band 4 is nir" in false.warnings[0] and "band 3 is red" in false.warnings[0]
    true = upscale(src, output=tmp_path / "t.tif", scale=2, model=str(model), bands="B04,B03,B02")
    assert true.warnings == []
    plain = upscale(raster_factory("plain.tif", arr[:3]), output=tmp_path / "p.tif", scale=2, model=str(model))
    assert plain.warnings == []  # bands that say nothing about themselves: nothing to warn about


def test_a_single_band_reference_sharpens_every_band(raster_factory, tmp_path):
    from affine import Affine

    lr = np.random.default_rng(1).integers(10, 200, (3, 16, 16)).astype(np.uint8)
    pan = np.random.default_rng(2).integers(10, 200, (1, 64, 64)).astype(np.uint8)
    src = raster_factory("lr.tif", lr, transform=Affine(40, 0, 500000, 0, -40, 5000000))
    ref = raster_factory("pan.tif", pan, transform=Affine(10, 0, 500000, 0, -10, 5000000))
    r = upscale(src, ref=ref, cd="none", output=tmp_path / "o.tif", scale=4, model="reference-paste")
    assert r.provenance["shares"]["reference detail used"] == 1.0
    # every band is the pan band, harmonized to that band (the share above is the masks', not the pixels': a paste
    # into one band, or none, passed; found in review)
    import rasterio

    with rasterio.open(tmp_path / "o.tif") as ds:
        out = ds.read().astype(np.float64)
    for band in out:
        assert np.corrcoef(band.ravel(), pan[0].ravel().astype(np.float64))[0, 1] > 0.9  # (clipped to uint8)


def test_sampling_settings_a_model_does_not_use_are_warned_about(raster_factory, tmp_path):
    """`-m bicubic --steps 50` or `-m lite --sampler paper` ran without a word, as if the setting mattered."""
    from geosr.cli.common import cli_words

    src = raster_factory("lr.tif", np.random.default_rng(0).integers(10, 200, (3, 16, 16)).astype(np.uint8))
    r = upscale(src, output=tmp_path / "a.tif", scale=2, model="bicubic", steps=5, sampler="paper",
                lr_consistency="box")
    assert r.warnings == ["model bicubic does not sample by diffusion, so `sampler`, `steps` change nothing",
                          "model bicubic (a classical one) ignores `lr_consistency`"]
    assert "--sampler, --steps change nothing" in cli_words(r.warnings[0], "upscale")
    # and so does the command's --json, as its text and its errors do (found in review: `steps` there)
    from typer.testing import CliRunner

    from geosr.cli.app import app

    res = CliRunner().invoke(app, ["upscale", str(src), "-x", "2", "-m", "bicubic", "--steps", "5", "-o",
                                   str(tmp_path / "j.tif"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["warnings"] == ["model bicubic does not sample by diffusion, so --steps changes "
                                                  "nothing"]
    r = upscale(src, output=tmp_path / "b.tif", scale=2, model="lite", fuse_overlaps=True, lr_consistency="box")
    assert r.warnings == ["model lite does not sample by diffusion, so `fuse_overlaps` changes nothing"]
    # the seed too (found in review: `-m bicubic --seed 7` ran without a word, recorded as if it mattered)
    assert upscale(src, output=tmp_path / "c.tif", scale=2, model="bicubic", seed=3).warnings == [
        "model bicubic does not sample by diffusion, so `seed` changes nothing"]
    # and a diffusion model on a backbone at 0 steps, the backbone's prediction alone (found in review: --sampler
    # paper --seed 9 gave the same pixels, without a word, recorded as a paper-preset sampling)
    r = upscale(src, output=tmp_path / "d.tif", scale=2, model="default+lite", steps=0, sampler="paper", seed=9)
    assert r.warnings == ["model default+lite at `steps` 0 gives its backbone's prediction and samples nothing, so "
                          "`sampler`, `seed` change nothing"], r.warnings
    # a diffusion model, also sampling on a backbone, uses them
    for model in ("default", "default+lite"):
        r = upscale(src, output=tmp_path / f"{model}.tif", scale=2, model=model, steps=1, sampler="paper",
                    lr_consistency="box")
        assert r.warnings == [], (model, r.warnings)
    # found by review: with batches of one window there is nothing to fuse, and the output was the same bytes
    r = upscale(src, output=tmp_path / "e.tif", scale=2, model="default", steps=1, fuse_overlaps=True, batch_size=1)
    assert r.warnings == ["`fuse_overlaps` fuses the overlaps of the windows sampled together, and `batch_size` 1 "
                          "samples each alone: it changes nothing"]
    r = upscale(src, output=tmp_path / "f.tif", scale=2, model="default", steps=1, fuse_overlaps=True, batch_size=4)
    assert len(r.warnings) == 1 and "each row has one window here" in r.warnings[0]  # (a 16 x 16 LR: one window)


def test_a_reference_no_finer_than_the_lr_is_warned_about(raster_factory, tmp_path):
    """A reference at the LR's own resolution (the LR given twice, a Sentinel-2 scene of another date) ran without
    a word, though it can add no detail."""
    from affine import Affine

    lr = raster_factory("lr.tif", np.random.default_rng(1).integers(10, 200, (3, 16, 16)).astype(np.uint8),
                        transform=Affine(40, 0, 500000, 0, -40, 5000000))
    same = raster_factory("same.tif", np.random.default_rng(2).integers(10, 200, (3, 20, 20)).astype(np.uint8),
                          transform=Affine(40, 0, 499920, 0, -40, 5000080))
    fine = raster_factory("fine.tif", np.random.default_rng(3).integers(10, 200, (3, 64, 64)).astype(np.uint8),
                          transform=Affine(10, 0, 500000, 0, -10, 5000000))
    r = upscale(lr, ref=same, cd="none", output=tmp_path / "a.tif", scale=4, model="reference-paste")
    assert r.warnings == ["the reference's pixels (about 40 m) are no finer than the LR's (40 m): it can add no "
                          "detail the LR lacks (give a reference of a finer resolution, or leave `ref` out)"]
    r = upscale(lr, ref=fine, cd="none", output=tmp_path / "b.tif", scale=4, model="reference-paste")
    assert r.warnings == []
    # change detection compares at the LR's resolution: only a coarser reference is worth a word there
    from geosr.pipeline.detect_changes import detect_changes

    coarse = raster_factory("coarse.tif", np.random.default_rng(4).integers(10, 200, (3, 8, 8)).astype(np.uint8),
                            transform=Affine(80, 0, 500000, 0, -80, 5000000))
    small = "only 256 LR pixels could be compared"  # 16 x 16: said too, before the reference's own word
    said = detect_changes(lr, ref=same, output=tmp_path / "c.tif").warnings
    assert len(said) == 1 and said[0].startswith(small), said
    found = detect_changes(lr, ref=coarse, output=tmp_path / "d.tif")
    assert found.warnings[1:] == ["the reference's pixels (about 80 m) are coarser than the LR's (40 m): it is "
                                  "compared blurred, so its edges may read as change"]
    assert found.warnings[0].startswith(small)
    assert found.to_dict()["warnings"] == found.warnings


def test_overlap_fusion_over_an_area_says_its_pixels_are_not_the_whole_run_s(raster_factory, tmp_path):
    """Found in review: with `fuse_overlaps` an `aoi` re-run differed from the whole run's pixels by up to 17 DN,
    where the docs promised the same pixels (fusion works within a batch, and the area's batches are its own)."""
    src = raster_factory("lr.tif", np.random.default_rng(0).integers(10, 200, (3, 24, 32)).astype(np.uint8))
    r = upscale(src, output=tmp_path / "a.tif", scale=2, model="default", steps=1, fuse_overlaps=True, window=8,
                overlap=2, batch_size=4, aoi="500103,4999837,500297,4999963", aoi_crs="EPSG:32633")
    assert r.warnings == ["`fuse_overlaps` fuses the windows sampled together, and the area's batches hold none "
                          "beyond it: its pixels differ from those of a run over the whole scene"], r.warnings
    # an area of whole rows of windows makes the whole run's batches: no warning (found in review: said of pixels
    # that were the same)
    r = upscale(src, output=tmp_path / "b.tif", scale=2, model="default", steps=1, fuse_overlaps=True, window=8,
                overlap=2, batch_size=4, aoi="500000,4999837,500320,4999963", aoi_crs="EPSG:32633")
    assert r.warnings == [], r.warnings
