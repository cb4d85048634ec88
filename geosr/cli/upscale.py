"""``geosr upscale``: super-resolve one georeferenced scene. Its options come from :mod:`geosr.options`."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.text import Text

from geosr.cli.common import (
    count,
    crs_label,
    option_parameter,
    out_console,
    print_coregistration,
    print_json,
    print_sensor_mask,
    print_warnings,
    progress_bar,
    reporting_parameters,
    run_command,
    upscale_option_parameters,
)


def upscale(lr: str, output: Optional[str] = None, quiet: bool = False, json_out: bool = False, **options: Any) -> None:
    """Super-resolve LR by -x into a georeferenced COG (same CRS and footprint, pixel size / x).

    Examples:

      geosr upscale s2.tif -x 4 -o s2_x4.tif

      geosr upscale s2.tif --ref ortho_2019.tif --cd change.tif -x 16 --model reference-paste -o out.tif

      geosr upscale s2.tif -x 8 --aoi 13.36,52.50,13.42,52.53 --dry-run

      geosr upscale s2.tif -x 8 -o out.tif --resume   # after a crash or kill
    """
    from geosr.options import UpscaleOptions
    from geosr.pipeline.upscale import upscale as run_upscale

    resume, dry_run = options.pop("resume"), options.pop("dry_run")

    def call():
        opts = UpscaleOptions.from_flat({k: str(v) if isinstance(v, Path) else v for k, v in options.items()})
        with progress_bar("upscale", enabled=not (quiet or json_out or dry_run)) as update:
            return run_upscale(lr, output=output, options=opts, resume=resume, dry_run=dry_run, progress=update)

    result = run_command(call, json_out=json_out, quiet=quiet, command="upscale")
    peak = None if dry_run else process_peak_mb()  # (the process ran this one job: its peak is the run's)
    if json_out:
        print_json(result.to_dict() | {"peak_memory_mb": peak}, "upscale")
    elif not quiet:
        _print_summary(result, peak)
    else:
        print_warnings(result.warnings, "upscale")


def _signature() -> inspect.Signature:
    """The command's parameters: LR, -o, every option of :data:`geosr.options.UPSCALE_OPTIONS`, -q, --json."""
    lr = inspect.Parameter("lr", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Annotated[
        str, typer.Argument(help="Low-resolution raster: a file, a URL (https://, s3://, gs://) or a GDAL path "
                                 "(/vsizip/...), any GDAL format with a CRS, a container's raster by its subdataset "
                                 "name (GPKG:scene.gpkg:table, NETCDF:\"a.nc\":var); or a STAC item (.json, file or URL), "
                                 "a Sentinel-2 product (.SAFE folder or .zip), a folder of band files, or band "
                                 "files separated by commas.", show_default=False, metavar="LR")])
    return inspect.Signature([
        lr,
        option_parameter("output", str, None, ("-o", "--output"), "Output COG path (required, except with --dry-run)."),
        *upscale_option_parameters(),
        *reporting_parameters(),
    ])


upscale.__signature__ = _signature()  # Typer reads the command's options from here


