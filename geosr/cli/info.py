"""``geosr info``: inspect inputs before a run."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from geosr.cli.common import (
    crs_label,
    out_console,
    print_coregistration,
    print_json,
    print_sensor_mask,
    run_command,
)


def info(
    files: Annotated[list[str], typer.Argument(help="Rasters to inspect (files, URLs, GDAL paths, STAC items, Sentinel-2 products, band files).", show_default=False, metavar="FILES")],
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but an error; the exit code tells whether the inputs open and their last block reads (each file's, of a multi-file input; with --read-all: every block).")] = False,
    read_all: Annotated[bool, typer.Option("--read-all", help="Read every pixel of every input (as long as a run's reading): a damaged block anywhere is an error, exit 2.")] = False,
) -> None:
    """Show bands (names, dtype, nodata, scale/offset), grid and how the files overlap.

    Example:

      geosr info s2.tif ortho_2019.tif change.tif
    """
    from geosr.io.describe import describe

    result = run_command(lambda: describe([str(f) for f in files], read_all=read_all), json_out=json_out,
                         command="info")
    if json_out:
        print_json(result, "info")
        return
    if quiet:
        return
    for f in result["files"]:
        out_console.print(
            Text.assemble((str(f["path"]), "bold"),
                          f" {f['driver']} {f['width']} x {f['height']} px, {crs_label(f['crs']) or _no_crs(f)}, "
                          f"{_pixel(f)}, nodata {f['nodata']}, "
                          f"mask {'yes' if f['mask'] else 'no'}, "
                          f"default bands {','.join(map(str, f['default_bands'])) or 'none'}"),
            highlight=False,
        )
        if f.get("source"):
            out_console.print(f"read as one raster: {f['source']}", highlight=False)
        table = Table("band", "description", "dtype", "nodata", "unit", "scale", "offset", "colour")
        for b in f["bands"]:
            table.add_row(str(b["index"]), b["description"] or "", b["dtype"], str(b["nodata"]), b["unit"] or "",
                          f"{b['scale']:g}", f"{b['offset']:g}", b["colorinterp"])
        out_console.print(table)
        if f.get("geosr"):
            try:
                _print_record(f["geosr"])
            except (AttributeError, KeyError, TypeError, ValueError):  # tags edited by hand, or another tool's
                out_console.print("geosr tags of a shape this geosr does not write, as they are: "
                                  + json.dumps(f["geosr"], sort_keys=True, default=str), highlight=False)
    unplaced = {f["path"]: "no CRS" if not f["crs"] else "no geotransform" for f in result["files"]
                if not f["crs"] or not f["res"]}
    for o in result["overlaps"]:
        if o["covered"] is None:
            which = [p for p in (o["file"], o["other"]) if p in unplaced]
            lacks = " and ".join(f"{p} has {unplaced[p]}" for p in which) or \
                "PROJ knows no way between their CRSs (an engineering or another body's CRS?)"
            out_console.print(f"how much {o['other']} covers of {o['file']} is unknown: {lacks}", highlight=False)
            continue
        out_console.print(f"{o['other']} covers {100 * o['covered']:.1f}% of {o['file']}", highlight=False)


def _print_record(g: dict) -> None:
    """What made a geosr output: model and inputs, the reference's handling, provenance shares."""
    inputs = ", ".join(f"{k} {v}" for k, v in (g.get("inputs") or {}).items())
    if "model" in g:
        out_console.print(f"made by geosr {g.get('version', '?')}: x{g.get('scale', '?')} with {g['model']}"
                          + (f" from {inputs}" if inputs else "")
                          + (f" (bands {','.join(map(str, g['bands']))})" if isinstance(g.get("bands"), list) else "")
                          + (f", seed {g['seed']}" if "seed" in g else "")
                          + _ran_on(g.get("runtime")), highlight=False)
        settings = _settings(g)
        if settings:
            out_console.print(f"model settings: {settings}", highlight=False)
    if "map_class_table" in g:  # a `geosr rasterize-osm` map
        classes = g.get("map_classes")
        listed = f" ({', '.join(map(str, classes))})" if isinstance(classes, list) else ""
        when = f", OSM data as of {g['osm_timestamp']} ({g.get('osm_timestamp_kind', 'unknown')})" \
            if g.get("osm_timestamp") else ""
        out_console.print(f"OSM map made by geosr {g.get('version', '?')} rasterize-osm: class table "
                          f"{g['map_class_table']}{listed}, style {g.get('map_style', '?')}, from "
                          f"{g.get('osm_source', '?')}{when}", highlight=False)
    cd = g.get("change_detection")
    if isinstance(cd, dict) and "method" in cd and "ran" not in cd:  # a `geosr detect-changes` raster
        finer = cd.get("refine") or 1
        out_console.print(f"changes found by geosr {g.get('version', '?')} detect-changes (detector version "
                          f"{cd.get('version', '?')}: {cd['method']}"
                          + (f"; drawn {finer}x finer than the LR" if finer > 1 else "")
                          + f"): {cd.get('lr', '?')} against the reference {cd.get('reference', '?')}",
                          highlight=False)
        print_sensor_mask(cd.get("sensor_mask"))
    co = g.get("coregistration")
    if co is None and isinstance(cd, dict):  # detect-changes keeps it inside its record
        co = cd.get("coregistration")
    print_coregistration(co)
    if isinstance(cd, dict) and cd.get("ran"):
        out_console.print(f"change mask detected against the reference: {100 * cd['changed_share']:.1f}% changed of "
                          "the area both cover",
                          highlight=False)
        print_sensor_mask(cd.get("sensor_mask"))
    elif g.get("sensor_mask"):  # with a change mask of one's own
        print_sensor_mask(g["sensor_mask"])
    prov = g.get("provenance")
    if isinstance(prov, dict):
        shares = ", ".join(f"{name} {100 * v:.1f}%" for name, v in prov.get("shares", {}).items())
        out_console.print(f"provenance ({prov.get('path')}): {shares}", highlight=False)
    elif g.get("provenance_classes"):
        classes = g["provenance_classes"]
        if isinstance(classes, list):
            classes = ", ".join(f"{c.get('value')} {c.get('name')}" for c in classes if isinstance(c, dict))
        out_console.print(f"provenance classes: {classes}", highlight=False)


