"""Batch manifests: the jobs of ``geosr batch``, read from YAML, JSON, JSON-lines, CSV or a glob of LR files.

Every job is one ``geosr upscale``: an LR raster, an output and any upscale option. Options come from, in
order of precedence: the job itself, the manifest's ``defaults:``, the caller's defaults (the command line),
geosr upscale's own defaults. The path options (``lr``, ``out``, ``ref``, ``cd``, ``map``) and ``id`` are
templates: ``{stem}``, ``{name}`` and ``{dir}`` of the LR file and the job's ``{x}`` are filled in, so one
``defaults: {out: "out/{stem}_x{x}.tif", ref: "refs/{stem}_2019.tif"}`` serves every job. Relative paths are
relative to the manifest's folder (to the working folder for a glob given on the command line).

Reading never stops at the first problem: :func:`read_manifest` returns every job it could make and a
:class:`Problem` for each row it could not, so a caller can list them all. This module reads no raster and
imports neither torch nor dask.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import functools
import glob as globlib
import io
import json
import math
import numbers
import os
import re
import string
import urllib.parse
from dataclasses import asdict, dataclass, field, fields, make_dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from geosr.config import COMPRESSIONS, LR_CONSISTENCY_MODES, SUPPORTED_SCALES
from geosr.errors import InputError
from geosr.io.paths import (
    PROVENANCE_SUFFIX,
    REMOTE,
    STAC_SUFFIX,
    file_key,
    is_file_list,
    local_form,
    maybe_stac_api,
    named,
    sidecar_paths,
)
from geosr.options import SAMPLER_PRESETS, UPSCALE_OPTIONS, UpscaleOptions
from geosr.options.upscale import CD_KEYWORDS

FORMATS = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
PATH_KEYS = ("lr", "out", "ref", "cd", "map")
# options that name a file only sometimes (a box, a built-in class table, a model's name otherwise): where they do,
# relative to the manifest's folder as the paths are, and files no job may write over
FILE_OPTIONS = ("aoi", "cd_classes", "model")
PLACEHOLDERS = ("stem", "name", "dir", "x")
SEPARATORS = "_-. "  # what separates the parts of a band file's name

# the keywords batch() and plan_batch() take besides job options (RunSettings' fields and their own): a misspelt one
# is suggested ("unknown option 'worker'" said nothing of workers; found in review)
CALLER_KEYWORDS = ("results", "client", "scheduler", "workers", "device", "retries", "dashboard", "progress",
                   "on_start", "force", "skip_invalid", "make_dirs", "dry_run", "check_progress", "threads")

# every job option, its type, and geosr upscale's default (None: unset): the job's paths and id, every upscale
# option a job may set (geosr.options declares them), and how finely batch splits a job
OPTIONS: dict[str, tuple[type, Any]] = {
    "id": (str, None),
    "lr": (str, None),
    "out": (str, None),
    **{o.manifest_key: (o.type, o.default_value()) for o in UPSCALE_OPTIONS if o.manifest_key},
    "split_windows": (int, 0),
}
ALIASES = {"scale": "x", "output": "out", "o": "out"}
# refused without a reference when a job's own row gives them
REFERENCE_SETTINGS = ("ref_bands", "coregister", "cloud_masks")
NOT_PER_JOB = {
    "device": "the device is chosen per worker (geosr batch --device), not per job",
    "resume": "every batch job resumes from its journal; there is nothing to set",
    "dry_run": "use geosr batch --dry-run",
    "style": "geosr batch takes no style (a style image or a sampled style is one upscale run's: geosr upscale "
             "--style)",
}


RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img", ".nc", ".png", ".jpg", ".jpeg")


class ManifestError(InputError):
    """A manifest that cannot run: its problems (every invalid row, with the reason) are in ``problems``."""

    def __init__(self, source: str, problems: list["Problem"]) -> None:
        self.source = source
        self.problems = problems
        n = len({p.where for p in problems})
        whole = (source, Path(source).name)  # the manifest itself, not its rows (filed under its name too)
        if problems and all(p.where in whole for p in problems):
            super().__init__("\n".join(f"{source}: {p.message}" for p in problems))
            return
        lines = [f"{source}: {n} invalid job{'s' if n != 1 else ''}, nothing was run:" if n else f"{source}: invalid"]
        lines += [f"  {p}" for p in problems]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class Problem:
    """Why one row of a manifest (``where``: "jobs.csv line 4", "jobs.yaml job 2") cannot run."""

    where: str
    message: str
    job_id: str | None = None
    lr: str | None = None  # the row's LR and output, where it was read far enough to have them
    output: str | None = None

    def __str__(self) -> str:
        who = f" ({self.job_id})" if self.job_id else ""
        return f"{self.where}{who}: {self.message}"

    def to_dict(self) -> dict:
        return asdict(self)


class _JobMethods:
    """What every :class:`JobSpec` can do; its fields are generated from geosr.options (see below)."""

    @property
    def options(self) -> UpscaleOptions:
        """The job's options as :class:`~geosr.options.UpscaleOptions` (checked when the job was read)."""
        return UpscaleOptions.from_flat({o.name: getattr(self, key) for key, o in _BY_KEY.items()})

    def options_on(self, *, device: str = "auto", overwrite: bool | None = None) -> UpscaleOptions:
        """The job's options, run on ``device`` (and with ``overwrite`` when given)."""
        opts = self.options
        out = replace(opts.output_config, overwrite=opts.output_config.overwrite if overwrite is None else overwrite)
        return replace(opts, device=replace(opts.device, device=device), output_config=out)

    def upscale_options(self, *, device: str = "auto", overwrite: bool | None = None) -> dict:
        """Keyword arguments of :func:`geosr.pipeline.upscale.plan_upscale` / ``upscale`` (but ``lr``)."""
        opts = self.options_on(device=device, overwrite=overwrite)
        return dict(output=self.out, **{f.name: getattr(opts, f.name) for f in fields(opts)})

    def inputs(self) -> tuple[str, ...]:
        return tuple(p for p in (self.lr, self.ref, self.cd, self.map) if p)

    def files_read(self) -> tuple[str, ...]:
        """Every file the job reads by name: its inputs and the files its aoi, class table and model name."""
        return self.inputs() + tuple(f for k in FILE_OPTIONS for f in option_files(k, getattr(self, k)))


