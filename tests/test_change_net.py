"""The learned change detector's network, checkpoint and training (not shipped: see CHANGELOG; the benchmark
compares it with the classical detector)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geosr.errors import ModelFileError
from geosr.models.change_net import ChangeNet, ChangeNetConfig, load_change_net, save_change_net
from geosr.training.change_fit import fit_change_net, real_examples, synthetic_example, threshold_for_recall


def test_a_short_training_run_learns_a_pasted_change_and_round_trips(tmp_path):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    images = [torch.from_numpy(rng.integers(0, 255, (3, 128, 128), dtype=np.uint8)) for _ in range(4)]
    ex = synthetic_example(images, np.random.default_rng(1), 4, side=16)
    assert ex.lr.shape == (3, 16, 16) and ex.ref.shape == (3, 16, 16) and ex.label.shape == (16, 16)
    hr = torch.rand(3, 64, 64)
    changed = torch.zeros(64, 64, dtype=torch.bool)
    changed[16:48, 16:48] = True
    real = real_examples([hr], [torch.rand(3, 64, 64)], [changed], [torch.ones(64, 64, dtype=torch.bool)], (4,))
    assert len(real) == 4 and real[0].label[6, 6] == 1 and real[0].label[0, 0] == 0
    net = fit_change_net(ChangeNet(ChangeNetConfig(width=8)), real, images, steps=4, batch=4, side=12,
                         log=lambda s: None)
    t = threshold_for_recall(net, real, 0.8)
    assert 0 < t < 1
    path = save_change_net(net, tmp_path / "cd.safetensors", threshold=t)
    again, spec = load_change_net(path)
    assert spec["threshold"] == pytest.approx(t)
    x = torch.rand(1, 3, 20, 20)
    with torch.no_grad():
        assert torch.equal(again(x, x, torch.ones(1, 1, 20, 20)), net(x, x, torch.ones(1, 1, 20, 20)))
    torch.save(net.state_dict(), tmp_path / "cd.pth")
    with pytest.raises(ModelFileError, match="pickle|torch.save"):
        load_change_net(tmp_path / "cd.pth")
