"""``geosr detect-changes``: where the reference no longer shows what the LR shows, as a binary change raster."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from geosr.cli.common import out_console, print_json, progress_bar, run_command


def detect_changes(
    lr: Annotated[str, typer.Argument(help="Low-resolution input raster (the new date): a file, a URL, a GDAL path, a STAC item, a Sentinel-2 product or band files.", show_default=False, metavar="LR")],
    ref: Annotated[str, typer.Option("--ref", help="Older high-resolution reference raster (any CRS and resolution; a file, a URL or a GDAL path).", show_default=False, metavar="PATH")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output COG path (binary changes on the LR grid).", show_default=False)],
    bands: Annotated[Optional[str], typer.Option("--bands", help="LR bands compared, e.g. 4,3,2 (default: as upscale picks them).", show_default=False)] = None,
    ref_bands: Annotated[Optional[str], typer.Option("--ref-bands", help="Reference bands matching --bands.", show_default=False)] = None,
    coregister: Annotated[bool, typer.Option("--coregister/--no-coregister", help="Estimate and undo the reference's shift from the LR first.")] = True,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
) -> None:
    """Find where REF no longer shows what LR shows (new buildings, roads, fields, water, any real change).

    Writes one uint8 band on the LR grid: 0 unchanged, 1 changed, 255 unknown (no data in either image), with
    the binary change table in its tags, ready for `geosr upscale --cd`. `geosr upscale --ref` runs the same
    detection itself (--cd auto) when no --cd is given. The detector favours recall: a missed change leaves
    stale reference pixels in the output, a false alarm only takes texture from the model instead.

    Example:

      geosr detect-changes s2_2023.tif --ref ortho_2019.tif -o changes.tif
    """
    from geosr.pipeline.detect_changes import detect_changes as run_detect_changes

    def call():
        with progress_bar("detecting changes", enabled=not (quiet or json_out)) as update:
            return run_detect_changes(lr, ref=ref, output=output, bands=bands, ref_bands=ref_bands,
                                      coregister=coregister, overwrite=overwrite, progress=update)

    result = run_command(call, json_out=json_out, quiet=quiet, command="detect-changes")
    if json_out:
        print_json(result.to_dict())
    elif not quiet:
        out_console.print(Text.assemble(("wrote " + str(result.path), "bold green"),
                                        f": {result.grid.width} x {result.grid.height} px, "
                                        f"{100 * result.changed_share:.1f}% changed, "
                                        f"{100 * result.unknown_share:.1f}% unknown, {result.seconds:.1f} s"),
                          highlight=False)