_BY_KEY = {o.manifest_key: o for o in UPSCALE_OPTIONS if o.manifest_key}
# One job of a batch, with absolute paths and every option resolved (picklable: it goes to workers). Its fields
# are the manifest's keys: id, where, lr, out, each upscale option a job may set, split_windows.
JobSpec = make_dataclass(
    "JobSpec",
    [("id", str), ("where", str), ("lr", str), ("out", str)]
    + [(key, Any, field(default=o.default_value())) for key, o in _BY_KEY.items()]
    + [("split_windows", int, field(default=0))],
    bases=(_JobMethods,), frozen=True, kw_only=True,
)
JobSpec.__module__ = __name__


@dataclass
class Manifest:
    """What a manifest holds: the jobs that could be made, and the problems of the rows that could not."""

    source: str
    jobs: list[JobSpec] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    # every row in the manifest's order: its job, or what a refused row names (checked against the others)
    rows: list["JobSpec | _Refused"] = field(default_factory=list, repr=False)

    def raise_if_invalid(self) -> None:
        if self.problems:
            raise ManifestError(self.source, self.problems)


def is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def read_manifest(
    source: str | os.PathLike[str],
    *,
    defaults: Mapping[str, Any] | None = None,
    base: str | os.PathLike[str] | None = None,
) -> Manifest:
    """Read every job of a manifest file, or of a glob of LR files (``"scenes/*.tif"``).

    ``defaults`` are job options that apply where the manifest says nothing (the command line's). ``base``
    is the folder relative paths start from (default: the manifest's folder; the working folder for a glob).
    Raises :class:`ManifestError` only when the document as a whole cannot be read; row problems are
    returned in :attr:`Manifest.problems`.
    """
    text = os.fspath(source) if isinstance(source, os.PathLike) else str(source)
    path = Path(text).expanduser()
    # (named as the library's and the command line's callers both give them; "the command line" was said to a
    # Python caller; found in review)
    caller, caller_problems = _normalise(dict(defaults or {}), "the options given", null_unsets=False,
                                         more=CALLER_KEYWORDS)
    if caller_problems:  # the caller's options, not a job of the manifest ("1 invalid job"; found in review)
        raise _caller_error(caller_problems)
    if caller:
        _check_caller(caller, path.parent if path.is_file() else Path(base) if base is not None else Path.cwd())
    if not path.is_file() and is_glob(text):
        root = Path(base) if base is not None else Path.cwd()
        manifest = Manifest(source=text)
        if not _add_glob(manifest, text, "the glob", root, {}, caller):  # no manifest at all, not a bad row
            raise ManifestError(text, [Problem(text, _nothing_matched(text, root))])
        return _finish(manifest, root)
    if path.is_dir():
        raise ManifestError(text, [Problem(text, "is a folder; give a manifest file or a glob of LR files (quote it)")])
    if not path.exists():
        raise ManifestError(text, [Problem(text, "no such manifest file")])
    kind = FORMATS.get(path.suffix.lower())
    if kind is None and path.suffix.lower() in RASTER_SUFFIXES:
        raise ManifestError(text, [Problem(text, "is a raster, not a manifest; give a manifest "
                                                 f"({', '.join(FORMATS)}) or a glob of LR files (quoted: "
                                                 "'scenes/*.tif'), or run geosr upscale on this one scene")])
    if kind is None:
        raise ManifestError(
            text, [Problem(text, f"unknown manifest format {path.suffix or '(no suffix)'!r}: use {', '.join(FORMATS)}")]
        )
    root = Path(base) if base is not None else path.resolve().parent
    manifest = Manifest(source=text)
    name = path.name
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(text, [Problem(text, f"cannot be read ({exc})")]) from exc
    if kind in ("yaml", "json"):
        doc = _load_document(raw, kind, text)
        _add_document(manifest, doc, name, root, caller)
    elif kind == "jsonl":
        if not raw.strip():
            raise ManifestError(text, [Problem(text, "holds no jobs (one JSON object per line: {\"lr\": ...})")])
        for n, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{name} line {n}"
            try:
                row = json.loads(line, object_pairs_hook=_json_object)
            except ValueError as exc:
                problem = Problem(where, f"not valid JSON ({exc.args[0] if exc.args else exc})")
                _refuse(manifest, [problem], where, _readable_rows(line), root, caller)
                continue
            _add_row(manifest, row, where, root, {}, caller, null_unsets=False)  # (a table's gap, as CSV's)
    else:
        _add_csv(manifest, raw, name, root, caller)
    return _finish(manifest, root)


# ---- document forms --------------------------------------------------------------------------------------------
def _json_object(pairs: list[tuple[str, Any]]) -> dict:
    """A JSON object, refusing a key given twice (``json`` keeps the last one silently)."""
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"key {k!r} given twice in one object")
        out[k] = v
    return out


def _load_yaml(raw: str) -> Any:
    """``yaml.safe_load``, refusing a key given twice in one mapping (PyYAML keeps the last one silently). The keys
    are checked on the document as written, before any ``<<: *anchor`` is merged (a mapping's own key over a merged
    one is YAML's override, not a duplicate)."""
    import yaml

    loader = _plain_loader()(raw)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        seen: set[int] = set()
        todo = [node]
        while todo:  # every node once (an anchor's node is shared by its aliases)
            n = todo.pop()
            if id(n) in seen:
                continue
            seen.add(id(n))
            if isinstance(n, yaml.MappingNode):
                keys: set[str] = set()
                for k, v in n.value:
                    if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                        if k.value in keys:
                            raise yaml.constructor.ConstructorError(
                                None, None, f"key {k.value!r} given twice in one mapping", k.start_mark)
                        keys.add(k.value)
                    todo += [k, v]
            elif isinstance(n, yaml.SequenceNode):
                todo += n.value
        return loader.construct_document(node)
    finally:
        loader.dispose()


@functools.lru_cache(maxsize=1)
def _plain_loader() -> type:
    """PyYAML's safe loader reading every plain scalar as the text written, but ``null`` (``~``, nothing) and the
    merge key ``<<``: its YAML 1.1 resolvers made an id ``0042`` 34, ``1:30`` 90 and ``NO`` False, and ``seed: 010``
    8 where CSV and the command line read 10 (found in review). Each option's value is typed as a CSV cell is."""
    import yaml

    class PlainLoader(yaml.SafeLoader):
        pass

    PlainLoader.yaml_implicit_resolvers = {}
    PlainLoader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"),
                                      ["~", "n", "N", ""])
    PlainLoader.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), ["<"])
    return PlainLoader


