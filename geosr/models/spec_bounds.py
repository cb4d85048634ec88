"""Bounds on a checkpoint's spec, checked before anything is built from it.

A spec is data from a file: without bounds, a 17 KB crafted checkpoint asking for 300,000 blocks per level
takes minutes and gigabytes to build before a single tensor is compared. :func:`check_spec` checks the type
and range of every number that sizes a tensor or a loop (architecture, scales, halo, sampler steps, the
reference-detail blur) and the total size of the network, computed from the spec by :func:`count_weights`
without building anything.

The bounds leave a wide margin over every config in :mod:`geosr.models.configs` (the largest, ``paper``, has
about 121 M values, buffers included) and over geosr's bundled default model.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Mapping, NoReturn

from geosr.config import BACK_PROJECTION_OPERATORS, LR_CONSISTENCY_MODES, MAX_STEPS, SUPPORTED_SCALES
from geosr.errors import ModelFileError
from geosr.models.configs import ArchConfig

# Integer architecture fields: (least, most). Real configs use at most: 3 bands, 7 change classes, base 128,
# 4 blocks per level, 64-wide heads and tiles, a 512-wide embedding, 128-wide SFT / SPADE / flow, 8 flow
# layers, a 64-wide upsampler with 8 blocks.
ARCH_BOUNDS: dict[str, tuple[int, int]] = {
    "n_bands": (1, 64),
    "n_change_classes": (1, 256),
    "n_map_classes": (0, 256),
    "patch": (1, 4),
    "base_channels": (4, 1024),
    "blocks_per_level": (1, 64),
    "head_channels": (8, 1024),  # at least 8: channels // head_channels is the number of attention heads
    "attn_tile": (1, 256),
    "noise_channels": (0, 4096),
    "emb_channels": (0, 8192),
    "sft_hidden": (1, 1024),
    "spade_hidden": (1, 1024),
    "guidance_channels": (1, 1024),
    "flow_layers": (0, 64),
    "flow_hidden": (1, 4096),
    "upsampler_channels": (0, 1024),
    "upsampler_blocks": (0, 64),
}
MAX_LEVELS = 8  # entries of channel_mult (real configs: 3 or 4)
MAX_CHANNEL_MULT = 16  # each entry (real configs: at most 4)
MAX_BLOCKS = 128  # blocks_per_level times levels (paper: 12); bounds the modules built, even on the meta device
BACKBONE_BOUNDS: dict[str, tuple[int, int]] = {"n_bands": (1, 64), "dim": (4, 512), "blocks": (1, 64), "levels": (1, 6)}
MAX_WEIGHTS = 2_000_000_000  # the whole network, buffers included (paper: about 121 M, 16x less)
# Top-level fields: (least, most).
SPEC_BOUNDS: dict[str, tuple[int, int]] = {"bands": (1, 64), "halo": (0, 64)}
MAX_DETAIL_SIGMA = 64.0  # inference.reference_detail.sigma, LR pixels (default model: 8)
MAX_BACK_PROJECTION_ITERATIONS = 100  # inference.lr_consistency.iterations (geosr's own: 6 box, 10 bicubic)
MAX_SCALES = 16
MAX_BAND_NAMES = 64  # a spec's band_names (the bands a model was trained on)
MAX_WINDOW_HR = (8, 16384)  # tiling.window_hr: output pixels a side of a window (lite: 2048)
MAX_MEMORY_PER_PIXEL = 10_000_000  # bytes (the bundled models: at most about 1,400)
MAX_EXPERTS = 8  # a backbone's experts (geosr.models.backbone_experts; scripts/combine_experts.py makes 3)
SHARPNESS_CODE_DIMS = 2  # geosr.models.degradation_code.CODE_DIMS (a test keeps them equal)

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ArchConfig)}


def _show(value: Any) -> str:
    """``value`` as the JSON it was read from, cut short."""
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_spec(spec: Mapping[str, Any], path: str | Path) -> None:
    """Refuse (:class:`ModelFileError`, one sentence naming ``path`` and the field) a spec with a number that
    is not a whole number within geosr's bounds, or that describes a network of more than MAX_WEIGHTS values."""

    def refuse(field: str, problem: str) -> NoReturn:
        raise ModelFileError(f"{path}: spec field {field!r} {problem}")

    def whole(field: str, value: Any, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            refuse(field, f"is {_show(value)}, not an integer; geosr accepts integers from {low} to {high}")
        if value > high:
            refuse(field, f"is {value}; geosr accepts at most {high}")
        if value < low:
            refuse(field, f"is {value}; geosr accepts at least {low}")
        return value

    def items(field: str, value: Any, most: int) -> list:
        if not isinstance(value, list) or len(value) > most:
            refuse(field, f"is {_show(value)}; geosr accepts a list of at most {most} entries")
        return value

    arch = spec["arch"]
    if arch.get("kind") == "backbone":
        _check_backbone(arch, whole, items, refuse)
        if "experts" in spec:
            _check_experts(spec["experts"], items, refuse)
        _check_common(spec, whole, items, refuse)
        return
    if arch.get("kind") == "change-net":
        whole("arch.n_bands", arch.get("n_bands", 3), 1, 64)
        whole("arch.width", arch.get("width", 32), 4, 512)
        for d in items("arch.dilations", arch.get("dilations", [1]), 32) or refuse("arch.dilations", "is empty"):
            whole("arch.dilations", d, 1, 64)
        threshold = spec.get("threshold", 0.5)
        if not _number(threshold) or not 0 < threshold < 1:
            refuse("threshold", f"is {_show(threshold)}; geosr accepts a probability between 0 and 1")
        return
    for name, (low, high) in ARCH_BOUNDS.items():
        if name in arch:
            whole(f"arch.{name}", arch[name], low, high)
    for name in ("style", "residual"):
        if name in arch and not isinstance(arch[name], bool):
            refuse(f"arch.{name}", f"is {_show(arch[name])}; geosr accepts true or false")
    for name in ("dropout", "sigma_data"):
        value = arch.get(name, 0.0)
        if not _number(value):
            refuse(f"arch.{name}", f"is {_show(value)}, not a finite number")
    a = {**_DEFAULTS, **{k: list(v) for k, v in _DEFAULTS.items() if isinstance(v, tuple)}, **arch}
    if not items("arch.channel_mult", a["channel_mult"], MAX_LEVELS):
        refuse("arch.channel_mult", "is empty; geosr needs at least one level")
    for m in a["channel_mult"]:
        whole("arch.channel_mult", m, 1, MAX_CHANNEL_MULT)
    if a["blocks_per_level"] * len(a["channel_mult"]) > MAX_BLOCKS:
        refuse("arch.blocks_per_level", f"is {a['blocks_per_level']} with {len(a['channel_mult'])} levels; geosr "
                                        f"accepts at most {MAX_BLOCKS} blocks over all levels")
    for level in items("arch.attn_levels", a["attn_levels"], MAX_LEVELS):
        whole("arch.attn_levels", level, 0, len(a["channel_mult"]) - 1)
    if (a["noise_channels"] or a["base_channels"]) % 2:
        refuse("arch.noise_channels", "is odd (0 takes base_channels); geosr needs an even number of noise features")
    if a["style"] and a["flow_layers"] < 1:
        refuse("arch.flow_layers", "is 0; a model with a style path needs at least 1")
    weights = count_weights(a)
    if weights > MAX_WEIGHTS:
        refuse("arch", f"describes a network of {weights / 1e9:.1f} G weights; geosr accepts at most "
                       f"{MAX_WEIGHTS / 1e9:.0f} G")
    _check_common(spec, whole, items, refuse)


def _check_backbone(arch: Mapping[str, Any], whole: Any, items: Any, refuse: Any) -> None:
    """The bounds of an LR-space backbone's arch (:class:`geosr.models.backbone.BackboneConfig`)."""
    for name, (low, high) in BACKBONE_BOUNDS.items():
        if name in arch:
            whole(f"arch.{name}", arch[name], low, high)
    ffn = arch.get("ffn", 2.0)
    if not _number(ffn) or not 0.25 <= ffn <= 8:
        refuse("arch.ffn", f"is {_show(ffn)}; geosr accepts a number from 0.25 to 8")
    for s in items("arch.scales", arch.get("scales", []), MAX_SCALES):
        whole("arch.scales", s, 2, 16)
    code = arch.get("code_dims", 0)
    if isinstance(code, bool) or not isinstance(code, int) or code not in (0, SHARPNESS_CODE_DIMS):
        refuse("arch.code_dims", f"is {_show(code)}; geosr's sharpness code has {SHARPNESS_CODE_DIMS} numbers "
                                 "(0: none)")


def _check_experts(experts: Any, items: Any, refuse: Any) -> None:
    """An expert backbone's names (2 to MAX_EXPERTS texts), anchors (per scale, one finite number or null per
    expert) and mixing widths (per scale, in (0, 1])."""
    if not isinstance(experts, dict) or not isinstance(experts.get("anchors"), dict):
        refuse("experts", f"is {_show(experts)}; geosr accepts names and anchors")
    names = items("experts.names", experts.get("names"), MAX_EXPERTS)
    if len(names) < 2 or not all(isinstance(n, str) and 0 < len(n) <= 200 for n in names):
        refuse("experts.names", f"is {_show(names)}; geosr accepts 2 to {MAX_EXPERTS} names")
    if len(experts["anchors"]) > MAX_SCALES:
        refuse("experts.anchors", f"has {len(experts['anchors'])} scales; geosr accepts at most {MAX_SCALES}")
    for scale, anchors in experts["anchors"].items():
        field = f"experts.anchors.{scale}"
        if not str(scale).isdigit():
            refuse(field, "is not keyed by a scale")
        if len(items(field, anchors, MAX_EXPERTS)) != len(names) or not all(
                a is None or _number(a) for a in anchors):
            refuse(field, f"is {_show(anchors)}; geosr accepts one finite number (or null) per expert")
    widths = experts.get("widths", {})
    if not isinstance(widths, dict) or len(widths) > MAX_SCALES:
        refuse("experts.widths", f"is {_show(widths)}; geosr accepts a width per scale")
    for scale, w in widths.items():
        if not _number(w) or not 0 < w <= 1:
            refuse(f"experts.widths.{scale}", f"is {_show(w)}; geosr accepts a number in (0, 1]")


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _check_common(spec: Mapping[str, Any], whole: Any, items: Any, refuse: Any) -> None:
    for name, (low, high) in SPEC_BOUNDS.items():
        if name in spec:
            whole(name, spec[name], low, high)
    for field, text in (("name", spec.get("name", "")), ("arch.name", spec["arch"].get("name", ""))):
        if not isinstance(text, str) or len(text) > 200:
            refuse(field, f"is {_show(text)}; geosr accepts a text of at most 200 characters")
    tiling = spec.get("tiling", {})
    if not isinstance(tiling, dict):
        refuse("tiling", f"is {_show(tiling)}, not an object")
    if "window_hr" in tiling:
        whole("tiling.window_hr", tiling["window_hr"], *MAX_WINDOW_HR)
    share = tiling.get("overlap_share", 0.0)
    if not _number(share) or not 0 <= share < 1:
        refuse("tiling.overlap_share", f"is {_show(share)}; geosr accepts a number from 0 to below 1")
    for field in ("memory_per_hr_pixel", "memory_per_lr_pixel"):
        memory = spec.get(field, 1.0)
        if not _number(memory) or not 0 < memory <= MAX_MEMORY_PER_PIXEL:
            refuse(field, f"is {_show(memory)}; geosr accepts a number of bytes above 0 and at most "
                          f"{MAX_MEMORY_PER_PIXEL:,}")
    names = spec.get("band_names")  # null: as if absent
    if names is not None:
        for n in items("band_names", names, MAX_BAND_NAMES):
            if not isinstance(n, str) or len(n) > 200:
                refuse("band_names", f"holds {_show(n)}; geosr accepts band names as texts of at most 200 characters")
    for s in items("scales", spec.get("scales", []), MAX_SCALES):
        if isinstance(s, bool) or not isinstance(s, int) or s not in SUPPORTED_SCALES:
            refuse("scales", f"holds {_show(s)}; geosr supports whole scales from {SUPPORTED_SCALES[0]} to "
                             f"{SUPPORTED_SCALES[-1]}")
    problem = inference_problem(spec.get("inference", {}))
    if problem:
        refuse(*problem)
    for field in ("training", "metrics"):  # records, read by `geosr models` (a text broke its listing; review)
        if spec.get(field) is not None and not isinstance(spec[field], dict):
            refuse(field, f"is {_show(spec[field])}, not an object")
    bands, takes = spec.get("bands"), spec["arch"].get("n_bands")
    if bands is not None and takes is not None and bands != takes:  # (a diffusion model's loaded as its network's,
        # listed by `geosr models` as the spec's; found in review)
        refuse("bands", f"is {_show(bands)}, and its network (arch.n_bands) takes {_show(takes)}")


def inference_problem(inference: Any) -> tuple[str, str] | None:
    """What is wrong with a spec's (or a training config's) ``inference`` settings, as (field, problem), or None."""
    if not isinstance(inference, dict):
        return "inference", f"is {_show(inference)}, not an object"
    steps = inference.get("steps")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS):
        return "inference.steps", f"is {_show(steps)}; geosr accepts integers from 1 to {MAX_STEPS}"
    detail = inference.get("reference_detail")  # null: as if absent, like steps
    if detail is not None and not isinstance(detail, (bool, dict)):
        return "inference.reference_detail", f"is {_show(detail)}; geosr accepts true, false or an object"
    sigma = detail.get("sigma", 1.0) if isinstance(detail, dict) else 1.0
    if not _number(sigma) or not 0 < sigma <= MAX_DETAIL_SIGMA:
        return ("inference.reference_detail.sigma",
                f"is {_show(sigma)}; geosr accepts a number above 0 and at most {MAX_DETAIL_SIGMA:g}")
    consistency = inference.get("lr_consistency")
    operator = consistency.get("operator", "box") if isinstance(consistency, dict) else None
    if not (consistency is None or isinstance(consistency, bool) or consistency in LR_CONSISTENCY_MODES
            or (isinstance(consistency, dict) and operator in BACK_PROJECTION_OPERATORS)):
        return ("inference.lr_consistency", f"is {_show(consistency)}; geosr accepts true, false, "
                f"{', '.join(map(repr, LR_CONSISTENCY_MODES))} or {{\"operator\": NAME, \"iterations\": N}}")
    rounds = consistency.get("iterations") if isinstance(consistency, dict) else None
    if rounds is not None and (isinstance(rounds, bool) or not isinstance(rounds, int)
                               or not 0 <= rounds <= MAX_BACK_PROJECTION_ITERATIONS):
        return ("inference.lr_consistency.iterations",
                f"is {_show(rounds)}; geosr accepts integers from 0 to {MAX_BACK_PROJECTION_ITERATIONS}")
    return None


