"""ST-LPIPS (shift-tolerant LPIPS, Ghildyal & Liu, ECCV 2022), AlexNet variant, in plain PyTorch.

The network and its weights come from the paper's PyPI wheel ``stlpips-pytorch`` (0.0.2, BSD-2-Clause,
``pip install 'geosr[perceptual]'``): geosr only locates the wheel's file
``stlpips_pytorch/weights/vST0.0/alex_shift_tolerant.pth`` and reads it with ``weights_only=True``.

Why hand-written: the package's own Python modules import torchvision (and IPython, torchsummary), and
torchvision cannot be installed beside geosr's CPU torch, so they are never imported here. This module
rebuilds the same forward pass from the published architecture:

- inputs in [-1, 1], shifted and scaled per channel by the "scaling layer" (constants stored in the file);
- AlexNet trunk with anti-aliasing: every stride-2 step is a blur-pool (reflect padding of 2 on each side,
  depthwise 3 x 3 binomial [1 2 1]^T [1 2 1] / 16, stride 2): the first conv (11 x 11, padding 2) has
  stride 1 and is followed by a blur-pool before its ReLU; the two later max-pools have stride 1 and are
  each followed by a blur-pool; features are taken after the 5 ReLUs (64, 192, 384, 256, 256 channels);
- each feature map is unit-normalised over channels, the two images' squared differences are weighted by a
  1 x 1 linear head (no bias) per layer, and the 5 per-layer maps are averaged over space (the scalar) or
  bilinearly upsampled to the image size and summed (the per-pixel "spatial" form).

Lower is better; 0 for identical images. These are not the same numbers as the original LPIPS.
"""

from __future__ import annotations

import functools
import importlib.util
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

PACKAGE = "stlpips_pytorch"
WEIGHTS = ("weights", "vST0.0", "alex_shift_tolerant.pth")
CHANNELS = (64, 192, 384, 256, 256)
MIN_SIDE = 21  # the smallest image side whose feature maps survive the three reflect-padded blur-pools
_EPS = 1e-10


class _BlurPool(nn.Module):
    """Anti-aliased stride-2 downsampling: reflect pad 2, depthwise 3 x 3 binomial blur, stride 2."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        k2 = torch.outer(k, k) / 16.0
        self.register_buffer("filt", k2.expand(channels, 1, 3, 3).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), self.filt, stride=2, groups=x.shape[1])


class _Scaling(nn.Module):
    """Per-channel input normalisation ``(x - shift) / scale`` (values are stored in the weight file)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale


def _stage(layers: dict[int, nn.Module]) -> nn.Sequential:
    # module names are the layer indices used by the weight file's keys (net.sliceN.<index>.*)
    return nn.Sequential(OrderedDict((str(i), m) for i, m in layers.items()))


class _Trunk(nn.Module):
    """The shift-tolerant AlexNet features: five stages, each ending at one ReLU output."""

    def __init__(self) -> None:
        super().__init__()
        relu = lambda: nn.ReLU(inplace=False)  # noqa: E731
        pool = lambda: nn.MaxPool2d(kernel_size=3, stride=1)  # noqa: E731
        self.slice1 = _stage({0: nn.Conv2d(3, 64, 11, stride=1, padding=2), 1: _BlurPool(64), 2: relu()})
        self.slice2 = _stage({3: pool(), 4: _BlurPool(64), 5: nn.Conv2d(64, 192, 5, padding=2), 6: relu()})
        self.slice3 = _stage({7: pool(), 8: _BlurPool(192), 9: nn.Conv2d(192, 384, 3, padding=1), 10: relu()})
        self.slice4 = _stage({11: nn.Conv2d(384, 256, 3, padding=1), 12: relu()})
        self.slice5 = _stage({13: nn.Conv2d(256, 256, 3, padding=1), 14: relu()})

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in (self.slice1, self.slice2, self.slice3, self.slice4, self.slice5):
            x = stage(x)
            feats.append(x)
        return feats


