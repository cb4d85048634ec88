"""Output paths: checks before any work, and atomic creation (a temp name beside the target, then rename)."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import stat
import threading
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from rasterio.errors import RasterioIOError

from geosr.errors import GeoSRError, OutputExistsError, OutputLocationError, OutputWriteError
from geosr.io.paths import (
    PROVENANCE_SUFFIX,
    gdal_sidecars,
    is_remote,
    is_subdataset,
    local_form,
    pam_path,
    refuse_undecodable,
    sidecar_paths,
    unwritable,
)

# The most the names geosr writes beside an output add to its name: a temporary copy (".NAME.1a2b3c4d.partial.tif",
# 22 more), the provenance sidecar's (".provenance.tif" for ".tif") in its temporary form, the work folder
SIBLING_MARGIN = 40
# The most the paths geosr writes in an output's work folder add to the output's path: ".geosr-work/" (12), a
# journal's "rows_00000_00001/" (17) and its temporary files (".job.json.1a2b3c4d.partial.json", 31), with room
PATH_MARGIN = 100


WORK_SUFFIX = ".geosr-work"  # an output's work folder: <output>.geosr-work (geosr.io.journal.work_dir_for)


_URL_AS_PATH = re.compile(r"^(https?|s3|gs|az|ftp|file):/+(?=[^/])", re.IGNORECASE)


VECTOR_ROLE = "area of interest"  # the inputs' role of a vector file (read by geosr.io.aoi, not GDAL's raster drivers)


def check_output_path(
    path: str | os.PathLike[str],
    *,
    overwrite: bool,
    inputs: Iterable[tuple[str, str | os.PathLike[str] | None]] = (),
    make_folder: bool = False,
    name_margin: int | None = SIBLING_MARGIN,
    written_as: str | None = None,
) -> Path:
    """Fail early, with one sentence, when ``path`` cannot be written or must not be replaced (``written_as``:
    what the run would write there, when it is not the output itself, e.g. "the output's provenance raster").

    ``inputs`` are (role, path) pairs of the run's inputs: an output that is (the same file as) one of them is
    refused even with ``overwrite``, and so is anything at ``path`` that is not a regular file (a FIFO, a
    device, a socket), which replacing would destroy. ``make_folder``: a missing output folder is fine where
    the caller will make it (:func:`make_output_folder`): its nearest existing parent must be a writable folder.
    ``name_margin``: the bytes the names written beside ``path`` add to its name (None: no length check, for a
    sidecar whose names the output's own margin covers).
    """
    from geosr.io.sources import gdal_files, joins_band_folder

    # a URL (also as a pathlib.Path made it: "http:/host/...", one slash gone) names no local folder to write in
    if is_remote(os.fspath(path)) or _URL_AS_PATH.match(os.fspath(path)):
        text = os.fspath(path)  # (a slash pathlib dropped is given back; file:/// was shown file://tmp; review)
        shown = re.sub(r"^([a-zA-Z]+):/(?=[^/])", lambda m: m[1] + (":///" if m[1].lower() == "file" else "://"),
                       text, count=1) if isinstance(path, Path) else text
        if text.lower().startswith("/vsi"):
            raise OutputLocationError(f"{text}: is a GDAL virtual path; outputs are written to local paths (GDAL's "
                                      "virtual file systems are read, not written, by geosr)")
        raise OutputLocationError(f"{shown}: is a URL; outputs are written to local paths (copy the result to its "
                                  "server afterwards)")
    refuse_undecodable(os.fspath(path), output=True)
    if is_subdataset(os.fspath(path)):  # (GPKG:x.gpkg:t was "the output folder GPKG:x does not exist"; review)
        raise OutputLocationError(f"{os.fspath(path)}: is a GDAL subdataset name; geosr writes Cloud-Optimized "
                                  "GeoTIFFs: give the output a .tif path")
    p = Path(path)
    # "." and "/" name no file (their empty name was an internal error), nor does a name ending in a slash ("out/",
    # written as a file "out"; a pathlib.Path drops the slash: the CLI's outputs come as text; found in review)
    text = os.fspath(path)
    if written_as and p.is_dir():  # a sidecar's name: the advice below (x.stac.json/out.tif) was for an output given
        # as a folder, not for a folder in the way of a file written beside it, nor a link to one (found in review)
        raise OutputLocationError(f"{p}: is {'a link to a' if p.is_symlink() else 'a'} folder, {written_as}; move it "
                                  "away first")
    if not p.name or p.is_dir() or str(text).endswith(("/", os.sep)):
        shown = text or "''"
        if text and Path(text.rstrip("/" + os.sep)).is_file():  # (its advice, x.tif/out.tif, could not work; review)
            raise OutputLocationError(f"{shown}: a trailing slash names a folder, and {text.rstrip('/' + os.sep)} is a "
                                      "file; give the output file's path")
        raise OutputLocationError(f"{shown}: {'is' if p.is_dir() else 'names'} a folder; give the path of the output "
                                  "file" + (f" (e.g. {p / 'out.tif'})" if text else ""))
    folder = p.parent if str(p.parent) else Path(".")
    work = p.with_name(p.name + WORK_SUFFIX)  # the run's work folder, which it empties and removes
    named = f"{p} ({written_as})" if written_as else str(p)
    for role, src in inputs:
        if src is None:
            continue
        if same_file(p, src):
            raise OutputLocationError(f"{named}: is the {role} of this run; write the output to another path")
        if not os.path.lexists(p) and joins_band_folder(os.fspath(src), p):  # (a band already: the input's file)
            if re.search(r"_(QA_PIXEL|SCL_20m)\.", p.name, re.IGNORECASE):  # (an R20m beside R10m too; review)
                raise OutputLocationError(f"{named}: is named as a cloud mask where {src}, the folder of band files "
                                          f"the {role} of this run is read from, finds its cloud mask (with two, "
                                          "none is used); write the output to another path")
            raise OutputLocationError(f"{named}: lies in {src}, the folder of band files the {role} of this run is "
                                      "read from, where it would be read as one of its bands; write the output to "
                                      "another path")
        # a VRT's sources, the archive of a /vsizip/ path; none for a vector file (an area of interest), which GDAL
        # does not read as a raster: a copy of an output's STAC item as the area refused writing that output, as if
        # its asset were read
        behind = [] if role == VECTOR_ROLE else gdal_files(os.fspath(src))
        for f in behind:
            if same_file(p, f):
                raise OutputLocationError(f"{named}: is read by the {role} of this run ({src}); write the output to "
                                          "another path")
        for read in (os.fspath(src), *behind):
            if not is_remote(read) and not work.is_symlink() and _inside(read, work):  # (a link: refused below)
                raise OutputLocationError(f"{read}: the {role} of this run lies in {work}, the output's work folder, "
                                          "which geosr clears; move it, or write the output to another path")
            if is_remote(read):
                continue
            # the files the run removes beside the output as it puts it in place (an earlier file's metadata,
            # overviews, mask) and a killed run's temporary files, which a run clears: an input there was deleted
            for kind, side in gdal_sidecars(p).items():
                if side.exists() and not side.is_symlink() and same_file(side, read):  # (a link goes, not its file)
                    raise OutputLocationError(f"{read}: the {role} of this run is where GDAL keeps the {kind} of "
                                              f"{named}, which the run replaces; write the output to another path")
            if _partial_name(p).match(Path(read).name) and same_file(Path(read).parent, folder):
                raise OutputLocationError(f"{read}: the {role} of this run has the name of a temporary file of "
                                          f"{named}, which the run clears; rename it")
    if not folder.exists() and make_folder:
        return _check_folder_to_make(p, folder, name_margin)
    if not folder.exists():
        raise OutputLocationError(f"{p}: the output folder {folder} does not exist")
    if not folder.is_dir():
        raise OutputLocationError(f"{p}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputLocationError(f"{p}: the output folder {folder} is not writable")
    pseudo = _pseudo_file_system(folder)
    if pseudo:
        raise OutputLocationError(f"{p}: the output folder {folder} is on the kernel's {pseudo} file system, where "
                                  "no file can be made; write the output elsewhere")
    if name_margin is not None:
        _check_name_length(p, folder, name_margin)
    if work.is_symlink() or (work.exists() and not work.is_dir()):
        what = "a link" if work.is_symlink() else "not a folder"
        raise OutputLocationError(f"{work}: is {what}; geosr keeps this run's work in a folder of that name and "
                                  "clears it, so move it away first")
    pam = pam_path(p)  # GDAL's metadata file of the output, which the run replaces
    if pam.is_symlink() or pam.is_dir():
        what = "a link" if pam.is_symlink() else "a folder"
        raise OutputLocationError(f"{pam}: is {what}; geosr writes the output's class names and statistics in a "
                                  "file of that name, so move it away first")
    for kind, side in gdal_sidecars(p).items():  # which the run removes as it puts the output in place
        if side != pam and side.is_dir() and not side.is_symlink():
            raise OutputLocationError(f"{side}: is a folder, where GDAL looks for the {kind} of {p}; move it away "
                                      "first")
    if not overwrite and p.suffix.lower() != ".json" and not os.path.lexists(p):
        # an output's metadata, overviews or mask beside no output: someone's, or stale; GDAL would read it as the
        # new output's
        for kind, side in gdal_sidecars(p).items():
            if os.path.lexists(side):
                raise OutputExistsError(f"{side}: already exists, where GDAL keeps the {kind} of {p}, which the run "
                                        "writes (use `overwrite` to replace it)")
    try:
        st = os.stat(p)
    except FileNotFoundError:
        if os.path.islink(p) and not overwrite:  # a link to what is not there now (an unmounted share): not absent
            raise OutputExistsError(f"{p}: already exists, as a link to {os.readlink(p)}, which cannot be reached "
                                    "(use `overwrite` to replace the link)") from None
        return p
    except OSError as exc:
        raise OutputLocationError(f"{p}: cannot be checked ({exc.strerror})") from exc
    if not stat.S_ISREG(st.st_mode):
        raise OutputLocationError(f"{p}: is not a regular file ({_kind(st.st_mode)}); geosr replaces only files")
    if not overwrite:
        raise OutputExistsError(f"{p}: already exists (use `overwrite` to replace it)")
    return p


# the names of an output whose sidecars are another's of the same stem (x.tif, x.TIF, x.tiff: x.provenance.tif)
_SHARING_SUFFIXES = (".tif", ".TIF", ".Tif", ".tiff", ".TIFF", ".Tiff", ".cog", ".COG", "")


def still_free(final: Path, *, overwrite: bool, also: Iterable[Path] = (), then: str = "") -> Callable[[], None]:
    """A check for just before ``final`` is renamed into place: without ``overwrite``, refuse (OutputExistsError)
    when ``final``, GDAL's files beside it or ``also`` appeared while the run worked (another run wrote them; its
    name was free when this one began), so that the file is left as it is. ``then``: said after the advice."""
    def check() -> None:
        if overwrite:
            return
        for path in (final, *gdal_sidecars(final).values(), *also):
            if os.path.lexists(path):
                raise OutputExistsError(f"{path}: appeared while this run worked and is left as it is (use "
                                        f"`overwrite` to replace it{then})")

    return check


def earlier_sidecars(out: Path, *, overwrite: bool) -> list[Path]:
    """geosr's sidecars beside ``out`` that describe an earlier output at its name (an upscale's STAC item naming
    it as its data, the provenance raster of its stem that no other output shares), which a map or change mask
    written there would leave describing a raster that is gone (found in review). Refused (OutputExistsError)
    unless ``overwrite``; then the caller removes them (:func:`remove_sidecars`) once its output is in place."""
    import rasterio

    sides = sidecar_paths(out)
    item, provenance = sides["STAC item"], sides["provenance raster"]
    found = [item] if _item_data(item) == out.name else []
    if provenance.is_file() and sidecars_shared(out, item) is None:
        try:
            with rasterio.open(provenance) as ds:
                if "GEOSR_PROVENANCE_CLASSES" in ds.tags():
                    found.append(provenance)
        except RasterioIOError:  # not a raster: not geosr's
            pass
    if found and not overwrite:
        raise OutputExistsError(f"{found[0]}: describes an earlier output at {out.name}, which this one would leave "
                                "describing a raster that is gone (use `overwrite` to replace the output and remove "
                                "it)")
    return found


def remove_sidecars(paths: Iterable[Path]) -> None:
    """Remove ``paths`` (:func:`earlier_sidecars`) and GDAL's files beside each."""
    for path in paths:
        for side in (path, *gdal_sidecars(path).values()):
            side.unlink(missing_ok=True)


