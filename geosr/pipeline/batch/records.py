"""The record beside each finished output: ``<out>.geosr.json``.

It holds the job's fingerprint (inputs with size, mtime and a digest of sampled content, every option, geosr's
version) and the output's size, mtime and SHA-256. It is written after the output is in place and before the work
folder is removed, so a task that finds it knows the job is done, and a later batch can tell an up-to-date output
from one made from other inputs or options, or changed since.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from geosr.pipeline.batch.results import utc_now

RECORD_SUFFIX = ".geosr.json"


def record_path(output: str | os.PathLike[str]) -> Path:
    out = Path(output)
    return out.with_name(out.name + RECORD_SUFFIX)


def read_record(output: str | os.PathLike[str]) -> dict | None:
    try:
        rec = json.loads(record_path(output).read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def output_matches(output: Path, record: dict) -> bool:
    """The output is the file the record describes (same size and mtime, else same SHA-256)."""
    return _same(output, record.get("output") or {})


def sidecars_changed(output: Path, record: dict) -> list[str]:
    """The sidecars of ``output`` its record lists (its STAC item, a provenance raster) that are gone or another
    file now: a job whose output is up to date is not, without them (they were never written again; found in
    review). A record written before they were listed lists none."""
    from geosr.io.paths import sidecar_paths

    listed = record.get("sidecars") or {}
    return [what for what, path in sidecar_paths(output).items() if what in listed and not _same(path, listed[what])]


def _same(path: Path, kept: dict) -> bool:
    """Whether ``path`` is the file ``kept`` describes: same size and modification time, else same SHA-256 (a copy,
    a restore from a backup: found in review, where the size and time alone ran every job again)."""
    stamp = file_stamp(path)
    if stamp is None or stamp[0] != kept.get("size"):
        return False
    return stamp[1] == kept.get("mtime_ns") or sha256(path) == kept.get("sha256")


def file_stamp(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """A file's (size, modification time in ns); None when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def found_at(output: str | os.PathLike[str]) -> tuple[tuple[str, int, int], ...]:
    """The files at ``output`` and its sidecars' paths, GDAL's files beside the rasters among them too (which the
    job removes as it puts its output in place): (path, size, modification time in ns) each, as the plan lets a job
    replace them and the job finds them then (geosr.pipeline.batch.tasks)."""
    from geosr.io.paths import gdal_sidecars, sidecar_paths

    sides = sidecar_paths(Path(output))
    rasters = (Path(output), sides["provenance raster"])
    paths = [*map(str, rasters), str(sides["STAC item"]),
             *(str(side) for raster in rasters for side in gdal_sidecars(raster).values())]
    return tuple((p, *stamp) for p in paths if (stamp := file_stamp(p)) is not None)


def appeared(output: str | os.PathLike[str], replaces: tuple[tuple[str, int, int], ...]) -> list[str]:
    """The files at ``output``'s and its sidecars' paths (:func:`found_at`) that are not the very ones the plan
    found there (``replaces``: same size and time): made or changed since."""
    return [path for path, *stamp in found_at(output) if (path, *stamp) not in replaces]


def sha256(path: Path) -> str:
    """The SHA-256 of the file at ``path`` (hex; the models' checksums carry a ``sha256:`` prefix)."""
    from geosr.models.registry import file_sha256  # not at import: reading a manifest loads no torch

    return file_sha256(path).removeprefix("sha256:")


def comparable(fingerprint: dict) -> dict:
    """A job fingerprint without what does not change the output's pixels (whether it may replace a file) and how
    the process ran it (device, batch size, threads: the last bit of a sum)."""
    fp = json.loads(json.dumps(fingerprint))
    fp.pop("runtime", None)
    output = (fp.get("options") or {}).get("output")
    if isinstance(output, dict):
        output.pop("overwrite", None)
    return fp


def write_record(output: Path, fingerprint: dict, *, job_id: str, run_id: str, started: str | None = None,
                 seconds: float | None = None) -> None:
    """Write the record of ``output`` (in place, finished) made by job ``job_id`` of batch run ``run_id``, which
    started at ``started`` and computed for ``seconds`` (for the results line of a batch stopped meanwhile)."""
    from geosr.io.outputs import atomic_output
    from geosr.io.paths import sidecar_paths

    st = output.stat()
    sidecars = {}
    for what, path in sidecar_paths(output).items():
        stamp = file_stamp(path)
        if stamp is not None:
            sidecars[what] = dict(size=stamp[0], mtime_ns=stamp[1], sha256=sha256(path))
    record = dict(
        geosr_batch=1, job_id=job_id, run_id=run_id, written=utc_now(), fingerprint=comparable(fingerprint),
        output=dict(size=st.st_size, mtime_ns=st.st_mtime_ns, sha256=sha256(output)),
        sidecars=sidecars,
        started=started, seconds=None if seconds is None else round(seconds, 3),
    )
    with atomic_output(record_path(output)) as tmp:
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