def _load_document(raw: str, kind: str, source: str) -> Any:
    if kind == "json":
        try:
            return json.loads(raw, object_pairs_hook=_json_object)
        except ValueError as exc:
            raise ManifestError(source, [Problem(source, f"not valid JSON ({exc})")]) from exc
    import yaml

    try:
        return _load_yaml(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        reason = getattr(exc, "problem", None) or str(exc)
        raise ManifestError(source, [Problem(source, f"not valid YAML{at} ({reason})")]) from exc


def _add_document(manifest: Manifest, doc: Any, name: str, root: Path, caller: dict) -> None:
    if doc is None:
        doc = []
    if isinstance(doc, list):
        doc = {"jobs": doc}
    if not isinstance(doc, dict):
        raise ManifestError(manifest.source, [Problem(name, "must be a list of jobs or a mapping with jobs: / glob:")])
    unknown = sorted(set(doc) - {"defaults", "jobs", "glob"})
    if unknown:
        hint = " (job options go under defaults: or in each job)" if any(_key(k) in OPTIONS for k in unknown) else ""
        raise ManifestError(
            manifest.source,
            [Problem(name, f"unknown top-level key{'s' if len(unknown) > 1 else ''} {', '.join(map(str, unknown))}: "
                           f"use defaults:, jobs: and glob:{hint}")],
        )
    defaults = doc.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ManifestError(manifest.source, [Problem(f"{name} defaults", "must be a mapping of job options")])
    defaults, problems = _normalise(defaults, f"{name} defaults")
    if problems:
        raise ManifestError(manifest.source, problems)
    jobs = doc.get("jobs") or []
    if not isinstance(jobs, list):
        raise ManifestError(manifest.source, [Problem(f"{name} jobs", "must be a list of jobs")])
    globs = doc.get("glob") or []
    globs = [globs] if isinstance(globs, str) else globs
    if not isinstance(globs, list) or not all(isinstance(g, str) for g in globs):
        raise ManifestError(manifest.source, [Problem(f"{name} glob", "must be a pattern or a list of patterns")])
    if not jobs and not globs:
        raise ManifestError(manifest.source, [Problem(name, "holds no jobs (give jobs: or glob:)")])
    for i, row in enumerate(jobs, start=1):
        _add_row(manifest, row, f"{name} job {i}", root, defaults, caller)
    for pattern in globs:
        _add_glob(manifest, pattern, f"{name} glob", root, defaults, caller)


def _add_csv(manifest: Manifest, raw: str, name: str, root: Path, caller: dict) -> None:
    reader = csv.reader(io.StringIO(raw))
    rows = list(reader)
    if not rows:
        raise ManifestError(manifest.source, [Problem(name, "is empty (the first line names the columns: lr,out,...)")])
    header = [h.strip() for h in rows[0]]
    if "lr" not in {_key(h) for h in header}:
        other = next((sep for sep in (";", "\t", "|") if sep in rows[0][0]), None)
        hint = f" (its columns are separated by {'a tab' if other == chr(9) else repr(other)}; use commas)" if \
            other else ""
        raise ManifestError(manifest.source, [Problem(f"{name} line 1", f"the header has no lr column{hint}")])
    first: dict[str, str] = {}
    for h in header:  # x,x (or x,scale): one value of the two would be dropped in every row
        if not h:  # an empty column name: "unknown column ''" below
            continue
        if _key(h) in first:
            what = f"two {h!r} columns" if h == first[_key(h)] else \
                f"two columns for {_key(h)} ({first[_key(h)]!r} and {h!r})"
            raise ManifestError(manifest.source, [Problem(f"{name} line 1", f"the header has {what}: one column "
                                                          "per option")])
        first[_key(h)] = h
    unknown = []
    for h in header:  # a misspelt column is wrong in every row, its empty cells included: the header is refused
        key = _key(h)
        if key not in OPTIONS and key not in NOT_PER_JOB:
            unknown.append(Problem(f"{name} line 1", f"unknown column {h!r}{_suggestion(key)}"))
    if unknown:
        raise ManifestError(manifest.source, unknown)
    if not any(any(c.strip() for c in cells) for cells in rows[1:]):
        raise ManifestError(manifest.source, [Problem(manifest.source, "holds no jobs (only its header line)")])
    for n, cells in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in cells):
            continue
        where = f"{name} line {n}"
        if len(cells) > len(header):  # a band list not quoted, say: every cell may name a file
            problem = Problem(where, f"has {len(cells)} cells but the header names {len(header)} columns")
            row = {h: c.strip() for h, c in zip(header, cells) if c.strip() != ""}
            _refuse(manifest, [problem], where, [row], root, caller, extra=[c.strip() for c in cells if c.strip()])
            continue
        row = {h: c.strip() for h, c in zip(header, cells) if c.strip() != ""}
        _add_row(manifest, row, where, root, {}, caller)


def _add_glob(manifest: Manifest, pattern: str, where: str, root: Path, defaults: dict, caller: dict) -> int:
    """Add a row per file or Sentinel-2 product folder (``X.SAFE``, as upscale reads it) ``pattern`` matches;
    returns how many it matched. (Other folders are not scenes: ``in/*`` also matches folders of anything.)"""
    from geosr.io.sentinel2 import safe_metadata

    full = pattern if os.path.isabs(os.path.expanduser(pattern)) else str(root / pattern)
    matches = sorted(p.rstrip(os.sep) for p in globlib.glob(os.path.expanduser(full), recursive=True)
                     if (os.path.isfile(p) or os.path.isdir(p) and safe_metadata(Path(p)) is not None)
                     and not _in_work_folder(p) and not _made_by_batch(Path(p)))
    products = [p for p in matches if os.path.isdir(p)]  # a product is one scene: not its files too ('in/**')
    matches = [p for p in matches if not any(Path(f) in Path(p).parents for f in products)]
    if not matches:
        manifest.problems.append(Problem(where, f"{pattern!r} {_nothing_matched(pattern, root)}"))
    for p in matches:
        _add_row(manifest, {"lr": p}, f"{where} {os.path.relpath(p, root)}", root, defaults, caller)
    return len(matches)


RESULTS_SUFFIX = ".results.jsonl"  # a batch's results manifest: JOBS.results.jsonl, or geosr-batch.results.jsonl


def _nothing_matched(pattern: str, root: Path) -> str:
    """Why ``pattern`` (relative to ``root``) gave no scene: it matches no file, or only files an earlier batch wrote
    (said so: "matches no file" was false where `ls` showed them; found in review)."""
    full = pattern if os.path.isabs(os.path.expanduser(pattern)) else str(root / pattern)
    found = [p for p in globlib.glob(os.path.expanduser(full), recursive=True) if os.path.isfile(p)]
    if not found:
        return "matches no file"
    return (f"matches only files a batch wrote ({len(found)}: outputs, their records, sidecars or results, e.g. "
            f"{os.path.basename(found[0])}), which a glob leaves out; to take outputs as inputs, list them in a "
            "manifest")