def _item_data(item: Path) -> str | None:
    """The href of the data asset of the STAC item at ``item``, decoded (written percent-encoded: a#1.tif as
    a%231.tif); None where there is no item, or not one geosr wrote."""
    import json
    from urllib.parse import unquote

    try:
        href = json.loads(item.read_text())["assets"]["data"]["href"] if item.is_file() else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return unquote(href) if isinstance(href, str) else None


def sidecars_shared(out: Path, item: Path) -> Path | None:
    """Another output whose sidecars are ``out``'s (they are named by the stem: ``x.tif``, ``x.TIF``, ``x.cog`` and
    ``x`` all have ``x.provenance.tif``): one being written (its work folder is there), or the one the STAC item
    ``item`` there names as its data, whatever its suffix; None otherwise. Their runs replaced each other's
    sidecars, and the output lock, one per output, did not keep two such runs apart. Only those names are looked at
    (a batch checks every job's output: listing its folder each time made planning 5x slower in a folder of 20 000
    files)."""
    owner = _item_data(item)
    names = {out.stem + suffix for suffix in _SHARING_SUFFIXES}
    if owner is not None and Path(owner).stem == out.stem:  # any name (a.cog, b): its sidecars are these too
        names.add(Path(owner).name)
    for name in sorted(names - {out.name}):
        other = out.with_name(name)
        itself = os.path.lexists(other) and same_file(other, out)  # (a case-insensitive file system)
        if not itself and (os.path.isdir(other.with_name(name + WORK_SUFFIX))
                           or (name == owner and os.path.lexists(other))):
            return other
    return None


