"""A backbone with one set of weights per family of LR formation, blended by the scene's sharpness code.

One network cannot be best both for a soft sensor PSF and for an aliasing resize: what it must undo differs. The
experts share one architecture and one ancestry (each is fine-tuned on one family of
:mod:`geosr.training.sensor_degradations` from weights that all descend from one network), so their weights can be
averaged (network interpolation: Wang et al., "Deep Network Interpolation for Continuous Imagery Effect
Transition", CVPR 2019). Each expert has an
*anchor* per scale: the median first number of the sharpness code (:mod:`geosr.models.degradation_code`) of LRs
made by its family, measured on training images. A scene's code is placed between the two anchors around it
and the weights of those two experts are mixed (beyond the outermost anchors: that expert alone): at a fraction
``t`` of the way from one anchor to the next, the second gets ``clip((t - 1/2) / width + 1/2, 0, 1)``, where a
``width`` of 1 mixes linearly all the way and a smaller one keeps each expert alone near its anchor (chosen per
scale on validation images by ``scripts/combine_experts.py``). An expert whose anchor at a scale is None takes
no part at that scale (where it gains nothing over the others, a noisy code should not pick it).

The whole scene is told one code, so every window runs the same blended weights and windows still agree.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Sequence

import torch
from torch import nn
from torch.func import functional_call

from geosr.models.backbone import BackboneConfig, LRBackbone, own_codes


class ExpertBackbone(nn.Module):
    """``experts`` (same architecture, no code of their own) blended by ``anchors[scale]`` (one per expert, None:
    not at that scale) with ``widths[scale]`` (in (0, 1]; default 1: linear)."""

    uses_code = True  # the pipeline measures the scene's sharpness code for it

    def __init__(self, experts: Sequence[LRBackbone], anchors: dict[int, Sequence[float | None]],
                 names: Sequence[str], widths: dict[int, float] | None = None) -> None:
        super().__init__()
        if len(experts) < 2 or len(names) != len(experts):
            raise ValueError(f"an expert backbone needs at least two named experts, not {len(experts)}")
        cfgs = {e.cfg for e in experts}
        if len(cfgs) != 1 or experts[0].cfg.code_dims:
            raise ValueError("the experts must share one architecture without a sharpness code of its own")
        self.experts = nn.ModuleList(experts)
        self.names = tuple(names)
        self.anchors: dict[int, tuple[float | None, ...]] = {}
        for s in self.cfg.scales:
            a = tuple(None if v is None else float(v) for v in anchors.get(s, ()))
            used = [v for v in a if v is not None]
            if len(a) != len(experts) or not used or len(set(used)) != len(used):
                raise ValueError(f"x{s} needs {len(experts)} anchors, one per expert (None: not at that scale), "
                                 f"distinct and not all None, not {list(a)}")
            self.anchors[s] = a
        self.widths: dict[int, float] = {s: float((widths or {}).get(s, 1.0)) for s in self.cfg.scales}
        if not all(0 < w <= 1 for w in self.widths.values()):
            raise ValueError(f"the mixing widths must lie in (0, 1], not {self.widths}")

    @property
    def cfg(self) -> BackboneConfig:
        return self.experts[0].cfg

    @property
    def tails(self) -> nn.ModuleDict:
        return self.experts[0].tails

    def mix(self, code0: float, scale: int) -> list[float]:
        """Each expert's weight for a scene whose code's first number is ``code0`` (sums to 1, at most two > 0)."""
        anchors = self.anchors[scale]
        order = sorted((i for i, a in enumerate(anchors) if a is not None), key=lambda i: anchors[i])
        pos = [anchors[i] for i in order]
        w = [0.0] * len(anchors)
        j = bisect_right(pos, code0)
        if j == 0:
            w[order[0]] = 1.0
        elif j == len(pos):
            w[order[-1]] = 1.0
        else:
            t = (code0 - pos[j - 1]) / (pos[j] - pos[j - 1])
            t = min(1.0, max(0.0, (t - 0.5) / self.widths[scale] + 0.5))
            w[order[j - 1]], w[order[j]] = 1.0 - t, t
        return w

    def blended(self, weights: Sequence[float]) -> dict[str, torch.Tensor]:
        """The parameters of the mix ``weights`` of the experts."""
        named = [dict(e.named_parameters()) for e in self.experts]
        return {k: sum(w * p[k] for w, p in zip(weights, named) if w) for k in named[0]}

    def forward(self, lr: torch.Tensor, scale: int, code: torch.Tensor | None = None) -> torch.Tensor:
        """As :meth:`LRBackbone.forward`; ``code`` (B, 2) or None (each image's own)."""
        if code is None:
            code = own_codes(lr)
        code = code.detach().float().cpu()
        outs, params, last = [], {}, None
        for i in range(lr.shape[0]):
            c0 = float(code[min(i, len(code) - 1), 0])
            if c0 != last:  # windows of one scene share the weights
                params, last = self.blended(self.mix(c0, scale)), c0
            outs.append(functional_call(self.experts[0], params, (lr[i : i + 1], scale)))
        return torch.cat(outs)
