"""The ``geosr`` command line (Typer). Each command parses, makes one library call, maps errors to exits."""

from __future__ import annotations

from typing import Annotated

import typer

from geosr.cli.batch import batch
from geosr.cli.detect_changes import detect_changes
from geosr.cli.evaluate import evaluate
from geosr.cli.info import info
from geosr.cli.models import models
from geosr.cli.rasterize_osm import RasterizeOSMCommand, rasterize_osm
from geosr.cli.sample import sample
from geosr.cli.train import train
from geosr.cli.upscale import upscale

app = typer.Typer(
    name="geosr",
    help="Change-aware super-resolution of georeferenced satellite scenes (GeoTIFF in, COG out).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
app.command("upscale")(upscale)
app.command("rasterize-osm", cls=RasterizeOSMCommand)(rasterize_osm)
app.command("detect-changes")(detect_changes)
app.command("batch")(batch)
app.command("train")(train)
app.command("evaluate")(evaluate)
app.command("info")(info)
app.command("models")(models)
app.command("sample")(sample)


def _version(value: bool) -> None:
    if value:
        from geosr._version import __version__

        typer.echo(f"geosr {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    """geosr: super-resolve GeoTIFF scenes 2x-16x with the CRS and footprint kept exact."""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
