"""A training or evaluation scene (:class:`Pair`) and the readers every data layout uses.

Tensors are in "unit" space: values roughly in [0, 1] (8-bit data / 255, other data divided by a per-image
high percentile; a per-image linear factor, so it changes nothing in model space, which is the per-scene
robust stretch of the LR, :class:`geosr.conditioning.radiometry.Stretch`).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from geosr.conditioning.changes import BINARY, ChangeClassTable
from geosr.conditioning.radiometry import PERCENTILES, Stretch
from geosr.errors import InputError, InputNotFoundError
from geosr.training.degradations import box_downsample


def _described(value: object) -> str:
    """A tensor's shape and dtype in words (for messages), else the kind of value it is."""
    if isinstance(value, torch.Tensor):
        return f"{tuple(value.shape)} {str(value.dtype).removeprefix('torch.')}"
    return f"a {type(value).__name__}"


# the images read by PIL (GDAL reads a GIF as its palette's numbers: one grey band; found in review); every other
# file by GDAL
PICTURE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".ico")
# what a folder's listing takes for an image (a GIF among PNGs was read given alone, left out of its folder; review)
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp") + PICTURE_EXTS[4:]


def read_by_gdal(path: Path) -> bool:
    """Whether ``path`` is read as a raster by GDAL (a GeoTIFF, and a file named as one: a VRT, a JPEG 2000, an
    ERDAS .img, which were "not an image that can be read" when given as data; found in review) rather than as a
    picture by PIL (:data:`PICTURE_EXTS`: PNG, JPEG, BMP, GIF...)."""
    return path.suffix.lower() not in PICTURE_EXTS