def process_peak_mb() -> float | None:
    """This process's peak resident memory so far, in MB (None where the system does not say). On Linux its
    VmHWM, which starts afresh at exec: getrusage's ru_maxrss carries a parent's peak over (1512 MB said for a run
    of 370 MB started from a Python process that held 1.5 GB; found in review)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # Windows: the peak working set
        import psutil

        peak = getattr(psutil.Process().memory_info(), "peak_wset", None)
        return None if peak is None else peak / 2**20
    kb_or_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux, bytes on macOS
    return kb_or_bytes / 2**20 if sys.platform == "darwin" else kb_or_bytes / 1024


def _print_summary(r, peak: float | None = None) -> None:
    """The run's summary on the console; ``peak``: the measured peak memory of a run (the plan's alone was printed
    as "peak memory about", read as what the run had used; found in review)."""
    head = "plan" if r.dry_run else f"wrote {r.output}"
    out_console.print(
        Text.assemble((head, "bold green"), f": {r.width} x {r.height} px x {count(r.count, 'band')} {r.dtype}, "
                      f"{crs_label(r.crs)}, x{r.scale} with {r.model}; {count(r.windows, 'window')} of {r.window_size} LR px "
                      f"(overlap {r.overlap}) in {count(r.window_rows, 'row')}"),
        highlight=False,
    )
    extra = f"output {r.output_mb:.1f} MB uncompressed, " + (
        f"peak memory about {r.memory_mb:.0f} MB" if peak is None else
        f"peak memory {peak:.0f} MB (planned about {r.memory_mb:.0f} MB)")
    if r.estimate_s is not None:
        extra += f", model time about {r.estimate_s:.0f} s"
    if r.dry_run and r.resumed_rows:  # what --resume would not redo (its estimate leaves them out)
        extra += f" (resuming after {count(r.resumed_rows, 'row')} of {r.window_rows})"
    if not r.dry_run:
        extra += f", {r.seconds:.1f} s" + (f" (resumed after {count(r.resumed_rows, 'row')})" if r.resumed_rows else "")
    out_console.print(extra, highlight=False)
    for role, note in (r.sources or {}).items():
        out_console.print(f"{'LR' if role == 'lr' else 'reference'} read as one raster: {note}", highlight=False)
    print_coregistration(r.coregistration)
    print_warnings(r.warnings, "upscale")
    cd = r.change_detection
    if cd and cd.get("ran"):
        out_console.print(f"change mask: detected against the reference (--cd auto), {100 * cd['changed_share']:.1f}% "
                          "changed of the area both cover; --cd none to use the reference everywhere", highlight=False)
        print_sensor_mask(cd.get("sensor_mask"))  # with the share of the area it flags
    elif cd and cd.get("kept"):  # a dry run: the detection an earlier run of this job kept, which the run reads
        out_console.print(f"change mask: kept from an earlier run of this job (--cd auto), "
                          f"{100 * cd.get('changed_share', 0):.1f}% changed of the area both cover", highlight=False)
    elif cd:  # a dry run: detected when the run starts
        out_console.print("change mask: to be detected against the reference when the run starts (--cd auto); "
                          "--cd none to use the reference everywhere", highlight=False)
    elif r.change_mask:  # a change mask of one's own, used
        out_console.print(f"change mask: {r.change_mask} (given)", highlight=False)
    if not (cd and cd.get("ran")) and r.sensor_mask:
        print_sensor_mask(r.sensor_mask)
    if r.nodata_share:
        out_console.print(f"nodata: {100 * r.nodata_share:.1f}% of the output (where the LR has no data in any "
                          "selected band)", highlight=False)
    if r.provenance:
        shares = r.provenance["shares"]
        out_console.print(f"provenance in {r.provenance['path']}: reference detail used on "
                          f"{100 * shares['reference detail used']:.1f}% of the pixels, model only on "
                          f"{100 * shares['model only (changed)']:.1f}%, no reference on "
                          f"{100 * shares['no reference available']:.1f}%", highlight=False)
    res = r.resources or {}
    if r.dry_run and res and not res.get("fits", True):
        free, more = res.get("disk_free_mb"), res["memory_mb"] - res["resident_mb"]
        short = ([f"about {more:.0f} MB more memory ({res['memory_available_mb']:.0f} MB available)"]
                 if more > res["memory_available_mb"] else [])  # only what falls short (resources.check's tests)
        short += [f"up to {res['disk_mb']:.0f} MB of disk ({free:.0f} MB free)"] \
            if free is not None and res["disk_mb"] > free else []
        out_console.print(f"does not fit this machine: needs {' and '.join(short)}; a run is refused without "
                          "--force-resources", style="bold yellow", highlight=False)
