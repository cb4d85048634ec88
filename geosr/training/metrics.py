"""Image-quality metrics, each also restricted to a mask (changed / unchanged areas). Pure torch.

Images are (C, H, W) float tensors in [0, 1] ("unit" space: 8-bit data / 255); masks are (H, W) bool.

- PSNR and SSIM on the Y channel (ITU-R BT.601, 16..235, as the SR literature computes them), data range 255;
  SSIM, like VIF, scored only where its filters read no padding (as ssim.m, scikit-image and vifp_mscale.m do);
  no border is trimmed for PSNR (the bench's x4 tables trim ``scale`` pixels, as the SR literature does);
- LR-consistency: PSNR of the SR box-downsampled by x against the LR (all bands, data range 1 -> 255);
- VIF (pixel-domain VIF-P, Sheikh & Bovik 2006, 4 scales, sigma_n^2 = 2, Y channel in 0..255): the sums of
  information are taken over the masked pixels only, so "changed" VIF is the information kept there;
- SAM (mean spectral angle, degrees) and ERGAS (ratio = the scale) over the masked pixels;
- MS-SSIM from torchmetrics (overall only: its pyramid has no meaning on a scattered mask; on the central
  512 x 512 at most, as it is slow on CPU);
- ST-LPIPS (shift-tolerant LPIPS, AlexNet, :mod:`geosr.training.perceptual`; lower is better): overall the
  published value, per region the mean of its per-pixel map; None when the stlpips-pytorch weights are absent.

Overall values of VIF, SAM and ERGAS are checked against torchmetrics in the tests.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from geosr.training.degradations import box_downsample
from geosr.training.perceptual import load_st_lpips, st_lpips_maps


def rgb_to_y(img: torch.Tensor) -> torch.Tensor:
    """(3, H, W) [0, 1] RGB -> (H, W) BT.601 luma in 16..235; a single band is scaled to 0..255."""
    if img.shape[0] >= 3:
        r, g, b = img[0].double(), img[1].double(), img[2].double()
        return 16.0 + 65.481 * r + 128.553 * g + 24.966 * b
    return img[0].double() * 255.0


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> float:
    if mask is None:
        return float(x.mean())
    if not bool(mask.any()):
        return float("nan")
    return float(x[mask.expand_as(x)].mean())


def psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None, data_range: float = 255.0) -> float:
    """PSNR of two arrays of the same shape (the mask broadcasts over leading axes); inf when equal."""
    mse = _masked_mean((a.double() - b.double()) ** 2, mask)
    if math.isnan(mse):
        return float("nan")
    return float("inf") if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def psnr_y(sr: torch.Tensor, hr: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    return psnr(rgb_to_y(sr.clamp(0, 1)), rgb_to_y(hr.clamp(0, 1)), mask)


def _gauss1d(sigma: float, size: int) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float64) - size // 2
    k = torch.exp(-0.5 * (r / sigma) ** 2)
    return (k / k.sum()).float()


def _filter(x: torch.Tensor, k: torch.Tensor | tuple[float, int]) -> torch.Tensor:
    """Same-size Gaussian filtering of (H, W) (separable, float32, reflect padding); ``k`` is (sigma, size)."""
    sigma, size = k
    k1 = _gauss1d(sigma, size)
    p = size // 2
    x4 = x.float()[None, None]
    mode = "reflect" if min(x.shape) > p else "replicate"
    x4 = F.pad(x4, (p, p, p, p), mode=mode)
    x4 = F.conv2d(x4, k1.view(1, 1, 1, -1))
    x4 = F.conv2d(x4, k1.view(1, 1, -1, 1))
    return x4[0, 0]


def _eroded(clean: torch.Tensor, r: int) -> torch.Tensor:
    """``clean`` (H, W bool) shrunk by ``r`` pixels, the image's outside counting as not clean: where a filter of
    radius ``r`` reads only clean pixels (none of its same-size padding)."""
    if r <= 0:
        return clean
    x = F.pad((~clean).float()[None, None], (r, r, r, r), value=1.0)
    return F.max_pool2d(x, 2 * r + 1, stride=1)[0, 0] == 0


SSIM_WINDOW = 11
VIF_WINDOW = 17  # VIF-P's first scale's window: a smaller image has no pixel it scores


def ssim_interior(shape: tuple[int, ...], valid: torch.Tensor | None = None) -> torch.Tensor:
    """Where :func:`ssim_map` sees no padding: the pixels its window fits around, which alone Wang's ssim.m,
    scikit-image and BasicSR score (the padded border added up to 0.008 to SSIM-Y; found in review), and, with
    ``valid`` (H, W bool: where the target has data), reads no pixel outside it (a target's nodata: what a model
    wrote there moved SSIM-Y from 0.910 to 0.893; found in review)."""
    clean = torch.ones(shape[-2:], dtype=torch.bool) if valid is None else valid.bool()
    return _eroded(clean, SSIM_WINDOW // 2)


def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: float = 255.0) -> torch.Tensor:
    """Per-pixel SSIM of two (H, W) images (Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03), same size: its
    border, filtered over reflected pixels, is left out of the scores (:func:`ssim_interior`)."""
    k = (1.5, SSIM_WINDOW)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    x, y = x.float(), y.float()
    mx, my = _filter(x, k), _filter(y, k)
    sxx = _filter(x * x, k) - mx * mx
    syy = _filter(y * y, k) - my * my
    sxy = _filter(x * y, k) - mx * my
    return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))


def ssim_y(sr: torch.Tensor, hr: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Mean SSIM of the Y channel over ``mask`` (None: everywhere) within :func:`ssim_interior`."""
    return _masked_mean(ssim_map(rgb_to_y(sr.clamp(0, 1)), rgb_to_y(hr.clamp(0, 1))), _inside(mask, hr.shape))


