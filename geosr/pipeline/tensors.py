"""The only crossing between numpy window stacks and torch condition batches."""

from __future__ import annotations

import numpy as np
import torch

from geosr.models.interface import ConditionBatch
from geosr.pipeline.scene import WindowStack


def to_batch(
    stacks: list[WindowStack], *, scale: int, halo: int, n_change_classes: int, n_map_classes: int,
    sharpness: tuple[float, ...] | None = None,
) -> ConditionBatch:
    """Stack numpy window stacks (all of one size) into a ConditionBatch on the CPU (``sharpness``: the scene's,
    for every window)."""

    def cat(name: str, dtype: torch.dtype, channel: bool, given: bool = True) -> torch.Tensor:
        arrays = [getattr(s, name) for s in stacks]
        if not given:  # an input the scene does not have: zeros, without stacking the stacks' views of one 0
            return torch.zeros((len(arrays), *((1,) if channel else ()), *arrays[0].shape), dtype=dtype)
        t = torch.from_numpy(np.stack(arrays))
        return (t.unsqueeze(1) if channel else t).to(dtype)

    has_map = stacks[0].map is not None
    has_ref, has_cd = any(s.has_ref for s in stacks), any(s.has_cd for s in stacks)
    return ConditionBatch(
        lr=cat("lr", torch.float32, False),
        lr_valid=cat("lr_valid", torch.float32, True),
        ref=cat("ref", torch.float32, False, has_ref),
        ref_valid=cat("ref_valid", torch.float32, True, has_ref),
        change=cat("change", torch.int64, True, has_cd),
        changed=cat("changed", torch.float32, True, has_cd),
        map=cat("map", torch.int64, True) if has_map else None,
        offsets=torch.tensor([s.offset for s in stacks], dtype=torch.int64),
        scale=scale,
        halo=halo,
        n_change_classes=n_change_classes,
        n_map_classes=n_map_classes,
        sharpness=sharpness,
    )


def from_output(t: torch.Tensor) -> np.ndarray:
    """Model output (B, C, H, W) to a float32 numpy array on the CPU."""
    return t.detach().to("cpu", torch.float32).numpy()


def style_tensor(image: np.ndarray) -> torch.Tensor:
    """A (C, h, w) style image in model space as the (1, C, h, w) tensor style encoders take."""
    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
