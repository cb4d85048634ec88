"""The bundled sample scene: Landsat-5 TM over Taizhou, 2003 at 240 m (LR), 2000 at 30 m (reference),
the 2000-2003 change mask and the 2003 scene at 30 m (ground truth). Public domain imagery (USGS)."""

from __future__ import annotations

import errno
import filecmp
import os
import shutil
import tempfile
from pathlib import Path

from geosr.errors import names_too_long_are_input_errors
from geosr.permissions import new_file_mode

SAMPLE_DIR = Path(__file__).resolve().parent / "weights" / "sample"
SAMPLE_FILES = {
    "lr": "taizhou_2003_lr240m.tif",
    "ref": "taizhou_2000_ref30m.tif",
    "cd": "taizhou_change_2000_2003.tif",
    "truth": "taizhou_2003_truth30m.tif",
}
SAMPLE_SCALE = 8


def sample_paths() -> dict[str, Path]:
    """Paths of the bundled sample files inside the installed package."""
    return {k: SAMPLE_DIR / v for k, v in SAMPLE_FILES.items()}


@names_too_long_are_input_errors
def copy_sample(folder: str | Path = "geosr-sample", *, overwrite: bool = False) -> dict[str, Path]:
    """Copy the sample scene into ``folder`` (created if needed) and return the copies' paths. A copy already
    there, byte for byte, is left as it is (so running it again is harmless); anything else at one of those names
    (a file, a link) is refused unless ``overwrite``, every name checked before anything is written, and then
    replaced by a rename: a link at that name is replaced, never written through. (Standard library, geosr.config
    and geosr.io.paths only: this module is imported without the GIS stack.)"""
    from geosr.config import is_bool
    from geosr.errors import OptionError, OutputExistsError, OutputLocationError, OutputWriteError
    from geosr.io.paths import unwritable

    if not is_bool(overwrite):  # "no" would be true
        raise OptionError(f"overwrite {overwrite!r}: give True or False", param="overwrite")
    overwrite = bool(overwrite)
    if isinstance(folder, str) and not folder.strip():  # the working folder, as pathlib reads it (found in review)
        raise OptionError("folder is empty; give a folder's path", param="folder")
    if not isinstance(folder, (str, os.PathLike)):
        raise OptionError(f"folder {folder!r}: give the path of a folder", param="folder")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputLocationError(f"{folder}: is a file; give a folder to copy the sample scene into")
    if folder.is_symlink() and not folder.exists():  # mkdir would fail with "File exists" (exit 1)
        raise OutputLocationError(f"{folder}: is a link to {os.readlink(folder)}, which does not exist; give a folder "
                                  "to copy the sample scene into")
    todo = []
    for src in sample_paths().values():
        dst = folder / src.name
        if dst.is_file() and not dst.is_symlink() and filecmp.cmp(src, dst, shallow=False):
            continue
        if dst.is_symlink() or dst.exists():
            if dst.is_dir() and not dst.is_symlink():
                raise OutputLocationError(f"{dst}: is a folder; the sample's file of that name cannot go there")
            if not overwrite:
                raise OutputExistsError(f"{dst}: already exists (use `overwrite` to replace it)")
        todo.append((src, dst))
    problem = unwritable(folder) if todo else None
    if problem:
        raise OutputLocationError(f"{folder}: {problem}; give a folder to copy the sample scene into")
    folder.mkdir(parents=True, exist_ok=True)
    for src, dst in todo:
        fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".partial", dir=folder)
        os.close(fd)
        try:
            shutil.copyfile(src, tmp)
            os.chmod(tmp, new_file_mode())  # mkstemp's file is private (0600); a copy gets what any new file gets
            os.replace(tmp, dst)  # replaces a link itself, not what it points to
        except OSError as exc:  # a full disk, a quota: one sentence (exit 1), not an internal error
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO):
                raise
            raise OutputWriteError(f"{dst}: cannot be written: {os.strerror(exc.errno).lower()}") from exc
        finally:
            Path(tmp).unlink(missing_ok=True)
    return {key: folder / src.name for key, src in sample_paths().items()}
