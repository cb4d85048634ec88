"""geosr's exceptions: one root, one class per condition, each also the matching builtin.

Every :class:`InputError` is the user's to fix (the CLI exits 2 and prints the message, which is one
sentence naming the file and the problem); anything else is geosr's fault (exit 1).
"""

from __future__ import annotations

import errno
import functools
from typing import Any, Callable, TypeVar


class GeoSRError(Exception):
    """Root of every error geosr raises on purpose.

    ``param``: the Python keyword of the API that the message is about (``"aoi"``, ``"scale"``), or None. Such a
    message begins with that name (``aoi '1,2,x,4': expected ...``); the CLI puts its flag there (``--aoi``).
    It lives in the instance's ``__dict__``, which :meth:`BaseException.__reduce__` carries, so a pickled error
    (``geosr batch`` sends them between processes) keeps its message, its class and its ``param``.
    """

    def __init__(self, *args: object, param: str | None = None) -> None:
        super().__init__(*args)
        self.param = param


class InputError(GeoSRError, ValueError):
    """Bad input: a file, an option or a combination of them that geosr cannot work with."""


class InputNotFoundError(InputError, FileNotFoundError):
    """An input path does not exist."""


class NotARasterError(InputError):
    """A file exists but GDAL cannot open it as a raster (or it is corrupt)."""


class NoCRSError(InputError):
    """A raster has no coordinate reference system or no geotransform."""


class NoOverlapError(InputError):
    """Two inputs (or an input and the area of interest) do not overlap."""


class BandError(InputError):
    """Band selection or band count that the inputs or the model cannot take."""


class ScaleError(InputError):
    """A scale factor that is not supported (or not supported by the chosen model)."""


class ClassTableError(InputError):
    """A class raster holds values its class table does not declare, or the table itself is bad."""


class VectorFileError(InputError):
    """A file that cannot be read as OSM data (XML, PBF) or as a vector file."""


class OutputExistsError(InputError, FileExistsError):
    """The output exists and --overwrite was not given."""


class OutputLocationError(InputError):
    """The output folder is missing or not writable."""


class OptionError(InputError):
    """An option value, or a combination of options, that cannot work."""


class ModelFileError(InputError):
    """A model file that is refused: a pickle, a shape mismatch, a missing or broken spec."""


class ResumeError(InputError):
    """--resume was asked for but the journal is missing or belongs to another job."""


class OutputWriteError(GeoSRError, OSError):
    """The output could not be written for a reason of the machine's (a full disk, a quota, no permission)."""


class NetworkError(GeoSRError, ConnectionError):
    """A network source (Overpass, a model hub) could not be reached."""


class TrainingDivergedError(GeoSRError, FloatingPointError):
    """A training run's loss stopped being finite (diverged): stopped before it saves such weights."""


class NameTooLongError(InputError, OSError):
    """A path the file system refuses as too long (ENAMETOOLONG)."""


_F = TypeVar("_F", bound=Callable[..., Any])


def name_too_long_message(exc: OSError) -> str:
    """One sentence for the file system's ENAMETOOLONG, naming the path (shortened)."""
    name = str(exc.filename or "")
    shown = name if len(name) <= 80 else f"{name[:40]}...{name[-20:]} ({len(name)} characters)"
    return f"{shown}: the file name is too long for this file system"


def names_too_long_are_input_errors(fn: _F) -> _F:
    """``fn`` (a function of the Python API) with the file system's "file name too long" (a raw OSError from wherever
    the path is first used) raised as a :class:`NameTooLongError`, an InputError as its docstring promises."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG or isinstance(exc, GeoSRError):
                raise
            raise NameTooLongError(name_too_long_message(exc)) from exc

    return wrapper  # type: ignore[return-value]


# what the GPU running out of memory reads as: torch's OutOfMemoryError, or the RuntimeError the CUDA driver, cuBLAS
# or cuDNN raise for it ("CUDA error: out of memory", "CUBLAS_STATUS_ALLOC_FAILED"; found in review)
_GPU_MEMORY = ("CUDA error: out of memory", "CUDA out of memory", "_STATUS_ALLOC_FAILED", "HIP out of memory")


def gpu_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is the GPU running out of memory (told by name and text: torch need not be imported)."""
    return type(exc).__name__ == "OutOfMemoryError" or (
        isinstance(exc, RuntimeError) and any(text in str(exc) for text in _GPU_MEMORY))


# One sentence for it, in the library's words (a CLI shows flags), where torch's is a page of allocator statistics
GPU_MEMORY_ADVICE = ("give a smaller `window` (or `batch_size`, windows per model call of a diffusion model), or "
                     "`device` cpu")
GPU_OUT_OF_MEMORY = f"the GPU ran out of memory; {GPU_MEMORY_ADVICE}"
