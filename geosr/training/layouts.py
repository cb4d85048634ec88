"""The data layouts geosr reads, each into :class:`~geosr.training.pairs.Pair` objects.

- :func:`refdiff_folder`: the Ref-Diff release layout (``HR_512/``, ``Ref/``, ``CD_mask/``,
  ``real_LR_D8_64/``, ``Bic_LR_D8_32/``, ...; one file name across folders; ``CLASS_Table.txt``);
- :func:`change_pair_folder`: LEVIR-CD / DSIFN-CD style ``A/`` (reference date), ``B/`` (target date),
  ``label/`` (change);
- :func:`site_pairs`: per site two dated rasters (``SITE*.tif``: the earlier is the reference) with
  ``SITE_change_mask.png`` and ``SITE_unchanged_mask.png`` (labelled pixels are those of either mask);
- :func:`geotiff_stack`: co-located GeoTIFF rasters (LR, HR, reference, change mask, map) read on the HR
  grid that the pipeline derives from the LR grid (:func:`geosr.tiling.grid.hr_grid`);
- :func:`synthetic_pairs`: any HR image; the reference and mask come from
  :mod:`geosr.training.synthetic_change` at sampling time.

A collection of such folders with a held-out split is named by a manifest (:mod:`geosr.training.manifest`);
a training config's sources are resolved in :mod:`geosr.training.sources`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from geosr.conditioning.changes import BINARY, CNAM, SECOND, ChangeClass, ChangeClassTable
from geosr.errors import InputError, InputNotFoundError
from geosr.training.pairs import (
    Pair,
    check_bands,
    check_same_band_choice,
    classes_of,
    find_image,
    georeferencing,
    list_images,
    named_rgb,
    read_label,
    read_mask,
    read_target,
    same_place,
)

if TYPE_CHECKING:
    from geosr.tiling.grid import Grid

LR_FOLDER = re.compile(r"^(real|Bic)_LR_D(\d+)_(\d+)$")
LR_LIKE = re.compile(r"(^|_)LR(_|$)")  # a folder meant as LRs: Bic_LR_x8, LR_x8, real_LR


# ---- the Ref-Diff release layout -------------------------------------------------------------------------------
def read_class_table(path: Path) -> ChangeClassTable | None:
    """Parse a ``CLASS_Table.txt`` (lines ``value name...``, ``value: name`` or ``name value``)."""
    if not path.exists():
        return None
    classes = []
    for line in path.read_text(encoding="utf-8-sig", errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^(\d+)\s*[:=,\t ]\s*(.+)$", line) or re.match(r"^(.+?)\s*[:=,\t ]\s*(\d+)$", line)
        if not m:
            continue
        a, b = m.groups()
        value, name = (int(a), b.strip()) if a.isdigit() else (int(b), a.strip())
        classes.append(ChangeClass(value, name, not name.lower().startswith(("unchanged", "no change", "nochange"))))
    return ChangeClassTable(path.parent.name or "dataset", tuple(classes)) if classes else None


def refdiff_folder(root: str | Path, *, scale: int | None = None, table: ChangeClassTable | None = None) -> list[Pair]:
    """Pairs of a Ref-Diff style split folder (``train/`` or ``test/``, or the folder holding HR_512/).

    LR folders (``real_LR_D8_64``, ``Bic_LR_D16_16``, ...) are attached as given LRs for their scale;
    ``scale`` keeps only that one. The class table is ``table``, else ``CLASS_Table.txt`` here or one level
    up, else SECOND's when the masks hold values up to 6, CNAM-CD's up to 5, binary otherwise.
    """
    root = Path(root)
    hr_dir = root / "HR_512"
    require_data_folder(root)
    if not hr_dir.is_dir():
        raise InputError(f"{root}: not a Ref-Diff folder (no HR_512/ inside)")
    ref_dir, cd_dir = root / "Ref", root / "CD_mask"
    lr_dirs: dict[int, Path] = {}
    for d in sorted(root.iterdir()):
        m = LR_FOLDER.match(d.name)
        if d.is_dir() and not m and LR_LIKE.search(d.name):  # read by no one: a name mistyped, said at once
            raise InputError(f"{d}: an LR folder of a Ref-Diff folder is named real_LR_D<scale>_<side> or "
                             f"Bic_LR_D<scale>_<side> (e.g. Bic_LR_D8_64); rename it or move it out")
        if d.is_dir() and m and (scale is None or int(m.group(2)) == scale):
            lr_dirs.setdefault(int(m.group(2)), d)
    table = table or read_class_table(root / "CLASS_Table.txt") or read_class_table(root.parent / "CLASS_Table.txt")
    pairs = []
    masks: list[tuple[Path, np.ndarray] | None] = []
    for hr_path in list_images(hr_dir):
        stem = hr_path.stem
        ref_path, cd_path = find_image(ref_dir, stem), find_image(cd_dir, stem)
        check_same_band_choice([hr_path, ref_path, *(find_image(d, stem) for d in lr_dirs.values())])
        _same_place(hr_path, [p for p in (ref_path, cd_path) if p is not None])  # (LRs: another pixel size)
        target, div, valid = read_target(hr_path)
        lrs = {}
        for s, d in lr_dirs.items():
            p = find_image(d, stem)
            if p is not None:
                lr, lr_div, has = read_target(p)
                lrs[s] = lr * (lr_div / div)  # in the HR's units: a deep LR's own percentile would rescale it
                _check_lr(lrs[s], target, s, p)
                _lr_in_place(p, hr_path, s, lrs[s], target, valid, has)
                _same_bands(p, lrs[s], hr_path, target)
                valid = without_lr_gaps(valid, has, s, tuple(target.shape[-2:]))
        ref, _, ref_valid = read_target(ref_path) if ref_path else (None, 1.0, None)
        if ref is not None and ref_path is not None:
            _same_bands(ref_path, ref, hr_path, target)
        mask, known, nodata = read_label(cd_path) if cd_path else (None, None, None)
        h, w = target.shape[-2:]
        for path, shape in ((ref_path, None if ref is None else tuple(ref.shape[-2:])),
                            (cd_path, None if mask is None else mask.shape)):
            # smaller was a shape error once the models ran; a stray row or column more is cropped, as for A/ B/
            if shape is not None and (shape[0] < h or shape[1] < w or shape[0] - h > max(2, SIZE_SLACK * h)
                                      or shape[1] - w > max(2, SIZE_SLACK * w)):
                raise InputError(f"{path}: is {shape[0]}x{shape[1]} pixels but {hr_path} is {h}x{w}; a case's Ref/ "
                                 "and CD_mask/ images cover its HR_512/ image at its size")
        ref = ref[:, :h, :w] if ref is not None else None
        ref_valid = ref_valid[:h, :w] if ref_valid is not None else None
        mask = mask[:h, :w] if mask is not None else None
        known = known[:h, :w] if known is not None else None
        # no mask: nothing known of change (scored overall only, never taken as unchanged everywhere); its nodata:
        # not known there
        labelled = torch.zeros(target.shape[-2:], dtype=torch.bool) if not cd_path else \
            None if known is None else torch.from_numpy(known)
        pairs.append(Pair(name=stem, target=target, ref=ref, lr=lrs, group=stem, labelled=labelled, valid=valid,
                          ref_valid=ref_valid))
        masks.append((cd_path, mask, known, nodata) if cd_path is not None and mask is not None else None)
    if table is None:
        top = max((int(_labels(m[1], m[2]).max(initial=0)) for m in masks if m is not None), default=1)
        table = SECOND if top == 6 else CNAM if top == 5 else BINARY
    for p, found in zip(pairs, masks):
        p.table = table
        p.change = None if found is None else _classes(*found, table)
        p.nodata_as_change = None if found is None else nodata_as_change(found[0], found[3], table)
    return pairs


def _labels(mask: np.ndarray, known: np.ndarray | None) -> np.ndarray:
    """The values of a change label where it is known (not its nodata)."""
    return mask if known is None else mask[known]


def nodata_as_change(path: Path, nodata: float | None, table: ChangeClassTable) -> str | None:
    """``path`` (with what it means) where a change label's nodata value is a changed class's: detect-changes' unknown
    (255 beside its changed 1) is so, and so is a 0 / 255 label tagged nodata 255, whose every change was then left
    unscored, 0% changed without a word (found in review): :func:`geosr.training.evaluate.evaluate` refuses a data set
    whose labels then mark no known change at all."""
    lost = next((c for c in table.classes if nodata is not None and c.value == nodata and c.changed), None)
    return None if lost is None else f"{path}: its nodata value {lost.value} is the class {lost.name!r}"


def refuse_hidden_changes(pairs: Sequence[Pair]) -> None:
    """Refuse a data set (evaluated or trained on) whose labels mark no known change where one of them has a changed
    class's value as its nodata: a 0 / 255 label tagged nodata 255 hid its every change (0% changed, scored without a
    word; found in review). Beside a label marking changes with another value (detect-changes' 1), 255 is the
    unknown it writes."""
    hiding = [p.nodata_as_change for p in pairs if p.nodata_as_change]
    if not hiding or any(p.change is not None and bool((p.changed & (True if p.labelled is None else p.labelled)).any())
                         for p in pairs):
        return
    raise InputError(f"{hiding[0]}, and no label of the data set marks a known change, so every change would be "
                     "left unknown; unset the labels' nodata value (gdal_edit.py -unsetnodata)")


def _classes(path: Path, mask: np.ndarray, known: np.ndarray | None, nodata: float | None,
             table: ChangeClassTable) -> torch.Tensor:
    """A change label's class indices of ``table`` for the models, its nodata the table's unknown class (as upscale
    gives a change mask's); refused when its nodata value is an unchanged class: none of those pixels would be
    scored as that class (a label tagged nodata 0 lost its whole unchanged area without a word; found in review)."""
    hidden = next((c for c in table.classes if nodata is not None and c.value == nodata and not c.changed), None)
    if hidden is not None:
        raise InputError(f"{path}: its nodata value {hidden.value} is the class {hidden.name!r}, so none of those "
                         f"pixels would be scored as {hidden.name!r}; unset the label's nodata value "
                         "(gdal_edit.py -unsetnodata)")
    index = classes_of(_declared(path, mask, known, table), table)
    return index if known is None else torch.where(torch.from_numpy(known), index, table.unknown_index)


def _declared(path: Path, mask: np.ndarray, known: np.ndarray | None, table: ChangeClassTable) -> np.ndarray:
    """``mask``, refused when it holds values ``table`` does not declare where it is ``known``: they were scored
    (and given to the models) as the first changed class, without a word (a resampled label's 128 as
    "non-vegetated ground surface"). Its nodata goes to the models as the table's unknown class."""
    labels = _labels(mask, known)
    index, _ = table.lookup(labels)
    if (index < 0).any():
        odd = sorted(np.unique(labels[index < 0]).tolist())
        shown = ", ".join(map(str, odd[:6])) + (" ..." if len(odd) > 6 else "")
        raise InputError(f"{path}: the change mask holds values {shown} that the {table.name!r} class table does "
                         f"not declare (it declares {', '.join(str(c.value) for c in table.classes)}); give the data "
                         "set's CLASS_Table.txt, or masks of its values only")
    return mask


def _same_bands(path: Path, image: torch.Tensor, other_path: Path, other: torch.Tensor) -> None:
    """Refuse two images of one pair with different band counts (an RGB reference of a grey target), named."""
    if image.shape[0] != other.shape[0]:
        raise InputError(f"{path}: has {image.shape[0]} band{'s' * (image.shape[0] != 1)} but {other_path} has "
                         f"{other.shape[0]}; the images of a pair must have the same bands")


def _check_lr(lr: torch.Tensor, target: torch.Tensor, s: int, path: Path) -> None:
    if (lr.shape[-2] * s, lr.shape[-1] * s) != tuple(target.shape[-2:]):
        H, W = target.shape[-2:]
        # (the HR's size and what would fit were unsaid, as when the HR is no whole number of LR pixels; review)
        whole = (H // s * s, W // s * s)
        fix = f"crop the HR to {whole[0]}x{whole[1]}, whole LR pixels, as this LR was made" if \
            (lr.shape[-2], lr.shape[-1]) == (H // s, W // s) else f"give an LR of {H // s}x{W // s}" + \
            ("" if whole == (H, W) else f" with the HR cropped to {whole[0]}x{whole[1]}")
        raise InputError(f"{path}: an LR of {lr.shape[-2]}x{lr.shape[-1]} is not the footprint at x{s} of its HR of "
                         f"{H}x{W}; {fix}")


def _pixel_ratio(hr_grid: Grid, lr_grid: Grid) -> float:
    """How many times finer the HR's pixels are than the LR's (compared in the LR's CRS); 0 where that cannot be
    told (no CRS, no geotransform, CRSs that do not meet)."""
    from rasterio.warp import transform_bounds

    if hr_grid.crs is None or lr_grid.crs is None or hr_grid.transform.is_identity:
        return 0.0
    try:
        left, bottom, right, top = transform_bounds(hr_grid.crs, lr_grid.crs, *hr_grid.bounds)
    except Exception:  # noqa: BLE001 - not comparable here; the warp names a real problem
        return 0.0
    hr_px = math.sqrt(abs((right - left) * (top - bottom)) / (hr_grid.width * hr_grid.height))
    lr_px = math.sqrt(abs(lr_grid.res[0] * lr_grid.res[1]))
    return lr_px / hr_px if hr_px > 0 else 0.0


def pair_scale(hr: str | Path, lr: str | Path, scales: Sequence[int]) -> int:
    """The scale of ``scales`` a geotiff source without its own ``scale`` is at: the largest its HR is fine enough
    for (its pixels at least that many times finer than the LR's, 15% coarser taken; a finer HR is averaged onto
    the grid), the first where the pixel sizes cannot be told. It took the first always: the same source trained
    with ``-x 4 -x 8`` and was refused with ``-x 8 -x 4`` (found in review)."""
    from geosr.io.rasters import inspect_raster

    for p in (hr, lr):
        if not Path(p).exists():
            raise InputNotFoundError(f"{p}: no such raster")
    found = _pixel_ratio(inspect_raster(str(hr)).grid, inspect_raster(str(lr)).grid)
    if found <= 0:
        return int(scales[0])
    fits = [s for s in scales if s <= found * 1.15]
    if not fits:
        raise InputError(f"{hr}: its pixels are only {found:.3g} times finer than those of the LR {lr}, less than "
                         f"the smallest scale trained (x{min(scales)}) asks: it would be upsampled into the truth; "
                         "give an HR finer than that, or train at a smaller scale")
    return int(max(fits))


def _refuse_other_scale(hr: Path, hr_grid: Grid, lr: Path, lr_grid: Grid, scale: int) -> None:
    """Refuse a geotiff source whose HR is coarser than the LR grid refined by ``scale``: it was warped onto it by
    cubic whatever its own resolution (a 30 m truth of a 240 m LR trained at x16 as its upsampling; found in
    review). 15% coarser is taken (pixel sizes compared in the LR's CRS); a finer HR is averaged onto it, as the
    docs say (a 1 m truth of a 10 m LR at x8)."""
    found = _pixel_ratio(hr_grid, lr_grid)
    if found > 0 and found < 1 / 1.15:  # (it advised "a scale of at most 0.125": hr and lr given swapped; review)
        raise InputError(f"{hr}: its pixels are coarser than those of the LR {lr} ({1 / found:.3g} times their "
                         f"size): were the source's hr and lr given the other way round? The HR is the finer image, at "
                         f"x{scale}")
    if found > 0 and found < scale / 1.15:
        fits = [s for s in (2, 4, 8, 16) if s <= found * 1.15]
        advice = f"give a scale of at most {fits[-1]}, or" if fits else "geosr's smallest scale is 2: give"
        raise InputError(f"{hr}: its pixels are only {found:.3g} times finer than those of the LR {lr}, not {scale} "
                         f"times (the data source's scale): it would be upsampled into the truth; {advice} an HR at "
                         f"x{scale}")


def _lr_in_place(path: Path, hr_path: Path, s: int, lr: torch.Tensor, target: torch.Tensor,
                 valid: torch.Tensor | None, has: torch.Tensor | None) -> None:
    """Refuse a case's given LR that is not its HR seen at x``s``: georeferenced elsewhere (another CRS, place or
    pixel size than the HR's times ``s``), or of values on another scale (an 8-bit LR beside a 16-bit HR read at a
    sixteenth of its brightness). Each was scored without a word (found in review); a Ref/ elsewhere was refused."""
    own, theirs = georeferencing(hr_path), georeferencing(path)
    if own is not None and theirs is not None:
        a, b, c, d, e, f = own[1]
        if not same_place((own[0], (a * s, b * s, c, d * s, e * s, f)), theirs):
            raise InputError(f"{path}: its georeferencing is not {hr_path}'s at x{s} (another CRS, pixel size or "
                             f"origin); a case's LR covers its HR_512/ image at 1/{s} of its resolution")
    h, w = lr.shape[-2:]
    box = target[:, : h * s, : w * s].reshape(target.shape[0], h, s, w, s).mean(dim=(2, 4))
    where = torch.ones(h, w, dtype=torch.bool) if has is None else has.bool()
    if valid is not None:
        where &= valid[: h * s, : w * s].reshape(h, s, w, s).all(dim=3).all(dim=1)
    if bool(where.any()):
        mine, theirs_mean = float(box[:, where].mean()), float(lr[:, where].mean())
        # (a dark HR's ratio says nothing; another sensor's LR of a dark tile is 0.4x its HR's: only a ratio
        # no sensor gives, that of other data types or units, 1/16 for 8 bits beside 12, is refused)
        if mine > 0.02 and not 0.25 <= theirs_mean / mine <= 4:
            ratio = theirs_mean / mine  # (3 digits: "0.00 times" read as blank; no "1e+04": found in review)
            said = f"{ratio:.3g}" if ratio < 1000 else f"{ratio:,.0f}"
            raise InputError(f"{path}: its values average {said} times its HR's ({hr_path}) over "
                             "the same ground: not on the HR's scale (another data type, other units, or a band "
                             "scale and offset on one of the two files only: each is read in physical units?); give "
                             "the LR in the HR's data type and units")


# ---- LEVIR-CD / DSIFN-CD style A / B / label ---------------------------------------------------------------------
# How much larger than the pair's smallest image one may be, per side (and at least 2 px), for its extra rows and
# columns to be cropped: a data set's stray row (LEVIR-CD's bitcd samples hold a 383-row B/ beside a 384-row A/)
SIZE_SLACK = 0.01

def change_pair_folder(
    root: str | Path,
    *,
    names: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    group: str | None = None,
    require_label: bool = True,
    bands: Sequence[int] | None = None,
    takes_bands: bool = False,
) -> list[Pair]:
    """``A/`` = reference date, ``B/`` = target date, ``label/`` = change (0 unchanged, 255 or 1 changed).
    Training (``require_label``) takes the images that have all three. Evaluation takes every image of ``A/``:
    one without its ``B/`` image is refused, one without a label is *unlabelled* (its changed and unchanged areas
    unknown: scored overall only), never taken as unchanged everywhere. ``bands``: those read of each image
    (default: red, green and blue by their names, else the first three); ``takes_bands``: the caller's data source
    has a "bands" key (a data manifest's set), which advice may name."""
    root = Path(root)
    require_data_folder(root)
    if not (root / "A").is_dir() or not (root / "B").is_dir():
        raise InputError(f"{root}: a change-pair folder needs A/ and B/")
    pairs = []
    for a_path in list_images(root / "A"):
        stem = a_path.stem
        if (names is not None and stem not in names) or any(stem.startswith(x) for x in exclude):
            continue
        b_path = find_image(root / "B", stem)
        l_path = find_image(root / "label", stem) if (root / "label").is_dir() else None
        if b_path is None and not require_label:
            raise InputError(f"{a_path}: has no image of the same name in {root / 'B'} (the target date)")
        if b_path is None or (require_label and l_path is None):
            continue
        check_same_band_choice([a_path, b_path], bands, takes_bands=takes_bands)
        (ref, _, ref_valid), (target, _, valid) = read_target(a_path, bands=bands), read_target(b_path, bands=bands)
        _same_bands(a_path, ref, b_path, target)
        _same_place(a_path, [b_path] + ([l_path] if l_path else []))
        mask, known, nodata = read_label(l_path) if l_path else (None, None, None)
        sizes = [(a_path, tuple(ref.shape[1:])), (b_path, tuple(target.shape[1:]))]
        sizes += [(l_path, mask.shape)] if l_path and mask is not None else []
        h, w = min(hw[0] for _, hw in sizes), min(hw[1] for _, hw in sizes)
        for path, (ph, pw) in sizes:  # a stray row or column is cropped; more means the images are not one area
            if ph - h > max(2, SIZE_SLACK * h) or pw - w > max(2, SIZE_SLACK * w):
                small, (sh, sw) = min(sizes, key=lambda e: e[1][0] * e[1][1])
                raise InputError(f"{path}: is {ph}x{pw} pixels but {small} is {sh}x{sw}; the images of a change pair "
                                 "must cover the same area at the same size")
        ref, target, valid = ref[:, :h, :w], target[:, :h, :w], None if valid is None else valid[:h, :w]
        ref_valid = None if ref_valid is None else ref_valid[:h, :w]
        known = None if known is None else known[:h, :w]
        if mask is not None:  # else a value such as 30 (a resampled or lossy label) would count as changed
            odd = sorted(set(np.unique(_labels(mask[:h, :w], known)).tolist()) - {c.value for c in BINARY.classes})
            if odd:
                shown = ", ".join(map(str, odd[:6])) + (" ..." if len(odd) > 6 else "")
                raise InputError(f"{l_path}: the change label holds values {shown}; a label is 0 (unchanged) and 1 "
                                 "or 255 (changed)")
        change = _classes(l_path, mask[:h, :w], known, nodata, BINARY) if mask is not None else None
        # no label: nothing known of change; its nodata: not known there
        labelled = torch.zeros(h, w, dtype=torch.bool) if not l_path else \
            None if known is None else torch.from_numpy(known)
        pairs.append(Pair(name=stem, target=target, ref=ref, change=change, labelled=labelled, group=group or stem,
                          valid=valid, ref_valid=ref_valid,
                          nodata_as_change=nodata_as_change(l_path, nodata, BINARY) if mask is not None else None))
    return pairs


def require_data_folder(root: Path) -> None:
    """A data source's folder that is not there is named so (it was "needs A/ and B/"; found in review)."""
    if not root.exists():
        raise InputNotFoundError(f"{root}: no such data folder")


def _same_place(first: Path, others: Sequence[Path]) -> None:
    """Refuse georeferenced images of one pair that lie at different places (their pixels compared would be of
    different ground: scored without a word); images without georeferencing are taken as aligned."""
    own = georeferencing(first)
    for path in others:
        other = georeferencing(path) if own is not None else None
        if other is not None and own is not None and not same_place(own, other):
            raise InputError(f"{path}: its georeferencing puts it elsewhere than {first} (another CRS, pixel size or "
                             "origin); the images of a change pair cover the same pixels")


def incomplete_pairs(root: str | Path) -> list[str]:
    """The images of a change-pair folder's ``A/`` that training leaves out, each with what it lacks ("x.png (no
    label)"): :func:`change_pair_folder` takes only the names with all three images."""
    root = Path(root)
    out = []
    for a_path in list_images(root / "A") if (root / "A").is_dir() else []:
        lacks = [what for what, folder in (("B/ image", "B"), ("label", "label"))
                 if not (root / folder).is_dir() or find_image(root / folder, a_path.stem) is None]
        if lacks:
            out.append(f"{a_path.name} (no {' and no '.join(lacks)})")
    return out


# ---- two dated rasters per site, with change and unchanged masks --------------------------------------------------
def site_pairs(
    root: str | Path, sites: Sequence[str], *, bands: Sequence[int] | None = None, group: str = "",
    named: Sequence[str] = (),
) -> list[Pair]:
    """Per site: ``SITE*.tif`` (two dates, in name order: reference, then target), ``SITE_change_mask.png`` and
    ``SITE_unchanged_mask.png`` (> 127: in the mask). Change is the binary table's "changed" class (value 255);
    only pixels of either mask are labelled. A site without exactly two rasters is refused (it was skipped: a
    held-out site left out of the scores without a word). A raster of a longer site name among ``sites`` and
    ``named`` (S10's beside S1's) is that site's."""
    root = Path(root)
    pairs = []
    longer = {*sites, *named}
    for site in sites:
        # (S1's rasters counted S10's: "site S1 has 4 of the two rasters"; found in review)
        tifs = sorted(t for t in root.glob(f"{site}*.tif")
                      if not any(o != site and o.startswith(site) and t.name.startswith(o) for o in longer))
        if len(tifs) != 2:
            found = f"{len(tifs)} ({', '.join(t.name for t in tifs)})" if tifs else "none"
            raise InputError(f"{root}: site {site} has {found} of the two rasters {site}*.tif a site holds (the "
                             "reference date, then the target date, in name order)")
        check_same_band_choice(tifs, bands, takes_bands=True)
        (ref, _, ref_valid), (target, _, valid) = read_target(tifs[0], bands=bands), read_target(tifs[1], bands=bands)
        _same_place(tifs[0], tifs[1:])
        ch = read_mask(root / f"{site}_change_mask.png") > 127
        un = read_mask(root / f"{site}_unchanged_mask.png") > 127
        # two dates and masks of other sizes were a shape error deep in training ("internal error", exit 1)
        shapes = {tifs[0].name: tuple(ref.shape[-2:]), tifs[1].name: tuple(target.shape[-2:]),
                  f"{site}_change_mask.png": ch.shape, f"{site}_unchanged_mask.png": un.shape}
        if len(set(shapes.values())) > 1:
            sizes = ", ".join(f"{n} {w} x {h}" for n, (h, w) in shapes.items())
            raise InputError(f"{root}: the images and masks of site {site} differ in size ({sizes}); they must "
                             "cover the same pixels")
        change = classes_of(np.where(ch, 255, 0), BINARY)
        pairs.append(Pair(name=site, target=target, ref=ref, change=change, labelled=torch.from_numpy(ch | un),
                          group=f"{group}/{site}" if group else site, valid=valid, ref_valid=ref_valid))
    return pairs


# ---- GeoTIFF stacks ---------------------------------------------------------------------------------------------
def geotiff_stack(
    *,
    hr: str | Path,
    scale: int,
    lr: str | Path | None = None,
    ref: str | Path | None = None,
    mask: str | Path | None = None,
    map: str | Path | None = None,
    bands: Sequence[int] | None = None,
    table: ChangeClassTable = BINARY,
    name: str | None = None,
) -> Pair:
    """One scene from co-located GeoTIFFs, read on the pipeline's HR grid.

    With ``lr`` the HR grid is the LR grid refined by ``scale`` (:func:`geosr.tiling.grid.hr_grid`) and the
    HR, reference, mask and map are warped onto it (imagery: average / cubic; classes: nearest / mode);
    without ``lr`` the HR raster's own grid is used and the LR is degraded from it at sampling time.
    Random training windows are then crops of whole LR pixels of that grid.
    """
    from rasterio.windows import Window

    from geosr.io.rasters import inspect_raster
    from geosr.tiling.grid import hr_grid

    for p in (hr, lr, ref, mask, map):
        if p is not None and not Path(p).exists():
            raise InputNotFoundError(f"{p}: no such raster")
    check_same_band_choice([Path(p) for p in (hr, lr, ref) if p is not None], bands,  # (one named, one not)
                           takes_bands=True)
    if lr is not None:
        lr_grid = inspect_raster(str(lr)).grid
        _refuse_other_scale(Path(hr), inspect_raster(str(hr)).grid, Path(lr), lr_grid, scale)
        grid, _ = hr_grid(lr_grid, scale)
    else:
        grid = inspect_raster(str(hr)).grid
        grid = grid.subgrid(Window(0, 0, grid.width // scale * scale, grid.height // scale * scale))
    tgt, tvalid, dtype = _read_on_grid(hr, grid, bands)
    rows, cols = _covered(tvalid, scale, hr, lr)
    tgt, tvalid = tgt[:, rows, cols], tvalid[rows, cols]
    div = 255.0 if dtype == "uint8" else float(max(np.percentile(tgt[:, tvalid], 99.9) if tvalid.any() else 1.0, 1e-6))
    label = name or Path(hr).stem
    pair = Pair(name=label, target=torch.from_numpy((tgt / div).astype(np.float32)), group=label,
                valid=None if tvalid.all() else torch.from_numpy(tvalid))  # (a collar inside the box: not scored)
    if lr is not None:
        lr_part = (slice(None), slice(rows.start // scale, rows.stop // scale),
                   slice(cols.start // scale, cols.stop // scale))
        data, has = _read_physical(lr, bands)
        pair.lr[scale] = torch.from_numpy((data[lr_part] / div).astype(np.float32))
        _check_lr(pair.lr[scale], pair.target, scale, Path(lr))
        pair.valid = without_lr_gaps(pair.valid, torch.from_numpy(has[lr_part[1:]]), scale, pair.shape)
    if ref is not None:
        r, rvalid, _ = _read_on_grid(ref, grid, bands)
        _somewhere(rvalid[rows, cols], ref, hr, "reference")
        pair.ref = torch.from_numpy((r[:, rows, cols] / div).astype(np.float32))
        pair.labelled = torch.from_numpy(rvalid[rows, cols])
        pair.ref_valid = None if rvalid[rows, cols].all() else torch.from_numpy(rvalid[rows, cols])
    if mask is not None:
        values, mvalid = _read_classes_on_grid(mask, grid)
        values, mvalid = values[rows, cols], mvalid[rows, cols]
        _somewhere(mvalid, mask, hr, "change mask")
        unknown = torch.tensor(table.unknown_index)
        pair.change = torch.where(torch.from_numpy(mvalid), classes_of(values, table), unknown)
        pair.table = table
    if map is not None:
        values, mvalid = _read_classes_on_grid(map, grid)
        values, mvalid = values[rows, cols], mvalid[rows, cols]
        _somewhere(mvalid, map, hr, "map")
        pair.map = torch.from_numpy(np.where(mvalid, values, 0).astype(np.int64))
    return pair


def _somewhere(valid: np.ndarray, path: str | Path, hr: str | Path, role: str) -> None:
    """Refuse a reference, change mask or map without data where the HR is: one that lies elsewhere trained as no
    reference at all, or as every pixel changed, without a word (found in review)."""
    if not valid.any():
        raise InputError(f"{path}: the {role} has no data where the HR {hr} is: check that the two show the same "
                         "place")


def _covered(valid: np.ndarray, scale: int, hr: str | Path, lr: str | Path | None) -> tuple[slice, slice]:
    """The rows and columns of the grid, in whole LR pixels, of the box around where the HR has data: training
    targets are not the zeros of a grid the HR does not reach (an HR beside its LR trained on black); a nodata collar
    inside that box stays. InputError when there is no such pixel."""
    rows, cols = np.flatnonzero(valid.any(axis=1)), np.flatnonzero(valid.any(axis=0))
    if rows.size:
        r0, r1 = -(-int(rows[0]) // scale), (int(rows[-1]) + 1) // scale
        c0, c1 = -(-int(cols[0]) // scale), (int(cols[-1]) + 1) // scale
        if r1 > r0 and c1 > c0:
            return slice(r0 * scale, r1 * scale), slice(c0 * scale, c1 * scale)
    where = f"the LR {lr}" if lr is not None else "its own grid"
    raise InputError(f"{hr}: the HR has no data on {where} (no whole LR pixel of it covered): check that the two "
                     "show the same place")


def _read_on_grid(path, grid, bands, resampling="auto") -> tuple[np.ndarray, np.ndarray, str]:
    """(data, valid, dtype) of ``bands`` (default: the red, green and blue ``geosr upscale`` takes by default, else the
    first three) of ``path`` warped onto all of ``grid``."""
    import rasterio
    from rasterio.windows import Window

    from geosr.conditioning.reference import GridReader

    with rasterio.open(path) as ds:
        chosen = tuple(bands) if bands else named_rgb(Path(path))  # (band 1-3 read a Sentinel-2 stack's B02-B04)
        check_bands(path, chosen, ds.count)
        reader = GridReader(ds, grid, chosen, resampling)
        try:
            data, valid = reader.read(Window(0, 0, grid.width, grid.height))
        finally:
            reader.close()
        return data, valid, ds.dtypes[0]


def _read_classes_on_grid(path, grid) -> tuple[np.ndarray, np.ndarray]:
    """Band 1 of a class raster on ``grid`` (mode from a finer raster, else nearest), as integers, and its validity."""
    import rasterio
    from rasterio.enums import Resampling

    from geosr.conditioning.reference import source_is_finer

    with rasterio.open(path) as ds:
        res = Resampling.mode if source_is_finer(ds, grid) else Resampling.nearest
    m, valid, _ = _read_on_grid(path, grid, (1,), res)
    return np.rint(m[0]).astype(np.int64), valid


def _read_physical(path, bands) -> tuple[np.ndarray, np.ndarray]:
    """``bands`` (default: :func:`_read_on_grid`'s) of ``path`` on its own grid in physical values, read as the HR
    is (its scales and offsets applied, nodata as the HR's: a given LR that multiplied by the scales alone sat an
    offset of its own away from its HR, found in review), and where it has data."""
    from geosr.io.rasters import inspect_raster

    data, valid, _ = _read_on_grid(path, inspect_raster(str(path)).grid, bands)
    return data, valid


def without_lr_gaps(valid: torch.Tensor | None, lr_has: torch.Tensor | None, scale: int,
                    shape: tuple[int, int]) -> torch.Tensor | None:
    """The target's validity ``valid`` ((H, W), None: everywhere) without the HR pixels of a given LR's pixels
    without data (``lr_has``, (h, w)): evaluate scored a given LR's nodata, read as black, as the models' input
    (a bicubic 31.8 dB fell to 12.3 with a third of the LR nodata), and training drew crops there (found in
    review). HR pixels beyond the LR's reach keep their validity."""
    if lr_has is None or bool(lr_has.all()):
        return valid
    up = lr_has.repeat_interleave(scale, 0).repeat_interleave(scale, 1)[:shape[0], :shape[1]]
    cover = torch.ones(shape, dtype=torch.bool)
    cover[:up.shape[0], :up.shape[1]] = up
    return cover if valid is None else valid & cover


# ---- synthetic change -------------------------------------------------------------------------------------------
def synthetic_pairs(images: Sequence[str | Path | torch.Tensor], *, group: str = "synthetic",
                    grey_as_rgb: bool = True) -> list[Pair]:
    """Pairs whose reference and mask are made per sample from the image itself (see synthetic_change).
    ``grey_as_rgb``: a one-band image is repeated into three (a collection's few grey images among RGB ones);
    False keeps it one band, for the caller to refuse or train a one-band model on."""
    pairs = []
    for i, img in enumerate(images):
        if torch.is_tensor(img):
            t, name, valid = img.float(), f"{group}_{i}", None
        else:  # (where it has data: crops are drawn there, samples.TrainingSampleMaker)
            (t, _, valid), name = read_target(img), Path(img).stem
        if t.shape[0] == 1 and grey_as_rgb:
            t = t.expand(3, -1, -1).contiguous()
        pairs.append(Pair(name=name, target=t, synthetic=True, group=group, valid=valid))
    return pairs


__all__ = ["refdiff_folder", "read_class_table", "change_pair_folder", "site_pairs", "geotiff_stack", "synthetic_pairs"]