def _in_work_folder(path: str) -> bool:
    """Whether ``path`` lies in an output's work folder (``OUT.geosr-work/``: a stopped run's chunks, its change
    mask), which the run that finishes it removes: never an input of a glob."""
    from geosr.io.outputs import WORK_SUFFIX

    return any(part.endswith(WORK_SUFFIX) for part in Path(path).parts[:-1])


def _made_by_batch(path: Path) -> bool:
    """A file an earlier geosr batch wrote: an output with its record beside it (``<out>.geosr.json``), the record
    itself, the provenance raster or STAC item of such an output, a results manifest (``*.results.jsonl``), or
    GDAL's metadata file of any of them. A glob
    leaves them out, so that ``-o '{stem}_x4.tif'`` beside the inputs (or a glob over an output folder) can run
    again (to go on after a stop, or to skip what is done) without taking its outputs for inputs."""
    from geosr.pipeline.batch.records import RECORD_SUFFIX, record_path

    name = path.name
    if name.endswith(RESULTS_SUFFIX):  # a batch's results manifest (`geosr batch '*'` took its own on a rerun)
        return True
    if name.endswith(".aux.xml"):  # (GDAL's, of a file beside it)
        return _made_by_batch(path.with_name(name[: -len(".aux.xml")]))
    if name.endswith(RECORD_SUFFIX) or record_path(path).exists():
        return True
    side = next((s for s in (PROVENANCE_SUFFIX, STAC_SUFFIX) if name.endswith(s)), None)
    if side is None:
        return False
    stem = name[: -len(side)]
    return any(path.parent.glob(f"{globlib.escape(stem)}.*{RECORD_SUFFIX}"))


# ---- one row ---------------------------------------------------------------------------------------------------
def _key(key: Any) -> str:
    k = str(key).strip().lower().replace("-", "_").lstrip("_")
    return ALIASES.get(k, k)


def _suggestion(key: str, more: tuple[str, ...] = ()) -> str:
    """`` (did you mean x?)`` for an unknown key close to an option's name (or one of ``more``), else nothing."""
    close = difflib.get_close_matches(key, list(OPTIONS) + list(ALIASES) + list(more), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _normalise(row: dict, where: str, *, null_unsets: bool = True,
               more: tuple[str, ...] = ()) -> tuple[dict, list[Problem]]:
    """Keys to canonical names and values to their types; one problem per bad key or value. A key given as None
    (YAML's ``ref: null`` or ``ref:``, JSON's null) sets the option to upscale's own default, over what defaults
    or the command line give, ``null_unsets``; else (the caller's keywords) it is not given. ``more``: other
    names the caller takes, for the suggestion of a misspelt key."""
    out: dict[str, Any] = {}
    problems: list[Problem] = []
    for raw_key, value in row.items():
        key = _key(raw_key)
        if key in NOT_PER_JOB:
            problems.append(Problem(where, f"{raw_key}: {NOT_PER_JOB[key]}"))
            continue
        if key not in OPTIONS:
            # (a run setting given where none is taken, plan_batch(workers=2), was "did you mean workers?"; review)
            why = " (a setting of the batch's run, which this call does not take)" if key in more else \
                _suggestion(key, more)
            problems.append(Problem(where, f"unknown option {raw_key!r}{why}"))
            continue
        if key in out:
            problems.append(Problem(where, f"{raw_key}: given twice"))
            continue
        if value is None:
            if null_unsets:  # (a job could not drop a `ref` its defaults gave: refused as an unused input; review)
                out[key] = OPTIONS[key][1]
            continue
        try:
            out[key] = _typed(key, value)
        except ValueError as exc:
            problems.append(Problem(where, f"{raw_key}: {exc}"))
    return out, problems


_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")  # a true-or-false option's words


def _typed(key: str, value: Any) -> Any:
    kind = OPTIONS[key][0]
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"{value!r} is not true or false")
    if kind is int:
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a whole number")
        if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral) and float(value).is_integer():
            return int(value)  # (a whole np.float32 too, as upscale takes it; found in review)
        try:
            return int(str(value).strip())
        except ValueError:
            pass
        try:  # "4.0", as YAML's 4.0 reads (its float was taken, as JSON's 4.0 is; found in review)
            number = float(str(value).strip())
        except ValueError:
            number = math.nan
        if math.isfinite(number) and number.is_integer():
            return int(number)
        raise ValueError(f"{value!r} is not a whole number")
    if key == "lr_consistency" and (isinstance(value, bool) or str(value).strip().lower() in _TRUE + _FALSE):
        # (JSON's true and false, YAML's on, off, yes, no as written: one of them read as a boolean before)
        if value is True or str(value).strip().lower() in _TRUE:
            raise ValueError(f"{str(value)!r} is not a mode: use box or bicubic, or leave it out for the "
                             "checkpoint's own setting")
        return "off"
    if key in ("bands", "ref_bands") and isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if key == "aoi" and isinstance(value, (list, tuple)) and len(value) == 4 and \
            all(isinstance(v, (int, float, str)) and not isinstance(v, bool) for v in value):
        return ",".join(str(v) for v in value)  # a box, as upscale takes it (it was "expects a single value")
    if isinstance(value, (dict, list, tuple)):
        raise ValueError(f"expects a single value, not {type(value).__name__}")
    return os.fspath(value) if isinstance(value, os.PathLike) else str(value)  # (a PathLike's str(): its repr)


def _check_caller(caller: dict, root: Path) -> None:
    """The caller's own values checked once, as those of a job of them alone: a bad one (``x`` 1, ``compress``
    zzz) was every row's problem, each job "invalid", or with ``skip_invalid`` failed, exit 1, an earlier results
    manifest's "ok" lines rewritten (found in review). Raises OptionError naming them."""
    # (a setting checked against another that a row or the manifest's defaults may give is the rows' to judge:
    # `compress_level` 15 was refused against the default DEFLATE, every job's ZSTD; found in review)
    own = {k: v for k, v in caller.items() if not (k == "compress_level" and "compress" not in caller)
           and not (k == "overlap" and "window" not in caller)}
    probe = {k: d for k, (_, d) in OPTIONS.items()} | own
    probe |= {"lr": probe.get("lr") or "options.tif", "out": probe.get("out") or "options_out.tif"}
    if not probe.get("ref"):  # (reference settings concern the jobs with a reference, as _add_row has them)
        probe.update({k: OPTIONS[k][1] for k in REFERENCE_SETTINGS})
    if not probe.get("aoi"):
        probe["aoi_crs"] = OPTIONS["aoi_crs"][1]
    _, problems = _resolve(probe, "the options given", root)
    if problems:
        raise _caller_error(problems)


