"""``geosr train --arch lite``: fine-tuning the LR-space backbone on one's own images through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import typer
from PIL import Image
from typer.testing import CliRunner

from geosr.cli.train import train
from geosr.models.backbone_checkpoint import load_backbone
from geosr.models.checkpoint import read_spec
from geosr.models.registry import resolve_checkpoint
from geosr.training.config import TrainConfig


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("train")(train)
    app.command("noop")(lambda: None)
    return app


def _image(path, seed: int, side: int = 200) -> None:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side]
    img = np.stack([np.sin(xx / 5.0) * 80 + 120, np.cos(yy / 7.0) * 80 + 120, (xx + yy) % 200], -1)
    Image.fromarray(np.clip(img + rng.integers(0, 40, img.shape), 0, 255).astype(np.uint8)).save(path)


@pytest.fixture
def nested(tmp_path):
    """A folder of class folders of images (RSSCN7's layout: no data layout geosr knows at its top)."""
    root = tmp_path / "scenes"
    for i, cls in enumerate(("field", "parking")):
        (root / cls).mkdir(parents=True)
        for j in range(2):
            _image(root / cls / f"{cls}{j}.jpg", 10 * i + j)
    _image(root / cls / "tiny.png", 99, side=64)  # too small for any crop: left out, and said so
    val = tmp_path / "val"
    val.mkdir()
    _image(val / "v.png", 7)
    return root, val


def _run(args: list[str]):
    return CliRunner().invoke(_app(), ["train", *args])


def test_arch_lite_fine_tunes_the_bundled_backbone_and_resumes(tmp_path, nested):
    root, val = nested
    out = tmp_path / "run"
    common = ["--arch", "lite", "--data", str(root), "-x", "4", "-x", "2", "--batch", "2", "--checkpoint-every", "2",
              "--out-dir", str(out), "--json"]
    res = _run([*common, "--train-steps", "4", "--val-data", str(val), "--val-every", "2"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    assert result["steps"] == 4 and result["resumed_from"] == 0
    assert result["best_checkpoint"] == str(out / "best.safetensors") and result["best_step"] in (2, 4)
    assert "worst of the LR formations" in result["best_val_basis"]
    spec = read_spec(out / "model.safetensors")
    assert json.loads((out / "model.json").read_text()) == spec  # the spec for people, as diffusion runs write it
    assert json.loads((out / "best.json").read_text()) == read_spec(out / "best.safetensors")
    lite = read_spec(resolve_checkpoint("lite"))
    # a checkpoint of the backbone, with the bundled model's inference settings, that has learned something
    assert spec["arch"]["kind"] == "backbone" and spec["inference"] == lite["inference"] and spec["name"] == "lite"
    assert spec["training"]["steps"] == 4 and spec["experts"]["names"] == lite["experts"]["names"]
    assert spec["training"]["licences"] == lite["training"]["licences"]  # its terms carry over to the tuned weights
    start, _ = load_backbone(resolve_checkpoint("lite"))
    tuned, _ = load_backbone(out / "model.safetensors")
    diff = max(float((a - b).abs().max()) for a, b in zip(start.state_dict().values(), tuned.state_dict().values()))
    assert diff > 0
    def strict(c):
        raise AssertionError(f"{c} in the log: not JSON")

    log = [json.loads(line, parse_constant=strict) for line in (out / "train.log").read_text().splitlines()]
    assert log[0]["event"] == "start" and log[-1]["event"] == "end" and log[-1]["step"] == 4
    assert [r["step"] for r in log if "loss" in r] == [4] and log[-1]["best"]["step"] == result["best_step"]
    assert [r["message"].split(":")[0] for r in log if r.get("message", "").startswith("saved")] == \
        ["saved at step 2", "saved at step 4"]  # (the docs list the save lines; the log named none)
    assert any("4 HR images" in d and "1 smaller than 96 px left out" in d for d in log[0]["data"])
    assert any(f"images of {root.name}" in d for d in log[0]["data"])  # which data, by its name
    # the run's own data, its validation data too (as a diffusion run's record has it), in its checkpoint
    assert spec["training"]["data"] == log[0]["data"] and log[0]["data"][-1].startswith("validation ")
    # and its sources' paths, hashed, by which `geosr evaluate` tells an evaluation on them (geosr.training.overlap)
    from geosr.training.overlap import path_hashes

    assert spec["training"]["data_path_hashes"] == path_hashes([{"kind": "synthetic", "path": str(root)}])
    best = read_spec(out / "best.safetensors")
    assert best["training"]["validation"] == best["metrics"]["validation_gain_db"]
    assert set(best["training"]["validation"]) >= {"min", "mean", "box", "gaussian"}
    # it runs as any model does
    from geosr.models.registry import load_model

    sr = load_model(str(out / "model.safetensors"))
    assert 4 in sr.scales

    assert json.loads((out / "state.json").read_text())["loss_avg"] == result["ema_loss"]  # goes on at --resume
    res = _run([*common, "--train-steps", "6", "--resume", "--init", str(resolve_checkpoint("lite"))])
    assert res.exit_code == 2 and "give one of them" in res.output
    # fewer steps than done "resumed" for nothing and rewrote the record as a 3-step run's: refused, nothing touched
    record = (out / "state.json").read_bytes(), (out / "model.safetensors").read_bytes()
    res = _run([*common, "--train-steps", "3", "--resume"])
    assert res.exit_code == 2 and "has done 4 steps already, more than --train-steps 3" in res.output, res.output
    assert record == ((out / "state.json").read_bytes(), (out / "model.safetensors").read_bytes())
    res = _run([*common, "--train-steps", "6", "--resume", "--val-every", "1000"])  # its own data; validated at its
    # last step only
    assert res.exit_code == 0, res.output
    again = json.loads(res.stdout)
    assert again["steps"] == 6 and again["resumed_from"] == 4 and again["final_loss"] > 0
    assert read_spec(out / "model.safetensors")["training"]["steps"] == 6
    # a run folder is shared as a whole: every file has a new file's permissions (the state was 0600, as safetensors
    # writes)
    from geosr.permissions import new_file_mode

    assert {p.name: oct(p.stat().st_mode & 0o777) for p in out.iterdir()
            if p.is_file() and p.stat().st_mode & 0o777 != new_file_mode()} == {}
    # what the weights started from is recorded, and a resumed run still names it
    assert "initialised from lite" in spec["training"]["data"]
    assert "initialised from lite" in read_spec(out / "model.safetensors")["training"]["data"]
    state = json.loads((out / "state.json").read_text(), parse_constant=strict)
    assert state["best"]["step"] in (result["best_step"], 6) and state["loss_avg"] == again["ema_loss"]
    assert state["best"]["step"] == again["best_step"]
    # a run from these weights on other data records the sources behind them, and an evaluation on those is told
    # (a model fine-tuned from one trained on scenes/ and scored on scenes/ went unnoted; found in review)
    from geosr.training.overlap import training_data_notes

    res = _run(["--arch", "lite", "--data", str(val), "-x", "4", "--batch", "2", "--train-steps", "1",
                "--out-dir", str(tmp_path / "tuned"), "--init", str(out / "model.safetensors"), "--json"])
    assert res.exit_code == 0, res.output
    tuned = read_spec(tmp_path / "tuned" / "model.safetensors")
    assert tuned["training"]["data_path_hashes"] == path_hashes([{"kind": "synthetic", "path": str(val)}])
    assert tuned["training"]["inherited_path_hashes"] == path_hashes([{"kind": "synthetic", "path": str(root)}])
    assert training_data_notes(root / "field", [("tuned", tuned)]) == [
        f"tuned was initialised from weights trained on {root.name} (its checkpoint's training record), which this "
        "data is, lies in or holds: its scores here are on images its starting weights were trained on, not held out"]
    assert training_data_notes(val, [("tuned", tuned)])[0].startswith(f"tuned was trained on {val.name} ")
    assert training_data_notes(tmp_path / "run", [("tuned", tuned)]) == []
    # data changed since the run started (an image added to its folder): refused (found by review: trained on)
    _image(root / "field" / "field9.jpg", 77)
    before = (out / "state.safetensors").read_bytes()
    res = _run([*common, "--train-steps", "8", "--resume", "--val-every", "1000"])
    said = " ".join(res.output.split())
    assert res.exit_code == 2 and "was started on other data: its sources held 4 images then and 5 now" in said, said
    assert (out / "state.safetensors").read_bytes() == before
    # and its validation data (the best weights are chosen by their scores there; found in review)
    (root / "field" / "field9.jpg").unlink()
    _image(val / "v.png", 8)
    res = _run([*common, "--train-steps", "8", "--resume"])
    said = " ".join(res.output.split())
    assert res.exit_code == 2 and "was started with other validation data (--val-data)" in said, said
    assert (out / "state.safetensors").read_bytes() == before
    # a model file a kill or a full disk left unreadable: the best weights give the network (it blocked every resume
    # with "not a safetensors file"; found in review); without them too, what to do
    _image(val / "v.png", 7)
    (out / "model.safetensors").write_bytes(b"cut short")
    res = _run([*common, "--train-steps", "8", "--resume"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["resumed_from"] == 6
    assert read_spec(out / "model.safetensors")["training"]["steps"] == 8
    (out / "model.safetensors").write_bytes(b"cut short")
    (out / "best.safetensors").write_bytes(b"cut short too")
    res = _run([*common, "--train-steps", "10", "--resume"])
    said = " ".join(res.output.split())
    assert res.exit_code == 2, said
    assert "model.safetensors cannot be read (nor its best weights); the run's network is kept in model.safetensors " \
        "and best.safetensors alone: start the run again with --overwrite" in said, said


def test_arch_lite_from_a_pair_folder_takes_each_image_once(tmp_path):
    from geosr.training.backbone_run import backbone_images
    from geosr.training.sources import source_for_path, source_images

    root = tmp_path / "pairs"
    for sub in ("A", "B", "label"):
        (root / sub).mkdir(parents=True)
    for i in range(2):
        _image(root / "A" / f"p{i}.png", i)
        _image(root / "B" / f"p{i}.png", 10 + i)
        Image.fromarray(np.zeros((200, 200), np.uint8)).save(root / "label" / f"p{i}.png")
    cfg = TrainConfig(arch="lite", data=(source_for_path(root),))
    images, described = backbone_images(cfg.data, cfg)
    assert len(images) == 4 and all(t.dtype == torch.uint8 and t.shape == (3, 200, 200) for t in images)
    assert "4 HR images" in described[0]
    # a tree of such folders (no manifest), or a sites folder with its masks: the labels and masks are no imagery
    # (6 images were taken from 2 pairs, the binary labels trained on as grey photos; found in review)
    tree = tmp_path / "tree"
    tree.mkdir()
    root.rename(tree / "set1")
    cfg = TrainConfig(arch="lite", data=(source_for_path(tree),))
    images, described = backbone_images(cfg.data, cfg)
    assert len(images) == 4 and "4 HR images" in described[0], described
    sites = tmp_path / "sites"
    sites.mkdir()
    for name in ("S_2000.png", "S_2003.png"):
        _image(sites / name, 3)
    for name in ("S_change_mask.png", "S_unchanged_mask.png"):
        Image.fromarray(np.zeros((200, 200), np.uint8)).save(sites / name)
    assert [p.rsplit("/", 1)[-1] for p in source_images(source_for_path(sites))] == ["S_2000.png", "S_2003.png"]
    # the folder given is imagery whatever its name (a super-resolution set's GT/), and so is a photo named *_label
    gt = tmp_path / "GT"
    gt.mkdir()
    for name in ("a.png", "city_label.png"):
        _image(gt / name, 4)
    assert len(source_images(source_for_path(gt))) == 2
    cfg = TrainConfig(arch="lite", data=({"kind": "shared", "path": str(gt)},))
    assert len(backbone_images(cfg.data, cfg)[0]) == 2


def test_arch_lite_refuses_what_it_cannot_do(tmp_path, nested):
    root, val = nested
    res = _run(["--arch", "huge", "--data", str(val), "-x", "4", "--out-dir", str(tmp_path / "r0")])
    said = " ".join(res.output.split())
    assert res.exit_code == 2 and "tiny, small, paper, or lite (the LR-space model)" in said, said
    assert not (tmp_path / "r0").exists()
    res = _run(["--arch", "lite", "--data", str(root), "--crop", "64", "--out-dir", str(tmp_path / "r1")])
    assert res.exit_code == 2 and "crop does not apply to arch lite" in res.output
    res = _run(["--arch", "lite", "--data", str(root), "--degradation", "bicubic", "--out-dir", str(tmp_path / "r1")])
    assert res.exit_code == 2 and "degradation does not apply" in res.output
    for given in (["--crop", "128"], ["--degradation", "real"]):  # the diffusion defaults: named, so refused too
        res = _run(["--arch", "lite", "--data", str(root), *given, "--out-dir", str(tmp_path / "r1")])
        assert res.exit_code == 2 and f"{given[0][2:]} does not apply to arch lite" in res.output, res.output
    config = tmp_path / "lite.toml"
    config.write_text('arch = "lite"\nwarmup = 0\n')
    res = _run([str(config), "--data", str(root), "--out-dir", str(tmp_path / "r1")])
    assert res.exit_code == 2 and "warmup in lite.toml does not apply to arch lite" in res.output, res.output
    assert not (tmp_path / "r1").exists()
    default = resolve_checkpoint("default")
    res = _run(["--arch", "lite", "--data", str(root), "--init", str(default), "--out-dir", str(tmp_path / "r2")])
    assert res.exit_code == 2 and "not an LR-space backbone" in res.output and not (tmp_path / "r2").exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    res = _run(["--arch", "lite", "--data", str(root), "--out-dir", str(busy)])
    assert res.exit_code == 2 and (busy / "notes.txt").read_text() == "mine"
    res = _run(["--arch", "lite", "--data", str(root), "--resume", "--out-dir", str(tmp_path / "r3")])
    assert res.exit_code == 2 and "does not exist, so there is nothing to resume" in res.output
    assert not (tmp_path / "r3").exists()
    res = _run(["--arch", "lite", "--data", str(root), "-x", "8", "--out-dir", str(tmp_path / "r4")])
    assert res.exit_code == 2 and "needs 256 x 256 pixels" in res.output and not (tmp_path / "r4").exists()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_text("not an image")
    res = _run(["--arch", "lite", "--data", str(bad), "--out-dir", str(tmp_path / "r5")])
    said = " ".join(res.output.split())
    assert res.exit_code == 2 and "broken.png: not an image that can be read" in said
    assert not (tmp_path / "r5").exists()
    small = tmp_path / "small"
    small.mkdir()
    _image(small / "s.png", 3, side=64)
    res = _run(["--arch", "lite", "--data", str(root), "--val-data", str(small), "--out-dir", str(tmp_path / "r6")])
    assert res.exit_code == 2 and "no validation image" in res.output


def test_settings_default_per_kind_of_model():
    diffusion, lite = TrainConfig(), TrainConfig(arch="lite")
    assert (diffusion.scales, diffusion.batch_size, diffusion.lr, diffusion.grad_clip) == ((8, 16), 4, 2e-4, 1.0)
    assert (lite.scales, lite.batch_size, lite.lr, lite.grad_clip) == ((2, 4, 8, 16), 16, 1e-4, 0.1)
    given = TrainConfig(arch="lite", scales=(4,), batch_size=8, lr=5e-5, grad_clip=0.5)
    assert (given.scales, given.batch_size, given.lr, given.grad_clip) == ((4,), 8, 5e-5, 0.5)
    assert lite.trains_backbone and not diffusion.trains_backbone
    # a change of the kind of model takes the new kind's defaults, and keeps what was set
    switched = diffusion.replace(arch="lite")
    assert (switched.scales, switched.batch_size, switched.lr, switched.grad_clip) == ((2, 4, 8, 16), 16, 1e-4, 0.1)
    back = TrainConfig(arch="lite", batch_size=8).replace(arch="small")
    assert (back.scales, back.batch_size, back.lr, back.grad_clip) == ((8, 16), 8, 2e-4, 1.0)
    from geosr.errors import OptionError

    with pytest.raises(OptionError, match="`bands` does not apply"):
        TrainConfig(arch="lite", bands=4)
    with pytest.raises(OptionError) as err:
        TrainConfig(arch="lite", scales=(3,))
    assert "`scales` must be among" in str(err.value) and "crop" not in str(err.value)



def test_batches_made_by_worker_processes_train_the_same_for_the_same_count(tmp_path):
    """``workers``: the batches come from processes beside the training (a GPU's cores), the same ones on every run
    with the same count of workers."""
    from geosr.training.backbone_fit import BackboneTrainConfig, fit_backbone

    rng = np.random.default_rng(0)
    images = [torch.from_numpy(rng.integers(0, 255, (3, 96, 96), dtype=np.uint8)) for _ in range(3)]
    init = resolve_checkpoint("lite")
    runs = []
    for name in ("a", "b"):
        cfg = BackboneTrainConfig(steps=3, batch=2, save_every=3, scale_weights={2: 1.0, 4: 1.0},
                                  lr_patch={2: 16, 4: 16}, workers=2)
        assert fit_backbone(tmp_path / name, images, [], init=init, cfg=cfg, log=lambda s: None)["step"] == 3
        runs.append(load_backbone(tmp_path / name / "model.safetensors")[0].state_dict())
    start = load_backbone(init)[0].state_dict()
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in start)
    assert any(not torch.equal(runs[0][k], start[k]) for k in start)


def test_training_images_from_geotiffs_take_the_default_bands_and_keep_colours(tmp_path):
    """A Sentinel-2 stack in reflectance (float, 13 bands) gives B04, B03, B02, stretched together to 8 bits."""
    import rasterio

    from geosr.training.backbone_fit import read_images

    names = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
    data = np.stack([np.full((20, 30), 0.01 * (i + 1), np.float32) for i in range(13)])
    data[3, 0, 0] = np.nan  # a missing value counts as 0
    path = tmp_path / "s2.tif"
    with rasterio.open(path, "w", driver="GTiff", width=30, height=20, count=13, dtype="float32") as ds:
        ds.write(data)
        ds.descriptions = tuple(names)
    t = read_images([path])[0]
    assert t.dtype == torch.uint8 and t.shape == (3, 20, 30)
    # B04 0.04, B03 0.03, B02 0.02, all divided by the 99.5th percentile (B04's 0.04): 255, 191, 128
    assert [int(t[i, 5, 5]) for i in range(3)] == [255, 191, 128] and int(t[0, 0, 0]) == 0
    grey = tmp_path / "pan.tif"
    with rasterio.open(grey, "w", driver="GTiff", width=30, height=20, count=1, dtype="uint8") as ds:
        ds.write(np.full((1, 20, 30), 77, np.uint8))
    g = read_images([grey])[0]
    assert g.shape == (3, 20, 30) and int(g.min()) == int(g.max()) == 77  # 8 bits as they are, three times
    # a 16-bit grey PNG (an 11-bit pan's counts): stretched as a deep GeoTIFF is (it was clipped at 255: white)
    from PIL import Image

    counts = (np.arange(20 * 30).reshape(20, 30) * 3 + 100).astype(np.uint16)
    Image.fromarray(counts).save(tmp_path / "pan16.png")
    p16 = read_images([tmp_path / "pan16.png"])[0]
    assert p16.shape == (3, 20, 30) and torch.equal(p16[0], p16[2]) and int(p16[0, 0, 0]) < 20
    assert 100 < float(p16.float().mean()) < 160
    # a VRT (a JPEG 2000, an ERDAS .img...) is a raster GDAL reads: it was sent to PIL, "not an image that can be
    # read" (found in review); the same pixels and bands as the GeoTIFF it mosaics
    from geosr.training.pairs import read_target

    vrt = tmp_path / "s2.vrt"
    bands = "".join(f'<VRTRasterBand dataType="Float32" band="{b}"><Description>{names[b - 1]}</Description>'
                    f'<SimpleSource><SourceFilename relativeToVRT="1">s2.tif</SourceFilename>'
                    f'<SourceBand>{b}</SourceBand></SimpleSource></VRTRasterBand>' for b in range(1, 14))
    vrt.write_text(f'<VRTDataset rasterXSize="30" rasterYSize="20">{bands}</VRTDataset>')
    assert torch.equal(read_images([vrt])[0], t)
    assert torch.equal(read_target(vrt)[0], read_target(path)[0])
    # a GIF is a picture still (GDAL reads it as one band of its palette's numbers: grey; found in review)
    colours = np.zeros((20, 30, 3), np.uint8)
    colours[..., 0], colours[..., 1], colours[..., 2] = 200, 90, 30
    Image.fromarray(colours).save(tmp_path / "c.gif")
    assert read_images([tmp_path / "c.gif"])[0][:, 5, 5].tolist() == [200, 90, 30]
    assert read_target(tmp_path / "c.gif")[0].shape == (3, 20, 30)
    from geosr.training.backbone_fit import image_files

    assert tmp_path / "c.gif" in image_files([tmp_path])  # in a folder too (it was left out of its listing)


def _recorded_rates(monkeypatch) -> tuple[list[float], list[torch.Tensor]]:
    """A list that receives the learning rate of each optimizer step of a backbone run, and one training image."""
    rates: list[float] = []

    class Recording(torch.optim.Adam):
        def step(self, closure=None):
            rates.append(self.param_groups[0]["lr"])
            return super().step(closure)

    monkeypatch.setattr(torch.optim, "Adam", Recording)
    rng = np.random.default_rng(0)
    return rates, [torch.from_numpy(rng.integers(0, 255, (3, 64, 64), dtype=np.uint8))]


def test_a_large_deep_geotiff_s_divisor_comes_from_a_sample_of_its_valid_pixels(tmp_path, monkeypatch):
    """A 7200 x 7200 uint16 GeoTIFF took 3.4 GB to read (float32 copies of the whole image; found in review): it is
    read band by band, and its divisor (99.5th percentile) taken from every n-th pixel beyond PERCENTILE_VALUES,
    its nodata pixels (65000 here, half of them in stripes) still left out of it."""
    import rasterio

    import geosr.training.backbone_fit as fit

    rng = np.random.default_rng(3)
    data = (rng.random((3, 60, 80)) * 1000 + 100).astype(np.uint16)
    data[:, :, 1::2] = 65000  # nodata in every other column: a stride of the sample falls on them or between
    path = tmp_path / "deep.tif"
    with rasterio.open(path, "w", driver="GTiff", width=80, height=60, count=3, dtype="uint16", nodata=65000) as ds:
        ds.write(data)
    whole = fit.read_images([path])[0]
    monkeypatch.setattr(fit, "PERCENTILE_VALUES", 1000)
    sampled = fit.read_images([path])[0]
    assert whole.shape == sampled.shape == (3, 60, 79)  # (cut to the last column with data)
    assert int(whole[:, :, 1::2].max()) == 0 and int(whole.max()) == 255  # nodata 0; the valid stretched
    assert (whole.int() - sampled.int()).abs().max() <= 8 and 100 < float(sampled[:, :, ::2].float().mean()) < 160



@pytest.mark.parametrize("by_time", [False, True])
def test_a_time_limited_run_can_end_its_learning_rate_schedule_with_the_time(tmp_path, monkeypatch, by_time):
    """``schedule_by_time``: a run stopped by its minutes (a lent GPU, whose step rate is not known ahead) ends its
    cosine there, not at a step count it never reaches; without it the rate is still near its peak."""
    import itertools

    from geosr.training import backbone_fit
    from geosr.training.backbone_fit import BackboneTrainConfig, fit_backbone

    clock = itertools.count(0.0, 0.25)  # a quarter second per reading of the clock
    monkeypatch.setattr(backbone_fit.time, "monotonic", lambda: next(clock))
    rates, images = _recorded_rates(monkeypatch)
    cfg = BackboneTrainConfig(steps=10_000, batch=1, save_every=10_000, scale_weights={2: 1.0}, lr_patch={2: 16},
                              schedule_by_time=by_time)
    fit_backbone(tmp_path / "run", images, [], init=resolve_checkpoint("lite"), cfg=cfg, minutes=0.05,
                 log=lambda s: None)
    assert len(rates) >= 3 and rates == sorted(rates, reverse=True)
    if by_time:
        assert rates[-1] < 0.1 * cfg.lr
    else:
        assert rates[-1] > 0.99 * cfg.lr


def test_a_scale_no_image_can_crop_is_a_warning_not_only_a_log_line(tmp_path):
    """`geosr train --arch lite -x 4 -x 2` on 120-px images trained x2 alone and said so only inside train.log: the
    user read "wrote model.safetensors" and got a model not fine-tuned at x4. The run now warns, and --json says."""
    root = tmp_path / "small"
    root.mkdir()
    for i in range(2):
        _image(root / f"im{i}.png", i, side=120)
    out = tmp_path / "run"
    args = ["--arch", "lite", "--data", str(root), "-x", "4", "-x", "8", "-x", "2", "--batch", "2",
            "--train-steps", "1", "--out-dir", str(out)]
    res = _run(args)
    said = " ".join(res.output.split())
    assert res.exit_code == 0 and "warning: x4, x8 left out (trained at x2 only): no training image holds a crop " \
        "of 192 x 192 pixels at x4 or 256 x 256 pixels at x8" in said, said  # it named x4's crop alone
    res = _run([*args, "--overwrite", "--json"])
    assert res.exit_code == 0 and any("x4, x8 left out" in w for w in json.loads(res.stdout)["warnings"]), res.output
    # and it claims x2 alone: its spec said all four scales of the checkpoint it started from, so x4 and x8 ran on
    # heads whose body was fitted at x2 only, without a word (found in review)
    from geosr.models.checkpoint import read_spec
    from geosr.models.registry import load_model

    assert read_spec(out / "model.safetensors")["scales"] == [2]
    assert load_model(str(out / "model.safetensors")).scales == (2,)
    # the folder it was fine-tuned on, in its card (a folder of images named none: "2 images"; found in review)
    assert any(f"2 images of {root.name}" in d for d in read_spec(out / "model.safetensors")["training"]["data"])


def test_lite_refuses_validation_images_it_also_trains_on(tmp_path):
    """`geosr train --arch lite --val-data X --data X` ran and kept a "best" checkpoint scored on its own training
    images; the diffusion trainer refused it. Both refuse now (exit 2, no run folder)."""
    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(2):
        _image(root / f"im{i}.png", i)
    other = tmp_path / "val"
    other.mkdir()
    _image(other / "v0.png", 7)
    (other / "im1.png").write_bytes((root / "im1.png").read_bytes())  # one shared image, under the same name
    out = tmp_path / "run"
    res = _run(["--arch", "lite", "--data", str(root), "--val-data", str(other), "-x", "2", "--batch", "2",
                "--train-steps", "1", "--out-dir", str(out)])
    said = " ".join(res.output.split())
    assert res.exit_code == 2, said
    assert "--val-data: 1 of its 2 images is also in --data, which the run trains on" in said, said
    assert not out.exists()


def test_lite_validates_on_a_tree_of_class_folders_as_it_trains_on_one(tmp_path):
    """A folder of class folders (RSSCN7's) was taken as `--data` and refused as `--val-data` for being "a data
    manifest", which it is not (found in review)."""
    for name, seeds in (("train", (0, 1)), ("val", (5, 6))):
        for cls, seed in zip(("field", "forest"), seeds):
            (tmp_path / name / cls).mkdir(parents=True)
            _image(tmp_path / name / cls / f"{cls}{seed}.png", seed)
    out = tmp_path / "run"
    res = _run(["--arch", "lite", "--data", str(tmp_path / "train"), "--val-data", str(tmp_path / "val"), "-x", "2",
                "--batch", "2", "--train-steps", "1", "--val-every", "1", "--out-dir", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert (out / "best.safetensors").exists()


def test_lite_trains_on_grey_change_pairs_as_it_does_on_grey_images(tmp_path):
    """Grey change pairs were refused ("images of 1 band, but the model has bands = 3; set bands = 1"), and
    `bands = 1` is refused for lite: no way out, though the docs say lite reads a grey image as its grey in all
    three bands (as it did given the same images one by one)."""
    root = tmp_path / "pairs"
    for d in ("A", "B", "label"):
        (root / d).mkdir(parents=True)
    for i in range(2):
        _image(root / "A" / f"p{i}.png", i)
        _image(root / "B" / f"p{i}.png", i + 10)
        for d in ("A", "B"):
            Image.open(root / d / f"p{i}.png").convert("L").save(root / d / f"p{i}.png")
        Image.fromarray(np.zeros((200, 200), np.uint8)).save(root / "label" / f"p{i}.png")
    out = tmp_path / "run"
    res = _run(["--arch", "lite", "--data", str(root), "-x", "2", "--batch", "2", "--train-steps", "1",
                "--out-dir", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert (out / "model.safetensors").exists()


def test_a_deepened_backbone_computes_the_same_and_trains_its_new_blocks():
    """``deepened`` (the larger variant trained on a lent GPU, ``scripts/train_backbone.py --grow-blocks``): the
    trained blocks spread among new identity blocks give the same outputs, a sharpness code's MLP included, and
    the new blocks' zero convolutions get gradients (they would stay the identity otherwise)."""
    from geosr.errors import InputError
    from geosr.models.backbone import BackboneConfig, build_backbone
    from geosr.training.backbone_fit import deepened, with_code

    torch.manual_seed(0)
    net = with_code(build_backbone(BackboneConfig(dim=8, blocks=3, levels=2, scales=(2, 4))))
    for p in net.parameters():  # trained-looking weights: no zero layer left, the code's included
        torch.nn.init.normal_(p, std=0.05)
    deep = deepened(net, 7)
    assert deep.cfg.blocks == 7 and deep.cfg.code_dims == net.cfg.code_dims
    lr = torch.rand(2, 3, 12, 12) * 2 - 1
    code = torch.randn(2, net.cfg.code_dims)
    with torch.no_grad():
        for s in (2, 4):
            torch.testing.assert_close(deep(lr, s, code), net(lr, s, code), rtol=0, atol=1e-6)
    new = [i for i in range(7) if i not in (0, 2, 5)]  # round(i * 7 / 3): trained blocks at 0, 2, 5
    assert all(deep.body[i].mixer.reduce.weight.abs().max() == 0 for i in new)
    assert all(torch.equal(deep.body[j].mixer.expand.weight, net.body[i].mixer.expand.weight)
               for i, j in enumerate((0, 2, 5)))
    deep(lr, 4, code).abs().mean().backward()
    assert all(deep.body[i].mixer.reduce.weight.grad.abs().max() > 0 for i in new)
    with pytest.raises(InputError, match="more than its 3 blocks"):
        deepened(net, 3)
    lite, _ = load_backbone(resolve_checkpoint("lite"))
    with pytest.raises(InputError, match="deepened one expert at a time"):
        deepened(lite, 16)


def test_warm_up_raises_the_learning_rate_linearly_then_follows_the_cosine(tmp_path, monkeypatch):
    """``warmup`` steps (a deepened network's new blocks would otherwise all move by the full rate at once: its
    validation fell 0.15 dB in the first step of a GPU run)."""
    from geosr.training.backbone_fit import BackboneTrainConfig, fit_backbone

    rates, images = _recorded_rates(monkeypatch)
    cfg = BackboneTrainConfig(steps=8, batch=1, save_every=100, scale_weights={2: 1.0}, lr_patch={2: 16}, warmup=4)
    fit_backbone(tmp_path / "run", images, [], init=resolve_checkpoint("lite"), cfg=cfg, log=lambda s: None)
    cosine = [cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + np.cos(np.pi * s / 8)) for s in range(8)]
    assert rates == pytest.approx([c * min(1.0, (s + 1) / 4) for s, c in enumerate(cosine)])


def test_lite_divergence_says_what_the_user_can_do(tmp_path, nested):
    """A lite run whose loss went non-finite said "resume from the last saved state with a lower learning rate",
    which `--resume` refuses (another learning rate), and said so when nothing was saved at all."""
    root, _ = nested
    res = _run(["--arch", "lite", "--data", str(root), "-x", "4", "--batch", "2", "--train-steps", "4",
                "--learning-rate", "1e30", "--out-dir", str(tmp_path / "wild")])
    said = " ".join(res.output.split())
    assert res.exit_code == 1 and "the loss is not finite at step" in said, said
    assert "run it again with a lower --learning-rate" in said and "resume" not in said, said


def test_training_messages_and_data_paths_spelled_two_ways(tmp_path, monkeypatch):
    """A training config named `t0.tif` was "not .tif without one"; a truncated image "not an image that can be read
    (Read failed. See previous exception for details.)"; `--resume --data ../x/tiles` was refused as other data
    than the `x/tiles` it had started with."""
    import rasterio

    from geosr.errors import InputError, OptionError
    from geosr.training.config import absolute_sources, load_config
    from geosr.training.pairs import read_target

    image = tmp_path / "t0.tif"
    data = np.random.default_rng(0).integers(0, 255, (3, 256, 256), dtype=np.uint8)
    with rasterio.open(image, "w", driver="GTiff", width=256, height=256, count=3, dtype="uint8") as ds:
        ds.write(data)
    with pytest.raises(OptionError, match=r"t0.tif: a training config is a .toml, .yaml or .json file, not a .tif "
                                          r"file; give training data with `data`"):
        load_config(image)
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    with pytest.raises(InputError) as err:
        read_target(image)
    assert "t0.tif: not an image that can be read (" in str(err.value) and "See previous" not in str(err.value)
    (tmp_path / "x" / "tiles").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "x")
    spelled = [absolute_sources([{"kind": "synthetic", "paths": [p]}])[0]["paths"][0]
               for p in ("tiles/a.png", "../x/tiles/a.png", str(tmp_path / "x" / "tiles" / "a.png"))]
    assert spelled == [str(tmp_path / "x" / "tiles" / "a.png")] * 3, spelled


def test_train_s_messages_point_the_way(tmp_path):
    """Found in review: a run folder holding a saved state was refused with only `--overwrite` advised (which throws
    its steps away); a missing pairs / Ref-Diff / shared folder was "needs A/ and B/"; `--init RUN` (or its
    state.safetensors) said "not a file" / "no geosr spec" without the run's weights; YAML's `lr: 1e-4` was "not a
    number"."""
    from geosr.errors import InputNotFoundError, ModelFileError, OutputExistsError
    from geosr.models.checkpoint import read_spec
    from geosr.training.config import load_config
    from geosr.training.layouts import change_pair_folder, refdiff_folder
    from geosr.training.outputs import OutputFolder

    run = tmp_path / "run"
    run.mkdir()
    for name in ("state.safetensors", "model.safetensors", "train.log"):
        (run / name).write_bytes(b"x")
    with pytest.raises(OutputExistsError, match=r"`resume` to continue the run saved there"):
        OutputFolder(run, "geosr train", ("state.safetensors", "model.safetensors", "train.log")).check(
            overwrite=False)
    for reader in (change_pair_folder, refdiff_folder):
        with pytest.raises(InputNotFoundError, match="nowhere: no such data folder"):
            reader(tmp_path / "nowhere")
    for given in (run, run / "state.safetensors"):
        with pytest.raises(ModelFileError, match=r"a training run's weights are .*run/model.safetensors"):
            read_spec(given)
    (tmp_path / "t.yaml").write_text("lr: 1e-4\nbatch_size: 2\n")
    assert load_config(tmp_path / "t.yaml").lr == 1e-4


def test_a_fine_tuned_model_s_card_names_its_data_folder_not_its_path(tmp_path):
    """Found by review: a lite model fine-tuned on /home/me/client/tiles carried that path in its card (the weights
    are what gets shared); the card names the folder (`tiles`), the run's record keeps the path to resume."""
    from geosr.models.checkpoint import read_spec

    root = tmp_path / "client" / "tiles"
    root.mkdir(parents=True)
    for i in range(2):
        _image(root / f"im{i}.png", i, side=120)
    out = tmp_path / "run"
    res = _run(["--arch", "lite", "--data", str(root), "-x", "2", "--batch", "2", "--train-steps", "1", "--out-dir",
                str(out)])
    assert res.exit_code == 0, res.output
    card = json.dumps(read_spec(out / "model.safetensors"))
    assert "2 images of tiles" in card and str(tmp_path) not in card
    assert str(root) in (out / "state.json").read_text()
