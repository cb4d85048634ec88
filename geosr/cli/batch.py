"""``geosr batch``: many upscale jobs on a Dask cluster, resumable, with a results manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from geosr.cli.common import EXIT_BAD_INPUT, err_console, out_console, run_command

TABLE_ROWS = 30  # the summary lists every failed job, and others up to this many rows


def batch(
    manifest: Annotated[str, typer.Argument(help="Jobs file (.yaml, .yml, .json, .jsonl, .csv) or a quoted glob of LR rasters ('scenes/*.tif').", show_default=False)],
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Output path template for jobs without one, e.g. 'out/{stem}_x{x}.tif' ({stem}, {name}, {dir} of the LR, {x}).")] = None,
    ref: Annotated[Optional[str], typer.Option("--ref", help="Reference template for jobs without one, e.g. 'refs/{stem}_2019.tif'.")] = None,
    cd: Annotated[Optional[str], typer.Option("--cd", help="Change mask template for jobs without one.")] = None,
    map: Annotated[Optional[str], typer.Option("--map", help="Map raster template for jobs without one.")] = None,
    scale: Annotated[Optional[int], typer.Option("-x", "--scale", help="Scale factor of jobs without one (default 8).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Model of jobs without one (default: `default`, as in geosr upscale).")] = None,
    bands: Annotated[Optional[str], typer.Option("--bands", help="LR bands of jobs without them (as in geosr upscale).")] = None,
    ref_bands: Annotated[Optional[str], typer.Option("--ref-bands", help="Reference bands of jobs without them.")] = None,
    cd_classes: Annotated[Optional[str], typer.Option("--cd-classes", help="Change class table of jobs without one.")] = None,
    aoi: Annotated[Optional[str], typer.Option("--aoi", help="Area of interest of jobs without one.")] = None,
    aoi_crs: Annotated[Optional[str], typer.Option("--aoi-crs", help="CRS of an --aoi bbox.")] = None,
    window: Annotated[Optional[int], typer.Option("--window", help="Window size in LR pixels.")] = None,
    overlap: Annotated[Optional[int], typer.Option("--overlap", help="Window overlap in LR pixels.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Noise seed.")] = None,
    sampler: Annotated[Optional[str], typer.Option("--sampler", help="Sampler preset: default or paper.")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Sampling steps.")] = None,
    fuse_overlaps: Annotated[Optional[bool], typer.Option("--fuse-overlaps/--no-fuse-overlaps", help="Average overlapping windows at every diffusion step.", show_default=False)] = None,
    ref_detail: Annotated[Optional[bool], typer.Option("--ref-detail/--no-ref-detail", help="Reference detail injection of jobs without the key (default: the checkpoint's own setting).", show_default=False)] = None,
    lr_consistency: Annotated[Optional[str], typer.Option("--lr-consistency", help="Back-projection of jobs without the key: off, box or bicubic (default: the checkpoint's own setting).", show_default=False)] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Windows per model call.")] = None,
    compress: Annotated[Optional[str], typer.Option("--compress", help="COG compression (DEFLATE, LZW, ZSTD, NONE).")] = None,
    split_windows: Annotated[Optional[int], typer.Option("--split-windows", help="Split scenes of more than N windows into bands of whole window rows (about N windows each) run by several workers, then assembled into one COG. 0: never.")] = None,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="Address of a running Dask scheduler (tcp://host:8786). Default: a local cluster.")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", "-w", help="Local workers. Default: one per GPU (each pinned to it), else one per CPU core.")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N (local cluster: which GPUs get workers).")] = "auto",
    retries: Annotated[int, typer.Option("--retries", help="Times a job that raised is retried (it resumes from its journal).")] = 2,
    results: Annotated[Optional[Path], typer.Option("--results", help="Results manifest (JSON lines). Default: MANIFEST's name with .results.jsonl.")] = None,
    dashboard: Annotated[str, typer.Option("--dashboard", help="Dashboard address of the local cluster (':0' any free port, 'none' off).")] = ":8787",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace outputs that exist but were made from other inputs or options (or not by geosr batch).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Run every job, even those whose output is complete and up to date.")] = False,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Run the valid jobs and report the invalid ones as failed (default: run nothing, exit 2).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check every job and show what would run or be skipped; start no cluster, write nothing.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary (every job) on stdout.")] = False,
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
    from geosr.io.manifest import ManifestError
    from geosr.pipeline.batch import batch as run_batch

    options = dict(out=out, ref=ref, cd=cd, map=map, x=scale, model=model, bands=bands, ref_bands=ref_bands,
                   cd_classes=cd_classes, aoi=aoi, aoi_crs=aoi_crs, window=window, overlap=overlap, seed=seed,
                   sampler=sampler, steps=steps, fuse_overlaps=fuse_overlaps, ref_detail=ref_detail, lr_consistency=lr_consistency, batch_size=batch_size,
                   compress=compress, split_windows=split_windows)
    options = {k: v for k, v in options.items() if v is not None}
    show = not (quiet or json_out)

    def call():
        with _Display(enabled=show) as display:
            try:
                return run_batch(
                    manifest, overwrite=overwrite, force=force, skip_invalid=skip_invalid, dry_run=dry_run,
                    results=results, scheduler=scheduler, workers=workers, device=device, retries=retries,
                    dashboard=None if dashboard.lower() == "none" else dashboard,
                    progress=display.update, check_progress=display.checking,
                    on_start=display.started if not quiet else None, **options,
                )
            except ManifestError as exc:
                display.stop()
                _invalid(exc, json_out=json_out, quiet=quiet)

    result = run_command(call, json_out=json_out, quiet=quiet)
    if json_out:
        print(json.dumps({"ok": result.ok, **result.to_dict()}, default=str))
    elif not quiet:
        _summary(result)
    raise typer.Exit(result.exit_code)


def _invalid(exc, *, json_out: bool, quiet: bool) -> None:
    if json_out:
        print(json.dumps({"ok": False, "exit_code": EXIT_BAD_INPUT, "error": str(exc).splitlines()[0],
                          "invalid": [p.to_dict() for p in exc.problems]}))
    else:
        err_console.print(f"geosr: error: {exc}", style="bold red", highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(EXIT_BAD_INPUT)


class _Display:
    """The live view: a checking bar, then jobs and windows bars with ETA; the dashboard line at start."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> "_Display":
        if self.enabled:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.bar = Progress(TextColumn("[bold]{task.description:>8}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=err_console)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self.bar is not None and self.tasks:
            self.bar.stop()
        self.bar = None

    def _set(self, name: str, done: int, total: int) -> None:
        if self.bar is None:
            return
        if not self.tasks:
            self.bar.start()
        if name not in self.tasks:
            self.tasks[name] = self.bar.add_task(name, total=total)
        self.bar.update(self.tasks[name], completed=done, total=total)

    def checking(self, done: int, total: int) -> None:
        self._set("checking", done, total)

    def update(self, p) -> None:
        self._set("jobs", p.jobs_done, p.jobs_total)
        self._set("windows", p.windows_done, p.windows_total)

    def started(self, info: dict) -> None:
        lines = [
            f"geosr batch: {info['jobs']} jobs to run ({info['tasks']} tasks), {info['skipped']} skipped; "
            f"{info['workers']} Dask workers, scheduler {info['scheduler']}",
            f"Dask dashboard: {info['dashboard'] or 'off'}",
        ]
        if info.get("results"):
            lines.append(f"results: {info['results']}")
        console = self.bar.console if self.bar is not None else err_console
        for line in lines:
            console.print(line, highlight=False, markup=False, soft_wrap=True)


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
        detail = j.error if j.error else (j.output or "")
        if j.status == "skipped":
            detail = f"{j.output} (up to date)"
        seconds = "" if j.seconds is None else f"{j.seconds:.1f}"
        windows = "" if j.windows is None else str(j.windows)
        table.add_row(j.id, Text(j.status, style=colours.get(j.status, "white")), windows, seconds, detail)
    out_console.print(table)
    hidden = len(r.jobs) - len(shown)
    if hidden:
        out_console.print(f"... and {hidden} more ok or skipped jobs (see the results manifest)", highlight=False)
    counts = ", ".join(f"{r.count(s)} {s}" for s in ("ok", "skipped", "failed", "cancelled", "planned") if r.count(s))
    line = f"{len(r.jobs)} jobs: {counts or 'none'} in {r.seconds:.1f} s"
    if r.results:
        line += f"; results in {r.results}"
    out_console.print(line, style="bold red" if not r.ok else "bold green", highlight=False, markup=False)
