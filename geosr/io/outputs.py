"""Output paths: checks before any work, and atomic creation (a temp name beside the target, then rename)."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Iterator

from geosr.errors import OutputExistsError, OutputLocationError


def check_output_path(path: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Fail early, with one sentence, when ``path`` cannot be written or must not be replaced."""
    p = Path(path)
    folder = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise OutputLocationError(f"{p}: is a folder; give the path of the output file")
    if not folder.exists():
        raise OutputLocationError(f"{p}: the output folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise OutputLocationError(f"{p}: the output folder {folder} is not writable")
    if p.exists() and not overwrite:
        raise OutputExistsError(f"{p}: already exists (use --overwrite to replace it)")
    return p


def temp_path_beside(final: Path, suffix: str = ".tif") -> Path:
    """A unique hidden temporary name in the same folder as ``final`` (so the rename is atomic)."""
    return final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.partial{suffix}")


@contextlib.contextmanager
def atomic_output(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path; on success it is fsynced and renamed onto ``final``, on failure removed."""
    final = Path(final)
    tmp = temp_path_beside(final, final.suffix or ".tmp")
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        with contextlib.suppress(OSError):
            dir_fd = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