def _ran_on(runtime: object) -> str:
    """", on cpu (torch 2.x)" / ", on cuda (NVIDIA H100, torch 2.x)": the device an output was made on."""
    if not isinstance(runtime, dict) or not runtime.get("device"):
        return ""
    about = ", ".join(str(v) for v in (runtime.get("gpu"), runtime.get("torch") and f"torch {runtime['torch']}") if v)
    return f", on {runtime['device']}" + (f" ({about})" if about else "")


def _settings(g: dict) -> str:
    """The recorded model settings that decide the pixels, in words (``GEOSR_MODEL_SETTINGS``; a review found
    ``info`` named the seed alone): sampling steps, reference detail (with a reference; absent: off), LR-consistency
    (of a diffusion model; absent: off), fused overlaps, style, backbone and experts, and a scale run at another."""
    ms = g.get("model_settings")
    if not isinstance(ms, dict):
        return ""
    sampler = ms.get("sampler") if isinstance(ms.get("sampler"), dict) else {}
    back = ms.get("backbone") if isinstance(ms.get("backbone"), dict) else {}
    said = []
    steps = sampler.get("steps", ms.get("steps"))
    diffusion = bool(sampler or back)  # (a backbone alone samples nothing and back-projects nothing)
    if steps is not None and diffusion:
        said.append(f"{steps} sampling step{'' if steps == 1 else 's'}"
                    + (f" (sampler {sampler['name']})" if steps and sampler.get("name") else ""))
    # (a classical back-end records no settings: reference-paste read "reference detail off" beside a provenance
    # of 97% reference detail; found in review)
    uses_ref = "ref" in (g.get("inputs") or {}) and (diffusion or bool(ms.get("arch")) or "reference_detail" in ms)
    for key, name, shown in (("reference_detail", "reference detail", uses_ref),
                             ("lr_consistency", "LR-consistency", diffusion or "lr_consistency" in ms)):
        if shown:  # (a setting that is off is not recorded: off; found in review)
            said.append(f"{name} {ms.get(key) or 'off'}")
    if ms.get("fuse_overlaps"):
        said.append("overlaps fused")
    if ms.get("style"):
        said.append(f"style {ms['style']}")
    if back.get("model"):
        said.append(f"backbone {back['model']}")
    experts = ms.get("experts") or back.get("experts")
    if isinstance(experts, list):
        said.append("experts " + ", ".join(map(str, experts)))
    if ms.get("rescaled"):
        said.append(str(ms["rescaled"]))
    return "; ".join(said)


def _no_crs(f: dict) -> str:
    if f["gcps"]:
        where = f" in {f['gcp_crs']}" if f.get("gcp_crs") else ""
        return f"NO CRS (georeferenced by {f['gcps']} ground control points{where}: warp it with gdalwarp)"
    if f.get("rpcs"):
        return "NO CRS (georeferenced by rational polynomial coefficients: orthorectify it with gdalwarp -rpc)"
    return "NO CRS"


def _pixel(f: dict) -> str:
    if not f["res"]:
        return "no geotransform"
    t = f.get("transform") or [0.0] * 6
    rotated = " (rotated grid)" if t[2] or t[4] else ""
    return f"pixel {f['res'][0]:.6g} x {f['res'][1]:.6g}{rotated}"
