"""Writing GeoTIFFs: row-band chunks, stitched (in memory or into a tiled GeoTIFF), and the final COG renamed
into place.

Every file is complete on disk before anything refers to it: chunks are written under a temporary name
and renamed; the COG is made by GDAL's COG driver from the stitched raster and renamed onto the target.
No timestamps are written, so the same pixels give the same bytes.
"""

from __future__ import annotations

import errno
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import ColorInterp, Resampling
from rasterio.env import get_gdal_config, set_gdal_config
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from geosr.config import COMPRESS_LEVELS, DEFAULT_COMPRESS_LEVEL
from geosr.errors import ResumeError
from geosr.io.outputs import atomic_output, full_disk, stops_between_gdal_calls, temp_path_beside, told_full
from geosr.io.paths import gdal_sidecars, pam_path
from geosr.tiling.grid import Grid

# GDAL's block cache defaults to 5% of RAM and fills up while a large COG is made; a fixed cap keeps the
# writer's memory independent of the scene size.
GDAL_CACHE_MB = 256


_CACHE_LOCK = threading.Lock()
_CACHE_USERS: list = [0, None]  # writes inside block_cache now, and the process's size before the first of them


@contextmanager
def block_cache(mb: int = GDAL_CACHE_MB) -> Iterator[None]:
    """GDAL's block cache at ``mb`` MB inside, the process's own size again after the last write inside it ends
    (the cache is the process's: writes in several threads share one, set by the first)."""
    # rasterio takes GDAL_CACHEMAX in bytes (256 meant 256 bytes: every block read again from disk, 7x slower
    # statistics of a 1536-px output), and an Env nested in another does not restore it: so it is set and put back
    # here, counted across threads (a thread's Env ending would restore it under another's write).
    with _CACHE_LOCK:
        if _CACHE_USERS[0] == 0:
            _CACHE_USERS[1] = get_gdal_config("GDAL_CACHEMAX")
            set_gdal_config("GDAL_CACHEMAX", mb * 2**20)
        _CACHE_USERS[0] += 1
    try:
        yield
    finally:
        with _CACHE_LOCK:
            _CACHE_USERS[0] -= 1
            before = _CACHE_USERS[1]
            if _CACHE_USERS[0] == 0 and isinstance(before, int) and before > 0:
                set_gdal_config("GDAL_CACHEMAX", before)


# The files only geosr reads back (row-band chunks, the stitched stage): Zstandard at level 1 writes about 5x
# faster than DEFLATE and reads faster, at about the same size; the COG gets the user's compression.
STAGE_COMPRESS = "ZSTD"
STAGE_ZSTD_LEVEL = 1
# An output whose pixels and overviews take at most this much is assembled in memory (GDAL's MEM driver) and
# handed to the COG driver from there; its row-band chunks are then written uncompressed. A larger one is
# stitched into a compressed GeoTIFF on disk first, so that memory stays bounded whatever the scene's size.
# On a real 2048 x 2048 x 3 uint8 output: chunks, stitching and the COG 1.50 s that way, 0.77 s in memory.
IN_MEMORY_MB = 256


@dataclass(frozen=True)
class OutputMeta:
    """Everything about the output but its pixels."""

    dtype: str
    count: int
    nodata: float | None = None
    write_mask: bool = False  # a GDAL mask band instead of (or besides) a nodata value
    descriptions: tuple[str | None, ...] = ()
    scales: tuple[float, ...] = ()
    offsets: tuple[float, ...] = ()
    colorinterp: tuple[str, ...] = ()
    units: tuple[str, ...] = ()  # each band's unit ("" for none)
    band_tags: tuple[dict[str, str], ...] = ()  # each band's metadata
    tags: dict[str, str] = field(default_factory=dict)
    colormap: dict[int, tuple[int, int, int, int]] | None = None
    categories: dict[int, str] | None = None  # a class raster's names by value (written as GDAL PAM, see below)
    compress: str = "DEFLATE"
    compress_level: int | None = None  # None: geosr.config.DEFAULT_COMPRESS_LEVEL's, else GDAL's
    blocksize: int = 512
    overview_resampling: str = "average"

    def __post_init__(self) -> None:
        # a class raster's overviews hold its classes: an average of classes 0 and 3 is a class found nowhere
        if (self.categories or self.colormap) and self.overview_resampling.lower() not in ("mode", "nearest"):
            raise ValueError(f"a class raster's overviews take mode or nearest, not {self.overview_resampling}")


