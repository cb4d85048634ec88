"""Expert backbones (geosr.models.backbone_experts): the mix by the scene's code, the blended network, the
checkpoint's round trip and bounds, and the pipeline telling every window the scene's code."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch

from geosr.errors import ModelFileError
from geosr.models.backbone import BackboneConfig, build_backbone
from geosr.models.backbone_checkpoint import load_backbone, save_backbone
from geosr.models.backbone_experts import ExpertBackbone

CFG = BackboneConfig(dim=8, blocks=1, levels=2, scales=(2, 4))


def _net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = build_backbone(CFG)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.1)
    return net.eval()


def _experts(anchors=None) -> ExpertBackbone:
    anchors = anchors or {2: [0.0, 0.5, 1.0], 4: [1.2, 0.1, 0.6]}  # any order: the anchors sort them
    return ExpertBackbone([_net(0), _net(1), _net(2)], anchors, ["soft", "antialiased", "aliasing"]).eval()


def test_the_mix_is_piecewise_linear_between_the_anchors_around_the_code():
    e = _experts()
    assert e.mix(-3.0, 2) == [1.0, 0.0, 0.0] and e.mix(7.0, 2) == [0.0, 0.0, 1.0]  # beyond: the outermost alone
    assert e.mix(0.5, 2) == [0.0, 1.0, 0.0]
    assert np.allclose(e.mix(0.25, 2), [0.5, 0.5, 0.0]) and np.allclose(e.mix(0.8, 2), [0.0, 0.4, 0.6])
    # at x4 the anchors are in another order: 0.1 (expert 1) < 0.6 (expert 2) < 1.2 (expert 0)
    assert np.allclose(e.mix(0.35, 4), [0.0, 0.5, 0.5]) and np.allclose(e.mix(0.9, 4), [0.5, 0.0, 0.5])
    for code in np.linspace(-1, 2, 31):
        w = e.mix(float(code), 4)
        assert abs(sum(w) - 1) < 1e-9 and sum(v > 0 for v in w) <= 2 and min(w) >= 0


@torch.inference_mode()
def test_the_blended_network_is_the_network_of_the_mixed_weights():
    e = _experts()
    lr = torch.rand(1, 3, 20, 20) * 2 - 1
    code = torch.tensor([[0.25, 0.0]])  # half soft, half antialiased at x2
    mixed = build_backbone(CFG).eval()
    a, b = (dict(n.named_parameters()) for n in (e.experts[0], e.experts[1]))
    mixed.load_state_dict({k: 0.5 * a[k] + 0.5 * b[k] for k in a})
    assert torch.allclose(e(lr, 2, code), mixed(lr, 2), atol=1e-6)
    assert torch.allclose(e(lr, 2, torch.tensor([[0.5, 0.0]])), e.experts[1](lr, 2), atol=1e-6)
    assert not torch.allclose(e(lr, 2, code), e.experts[1](lr, 2), atol=1e-3)  # the code changes the output
    two = e(torch.cat([lr, lr]), 2, torch.tensor([[0.25, 0.0], [1.5, 0.0]]))  # each image its own code
    assert torch.allclose(two[:1], mixed(lr, 2), atol=1e-6) and torch.allclose(two[1:], e.experts[2](lr, 2),
                                                                                 atol=1e-6)


@pytest.mark.parametrize("anchors, problem", [({2: [0.0, 0.5], 4: [0, 1, 2]}, "x2 needs 3 anchors"),
                                              ({2: [0.0, 0.0, 1.0], 4: [0, 1, 2]}, "x2 needs 3 anchors"),
                                              ({2: [None, None, None], 4: [0, 1, 2]}, "x2 needs 3 anchors"),
                                              ({4: [0, 1, 2]}, "x2 needs")])
def test_experts_need_one_distinct_anchor_each_at_every_scale(anchors, problem):
    with pytest.raises(ValueError, match=problem):
        _experts(anchors)


@torch.inference_mode()
def test_an_expert_without_an_anchor_takes_no_part_at_that_scale():
    e = _experts({2: [0.0, None, 1.0], 4: [None, 0.5, None]})
    assert e.mix(0.5, 2) == [0.5, 0.0, 0.5] and e.mix(0.3, 2)[1] == 0.0  # the middle one skipped
    assert all(e.mix(c, 4) == [0.0, 1.0, 0.0] for c in (-5.0, 0.5, 5.0))  # one expert: it alone
    lr = torch.rand(1, 3, 16, 16) * 2 - 1
    assert torch.allclose(e(lr, 4, torch.tensor([[3.0, 0.0]])), e.experts[1](lr, 4), atol=1e-6)


def test_the_checkpoint_round_trip_keeps_experts_and_anchors(tmp_path):
    e = _experts()
    path = save_backbone(e, tmp_path / "e.safetensors", name="e")
    again, spec = load_backbone(path)
    assert isinstance(again, ExpertBackbone) and again.names == e.names and again.anchors == e.anchors
    assert spec["experts"]["names"] == ["soft", "antialiased", "aliasing"]
    lr = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.inference_mode():
        assert torch.equal(again(lr, 4, torch.tensor([[0.3, 0.1]])), e(lr, 4, torch.tensor([[0.3, 0.1]])))


@pytest.mark.parametrize("experts, field", [
    ({"names": ["a"] * 9, "anchors": {}}, "experts.names"),
    ({"names": ["a", "b"], "anchors": {"2": [0.0, float("nan")], "4": [0, 1]}}, "experts.anchors.2"),
    ({"names": ["a", "b"], "anchors": {"2": [0.0, 1.0, 2.0], "4": [0, 1]}}, "experts.anchors.2"),
    ({"names": ["a", "b"], "anchors": {"x": [0.0, 1.0]}}, "experts.anchors.x"),
    ({"names": ["a", "b"], "anchors": {"2": [0.0, 1.0], "4": [0, 1]}, "widths": {"2": 1.5}}, "experts.widths.2"),
    ({"names": ["a", "b"], "anchors": {"2": [0.0, 1.0], "4": [0, 1]}, "widths": {"4": 0}}, "experts.widths.4"),
    ("two", "experts"),
])
def test_a_spec_with_bad_experts_is_refused_before_anything_is_built(tmp_path, experts, field):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = save_backbone(_experts(), tmp_path / "e.safetensors", name="e")
    with safe_open(str(path), "pt") as f:
        spec = json.loads(f.metadata()["geosr_spec"])
    spec["experts"] = experts
    save_file(load_file(str(path)), str(path), metadata={"geosr_spec": json.dumps(spec)})
    with pytest.raises(ModelFileError, match=field.replace(".", r"\.")):
        load_backbone(path)


def test_a_spec_whose_anchors_miss_a_scale_is_refused(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = save_backbone(_experts(), tmp_path / "e.safetensors", name="e")
    with safe_open(str(path), "pt") as f:
        spec = json.loads(f.metadata()["geosr_spec"])
    del spec["experts"]["anchors"]["4"]
    save_file(load_file(str(path)), str(path), metadata={"geosr_spec": json.dumps(spec)})
    with pytest.raises(ModelFileError, match="x4 needs 3 anchors"):
        load_backbone(path)


def test_the_pipeline_runs_the_experts_the_scene_code_picks(tmp_path):
    """Anchors placed so that the scene's measured code sits beyond the first expert's: the output is that
    expert's alone, window by window; the tag records the code and the settings name the experts."""
    from geosr.models.degradation_code import lr_sharpness
    from geosr.pipeline.upscale import upscale

    rng = np.random.default_rng(0)
    lr = (rng.random((1, 96, 96)).cumsum(axis=2) % 1 * 200 + 20).astype(np.uint8).repeat(3, axis=0)
    src = tmp_path / "lr.tif"
    with rasterio.open(src, "w", driver="GTiff", width=96, height=96, count=3, dtype="uint8", crs="EPSG:32633",
                       transform=rasterio.transform.from_origin(500000, 4000000, 40, 40)) as ds:
        ds.write(lr)
    code0 = float(lr_sharpness(lr.astype(np.float64))[0])
    far = {2: [code0 - 10, code0 - 9, code0 - 8], 4: [code0 + 8, code0 + 9, code0 + 10]}
    e = _experts(far)  # x2: past the last anchor (aliasing); x4: before the first (soft)
    ckpt = save_backbone(e, tmp_path / "e.safetensors", name="e")
    for scale, alone in ((2, 2), (4, 0)):
        solo = save_backbone(e.experts[alone], tmp_path / f"solo{scale}.safetensors", name="solo")
        outs = []
        for model in (ckpt, solo):
            out = tmp_path / f"{model.stem}_{scale}.tif"
            upscale(src, output=out, model=str(model), scale=scale, window=40, overlap=8)
            with rasterio.open(out) as ds:
                outs.append(ds.read())
        assert np.array_equal(outs[0], outs[1])
    with rasterio.open(tmp_path / f"{ckpt.stem}_4.tif") as ds:
        tags = ds.tags()
    assert np.allclose(json.loads(tags["GEOSR_LR_SHARPNESS"])[0], code0, atol=1e-3)
    assert json.loads(tags["GEOSR_MODEL_SETTINGS"])["experts"] == ["soft", "antialiased", "aliasing"]


