"""Overlap fusion (MultiDiffusion-style) and the seam score that measures what it buys.

At every sampler step the denoised estimates of a batch of overlapping windows are scatter-added onto a
canvas covering the union of the windows (global HR coordinates), divided by the summed weights and
gathered back, so every window sees the same estimate where windows overlap and seams cannot form there.
Padding added by the model (to reach a size divisible by its downsampling) has weight 0.
"""

from __future__ import annotations

import torch


def taper_weights(height: int, width: int, ramp: int) -> torch.Tensor:
    """(H, W) weights rising linearly over ``ramp`` pixels from every edge (1 inside; all 1 if ramp 0)."""
    if ramp <= 0:
        return torch.ones(height, width)

    def axis(n: int) -> torch.Tensor:
        i = torch.arange(n, dtype=torch.float32)
        d = torch.minimum(i, n - 1 - i) + 1
        return (d / (ramp + 1)).clamp(max=1.0)

    return axis(height)[:, None] * axis(width)[None, :]


class OverlapFusion:
    """Average a batch's windows over their overlaps in global coordinates.

    offsets: (B, 2) global HR (row, col) of each window's top-left pixel; height, width: the windows'
    (padded) size; valid: (height_valid, width_valid), the unpadded extent of every window (pixels beyond
    it neither contribute nor receive); ramp: taper the weights over this many pixels from the window
    edges (0: plain average, as MultiDiffusion).
    """

    def __init__(
        self,
        offsets: torch.Tensor,
        height: int,
        width: int,
        *,
        valid: tuple[int, int] | None = None,
        ramp: int = 0,
    ) -> None:
        offs = torch.as_tensor(offsets).reshape(-1, 2).long().cpu()
        self.batch = offs.shape[0]
        self.height, self.width = height, width
        hv, wv = valid if valid is not None else (height, width)
        r0, c0 = offs[:, 0].min(), offs[:, 1].min()
        self.canvas_h = int((offs[:, 0] - r0).max()) + height
        self.canvas_w = int((offs[:, 1] - c0).max()) + width
        rows = (offs[:, 0] - r0)[:, None] + torch.arange(height)[None, :]  # (B, H)
        cols = (offs[:, 1] - c0)[:, None] + torch.arange(width)[None, :]  # (B, W)
        self.index = (rows[:, :, None] * self.canvas_w + cols[:, None, :]).reshape(-1)  # (B*H*W,)
        w = torch.zeros(height, width)
        w[:hv, :wv] = taper_weights(hv, wv, ramp)
        self.weights = w.expand(self.batch, height, width).reshape(-1)  # (B*H*W,)
        mask = torch.zeros(height, width, dtype=torch.bool)
        mask[:hv, :wv] = True
        self.mask = mask
        total = torch.zeros(self.canvas_h * self.canvas_w).index_add_(0, self.index, self.weights)
        self.total = total
        self._dev: dict = {}

    def _on(self, device: torch.device):
        key = str(device)
        if key not in self._dev:
            self._dev[key] = (
                self.index.to(device),
                self.weights.to(device),
                self.total.clamp_min(1e-12).to(device),
                self.mask.to(device),
            )
        return self._dev[key]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.batch < 2:
            return x
        b, c, h, w = x.shape
        if (b, h, w) != (self.batch, self.height, self.width):
            expected = f"{self.batch} windows of {self.height}x{self.width}"
            raise ValueError(f"fusion set up for {expected}, got {tuple(x.shape)}")
        index, weights, total, mask = self._on(x.device)
        vals = x.float().permute(1, 0, 2, 3).reshape(c, -1)  # (C, B*H*W)
        canvas = torch.zeros(c, self.canvas_h * self.canvas_w, device=x.device).index_add_(1, index, vals * weights)
        fused = (canvas / total)[:, index].reshape(c, b, h, w).permute(1, 0, 2, 3)
        return torch.where(mask, fused, x.float()).to(x.dtype)


def mosaic(windows: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, list[int], list[int]]:
    """Assemble (B, C, H, W) windows into one image by hard cuts at the middle of every overlap (each
    pixel from the window whose centre is nearest; on a regular grid the cuts are straight lines).

    Returns the image (C, H', W') and the cut rows and columns (the first row/column of each new window's
    part)."""
    offs = torch.as_tensor(offsets).reshape(-1, 2).long()
    b, c, h, w = windows.shape
    r0, c0 = int(offs[:, 0].min()), int(offs[:, 1].min())
    H = int(offs[:, 0].max()) - r0 + h
    W = int(offs[:, 1].max()) - c0 + w
    rows, cols = torch.arange(H)[:, None] + r0, torch.arange(W)[None, :] + c0
    best = torch.full((H, W), float("inf"))
    out = torch.zeros(c, H, W)
    owner = torch.full((H, W), -1, dtype=torch.long)
    for i in range(b):
        r, q = int(offs[i, 0]), int(offs[i, 1])
        inside = (rows >= r) & (rows < r + h) & (cols >= q) & (cols < q + w)
        dist = ((rows - (r + (h - 1) / 2)) / h) ** 2 + ((cols - (q + (w - 1) / 2)) / w) ** 2
        take = inside & (dist < best)
        best = torch.where(take, dist, best)
        owner = torch.where(take, torch.full_like(owner, i), owner)
    for i in range(b):
        r, q = int(offs[i, 0]) - r0, int(offs[i, 1]) - c0
        sel = owner[r : r + h, q : q + w] == i
        out[:, r : r + h, q : q + w][:, sel] = windows[i].float().cpu()[:, sel]
    cut_cols = sorted({j for j in range(1, W) if bool((owner[:, j] != owner[:, j - 1]).any())})
    cut_rows = sorted({j for j in range(1, H) if bool((owner[j, :] != owner[j - 1, :]).any())})
    return out, cut_rows, cut_cols


def seam_score(
    image: torch.Tensor, cut_rows: list[int], cut_cols: list[int], *, band: int = 8, period: int = 2
) -> float:
    """Mean squared gradient across the cut lines over the mean squared gradient of the nearby interior.

    The interior of a cut is the lines parallel to it at distances ``period``, ``2 * period``, ... up to
    ``band`` on both sides (not cuts themselves): local, so image content does not dominate, and in the
    same phase, so a model's periodic pattern (2x2 space-to-depth, 2x up-sampling) does not either.
    ~1: the cuts are invisible; clearly above 1: seams. ``image`` is (C, H, W) or (H, W).
    """
    img = image.float()
    if img.dim() == 2:
        img = img[None]
    gx = (img[:, :, 1:] - img[:, :, :-1]).pow(2).mean(dim=(0, 1))  # gx[j - 1]: between columns j - 1 and j
    gy = (img[:, 1:, :] - img[:, :-1, :]).pow(2).mean(dim=(0, 2))
    seam, interior = [], []
    for g, cuts in ((gx, cut_cols), (gy, cut_rows)):
        for j in cuts:
            seam.append(g[j - 1])
            near = [j + k for k in range(-band, band + 1) if k and k % period == 0]
            near = [i for i in near if 1 <= i <= len(g) and i not in cuts]
            interior += [g[i - 1] for i in near]
    if not seam or not interior:
        return 1.0
    return float(torch.stack(seam).mean() / torch.stack(interior).mean().clamp_min(1e-20))
