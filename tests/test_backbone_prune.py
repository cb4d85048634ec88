"""Thinning a backbone's channel mixers (geosr.training.backbone_prune)."""

from __future__ import annotations

import pytest
import torch

from geosr.models.backbone import BackboneConfig, build_backbone
from geosr.models.backbone_checkpoint import load_backbone, save_backbone
from geosr.models.backbone_experts import ExpertBackbone
from geosr.training.backbone_prune import distill, prune_backbone, thin_config

CFG = BackboneConfig(dim=8, blocks=2, ffn=2.0, levels=2, scales=(2, 4))
DEAD = [1, 5, 6, 11]  # hidden channels (of 16) that add nothing: the reduction ignores them


def _net(seed: int, dead: list[int]) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = build_backbone(CFG).eval()
    with torch.no_grad():
        for tail in net.tails.values():  # tails start at zero (bilinear): give them weights, or nothing is tested
            tail.weight.normal_(0, 0.1)
        for block in net.body:
            block.mixer.reduce.weight[:, dead] = 0
    return net


def _calibration(seed: int) -> list[tuple[torch.Tensor, int]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(2, 3, 24, 24, generator=g) * 2 - 1, 2), (torch.rand(2, 3, 16, 16, generator=g) * 2 - 1, 4)]


@pytest.mark.parametrize("dim,hidden", [(36, 48), (36, 47), (32, 48), (8, 12), (48, 64)])
def test_the_thin_config_gives_back_the_hidden_width(dim, hidden):
    cfg = thin_config(BackboneConfig(dim=dim, levels=4), hidden)
    assert int(cfg.dim * cfg.ffn) == hidden
    assert build_backbone(cfg).body[0].mixer.expand.out_channels == hidden


def test_pruning_drops_the_channels_that_add_nothing_and_keeps_the_output():
    net = _net(0, DEAD)
    thin = prune_backbone(net, [_calibration(1)], 16 - len(DEAD))
    assert thin.body[0].mixer.expand.out_channels == 12
    x = torch.rand(1, 3, 20, 28) * 2 - 1
    with torch.no_grad():
        for s in (2, 4):
            assert torch.allclose(thin(x, s), net(x, s), atol=1e-3)
    # a live channel removed costs something: the same network thinned further does not match
    thinner = prune_backbone(net, [_calibration(1)], 8)
    with torch.no_grad():
        assert (thinner(x, 4) - net(x, 4)).abs().max() > 2e-2


def test_experts_keep_the_same_channels_and_their_own_fits(tmp_path):
    experts = [_net(0, DEAD), _net(3, DEAD)]
    pack = ExpertBackbone(experts, {2: [0.0, 1.0], 4: [0.0, None]}, ["soft", "aliasing"], {2: 0.5, 4: 1.0})
    thin = prune_backbone(pack, [_calibration(1), _calibration(2)], 12)
    assert isinstance(thin, ExpertBackbone) and thin.anchors == pack.anchors and thin.widths == pack.widths
    x = torch.rand(1, 3, 20, 20) * 2 - 1
    with torch.no_grad():
        for e in range(2):
            assert torch.allclose(thin.experts[e](x, 2), experts[e](x, 2), atol=1e-3)
    path = save_backbone(thin, tmp_path / "thin.safetensors", name="thin")
    back, spec = load_backbone(path)
    assert spec["arch"]["ffn"] * spec["arch"]["dim"] == pytest.approx(12, abs=0.5)
    with torch.no_grad():
        code = torch.tensor([[0.7, 0.0]])
        assert torch.allclose(back(x, 2, code), thin(x, 2, code), atol=1e-6)


def test_distillation_brings_a_thinned_network_towards_the_original():
    teacher = _net(0, [])
    student = prune_backbone(teacher, [_calibration(1)], 6)
    g = torch.Generator().manual_seed(5)

    def batches():
        lr = torch.rand(4, 3, 12, 12, generator=g)
        return lr, torch.nn.functional.interpolate(lr, scale_factor=2, mode="bilinear"), 2

    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        before = (student(x, 2) - teacher(x, 2)).abs().mean()
    distill(student, teacher, batches, 40, lr=1e-3, hr_weight=0.0)
    with torch.no_grad():
        after = (student(x, 2) - teacher(x, 2)).abs().mean()
    assert after < 0.8 * before