def _inside(path: str, folder: Path) -> bool:
    """Whether ``path`` lies inside ``folder`` (through links and ``..``)."""
    inner, outer = os.path.realpath(path), os.path.realpath(folder)
    return inner.startswith(outer.rstrip(os.sep) + os.sep)


# Suffixes of other formats: a COG written under one of these names would be opened as what it is not.
OTHER_FORMATS = (".png", ".jpg", ".jpeg", ".jp2", ".j2k", ".webp", ".gif", ".bmp", ".vrt", ".nc", ".hdf", ".h5",
                 ".img", ".zarr", ".json", ".geojson", ".gpkg", ".shp", ".xml", ".txt", ".csv",
                 ".ovr", ".msk")  # (GDAL reads these beside a raster as its overviews, its mask)
# archives and compressed files: a plain TIFF under such a name failed whatever unpacks by suffix (/vsigzip/, gunzip;
# found in review); checked after the inputs, as a product's zip given as the output is refused as an input first
ARCHIVES = (".gz", ".zip", ".bz2", ".xz", ".zst", ".tar", ".tgz", ".7z")


# kernels' pseudo file systems: root passes every access check there and still cannot make a file
PSEUDO_FILE_SYSTEMS = frozenset({"proc", "sysfs", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs", "pstore",
                                 "configfs", "bpf", "devpts", "mqueue", "hugetlbfs", "efivarfs", "binfmt_misc"})


