"""``geosr info``: inspect inputs before a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from geosr.cli.common import out_console, print_json, run_command


def info(
    files: Annotated[list[Path], typer.Argument(help="Rasters to inspect.", show_default=False)],
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing; only the exit code tells.")] = False,
) -> None:
    """Show bands (names, dtype, nodata, scale/offset), grid and how the files overlap.

    Example:

      geosr info s2.tif ortho_2019.tif change.tif
    """
    from geosr.io.describe import describe

    result = run_command(lambda: describe([str(f) for f in files]), json_out=json_out, command="info")
    if json_out:
        print_json(result)
        return
    if quiet:
        return
    for f in result["files"]:
        out_console.print(
            Text.assemble((str(f["path"]), "bold"),
                          f" {f['driver']} {f['width']} x {f['height']} px, {f['crs'] or 'NO CRS'}, "
                          f"pixel {f['res'][0]:.6g} x {f['res'][1]:.6g}, nodata {f['nodata']}, "
                          f"mask {'yes' if f['mask'] else 'no'}, default bands {','.join(map(str, f['default_bands']))}"),
            highlight=False,
        )
        table = Table("band", "description", "dtype", "scale", "offset", "colour")
        for b in f["bands"]:
            table.add_row(str(b["index"]), b["description"] or "", b["dtype"], f"{b['scale']:g}", f"{b['offset']:g}", b["colorinterp"])
        out_console.print(table)
    for o in result["overlaps"]:
        out_console.print(f"{o['other']} covers {100 * o['covered']:.1f}% of {o['file']}", highlight=False)