def _caller_error(problems: list[Problem]) -> Exception:
    """The caller's bad options as one OptionError, each named as the caller gave it: the CLI's flag for the option
    a message begins with (``split_windows: ...`` was said to `--split-windows -1`; found in review)."""
    from geosr.errors import OptionError

    said = []
    for p in problems:
        m = re.match(r"([a-z_]+)(?=[: ])", p.message)
        said.append(f"`{m.group(1)}`{p.message[m.end():]}" if m and m.group(1) in OPTIONS and len(problems) > 1
                    else p.message)
    m = re.match(r"([a-z_]+)(?=[: ])", said[0])
    return OptionError("; ".join(said), param=m.group(1) if m and m.group(1) in OPTIONS else None)


def _add_row(manifest: Manifest, row: Any, where: str, root: Path, defaults: dict, caller: dict, *,
             null_unsets: bool = True) -> None:
    if not isinstance(row, dict):
        manifest.problems.append(Problem(where, "a job must be a mapping of options (lr: ..., out: ...)"))
        return
    own, problems = _normalise(row, where, null_unsets=null_unsets)
    if not problems:
        merged = {k: d for k, (_, d) in OPTIONS.items()}
        merged.update(caller)
        merged.update(defaults)
        merged.update(own)
        if not merged.get("ref"):  # reference settings given to every job concern those with a reference
            merged.update({k: OPTIONS[k][1] for k in REFERENCE_SETTINGS if k not in own})
        if not merged.get("aoi") and "aoi_crs" not in own:  # a default --aoi-crs concerns the jobs with an aoi
            merged["aoi_crs"] = OPTIONS["aoi_crs"][1]
        spec, problems = _resolve(merged, where, root)
        if not problems:
            manifest.jobs.append(spec)
            manifest.rows.append(spec)
            return
    _refuse(manifest, problems, where, [{_key(k): v for k, v in row.items()}], root, caller, defaults)


def _refuse(manifest: Manifest, problems: list[Problem], where: str, rows: list[dict], root: Path, caller: dict,
            defaults: dict | None = None, extra: list[str] = ()) -> None:
    """Record a refused row: its problems, named by what it can be told to be (its first reading of ``rows``), and
    what every reading names (a JSON line with a key given twice: its first and its last values; ``extra``: other
    cells that may name files) for the checks across rows."""
    readings = [{**caller, **(defaults or {}), **r} for r in rows] or [{**caller, **(defaults or {})}]
    given = readings[0]
    job_id = _row_name(given)
    files = [_row_files(r, root) for r in readings]
    lr, out = files[0].get("lr"), files[0].get("out")
    manifest.problems.extend(replace(p, job_id=job_id, lr=p.lr or lr, output=p.output or out) for p in problems)
    inputs = [f for fs in files for k, f in fs.items() if k != "out"]
    inputs += [p for c in extra if (p := _absolute(c, root, many=True))]
    manifest.rows.append(_Refused(where=where, id=job_id, id_given=bool(given.get("id")), out=out,
                                  files=tuple(dict.fromkeys(inputs))))


def _readable_rows(line: str) -> list[dict]:
    """What a JSON line refused for a key given twice reads as with its first values and with its last (keys as
    options name them); none for a line that is not JSON at all."""
    def first_wins(pairs: list[tuple[str, Any]]) -> dict:
        out: dict = {}
        for k, v in pairs:
            out.setdefault(k, v)
        return out

    rows = []
    for hook in (first_wins, dict):
        try:
            row = json.loads(line, object_pairs_hook=hook)
        except ValueError:
            return []
        if isinstance(row, dict):
            rows.append({_key(k): v for k, v in row.items()})
    return rows


@dataclass(frozen=True)
class _Refused:
    """What a refused row names, as far as it can be told: with ``--skip-invalid`` it does not run, but its
    inputs must stay untouched by the jobs that do, and its id and output clash with theirs as a job's would."""

    where: str
    id: str | None  # the name its results line goes by: its id, else its output's stem (None: neither told)
    id_given: bool
    out: str | None
    files: tuple[str, ...]

    def inputs(self) -> tuple[str, ...]:
        return self.files


def _row_files(v: dict, root: Path) -> dict[str, str]:
    """The paths of a refused row (``lr``, ``out``, ``ref``, ``cd``, ``map``), as far as they can be told (a bad
    template or a missing lr leaves them out)."""
    lr, out = _row_paths(v, root)
    files = {k: p for k, p in (("lr", lr), ("out", out)) if p}
    if lr:
        values = template_values(lr, v.get("x", ""))
        for k in PATH_KEYS[2:]:
            if v.get(k):
                with contextlib.suppress(Exception):  # as in _row_paths: a name for the checks, when it has one
                    p = _absolute(_expand(str(v[k]), k, values, []), root, many=k == "ref", keywords=k == "cd")
                    if p:
                        files[k] = p
    for k in FILE_OPTIONS:
        for i, f in enumerate(option_files(k, v.get(k), root)):
            files[f"{k}{i}"] = _absolute(f, root) or f
    return files


def _literal(raw: str, root: Path) -> bool:
    """Whether a row's ``lr`` names files as they are: a file whose name holds braces (a glob's match,
    `scene{1}.tif`) is that file, lr is no template (its `{{` unescaped and `{1}` an unknown placeholder refused it;
    found in review); other braces are said to be none."""
    parts = [q.strip() for q in raw.split(",")]  # (band files separated by commas, each a file as it is named)
    return os.path.lexists(_absolute(raw, root) or "") or len(parts) > 1 and all(
        q and os.path.lexists(_absolute(q, root) or "") for q in parts)


def _row_paths(v: dict, root: Path) -> tuple[str | None, str | None]:
    """The LR and output paths of a row refused while read (a bad option value), as far as they can be told, for
    its results line; None where they cannot."""
    try:
        raw = str(v["lr"]) if v.get("lr") else None  # (a file named with braces: as it is, as the row's job reads it)
        lr = _absolute(raw if _literal(raw, root) else _expand(raw, "lr", {}, []), root, many=True) if raw else None
        values = template_values(lr, v.get("x", "")) if lr else {}
        out = _absolute(_expand(str(v["out"]), "out", values, []), root) if v.get("out") else None
    except Exception:  # noqa: BLE001 - only a convenience for the results line
        return None, None
    return lr, out