def _pseudo_file_system(folder: Path) -> str | None:
    """The type of the pseudo file system ``folder`` lies on (:data:`PSEUDO_FILE_SYSTEMS`, by psutil's mount
    table); None for any other."""
    import psutil

    real = os.path.realpath(folder)
    try:
        mounts = [m for m in psutil.disk_partitions(all=True)
                  if real == m.mountpoint or real.startswith(m.mountpoint.rstrip(os.sep) + os.sep)]
    except OSError:
        return None
    kind = max(mounts, key=lambda m: len(m.mountpoint)).fstype if mounts else None
    return kind if kind in PSEUDO_FILE_SYSTEMS else None


def _check_folder_to_make(p: Path, folder: Path, name_margin: int | None) -> Path:
    """``p`` in a folder that does not exist yet: where its nearest existing parent lets it be made."""
    problem = unwritable(folder.absolute())
    if problem:
        raise OutputLocationError(f"{p}: the output folder {folder} cannot be made: {problem}")
    if name_margin is not None:
        existing = next(f for f in folder.absolute().parents if f.exists())  # the file system it will be made on
        _check_name_length(p, existing, name_margin)
    return p


def _check_name_length(p: Path, folder: Path, margin: int) -> None:
    """Refuse a name that leaves no room, on ``folder``'s file system, for the names geosr writes beside it, and a
    path that leaves none for those it writes in its work folder (a 4,040-byte folder: the run computed a row, then
    failed naming an internal file, its work folder left behind; found in review)."""
    try:
        most = os.pathconf(folder, "PC_PATH_MAX")
    except (OSError, ValueError):
        most = 4096
    size = len(os.fsencode(os.fspath(p)))  # as the run passes it (relative to a deep working folder: as given)
    if size + PATH_MARGIN >= most:
        raise OutputLocationError(f"{p}: the output's path is too long ({size} bytes): files geosr writes in its work "
                                  f"folder take up to {PATH_MARGIN} more, and this system allows {most - 1}; give "
                                  "a shorter path")
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    if len(os.fsencode(p.name)) + margin > limit:
        raise OutputLocationError(f"{p}: the file name is too long ({len(os.fsencode(p.name))} bytes): files geosr "
                                  f"writes beside it take up to {margin} more, and this file system allows {limit}; "
                                  "give a shorter name")


