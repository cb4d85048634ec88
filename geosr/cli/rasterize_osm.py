"""``geosr rasterize-osm``: OpenStreetMap features as a class raster on any grid, online or offline."""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from rich.text import Text
from typer.core import TyperCommand

from geosr.cli import common
from geosr.cli.common import (
    ProgressView,
    crs_label,
    err_console,
    out_console,
    print_json,
    print_warnings,
    run_command,
)
from geosr.options import RasterizeOSMOptions

_STAGES = {"read": "reading OSM", "prepare": "preparing shapes", "rasterize": "rasterizing", "write": "writing COG"}


class RasterizeOSMCommand(TyperCommand):
    """rasterize-osm's command: the old box form ``--bbox LEFT BOTTOM RIGHT TOP`` (four words) is read as the one
    box syntax ``--bbox LEFT,BOTTOM,RIGHT,TOP`` with a deprecation notice, for one release."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        args = list(args)
        for i, arg in enumerate(args[:-4]):
            words = args[i + 1 : i + 5]
            if arg == "--bbox" and all(_is_number(w) for w in words):
                err_console.print("warning: --bbox with four separate numbers is deprecated; write "
                                  f"--bbox {','.join(words)}", style="yellow", highlight=False, soft_wrap=True)
                args[i + 1 : i + 5] = [",".join(words)]
                break
        return super().parse_args(ctx, args)


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def rasterize_osm(output: str, quiet: bool = False, json_out: bool = False, **options: Any) -> None:
    """Burn OpenStreetMap features into a class raster (COG with a colour table) on a chosen grid.

    The grid is either --bbox LEFT,BOTTOM,RIGHT,TOP (WGS84 lon/lat: west,south,east,north) with
    --resolution in metres (and --crs, default the local UTM zone), or --like RASTER [-x N], which is
    pixel for pixel the grid of `geosr upscale RASTER -x N`, ready for `geosr upscale --map`.
    Classes, colours, line widths and burn order: docs/osm-classes.md. Map data © OpenStreetMap
    contributors (ODbL); the attribution is written into the file's tags.

    Examples:

      geosr rasterize-osm --like s2.tif -x 16 -o map.tif

      geosr rasterize-osm --bbox -122.3026,37.8061,-122.2982,37.8091 --resolution 1 -o oakland.tif

      geosr rasterize-osm --like s2.tif -x 8 --osm-file bayern.osm.pbf -o map.tif

      geosr rasterize-osm --bbox 24.935,60.164,24.953,60.179 -r 2 --crs EPSG:3067 --style rgb -o helsinki_rgb.tif

      geosr rasterize-osm --like ortho.tif --date 2019-06-01 --classes my_classes.json -o map_2019.tif
    """
    from geosr.pipeline.rasterize_osm import rasterize_osm as run_rasterize_osm

    def call():
        opts = RasterizeOSMOptions.of(**common.given(options))
        with _stage_progress(enabled=not (quiet or json_out)) as update:
            return run_rasterize_osm(output, options=opts, progress=update)

    result = run_command(call, json_out=json_out, quiet=quiet, command="rasterize-osm")
    if json_out:
        print_json(result.to_dict(), "rasterize-osm")
    elif not quiet:
        _print_summary(result)
    else:
        print_warnings(result.warnings, "rasterize-osm")


def _signature() -> inspect.Signature:
    """-o, the options of :class:`geosr.options.RasterizeOSMOptions`, -q, --json."""
    output = common.option_parameter("output", str, inspect.Parameter.empty, ("-o", "--output"), "Output COG path.",
                              show_default=False)
    return common.command_signature([output], RasterizeOSMOptions)


rasterize_osm.__signature__ = _signature()  # type: ignore[attr-defined]  # Typer reads the options from here


@contextmanager
def _stage_progress(*, enabled: bool) -> Iterator[Callable[[str, int, int], None]]:
    """One bar labelled with the current stage; yields ``update(stage, done, total)``."""
    with ProgressView(enabled=enabled, transient=True) as view:
        yield lambda stage, done, total: view.update("rasterize-osm", done, total, label=_STAGES.get(stage, stage))


def _print_summary(r) -> None:
    d = r.to_dict()
    total = max(1, d["width"] * d["height"])
    out_console.print(
        Text.assemble((f"wrote {d['output']}", "bold green"),
                      f": {d['width']} x {d['height']} px, {crs_label(d['crs'])}, "
                      f"pixel {d['resolution'][0]:.6g} x {d['resolution'][1]:.6g}, style {d['style']}, "
                      f"table {d['class_table']}, {d['seconds']:.1f} s"),
        highlight=False,
    )
    shares = ", ".join(f"{k} {100 * v / total:.1f}%" for k, v in d["pixels"].items() if v)
    unread = f"; nodata {100 * d['nodata_fraction']:.1f}% (no OSM data read there)" if d.get("nodata_pixels") else ""
    out_console.print(f"classes: {shares or 'none drawn'}{unread}", highlight=False)
    when = f", data as of {d['timestamp']} ({d['timestamp_kind']})" if d["timestamp"] else ""
    out_console.print(f"source: {d['source']}{when}; © OpenStreetMap contributors (ODbL)", highlight=False)
    print_warnings(d.get("warnings"), "rasterize-osm")