def _profile(meta: OutputMeta, grid: Grid, *, compress: str, blocksize: int) -> dict:
    bs = max(16, min(blocksize, 1 << max(4, (max(grid.width, grid.height) - 1).bit_length())))
    bs -= bs % 16
    profile = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": meta.count,
        "dtype": meta.dtype,
        "crs": grid.crs,
        "transform": grid.transform,
        "tiled": True,
        "blockxsize": bs,
        "blockysize": bs,
        "compress": compress,
        "interleave": "pixel" if meta.count > 1 else "band",
        "BIGTIFF": "IF_SAFER",
    }
    if compress == STAGE_COMPRESS:  # compressed on the process's cores (the same pixels with any number)
        profile["zstd_level"] = STAGE_ZSTD_LEVEL
        profile["num_threads"] = cog_threads()
    if meta.nodata is not None:
        profile["nodata"] = meta.nodata
    return profile


def _apply_meta(dst: rasterio.io.DatasetWriter, meta: OutputMeta) -> None:
    for i, d in enumerate(meta.descriptions[: meta.count]):
        if d:
            dst.set_band_description(i + 1, d)
    if meta.scales:
        dst.scales = meta.scales
    if meta.offsets:
        dst.offsets = meta.offsets
    if meta.colorinterp:
        dst.colorinterp = [ColorInterp[c] for c in meta.colorinterp]
    if any(meta.units):
        dst.units = meta.units[: meta.count]
    for i, band in enumerate(meta.band_tags[: meta.count]):
        if band:
            dst.update_tags(i + 1, **band)
    if meta.tags:
        dst.update_tags(**meta.tags)
    if meta.colormap:
        dst.write_colormap(1, meta.colormap)


def assembled_mb(grid: Grid, meta: OutputMeta) -> float:
    """Megabytes an output on ``grid`` takes in memory with its overviews (a third more) and its mask."""
    per_pixel = meta.count * np.dtype(meta.dtype).itemsize + (1 if meta.write_mask else 0)
    return grid.width * grid.height * per_pixel * 4 / 3 / 2**20


def written_mb(grid: Grid, meta: OutputMeta) -> float:
    """Megabytes an output on ``grid`` takes on disk at most at once while it is written, were nothing to compress:
    its row chunks, the stitched copy with overviews (unless assembled in memory: :func:`assemble`) and the COG with
    its overviews, all beside it (an output of 275 MB uncompressed peaked at 1.02 GB on disk, measured in review)."""
    whole = assembled_mb(grid, meta)
    return staged_rows_mb(grid, meta) + whole + (0.0 if in_memory(grid, meta) else whole)


def staged_rows_mb(grid: Grid, meta: OutputMeta) -> float:
    """Megabytes the row chunks of an output on ``grid`` take on disk at most, were nothing to compress (the
    output's pixels without its overviews: three quarters of :func:`assembled_mb`)."""
    return assembled_mb(grid, meta) * 3 / 4


def in_memory(grid: Grid, meta: OutputMeta) -> bool:
    """Whether an output on ``grid`` is assembled in memory (see IN_MEMORY_MB). Never a 64-bit integer one with a
    nodata value: GDAL's MEM driver does not hand such a nodata on to the COG driver's copy (an int64 output with
    nodata -9999 was written without one, its nodata pixels ordinary values; found in review)."""
    if np.dtype(meta.dtype).itemsize == 8 and np.dtype(meta.dtype).kind in "iu" and meta.nodata is not None:
        return False
    return assembled_mb(grid, meta) <= IN_MEMORY_MB


def write_chunk(path: Path, data: np.ndarray, valid: np.ndarray | None, grid: Grid, meta: OutputMeta,
                *, output: Grid | None = None) -> None:
    """Write one finished row band (count, h, w) on ``grid`` as a small tiled GeoTIFF, atomically: uncompressed
    when the whole ``output`` grid is assembled in memory (it is read back once, soon), Zstandard otherwise."""
    compress = "NONE" if output is not None and in_memory(output, meta) else STAGE_COMPRESS
    with atomic_output(path) as tmp:
        profile = _profile(meta, grid, compress=compress, blocksize=256)
        if compress == "NONE":  # in strips: tiles padded a band of 64 rows to 256 (the chunks of a 30 MB disk's run
            # took 26.7 MB for an output of 11.4, more than the disk check counted; found in review)
            profile = {k: v for k, v in profile.items() if k not in ("blockxsize", "blockysize")} | {"tiled": False}
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data)
            if meta.write_mask and valid is not None:
                dst.write_mask(valid.astype(np.uint8) * 255)
        if full_disk(tmp.parent):  # libtiff may have written it short at its close, GDAL raising nothing
            _read_back(tmp)