def _row_name(v: dict) -> str | None:
    """The name an invalid row goes by in the messages and results, as its job would have (:func:`_finish`): its
    id, else its output's stem (templates filled from its lr); None when neither can be told."""
    values = template_values(str(v["lr"]), v.get("x", "")) if v.get("lr") else {}
    if v.get("id"):
        return _expand(str(v["id"]), "id", values, []) or str(v["id"])
    out = _expand(str(v["out"]), "out", values, []) if v.get("out") else None
    return Path(out).stem if out else None


def _resolve(v: dict, where: str, root: Path) -> tuple[JobSpec | None, list[Problem]]:
    problems: list[str] = []
    nul = [k for k, x in v.items() if isinstance(x, str) and "\0" in x]
    if nul:  # (a YAML or JSON "\u0000": os.stat raised ValueError, an internal error, exit 1; found in review)
        return None, [Problem(where, f"{k}: holds a NUL character, which no file's name nor option can") for k in nul]
    if not v.get("lr"):
        return None, [Problem(where, "has no lr (the low-resolution raster)")]
    raw = str(v["lr"])
    lr = _absolute(raw if _literal(raw, root) else _expand(raw, "lr", {}, problems), root, many=True)
    if lr is None:
        return None, [Problem(where, m) for m in problems]
    values = template_values(lr, v["x"])
    if not v.get("out"):
        problems.append("has no out (the output path; a template such as out/{stem}_x{x}.tif works)")
    paths = {k: _absolute(_expand(v[k], k, values, problems), root, many=k == "ref", keywords=k == "cd")
             for k in PATH_KEYS[1:] if v.get(k)}
    # (the output as written: a backslash its template takes from an input's name is that file's; found in review)
    problems += _backslashed({"lr": lr, **paths, "out": str(v["out"]) if v.get("out") else None})
    written = _expand(str(v["out"]), "out", values, []) if v.get("out") else None
    if written and (not Path(written).name or written.endswith(("/", os.sep))):  # "/", "out/": no file's name
        problems.append(f"out {written}: names a folder; give the path of the output file (a template such as "
                        "out/{stem}_x{x}.tif works)")
        paths.pop("out", None)
    job_id = _expand(v["id"], "id", values, problems) if v.get("id") else None
    if v["x"] not in SUPPORTED_SCALES:
        problems.append(f"x: {v['x']} is not a supported scale factor (a whole number from {SUPPORTED_SCALES[0]} to "
                        f"{SUPPORTED_SCALES[-1]})")
    # (window, overlap, steps, batch_size: checked by UpscaleOptions below, in upscale's words; found in review)
    if v.get("split_windows") is not None and v["split_windows"] < 0:
        problems.append(f"split_windows: must be a whole number of at least 0, not {v['split_windows']}")
    if v["compress"].upper() not in COMPRESSIONS:
        problems.append(f"compress: {v['compress']!r} is not one of {', '.join(COMPRESSIONS)}")
    if v["sampler"] not in SAMPLER_PRESETS:
        problems.append(f"sampler: {v['sampler']!r} is not one of {', '.join(SAMPLER_PRESETS)}")
    if v.get("lr_consistency") is not None and v["lr_consistency"] not in LR_CONSISTENCY_MODES:
        problems.append(f"lr_consistency: {v['lr_consistency']!r} is not one of {', '.join(LR_CONSISTENCY_MODES)}")
    out = paths.pop("out", None)
    paths |= {k: _with_absolute_files(k, v[k], root) for k in FILE_OPTIONS if option_files(k, v.get(k), root)}
    told = {"x": "scale", "compress": "compress", "sampler": "sampler", "lr_consistency": "lr_consistency"}
    refused = {told[m.split(":", 1)[0]] for m in problems if m.split(":", 1)[0] in told}
    refused |= {d for r in refused for d in _DEPENDS.get(r, ())}
    flat = {o.name: v[o.manifest_key] for o in UPSCALE_OPTIONS if o.manifest_key and o.name not in refused} | paths
    options = _checked(flat, problems)
    if problems or options is None:
        return None, [Problem(where, m) for m in problems]
    values = {key: options[o.name] for key, o in _BY_KEY.items()}
    return JobSpec(id=job_id or "", where=where, lr=lr, out=out, **values, split_windows=v["split_windows"]), []


def _backslashed(paths: dict[str, str | None]) -> list[str]:
    """A row's paths written with Windows' folder separator, which is a character of a file's name here: an output
    `out\\x.tif` was written as a file of that name beside the manifest, exit 0, and an input was "no such file"
    (found in review). An input of that name that exists is taken; an output, never."""
    if os.sep == "\\":  # pragma: no cover - Windows: its separator
        return []
    found = []
    for key, path in paths.items():
        parts = [q.strip() for q in (path or "").split(",")] if key in ("lr", "ref") else [path or ""]
        odd = [q for q in parts if "\\" in q and not REMOTE.match(q) and (key == "out" or not os.path.lexists(q))]
        if odd:
            found.append(f"{key} {odd[0]}: holds a backslash, which is part of a file's name here, not a folder "
                         "separator; write folders with / (a Windows path?)")
    return found


def _checked(flat: dict[str, Any], problems: list[str]) -> dict[str, Any] | None:
    """``flat`` as :meth:`UpscaleOptions.from_flat` resolves it (the checks every door shares: geosr.options /
    geosr.config), or None with its refusals added to ``problems``: every option it refuses, in one reading (a
    refused option is set aside and the rest checked again), so that a row is not mended one value per run."""
    flat = dict(flat)
    while True:
        try:
            return UpscaleOptions.from_flat(flat).flat()
        except InputError as exc:
            problems.append(str(exc))
            if exc.param not in flat:  # (no option of its own to set aside: the rest cannot be checked without it)
                return None
            for name in (exc.param, *_DEPENDS.get(exc.param, ())):
                flat.pop(name, None)


# options checked against another, set aside with it when it is refused (checked against its default, a
# compress_level 15 meant for a mistyped ZSTD was told "DEFLATE's level is at most 9"; found in review)
_DEPENDS = {"compress": ("compress_level",), "window": ("overlap",)}