def make_output_folder(path: str | os.PathLike[str]) -> None:
    """Make the folder of the output ``path`` (and its parents) where it is missing."""
    folder = Path(path).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputLocationError(f"{path}: the output folder {folder} cannot be made ({exc.strerror})") from exc


def check_raster_output_path(
    path: str | os.PathLike[str],
    *,
    overwrite: bool,
    inputs: Iterable[tuple[str, str | os.PathLike[str] | None]] = (),
    make_folder: bool = False,
) -> Path:
    """:func:`check_output_path` for a COG output, whose name must not be another format's (``out.png``)."""
    check_raster_name(path, archives=False)
    checked = check_output_path(path, overwrite=overwrite, inputs=inputs, make_folder=make_folder)
    check_raster_name(path)
    return checked


def check_raster_name(path: str | os.PathLike[str], *, archives: bool = True) -> None:
    """Refuse a COG output named as another format (``out.png``; a dry run checks this much too), or (``archives``)
    as an archive or a compressed file (``out.zip``, ``out.tif.gz``)."""
    suffix = Path(path).suffix.lower()
    if Path(path).name.lower().endswith(PROVENANCE_SUFFIX):  # an upscale's sidecar: its run would replace this
        raise OutputLocationError(f"{path}: is the name geosr gives the provenance raster of "
                                  f"{Path(path).name[:-len(PROVENANCE_SUFFIX)]}.tif; give the output another name")
    if suffix in OTHER_FORMATS or archives and suffix in ARCHIVES:
        raise OutputLocationError(f"{path}: geosr writes Cloud-Optimized GeoTIFFs; give the output a .tif name, "
                                  f"not {suffix}")


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two local paths name one file (through links, ``..`` or hard links); never for remote paths."""
    a, b = local_form(os.fspath(a)), local_form(os.fspath(b))  # (file:///a.tif is /a.tif)
    if is_remote(str(a)) or is_remote(str(b)):  # read through GDAL's virtual file systems: never a local output
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare where they would be
        return os.path.realpath(a) == os.path.realpath(b)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"


def temp_path_beside(final: Path, suffix: str = ".tif", folder: Path | None = None) -> Path:
    """A unique hidden temporary name in ``folder`` (default: beside ``final``; same file system either way,
    so the rename is atomic)."""
    return (folder or final.parent) / f".{final.name}.{uuid.uuid4().hex[:8]}.partial{suffix}"


def remove_partials(final: Path) -> list[Path]:
    """Remove what a killed writer of ``final`` left beside it: hidden ``.partial`` files and GDAL's
    ``.ovr.tmp`` overview files, and a finished run's work folder set aside (:func:`remove_work_dir`). Call only
    while holding ``final``'s job lock."""
    gone = []
    own = _partial_name(final)
    for p in final.parent.glob(f".{glob_escape(final.name)}.*.partial*"):
        if not own.match(p.name):
            continue
        with contextlib.suppress(OSError):
            p.unlink()
            gone.append(p)
    aside = re.compile(re.escape(f".{final.name}{WORK_SUFFIX}.") + r"[0-9a-f]{8}\.removing")
    for p in final.parent.glob(f".{glob_escape(final.name)}{WORK_SUFFIX}.*.removing"):
        if aside.fullmatch(p.name):
            _remove_tree(p)
            gone.append(p)
    return gone


