"""Planning one upscale job: every input and option checked, the model loaded, nothing written yet."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import time
import uuid
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import psutil
import torch
from rasterio.windows import Window

from geosr._version import __version__
from geosr.conditioning.change_detection import DETECTOR_VERSION, refine_factor
from geosr.conditioning.changes import ChangeClassTable, load_change_classes
from geosr.config import OutputConfig, SamplerConfig, TilingConfig, to_json
from geosr.errors import (
    BandError,
    ClassTableError,
    InputError,
    InputNotFoundError,
    OptionError,
    OutputExistsError,
    OutputLocationError,
    ScaleError,
)
from geosr.io.aoi import aoi_window
from geosr.io.journal import finished_journal, journal_of, staged_mb, work_dir_for
from geosr.io.lock import LOCK_NAME, JobLock
from geosr.io.outputs import (
    VECTOR_ROLE,
    check_output_path,
    check_raster_name,
    check_raster_output_path,
    sidecars_shared,
)
from geosr.io.paths import (
    curl_url,
    is_file_list,
    recorded_name,
    recorded_options,
    served_identity,
    sidecar_paths,
    subdataset_container,
    subdataset_file,
    unsigned,
    vector_parts,
)
from geosr.io.rasters import REMOTE, RasterInfo, band_count, band_roles, inspect_raster, names_rgb, parse_bands
from geosr.io.sources import composite, gdal_files, is_composite, member_inputs, remote_sources, source_note
from geosr.io.writer import GDAL_CACHE_MB, OutputMeta, assembled_mb, in_memory, staged_rows_mb, written_mb
from geosr.models.consistency import LRConsistent
from geosr.models.device import resolve_device
from geosr.models.interface import (
    SuperResolver,
    model_inputs,
    model_requires,
    samples,
    window_memory,
)
from geosr.models.registry import CLASSICAL, load_model, model_files, refuse_unapplied
from geosr.models.rescale import Rescaled, trained_scale_for
from geosr.options import UpscaleOptions
from geosr.options.declare import coerce
from geosr.options.upscale import CD_KEYWORDS, STYLE_KEYWORDS
from geosr.pipeline import resources
from geosr.pipeline.fingerprints import COMPUTED_TAGS, FILE_IDENTITY, FINGERPRINT_INPUTS, made_by
from geosr.pipeline.scene import Scene
from geosr.pipeline.tensors import style_tensor
from geosr.tiling.grid import Grid, hr_grid
from geosr.tiling.windows import WindowPlan, fitted_size


@dataclass
class UpscaleJob:
    """A checked, planned upscale: inputs open, model loaded, nothing written yet. A context manager."""

    scene: Scene
    sr: SuperResolver
    plan: WindowPlan
    meta: OutputMeta
    out_path: Path | None
    fingerprint: dict
    summary: dict
    seed: int
    batch_size: int
    device: torch.device
    provenance: Path | None = None  # the provenance sidecar to write beside the output (a model using a reference)
    inputs: dict[str, str] | None = None  # role -> path of every input file (the STAC item's derived_from links)
    # keeps --cd auto's mask in the work folder for the job's later plannings: call it holding the job's lock
    keep_detection: Callable[[], None] | None = None
    overwrite: bool = True  # whether an output (or sidecar) found in place as it is renamed may be replaced
    # windows whose output ran away (the model's count) among the warm-up rows a later row range recomputes without
    # writing them: the range above counts them (a split batch job said them twice; found in review)
    ran_away_recomputed: int = 0

    def close(self) -> None:
        self.scene.close()

    def __enter__(self) -> "UpscaleJob":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def work_dir(self) -> Path:
        return work_dir_for(self.out_path)

    @contextlib.contextmanager
    def lock(self, *, shared: bool = False, holder: str = "") -> Iterator[JobLock]:
        """The job's lock: exclusive for a whole run, shared by the row ranges of a split one. Held, the check of
        another output of this stem is made again: two runs planned at once (``-o x.tif`` and ``-o x.tiff``,
        ``overwrite``) each found the other's work folder absent, both wrote, one's STAC item lost (found in
        review). Each run's folder is made before it looks: of two at once, the later always sees the other.
        ``holder``: the process this one works for (a Dask worker's batch), as a refused run is told."""
        made = not self.work_dir.exists()
        with JobLock(self.work_dir / LOCK_NAME, output=self.out_path, shared=shared, holder=holder) as held:
            try:
                refuse_shared_sidecars(self.out_path)
            except OutputLocationError:
                if made and held.sole():  # refused, nothing written: the folder the lock made goes too, while
                    # the lock is held and no other holds it (a split job's other parts: theirs to leave; review).
                    # Unlinked before it is released: a run that opened the file meanwhile fails its inode check.
                    with contextlib.suppress(OSError):
                        (self.work_dir / LOCK_NAME).unlink()
                        self.work_dir.rmdir()
                raise
            yield held


def plan_upscale(
    lr: str | os.PathLike[str],
    *,
    output: str | os.PathLike[str] | None = None,
    options: UpscaleOptions | None = None,
    dry_run: bool = False,
    resume: bool = False,
    **fields: Any,
) -> UpscaleJob:
    """Check every input and option and plan the job; raises an InputError before anything is written.

    ``options`` (or ``fields``: UpscaleOptions' fields or flat option names, see :mod:`geosr.options`) say how.
    The output may not be any input, nor anything but a regular file; unless ``force_resources``, a job
    whose working memory or output size exceeds what the machine has is refused (:mod:`.resources`). With
    ``resume``, an existing output may be replaced without ``overwrite`` when its work folder holds this very
    job's finished journal (a run stopped after its output was in place, before its sidecars were)."""
    opts = options_from(options, fields)
    dry_run, resume = coerce("dry_run", dry_run, bool), coerce("resume", resume, bool)
    if lr is None:  # coerce passes None through: str(None) read a file named "None"
        raise OptionError("lr is required: the LR raster", param="lr")
    lr = coerce("lr", lr, Path)  # a list of band files as "a,b"
    output = coerce("output", output, Path)
    lr = os.fspath(lr) if isinstance(lr, os.PathLike) else str(lr)  # (a PathLike's str() is its repr; review)
    if not lr.strip():  # read as the working folder (of band files) otherwise
        raise InputNotFoundError("the LR path is empty; give the LR raster's path")
    # (a dry run too: it refused, "use overwrite", what the run finishes in seconds; found in review)
    finishing = (resume and not opts.output_config.overwrite and output is not None
                 and Path(output).is_file() and work_dir_for(Path(output)).is_dir())
    if finishing:  # checked as with overwrite now; the journal must show it is this job's below
        opts = opts.updated({"overwrite": True})
    try:
        out_path = None if dry_run else check_output_files(lr, output, opts)
        if dry_run and output is not None:  # refused as the run would be (the checks only look)
            check_raster_name(output, archives=False)
            check_output_files(lr, output, opts)
            check_raster_name(output)
    except OutputExistsError:
        if resume and not finishing and output is not None and Path(output).is_file() \
                and not os.path.lexists(work_dir_for(Path(output))):
            raise OutputExistsError(f"{output}: already exists, and no unfinished run of it is left to resume (a "
                                    "run that finished leaves none); use `overwrite` to run it again") from None
        if not resume and not dry_run and output is not None and Path(output).is_file() \
                and work_dir_for(Path(output)).is_dir():  # stopped after its rename, before its sidecars (review)
            raise OutputExistsError(f"{output}: already exists, beside the work folder of a run that did not finish "
                                    f"({work_dir_for(Path(output)).name}); use `resume` to finish it (the same "
                                    "command), or `overwrite` to run it again") from None
        raise
    lr_info = inspect_raster(lr)
    sel = parse_bands(opts.bands, lr_info)
    aoi_win = aoi_window(opts.aoi, lr_info.grid, aoi_crs=opts.aoi_crs) if opts.aoi else None
    hr, area = hr_grid(lr_info.grid, opts.scale, aoi_win)
    dev = resolve_device(opts.device.device)
    table = load_change_classes(opts.cd_classes)
    _mask_kind(opts, table)  # (`cd` auto without a reference, a table that cannot apply: said before the model's fit)
    # the model and every option checked, and the plan measured against the machine, before a change mask is
    # detected (minutes on a large scene) or the reference co-registered; a style image needs the scene: the model
    # is loaded again with it below
    style = opts.style
    _refuse_unapplied(opts)
    try:
        sr = resolve_model(opts.model, opts.scale, dev, opts.sampler, style=None if _is_style_image(style) else style)
    except OptionError:
        if style in (None, "none") or _is_style_image(style):
            raise
        bare = resolve_model(opts.model, opts.scale, dev, opts.sampler)
        if "style" in model_inputs(bare):  # the style itself is wrong for the model
            raise
        sr = bare  # no style path: refused as every unused input is (_check_inputs), unless ignore_unused
    _check_inputs(sr, opts)
    # what is read: for a model that uses neither a reference nor a mask (given with `ignore_unused`), neither, so
    # that nothing is co-registered or detected for nothing; they stay inputs no output may be (opts)
    used = model_inputs(sr)
    reads = opts.updated({"ref": None, "cd": None, "ref_bands": None}) if (
        opts.ignore_unused and (opts.ref or opts.cd) and not {"ref", "cd"} & used) else opts
    kind = _mask_kind(reads, table)
    _check_model(sr, opts.scale, len(sel), sr.name, table if kind != "none" else None, auto=kind == "auto")
    # windows of about the model's preferred size in pixels of its own output (a rescaled one: at its scale)
    via = getattr(sr, "via", opts.scale)
    tcfg = opts.tiling.resolved(via, *getattr(sr, "tiling_for", lambda s: (256, 0.25))(via))
    scene_w, scene_h = lr_info.grid.width, lr_info.grid.height
    if opts.tiling.window is None and getattr(sr, "fit_windows", False):  # any size suits it: share evenly
        size = fitted_size(scene_w, scene_h, tcfg.window, tcfg.overlap)  # the scene: an AOI in its windows
        tcfg = TilingConfig(window=size, overlap=min(tcfg.overlap, size - 1))
    plan = WindowPlan.build(scene_w, scene_h, tcfg.window, tcfg.overlap,
                            area=tuple(int(v) for v in (area.col_off, area.row_off, area.width, area.height)))
    meta = _output_meta(lr_info, sel, opts.output_config)
    # a dry run names the output it would write and measures the disk there
    planned = Path(output) if dry_run and output is not None else out_path
    compared = area if aoi_win is not None else None  # cd auto's: the AOI's window (and a margin), or the whole LR
    # (a detection an earlier run of the job kept, which this one reads, takes no memory)
    # (a dry run looks for it at the output it names: it said "to be detected" where the run reuses it; review)
    key = _detection_key(lr, reads, compared) if kind == "auto" and planned is not None else {}
    kept = _kept_detection(planned, key) if key and planned is not None else None
    reused = kept is not None
    detecting = (lr_info.grid.width, lr_info.grid.height, compared) if kind == "auto" and not reused else None
    lr_size = (lr_info.grid.width, lr_info.grid.height)
    summary = _summary(planned, sr, hr, plan, tcfg, meta, len(sel), reads, dry_run, detecting,  # what is read
                       dev=dev, lr_size=lr_size)
    cd, detection, held = _change_mask(lr, reads, kind, dry_run, compared, out_path, key)
    if dry_run and kept is not None:  # what the run will read: the detection an earlier run of this job kept
        detection = {**kept[1], "ran": False, "kept": True}
    try:
        scene = Scene.open(lr, scale=opts.scale, hr=hr, area=area, bands=opts.bands, ref=reads.ref,
                           ref_bands=reads.ref_bands, cd=cd, cd_table=table if cd else None,
                           map=opts.map if "map" in used else None,  # (one `ignore_unused` leaves is not read)
                           coregister=opts.coregister, cloud_masks=opts.cloud_masks)
    except BaseException:
        if held is not None:
            held.close()
        raise
    if held is not None:
        scene.hold(held)
    keep_detection = getattr(held, "keep", None)
    try:
        if _is_style_image(style) and "style" in model_inputs(sr):  # read in the scene's model space
            styled = style_tensor(scene.read_style(style, bands=opts.bands))
            sr = resolve_model(opts.model, opts.scale, dev, opts.sampler, style=styled)
        # measured again with the inputs open (the co-registered reference, a detected mask held in memory), for the
        # numbers told; the fit was checked before (what this process holds is no memory the run has to take)
        summary.update(_summary(planned, sr, hr, plan, tcfg, meta, len(sel), reads, dry_run,
                                detecting if dry_run else None, check=False, dev=dev, lr_size=lr_size))
        if getattr(sr, "wants_sharpness", False) and not dry_run:  # how the LR was made, for the whole scene
            scene.measure_sharpness()
        summary["coregistration"] = scene.coregistration.to_dict() if scene.coregistration else None
        map_said = _check_map(scene, sr)  # (an untagged map then takes the model's class count)
        summary["warnings"] = (map_said + [f"change detection: {w}" for w in (detection or {}).get("warnings", [])]
                               + _band_warnings(lr_info, sel, sr) + _nodata_warnings(lr_info, sel, meta)
                               + _setting_warnings(sr, opts, plan.n_cols, _cuts_rows(plan)) + scene.reference_warnings()
                               + _reference_unused(scene, detection)
                               + (scene.mask_warnings + scene.cd_warnings if reads.ref else [])
                               + resources.gpu_warnings(summary["resources"]))
        summary["change_detection"] = detection
        # the products' own cloud masks: changed whatever the change mask says, and left out of the reference's
        # harmonization, also with --cd none, which takes them as changed nowhere ("changed": false; a dry run with
        # cd auto has not detected yet)
        changed = scene.cd_info is not None or detection is not None
        masks = scene.sensor_masks() if changed or reads.ref else []
        summary["sensor_mask"] = ({"masks": masks} | ({} if changed else {"changed": False})) if masks else None
        notes = {role: source_note(p) for role, p in (("lr", lr), ("ref", reads.ref)) if p}
        summary["sources"] = {role: n for role, n in notes.items() if n} or None
    except BaseException:
        scene.close()
        raise
    inputs = _used_inputs(lr, reads, opts, used)
    tags = _tags(scene, sr, opts, tcfg, inputs)
    if "map" in inputs and scene.map_info is not None:  # pixels shaped by OpenStreetMap data: its notice goes on
        tags.update({k: v for k, v in scene.map_info.tags.items() if k in ("OSM_ATTRIBUTION", "OSM_LICENSE")})
    if scene.sharpness is not None:  # what the model was told of how the LR was made (degradation_code)
        tags["GEOSR_LR_SHARPNESS"] = json.dumps(list(scene.sharpness))
    if detection is not None:
        tags["GEOSR_CHANGE_DETECTION"] = json.dumps(detection, sort_keys=True)
    if summary["sensor_mask"] is not None:
        tags["GEOSR_SENSOR_MASK"] = json.dumps(summary["sensor_mask"], sort_keys=True)
    fingerprint = _fingerprint(lr, sel, sr, tags, tcfg, opts, dev)
    # how this process ran the model (device, the batch size that counts, threads), as the journal has it: CPU and
    # CUDA outputs of one job differ in a few levels, and the outputs did not say which made them (found in review)
    runtime = {**fingerprint["runtime"], "torch": torch.__version__}
    if dev.type == "cuda":
        runtime["gpu"] = torch.cuda.get_device_name(dev)
    tags["GEOSR_RUNTIME"] = json.dumps(runtime, sort_keys=True)
    meta = OutputMeta(**{**asdict(meta), "tags": {**meta.tags, **tags}})
    final = out_path if out_path is not None else planned  # (a dry run's: the output it names)
    if finishing and final is not None and not finished_journal(work_dir_for(final), fingerprint, plan.n_rows):
        scene.close()
        if journal_of(work_dir_for(final), fingerprint, plan.n_rows):  # an `overwrite` run stopped midway
            raise OutputExistsError(f"{final}: already exists, and the unfinished run in its work folder "
                                    "replaces it: give `overwrite` with `resume` to continue it")
        raise OutputExistsError(f"{final}: already exists, and the unfinished run in its work folder is of other "
                                "inputs or options than these (use `overwrite` to replace it with this run)")
    if finishing and final is not None and not made_by(final, meta.tags, COMPUTED_TAGS):  # every row done, and a
        # file of another's at OUT: one that appeared while the run worked, which it left as it is (`resume` alone
        # replaced it; found in review). (Its options as given may differ: the fingerprint, which the journal
        # matched, says they agree.)
        scene.close()
        raise OutputExistsError(f"{final}: already exists and is not this run's output (it appeared while the run "
                                "worked); give `overwrite` with `resume` to replace it and go on from the run's work")
    uses_ref = bool(opts.ref) and "ref" in model_inputs(sr)
    sidecar = sidecar_paths(out_path)["provenance raster"] if out_path and uses_ref else None
    given = opts.cd is not None and opts.cd not in CD_KEYWORDS  # (None: auto, by default, with a reference)
    summary["change_mask"] = str(opts.cd) if uses_ref and cd is not None and given else None
    return UpscaleJob(scene, sr, plan, meta, out_path, fingerprint, summary, opts.sampler.seed,
                      opts.device.batch_size, dev, sidecar, inputs, keep_detection, opts.output_config.overwrite)


def _mask_kind(opts: UpscaleOptions, table: ChangeClassTable) -> str:
    """Which change mask the job reads: "none", "file" (the user's) or "auto" (detected against the reference: `cd`
    auto, the default with a reference); raises for a class table or `cd` auto that cannot apply."""
    if opts.cd == "none" or (opts.cd is None and opts.ref is None):
        if table.name != "binary" and not opts.ignore_unused:  # it would describe a mask that is not read
            raise ClassTableError(f"cd_classes {table.name}: names the classes of a change mask (`cd`), and none is "
                                  "read here; leave it out, or give `ignore_unused`", param="cd_classes")
        return "none"
    if opts.cd != "auto" and opts.cd is not None:
        return "file"
    if opts.ref is None:
        raise OptionError("cd auto: finds the changes against the reference, and no reference was given", param="cd")
    if table.name != "binary":
        raise ClassTableError(f"cd_classes {table.name}: the automatic change mask (cd auto) has the binary "
                              "classes; leave the class table at binary", param="cd_classes")
    return "auto"


def _change_mask(lr: str, opts: UpscaleOptions, kind: str, dry_run: bool, area: Window | None,
                 out_path: Path | None = None, key: dict | None = None) -> tuple[str | None, dict | None, Any]:
    """The change mask the job reads (``kind``, :func:`_mask_kind`): the user's file; ``auto``: detected from the
    reference (:mod:`geosr.pipeline.detect_changes`) over ``area`` (the --aoi's LR window; None: the whole LR),
    kept in the output's work folder (:func:`_kept_detection`) or, without an output, in memory; ``none``: none.
    ``key``: :func:`_detection_key`'s, when the caller has it. Returns (path or None, the detection's report or None,
    what the scene must keep open)."""
    if kind == "none":
        return None, None, None
    if kind == "file":
        return opts.cd, None, None
    if dry_run:
        return None, {"method": "auto", "ran": False}, None
    from geosr.pipeline.detect_changes import detect_changes_in_memory

    key = _detection_key(lr, opts, area) if key is None else key  # (the plan's, measured already)
    if not key:  # not kept (a remote input)
        out_path = None
    kept = _kept_detection(out_path, key) if out_path is not None else None
    if kept is not None:
        return kept
    held, found = detect_changes_in_memory(lr, ref=opts.ref, bands=opts.bands, ref_bands=opts.ref_bands,
                                           coregister=opts.coregister, area=area, refine=refine_factor(opts.scale),
                                           cloud_masks=opts.cloud_masks)
    report = {k: v for k, v in found.to_dict().items() if k in ("changed_share", "unknown_share", "thresholds",
                                                                   "probability_thresholds", "sensor_mask")}
    if found.warnings:  # the detector's own (a uniform LR, an area too small to judge); not the reference's
        report["warnings"] = list(found.warnings)
    report = {"method": "auto", "ran": True, **report}
    if out_path is not None:  # kept by the run once it holds the job's lock (UpscaleJob.keep_detection)
        held.keep = lambda: _keep_detection(out_path, key, held, report)
    return str(found.path), report, held


def _detection_key(lr: str, opts: UpscaleOptions, area: Window | None) -> dict:
    """What a detected change mask kept in the work folder is keyed by (the inputs' identities, the options, the
    detector); empty when none is kept: for a remote input (a URL's content may change unseen; a local file's key
    holds its size and time) or a missing one (the detection names it)."""
    if not (_all_local(lr) and _all_local(opts.ref)):
        return {}
    try:
        return json.loads(to_json(dict(version=__version__, detector=DETECTOR_VERSION, lr=_file_id(lr),
                                       ref=_file_id(opts.ref), bands=opts.bands, ref_bands=opts.ref_bands,
                                       coregister=opts.coregister, cloud_masks=opts.cloud_masks,
                                       refine=refine_factor(opts.scale),
                                       area=None if area is None else [int(v) for v in area.flatten()])))
    except OSError:
        return {}


DETECTION_PREFIX = "change-auto-"  # the work folder's detected change masks (kept by a fresh start of the job)


def _detection_files(out_path: Path, key: dict) -> tuple[Path, Path]:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    folder = work_dir_for(out_path)
    return folder / f"{DETECTION_PREFIX}{digest}.tif", folder / f"{DETECTION_PREFIX}{digest}.json"


def _kept_detection(out_path: Path, key: dict) -> tuple[str, dict, None] | None:
    """The change mask an earlier run of this job kept, detected from the same inputs with the same options and
    detector (a split batch job's earlier task, a retry, a --resume), with its report; None if there is none."""
    tif, meta = _detection_files(out_path, key)
    try:
        kept = json.loads(meta.read_text())
    except (OSError, ValueError):
        return None
    if kept.get("key") != key or not tif.is_file():
        return None
    return str(tif), kept["report"], None


def _keep_detection(out_path: Path, key: dict, held: Any, report: dict) -> None:
    """Write the detected mask (an in-memory GeoTIFF) and its report into the job's work folder, each atomically
    (the mask first: the report names a complete file). Only a convenience: a failure (a full disk) keeps
    nothing and the run goes on."""
    tif, meta = _detection_files(out_path, key)
    for path, data in ((tif, bytes(held.getbuffer())), (meta, json.dumps({"key": key, "report": report}).encode())):
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError:
            return
        finally:
            tmp.unlink(missing_ok=True)


def _all_local(path: str | None) -> bool:
    """Whether every file ``path`` reads is local (a composite's members included)."""
    if path is None:
        return True
    container = subdataset_container(path)
    if REMOTE.match(path) or (container is not None and subdataset_file(path) is None) or remote_sources(path):
        return False
    comp = composite(path) if is_composite(path) else None
    return comp is None or not any(REMOTE.match(f) for f in comp.files)


def options_from(options: UpscaleOptions | None, fields: dict[str, Any]) -> UpscaleOptions:
    """``options`` with ``fields`` applied (flat option names or UpscaleOptions' own fields)."""
    if options is None:
        return UpscaleOptions.from_flat(fields)
    if isinstance(options, Mapping):  # options as a table of flat names
        return UpscaleOptions.from_flat({**options, **fields})
    if not isinstance(options, UpscaleOptions):
        raise OptionError(f"options {options!r}: give an UpscaleOptions or a table of options", param="options")
    return options.updated(fields) if fields else options


def refuse_shared_sidecars(out: Path) -> None:
    """Refuse an output whose sidecars another output of its stem writes (:func:`~geosr.io.outputs.sidecars_shared`:
    one being written, or the one whose STAC item is there)."""
    other = sidecars_shared(out, sidecar_paths(out)["STAC item"])
    if other is not None:
        names = ", ".join(p.name for p in sidecar_paths(out).values())
        raise OutputLocationError(f"{out}: {other.name} beside it has the same stem, so the two would write one "
                                  f"set of sidecars ({names}); give the output another name")


def check_output_files(lr: str, output: str | os.PathLike[str] | None, opts: UpscaleOptions, *,
                       make_folder: bool = False) -> Path:
    """Check the output path and the files a run writes beside it (:func:`~geosr.io.paths.sidecar_paths`) as
    :func:`~geosr.io.outputs.check_output_path` does: none may be an input, nor exist unless ``overwrite``. An
    earlier run's provenance raster beside the output of a run without a reference counts too: with ``overwrite``
    the run removes it (:func:`geosr.pipeline.upscale.remove_stale_provenance`)."""
    if output is None:
        raise OptionError("output is required: the path of the GeoTIFF to write (e.g. OUT.tif)", param="output")
    inputs = _input_files(lr, opts)
    overwrite = opts.output_config.overwrite
    out = check_raster_output_path(output, overwrite=overwrite, inputs=inputs, make_folder=make_folder)
    # before the sidecars' own checks: "x.stac.json exists (use overwrite)" led to this refusal (found in review)
    refuse_shared_sidecars(out)
    for name, side in sidecar_paths(out).items():  # their names' lengths are within the output's margin
        check_output_path(side, overwrite=overwrite, inputs=inputs, make_folder=make_folder, name_margin=None,
                          written_as=f"where the output's {name} goes")
    return out


def _input_files(lr: str, opts: UpscaleOptions) -> list[tuple[str, str | None]]:
    """(role, path) of every file the run reads, which no output (nor sidecar) may be: the inputs, and each file a
    composite input (band files, a Sentinel-2 product, a STAC item) reads."""
    model = opts.model
    cd = None if opts.cd in CD_KEYWORDS else opts.cd
    classes = opts.cd_classes if isinstance(opts.cd_classes, str) and Path(opts.cd_classes).is_file() else None
    inputs = [("LR", lr), ("reference", opts.ref), ("change mask", cd), ("map", opts.map),
              ("style image", opts.style if _is_style_image(opts.style) else None),
              ("change class table", classes),
              (VECTOR_ROLE, opts.aoi if opts.aoi and Path(opts.aoi).exists() else None)]
    # every file the model reads: a bundled one's too, both of a DIFFUSION+BACKBONE, the backbone its spec names
    files = model_files(model) if isinstance(model, str) else []
    parts = [(f"area of interest's file {Path(f).name}", f) for f in vector_parts(opts.aoi)] if opts.aoi else []
    return inputs + [("model", str(f)) for f in files] + member_inputs(inputs[:4]) + parts


def _summary(out_path: Path | None, sr: SuperResolver, hr: Grid, plan: WindowPlan, tcfg: TilingConfig,
             meta: OutputMeta, n_bands: int, opts: UpscaleOptions, dry_run: bool,
             detecting: tuple[int, int, Window | None] | None = None, check: bool = True,
             dev: torch.device | None = None, lr_size: tuple[int, int] | None = None) -> dict:
    """What the job will do, and whether it fits this machine (refused unless it does, or is forced, or not
    ``check``). ``detecting``: the LR's width and height and the window compared (None: all of it) when the changes
    are detected first."""
    summary = dict(
        output=None if out_path is None else str(out_path), model=sr.name, scale=opts.scale,
        crs=hr.crs.to_string(), bounds=hr.bounds, width=hr.width, height=hr.height, count=n_bands,
        dtype=meta.dtype, windows=len(plan), window_rows=plan.n_rows, window_size=tcfg.window, overlap=tcfg.overlap,
        output_mb=hr.width * hr.height * n_bands * np.dtype(meta.dtype).itemsize / 2**20, dry_run=dry_run,
    )
    cd = opts.cd not in (None, "none") or (opts.cd is None and opts.ref is not None)  # a file or a detection
    read = frozenset(k for k, given in (("ref", opts.ref is not None), ("cd", cd), ("map", opts.map is not None))
                     if given)
    detection = 0.0
    if detecting is not None:  # before the run, each freeing its memory before the next
        from geosr.pipeline.detect_changes import compared_area, detection_memory

        compared = compared_area(detecting[2], detecting[0], detecting[1])
        detection = detection_memory(int(compared.width), int(compared.height), refine_factor(opts.scale))
    if opts.ref is not None:  # the reference's shift, measured as the scene opened (with --no-coregister too), on
        # up to COREG_SIDE^2 LR pixels of the whole LR, also for a smaller --aoi (it was sized on the area: 374 MB
        # planned for a run that peaked at 622 MB; found in review)
        from geosr.pipeline.scene import coregistration_memory

        w, h = lr_size or (hr.width // opts.scale, hr.height // opts.scale)
        detection = max(detection, coregistration_memory(w, h, n_bands))
    gpu = dev is not None and dev.type == "cuda"
    summary["memory_mb"], gpu_mb = _memory_mb(plan, hr, n_bands, opts.scale, sr, opts.device.batch_size,
                                              summary["output_mb"],
                                              assembled_mb(hr, meta) if in_memory(hr, meta) else 0.0, read, detection,
                                              gpu=gpu)
    # (a dry run without an output: the working folder, where one named without a folder goes; it was left
    # unmeasured, and a plan of 4 TB "fit" a disk of 75 GB)
    folder = Path(".") if out_path is None else (out_path.parent if str(out_path.parent) else Path("."))
    # (the rows an earlier run of it staged already take their room)
    # and the journal's carry of the rows still open, which a run with --aoi or a tall last window row held beside its
    # chunks at 3.7 times the output's uncompressed size (21.5 MB on disk for 10.7 MB planned; found in review)
    # (the carries are gone once the COG is made: the larger of the rows' phase and the writing's; found in review)
    disk = max(0.0, max(written_mb(hr, meta), staged_rows_mb(hr, meta) + _carry_mb(plan, hr, n_bands, opts.scale))
               - (staged_mb(work_dir_for(out_path)) if out_path is not None else 0.0))
    gpu_free = torch.cuda.mem_get_info(dev)[0] / 2**20 if gpu else None
    res = resources.measure(summary["memory_mb"], disk, folder if folder and folder.is_dir() else None,
                            gpu_mb=gpu_mb, gpu_free_mb=gpu_free)
    summary["resources"] = res.to_dict()
    if check and not dry_run and not opts.force_resources:
        resources.check(res, output=out_path)
    return summary


# Raised with every change that alters the bytes an unchanged job writes, within one version of geosr: a journal
# of the pipeline before it is not resumed (2: a band without data in a valid pixel is written as nodata there;
# 3: a finer reference's validity ends at its footprint's edge, a reference pixel needs every band, the model sees
# an LR gap filled from its valid neighbours; 4: an AOI is processed in the scene's windows, with its stretch;
# 5: co-registration leaves out the cloud masks' pixels, refines its tie points, keeps the field's own centre;
# 6: tie points through gaps in the images, the forward model's moves compared on the same pixels; 7: a model that
# takes windows singly runs each through all its steps alone, a lone window no longer twice; the output's nodata
# is the selected bands', not band 1's; 8: a coarser reference's cubic overshoot onto its nodata value is no gap,
# which bands have data is the nearest warp's; the reference's shift measured where it meets the scene; 9: on the
# CPU a sampling model takes windows singly; at an untrained scale back-projection runs after the resampling;
# 11: `cd auto` compares a panchromatic reference with the LR's fitted intensity; co-registration leaves the
# reference's own cloud flags out of the reference and needs 32 x 32 compared pixels; 12: a diffusion model sees the
# LR within +-2 in model space, its output taking the LR's own upsampling in place of the clipped one's; a float
# output is clipped to its type's finite range; `cd auto` compares a scene wider than 16384 LR pixels in parts; 13:
# the reference's shift measured around a small area on the LR beyond it, a coarser reference's not refined; an
# output pixel changed where any pixel of a finer change mask under it is; 14: the reference's radiometric fit leaves
# out LR pixels of which any part changed; 15: a flat band beyond 2^53 keeps its values, 64-bit integers clip at
# their maximum, a band's own mask is the output's; 16: the reference's shift refined robustly to a changed patch,
# the sampler fingerprinted as the model runs it; 17: the reference's radiometric fit leaves out LR pixels whose
# reference block holds a value clipped at its type's ends; 18: the reference's cloud flags left out at its own
# resolution, its shift estimated through each image's own gaps, and one the forward model cannot check not applied;
# a float output's valid pixel within GDAL's tolerance of the nodata value moved out of it).
PIPELINE_REVISION = 18


def _unless_file(value: Any) -> Any:
    """``value`` unless it names a local file (then None: the file is identified by :func:`_stat_id`)."""
    return None if isinstance(value, str) and value and Path(value).is_file() else value


def _fingerprint(lr: str, sel: tuple[int, ...], sr: SuperResolver, tags: dict[str, str], tcfg: TilingConfig,
                 opts: UpscaleOptions, device: torch.device) -> dict:
    """What determines the output's bytes: geosr's version, the inputs' identity, the model's weights and how
    it runs, every option (``--resume`` continues only a job with the same fingerprint)."""
    style = opts.style if _is_style_image(opts.style) else None
    # `cd` auto is what none given means (with a reference; without one it is refused): the same job either way (a
    # resume was refused for "the change mask was left out"; found in review)
    given = {"lr": lr, "ref": opts.ref, "cd": None if opts.cd == "auto" else opts.cd, "map": opts.map, "style": style}
    return json.loads(to_json(dict(
        version=__version__,
        revision=PIPELINE_REVISION,
        file_identity=FILE_IDENTITY,  # what identifies an input file (a record of another: said so, found in review)
        inputs=[_file_id(given[role]) for role, _ in FINGERPRINT_INPUTS]
        + [_stat_id(p) for p in (opts.cd_classes, opts.aoi) if p and Path(p).is_file()]  # JSON table, AOI file
        + [_stat_id(p) for p in _read_parts(opts.aoi)],  # a shapefile's .prj, .dbf... (found in review)
        # a file (a class table, an AOI) by its identity above, not its spelling (`./area.geojson`, an absolute
        # path, from another folder: "--aoi changed"; found in review); a name or a box as given
        options=dict(scale=opts.scale, bands=sel, ref_bands=opts.ref_bands, cd_classes=_unless_file(opts.cd_classes),
                     aoi=_unless_file(opts.aoi),
                     aoi_crs=opts.aoi_crs, model=sr.name,
                     model_settings=json.loads(tags["GEOSR_MODEL_SETTINGS"]),  # its weights and how it runs
                     # a style file by its identity above, not its spelling (`./style.tif` refused a resume; found
                     # in review); the sampler as the model runs it (model_settings: `--steps 1` given to the
                     # default model, whose own is 1, refused a resume of the same bytes; found in review) and seed
                     style=_unless_file(opts.style), tiling=tcfg, sampler={"seed": opts.sampler.seed},
                     output=replace(opts.output_config, overwrite=False),  # replacing or not makes the same bytes
                     coregister=opts.coregister, cloud_masks=opts.cloud_masks),
        # how this process runs the model: the batch's size and the threads change the last bit of a float sum
        # (a level of 8 bits here and there), so --resume never joins rows computed two ways; a model that takes
        # windows singly makes the same pixels at any batch size (recorded as 1). Left out of what geosr batch
        # compares to skip a finished job (its workers and planner run alike; records.comparable).
        runtime=dict(device=device.type,
                     batch_size=1 if getattr(sr, "one_window_at_a_time", False) else opts.device.batch_size,
                     threads=torch.get_num_threads() if device.type == "cpu"
                     and not getattr(sr, "threads_invariant", False) else None),
    )))


def resolve_model(
    model: str | SuperResolver,
    scale: int,
    device: torch.device | str,
    sampler=None,
    loader: Callable[..., SuperResolver] = load_model,
    style: "str | torch.Tensor | None" = None,
) -> SuperResolver:
    """Load ``model`` with ``loader`` (a model object as it is); a model asked for a scale it was not trained for runs
    at the next trained scale up and is resampled (:mod:`geosr.models.rescale`). ``style``: None/"none", "sample"
    (SGDM's style flow) or a style image tensor in model space."""
    if isinstance(model, str):
        extra = {} if style is None or (isinstance(style, str) and style == "none") else {"style": style}
        sr = loader(model, device=str(device), sampler=sampler, **extra)
    else:  # (one loaded once for many runs, as geosr evaluate's: at a scale it lacks as a name would be)
        sr = model
    via = trained_scale_for(scale, tuple(sr.scales))
    if via is None:
        return sr
    if isinstance(sr, LRConsistent):  # back-projected at the asked scale, where its box average is the LR exactly
        return LRConsistent(Rescaled(sr.inner, via), sr.iterations, sr.operator)
    return Rescaled(sr, via)


def _refuse_unapplied(opts: UpscaleOptions) -> None:
    """Refuse sampling settings given beside a model object that was loaded with others: it runs as it was loaded,
    and the output's tags would record the settings as applied (`steps` 2 beside ``load_model("default")`` wrote
    the 1-step output, tagged steps 2)."""
    if isinstance(opts.model, str):
        return
    if opts.style is not None and "style" in model_inputs(opts.model) and hasattr(opts.model, "describe"):
        # the style is the object's own too: a style image beside it was ignored yet named as the output's source,
        # "none" beside one loaded with "sample" still sampled (found in review)
        have = str(opts.model.describe().get("style") or "none")
        if _is_style_image(opts.style) or opts.style != have:
            raise OptionError(f"style {opts.style}: model {getattr(opts.model, 'name', 'given')} was loaded with "
                              f"style {have} and runs with it; give the style to load_model (an image as a "
                              "model-space tensor), or give the model by its name", param="style")
    s, unset = opts.sampler, SamplerConfig()
    given = {f.name: getattr(s, f.name) for f in fields(SamplerConfig)
             if f.name != "seed" and getattr(s, f.name) != getattr(unset, f.name)}
    refuse_unapplied(opts.model, given, {"preset": "sampler"})


COARSE_MAP = 2.0  # a map whose pixels are this many times the output's a side is said to be read in blocks


def _check_map(scene: Scene, sr: SuperResolver) -> list[str]:
    """Refuse a map whose classes are not the model's: another number, or other names where both name them (the
    model was told water where the map marks buildings); a map that names none (no GEOSR_MAP_CLASSES tag, e.g.
    reprojected by a tool that drops tags) is read in the model's classes, and said so. The warnings."""
    wanted = int(getattr(sr, "n_map_classes", 0) or 0)
    if scene.map_info is None or not wanted:
        return []
    path, spec = scene.map_info.path, getattr(sr, "spec", {}).get("map_classes") or {}
    model = [str(spec.get(str(i), f"class{i}")) for i in range(wanted)]
    named = model != [f"class{i}" for i in range(wanted)]  # (a checkpoint that names its classes)
    said = []
    if scene.map_names is None:
        if scene.n_map_classes > wanted:
            raise ClassTableError(f"{path}: holds class {scene.n_map_classes - 1}, and model {sr.name} takes {wanted} "
                                  f"map classes (0 to {wanted - 1}); the map names no classes (no GEOSR_MAP_CLASSES "
                                  "tag, which geosr rasterize-osm writes): give a map of the model's classes")
        scene.n_map_classes = wanted
        said.append(f"map {path}: names no classes (no GEOSR_MAP_CLASSES tag): its values are read as model "
                    f"{sr.name}'s {wanted} map classes" + (f" ({', '.join(model)})" if named else ""))
    elif len(scene.map_names) != wanted or (named and list(scene.map_names) != model):
        raise ClassTableError(f"{path}: its classes ({', '.join(scene.map_names)}) are not model {sr.name}'s "
                              f"({', '.join(model)}); rasterize the map with the model's class table "
                              "(geosr rasterize-osm --classes)")
    if scene.map_ratio >= COARSE_MAP:  # (each map pixel a block of the model's map input, without a word; review)
        said.append(f"map {path}: its pixels are {scene.map_ratio:.1f} times the output's a side, so the model "
                    f"reads its classes in blocks; rasterize it on the output's grid (geosr rasterize-osm --like LR "
                    f"-x {scene.scale})")
    nodata = scene.map_info.nodata
    if nodata is not None and float(nodata).is_integer() and 0 < int(nodata) < wanted:  # (0 is background anyway)
        name = (scene.map_names or model)[int(nodata)]
        said.append(f"map {path}: its nodata value {int(nodata)} is the class {name!r}, so those pixels are read as "
                    f"background (class 0); unset the map's nodata value (gdal_edit.py -unsetnodata) if they are "
                    f"{name!r}")  # (as a change mask's; the class was lost without a word: found in review)
    return said


def _is_style_image(style: object) -> bool:
    return isinstance(style, str) and style not in STYLE_KEYWORDS


def _join(values) -> str:
    return ", ".join(str(v) for v in values)


def _check_model(sr: SuperResolver, scale: int, n_bands: int, spec: str, table: ChangeClassTable | None = None,
                 auto: bool = False) -> None:
    if sr.scales and scale not in sr.scales:
        raise ScaleError(f"model {spec}: trained for scale {_join(sr.scales)}, not scale {scale}")
    if sr.bands is not None and sr.bands != n_bands:
        # (a grey band to an RGB model: repeated, as training and evaluate read a grey image; it was told to drop its
        # model; found in review)
        fix = f"pick {sr.bands} with `bands`" if n_bands > sr.bands else \
            f"repeat its band with `bands` {','.join(['1'] * sr.bands)}, or use `model` bicubic or lanczos" \
            if n_bands == 1 else "use `model` bicubic or lanczos"
        raise BandError(f"model {spec}: takes {band_count(sr.bands)} but {n_bands} {'is' if n_bands == 1 else 'are'} "
                        f"selected ({fix})")
    wanted = getattr(sr, "n_change_classes", None)
    if auto and table is not None and wanted is not None and table.n_classes != wanted and "cd" in model_inputs(sr):
        raise ClassTableError(
            f"model {spec}: was trained with {wanted} change classes, but the change mask detected against the "
            "reference (cd auto, the default with a reference) is binary; give the model's own mask with `cd` and "
            "`cd_classes`, or `cd` none")
    if table is not None and wanted is not None and table.n_classes != wanted:
        raise ClassTableError(
            f"model {spec}: was trained with {wanted} change classes but `cd_classes` {table.name} declares "
            f"{table.n_classes}"
        )


def _band_warnings(info: RasterInfo, bands: tuple[int, ...], sr: SuperResolver) -> list[str]:
    """A warning when the selected bands are, by their descriptions or colour interpretation, not the bands the
    model was trained on (e.g. false colour B08,B04,B03 into a red-green-blue model)."""
    trained = [str(n).lower() for n in (getattr(sr, "spec", None) or {}).get("band_names") or []]
    roles = band_roles(info, bands)
    wrong = [(i, r, t) for i, (r, t) in enumerate(zip(roles, trained))
             if r is not None and t in _KNOWN_ROLES and r != t]
    if not wrong:
        return []
    got = ", ".join(f"band {bands[i]} is {r}" for i, r, _ in wrong)
    return [f"model {sr.name} was trained on {', '.join(trained)} bands but {got}; its output there may carry "
            "colours and textures of other bands (choose the bands with `bands`)"]


_KNOWN_ROLES = ("red", "green", "blue", "nir")


def _cuts_rows(plan: WindowPlan) -> bool:
    """Whether the plan (an area's) holds only part of the scene plan's rows of windows: its batches, made of one
    row's windows, are then not the whole run's."""
    return bool(plan.scene_col_starts) and (plan.first[0] != 0 or plan.n_cols != len(plan.scene_col_starts))


def _setting_warnings(sr: SuperResolver, opts: UpscaleOptions, n_cols: int = 2, cuts_rows: bool = False) -> list[str]:
    """A warning naming the sampling settings given that ``sr`` does not use: the sampler's for a model that does
    not sample (classical, backbone), also reference detail and LR-consistency for a classical one, and overlap
    fusion where no batch holds two windows (``batch_size`` 1, or ``n_cols`` 1: a batch is one row's windows)."""
    s = opts.sampler
    given = [("sampler", s.preset != "default"), ("steps", s.steps is not None), ("fuse_overlaps", s.fuse_overlaps),
             ("seed", s.seed != 0)]  # (the noise's: a model that draws none gives the same pixels for every seed)
    unused = [] if samples(sr) else [name for name, on in given if on]
    said = [f"model {sr.name} does not sample by diffusion, so {_listed(unused)} "
            f"{'changes' if len(unused) == 1 else 'change'} nothing"] if unused else []
    if samples(sr) and getattr(sr, "steps", None) == 0:  # a diffusion model on a backbone, its prediction alone
        idle = [name for name, on in given if on and name != "steps"]
        said += [f"model {sr.name} at `steps` 0 gives its backbone's prediction and samples nothing, so "
                 f"{_listed(idle)} {'changes' if len(idle) == 1 else 'change'} nothing"] if idle else []
        return said
    if s.fuse_overlaps and samples(sr) and (opts.device.batch_size == 1 or n_cols == 1):  # (a batch: one row's)
        why = "`batch_size` 1 samples each alone" if opts.device.batch_size == 1 else \
            "each row has one window here, and a batch is made of one row's"
        said.append(f"`fuse_overlaps` fuses the overlaps of the windows sampled together, and {why}: it changes "
                    "nothing")
    elif s.fuse_overlaps and samples(sr) and cuts_rows:  # (a review measured up to 17 DN at batch size 4)
        said.append("`fuse_overlaps` fuses the windows sampled together, and the area's batches hold none beyond it: "
                    "its pixels differ from those of a run over the whole scene")
    ignored = [name for name, on in (("ref_detail", s.reference_detail is not None),
                                     ("lr_consistency", s.lr_consistency is not None)) if on]
    if sr.name in CLASSICAL and ignored:  # returned by load_model as they are, without these wrappers
        said.append(f"model {sr.name} (a classical one) ignores {_listed(ignored)}")
    return said


def _reference_unused(scene: Scene, detection: dict | None) -> list[str]:
    """A word when no valid reference pixel was found over the area (all nodata there): it was used on none,
    without a word, and co-registration said "too small an overlap" (found in review). Only without a change mask:
    harmonization leaves out every LR pixel a mask calls even partly changed, so a mask of scattered changes left it
    none while the reference's unchanged output pixels were used (review); ``cd`` auto says it itself."""
    if scene.harmonization is None or scene.harmonization.pixels or scene.cd_info is not None or detection:
        return []
    return ["no valid reference pixel was found over the area processed (all nodata there?): the reference may add "
            "nothing to the output, and its colours are not matched to the LR's"]


def _listed(names: list[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def _nodata_warnings(info: RasterInfo, bands: tuple[int, ...], meta: OutputMeta) -> list[str]:
    """A warning when the selected bands declare different nodata values: a GeoTIFF has one, the output's."""
    values = [info.band_nodata[b - 1] for b in bands] if info.band_nodata else []
    if len({repr(v) for v in values}) <= 1:
        return []
    listed = ", ".join(f"band {b} {v}" for b, v in zip(bands, values))
    return [f"the bands declare different nodata values ({listed}); the output has one, {meta.nodata}, for every "
            "band (a GeoTIFF holds one): each band's own nodata pixels become it, and a valid pixel equal to it is "
            "moved to the next value (docs/data-contract.md)"]


_INPUT_NAMES = {"ref": "a reference (`ref`)", "cd": "a change mask (`cd`)", "map": "a map (`map`)",
                "style": "a style image (`style`)"}


def _unused_named(key: str, opts: UpscaleOptions) -> str:
    """How a refusal names an input: a style sampled from the model's flow is no image (found in review)."""
    return "a sampled style (`style` sample)" if key == "style" and opts.style == "sample" else _INPUT_NAMES[key]


def _check_inputs(sr: SuperResolver, opts: UpscaleOptions) -> None:
    """Refuse an input the model cannot use (it would change nothing), unless ``ignore_unused``."""
    given = {"ref": opts.ref, "cd": None if opts.cd == "none" else opts.cd, "map": opts.map,
             "style": opts.style if opts.style not in (None, "none") else None}
    if given["cd"] not in (None, "auto") and opts.ref is None and not opts.ignore_unused:
        raise OptionError(f"cd {given['cd']}: a change mask marks where the reference is out of date, and no "
                          "reference was given; give `ref`, leave the mask out, or give `ignore_unused`", param="cd")
    if opts.ref is None and "ref" in model_requires(sr) and not opts.ignore_unused:
        raise OptionError(f"model {sr.name}: takes its detail from a reference, and no reference was given, so it "
                          "would be bicubic; give `ref`, choose another `model`, or give `ignore_unused`", param="ref")
    if opts.ref is None and not opts.ignore_unused:  # reference settings without a reference: likely a lost --ref
        if opts.ref_bands is not None:
            raise OptionError(f"ref_bands {opts.ref_bands}: picks the reference's bands, and no reference was "
                              "given; give `ref`, leave `ref_bands` out, or give `ignore_unused`", param="ref_bands")
        if not opts.coregister:  # (on, the default, cannot be told from given)
            raise OptionError("co-registration is turned off, and no reference was given (it concerns a "
                              "reference); give `ref`, leave the setting out, or give `ignore_unused`",
                              param="coregister")
        if not opts.cloud_masks:
            raise OptionError("the inputs' cloud masks are turned off, and no reference was given (they concern "
                              "the reference); give `ref`, leave the setting out, or give `ignore_unused`",
                              param="cloud_masks")
    unused = [k for k, v in given.items() if v is not None and k not in model_inputs(sr)]
    if unused and not opts.ignore_unused:
        uses = ", ".join(sorted(model_inputs(sr))) or "nothing but the LR"
        off = " with `ref_detail` off" if opts.sampler.reference_detail is False else ""  # maybe why (lite)
        named = " or ".join(_unused_named(k, opts) for k in unused)
        raise OptionError(
            f"model {sr.name}: cannot use {named}{off}, so it would change nothing (this model{off} uses {uses}; see "
            "`geosr models`); leave it out, choose another model, or give `ignore_unused`")


def _output_meta(info: RasterInfo, bands: tuple[int, ...], cfg: OutputConfig) -> OutputMeta:
    """Output dtype, nodata and band metadata carried over from the LR's selected bands."""
    dtype = info.dtypes[bands[0] - 1]
    # the selected bands' own (band 1's may differ or be none: a VRT, a STAC item, a list of band files, --bands)
    declared = [info.band_nodata[b - 1] for b in bands] if info.band_nodata else [info.nodata]
    nodata, write_mask = next((v for v in declared if v is not None), None), False
    if nodata is not None and np.dtype(dtype).itemsize == 8 and np.dtype(dtype).kind in "iu" \
            and abs(nodata) > 2**53:  # beyond float64's integers: rasterio hands a nodata on to GDAL as a double,
        # which a 64-bit integer band's file keeps as text a few digits long (INT64_MIN read back as -9: the fill
        # pixels became data; found in review): a mask band says which pixels are nodata
        nodata, write_mask = None, True
    if nodata is None and not write_mask:
        if np.issubdtype(np.dtype(dtype), np.floating):
            nodata = float("nan")  # float LR without nodata: NaN inputs become declared nodata
        elif info.has_mask:
            write_mask = True
    own = tuple(info.colorinterp[b - 1] for b in bands)
    # an alpha band selected is data in the output (whose mask stands for it): undefined, the others keep theirs
    # (an RGBA file's RGB lost its colours: gray, undefined, undefined, undefined; found in review)
    colorinterp = tuple("undefined" if c == "alpha" else c for c in own)
    if len(bands) >= 3 and names_rgb(info, bands[:3]):  # e.g. Sentinel-2 B04,B03,B02, whose files say gray or
        # undefined: QGIS shows colour; a band after them (B08) keeps its own unless it claims one of the three
        # (or alpha: the output's bands have no alpha, the mask stands for it)
        rest = tuple("undefined" if c in ("red", "green", "blue", "alpha") else c for c in own[3:])
        colorinterp = ("red", "green", "blue", *rest)
    return OutputMeta(
        dtype=dtype,
        count=len(bands),
        nodata=nodata,
        write_mask=write_mask,
        descriptions=tuple(info.descriptions[b - 1] for b in bands),
        scales=tuple(info.scales[b - 1] for b in bands),
        offsets=tuple(info.offsets[b - 1] for b in bands),
        colorinterp=colorinterp,
        units=tuple(info.units[b - 1] for b in bands) if info.units else (),
        band_tags=tuple(_carried(info.band_tags[b - 1]) for b in bands) if info.band_tags else (),
        # GDAL's IMAGERY domain (acquisition time, satellite) in the default one: the COG driver copies no other
        tags={**info.imagery, **_carried(info.tags)},
        compress=cfg.compress,
        compress_level=cfg.compress_level,
        blocksize=cfg.blocksize,
        overview_resampling=cfg.overview_resampling,
    )


# Metadata of the LR that does not describe the output: how GDAL reads its grid (a pixel-is-point LR's transform is
# already converted to the output's pixel-is-area one), statistics of other pixels, geosr's own record of an earlier
# run (this run writes its own), GDAL's RGB nodata colour (the output's nodata and mask say where it has none; kept,
# GDAL read the mask from it: empty pixels as data, or a read-only mask the mask band failed to write into).
NOT_CARRIED = ("AREA_OR_POINT", "STATISTICS_", "GEOSR_", "TIFFTAG_SOFTWARE", "NODATA_VALUES")


def _carried(tags: dict[str, str]) -> dict[str, str]:
    """The LR's dataset or band metadata the output keeps (sensor, acquisition time, wavelengths, ...)."""
    return {k: v for k, v in tags.items() if not k.startswith(NOT_CARRIED)}


def _used_inputs(lr: str, reads: UpscaleOptions, opts: UpscaleOptions, used: frozenset[str]) -> dict[str, str]:
    """Role -> path of each input file the output is made from (its STAC item's derived_from links, its lineage,
    GEOSR_INPUTS): the LR, and each other the model uses (one `ignore_unused` leaves unread is none of its sources;
    `cd` auto or none is no file: GEOSR_CHANGE_DETECTION and GEOSR_OPTIONS say which)."""
    style = opts.style if _is_style_image(opts.style) else None
    ref = reads.ref if "ref" in used else None
    given = (("lr", lr), ("ref", ref), ("cd", reads.cd if ref and "cd" in used else None),
             ("map", opts.map if "map" in used else None), ("style", style if "style" in used else None))
    return {k: v for k, v in given if v and v not in CD_KEYWORDS}


def _tags(scene: Scene, sr: SuperResolver, opts: UpscaleOptions, tcfg: TilingConfig,
          inputs: dict[str, str]) -> dict[str, str]:
    return {
        "GEOSR_VERSION": __version__,
        "GEOSR_MODEL": sr.name,
        # how the model ran: architecture, weights' checksum, resolved sampler, reference detail, LR-consistency
        "GEOSR_MODEL_SETTINGS": json.dumps(
            sr.describe() if hasattr(sr, "describe") else {"model": sr.name}, sort_keys=True
        ),
        "GEOSR_OPTIONS": recorded_options(opts.to_json(), opts.paths),  # the options (geosr.options)
        "GEOSR_SCALE": str(scene.scale),
        "GEOSR_SEED": str(opts.sampler.seed),
        "GEOSR_SAMPLER": to_json(opts.sampler),
        "GEOSR_TILING": to_json(tcfg),
        "GEOSR_INPUTS": json.dumps({k: recorded_name(v) for k, v in inputs.items()}, sort_keys=True),
        "GEOSR_BANDS": json.dumps(list(scene.bands)),
        "GEOSR_STRETCH": json.dumps(scene.stretch.to_dict()),
        "GEOSR_HARMONIZATION": json.dumps(scene.harmonization.to_dict() if scene.harmonization else None),
        # where the reference was found against the LR, and whether it was moved back (geosr.conditioning)
        "GEOSR_COREGISTRATION": json.dumps(scene.coregistration.to_dict() if scene.coregistration else None),
        "GEOSR_CHANGE_CLASSES": json.dumps(scene.cd_table.to_dict() if scene.cd_table else None, sort_keys=True),
    }


def _file_id(path: str | None) -> list | str | None:
    if path is None or path in CD_KEYWORDS:
        return path
    if is_composite(path):  # a STAC item, a Sentinel-2 product, band files: each file it reads, local or remote
        comp = composite(path)
        members = comp.files if comp is not None else ()
        listed = is_file_list(path)  # (a list of URLs is no URL of its own)
        served = _remote_stats([f for f in members if REMOTE.match(f)])
        return [unsigned(path), *(_remote_stat(path) if REMOTE.match(path) and not listed else []),
                *(_stat_id(f) if not REMOTE.match(f) else [unsigned(f), *served[f]] for f in members)]
    # a VRT's sources (a server's: what it says of them), the archive of a /vsizip/ path, a subdataset's container
    sources = remote_sources(path)
    served = _remote_stats(sources)
    behind = [_stat_id(f) for f in gdal_files(path)] + [[unsigned(f), *served[f]] for f in sources]
    if REMOTE.match(path):  # a URL or GDAL path: its name (signed anew, the same), and what its server says of it
        return [unsigned(path), *_remote_stat(path), *behind]
    container = subdataset_container(path)
    if container is not None:  # GPKG:scene.gpkg:table: its name, and its container's (local or on a server)
        return [path, *_remote_stat(container), *behind]
    return _stat_id(path) + behind


# One request per URL and minute in a process (a job's plan, its detection and a batch's parts ask again)
_REMOTE_STATS: dict[str, tuple[float, list[str]]] = {}
REMOTE_STAT_TTL = 60.0  # seconds
# seconds, as long as GDAL waits (geosr.io.rasters.REMOTE_OPTIONS); a server that does not answer in time: a network
# error, retried, not a changed file (it was: "made from other inputs", --overwrite advised; found in review)
REMOTE_STAT_TIMEOUT = 20.0


def _remote_stat(url: str) -> list[str]:
    """What identifies an HTTP(S) input's file (:func:`geosr.io.paths.served_identity`), so that a file changed on its
    server is a changed input (``--resume`` and ``geosr batch`` compare them); nothing for other schemes."""
    target = curl_url(url) or url
    if not target.lower().startswith(("http://", "https://")):
        return []
    cached = _REMOTE_STATS.get(target)
    if cached is not None and time.monotonic() - cached[0] < REMOTE_STAT_TTL:
        return cached[1]
    found = served_identity(target, timeout=REMOTE_STAT_TIMEOUT)
    _REMOTE_STATS[target] = (time.monotonic(), found)
    return found


def _remote_stats(urls: list[str]) -> dict[str, list[str]]:
    """:func:`_remote_stat` of each of ``urls``, asked at once (a mosaic VRT of 400 remote tiles: 400 requests one
    after another took seconds on a loopback server, over a network with TLS far longer; found in review)."""
    if len(urls) <= 1:
        return {u: _remote_stat(u) for u in urls}
    from concurrent.futures import ThreadPoolExecutor

    unique = list(dict.fromkeys(urls))
    with ThreadPoolExecutor(max_workers=min(16, len(unique))) as pool:
        return dict(zip(unique, pool.map(_remote_stat, unique)))


# the parts of a vector file whose bytes change what is read (not an index or the metadata a GIS rewrites): a
# shapefile AOI given another .prj was a job "up to date", its output of the old area skipped (found in review)
_READ_PARTS = (".shx", ".dbf", ".prj", ".cpg", ".dat", ".map", ".id")


def _read_parts(aoi: str | None) -> list[str]:
    """The files of a vector ``aoi`` besides itself that its features are read from."""
    if not aoi or not Path(aoi).is_file():
        return []
    return [f for f in vector_parts(aoi) if Path(f).suffix.lower() in _READ_PARTS]


def _stat_id(path: str) -> list:
    """A local file's identity (:data:`~geosr.pipeline.fingerprints.FILE_IDENTITY`): its path, size and modification
    time, and a digest of sampled content (:func:`_sampled_sha256`): a file replaced keeping a size and time given
    back (``cp -p``, ``tar x``) was taken for the input a journal or record names, its rows mixed with the old file's
    (found in review). Not its status-change time or inode: resetting the access time after reading (``tar
    --atime-preserve``, backup tools), a ``chmod`` or a hard link changes the first, and a FUSE mount without
    ``use_ino``, CIFS ``noserverino`` or another node holding a copy at the same path the second, each refusing a
    resume of an input nobody replaced (found in review); not its device, numbered anew at each mount of a network
    or removable file system."""
    st = os.stat(path)
    # (a FIFO or a device is no file to digest: opening a FIFO waited forever, /dev/zero was read without end; the
    # inputs' checks refuse them in one sentence; found in review)
    digest = _sampled_sha256(path) if stat.S_ISREG(st.st_mode) else "not a regular file"
    return [os.path.abspath(path), st.st_size, st.st_mtime_ns, digest]


# What _sampled_sha256 reads of a file: SAMPLE_CHUNKS chunks of SAMPLE_CHUNK bytes (128 KiB), a smaller file whole (a
# VRT of 400 local tiles reads 50 MiB at each plan: at 1 MiB a file, 400 MiB)
SAMPLE_CHUNK = 16 * 1024
SAMPLE_CHUNKS = 8


def _sampled_sha256(path: str) -> str:
    """SHA-256 over a file's size and a fixed set of its chunks: the first and last 16 KiB and 6 more spaced evenly
    between (a file of up to 128 KiB: all of it). Hand-written: no library digests a sample of a file, and a digest of
    the whole input (gigabytes of a scene) would be read again at each plan, resume and batch. Its limit: a file
    replaced by one of the same size and modification time that differs only outside these chunks goes unseen (a
    few pixels edited in place may; another scene, whose blocks all differ, is caught in practice)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            digest.update(size.to_bytes(8, "little"))
            if size <= SAMPLE_CHUNK * SAMPLE_CHUNKS:
                digest.update(f.read(SAMPLE_CHUNK * SAMPLE_CHUNKS))  # (bounded, whatever the size said)
            else:
                for i in range(SAMPLE_CHUNKS):
                    f.seek((size - SAMPLE_CHUNK) * i // (SAMPLE_CHUNKS - 1))
                    digest.update(f.read(SAMPLE_CHUNK))
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    return digest.hexdigest()


def _carry_mb(plan: WindowPlan, hr: Grid, bands: int, scale: int) -> float:
    """Megabytes the journal's carries take on disk at most (:meth:`geosr.io.journal.Journal.commit`): the blending
    sums and weights (float64) of the output rows a window row leaves open below the next one's top, two at once
    (the next is written before the last is removed)."""
    tops = [plan.window(r, 0) for r in range(plan.n_rows)]
    opened = [min(hr.height, max(0, a.row_off + a.height - b.row_off) * scale) for a, b in zip(tops, tops[1:])]
    rows = max([x + y for x, y in zip(opened, opened[1:])] or opened or [0])
    return (bands + 1) * 8 * rows * hr.width / 2**20


def _memory_mb(plan: WindowPlan, hr: Grid, bands: int, scale: int, sr: SuperResolver, batch: int,
               output_mb: float, assembled: float = 0.0, read: frozenset[str] = frozenset(),
               detection: float = 0.0, *, gpu: bool = False) -> tuple[float, float | None]:
    """The run's peak memory in MB, and on CUDA (``gpu``) the GPU's apart (None on the CPU): the model's weights and
    its forward pass over a batch live there, not in the host's memory (counted there, a host of little RAM with a
    large GPU was refused, a host of much RAM with a small GPU told it fits; found in review). The host's: this
    process as it is now (interpreter, torch, GDAL, the model's weights, the open
    inputs), the blending accumulator's band of rows, the model's forward pass over a batch
    (:func:`~geosr.models.interface.window_memory`, which bench/bench_memory.py calibrates on a window read, stacked,
    run and returned without reference or mask), the ``read`` inputs' stacks (``ref``, ``cd``, ``map``) of the
    batch's windows, or, once they are gone, the output assembled in memory (``assembled`` MB,
    :func:`geosr.io.writer.in_memory`), or the change detection run before (``detection`` bytes,
    :func:`geosr.pipeline.detect_changes.detection_memory`), and GDAL's block cache while the COG is made (at most
    its cap)."""
    runtime = psutil.Process().memory_info().rss
    # the rows under work: a window's, or the output's own where it is shorter (a strip: 128 HR rows at x16 of 8 LR
    # rows, estimated as a 256-px window's 4096 until found by review: 31.8 GB for a run that peaked at 12.7 GB)
    acc = 2 * (bands + 1) * min(plan.size * scale, hr.height) * hr.width * 8
    # the largest window (the scene's windows, which may reach beyond an area of interest), with its halo
    lr_h = max(plan.window(r, 0).height for r in range(plan.n_rows)) + 2 * sr.halo
    lr_w = max(w.width for w in plan.row_windows(0)) + 2 * sr.halo
    lr_area = lr_h * lr_w
    singly = getattr(sr, "one_window_at_a_time", False)
    n = min(batch, plan.n_cols)  # batches are made of one row's windows
    if n == 1 and batch > 1 and not singly:  # a lone window runs in a batch of two (pipeline.upscale._run_model)
        n = 2
    via = getattr(sr, "via", scale)  # what the model makes: a rescaled one, at its trained scale
    area = lr_area * via**2
    # bytes per HR pixel of a window's stack beyond the calibration's (scene.read_stack: an absent input holds no
    # memory; to_batch's zeros for it, and the tensors that replace them when it is read, are in the calibration)
    per_pixel = (bands * 4 + 1) * ("ref" in read) + (8 + 1) * ("cd" in read) + 8 * ("map" in read)
    stack = n * lr_area * scale**2 * per_pixel
    per_window = window_memory(sr, lr_h, lr_w, via)
    # a model that runs the windows of a batch one after the other holds one window's activations at a time
    model = per_window + (n - 1) * area * bands * 4 if singly else n * per_window
    retained = getattr(sr, "retained_memory", None)  # (what the allocator keeps of a window as the next runs)
    model += float(retained(lr_h, lr_w)) if callable(retained) else 0.0
    cache = min(GDAL_CACHE_MB, output_mb) * 2**20
    if not gpu:
        return (runtime + max(acc + stack + model, assembled * 2**20, detection) + cache) / 2**20, None
    weights = sum(p.numel() * p.element_size() for p in _parameters(sr))
    return (runtime + max(acc + stack, assembled * 2**20, detection) + cache) / 2**20, (model + weights) / 2**20


def _parameters(sr: object, depth: int = 4) -> list[torch.Tensor]:
    """The weights of ``sr``'s torch modules, also those its wrappers hold (reference detail, back-projection, a
    backbone, experts), each once, for what they take on a GPU; none for a classical model."""
    found: dict[int, torch.Tensor] = {}

    def walk(obj: object, left: int) -> None:
        if isinstance(obj, torch.nn.Module):
            found.update((id(p), p) for p in obj.parameters())
        elif isinstance(obj, (list, tuple)):
            for item in obj:
                walk(item, left)
        elif left > 0 and hasattr(obj, "__dict__") and not isinstance(obj, type):
            for value in vars(obj).values():
                walk(value, left - 1)

    walk(sr, depth)
    return list(found.values())