def option_files(key: str, value: Any, root: Path | None = None) -> list[str]:
    """The files the value of ``aoi``, ``cd_classes`` or ``model`` (:data:`FILE_OPTIONS`) names, as written: none
    for a box (numbers: LEFT,BOTTOM,RIGHT,TOP, or a mistyped one), a built-in change class table or a model's name;
    each file of a DIFFUSION+BACKBONE. ``root``: the folder a relative path starts from (default: the working
    folder). A model's name wins over a file of that name, as in :func:`geosr.models.registry.resolve_checkpoint`;
    a name with a path's separator or a checkpoint's suffix is a path."""
    if not isinstance(value, str) or not value.strip() or key not in FILE_OPTIONS or REMOTE.match(value):
        return []

    def here(text: str) -> bool:
        return ((root or Path.cwd()) / os.path.expanduser(text)).exists()

    if key == "cd_classes":
        from geosr.conditioning.changes import BUILTIN_TABLES

        return [] if value in BUILTIN_TABLES else [value]
    if key == "aoi":
        parts = [q for q in value.replace(" ", ",").split(",") if q]
        return [] if all(_is_number(q) for q in parts) and not here(value) else [value]
    from geosr.models.registry import CHECKPOINT_SUFFIXES, composite_parts, is_model_name

    def a_file(text: str) -> bool:
        return not is_model_name(text) and ("/" in text or os.sep in text or text.endswith(CHECKPOINT_SUFFIXES)
                                            or here(text))

    if "+" in value and (is_model_name(value) or not here(value)):  # DIFFUSION+BACKBONE, as the registry splits it
        return [p for p in composite_parts(value, here) if p and a_file(p)]
    return [value] if a_file(value) else []


def _with_absolute_files(key: str, value: str, root: Path) -> str:
    """``value`` with each file it names (:func:`option_files`) made absolute from ``root``."""
    files = option_files(key, value, root)
    if key == "model" and files and value not in files:  # the files of a DIFFUSION+BACKBONE
        from geosr.models.registry import composite_parts

        parts = composite_parts(value, lambda text: (root / os.path.expanduser(text)).exists())
        return "+".join(_absolute(p, root) or p if p in files else p for p in parts)
    return (_absolute(value, root) or value) if files else value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def template_values(lr: str, x: Any) -> dict[str, Any]:
    """``{stem}``, ``{name}``, ``{dir}`` and ``{x}`` of a job: of the scene its LR names, not of its path's last
    characters. A URL's query and fragment are left out (``https://h/a/scene.tif?sig=..`` is ``scene``, in
    ``https://h/a``); a Sentinel-2 product is named by its folder or zip (``X.SAFE``, ``X.SAFE.zip`` and
    ``X.SAFE/MTD_MSIL2A.xml`` are all ``X``); a list of band files by what their names share
    (``T33UUB_B02.tif,T33UUB_B03.tif`` is ``T33UUB``; ``scene/B02.tif,scene/B03.tif`` is ``scene``), its
    ``{name}`` being that stem and its ``{dir}`` the folder the files share."""
    if is_file_list(lr):
        scenes = [_scene(q.strip()) for q in lr.split(",")]
        heads = [h for h, _, _ in scenes]
        local = [h for h in heads if not REMOTE.match(h)]
        head = heads[0] if len(set(heads)) == 1 or len(local) < len(heads) else os.path.commonpath(local)
        stem = _shared_stem([s for _, _, s in scenes]) or head.rstrip("/").rsplit("/", 1)[-1] or scenes[0][2]
        return {"stem": stem, "name": stem, "dir": head, "x": x}
    head, name, stem = _scene(lr)
    return {"stem": stem, "name": name, "dir": head, "x": x}


def _scene(path: str) -> tuple[str, str, str]:
    """(folder, name, stem) of one input path, by the rules of :func:`template_values`. Paths are split as text:
    pathlib would fold a URL's ``//``."""
    path = named(path)  # GDAL's /vsicurl?...&url=ENCODED form: the URL it reads
    if "://" in path:
        path = re.split(r"[?#]", path, maxsplit=1)[0]
    path = path.rstrip("/") or path
    head, _, name = path.rpartition("/")
    if re.fullmatch(r"MTD_MSIL(1C|2A)\.xml", name, re.IGNORECASE) and head:  # the product's metadata file
        head, _, name = head.rpartition("/")
    plain = urllib.parse.unquote(name)  # a URL's name as its file is called (a%20b.tif gave outputs a%20b_x2.tif)
    if "://" in path and "/" not in plain and "\\" not in plain and plain.isprintable():
        name = plain
    low = name.lower()
    stem = name[:-9] if low.endswith(".safe.zip") else name[:-5] if low.endswith(".safe") else Path(name).stem
    if "://" in path and maybe_stac_api(path) and not low.endswith((".safe", ".safe.zip")):  # a STAC API item's
        stem = name  # ID, dots and all (HLS.S30.T33UUB....v2.0 was cut to ...v2; found in review); a .SAFE as above
    archive = re.match(r"^/vsi(?:zip|tar|gzip|7z|rar)/(.+?\.(?:zip|tar|tgz|gz|7z|rar))(?:/|$)", path, re.IGNORECASE)
    if archive:  # a member of an archive: the archive's folder, where an output can go
        head = os.path.dirname(archive.group(1))
    return head or ("/" if path.startswith("/") else "."), name, stem


def _shared_stem(stems: list[str]) -> str:
    """The part of band files' stems they all begin with, ending at a separator (``T33_B02``, ``T33_B03``:
    ``T33``; ``B02``, ``B03``: nothing)."""
    common = os.path.commonprefix(stems)
    if any(len(s) > len(common) and s[len(common)] not in SEPARATORS for s in stems):
        common = common[:max(common.rfind(c) for c in SEPARATORS) + 1]
    return common.rstrip(SEPARATORS)


def _expand(template: str, key: str, values: dict, problems: list[str]) -> str | None:
    """Fill ``{stem}``, ``{name}``, ``{dir}``, ``{x}`` into a template; ``{{`` and ``}}`` are literal braces."""
    try:
        fields_ = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        problems.append(f"{key}: {template!r} is not a valid template ({exc})")
        return None
    bad = [f for f in fields_ if f not in PLACEHOLDERS or f not in values]
    if bad:
        allowed = ", ".join("{" + p + "}" for p in PLACEHOLDERS) if values else "none (lr is not templated)"
        problems.append(f"{key}: unknown placeholder {{{bad[0]}}} in {template!r} (placeholders: {allowed})")
        return None
    try:
        return template.format(**values)
    except (ValueError, IndexError, KeyError) as exc:
        problems.append(f"{key}: {template!r} is not a valid template ({exc})")
        return None


