"""``geosr evaluate``: the papers' protocol on a data set, for a model and the baselines, through ``upscale``.

For every pair (target HR, reference, change mask) and every scale, the LR is the target downsampled by
antialiased bicubic (the papers' test protocol, ``Bic_LR_*``; a given LR is used when the data set ships
one), stored as 8 bits. LR, reference and mask are written as small GeoTIFFs and every model runs through
:func:`geosr.pipeline.upscale.upscale` -- the same windows, stretch, harmonization, blending and 8-bit
output a user gets. Metrics (:mod:`geosr.training.metrics`) are taken overall and split into changed /
unchanged areas (pixels with a known label only, where the data set says which are known).

Baselines ``bicubic`` and ``reference-paste`` are always in the table. ``hr`` (the ground truth itself) is
accepted as a model name to check the metrics. Output: ``metrics.json``, ``metrics.md`` and PNG panels
(LR | Ref | mask | SR | HR) in the output folder, which must be empty or new unless ``overwrite`` (then an
earlier evaluation there is replaced).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from geosr.conditioning.changes import BUILTIN_TABLES, ChangeClassTable
from geosr.errors import (
    BandError,
    ClassTableError,
    GeoSRError,
    InputError,
    OptionError,
    ScaleError,
    names_too_long_are_input_errors,
)
from geosr.io.outputs import atomic_output
from geosr.io.paths import recorded_options
from geosr.io.rasters import band_count
from geosr.models.consistency import LRConsistent, back_project  # noqa: F401 (re-exported)
from geosr.models.interface import SuperResolver
from geosr.options import EvaluateOptions
from geosr.options.declare import check_callable
from geosr.training.degradations import bicubic_degrade
from geosr.training.layouts import refuse_hidden_changes
from geosr.training.metrics import MS_SSIM_MIN_SIDE, SSIM_WINDOW, VIF_WINDOW, learned_metrics_status, region_metrics
from geosr.training.outputs import OutputFolder
from geosr.training.overlap import training_data_notes
from geosr.training.pairs import Pair
from geosr.training.sources import absent_heldout_sets, evaluation_pairs

BASELINES = ("bicubic", "reference-paste")
REGIONS = ("overall", "unchanged", "changed")
EVAL_FILES = ("metrics.json", "metrics.md", "panel_*.png")  # what an evaluation writes into its folder


# ---- LR-consistency at inference -----------------------------------------------------------------------------
def model_inference_options(path_or_name: str) -> dict[str, Any]:
    """The ``inference`` entry of a checkpoint's spec (sampler steps, LR-consistency, reference detail), {} for
    others."""
    try:
        from geosr.models.checkpoint import read_spec
        from geosr.models.registry import resolve_checkpoint

        return dict(read_spec(resolve_checkpoint(path_or_name)).get("inference", {}))
    except Exception:
        return {}


def load_eval_model(
    spec: str,
    *,
    steps: int | None,
    lr_consistency: bool | None,
    reference_detail: bool | None = None,
    device: str = "cpu",
) -> SuperResolver:
    """A model ready for evaluation: ``steps`` / ``lr_consistency`` / ``reference_detail`` None take the
    checkpoint's own ``inference`` settings (geosr's default model: one step, reference detail and
    back-projection on)."""
    from geosr.config import SamplerConfig
    from geosr.models.registry import load_model

    if spec in ("bicubic", "lanczos", "reference-paste"):
        return load_model(spec)
    opts = model_inference_options(spec)
    steps = steps if steps is not None else opts.get("steps")
    sampler = SamplerConfig(steps=steps, reference_detail=reference_detail)  # as geosr upscale passes it
    return load_model(spec, device=device, sampler=sampler, lr_consistency=lr_consistency)


# ---- cases ------------------------------------------------------------------------------------------------------
@dataclass
class Case:
    name: str
    scale: int
    hr: torch.Tensor  # (C, H, W) unit space
    lr: torch.Tensor  # (C, H/s, W/s) unit space, 8-bit values
    ref: torch.Tensor | None
    change_values: np.ndarray | None  # raster values of the change table (H, W)
    changed: torch.Tensor  # (H, W) bool
    labelled: torch.Tensor  # (H, W) bool
    table: str = "binary"
    group: str = ""
    valid: torch.Tensor | None = None  # (H, W) bool where the target has data (None: everywhere)
    ref_valid: torch.Tensor | None = None  # (H, W) bool where the reference has data (None: wherever there is one)
    lr_source: str = "bicubic"  # "given": the data set's own LR (Bic_LR_*, real_LR_*, an LR of a stack)

    @property
    def scored(self) -> torch.Tensor | None:
        """(H, W) bool where the metrics look (None: everywhere): :func:`scored_area`."""
        return scored_area(self.valid, self.scale)

    @property
    def grey(self) -> bool:
        """Whether the target's bands are all one (a grey image, given to RGB models as its band three times): a
        one-band model takes its one band, and SAM, no measure of a grey image, is left out (it read 0 for bicubic
        and an angle for a model that wrote the bands a little apart; found in review)."""
        return self.hr.shape[0] > 1 and all(torch.equal(self.hr[0], b) for b in self.hr[1:])


def scored_area(valid: torch.Tensor | None, scale: int) -> torch.Tensor | None:
    """Where a case is scored: the target's valid pixels at least 2 LR px (the bicubic kernel's reach) from its
    nodata, whose 0 fill the degradation spreads into the LR there; None where the target is valid everywhere."""
    if valid is None or bool(valid.all()):
        return None
    reach = 2 * scale
    near = torch.nn.functional.max_pool2d((~valid).float()[None, None], 2 * reach + 1, stride=1, padding=reach)
    return near[0, 0] == 0


def _share(mask: torch.Tensor | None) -> str:
    """The share of an image a mask covers, in words ("14%"; "all" for None)."""
    return "all" if mask is None else f"{100 * float(mask.float().mean()):.0f}%"


def lr_valid(valid: torch.Tensor | None, scale: int) -> np.ndarray | None:
    """(h, w) bool: the LR pixels whose every HR pixel is valid (written as the LR's mask: upscale keeps the
    others nodata, as for a user's scene); None where all are."""
    if valid is None:
        return None
    H, W = valid.shape
    return valid.numpy().reshape(H // scale, scale, W // scale, scale).all(axis=(1, 3))


def make_cases(pairs: Sequence[Pair], scales: Sequence[int]) -> list[Case]:
    cases = []
    for p in pairs:
        for s in scales:
            H, W = p.shape[0] // s * s, p.shape[1] // s * s
            if H < 2 * s or W < 2 * s:
                continue
            hr = p.target[:, :H, :W].clamp(0, 1)
            lr = p.lr.get(s)
            lr = lr[:, : H // s, : W // s] if lr is not None else bicubic_degrade(hr, s)
            lr = (lr.clamp(0, 1) * 255).round() / 255
            ref = p.ref[:, :H, :W].clamp(0, 1) if p.ref is not None else None
            values = None
            if p.change is not None:
                lut = np.array([c.value for c in p.table.classes], dtype=np.int64)
                values = lut[p.change[:H, :W].numpy()]
            labelled = p.labelled[:H, :W] if p.labelled is not None else torch.ones(H, W, dtype=torch.bool)
            cases.append(Case(p.name, s, hr, lr, ref, values, p.changed[:H, :W], labelled, p.table.name, p.group,
                              p.valid[:H, :W] if p.valid is not None else None,
                              p.ref_valid[:H, :W] if p.ref_valid is not None and ref is not None else None,
                              "given" if p.lr.get(s) is not None else "bicubic"))
    return cases


# ---- running through the pipeline -------------------------------------------------------------------------------
def _write_tif(path: Path, arr: np.ndarray, res: float, dtype: str = "uint8", valid: np.ndarray | None = None) -> None:
    import rasterio
    from affine import Affine
    from rasterio.crs import CRS

    arr = arr[None] if arr.ndim == 2 else arr
    with rasterio.open(
        path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0], dtype=dtype,
        crs=CRS.from_epsg(3857), transform=Affine(res, 0, 500000.0, 0, -res, 5000000.0),
    ) as ds:
        ds.write(arr.astype(dtype))
        if valid is not None:
            ds.write_mask(valid.astype(np.uint8) * 255)


def _to8(t: torch.Tensor) -> np.ndarray:
    return (t.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


DEFAULT_OUT = "geosr-eval"


def run_case(case: Case, model: str | SuperResolver, folder: Path, *, seed: int = 0, steps: int | None = None,
             device: str = "cpu", cd: str = "given") -> torch.Tensor:
    """The SR of one case through :func:`geosr.pipeline.upscale.upscale` on ``device``, unit space (C, H, W).
    ``cd``: the case's own change mask (``given``), that mask on the LR grid (``given-lr``), upscale's detection
    (``auto``) or none (``none``)."""
    import rasterio

    from geosr.config import DeviceConfig, OutputConfig, SamplerConfig
    from geosr.pipeline.upscale import upscale

    if model == "hr":
        return case.hr.clone()
    folder.mkdir(parents=True, exist_ok=True)
    lr_p, ref_p = folder / "lr.tif", folder / "ref.tif"
    if not lr_p.exists():
        _write_tif(lr_p, _to8(case.lr), float(case.scale), valid=lr_valid(case.valid, case.scale))
        if case.ref is not None:  # its nodata as a mask, as a user's reference declares it (was pasted as black)
            _write_tif(ref_p, _to8(case.ref), 1.0, valid=None if case.ref_valid is None else case.ref_valid.numpy())
    name = model if isinstance(model, str) else getattr(model, "name", "model")
    out = folder / f"sr_{name.replace('/', '_')}.tif"
    mask, classes = _case_mask(case, folder, cd)
    one = not isinstance(model, str) and getattr(model, "bands", None) == 1 and case.grey  # a grey case's one band
    try:
        upscale(
            str(lr_p), output=str(out), scale=case.scale, bands="1" if one else None,
            ref_bands="1" if one and case.ref is not None else None,
            ref=str(ref_p) if case.ref is not None else None,
            cd=mask, cd_classes=classes,
            model=model, sampler=SamplerConfig(seed=seed, steps=steps),
            output_config=OutputConfig(overwrite=True), device=DeviceConfig(device=device, batch_size=4),
            ignore_unused=True,  # every model sees the same inputs; a baseline that cannot use some ignores them
        )
    except (KeyboardInterrupt, SystemExit) as exc:  # (a signal as this case's output was put in place: upscale
        # marks it "the job is complete", which evaluate's is not: nothing of it was written; found in review)
        if hasattr(exc, "geosr_completed"):
            del exc.geosr_completed  # type: ignore[attr-defined]
        raise
    except ClassTableError as exc:  # upscale's advice names its `cd_classes`, which evaluate has not
        trained = re.search(r"trained with (\d+) change classes", str(exc))
        if trained is None:
            raise
        how = "detected against the reference (binary)" if mask == "auto" else f"in the {classes} table"
        raise ClassTableError(f"model {name}: was trained with {trained.group(1)} change classes, and the change mask "
                              f"of case {case.name} is {how}; evaluate it on data labelled in its own table (`cd` "
                              "given or given-lr), or with `cd` none", param="cd") from None
    with rasterio.open(out) as ds:
        sr = torch.from_numpy(ds.read().astype(np.float32) / 255.0)
    return sr.expand(case.hr.shape[0], -1, -1).contiguous() if one else sr


def lr_grid_mask(changed: torch.Tensor, scale: int) -> np.ndarray:
    """(H, W) bool change on the HR grid -> the same grid with each LR pixel's block changed where most of its
    pixels are: the best a detector working on the LR grid can give (``cd="given-lr"``)."""
    H, W = changed.shape
    share = changed.numpy().reshape(H // scale, scale, W // scale, scale).mean(axis=(1, 3))
    return np.kron(share > 0.5, np.ones((scale, scale), bool))


def lr_grid_classes(values: np.ndarray, changed: torch.Tensor, scale: int, table: ChangeClassTable) -> np.ndarray:
    """:func:`lr_grid_mask` in a class table's values: each LR block changed where most of its pixels are, as the
    changed class most of its changed pixels hold; unchanged (the table's first unchanged value) elsewhere."""
    H, W = changed.shape
    unchanged = next(c.value for c in table.classes if not c.changed)
    hit = changed.numpy()
    if not hit.any():
        return np.full((H, W), unchanged, values.dtype)
    kinds = np.unique(values[hit])
    counts = np.stack([((values == v) & hit).reshape(H // scale, scale, W // scale, scale).sum(axis=(1, 3))
                       for v in kinds])
    block = np.where(lr_grid_mask(changed, scale)[::scale, ::scale], kinds[counts.argmax(axis=0)], unchanged)
    return np.kron(block, np.ones((scale, scale), values.dtype))


def _case_mask(case: Case, folder: Path, cd: str) -> tuple[str, str]:
    """(upscale's --cd, --cd-classes) for ``case`` under evaluate's ``cd`` mode, writing the mask it needs."""
    if case.ref is None or cd in ("auto", "none"):
        return ("none" if case.ref is None else cd), "binary"
    if case.change_values is None:  # unlabelled: detected, as upscale does with a reference and no mask ("none"
        return "auto", "binary"     # took the reference as unchanged everywhere: stale pixels pasted)
    path = folder / f"cd_{cd}.tif"
    builtin = case.table in BUILTIN_TABLES
    if cd == "given-lr":
        if not path.exists():
            values = lr_grid_classes(case.change_values, case.changed, case.scale, BUILTIN_TABLES[case.table]) \
                if builtin else lr_grid_mask(case.changed, case.scale)
            _write_tif(path, values.astype(np.uint8), 1.0)
        # in the data set's table (a binary mask was refused by every model of a multi-class table; found in review)
        return str(path), case.table if builtin else "binary"
    if not path.exists():  # a data set's own table (its CLASS_Table.txt): its classes as changed or not
        _write_tif(path, (case.change_values if builtin else case.changed.numpy()).astype(np.uint8), 1.0)
    return str(path), case.table if builtin else "binary"


def reference_in_changed(case: Case, folder: Path, name: str) -> float | None:
    """The share of the case's labelled changed pixels that the run's provenance sidecar calls "reference detail
    used" (class 1); None without a sidecar or a labelled change."""
    import rasterio

    path = folder / f"sr_{name.replace('/', '_')}.provenance.tif"
    where = case.changed & case.labelled
    where = where if case.scored is None else where & case.scored
    if not path.exists() or not bool(where.any()):
        return None
    with rasterio.open(path) as ds:
        classes = torch.from_numpy(ds.read(1))
    return float((classes[where] == 1).float().mean())


def case_metrics(case: Case, sr: torch.Tensor) -> dict[str, dict[str, float | None] | None]:
    scored = case.scored
    known = case.labelled if scored is None else case.labelled & scored
    masks = {"overall": scored, "unchanged": ~case.changed & known, "changed": case.changed & known}
    metrics = region_metrics(sr, case.hr, case.lr, case.scale, masks, case.valid)
    if case.grey:  # (scored as its three bands, as a colour image: the same scale of Y)
        for region in metrics.values():
            if region is not None:
                region["sam"] = None
    return metrics


def panel(case: Case, sr: torch.Tensor, path: Path, side: int = 384) -> None:
    """PNG: LR (nearest) | Ref | mask | SR | HR, the central ``side`` x ``side`` crop."""
    from PIL import Image

    H, W = case.hr.shape[-2:]
    r0, c0 = max(0, (H - side) // 2), max(0, (W - side) // 2)
    sl = (slice(None), slice(r0, r0 + side), slice(c0, c0 + side))
    s = case.scale
    lr_up = case.lr.repeat_interleave(s, -2).repeat_interleave(s, -1)
    ref = case.ref if case.ref is not None else torch.zeros_like(case.hr)
    mask = case.changed.float()[None]

    def rgb(t: torch.Tensor) -> torch.Tensor:  # the first three bands; fewer: the first as grey
        return t[:3] if t.shape[0] >= 3 else t[:1].expand(3, -1, -1)

    tiles = [rgb(t)[sl] for t in (lr_up, ref, mask, sr, case.hr)]
    gap = torch.ones(3, tiles[0].shape[1], 4)
    row = torch.cat([x for t in tiles for x in (t, gap)][:-1], dim=-1)
    with atomic_output(path) as tmp:  # an interrupted run leaves no truncated panel
        Image.fromarray(_to8(row).transpose(1, 2, 0)).save(tmp, format="PNG")


def _size_notes(cases: list[Case], pairs: Sequence[Pair] = (), scales: Sequence[int] = ()) -> list[str]:
    """Why a metric is left out (empty in the tables) for images too small for it or with pixels without data, and
    an image left out of a scale too small for it (its mean then covered fewer images, unsaid; found in review)."""
    from geosr.training.perceptual import MIN_SIDE

    notes = []
    for s in scales:
        small = [p.name for p in pairs if min(p.shape) // s < 2]
        if small:
            notes.append(f"x{s} needs images of at least {2 * s} px a side; left out of its means: {', '.join(small)}")
    # (SSIM-Y and VIF are scored where their windows fit: a smaller image was dropped from their means unsaid;
    # found in review)
    for metric, side in (("SSIM-Y", SSIM_WINDOW), ("VIF", VIF_WINDOW), ("MS-SSIM", MS_SSIM_MIN_SIDE),
                         ("ST-LPIPS", MIN_SIDE)):
        small = sorted({f"{c.name} x{c.scale}" for c in cases if min(c.hr.shape[-2:]) < side})
        if small:
            notes.append(f"{metric} needs images of at least {side} px a side; left out for {', '.join(small)}")
    single = sorted({f"{c.name} x{c.scale}" for c in cases if c.hr.shape[-3] < 2 or c.grey})
    if single:
        notes.append(f"SAM needs two bands or more; left out for {', '.join(single)}"
                     + (" (grey images: their bands all one)" if any(c.grey for c in cases) else ""))
    gaps = sorted({f"{c.name} x{c.scale}" for c in cases if c.scored is not None
                   and min(c.hr.shape[-2:]) >= MS_SSIM_MIN_SIDE})
    if gaps:
        notes.append(f"MS-SSIM is measured on whole images only; left out for those with pixels without data: "
                     f"{', '.join(gaps)}")
    return notes


def _write_text(path: Path, text: str) -> None:
    """``text`` into ``path`` whole or not at all (an interrupt leaves no half-written file)."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _mean(values: list[float], left_out: list[int] | None = None) -> float | None:
    """The mean of the measured values; an infinite one (a PSNR where an image is reproduced exactly, e.g. a flat
    tile) is left out (``left_out`` gets how many, of how many) unless all are (``hr``: inf). It made the whole
    mean inf, and two models' differences on every other image vanished."""
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return None
    finite = [v for v in vals if math.isfinite(v)]
    if not finite:
        return float("inf")
    if left_out is not None and len(finite) < len(vals):
        left_out += [len(vals) - len(finite), len(vals)]
    return float(np.mean(finite))


@dataclass
class EvalResult:
    out: str
    scales: list[int]
    models: list[str]
    summary: dict  # scale -> model -> region -> metric -> mean
    cases: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    options: dict = field(default_factory=dict)  # the options that shaped the numbers (EvaluateOptions)

    def to_dict(self) -> dict:
        """Strict-JSON-ready: infinite values become "inf", NaN becomes None."""
        return _clean(dict(out=self.out, scales=self.scales, models=self.models, summary=self.summary,
                           notes=self.notes, seconds=round(self.seconds, 1), options=self.options, cases=self.cases))


METRIC_COLUMNS = (("psnr_y", "PSNR-Y"), ("ssim_y", "SSIM-Y"), ("vif", "VIF"), ("lr_consistency", "LR-cons"),
                  ("sam", "SAM°"), ("ergas", "ERGAS"), ("st_lpips", "ST-LPIPS"))


def markdown_table(summary: dict, models: Sequence[str]) -> str:
    lines = []
    for scale, per_model in summary.items():
        lines.append(f"### x{scale}\n")
        columns = [f"{label} {r[:3] if r != 'overall' else 'all'}" for _, label in METRIC_COLUMNS for r in REGIONS]
        head = ["model"] + columns + ["MS-SSIM"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for m in models:
            row = [m]
            for key, _ in METRIC_COLUMNS:
                for r in REGIONS:
                    v = (per_model.get(m, {}).get(r) or {}).get(key)
                    fmt = ".4f" if key in ("ssim_y", "vif", "st_lpips") else ".2f"
                    row.append("–" if v is None else ("inf" if math.isinf(v) else f"{v:{fmt}}"))
            v = (per_model.get(m, {}).get("overall") or {}).get("ms_ssim")
            row.append("–" if v is None else f"{v:.4f}")
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


@names_too_long_are_input_errors
def evaluate(
    data: str | Path | Sequence[Pair],
    *,
    options: EvaluateOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] | None = None,
    **fields: Any,
) -> EvalResult:
    """Evaluate models and the baselines on ``data`` (pairs, or a path:
    :func:`geosr.training.sources.evaluation_pairs`) and write the results to a folder. Pairs given are checked
    first (:meth:`~geosr.training.pairs.Pair.check`: InputError where their tensors' shapes disagree).

    ``options`` is an :class:`~geosr.options.EvaluateOptions`; ``fields`` set or override its fields: ``models``
    (names, paths or SuperResolvers), ``scales``, ``out`` (the folder, which must be empty or new unless
    ``overwrite``: an earlier evaluation there is then replaced), ``device``, ``cd`` (the change mask the models
    get: the data set's, detected by upscale's ``--cd auto``, or none; the regions of the metrics are always the
    data set's labels), the sampler's ``steps``, ``lr_consistency``, ``reference_detail`` and ``seed``, and
    ``panels``."""
    check_callable(progress, "progress", "(done, total)")
    check_callable(log, "log", "one line of text")
    opts = EvaluateOptions.of(options, **fields)
    if not isinstance(data, (str, os.PathLike, list, tuple)) or (isinstance(data, str) and not data.strip()) or (
            isinstance(data, (list, tuple)) and not all(isinstance(p, Pair) for p in data)):
        raise OptionError(f"data {data!r}: give the path of the evaluation data or a list of pairs", param="data")
    for m in opts.models:  # a name, a checkpoint's path or a SuperResolver (which has a name)
        if not isinstance(m, (str, os.PathLike)) and not isinstance(getattr(m, "name", None), str):
            raise OptionError(f"models: {m!r} is neither a model's name or path nor a super-resolver", param="models")
    _refuse_unapplied(opts)
    # the seed and the device checked as the models' runs check them, before the data is read (they were refused
    # after it, behind its notes; found in review)
    from geosr.config import SamplerConfig
    from geosr.models.device import resolve_device

    SamplerConfig(seed=opts.seed)
    resolve_device(opts.device)
    models, scales, steps, device = opts.models, opts.scales, opts.steps, opts.device
    t0 = time.perf_counter()
    folder = OutputFolder(Path(opts.out or DEFAULT_OUT), "geosr evaluate", EVAL_FILES)
    folder.check(overwrite=opts.overwrite)
    pairs = evaluation_pairs(os.fspath(data)) if isinstance(data, (str, os.PathLike)) else list(data)
    for p in pairs:  # the layouts' pairs agree; one built by hand failed after every model ran (found in review)
        p.check()
    if not pairs:  # (a held-out set's folder absent: said, as where others are scored)
        absent = absent_heldout_sets(os.fspath(data)) if isinstance(data, (str, os.PathLike)) else []
        raise InputError(f"{data}: holds no evaluation pair" + (f" ({'; '.join(absent)})" if absent else ""))
    refuse_hidden_changes(pairs)
    cases = make_cases(pairs, scales)
    if not cases:
        raise InputError(f"{data}: no image is large enough for x{', x'.join(map(str, scales))}")
    resolved = _resolve(models, steps=steps, lr_consistency=opts.lr_consistency,
                        reference_detail=opts.reference_detail, device=device)
    # (refusals name a model as it was given: a path there names the file to the user at the terminal)
    specs = [*models, *(b for b in BASELINES if b not in models)]  # (in _resolve's order)
    as_given = [(m if isinstance(m, str) else n, sr) for (n, sr), m in zip(resolved, specs)]
    _refuse_band_mismatch(as_given, cases, data)
    _refuse_scale_mismatch(as_given, cases)
    notes = ([v for v in learned_metrics_status().values() if v != "available"] + _size_notes(cases, pairs, scales)
             + _unused_settings(resolved, opts)
             + (absent_heldout_sets(os.fspath(data)) if isinstance(data, (str, os.PathLike)) else []))
    if isinstance(data, (str, os.PathLike)):  # (scored on its own training images, a model looked better than it is)
        notes += list(dict.fromkeys(training_data_notes(data, _checkpoint_specs(resolved, specs))))
    bare = sorted({c.name for c in cases if c.ref is None})
    if bare and any(n == "reference-paste" for n, _ in resolved):  # its rows mixed bicubic in, unsaid (review)
        notes.append(f"no reference: reference-paste is bicubic on {', '.join(bare)}")
    unlabelled = sorted({c.name for c in cases if not bool(c.labelled.any()) and c.ref is not None})
    if unlabelled:  # scored overall only: their changed and unchanged areas are unknown
        given = " (scored overall only; their models got the detected mask, as --cd auto)" if \
            opts.cd in ("given", "given-lr") else " (scored overall only)"
        notes.append(f"without a change label{given}: {', '.join(unlabelled)}")
    neither = sorted({c.name for c in cases if not bool(c.labelled.any()) and c.ref is None})
    if neither:  # (a folder of images: no reference, so no change to label either)
        notes.append(f"without a reference or a change label (scored overall only): {', '.join(neither)}")
    if opts.cd != "given" and all(c.ref is None for c in cases):  # (said nothing; found in review)
        notes.append(f"`cd` {opts.cd} changes nothing here: no image has a reference")
    for s in sorted({c.scale for c in cases}):  # a given LR and a synthetic one score differently: said (review)
        at = [c for c in cases if c.scale == s]
        given = sum(c.lr_source == "given" for c in at)
        if given:
            notes.append(f"x{s}: the data set's own LR on {given} of {len(at)} case{'s' * (len(at) != 1)}"
                         + (" (the others: antialiased bicubic)" if given < len(at) else ""))
    gaps = sorted({f"{c.name} x{c.scale} ({_share(c.scored)} scored)" for c in cases if c.valid is not None})
    if gaps:  # the target's nodata is not scored as a match (it was: +1.1 dB on an image half nodata)
        notes.append("scored only where the target has data, 2 LR px clear of its nodata (its LR pixels with "
                     f"nodata are nodata to the models): {', '.join(gaps)}")
    for n in notes:
        (log or (lambda s: None))(n)
    with folder.staged(overwrite=opts.overwrite) as stage:  # an earlier evaluation stays until this one is whole
        per_case = _run_cases(cases, resolved, stage, seed=opts.seed, steps=steps, panels=opts.panels,
                              device=device, progress=progress, cd=opts.cd, asked=len(models))
        names = [n for n, _ in resolved]
        known = len(notes)
        summary = _summary(per_case, sorted({c.scale for c in cases}), names, notes)
        for n in notes[known:]:
            (log or (lambda s: None))(n)
        res = EvalResult(out=str(folder.path), scales=sorted(summary), models=names, summary=summary,
                         cases=per_case, notes=notes, seconds=time.perf_counter() - t0,
                         options=json.loads(recorded_options(opts.to_json(), ("out",)))
                         | {"models": names[: len(models)]})  # (by the names the results go by)
        # (the file, shared, names its folder and files by their names: it held the user's folders; review)
        _write_text(stage / "metrics.json", json.dumps({**res.to_dict(), "out": folder.path.name}, indent=1,
                                                       default=_json_default, allow_nan=False))
        _write_text(
            stage / "metrics.md",
            "Means over the evaluation images (PSNR-Y, SSIM-Y, VIF: higher is better; SAM, ERGAS, ST-LPIPS: lower "
            "is better; LR-cons: PSNR of the SR box-downsampled against the LR; SSIM-Y and VIF where their filters "
            "read no padding; no border trimmed).\n\n" + markdown_table(summary, names)
            + ("\n" + "\n".join(f"- {n}" for n in notes) + "\n" if notes else "")
        )
    return res


def _checkpoint_specs(resolved: list[tuple[str, str | SuperResolver]],
                      given: Sequence[str | os.PathLike[str] | SuperResolver]) -> list[tuple[str, dict]]:
    """Each model given by name or path, by the name its results go by, with the spec of every checkpoint it reads
    (a pair's two, a backbone its spec names); a super-resolver given as an object, with its own spec."""
    from geosr.models.checkpoint import read_spec
    from geosr.models.registry import model_files

    out = []
    for (name, _), m in zip(resolved, given):
        if isinstance(m, (str, os.PathLike)):
            for f in model_files(os.fspath(m)):
                with contextlib.suppress(GeoSRError, OSError, ValueError):  # (loaded already: read as it was)
                    out.append((name, read_spec(f)))
        elif isinstance(getattr(m, "spec", None), dict):  # a loaded model: its own spec (found in review)
            out.append((name, m.spec))
    return out


def _unused_settings(resolved: list[tuple[str, str | SuperResolver]], opts: EvaluateOptions) -> list[str]:
    """A note for each sampling setting given that no evaluated model uses (the sampler's steps without a model
    that samples; back-projection and reference detail with classical models alone), as upscale warns."""
    from geosr.models.interface import samples
    from geosr.models.registry import CLASSICAL

    models = [(name, m) for name, m in resolved if not isinstance(m, str)]  # hr and the baselines are names
    uses = {"steps": samples,
            "lr_consistency": lambda m: getattr(m, "name", None) not in CLASSICAL,
            "reference_detail": lambda m: getattr(m, "name", None) not in CLASSICAL}
    names = ", ".join(name for name, _ in models) or "only the baselines"
    return [f"`{setting}` changes nothing here: no model evaluated uses it ({names})"
            for setting, used in uses.items()
            if getattr(opts, setting) is not None and not any(used(m) for _, m in models)]


def _refuse_band_mismatch(resolved: list[tuple[str, str | SuperResolver]], cases: Sequence[Case],
                          data: object) -> None:
    """A model of another band count than the evaluation images, refused before any runs, in evaluate's words
    (upscale's "pick N with --bands" named an option evaluate does not have; found in review)."""
    for name, m in resolved:
        wanted = None if isinstance(m, str) else getattr(m, "bands", None)
        # (a grey image, its band three times, is one a one-band model takes)
        counts = sorted({1 if wanted == 1 and c.grey else int(c.hr.shape[0]) for c in cases})
        if wanted is not None and counts != [wanted]:
            where = f"{data}" if isinstance(data, (str, Path)) else "the evaluation data"
            raise BandError(f"model {name}: takes {band_count(wanted)}, but {where} holds images of "
                            f"{' and '.join(band_count(n) for n in counts)}; evaluate it on {wanted}-band images")


def _refuse_scale_mismatch(resolved: list[tuple[str, str | SuperResolver]], cases: Sequence[Case]) -> None:
    """A model that cannot run a scale asked for (trained for no scale as large or larger), refused before any runs:
    its x4 cases were all computed, then thrown away, as its first x8 case failed (found in review)."""
    from geosr.models.rescale import trained_scale_for

    for name, m in resolved:
        trained = () if isinstance(m, str) else tuple(getattr(m, "scales", ()) or ())
        beyond = sorted({c.scale for c in cases if trained and c.scale not in trained
                         and trained_scale_for(c.scale, trained) is None})
        if beyond:
            raise ScaleError(f"model {name}: trained for scale {', '.join(map(str, trained))}, not scale "
                             f"{', '.join(map(str, beyond))} (nor one above it); leave that out of `scales`")


def _refuse_unapplied(opts: EvaluateOptions) -> None:
    """Refuse ``steps``, ``lr_consistency`` or ``reference_detail`` beside a model object loaded with others: it runs
    as it was loaded (metrics.json recorded `steps` 4 beside a 1-step model's metrics)."""
    from geosr.models.registry import refuse_unapplied

    given = {k: v for k, v in (("steps", opts.steps), ("lr_consistency", opts.lr_consistency),
                               ("reference_detail", opts.reference_detail)) if v is not None}
    for m in opts.models:
        refuse_unapplied(m, given)


def _resolve(models: Sequence[str | SuperResolver], **options: Any) -> list[tuple[str, str | SuperResolver]]:
    """(name, model) of every model and baseline; names other than ``hr`` and the baselines are loaded."""
    resolved: list[tuple[str, str | SuperResolver]] = []
    for m in list(models) + [b for b in BASELINES if b not in models]:
        if isinstance(m, str) and m in ("hr",) + BASELINES:
            resolved.append((m, m))
        elif isinstance(m, str):
            loaded = load_eval_model(m, **options)
            # a checkpoint by the name upscale gives it (`run1/model`), not by its path as typed: metrics.md, .json
            # and the panels' names held the user's folders (found in review)
            file = "/" in m or os.sep in m or os.path.lexists(m)
            resolved.append((getattr(loaded, "name", m) if file else m, loaded))
        else:
            resolved.append((getattr(m, "name", "model"), m))
    # one name per model (the summary, the cases and the panels are keyed by it): a second of a name gets " #2", the
    # baselines and `hr` keeping theirs (a model object named "bicubic" took the baseline's; found in review)
    taken = {name for name, m in resolved if isinstance(m, str)}
    for i, (name, m) in enumerate(resolved):
        if not isinstance(m, str):
            unique = next(n for n in (name, *(f"{name} #{k}" for k in range(2, len(resolved) + 2))) if n not in taken)
            taken.add(unique)
            resolved[i] = (unique, m)
    return resolved


def _run_cases(cases: Sequence[Case], resolved: list[tuple[str, str | SuperResolver]], out: Path, *, seed: int,
               steps: int | None, panels: bool, device: str, progress: Callable[[int, int], None] | None,
               cd: str = "given", asked: int = 0) -> list[dict]:
    """Every model on every case: per case its metrics and seconds per model (and the panels: of the ``asked``
    first, the models asked for, a baseline among them too; of the baselines when no other model runs)."""
    per_case = []
    total, done = len(cases) * len(resolved), 0
    stems = _panel_stems(cases)
    with tempfile.TemporaryDirectory(prefix="geosr-eval-") as tmp:
        for ci, case in enumerate(cases):
            folder = Path(tmp) / f"case{ci}"
            entry = {"name": case.name, "group": case.group, "scale": case.scale, "lr": case.lr_source,
                     "changed_fraction": (float((case.changed & case.labelled).float().mean())
                                          if bool(case.labelled.any()) else None), "models": {}}
            for name, model in resolved:
                t1 = time.perf_counter()
                sr = run_case(case, model, folder, seed=seed, steps=steps if isinstance(model, str) else None,
                              device=device, cd=cd)
                seconds = round(time.perf_counter() - t1, 2)
                written = model if isinstance(model, str) else getattr(model, "name", "model")  # run_case's file
                entry["models"][name] = {"metrics": case_metrics(case, sr), "seconds": seconds,
                                         "reference_in_changed": reference_in_changed(case, folder, written)}
                if panels and (name not in BASELINES or len(resolved) == len(BASELINES)
                               or any(n == name for n, _ in resolved[:asked])):
                    panel(case, sr, out / f"panel_x{case.scale}_{stems[ci]}_{name.replace('/', '_')}.png")
                done += 1
                if progress:
                    progress(done, total)
            per_case.append(entry)
    return per_case


def _panel_stems(cases: Sequence[Case]) -> list[str]:
    """Each case's part of its panels' file names, one per case at its scale whatever the case of its letters (a
    disk of macOS or Windows tells no case): its name, or where two share it, its group's and its name (a name two
    sets share), else numbered; a "/" of a name (``2019/tile``, an image below a subfolder) as "_"."""
    def plain(text: str) -> str:
        return text.replace("/", "_").replace("\\", "_")

    first = [plain(c.name) for c in cases]
    named = Counter((c.scale, f.lower()) for c, f in zip(cases, first))
    second = [f if named[c.scale, f.lower()] == 1 else plain("_".join(dict.fromkeys([*c.group.split("/"), c.name])))
              for c, f in zip(cases, first)]
    seen: Counter = Counter()
    stems = []
    for c, stem in zip(cases, second):
        seen[c.scale, stem.lower()] += 1
        n = seen[c.scale, stem.lower()]
        stems.append(stem if n == 1 else f"{stem}_{n}")
    return stems


def _summary(per_case: list[dict], scales: Sequence[int], names: Sequence[str],
             notes: list[str] | None = None) -> dict:
    """scale -> model -> region -> metric -> mean over the cases (None for a region no case has); ``notes`` gets a
    line for each mean that left infinite values out (:func:`_mean`)."""
    summary: dict = {}
    gaps: dict[tuple, dict[str, list[str]]] = {}  # (scale, metric, images it could not score, of how many) -> ...
    for s in scales:
        summary[s] = {}
        for name in names:
            summary[s][name] = {}
            for region in REGIONS:
                named = [(e.get("name"), e["models"][name]["metrics"][region]) for e in per_case if e["scale"] == s]
                named = [(case, r) for case, r in named if r is not None]
                rows = [r for _, r in named]
                means = summary[s][name][region] = {} if rows else None
                for k in rows[0] if rows else ():
                    # (a metric with no pixel to score on an image, NaN, left its mean over the others unsaid; VIF
                    # of a striped image with 11% scored; found in review)
                    unscored = tuple(str(case) for case, r in named if isinstance(r[k], float) and math.isnan(r[k]))
                    if unscored and len(unscored) < len(rows):
                        gaps.setdefault((s, k, unscored, len(rows)), {}).setdefault(region, []).append(name)
                    left_out: list[int] = []
                    means[k] = _mean([r[k] for r in rows], left_out)
                    if left_out and notes is not None:
                        (inf, n) = left_out
                        why = "its box average is the LR exactly" if k == "lr_consistency" else \
                            "identical to the truth"  # (an LR-consistent output is no exact one; found in review)
                        notes.append(f"x{s} {name}, {k} ({region}): infinite on {inf} of {n} images ({why} there); "
                                     f"the mean is over the other {n - inf}")
            shares = [e["models"][name].get("reference_in_changed") for e in per_case if e["scale"] == s]
            if summary[s][name]["changed"] is not None:  # provenance: reference used inside labelled changes
                summary[s][name]["changed"]["reference_share"] = _mean([v for v in shares if v is not None])
    for (s, k, unscored, n), where in gaps.items():
        if notes is not None:
            models = sorted({m for ms in where.values() for m in ms})
            said = "every model" if len(models) == len(names) else ", ".join(models)
            notes.append(f"x{s} {k}: no pixel it can score on {', '.join(unscored)} ({', '.join(where)}; {said}); "
                         f"its means there are over the other {n - len(unscored)} of {n} images")
    return summary


def _clean(o: Any) -> Any:
    if isinstance(o, float):
        return None if math.isnan(o) else ("inf" if o == math.inf else "-inf" if o == -math.inf else o)
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def _json_default(o: Any) -> Any:
    return str(o)


__all__ = ["evaluate", "EvalResult", "LRConsistent", "back_project", "load_eval_model", "make_cases", "markdown_table"]