def _read_back(path: Path) -> None:
    """Read every pixel of a file just written on a (nearly) full disk: an OSError ENOSPC if it was written short,
    before it is journaled as done (a `resume` would find it damaged)."""
    try:
        with rasterio.open(path) as src:
            src.read()
    except RasterioIOError as exc:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) from exc


def stitch(chunks: Iterable[tuple[Path, int]], grid: Grid, meta: OutputMeta, dst_path: Path,
           act: Callable[[], None] = lambda: None) -> None:
    """Copy row-band chunks (path, first row) into one tiled GeoTIFF, one band of rows at a time, with the COG's
    overviews; ``act`` is called between GDAL calls (:func:`~geosr.io.outputs.stops_between_gdal_calls`)."""
    profile = _profile(meta, grid, compress=STAGE_COMPRESS, blocksize=meta.blocksize)
    with told_full(dst_path), block_cache(), rasterio.open(dst_path, "w", **profile) as dst:
        _apply_meta(dst, meta)
        _copy_chunks(chunks, dst, meta, act)
        build_stage_overviews(dst, meta)
    act()


def _copy_chunks(chunks: Iterable[tuple[Path, int]], dst: rasterio.io.DatasetWriter, meta: OutputMeta,
                 act: Callable[[], None] = lambda: None) -> None:
    for path, row in chunks:
        act()
        try:
            src = rasterio.open(path)
            with src:
                win = Window(0, row, src.width, src.height)
                data = src.read()
                mask = src.read_masks(1) if meta.write_mask else None
        except RasterioIOError as exc:
            if full_disk(path.parent):  # written short while the disk filled (GDAL printed it, raised nothing)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) from exc
            raise ResumeError(f"{path}: a finished part of the job cannot be read; the work folder is damaged, "
                              "run again without `resume`") from exc
        dst.write(data, window=win)
        if mask is not None:
            dst.write_mask(mask, window=win)


def _memory_dataset(grid: Grid, meta: OutputMeta) -> rasterio.io.DatasetWriter:
    """An empty dataset in memory (GDAL's MEM driver) on ``grid`` with ``meta``'s metadata."""
    dst = rasterio.open("stage", "w", driver="MEM", width=grid.width, height=grid.height, count=meta.count,
                        dtype=meta.dtype, crs=grid.crs, transform=grid.transform, nodata=meta.nodata)
    _apply_meta(dst, meta)
    return dst


