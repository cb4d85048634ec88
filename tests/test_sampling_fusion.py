"""Overlap fusion and the seam score."""

from __future__ import annotations

import torch

from geosr.sampling.fusion import OverlapFusion, mosaic, seam_score, taper_weights


def _windows_of(image: torch.Tensor, offsets, size):
    h, w = size
    return torch.stack([image[:, r : r + h, c : c + w] for r, c in offsets])


def test_windows_of_one_image_are_left_alone():
    img = torch.randn(3, 20, 40)
    offsets = [(0, 0), (0, 12), (0, 24), (4, 6)]
    win = _windows_of(img, offsets, (16, 16))
    for ramp in (0, 4):
        fused = OverlapFusion(torch.tensor(offsets), 16, 16, ramp=ramp)(win)
        assert torch.allclose(fused, win, atol=1e-6)


def test_fused_windows_agree_in_overlaps_and_average():
    g = torch.Generator().manual_seed(0)
    offsets = torch.tensor([[0, 0], [0, 8]])
    win = torch.randn(2, 2, 8, 16, generator=g)
    fused = OverlapFusion(offsets, 8, 16)(win)
    assert torch.equal(fused[0, :, :, 8:], fused[1, :, :, :8])
    assert torch.allclose(fused[0, :, :, 8:], (win[0, :, :, 8:] + win[1, :, :, :8]) / 2)
    assert torch.equal(fused[0, :, :, :8], win[0, :, :, :8])  # not overlapped: untouched
    assert torch.equal(fused[1, :, :, 8:], win[1, :, :, 8:])


def test_padding_neither_contributes_nor_receives():
    offsets = torch.tensor([[0, 0], [0, 6]])
    win = torch.randn(2, 1, 8, 8)
    fused = OverlapFusion(offsets, 8, 8, valid=(8, 6))(win)
    # window 0's padded columns 6, 7 lie over window 1's valid columns 0, 1: no exchange there
    assert torch.equal(fused[0, :, :, 6:], win[0, :, :, 6:])
    assert torch.equal(fused[1, :, :, :2], win[1, :, :, :2])
    # a single window is returned as is
    assert torch.equal(OverlapFusion(offsets[:1], 8, 8)(win[:1]), win[:1])


def test_taper_weights():
    w = taper_weights(6, 10, 2)
    assert w.shape == (6, 10) and float(w.min()) > 0 and float(w.max()) == 1.0
    assert torch.equal(taper_weights(4, 4, 0), torch.ones(4, 4))
    assert float(w[0, 0]) < float(w[1, 1]) < float(w[2, 2])


def test_seam_score_sees_seams():
    yy, xx = torch.meshgrid(torch.linspace(0, 3, 32), torch.linspace(0, 6, 72), indexing="ij")
    img = torch.stack([torch.sin(xx + yy), torch.cos(xx - yy)])
    win = _windows_of(img, [(0, 0), (0, 24), (0, 48)], (32, 24))
    whole, rows, cols = mosaic(win, torch.tensor([[0, 0], [0, 24], [0, 48]]))
    assert torch.allclose(whole, img, atol=1e-6) and cols == [24, 48] and rows == []
    assert 0.5 < seam_score(whole, rows, cols) < 1.5
    # overlapping windows that disagree by an offset leave seams at the cuts
    offsets = torch.tensor([[0, 0], [0, 16], [0, 32]])
    win = _windows_of(img, offsets.tolist(), (32, 32)) + torch.tensor([0.0, 0.3, -0.3])[:, None, None, None]
    seamy, rows, cols = mosaic(win, offsets)
    assert cols == [24, 40]
    assert seam_score(seamy, rows, cols) > 10
    fused = OverlapFusion(offsets, 32, 32)(win)
    assert seam_score(*mosaic(fused, offsets)) < seam_score(seamy, rows, cols)
