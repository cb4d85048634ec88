"""``geosr detect-changes``: where the reference no longer shows what the LR shows, as a binary change raster."""

from __future__ import annotations

import inspect
from typing import Annotated, Any

import typer
from rich.text import Text

from geosr.cli import common
from geosr.cli.common import (
    out_console,
    print_coregistration,
    print_json,
    print_sensor_mask,
    print_warnings,
    progress_bar,
    run_command,
)
from geosr.options import DetectChangesOptions

REQUIRED = inspect.Parameter.empty


def detect_changes(lr: str, ref: str, output: str, quiet: bool = False, json_out: bool = False,
                   **options: Any) -> None:
    """Find where REF no longer shows what LR shows (new buildings, roads, fields, water, any real change).

    Writes one uint8 band on a grid --refine times finer than the LR's (4 by default: the outlines fall inside
    the LR pixels they cut): 0 unchanged, 1 changed, 255 unknown (no data in either image), with the binary change
    table in its tags, ready for `geosr upscale --cd`. `geosr upscale --ref` runs the same
    detection itself (--cd auto) when no --cd is given. The detector favours recall: a missed change leaves
    stale reference pixels in the output, a false alarm only takes texture from the model instead.

    Example:

      geosr detect-changes s2_2023.tif --ref ortho_2019.tif -o changes.tif
    """
    from geosr.pipeline.detect_changes import detect_changes as run_detect_changes

    def call():
        opts = DetectChangesOptions.of(**common.given(options))
        with progress_bar("detecting changes", enabled=not (quiet or json_out)) as update:
            return run_detect_changes(lr, ref=ref, output=output, options=opts, progress=update)

    result = run_command(call, json_out=json_out, quiet=quiet, command="detect-changes")
    if json_out:
        print_json(result.to_dict(), "detect-changes")
    elif not quiet:
        out_console.print(Text.assemble(("wrote " + str(result.path), "bold green"),
                                        f": {result.grid.width} x {result.grid.height} px, "
                                        f"{100 * result.changed_share:.1f}% changed of the area both images "
                                        f"cover, {100 * result.unknown_share:.1f}% of the grid unknown, "
                                        f"{result.seconds:.1f} s"),
                          highlight=False)
        print_coregistration(result.coregistration)
        print_sensor_mask(result.sensor_mask)
        print_warnings(result.warnings, "detect-changes")
    else:
        print_warnings(result.warnings, "detect-changes")


def _signature() -> inspect.Signature:
    """LR, --ref, -o, the options of :class:`geosr.options.DetectChangesOptions`, -q, --json."""
    lr = inspect.Parameter("lr", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Annotated[
        str, typer.Argument(help="Low-resolution input raster (the new date): a file, a URL, a GDAL path, a STAC "
                                 "item, a Sentinel-2 product or band files.", show_default=False, metavar="LR")])
    ref = common.option_parameter("ref", str, REQUIRED, ("--ref",), "Older high-resolution reference raster (any "
                                  "CRS and resolution; any input LR takes, a STAC item included).", metavar="PATH",
                                  show_default=False)
    output = common.option_parameter("output", str, REQUIRED, ("-o", "--output"), "Output COG path (binary changes "
                                     "on the LR grid refined by --refine).", show_default=False)
    return common.command_signature([lr, ref, output], DetectChangesOptions)


detect_changes.__signature__ = _signature()  # type: ignore[attr-defined]  # Typer reads the options from here