def count_weights(arch: Mapping[str, Any]) -> int:
    """How many values (weights and buffers) the network ``arch`` describes, computed without building it.

    ``arch`` holds every :class:`ArchConfig` field (``cfg.to_dict()``); the count mirrors
    :class:`geosr.models.unet.ChangeAwareUNet` and is tested against it.
    """
    a = arch
    nb, nk, nm, p2 = a["n_bands"], a["n_change_classes"], a["n_map_classes"], a["patch"] ** 2
    base, g, sft_h = a["base_channels"], a["guidance_channels"], a["sft_hidden"]
    chans = [base * m for m in a["channel_mult"]]
    levels, blocks, attn = len(chans), a["blocks_per_level"], set(a["attn_levels"])
    emb = a["emb_channels"] or 4 * base

    def conv(cin: int, cout: int, k: int = 3) -> int:
        return k * k * cin * cout + cout

    def lin(cin: int, cout: int) -> int:
        return cin * cout + cout

    def sft(c: int) -> int:
        return 2 * (conv(c + g, sft_h) + conv(sft_h, c))

    def block(cin: int, cout: int, *, attention: bool = False, resample: bool = False, change: bool = False) -> int:
        n = 2 * cin + conv(cin, cout) + lin(emb, 2 * cout) + 2 * cout + conv(cout, cout)  # norms, convs, emb
        n += conv(cin, cout, 1) if cin != cout or resample else 0
        n += 2 * cout + conv(cout, 3 * cout, 1) + conv(cout, cout, 1) if attention else 0
        return n + (sft(cin) + sft(cout) if change else 0)

    n = lin(a["noise_channels"] or base, emb) + lin(emb, emb)
    if a["upsampler_channels"]:
        c = a["upsampler_channels"]
        n += conv(nb, c) + (2 * a["upsampler_blocks"] + 1) * conv(c, c)
        for _ in range(4):  # upsampler.MAX_STAGES
            o = max(16, c // 2)
            n, c = n + conv(c, 4 * o) + conv(o, nb), o
    n += conv((nb + nk) * p2, g) + (3 * levels - 1) * conv(g, g)  # semantic guidance
    if nm:
        sh = a["spade_hidden"]
        n += conv(nm * p2, g) + (levels - 1) * conv(g, g) + levels * (2 * g + 1 + conv(2 * g, sh) + 2 * conv(sh, g))
    n += conv((nb + 1 + nk) * p2, g) + (3 * levels - 1) * conv(g, g)  # texture guidance
    if a["style"]:
        d, layers, h = 2 * g, a["flow_layers"], a["flow_hidden"]
        n += conv(2 * g, g, 1) + conv(nb, g) + 7 * conv(g, g)  # style fuse, style encoder
        n += layers * d + 2 * d + 1 + layers * (lin(d // 2, h) + lin(h, h) + lin(h, 2 * (d - d // 2)))  # flow
    n += conv((3 * nb + nk + nm + 1) * p2, base)  # stem
    skips, c = [base], base
    for level in range(levels):
        for _ in range(blocks):
            n, c = n + block(c, chans[level], attention=level in attn), chans[level]
            skips.append(c)
        if level < levels - 1:
            n += block(c, c, resample=True)
            skips.append(c)
    n += block(c, c, attention=True, change=True) + block(c, c, change=True)
    for level in reversed(range(levels)):
        for _ in range(blocks + 1):
            n, c = n + block(c + skips.pop(), chans[level], attention=level in attn, change=True), chans[level]
        if level > 0:
            n += block(c, c, resample=True, change=True)
    return n + 2 * c + conv(c, nb * p2)


__all__ = ["check_spec", "count_weights", "ARCH_BOUNDS", "MAX_WEIGHTS"]