def test_training_routes_each_crop_to_the_experts_its_code_mixes(tmp_path):
    """An expert backbone trains as it runs: each crop's code picks its mix, and only the experts in that mix learn
    from it (here every crop's code lies below the lowest x4 anchor and above the highest x2 one)."""
    from geosr.errors import InputError
    from geosr.training.backbone_fit import BackboneTrainConfig, fit_backbone

    torch.set_num_threads(1)
    start = _experts({2: [-30.0, -20.0, -10.0], 4: [10.0, 20.0, 30.0]})
    path = save_backbone(start, tmp_path / "e.safetensors", name="e")
    rng = np.random.default_rng(0)
    images = [torch.from_numpy(rng.integers(0, 255, (3, 96, 96), dtype=np.uint8)) for _ in range(2)]
    cfg = BackboneTrainConfig(steps=4, batch=2, lr=1e-3, save_every=2, validate_every=100,
                              scale_weights={4: 1.0, 2: 1.0}, lr_patch={2: 16, 4: 16})
    assert fit_backbone(tmp_path / "run", images, [], init=path, cfg=cfg, log=lambda s: None)["step"] == 4
    trained, spec = load_backbone(tmp_path / "run" / "model.safetensors")
    assert isinstance(trained, ExpertBackbone) and trained.anchors == start.anchors
    moved = [any(not torch.equal(a, b) for a, b in zip(e0.parameters(), e1.parameters()))
             for e0, e1 in zip(start.experts, trained.experts)]
    assert moved == [True, False, True]  # x4 crops: the first expert alone; x2 crops: the last; never the middle
    with pytest.raises(InputError, match="blended by the sharpness code already"):
        fit_backbone(tmp_path / "run2", images, [], init=path, cfg=BackboneTrainConfig(steps=1, sharpness_code=True))


