"""Thin a trained backbone's channel mixers (fewer hidden channels) without retraining it from scratch.

Each block's channel mixer is conv3x3 (dim -> hidden) - GELU - conv1x1 (hidden -> dim). Its hidden width is the
network's largest cost on a CPU (issue 18's speed target). Pruning keeps ``hidden`` of the hidden channels of every
block and refits the 1x1 reduction by least squares on calibration LRs, block after block: the kept channels are
chosen, and the reduction fitted, to reproduce what the original block added to the feature stream given the
features the already-thinned blocks before it produce (so errors do not pile up). The kept channels are the same
for every expert of an expert backbone (their weights are mixed channel by channel), each expert's reduction is
fitted on LRs of its own family. Written for geosr (greedy backward elimination over the hidden channels'
Gram matrices, as channel-pruning papers describe: He et al., ICCV 2017; Luo et al., ThiNet, ICCV 2017).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from geosr.models.backbone import BackboneConfig, Block, LRBackbone, build_backbone
from geosr.models.backbone_experts import ExpertBackbone

RIDGE = 1e-4  # relative ridge of the least-squares fits (of the Gram matrix's mean diagonal)


def thin_config(cfg: BackboneConfig, hidden: int) -> BackboneConfig:
    """``cfg`` with ``hidden`` hidden channels per channel mixer."""
    out = replace(cfg, ffn=hidden / cfg.dim)  # int(dim * ffn) must give back the width the weights have
    return out if int(out.dim * out.ffn) == hidden else replace(cfg, ffn=(hidden + 0.5) / cfg.dim)


class _Stats:
    """Gram matrix of a block's hidden activations and their cross products with the reduction's target."""

    def __init__(self, hidden: int, dim: int) -> None:
        self.g = torch.zeros(hidden, hidden, dtype=torch.float64)
        self.c = torch.zeros(hidden, dim, dtype=torch.float64)
        self.tt = 0.0

    def add(self, a: torch.Tensor, t: torch.Tensor) -> None:
        a = a.permute(0, 2, 3, 1).reshape(-1, a.shape[1]).double()
        t = t.permute(0, 2, 3, 1).reshape(-1, t.shape[1]).double()
        self.g += a.T @ a
        self.c += a.T @ t
        self.tt += float((t * t).sum())

    def _solve(self, keep: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(cross products of ``keep``, the ridge least-squares reduction from ``keep``, hidden x dim)."""
        ridge = RIDGE * float(self.g.diagonal().mean())
        g = self.g[keep][:, keep] + ridge * torch.eye(len(keep), dtype=self.g.dtype)
        c = self.c[keep]
        return c, torch.linalg.solve(g, c)

    def error(self, keep: list[int]) -> float:
        """Squared error left by the best reduction from the channels ``keep``."""
        c, w = self._solve(keep)
        return self.tt - float((c * w).sum())

    def fit(self, keep: list[int]) -> torch.Tensor:
        """The reduction's (dim, len(keep)) weight from the channels ``keep``."""
        return self._solve(keep)[1].T.float()


def choose_channels(stats: Sequence[_Stats], hidden: int) -> list[int]:
    """Greedy backward elimination: drop, one at a time, the hidden channel whose loss raises the summed
    least-squares error over ``stats`` (one per expert, each relative to its own target's energy) least."""
    keep = list(range(len(stats[0].g)))
    while len(keep) > hidden:
        best, best_err = keep[0], float("inf")
        for j in keep:
            rest = [k for k in keep if k != j]
            err = sum(s.error(rest) / max(s.tt, 1e-12) for s in stats)
            if err < best_err:
                best, best_err = j, err
        keep.remove(best)
    return keep


def _copy_thinned(src: Block, dst: Block, keep: list[int], reduce_w: torch.Tensor) -> None:
    """Give ``dst`` (a thinned block) ``src``'s modulation, its kept expansion channels and ``reduce_w``."""
    dst.modulation.load_state_dict(src.modulation.state_dict())
    dst.mixer.expand.weight.copy_(src.mixer.expand.weight[keep])
    dst.mixer.reduce.weight.copy_(reduce_w.reshape(dst.mixer.reduce.weight.shape))