def _inside(mask: torch.Tensor | None, shape: tuple[int, ...], valid: torch.Tensor | None = None) -> torch.Tensor:
    interior = ssim_interior(shape, valid)
    return interior if mask is None else interior & mask.bool()


def lr_consistency(sr: torch.Tensor, lr: torch.Tensor, scale: int, mask: torch.Tensor | None = None) -> float:
    """PSNR (0..255) of box_downsample(SR, scale) against the LR; ``mask`` is on the HR grid."""
    down = box_downsample(sr.double().clamp(0, 1), scale)
    m = None
    if mask is not None:
        m = box_downsample(mask[None].double(), scale)[0] > 0.5
    return psnr(down * 255.0, lr.double()[:, : down.shape[1], : down.shape[2]] * 255.0, m)


def vif_maps(
    sr: torch.Tensor, hr: torch.Tensor, sigma_n_sq: float = 2.0, valid: torch.Tensor | None = None
) -> list[tuple[torch.Tensor, torch.Tensor, int, torch.Tensor]]:
    """Per-scale VIF-P information maps of the Y channel: [(numerator map, denominator map, step, valid)], where
    ``step`` is the subsampling of that scale (a mask is subsampled as ``mask[::step, ::step]``) and ``valid``
    where no filter of this scale or the ones before it read padding: the pixels vifp_mscale.m's and torchmetrics'
    valid filtering scores (the padded border added up to 0.02 to VIF; found in review), nor, with ``valid`` given
    (H, W bool: where the target has data), a pixel outside it (a model's values in a target's nodata moved VIF
    from 0.577 to 0.176; found in review)."""
    ref, dist = rgb_to_y(hr.clamp(0, 1)).float(), rgb_to_y(sr.clamp(0, 1)).float()
    clean = torch.ones(ref.shape, dtype=torch.bool) if valid is None else valid.bool().clone()
    eps = 1e-10
    out = []
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        k = (n / 5.0, n)
        if scale > 1:
            ref = _filter(ref, k)[::2, ::2]
            dist = _filter(dist, k)[::2, ::2]
            clean = _eroded(clean, n // 2)[::2, ::2]
        if min(ref.shape) < 2:
            break
        mu1, mu2 = _filter(ref, k), _filter(dist, k)
        s1 = (_filter(ref * ref, k) - mu1 * mu1).clamp(min=0)
        s2 = (_filter(dist * dist, k) - mu2 * mu2).clamp(min=0)
        s12 = _filter(ref * dist, k) - mu1 * mu2
        g = s12 / (s1 + eps)
        sv = s2 - g * s12
        g = torch.where(s1 < eps, torch.zeros_like(g), g)
        sv = torch.where(s1 < eps, s2, sv)
        s1 = torch.where(s1 < eps, torch.zeros_like(s1), s1)
        g = torch.where(s2 < eps, torch.zeros_like(g), g)
        sv = torch.where(s2 < eps, torch.zeros_like(sv), sv)
        sv = torch.where(g < 0, s2, sv)
        g = g.clamp(min=0)
        sv = sv.clamp(min=eps)
        out.append((torch.log10(1 + g * g * s1 / (sv + sigma_n_sq)), torch.log10(1 + s1 / sigma_n_sq),
                    2 ** (scale - 1), _eroded(clean, n // 2)))
    return out


def vif_from_maps(maps: list[tuple[torch.Tensor, torch.Tensor, int, torch.Tensor]],
                  mask: torch.Tensor | None = None) -> float:
    """VIF from :func:`vif_maps`: the information summed over each scale's valid pixels (within ``mask``)."""
    num = den = 0.0
    for nm, dm, step, valid in maps:
        m = valid if mask is None else valid & mask.bool()[::step, ::step][: nm.shape[0], : nm.shape[1]]
        num, den = num + float(nm[m].sum()), den + float(dm[m].sum())
    return num / den if den > 0 else float("nan")


def vif(sr: torch.Tensor, hr: torch.Tensor, mask: torch.Tensor | None = None, sigma_n_sq: float = 2.0) -> float:
    """Pixel-domain VIF (VIF-P) of the Y channel, information summed over ``mask`` (None: everywhere)."""
    return vif_from_maps(vif_maps(sr, hr, sigma_n_sq), mask)


def spectral_angles(sr: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pixel, the angle between the SR and HR vectors (degrees), and where it is defined: a pixel whose SR or
    HR vector is zero (black in every band: a scene's fill) has no direction. (Counted as 90 degrees whatever the
    SR held there, they added 0.35 degrees to a perfect SR with 16 black pixels in 64 x 64; found in review.)"""
    a, b = sr.double(), hr.double()
    norms = a.norm(dim=0) * b.norm(dim=0)
    cos = (a * b).sum(0) / norms.clamp(min=1e-12)
    return torch.rad2deg(torch.arccos(cos.clamp(-1, 1))), norms > 1e-12


def _angle_mean(angle: torch.Tensor, defined: torch.Tensor, mask: torch.Tensor | None) -> float:
    return _masked_mean(angle, defined if mask is None else defined & mask.bool())


def sam(sr: torch.Tensor, hr: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Mean spectral angle between SR and HR pixel vectors, degrees, over the pixels where both have one."""
    return _angle_mean(*spectral_angles(sr, hr), mask)


def ergas(sr: torch.Tensor, hr: torch.Tensor, scale: int, mask: torch.Tensor | None = None) -> float:
    """ERGAS = 100 / scale * sqrt(mean over bands of RMSE_b^2 / mean_b^2) over the masked pixels."""
    terms = []
    for b in range(hr.shape[0]):
        err = _masked_mean((sr[b].double() - hr[b].double()) ** 2, mask)
        mu = _masked_mean(hr[b].double(), mask)
        if math.isnan(err) or not mu:
            return float("nan")
        terms.append(err / mu**2)
    return 100.0 / scale * math.sqrt(sum(terms) / len(terms))


MS_SSIM_MIN_SIDE = 161  # torchmetrics' MS-SSIM: five scales of its 11-px window


def ms_ssim(sr: torch.Tensor, hr: torch.Tensor, max_side: int = 512) -> float | None:
    """torchmetrics' MS-SSIM on the Y channel of the central ``max_side`` square at most (it is slow on
    CPU); None when the image is too small for its 5 scales."""
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as f

    H, W = hr.shape[-2:]
    r0, c0 = max(0, (H - max_side) // 2), max(0, (W - max_side) // 2)
    sr, hr = sr[:, r0 : r0 + max_side, c0 : c0 + max_side], hr[:, r0 : r0 + max_side, c0 : c0 + max_side]
    x, y = rgb_to_y(sr.clamp(0, 1)).float()[None, None], rgb_to_y(hr.clamp(0, 1)).float()[None, None]
    if min(x.shape[-2:]) < MS_SSIM_MIN_SIDE:
        return None
    return float(f(x, y, data_range=255.0))


# ---- the learned metric -----------------------------------------------------------------------------------------
def learned_metrics_status() -> dict[str, str]:
    """Whether the learned metric geosr computes (ST-LPIPS) can run here: "available", or one line saying why not.
    (LPIPS, DISTS and FID are not computed.)"""
    net, why = load_st_lpips()
    return {"ST-LPIPS": "available" if net is not None else why}


def region_metrics(
    sr: torch.Tensor, hr: torch.Tensor, lr: torch.Tensor, scale: int, masks: dict[str, torch.Tensor | None],
    valid: torch.Tensor | None = None,
) -> dict[str, dict[str, float | None] | None]:
    """Every metric of one image for each named region (mask None: the whole image; an empty mask: None).
    Per-pixel maps (SSIM, VIF information, spectral angle, ST-LPIPS) are computed once and reduced per region.
    ``st_lpips`` is None when its weights are absent or the image is too small for the network. ``valid`` (H, W
    bool; None: everywhere): where the target has data, beyond which SSIM's and VIF's windows read nothing."""
    ys, yh = rgb_to_y(sr.clamp(0, 1)), rgb_to_y(hr.clamp(0, 1))
    smap = ssim_map(ys, yh)
    vmaps = vif_maps(sr, hr, valid=valid)
    angle, defined = spectral_angles(sr, hr)
    stl = st_lpips_maps(sr, hr)
    out: dict[str, dict[str, float | None] | None] = {}
    for name, mask in masks.items():
        if mask is not None and not bool(mask.any()):
            out[name] = None
            continue
        out[name] = {
            "psnr_y": psnr(ys, yh, mask),
            "ssim_y": _masked_mean(smap, _inside(mask, hr.shape, valid)),
            "lr_consistency": lr_consistency(sr, lr, scale, mask),
            "vif": vif_from_maps(vmaps, mask),
            # (the angle between two one-band "vectors" is always 0: a perfect score for any single-band output)
            "sam": _angle_mean(angle, defined, mask) if hr.shape[0] > 1 else None,
            "ergas": ergas(sr, hr, scale, mask),
            "ms_ssim": ms_ssim(sr, hr) if mask is None else None,
            "st_lpips": None if stl is None else (stl[0] if mask is None else _masked_mean(stl[1], mask)),
        }
    return out


__all__ = [
    "rgb_to_y", "psnr", "psnr_y", "ssim_map", "ssim_y", "lr_consistency", "vif", "vif_maps", "sam", "ergas", "ms_ssim",
    "region_metrics", "learned_metrics_status",
]