def test_the_calibration_keeps_only_mixes_that_lose_nothing_to_the_blind_expert():
    from scripts.combine_experts import TOLERANCE_DB, choose

    per_kind = {"blind": {"bicubic": 1.0, "gaussian": 1.7},
                "bold": {"bicubic": 1.5, "gaussian": 1.6},  # the best mean, but it costs the Gaussian PSF 0.1 dB
                "careful": {"bicubic": 1.1, "gaussian": 1.7 - TOLERANCE_DB / 2},
                "worse": {"bicubic": 0.9, "gaussian": 1.8}}
    assert choose(per_kind, "blind") == "careful"
    assert choose({"blind": per_kind["blind"], "bold": per_kind["bold"]}, "blind") == "blind"


def test_the_maxmin_calibration_raises_the_worst_degradation_or_keeps_the_blind_expert():
    from scripts.combine_experts import MAXMIN_MARGIN_DB, MAXMIN_TIE_DB, choose

    per_kind = {"blind": {"bicubic": 1.0, "bicubic-noaa": 0.3},
                "lifts": {"bicubic": 0.9, "bicubic-noaa": 0.5},  # the worst family up by 0.2: taken
                "lifts_less_mean_more": {"bicubic": 1.2, "bicubic-noaa": 0.5 - MAXMIN_TIE_DB / 2},  # a tie, more mean
                "best_mean": {"bicubic": 2.0, "bicubic-noaa": 0.2}}
    assert choose(per_kind, "blind", "maxmin") == "lifts_less_mean_more"
    nudge = {"blind": per_kind["blind"], "nudge": {"bicubic": 1.1, "bicubic-noaa": 0.3 + MAXMIN_MARGIN_DB / 2}}
    assert choose(nudge, "blind", "maxmin") == "blind"  # a worst gain within the margin: the blind expert stays


def test_the_calibration_leaves_out_experts_without_an_anchor_at_a_scale():
    """An expert that takes no part at a scale (anchor None, e.g. ``combine_experts --blind-at``) stays out of every
    configuration tried there, whatever the rule."""
    from scripts.combine_experts import calibrate

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    images = [torch.from_numpy(rng.integers(0, 255, (3, 184, 184), dtype=np.uint8))]
    for rule in ("tolerance", "maxmin"):
        e = _experts({2: [0.0, None, 1.0], 4: [0.1, None, None]})
        calibrate(e, images, rule)
        assert e.anchors[2][1] is None and e.anchors[4][1:] == (None, None) and e.anchors[4][0] == 0.1