def _absolute(path: str | None, root: Path, *, many: bool = False, keywords: bool = False) -> str | None:
    """A local path relative to the manifest's folder made absolute; URLs, GDAL paths as they are, and with
    ``keywords`` (``cd``) its keywords (auto, none) in lower case, in any case unless a file has that name (as
    upscale takes them; ``AUTO`` was "no such file" here: found in review). With ``many`` (an input), band files
    separated by commas (geosr.io.sources) are each made absolute (a missing one is then named by the run)."""
    if keywords and path is not None and path.lower() in CD_KEYWORDS and not (root / path).exists():
        return path.lower()
    if path is None or REMOTE.match(path) and "," not in path:
        return path
    parts = [q.strip() for q in path.split(",")]
    if many and len(parts) > 1 and all(parts) and not (root / path).exists():
        return ",".join(_absolute(q, root) or "" for q in parts)
    if REMOTE.match(path):
        return path
    p = Path(os.path.expanduser(path))
    return os.path.normpath(str(p if p.is_absolute() else root / p))


_ROW = re.compile(r" (?:job|line) (\d+)$")


def row_number(where: str | None) -> int | None:
    """The line or job number a row's ``where`` names (``jobs.csv line 4``: 4; ``jobs.yaml job 3``: 3); None for
    a glob's rows and for the manifest's own problems."""
    m = _ROW.search(where or "")
    return int(m.group(1)) if m else None


# ---- checks across rows ----------------------------------------------------------------------------------------
def _finish(manifest: Manifest, root: Path) -> Manifest:
    """Give every job an id (outputs of one file name: their paths from ``root``, where the rows' relative paths
    start), then reject duplicate ids, duplicate outputs and outputs that are inputs."""
    jobs = manifest.jobs
    refused = [r for r in manifest.rows if isinstance(r, _Refused)]
    stems: dict[str, int] = {}
    for stem in [Path(j.out).stem for j in jobs if not j.id] + [r.id for r in refused if r.id and not r.id_given]:
        stems[stem] = stems.get(stem, 0) + 1  # a refused row named after its output's stem keeps that name
    named = []
    source = Path(manifest.source).expanduser()
    # (from the working folder, one manifest's ids changed with where it was run; found in review)
    base = Path(root).absolute()  # (as the rows' paths are built on it: a link in it kept)
    for j in jobs:
        if not j.id:
            stem = Path(j.out).stem
            j = replace(j, id=stem if stems[stem] == 1 else os.path.relpath(j.out, base))
        named.append(j)
    by_row = dict(zip(map(id, jobs), named))
    rows = [by_row.get(id(r), r) for r in manifest.rows]
    seen_ids: dict[str, str] = {}
    seen_out: dict[tuple, tuple[str, str]] = {}  # what each job writes: (what it is, which job)
    seen_folded: dict[str, tuple[str, str]] = {}  # each job's output path, case-folded: (as written, which job)
    inputs: dict[tuple, str] = {}
    own = file_key(source) if source.is_file() else None  # (a glob's source is no file)
    for j in rows:
        for p in j.files_read() if isinstance(j, _JobMethods) else j.inputs():
            for part in input_files(p):
                inputs.setdefault(file_key(part), j.where)
    # refused rows claim their names and outputs before any job, wherever they stand: a job clashing with a
    # refused row is refused too, above it or below it (the row, once mended, would clash with it)
    for r in refused:
        if r.id:
            seen_ids.setdefault(r.id, r.where)
        if r.out and Path(r.out).name:  # ("/": refused as naming no file)
            seen_out.setdefault(file_key(r.out), ("output", r.where))
            seen_folded.setdefault(_folded(r.out), (r.out, r.where))
            for what, side in sidecar_paths(r.out).items():
                seen_out.setdefault(file_key(side), (what, r.where))
    ok = []
    for j in rows:
        if isinstance(j, _Refused):
            continue
        reasons = []
        if j.id in seen_ids:
            reasons.append(f"id {j.id!r} is also the id of {seen_ids[j.id]}")
        real_out = file_key(j.out)  # a link or a hard link to another job's output or input is that file
        sides = {what: file_key(p) for what, p in sidecar_paths(j.out).items()}
        if real_out in seen_out:
            reasons.append(f"out {j.out} is also the {' of '.join(seen_out[real_out])}")
        if real_out in inputs:
            reasons.append(f"out {j.out} is an input of {inputs[real_out]}")
        if own is not None and own in (real_out, *sides.values()):
            reasons.append(f"out {j.out} would write over the manifest {manifest.source}")
        clash = [] if real_out in seen_out else [(what, *seen_out[key]) for what, key in sides.items()
                                                 if key in seen_out]
        if clash and all(w == other for w, other, _ in clash) and len({at for *_, at in clash}) == 1:
            # out/a.tif and out/a.tiff would write one a.stac.json
            reasons.append(f"out {j.out} would write its {' and '.join(w for w, *_ in clash)} where {clash[0][2]} "
                           "writes its own")
        elif clash:
            reasons.append(f"out {j.out} would write " + " and ".join(f"its {w} over the {other} of {at}"
                                                                      for w, other, at in clash))
        reasons += [f"out {j.out} would write its {what} over an input of {inputs[key]}"
                    for what, key in sides.items() if key in inputs]
        folded = _folded(j.out)
        if folded in seen_folded and real_out not in seen_out and not reasons:  # (not said twice)
            other, at = seen_folded[folded]
            reasons.append(f"out {j.out} differs from {other}, the output of {at}, only in letter case: one file on "
                           "Windows and macOS, whose file systems ignore case")
        seen_folded.setdefault(folded, (j.out, j.where))
        seen_ids.setdefault(j.id, j.where)
        seen_out.setdefault(real_out, ("output", j.where))
        for what, key in sides.items():
            seen_out.setdefault(key, (what, j.where))
        if reasons:
            manifest.problems.extend(Problem(j.where, r, j.id, j.lr, j.out) for r in reasons)
        else:
            ok.append(j)
    manifest.jobs = ok
    return manifest


def _folded(out: str) -> str:
    """An output's path as a file system that ignores letter case names it (Windows', macOS'): outputs that differ
    only in case wrote one file there, both reported done (found in review); refused on every system, so that a
    manifest means the same wherever it runs."""
    # (lower(), not casefold(): NTFS and APFS map one letter to one, Straße.tif is not Strasse.tif; found in review)
    return os.path.normcase(out if "\0" in out else os.path.realpath(local_form(out))).lower()


def input_files(path: str) -> list[str]:
    """The files one input names: each of a comma-separated list (band files, several references), else itself."""
    return [q.strip() for q in path.split(",") if q.strip()] if is_file_list(path) else [path]

