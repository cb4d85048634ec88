"""``geosr batch``: many upscale jobs on a Dask cluster, resumable, with a results manifest."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.text import Text

from geosr.cli.common import (
    EXIT_BAD_INPUT,
    STDOUT,
    ProgressView,
    cli_words,
    count,
    err_console,
    option_parameter,
    out_console,
    print_json,
    run_command,
    upscale_option_parameters,
)
from geosr.io.paths import credentials_hidden
from geosr.options import OPTIONS_BY_NAME

TABLE_ROWS = 30  # the summary lists every failed job, and others up to this many rows


def batch(
    manifest: str,
    out: Optional[str] = None,
    split_windows: Optional[int] = None,
    scheduler: Optional[str] = None,
    workers: Optional[int] = None,
    device: str = "auto",
    retries: int = 2,
    results: Optional[Path] = None,
    dashboard: str = ":8787",
    overwrite: bool = False,
    force: bool = False,
    skip_invalid: bool = False,
    make_dirs: bool = False,
    dry_run: bool = False,
    quiet: bool = False,
    json_out: bool = False,
    **job_options: Any,
) -> None:
    """Run many upscale jobs on a Dask cluster; resumable; writes a JSON-lines results manifest.

    Every job is checked before anything runs (exit 2 lists each invalid row). A job whose output is complete and was made from the same inputs and options is skipped, so re-running a manifest only does what is left; an interrupted job resumes from its journal.

    Exit 0 when every job succeeded or was skipped, 1 when any failed (the others still ran), 2 for an invalid manifest. Manifest format, templates and results: docs/cli-batch.md.

    Examples:

      geosr batch jobs.yaml

      geosr batch 'scenes/*.tif' -o 'out/{stem}_x4.tif' -x 4 --ref 'refs/{stem}.tif' --model reference-paste

      geosr batch jobs.csv --scheduler tcp://10.0.0.5:8786 --split-windows 64

      geosr batch jobs.yaml --dry-run
    """
    import geosr.pipeline.batch as gb

    def call():
        with _Display(enabled=not (quiet or json_out)) as display:
            try:
                return gb.batch(  # job options left None are unset: the manifest's or upscale's defaults apply
                    manifest, overwrite=overwrite, force=force, skip_invalid=skip_invalid, dry_run=dry_run,
                    make_dirs=make_dirs,
                    results=results, scheduler=scheduler, workers=workers, device=device, retries=retries,
                    dashboard=None if dashboard.lower() == "none" else dashboard,
                    progress=display.progress, check_progress=display.checking,
                    on_start=display.started if not quiet else None,
                    out=out, split_windows=split_windows,
                    **{OPTIONS_BY_NAME[k].manifest_key: str(v) if isinstance(v, Path) else v
                       for k, v in job_options.items() if v is not None},
                )
            except gb.ManifestError as exc:
                display.stop()
                _invalid(exc, json_out=json_out, quiet=quiet)

    result = run_command(call, json_out=json_out, quiet=quiet, command="batch")
    failed = None if result.ok else _failed(result)
    if json_out:  # one document of the commands' shape: ok, and an error when a job failed
        print_json({**result.to_dict(), "ok": result.ok, **({"error": failed} if failed else {})}, "batch")
    elif not quiet:
        _summary(result)
    elif failed:  # quiet: the one line an error gets
        err_console.print(f"geosr: error: {failed}", style="bold red", highlight=False, markup=False, soft_wrap=True)
    if not json_out:  # what each job's run warned of (with --quiet too, as upscale does; `warnings` in --json)
        for j in result.jobs:
            for w in j.warnings or ():
                err_console.print(f"warning: {j.id}: {cli_words(credentials_hidden(w), 'batch')}", style="yellow",
                                  highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(result.exit_code)


def _failed(r) -> str:
    """A batch's failure in one sentence: how many jobs failed or were cancelled, and where their errors are."""
    told = " and ".join(f"{r.count(s)} {s}" for s in ("failed", "cancelled") if r.count(s))
    where = f" (each job's error: {r.results})" if r.results else ""
    return f"{told} of {count(len(r.jobs), 'job')}{where}"