def _mixer_in(block: Block, h: torch.Tensor) -> torch.Tensor:
    """The block's features after its modulation (the channel mixer's input)."""
    return h + block.modulation(h)


@torch.no_grad()
def prune_mixers(nets: Sequence[LRBackbone], calibration: Sequence[Sequence[tuple[torch.Tensor, int]]],
                 hidden: int) -> list[LRBackbone]:
    """``nets`` (one architecture; the experts of an expert backbone, or one network) with ``hidden`` hidden
    channels per channel mixer. ``calibration[i]``: (LR batch in model space, scale) pairs for ``nets[i]``."""
    cfg = nets[0].cfg
    if any(n.cfg != cfg for n in nets) or cfg.code_dims:
        raise ValueError("pruning needs networks of one architecture without a sharpness code")
    if not 0 < hidden < int(cfg.dim * cfg.ffn):
        raise ValueError(f"the hidden width must lie in 1..{int(cfg.dim * cfg.ffn) - 1}, not {hidden}")
    outs = []
    for net in nets:
        thin = build_backbone(thin_config(cfg, hidden)).eval()
        thin.load_state_dict({k: v for k, v in net.state_dict().items() if ".mixer." not in k}, strict=False)
        outs.append(thin)
    # the feature streams of the original and the thinned networks, per expert and calibration batch
    orig = [[net.head(((lr + 1) * 0.5).clamp(0, 1)) for lr, _ in cal] for net, cal in zip(nets, calibration)]
    thin_h = [[h.clone() for h in hs] for hs in orig]
    for k in range(cfg.blocks):
        stats = []
        for e, net in enumerate(nets):
            s = _Stats(int(cfg.dim * cfg.ffn), cfg.dim)
            block = net.body[k]
            orig[e] = [block(h) for h in orig[e]]  # the original stream after this block
            for h, after in zip(thin_h[e], orig[e]):
                x = _mixer_in(block, h)
                s.add(F.gelu(block.mixer.expand(x)), after - x)  # what the original adds, seen from the thinned
            stats.append(s)
        keep = choose_channels(stats, hidden)
        for e, net in enumerate(nets):
            _copy_thinned(net.body[k], outs[e].body[k], keep, stats[e].fit(keep))
            thin_h[e] = [outs[e].body[k](h) for h in thin_h[e]]
    return outs


def prune_backbone(net: LRBackbone | ExpertBackbone,
                   calibration: Sequence[Sequence[tuple[torch.Tensor, int]]], hidden: int,
                   ) -> LRBackbone | ExpertBackbone:
    """:func:`prune_mixers` of a network or of an expert backbone's experts (anchors and widths kept)."""
    if isinstance(net, ExpertBackbone):
        experts = prune_mixers(list(net.experts), calibration, hidden)
        return ExpertBackbone(experts, net.anchors, net.names, net.widths).eval()
    return prune_mixers([net], calibration, hidden)[0]


def distill(student: LRBackbone, teacher: LRBackbone, batches: Callable[[], tuple[torch.Tensor, torch.Tensor, int]],
            steps: int, *, lr: float = 2e-4, hr_weight: float = 0.25,
            log: Callable[[str], None] | None = None) -> LRBackbone:
    """Fine-tune a thinned ``student`` towards the network it was thinned from: L1 to the ``teacher``'s output plus
    ``hr_weight`` x L1 to the true HR, Adam with a cosine schedule. ``batches()`` gives (LR [0, 1], HR [0, 1],
    scale) training crops (moved to the student's device)."""
    device = next(student.parameters()).device
    teacher.eval()
    student.train()
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps), eta_min=lr * 0.01)
    for step in range(steps):
        lr01, hr01, scale = batches()
        lr01, hr01 = lr01.to(device), hr01.to(device)
        x = lr01 * 2 - 1
        with torch.no_grad():
            target = teacher(x, scale)
        out = student(x, scale)
        loss = F.l1_loss(out, target) + hr_weight * F.l1_loss(out, hr01 * 2 - 1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 0.1)
        opt.step()
        sched.step()
        if log and (step % 100 == 0 or step == steps - 1):
            log(f"step {step}: loss {loss.item():.5f}")
    return student.eval()