def remove_work_dir(work: Path) -> None:
    """Remove a finished job's work folder ``work``: renamed aside (a hidden name) first, then emptied. Removed in
    place, a kill part way left a work folder of a finished output without its rows, which each of a plain run,
    ``resume`` and ``resume`` with ``overwrite`` sent to another (found in review); set aside, it is no work folder
    any more, and the next run that writes the output removes it (:func:`remove_partials`)."""
    aside = work.with_name(f".{work.name}.{uuid.uuid4().hex[:8]}.removing")
    try:
        os.rename(work, aside)
    except FileNotFoundError:
        return
    except OSError:  # (a folder that cannot be renamed: removed where it is, as before)
        aside = work
    _remove_tree(aside)


def _remove_tree(path: Path) -> None:
    """Remove the folder ``path``, or the link at it (never what the link points to)."""
    if path.is_symlink():
        with contextlib.suppress(OSError):
            path.unlink()
        return
    shutil.rmtree(path, ignore_errors=True)


def _partial_name(final: Path) -> re.Pattern[str]:
    """:func:`temp_path_beside`'s names for ``final`` (and GDAL's files beside them)."""
    return re.compile(re.escape(f".{final.name}.") + r"[0-9a-f]{8}\.partial")


def glob_escape(name: str) -> str:
    """``name`` with glob's special characters taken literally."""
    return re.sub(r"([*?\[])", r"[\1]", name)


@contextlib.contextmanager
def atomic_output(final: str | os.PathLike[str], *, folder: Path | None = None,
                  before_rename: Callable[[], None] | None = None) -> Iterator[Path]:
    """Yield a temporary path (in ``folder``, default beside ``final``); on success it is fsynced and renamed
    onto ``final`` (``before_rename`` called just before), on failure (or an interrupt) removed."""
    final = Path(final)
    tmp = temp_path_beside(final, final.suffix or ".tmp", folder)
    try:
        with told_full(tmp):  # (checked before the partial file is removed: it is what filled the disk)
            yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        if before_rename is not None:
            before_rename()
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
        for extra in tmp.parent.glob(glob_escape(tmp.name) + ".*"):  # GDAL's side files (.ovr.tmp, .aux.xml)
            with contextlib.suppress(OSError):
                extra.unlink()


_STOPS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def completing() -> Iterator[Callable[[], None]]:
    """Yield ``hold``: called when an output is about to be renamed into place, it makes SIGINT and SIGTERM wait
    until the block ends, so that the steps that complete a job once its output is in place (sidecars, removing the
    work folder) are not cut off, leaving a finished output beside a work folder that ``resume`` cannot continue.
    A signal that waited is raised again as it came once the block has ended (the job complete and consistent;
    a caller looping over jobs stops as asked); a second one acts at once. Outside the main thread (where Python
    takes no signal handlers) ``hold`` does nothing. Python's handlers, not the thread's signal mask: a process's
    signal goes to any of its threads (GDAL's, torch's) that does not block it."""
    waiting: list[int] = []
    previous: dict[int, Any] = {}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        previous.clear()

    def record(signum: int, frame: Any) -> None:
        if waiting:  # asked twice: now
            restore()
            signal.raise_signal(signum)
            return
        waiting.append(signum)

    def hold() -> None:
        if previous or threading.current_thread() is not threading.main_thread():
            return
        for sig in _STOPS:
            previous[sig] = signal.signal(sig, record)

    try:
        yield hold
    finally:
        restore()
        for sig in dict.fromkeys(waiting):
            try:
                signal.raise_signal(sig)
            except BaseException as exc:  # the handler's KeyboardInterrupt (or SIGTERM's): say the job is whole
                exc.geosr_completed = True  # type: ignore[attr-defined]
                raise


@contextlib.contextmanager
def writing(out: Path, *, journal: bool = True) -> Iterator[None]:
    """Turn the machine's write failures (a full disk, a quota, permissions) into one sentence naming ``out``
    (``journal``: a run whose journal is kept for `resume`, upscale's)."""
    try:
        yield
    except GeoSRError:
        raise
    except (OSError, RasterioIOError) as exc:
        if not Path(out).absolute().parent.is_dir():  # (an internal error naming a file of its work; review)
            raise OutputWriteError(f"{out}: cannot be written: its folder {Path(out).parent} was removed while the "
                                   "run worked") from exc
        reason = os_reason(exc)
        if reason is None:
            raise
        kept = "; the journal is kept for `resume`" if journal else ""
        raise OutputWriteError(f"{out}: cannot be written: {reason}{kept}") from exc