def _invalid(exc, *, json_out: bool, quiet: bool) -> None:
    if json_out:
        print(json.dumps({"ok": False, "exit_code": EXIT_BAD_INPUT, "error": str(exc).splitlines()[0].rstrip(":"),
                          "invalid": [p.to_dict() for p in exc.problems]}), file=STDOUT)
    else:
        err_console.print(f"geosr: error: {exc}", style="bold red", highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(EXIT_BAD_INPUT)


class _Display(ProgressView):
    """The live view of a batch: a checking bar, then jobs and windows bars; the dashboard line at start."""

    def checking(self, done: int, total: int) -> None:
        self.update("checking", done, total)

    def progress(self, p) -> None:
        self.update("jobs", p.jobs_done, p.jobs_total)
        self.update("windows", p.windows_done, p.windows_total)

    def started(self, info: dict) -> None:
        self.print(f"geosr batch: {count(info['jobs'], 'job')} to run ({count(info['tasks'], 'task')}), "
                   f"{info['skipped']} skipped; "
                   f"{count(info['workers'], 'Dask worker')}, scheduler {info['scheduler']}")
        self.print(f"Dask dashboard: {info['dashboard'] or 'off'}")
        if info.get("results"):
            self.print(f"results: {info['results']}")



def _summary(r) -> None:
    from rich.table import Table

    title = "geosr batch (dry run)" if r.dry_run else "geosr batch"
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for col, kw in (("job", {}), ("status", {}), ("windows", {"justify": "right"}), ("seconds", {"justify": "right"}),
                    ("output / error", {"overflow": "fold"})):
        table.add_column(col, **kw)
    colours = {"ok": "green", "skipped": "cyan", "planned": "blue", "failed": "bold red", "cancelled": "yellow"}
    failed = [j for j in r.jobs if j.status in ("failed", "cancelled")]
    others = [j for j in r.jobs if j.status not in ("failed", "cancelled")]
    shown = failed + others[: max(0, TABLE_ROWS - len(failed))]
    for j in sorted(shown, key=r.jobs.index):
        detail = cli_words(j.error, "batch") if j.error else (j.output or "")
        if j.status == "skipped":
            detail = f"{j.output} (up to date)"
        seconds = "" if j.seconds is None else f"{j.seconds:.1f}"
        windows = "" if j.windows is None else str(j.windows)
        table.add_row(j.id, Text(j.status, style=colours.get(j.status, "white")), windows, seconds, detail)
    out_console.print(table)
    hidden = [j.status for j in r.jobs if all(j is not k for k in shown)]
    if hidden:  # (a dry run's were called "ok or skipped", in a results manifest it never writes; found in review)
        kinds = ", ".join(f"{hidden.count(s)} {s}" for s in dict.fromkeys(hidden))
        where = f" (see {r.results})" if r.results and not r.dry_run else ""
        out_console.print(f"... and {len(hidden)} more jobs: {kinds}{where}", highlight=False)
    counts = ", ".join(f"{r.count(s)} {s}" for s in ("ok", "skipped", "failed", "cancelled", "planned") if r.count(s))
    line = f"{count(len(r.jobs), 'job')}: {counts or 'none'} in {r.seconds:.1f} s"
    if r.results:
        line += f"; results in {r.results}"
    out_console.print(line, style="bold red" if not r.ok else "bold green", highlight=False, markup=False)


def _signature() -> inspect.Signature:
    """MANIFEST, -o, every job option of :data:`geosr.options.UPSCALE_OPTIONS` (unset by default), batch's own."""
    def opt(name, typ, default, flags, help_):
        return option_parameter(name, typ, default, flags, help_)

    manifest = inspect.Parameter("manifest", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Annotated[str, typer.Argument(
        help="Jobs file (.yaml, .yml, .json, .jsonl, .csv) or a quoted glob of LR rasters ('scenes/*.tif').",
        show_default=False)])
    return inspect.Signature([
        manifest,
        opt("out", str, None, ("--out", "-o"), "Output path template for jobs without one, e.g. 'out/{stem}_x{x}.tif' "
            "({stem}, {name}, {dir} of the LR, {x})."),
        *upscale_option_parameters(unset=True, skip=("overwrite", "force_resources")),
        opt("split_windows", int, None, ("--split-windows",), "Split scenes of more than N windows into bands of whole "
            "window rows (about N windows each) run by several workers, then assembled into one COG. 0: never."),
        opt("scheduler", str, None, ("--scheduler",), "Address of a running Dask scheduler (tcp://host:8786). Default: "
            "a local cluster."),
        opt("workers", int, None, ("--workers", "-w"), "Local workers. Default: one per GPU (each pinned to it), else "
            "one per CPU core."),
        opt("device", str, "auto", ("--device",), "auto, cpu, cuda or cuda:N (local cluster: which GPUs get workers)."),
        opt("retries", int, 2, ("--retries",), "Times a job that raised is retried (it resumes from its journal)."),
        opt("results", Path, None, ("--results",), "Results manifest (JSON lines). Default: MANIFEST's name with "
            ".results.jsonl."),
        opt("dashboard", str, ":8787", ("--dashboard",), "Dashboard address of the local cluster (':0' any free port, "
            "'none' off)."),
        opt("overwrite", bool, False, ("--overwrite",), "Replace outputs that exist but were made from other inputs or "
            "options (or not by geosr batch)."),
        opt("force", bool, False, ("--force",), "Run every job, even those whose output is complete and up to date."),
        opt("skip_invalid", bool, False, ("--skip-invalid",), "Run the valid jobs and report the invalid ones as failed "
            "(default: run nothing, exit 2)."),
        opt("make_dirs", bool, False, ("--make-dirs",), "Make missing output folders (of -o 'out/{stem}/x4.tif', say) "
            "as their jobs start, and the --results folder (default: such a job is invalid, such a folder refused). "
            "A dry run makes none."),
        opt("dry_run", bool, False, ("--dry-run",), "Check every job and show what would run or be skipped; start no "
            "cluster, write nothing."),
        opt("quiet", bool, False, ("--quiet", "-q"), "No progress or summary."),
        opt("json_out", bool, False, ("--json",), "Print a JSON summary (every job) on stdout."),
    ])


batch.__signature__ = _signature()  # Typer reads the command's options from here
