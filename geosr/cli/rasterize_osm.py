"""``geosr rasterize-osm``: OpenStreetMap features as a class raster on any grid, online or offline."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, Optional

import typer
from rich.text import Text
from typer.core import TyperCommand

from geosr.cli.common import ProgressView, err_console, out_console, print_json, run_command

_STAGES = {"read": "reading OSM", "prepare": "preparing shapes", "rasterize": "rasterizing", "write": "writing COG"}


class RasterizeOSMCommand(TyperCommand):
    """rasterize-osm's command: the old box form ``--bbox LEFT BOTTOM RIGHT TOP`` (four words) is read as the one
    box syntax ``--bbox LEFT,BOTTOM,RIGHT,TOP`` with a deprecation notice, for one release."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        args = list(args)
        for i, arg in enumerate(args[:-4]):
            words = args[i + 1 : i + 5]
            if arg == "--bbox" and all(_is_number(w) for w in words):
                err_console.print("geosr: warning: --bbox with four separate numbers is deprecated; write "
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


def _opt(*names: str, **kw: Any) -> Any:
    """An option without a default worth printing (none, or one its help names)."""
    return typer.Option(*names, show_default=False, **kw)


def rasterize_osm(
    output: Annotated[Path, _opt("-o", "--output", help="Output COG path.")],
    bbox: Annotated[Optional[str], _opt("--bbox", metavar="LEFT,BOTTOM,RIGHT,TOP", help="Area in WGS84 degrees, written as --aoi writes a box, in this order: west (lon), south (lat), east (lon), north (lat). geosr keeps this order whatever osmnx version is installed. (Four separate numbers, the old form, still work in this release.)")] = None,
    resolution: Annotated[Optional[float], _opt("--resolution", "-r", help="Pixel size in metres (with --bbox).")] = None,
    crs: Annotated[Optional[str], _opt("--crs", help="Output CRS with --bbox, e.g. EPSG:32633. Default: the UTM zone of the box centre.")] = None,
    like: Annotated[Optional[Path], _opt("--like", help="Use this raster's grid, refined by -x: exactly the grid `geosr upscale -x N` writes.")] = None,
    scale: Annotated[Optional[int], _opt("-x", "--scale", help="With --like: the upscale factor (default 1, the raster's own grid).")] = None,
    aoi: Annotated[Optional[str], _opt("--aoi", help="With --like: crop as `geosr upscale --aoi` does ('LEFT,BOTTOM,RIGHT,TOP' in --aoi-crs, or a vector file).")] = None,
    aoi_crs: Annotated[str, typer.Option("--aoi-crs", help="CRS of an --aoi box.")] = "EPSG:4326",
    osm_file: Annotated[Optional[Path], _opt("--osm-file", help="Work offline from a file: .osm, .osm.bz2, .pbf, .gpkg, .geojson, .shp, .fgb. Default: the Overpass API.")] = None,
    classes: Annotated[Optional[Path], _opt("--classes", help="Your own class table (JSON, see docs/osm-classes.md). Default: geosr-osm-v1.")] = None,
    style: Annotated[str, typer.Option("--style", help="classes: one band of class ids with a colour table; rgb: the map rendered in the palette (no labels).")] = "classes",
    timeout: Annotated[float, typer.Option("--timeout", help="Overpass timeout in seconds.")] = 180.0,
    overpass_url: Annotated[Optional[str], _opt("--overpass-url", help="Another Overpass API endpoint (default https://overpass-api.de/api).")] = None,
    date: Annotated[Optional[str], _opt("--date", help="Online only: the map as it was then (YYYY-MM-DD, from 2012-09-12 on).")] = None,
    cache_dir: Annotated[Optional[Path], _opt("--cache-dir", help="Folder for Overpass responses (default $GEOSR_CACHE_DIR/osmnx or ~/.cache/geosr/osmnx).")] = None,
    allow_empty: Annotated[bool, typer.Option("--allow-empty", help="Write an all-background map when the area holds no feature (default: exit 2).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
) -> None:
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
        with _stage_progress(enabled=not (quiet or json_out)) as update:
            return run_rasterize_osm(
                output, bbox=bbox, crs=crs, resolution=resolution, like=like, scale=scale, aoi=aoi, aoi_crs=aoi_crs,
                osm_file=osm_file, classes=classes, style=style, timeout=timeout, overpass_url=overpass_url, date=date,
                cache_folder=cache_dir, allow_empty=allow_empty, overwrite=overwrite, progress=update,
            )

    result = run_command(call, json_out=json_out, quiet=quiet, command="rasterize-osm")
    if json_out:
        print_json(result.to_dict())
    elif not quiet:
        _print_summary(result)


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
                      f": {d['width']} x {d['height']} px, {d['crs']}, "
                      f"pixel {d['resolution'][0]:.6g} x {d['resolution'][1]:.6g}, style {d['style']}, "
                      f"table {d['class_table']}, {d['seconds']:.1f} s"),
        highlight=False,
    )
    shares = ", ".join(f"{k} {100 * v / total:.1f}%" for k, v in d["pixels"].items() if v)
    out_console.print(f"classes: {shares}", highlight=False)
    when = f", data as of {d['timestamp']} ({d['timestamp_kind']})" if d["timestamp"] else ""
    out_console.print(f"source: {d['source']}{when}; © OpenStreetMap contributors (ODbL)", highlight=False)