@dataclass
class Pair:
    """One scene: the target (the HR truth), and what conditions it. Tensors in unit space.

    target   (C, H, W) float32
    ref      (C, H, W) float32 or None (synthetic pairs make theirs per sample; None otherwise: no reference)
    change   (H, W) int64 class indices of ``table`` or None (all unchanged / synthetic)
    labelled (H, W) bool where the change label is known (None: everywhere); evaluation splits use it
    valid    (H, W) bool where the target has data in every band (None: everywhere); evaluation scores only there
    ref_valid (H, W) bool where the reference has data in every band (None: wherever there is one); nowhere else is
             it given to a model, as upscale gives none of a reference's nodata
    lr       {scale: (C, H/s, W/s)} given LRs (a released LR folder, a real LR raster); others are degraded
    """

    name: str
    target: torch.Tensor
    ref: torch.Tensor | None = None
    change: torch.Tensor | None = None
    labelled: torch.Tensor | None = None
    lr: dict[int, torch.Tensor] = field(default_factory=dict)
    map: torch.Tensor | None = None
    table: ChangeClassTable = BINARY
    synthetic: bool = False
    group: str = ""  # scene group (for splits)
    valid: torch.Tensor | None = None
    ref_valid: torch.Tensor | None = None
    nodata_as_change: str | None = None  # its label's nodata value is a changed class's (layouts.nodata_as_change)
    _stretch: dict[int, Stretch] = field(default_factory=dict)  # per scale: each scale's LR has its own
    _origins: dict[tuple[int, int], tuple[np.ndarray, int]] = field(default_factory=dict)  # per (crop, scale)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.target.shape[-2]), int(self.target.shape[-1])

    def check(self) -> None:
        """Raise InputError, naming the pair, where its tensors disagree as no data layout makes them (a pair
        built by hand for the Python API: a 1-band reference of an RGB target, a change mask of another size)."""
        def refuse(problem: str) -> None:
            raise InputError(f"pair {self.name!r}: {problem}")

        t = self.target
        if not isinstance(t, torch.Tensor) or t.ndim != 3 or not t.is_floating_point() or min(t.shape) < 1:
            refuse(f"its target is {_described(t)}; give a (bands, height, width) float tensor")
        hw = self.shape
        if self.ref is not None and (not isinstance(self.ref, torch.Tensor) or self.ref.shape != t.shape):
            refuse(f"its reference is {_described(self.ref)}, its target {_described(t)}; a reference must have "
                   "the target's bands and size")
        for name in ("change", "labelled", "valid", "ref_valid", "map"):
            m = getattr(self, name)
            if m is not None and (not isinstance(m, torch.Tensor) or tuple(m.shape) != hw):
                refuse(f"its {name} is {_described(m)}; it must be (height, width) = {hw}, the target's size")
        for s, lr in self.lr.items():
            need = (t.shape[0], hw[0] // s, hw[1] // s)
            if not isinstance(lr, torch.Tensor) or lr.ndim != 3 or lr.shape[0] != need[0] or lr.shape[1] < need[1] \
                    or lr.shape[2] < need[2]:
                refuse(f"its x{s} LR is {_described(lr)}; at x{s} it must be {need}: the target's bands, its size / "
                       f"{s}")

    @property
    def changed(self) -> torch.Tensor:
        """(H, W) bool: the class is a "changed" class of the table."""
        if self.change is None:
            return torch.zeros(self.shape, dtype=torch.bool)
        flags = torch.tensor([c.changed for c in self.table.classes], dtype=torch.bool)
        return flags[self.change.clamp(0, len(flags) - 1)]

    def stretch(self, scale: int) -> Stretch:
        """The scene's model space at ``scale``: the pipeline's per-scene robust stretch of its LR at that scale
        (given or box-averaged), as upscale fits it on the LR it is given. (Once cached for the first scale asked,
        whatever the scale: a batch then depended on which scale drew the scene first, and a resumed run on more
        than one scale was not the run it continued.)"""
        if scale not in self._stretch:
            lr = self.lr.get(scale)
            if lr is None:
                lr = box_downsample(self.target, scale)
            # over the LR pixels with data (nodata read as 0 pulled the stretch)
            h, w = lr.shape[-2:]
            valid = None if self.valid is None else self._lr_share(scale)[:h, :w] == 1.0
            self._stretch[scale] = array_stretch(lr.numpy(), valid)
        return self._stretch[scale]

    def crop_origins(self, crop: int, scale: int) -> tuple[np.ndarray, int] | None:
        """The LR-grid origins of the ``crop``-px crops of this pair at ``scale`` that have data on at least
        MIN_CROP_DATA of their pixels (a crop of nodata, read as 0, trained the model on black), as int32 flat
        indices (row * width + column: an 8000 x 8000 target's are tens of MB) and that width; None when the
        target has data everywhere."""
        if self.valid is None:
            return None
        key = (crop, scale)
        if key not in self._origins:
            n = crop // scale
            table = np.pad(self._lr_share(scale).cumsum(0).cumsum(1), ((1, 0), (1, 0)))  # (float64: exact on large)
            share = (table[n:, n:] - table[:-n, n:] - table[n:, :-n] + table[:-n, :-n]) / (n * n)
            self._origins[key] = (np.flatnonzero(share >= MIN_CROP_DATA).astype(np.int32), int(share.shape[1]))
        return self._origins[key]

    def _lr_share(self, scale: int) -> np.ndarray:
        """(h, w) float64: the share of each LR pixel's block at ``scale`` where the target has data (``valid``)."""
        assert self.valid is not None
        h, w = self.shape[0] // scale, self.shape[1] // scale
        return self.valid[: h * scale, : w * scale].reshape(h, scale, w, scale).double().mean((1, 3)).numpy()


MIN_CROP_DATA = 0.9  # the least share of a training crop's pixels with data


def array_stretch(lr: np.ndarray, valid: np.ndarray | None = None) -> Stretch:
    """The robust stretch of an in-memory (C, h, w) LR: :func:`geosr.conditioning.radiometry.fit_stretch`'s
    percentiles (and its unit-wide stretch of a flat band), taken over every pixel (``valid``, (h, w): over those
    with data, when there are any)."""
    pixels = lr.reshape(lr.shape[0], -1).astype(np.float64)
    if valid is not None and valid.any():
        pixels = pixels[:, valid.reshape(-1)]
    lo, hi = np.percentile(pixels, PERCENTILES, axis=1)
    flat = ~(hi > lo)
    return Stretch(tuple(map(float, np.where(flat, lo - 0.5, lo))), tuple(map(float, np.where(flat, lo + 0.5, hi))))


def to_model(x: torch.Tensor, stretch: Stretch) -> torch.Tensor:
    """Unit space -> model space (:meth:`Stretch.forward`), float32."""
    return torch.from_numpy(stretch.forward(x.detach().float().cpu().numpy()))


# ---- reading images ---------------------------------------------------------------------------------------------
def read_image(path: str | Path, bands: Sequence[int] | None = None) -> tuple[torch.Tensor, float]:
    """(C, H, W) float32 unit-space image and the divisor used (255 for 8-bit); nodata reads as 0."""
    image, div, _ = read_target(path, bands)
    return image, div


def read_target(path: str | Path, bands: Sequence[int] | None = None
                ) -> tuple[torch.Tensor, float, torch.Tensor | None]:
    """:func:`read_image` and where the image has data, (H, W) bool (None: everywhere), for scoring against it only
    there (its nodata read as 0 was scored as a match: +1.1 dB on an image half nodata). As GDAL has it, a pixel has
    no data only where every band has none (a GeoTIFF's nodata value or NaN; a PNG's alpha 0)."""
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(f"{path}: no such image")
    with _readable(path):
        return _read_image(path, bands)


@contextlib.contextmanager
def _readable(path: Path) -> Iterator[None]:
    """An image that cannot be read (empty, truncated, a folder, no permission, not an image) named in one
    sentence, as bad input, instead of the reader's own error."""
    try:
        yield
    except InputError:
        raise
    except (OSError, ValueError, SyntaxError) as exc:  # PIL: UnidentifiedImageError (OSError), SyntaxError
        from geosr.io.rasters import read_failure

        raise InputError(f"{path}: not an image that can be read ({read_failure(exc)})") from None


def georeferencing(path: str | Path) -> tuple[str, tuple[float, ...]] | None:
    """A GeoTIFF's CRS (WKT) and geotransform (a, b, c, d, e, f), or None for another image or one without a CRS."""
    path = Path(path)
    if not read_by_gdal(path):
        return None
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings(), _readable(path):
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as ds:
            return (ds.crs.to_wkt(), tuple(ds.transform)[:6]) if ds.crs else None


def same_place(a: tuple[str, tuple[float, ...]], b: tuple[str, tuple[float, ...]]) -> bool:
    """Whether two images' georeferencing (:func:`georeferencing`) puts their pixels at the same place: one CRS, and
    pixel sizes and origins within a hundredth and half of a pixel."""
    from pyproj import CRS

    (crs_a, (xa, xb, xc, ya, yb, yc)), (crs_b, (x2a, x2b, x2c, y2a, y2b, y2c)) = a, b
    px = max(abs(xa) + abs(xb), abs(ya) + abs(yb))
    return CRS.from_wkt(crs_a) == CRS.from_wkt(crs_b) and all(
        abs(u - v) <= 0.01 * px for u, v in ((xa, x2a), (xb, x2b), (ya, y2a), (yb, y2b))) and \
        abs(xc - x2c) <= 0.5 * px and abs(yc - y2c) <= 0.5 * px


def _read_image(path: Path, bands: Sequence[int] | None) -> tuple[torch.Tensor, float, torch.Tensor | None]:
    if read_by_gdal(path):
        import warnings

        import rasterio
        from rasterio.errors import NotGeoreferencedWarning

        with warnings.catch_warnings():  # training images need no georeferencing
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                # red, green, blue by the bands' names as upscale takes them (a B02,B03,B04 stack was scored
                # with blue as red, a 13-band Sentinel-2 stack on B01-B03); else the first three
                sel = list(bands) if bands else list(named_rgb(path))
                check_bands(path, sel, ds.count)
                masked = ds.read(sel, masked=True)  # nodata (NaN too) counts as 0, as lite's reader has it
                dtype = ds.dtypes[sel[0] - 1]
                scales = np.array([ds.scales[b - 1] for b in sel])[:, None, None]
                offsets = np.array([ds.offsets[b - 1] for b in sel])[:, None, None]
        raw = np.ma.getdata(masked)
        finite = np.isfinite(raw)
        pixel = (~np.ma.getmaskarray(masked) & finite).any(axis=0)
        # a pixel with data in some band keeps every band's stored value (NaN: 0): an 8-bit image declaring nodata
        # 0 holds dark pixels with one band at 0, which were scored as holes (each clearing a margin: 5% scored)
        valid = pixel[None] & finite
        # in physical units, as upscale reads them (the data contract): the same reflectance stored with an offset
        # (Sentinel-2 from baseline 04.00) scored ERGAS 1.49 against 2.48 without one; a scaled 8-bit image is deep
        if (scales != 1).any() or (offsets != 0).any():
            raw, dtype = raw * scales + offsets, "float32"
        arr = np.where(valid, raw, 0).astype(np.float32)
    else:
        from PIL import Image

        with Image.open(path) as im:
            # 16- and 32-bit grey (I;16, I) and float (F) kept as they are: converted to RGB they were clipped at
            # 255, and a 16-bit image read as white everywhere (an evaluation then scored perfectly)
            deep = im.mode.startswith("I") or im.mode == "F"
            # transparent pixels have no data (as GDAL reads a PNG's alpha): they were scored, black
            alpha = im.mode in ("RGBA", "LA", "PA") or (not deep and "transparency" in im.info)
            seen = np.asarray(im.convert("RGBA"))[..., 3] > 0 if alpha else None
            im = im if deep or im.mode in ("L", "RGB") else im.convert("RGB")
            arr = np.asarray(im, dtype=np.float32)
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        if bands:
            check_bands(path, bands, arr.shape[0])
            arr = arr[[b - 1 for b in bands]]
        dtype = "float32" if deep else "uint8"  # scaled as a deep GeoTIFF is: by its 99.9th percentile
        valid = np.isfinite(arr) & (True if seen is None else seen[None])
        arr = np.where(valid, arr, 0).astype(np.float32)
    if not valid.any():  # else trained on (or scored against) a blank image of zeros without a word
        raise InputError(f"{path}: holds no valid pixel (every one is nodata or not a number)")
    div = 255.0 if dtype == "uint8" else _divisor(path, arr[valid])
    every = valid.any(axis=0) if valid.ndim == 3 else valid
    return torch.from_numpy(np.ascontiguousarray(arr / div)), div, None if every.all() else torch.from_numpy(every)


def _divisor(path: Path, values: np.ndarray) -> float:
    """What a deep image's values are divided by into unit space, where it is scored and trained on from 0 to 1:
    their 99.9th percentile (or largest). An image with no value above 0 (reflectance below an offset, a difference
    image, a blank tile) is refused: divided by a floor of 1e-6 and clamped at 0, it scored PSNR inf, SSIM 1, for
    anything (found in review)."""
    top = float(np.percentile(values, 99.9))
    top = top if top > 0 else float(values.max())  # (fewer than 0.1% above 0: the largest)
    if top <= 0:
        raise InputError(f"{path}: holds no value above 0 (its valid values lie from {float(values.min()):.6g} to "
                         f"{float(values.max()):.6g}), and images are read from 0 to their 99.9th percentile")
    return top


def named_rgb(path: Path) -> tuple[int, ...]:
    """The (up to three) bands a GeoTIFF's red, green, blue are read from without ``bands``: by their names, as
    upscale takes them, else the first three."""
    from geosr.io.rasters import inspect_raster, some_default_bands

    return tuple(some_default_bands(inspect_raster(path, require_crs=False)))[:3]  # (an alpha band alone: refused)


def check_same_band_choice(paths: Sequence[Path | None], bands: Sequence[int] | None = None, *,
                           takes_bands: bool = False) -> None:
    """Refuse images of one pair whose red, green and blue :func:`read_image` would take from other bands (one
    GeoTIFF naming its bands B02,B03,B04, another naming none): their channels were compared crossed.
    ``takes_bands``: the data source takes a "bands" key, which the advice then names (a folder layout has none)."""
    if bands:
        return
    chosen = {}
    for path in paths:
        if path is not None and read_by_gdal(path):
            with contextlib.suppress(Exception):  # an unreadable image is named by its read, as before
                chosen[path] = named_rgb(path)
    if len({len(c) for c in chosen.values()}) > 1:  # as many bands read from each: 3 against 1, refused as such
        return  # by the layout (this named their choices); 3 of 4 against 3 of 3 are compared here
    if len(set(chosen.values())) > 1:
        (a, ba), *rest = chosen.items()
        b, bb = next((p, c) for p, c in rest if c != ba)
        raise InputError(f"{b}: its bands' names make bands {','.join(map(str, bb))} its red, green and blue, but "
                         f"{a}'s make them {','.join(map(str, ba))}; name the bands of a pair's images alike"
                         + (' (or give its data source\'s "bands")' if takes_bands else ""))


def check_bands(path: Path | str, bands: Sequence[int], count: int) -> None:
    """Refuse band numbers ``path`` does not have (they were an IndexError: "internal error", exit 1)."""
    missing = [b for b in bands if not 1 <= b <= count]
    if missing:
        raise InputError(f"{path}: has {count} band{'s' if count != 1 else ''}, so no band "
                         f"{', '.join(map(str, dict.fromkeys(missing)))} (its data source's \"bands\")")


def read_mask(path: str | Path) -> np.ndarray:
    """(H, W) integer class raster (PNG or GeoTIFF band 1)."""
    return read_label(path)[0]


def read_label(path: str | Path) -> tuple[np.ndarray, np.ndarray | None, float | None]:
    """A change label: its class raster (:func:`read_mask`), where it is known, (H, W) bool, or None where it
    is known everywhere, and its nodata value. A GeoTIFF's nodata (or mask) is not labelled: it was scored as a
    class (``detect-changes`` writes 255 where it cannot tell, BINARY's "changed"; found in review)."""
    path = Path(path)
    with _readable(path):
        return _read_label(path)


def _read_label(path: Path) -> tuple[np.ndarray, np.ndarray | None, float | None]:
    if read_by_gdal(path):
        import warnings

        import rasterio
        from rasterio.enums import MaskFlags
        from rasterio.errors import NotGeoreferencedWarning

        with warnings.catch_warnings():  # (a label needs no georeferencing: rasterio's warning was printed; review)
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                values = ds.read(1).astype(np.int64)
                if MaskFlags.all_valid in ds.mask_flag_enums[0]:
                    return values, None, None
                where = ds.read_masks(1) > 0
                return values, None if where.all() else where, ds.nodata
    from PIL import Image

    with Image.open(path) as im:
        arr = np.asarray(im.convert("L") if im.mode not in ("L", "P", "I") else im)
    return arr.astype(np.int64), None, None


def classes_of(values: np.ndarray, table: ChangeClassTable) -> torch.Tensor:
    """Raster values -> class indices of ``table``; undeclared values become the table's unknown class."""
    idx, _ = table.lookup(values)
    idx = np.where(idx < 0, table.unknown_index, idx)
    return torch.from_numpy(idx.astype(np.int64))


def find_image(folder: Path, stem: str) -> Path | None:
    """The image ``stem`` + any of :data:`IMAGE_EXTS` (either case) in ``folder``, if there is one."""
    for ext in IMAGE_EXTS:
        for cand in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
            if cand.exists():
                return cand
    return None


def is_hidden(path: Path, root: Path | None = None) -> bool:
    """Whether ``path`` is a hidden file (its name starts with "."), or lies in a hidden folder below ``root``:
    a macOS AppleDouble ``._x.tif`` beside ``x.tif`` (a copy from a Mac's disk) was read as an image and stopped
    the run, "not an image that can be read" (found in review)."""
    parts = path.relative_to(root).parts if root is not None and path.is_relative_to(root) else (path.name,)
    return any(part.startswith(".") for part in parts)


def images_under(folder: Path, *, labels: bool = True) -> list[Path]:
    """The image files at any depth below ``folder`` by their extension (:data:`IMAGE_EXTS`), in path order; hidden
    files left out, and change masks (:func:`is_label_image`) unless ``labels``."""
    found = []
    seen: set[tuple[int, int]] = set()
    # (os.walk following links, each folder once: rglob left out a linked folder, `2019 -> /data/2019`, whose
    # images a user sees there; a link back up would loop; found in review)
    for here, dirs, files in os.walk(folder, followlinks=True):
        st = os.stat(here)
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # (hidden: no images of any layout)
        found += [Path(here) / f for f in files if Path(f).suffix.lower() in IMAGE_EXTS]
    return sorted(p for p in found if p.is_file() and not is_hidden(p, folder)
                  and (labels or not is_label_image(p, folder)))


def list_images(folder: Path) -> list[Path]:
    """The images of ``folder`` by their extension (:data:`IMAGE_EXTS`), in name order; hidden files left out."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and not is_hidden(p))


LABEL_FOLDERS = frozenset({"label", "labels", "cd_mask"})  # a change-pair layout's labels (LEVIR, DSIFN, Ref-Diff)


def is_label_image(path: Path, root: Path | None = None) -> bool:
    """Whether ``path`` is a change mask by its name (``*_mask``, ``*-mask``: a sites folder's change and unchanged
    masks) or, below the folder ``root`` given, by its folder's (``label/``, ``CD_mask/`` of a pair layout), which a
    folder of single images must not take as imagery (binary masks were trained on as grey photos; found in review).
    The folder given is the user's choice whatever its name (a super-resolution set's ``GT/`` is imagery)."""
    below = root is not None and path.parent != root
    return path.stem.lower().endswith(("_mask", "-mask")) or (below and path.parent.name.lower() in LABEL_FOLDERS)


__all__ = ["Pair", "IMAGE_EXTS", "array_stretch", "to_model", "read_image", "read_mask", "read_label", "classes_of",
           "find_image", "is_hidden", "images_under", "list_images", "is_label_image"]
