"""``geosr sample``: copy the bundled sample scene somewhere to try geosr on."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from geosr.cli.common import out_console, print_json, run_command


def sample(
    folder: Annotated[Path, typer.Argument(help="Folder to copy the sample scene into.")] = Path("geosr-sample"),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace other files at the sample's names in "
                                            "FOLDER (copies already there, byte for byte, are kept).")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the paths as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing (errors still go to stderr).")] = False,
) -> None:
    """Copy the sample scene (Landsat-5 TM, Taizhou: LR 2003 at 240 m, reference 2000 at 30 m, change mask,
    ground truth) into FOLDER and print the command that super-resolves it.

    Example:

      geosr sample demo && geosr upscale demo/taizhou_2003_lr240m.tif --ref demo/taizhou_2000_ref30m.tif --cd demo/taizhou_change_2000_2003.tif -x 8 -o demo/sr_x8.tif
    """
    from geosr.sample_scene import SAMPLE_SCALE, copy_sample, sample_paths

    there = all((folder / src.name).is_file() for src in sample_paths().values())  # (kept when the same bytes)
    paths = run_command(lambda: copy_sample(folder, overwrite=overwrite), json_out=json_out, command="sample")
    if json_out:
        print_json({k: str(v) for k, v in paths.items()})
        return
    if quiet:
        return
    # run again (the demo's folder): its copies are kept, and the output named below may be there already
    said = "the sample scene is in" if there and not overwrite else "sample scene copied to"
    out_console.print(f"{said} {folder}/; try:", highlight=False)
    def q(path: object) -> str:  # a relative path that starts with "-" read as an option: ./ before it
        text = str(path)
        return shlex.quote(f"./{text}" if text.startswith("-") else text)

    out = folder / "sr_x8.tif"
    # an earlier run's output or what it leaves beside it (its provenance raster, STAC item, work folder), which the
    # run refuses to replace without --overwrite (the output alone was looked at; found in review)
    earlier = any(folder.glob(f"{out.stem}.*"))
    out_console.print(
        f"  geosr upscale {q(paths['lr'])} --ref {q(paths['ref'])} --cd {q(paths['cd'])} "
        f"-x {SAMPLE_SCALE} -o {q(out)}" + (" --overwrite" if earlier else ""),
        highlight=False,
        soft_wrap=True,
    )