class _Head(nn.Module):
    """1 x 1 linear weighting (no bias) of one layer's squared feature differences."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        # index 0 is the (training-only) dropout slot of the original head; the weights sit at index 1
        self.model = nn.Sequential(OrderedDict([("0", nn.Identity()), ("1", nn.Conv2d(channels, 1, 1, bias=False))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class STLPIPSAlex(nn.Module):
    """ST-LPIPS, AlexNet variant. ``layer_maps(x0, x1)`` takes (N, 3, H, W) batches in [-1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.scaling_layer = _Scaling()
        self.net = _Trunk()
        for i, c in enumerate(CHANNELS):
            self.add_module(f"lin{i}", _Head(c))

    def layer_maps(self, x0: torch.Tensor, x1: torch.Tensor) -> list[torch.Tensor]:
        """Per layer, the (N, 1, h, w) weighted squared difference of the unit-normalised features."""
        n = x0.shape[0]
        feats = self.net(self.scaling_layer(torch.cat([x0, x1])))
        maps = []
        for i, f in enumerate(feats):
            f = f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + _EPS)
            maps.append(getattr(self, f"lin{i}")((f[:n] - f[n:]) ** 2))
        return maps

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """(N,) distances: the per-layer maps averaged over space, summed over layers."""
        return sum(m.mean(dim=(1, 2, 3)) for m in self.layer_maps(x0, x1))

    def load_weights(self, state: dict[str, torch.Tensor], source: str = "state dict") -> None:
        """Strict load: every key of the file and of the network must match, with the same shapes; the fixed
        buffers (blur filters, scaling constants) must hold the published values."""
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        bad = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
        if missing or unexpected or bad:
            raise RuntimeError(
                f"{source}: not the ST-LPIPS AlexNet weights geosr expects (missing keys {missing[:5]}, "
                f"unexpected keys {unexpected[:5]}, shape mismatches {bad[:5]})"
            )
        fixed = {k: v.clone() for k, v in self.named_buffers()}
        self.load_state_dict(state, strict=True)
        for k, v in self.named_buffers():
            if not torch.allclose(v, fixed[k], atol=1e-6):
                raise RuntimeError(f"{source}: buffer {k} differs from the ST-LPIPS architecture's constant")


def weights_path() -> tuple[Path | None, str]:
    """Where the wheel's AlexNet ST-LPIPS weights are, or (None, one line saying why not). The package is
    located, never imported (its modules import torchvision)."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None, ("ST-LPIPS skipped: the stlpips-pytorch package (its weights) is not installed; "
                      "pip install 'geosr[perceptual]'")
    for loc in spec.submodule_search_locations:
        p = Path(loc).joinpath(*WEIGHTS)
        if p.is_file():
            return p, ""
    return None, f"ST-LPIPS skipped: stlpips-pytorch is installed but lacks its weight file {'/'.join(WEIGHTS)}"


@functools.lru_cache(maxsize=4)
def _load(path: str) -> STLPIPSAlex:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: say which file
        raise RuntimeError(f"{path}: cannot be read as ST-LPIPS weights ({e})") from e
    if not isinstance(state, dict):
        raise RuntimeError(f"{path}: not a state dict ({type(state).__name__})")
    net = STLPIPSAlex()
    net.load_weights(state, source=path)
    net.eval().requires_grad_(False)
    return net


def load_st_lpips() -> tuple[STLPIPSAlex | None, str]:
    """The ST-LPIPS network (loaded once per weight file) and "", or (None, one line) when the package or its
    weight file is absent. A weight file that does not match the network raises RuntimeError."""
    path, why = weights_path()
    if path is None:
        return None, why
    return _load(str(path)), ""


def _to_net_input(img: torch.Tensor) -> torch.Tensor:
    """(C, H, W) [0, 1] -> (1, 3, H, W) [-1, 1]: the first three bands (RGB); a single band is repeated."""
    if img.ndim != 3:
        raise ValueError(f"ST-LPIPS takes (C, H, W) images, got shape {tuple(img.shape)}")
    x = img[:3] if img.shape[0] >= 3 else img[:1].expand(3, -1, -1)
    if x.shape[0] != 3:
        raise ValueError(f"ST-LPIPS needs 1 or at least 3 bands, got {img.shape[0]}")
    return x.float().clamp(0, 1)[None] * 2 - 1


def st_lpips_maps(
    a: torch.Tensor, b: torch.Tensor, net: STLPIPSAlex | None = None
) -> tuple[float, torch.Tensor] | None:
    """ST-LPIPS of two (C, H, W) images in [0, 1]: (the distance, its (H, W) per-pixel map), or None when the
    network is unavailable or the image is smaller than ``MIN_SIDE``. The distance averages each layer's
    map at its own resolution (the metric as published); the map sums the layers upsampled bilinearly to
    the image size, so its mean is close to, not equal to, the distance."""
    if net is None:
        net, _ = load_st_lpips()
        if net is None:
            return None
    if a.shape != b.shape:
        raise ValueError(f"ST-LPIPS needs images of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    H, W = a.shape[-2:]
    if min(H, W) < MIN_SIDE:
        return None
    with torch.inference_mode():
        maps = net.layer_maps(_to_net_input(a), _to_net_input(b))
        dist = float(sum(m.mean() for m in maps))
        full = sum(F.interpolate(m, size=(H, W), mode="bilinear", align_corners=False) for m in maps)
    return dist, full[0, 0]


def st_lpips(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> float | None:
    """ST-LPIPS of two (C, H, W) [0, 1] images; with an (H, W) bool ``mask``, the per-pixel map's mean over it
    (NaN for an empty mask). None when unavailable (see :func:`load_st_lpips`) or too small."""
    res = st_lpips_maps(a, b)
    if res is None:
        return None
    dist, full = res
    if mask is None:
        return dist
    return float(full[mask].mean()) if bool(mask.any()) else float("nan")


__all__ = ["STLPIPSAlex", "load_st_lpips", "weights_path", "st_lpips_maps", "st_lpips", "MIN_SIDE"]