# free bytes under which a folder is full: GDAL's failed write then had no room (the COG driver gave up on a full
# disk with 4.6 MB left free: what it wrote last was larger, and removed)
FULL_BYTES = 64 << 20


@contextlib.contextmanager
def told_full(path: Path) -> Iterator[None]:
    """A GDAL write of ``path`` that fails ("Write failed", or another of GDAL's errors: libtiff printed why on
    stderr, GDAL kept not that) while its folder has little free space left (:data:`FULL_BYTES`) is the full disk
    it is: an OSError ENOSPC, which :func:`writing` and :func:`os_reason` tell as such (else "internal error")."""
    try:
        yield
    except Exception as exc:  # rasterio's: a RasterioIOError, or GDAL's own error class (an OSError says its reason)
        # (the COG driver's copy onto a full disk raised CPLE_AppDefinedError "TIFFRewriteDirectory:Error fetching
        # directory count": "internal error", exit 1; found in review)
        # (and a bare SystemError, "Unknown GDAL Error", which rasterio's COG copy raised on a full disk; review)
        gdal = type(exc).__module__.startswith("rasterio") or type(exc) is SystemError
        if gdal and os_reason(exc) in (None, _REFUSED) and full_disk(path.parent):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) from exc
        raise


def full_disk(folder: Path) -> bool:
    """Whether ``folder``'s file system has less than FULL_BYTES free (False when that cannot be told)."""
    try:
        return shutil.disk_usage(folder).free < FULL_BYTES
    except OSError:
        return False


def os_reason(exc: BaseException) -> str | None:
    """The machine's reason behind ``exc`` (also when GDAL wrapped it), or None for anything else."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.EXDEV:  # a mount point inside the output's folder
            return (f"its work folder ({seen.filename}) is on another file system than the output's folder "
                    "(a mount point there?), so the finished file cannot be renamed into place")
        if isinstance(seen, OSError) and seen.errno in _WRITE_ERRNOS:
            where = f" ({seen.filename})" if seen.filename else ""
            return f"{os.strerror(seen.errno).lower()}{where}"
        text = str(seen).lower()
        for needle, reason in _GDAL_REASONS:
            if needle in text:
                return reason
        seen = seen.__cause__ or seen.__context__
    return None


_REFUSED = "the file system refused the write (a full disk, a quota or a file size limit)"
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO, errno.EFBIG)
_GDAL_REASONS = (  # GDAL's own words for the same conditions, when it reports them as a RasterioIOError
    ("no space left on device", "no space left on device"),
    ("free disk space available is", "not enough free disk space"),
    ("disk full", "no space left on device"),
    ("permission denied", "permission denied"),
    ("read-only file system", "read-only file system"),
    ("file too large", "file too large (a file size limit)"),
    ("quota exceeded", "disk quota exceeded"),
    # libtiff's, when the file system refused a write (its errno lost: a quota, a file size limit, a full disk;
    # told_full calls it a full disk where little space is left)
    ("write error at scanline", _REFUSED),
    ("tiffappendtostrip", _REFUSED),
)


@contextlib.contextmanager
def stops_between_gdal_calls() -> Iterator[Callable[..., None]]:
    """Yield ``act``: inside the block SIGINT and SIGTERM are recorded, not raised where they come, and ``act``
    raises one that came (by the handler that was there before, which it puts back); call it between GDAL calls.
    ``act(True)`` also ends the recording (before another block takes the signals, e.g. :func:`completing`'s
    ``hold``); the block's end acts too. Why: a handler that runs while GDAL is in a call runs inside rasterio's
    log callback, which swallows its exception, and GDAL carries on: a Ctrl-C while overviews were built was
    ignored and the output written, exit 0. Outside the main thread (no signal handlers there) it records nothing."""
    waiting: list[int] = []
    previous: dict[int, Any] = {}

    def record(signum: int, frame: Any) -> None:
        waiting.append(signum)

    def act() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        previous.clear()
        came, waiting[:] = list(dict.fromkeys(waiting)), []
        for sig in came:
            signal.raise_signal(sig)

    if threading.current_thread() is threading.main_thread():
        for sig in _STOPS:
            previous[sig] = signal.signal(sig, record)
    try:
        yield lambda done=False: act() if (waiting or done) else None
    finally:
        act()