def overview_factors(width: int, height: int, blocksize: int) -> list[int]:
    """The overview levels GDAL's COG driver makes: halving until both sides fit in one block."""
    factors, f = [], 1
    while -(-width // f) > blocksize or -(-height // f) > blocksize:
        f *= 2
        factors.append(f)
    return factors


def build_stage_overviews(dst: rasterio.io.DatasetWriter, meta: OutputMeta) -> None:
    """Build the COG's overviews inside the stage (Zstandard, on every core), where the COG driver takes them
    as they are instead of computing them single-threaded into a temporary file: about 0.7x the COG's time (a
    2048 x 2048 x 3 uint8 stage, 0.28 against 0.40 s). The same values where the sides halve evenly; elsewhere the
    last levels take gdaladdo's rounding of their size (2100 / 8 -> 263 px, where the COG driver made 262)."""
    factors = overview_factors(dst.width, dst.height, meta.blocksize)
    if factors:
        with rasterio.Env(COMPRESS_OVERVIEW=STAGE_COMPRESS, ZSTD_LEVEL=STAGE_ZSTD_LEVEL,
                          GDAL_NUM_THREADS=cog_threads()):
            # (rasterio spells GDAL's CUBICSPLINE cubic_spline)
            method = meta.overview_resampling.lower().replace("cubicspline", "cubic_spline")
            dst.build_overviews(factors, Resampling[method])


def to_cog(src: Path | rasterio.io.DatasetWriter, final: Path, meta: OutputMeta, *,
           folder: Path | None = None, before_rename: Callable[[], None] | None = None) -> None:
    """Turn a raster (a GeoTIFF's path, or an open dataset) into a COG with overviews (GDAL's COG driver) and
    rename it onto ``final``. The COG is made in ``folder`` (default: beside ``final``; the same file system),
    where a killed run leaves it. Class names of an earlier file at ``final`` are removed just before the rename,
    and this file's written after it is in place: a kill while the COG is made leaves the earlier file whole (its
    names too); one in the instant between loses the names, never pairs these pixels with another file's."""

    def rename_ready() -> None:
        if before_rename is not None:
            before_rename()
        for side in gdal_sidecars(final).values():  # an earlier file's metadata, overviews, mask
            side.unlink(missing_ok=True)

    compress = meta.compress.upper()
    level = meta.compress_level if meta.compress_level is not None else DEFAULT_COMPRESS_LEVEL.get(compress)
    options = {"LEVEL": str(level)} if level is not None and compress in COMPRESS_LEVELS else {}
    with atomic_output(final, folder=folder, before_rename=rename_ready) as tmp, \
            block_cache():
        rasterio.shutil.copy(
            str(src) if isinstance(src, (str, os.PathLike)) else src,
            str(tmp),
            driver="COG",
            COMPRESS=compress,
            PREDICTOR="YES" if compress in ("DEFLATE", "LZW", "ZSTD") else "NO",
            BLOCKSIZE=str(meta.blocksize),
            OVERVIEW_RESAMPLING=meta.overview_resampling.upper(),
            BIGTIFF="IF_SAFER",
            NUM_THREADS=cog_threads(),
            **options,
        )
    write_categories(final, meta)


def cog_threads() -> str:
    """GDAL's threads for compressing the COG: the process's share of the CPUs where one was set
    (``GDAL_NUM_THREADS``, else ``OMP_NUM_THREADS``, as batch workers get), else all. The bytes are the same
    with any number (GDAL compresses each block independently and writes them in order)."""
    for name in ("GDAL_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0 or value.upper() == "ALL_CPUS":
            return value.upper()
    return "ALL_CPUS"


def write_categories(path: Path, meta: OutputMeta) -> None:
    """Give a class raster its class names where GDAL and QGIS look: band 1's category names and a thematic
    raster attribute table (value, class, colour), in ``<name>.aux.xml`` (nothing without ``meta.categories``).

    GDAL keeps both for GeoTIFFs only in this auxiliary file, and rasterio has no API for either, so the
    file is written here (GDAL's PAM schema: FieldDefn Type 0 integer, 2 string; Usage 5 min-max, 2 name,
    6-9 red, green, blue, alpha), atomically."""
    if not meta.categories:
        return
    import xml.etree.ElementTree as ET

    cats = meta.categories
    colours = meta.colormap or {}
    root = ET.Element("PAMDataset")
    band = ET.SubElement(root, "PAMRasterBand", band="1")
    names = ET.SubElement(band, "CategoryNames")
    for value in range(max(cats) + 1):
        ET.SubElement(names, "Category").text = cats.get(value, "")
    rat = ET.SubElement(band, "GDALRasterAttributeTable", tableType="thematic")
    fields = [("Value", 0, 5), ("Class", 2, 2)] + ([("Red", 0, 6), ("Green", 0, 7), ("Blue", 0, 8), ("Alpha", 0, 9)]
                                                   if colours else [])
    for i, (name, kind, usage) in enumerate(fields):
        fd = ET.SubElement(rat, "FieldDefn", index=str(i))
        ET.SubElement(fd, "Name").text = name
        ET.SubElement(fd, "Type").text = str(kind)
        ET.SubElement(fd, "Usage").text = str(usage)
    for row, value in enumerate(sorted(cats)):
        r = ET.SubElement(rat, "Row", index=str(row))
        cells = [str(value), cats[value]] + ([str(c) for c in colours.get(value, (0, 0, 0, 0))] if colours else [])
        for cell in cells:
            ET.SubElement(r, "F").text = cell
    tmp = temp_path_beside(path, ".aux.xml")  # a name remove_partials knows
    try:
        tmp.write_text(ET.tostring(root, encoding="unicode") + "\n", encoding="utf-8")
        os.replace(tmp, pam_path(path))
    finally:
        tmp.unlink(missing_ok=True)


def write_cog(
    final: str | os.PathLike[str], data: np.ndarray, grid: Grid, meta: OutputMeta, *, folder: Path | None = None,
    before_rename: Callable[[], None] | None = None,
) -> None:
    """Write an in-memory (count, h, w) array as a COG at ``final`` (atomically; temporary files in ``folder``;
    ``before_rename()`` just before it is renamed into place, which may raise to leave ``final`` as it is)."""
    final = Path(final)
    if in_memory(grid, meta):
        with _memory_dataset(grid, meta) as dst:
            dst.write(data)
            build_stage_overviews(dst, meta)
            to_cog(dst, final, meta, folder=folder, before_rename=before_rename)
        return
    stage = temp_path_beside(final, ".stage.tif", folder)
    try:
        profile = _profile(meta, grid, compress=STAGE_COMPRESS, blocksize=meta.blocksize)
        with told_full(stage), rasterio.open(stage, "w", **profile) as dst:
            _apply_meta(dst, meta)
            dst.write(data)
            build_stage_overviews(dst, meta)
        to_cog(stage, final, meta, folder=folder, before_rename=before_rename)
    finally:
        stage.unlink(missing_ok=True)


def write_row_bands(
    final: str | os.PathLike[str],
    grid: Grid,
    meta: OutputMeta,
    bands: Iterable[tuple[int, Grid, np.ndarray] | tuple[int, Grid, np.ndarray, np.ndarray | None]],
    work: Path,
    *,
    progress: Callable[[int, int], None] | None = None,
    before_rename: Callable[[], None] | None = None,
) -> None:
    """Write a COG at ``final`` from bands of rows, holding one band in memory at a time.

    ``bands`` yields ``(first row, band grid, data)`` or ``(first row, band grid, data, valid)`` top to
    bottom: ``data`` (count, h, w) covers the band grid, a part of ``grid`` whose rows start at ``first
    row``; ``valid`` (h, w) is written as the mask when ``meta.write_mask``. Each band becomes a chunk in
    ``work`` as it comes (a generator may compute the next band only when asked); then the chunks are
    stitched into a tiled GeoTIFF in ``work``, which becomes the COG renamed onto ``final``.
    ``progress(0, 1)`` is called when stitching starts and ``progress(1, 1)`` once the COG is in place;
    ``before_rename()`` just before it is renamed into place (it may raise to leave ``final`` as it is).
    Every temporary file lives in ``work`` (the caller's locked work folder) and is removed at the end,
    whether the write succeeds or not.
    """
    work = Path(work)
    chunks: list[tuple[Path, int]] = []
    try:
        for row, sub, data, *valid in bands:
            path = work / f"rows_{row:08d}.tif"
            chunks.append((path, row))
            write_chunk(path, data, valid[0] if valid else None, sub, meta, output=grid)
        if progress is not None:
            progress(0, 1)
        assemble(chunks, grid, meta, Path(final), work, before_rename=before_rename)
        if progress is not None:
            progress(1, 1)
    finally:
        for path, _ in chunks:
            path.unlink(missing_ok=True)


def assemble(chunks: Iterable[tuple[Path, int]], grid: Grid, meta: OutputMeta, final: Path, work: Path, *,
             before_rename: Callable[[], None] | None = None) -> None:
    """Stitch row-band chunks (path, first row) into a tiled GeoTIFF and make it the COG at ``final`` (renamed
    into place, ``before_rename`` called just before): in memory where the output fits (:func:`in_memory`), else in
    ``work``, where the stitched stage is removed whatever happens. A Ctrl-C or SIGTERM while GDAL works stops
    the run before the rename (:func:`~geosr.io.outputs.stops_between_gdal_calls`)."""
    ordered = sorted(chunks, key=lambda c: c[1])
    with stops_between_gdal_calls() as act:
        def renaming() -> None:  # the last stop that can still leave the old output in place; signals go back
            act(True)
            if before_rename is not None:
                before_rename()

        if in_memory(grid, meta):
            with _memory_dataset(grid, meta) as dst:
                _copy_chunks(ordered, dst, meta, act)
                build_stage_overviews(dst, meta)
                act()
                to_cog(dst, final, meta, folder=work, before_rename=renaming)
            return
        stage = work / "stitched.tif"
        try:
            stitch(ordered, grid, meta, stage, act)
            to_cog(stage, final, meta, folder=work, before_rename=renaming)
        finally:
            stage.unlink(missing_ok=True)
