"""``geosr upscale``: super-resolve one georeferenced scene."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from rich.text import Text

from geosr.cli.common import LR_CONSISTENCY_HELP, out_console, print_json, progress_bar, run_command


def upscale(
    lr: Annotated[Path, typer.Argument(help="Low-resolution raster (any GDAL format with a CRS).", show_default=False)],
    scale: Annotated[int, typer.Option("-x", "--scale", help="Scale factor: 2, 4, 8 or 16.")] = 8,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Output COG path.")] = None,
    ref: Annotated[Optional[Path], typer.Option("--ref", help="Older high-resolution reference raster (any CRS and resolution).")] = None,
    cd: Annotated[Optional[Path], typer.Option("--cd", help="Change mask raster (class values, see --cd-classes).")] = None,
    map: Annotated[Optional[Path], typer.Option("--map", help="Map class raster from `geosr rasterize-osm`.")] = None,
    bands: Annotated[Optional[str], typer.Option("--bands", help="LR bands, by index or description: '4,3,2' or 'B04,B03,B02'. Default: RGB by band description, else all.")] = None,
    ref_bands: Annotated[Optional[str], typer.Option("--ref-bands", help="Reference bands matching --bands (default: its RGB bands, else all).")] = None,
    cd_classes: Annotated[str, typer.Option("--cd-classes", help="Change class table: binary, second, cnam-cd, or a JSON file.")] = "binary",
    aoi: Annotated[Optional[str], typer.Option("--aoi", help="Area of interest: 'LEFT,BOTTOM,RIGHT,TOP' (in --aoi-crs) or a vector file.")] = None,
    aoi_crs: Annotated[str, typer.Option("--aoi-crs", help="CRS of an --aoi bbox.")] = "EPSG:4326",
    model: Annotated[str, typer.Option("--model", "-m", help="Model name (see `geosr models`) or checkpoint path. `default`: the bundled diffusion model (x2, x4, x8, x16).")] = "default",
    style: Annotated[Optional[str], typer.Option("--style", help="Diffusion models with a style path (SGDM): a style image (any raster), 'sample' (a style drawn from the model's flow) or 'none' (default).")] = None,
    window: Annotated[Optional[int], typer.Option("--window", help="Window size in LR pixels (default: 256 HR pixels).")] = None,
    overlap: Annotated[Optional[int], typer.Option("--overlap", help="Window overlap in LR pixels (default: a quarter window).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Noise seed (same seed, same output).")] = 0,
    sampler: Annotated[str, typer.Option("--sampler", help="Sampler preset of diffusion models: default or paper.")] = "default",
    steps: Annotated[Optional[int], typer.Option("--steps", help="Sampling steps (default: the preset's).")] = None,
    fuse_overlaps: Annotated[bool, typer.Option("--fuse-overlaps/--no-fuse-overlaps", help="Average overlapping windows at every diffusion step.")] = False,
    ref_detail: Annotated[Optional[bool], typer.Option("--ref-detail/--no-ref-detail", help="Diffusion models: add the reference's detail where the LR shows that it matches (default: the checkpoint's own setting; the default model: on).", show_default=False)] = None,
    lr_consistency: Annotated[Optional[str], typer.Option("--lr-consistency", help=LR_CONSISTENCY_HELP, show_default=False)] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Windows per model call.")] = 4,
    compress: Annotated[str, typer.Option("--compress", help="COG compression (DEFLATE, LZW, ZSTD, NONE).")] = "DEFLATE",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run of the same job.")] = False,
    force_resources: Annotated[bool, typer.Option("--force-resources", help="Run even when the plan needs more memory or disk than the machine has.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan (windows, memory, output size); write nothing.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
) -> None:
    """Super-resolve LR by -x into a georeferenced COG (same CRS and footprint, pixel size / x).

    Examples:

      geosr upscale s2.tif -x 4 -o s2_x4.tif

      geosr upscale s2.tif --ref ortho_2019.tif --cd change.tif -x 16 --model reference-paste -o out.tif

      geosr upscale s2.tif -x 8 --aoi 13.36,52.50,13.42,52.53 --dry-run

      geosr upscale s2.tif -x 8 -o out.tif --resume   # after a crash or kill
    """
    from geosr.config import DeviceConfig, OutputConfig, SamplerConfig, TilingConfig
    from geosr.pipeline.upscale import upscale as run_upscale

    def call():
        with progress_bar("upscale", enabled=not (quiet or json_out or dry_run)) as update:
            return run_upscale(
                lr,
                output=output,
                scale=scale,
                ref=ref,
                cd=cd,
                map=map,
                bands=bands,
                ref_bands=ref_bands,
                cd_classes=cd_classes,
                aoi=aoi,
                aoi_crs=aoi_crs,
                model=model,
                style=style,
                tiling=TilingConfig(window=window, overlap=overlap),
                sampler=SamplerConfig(preset=sampler, steps=steps, seed=seed, fuse_overlaps=fuse_overlaps,
                                      reference_detail=ref_detail, lr_consistency=lr_consistency),
                output_config=OutputConfig(compress=compress, overwrite=overwrite),
                device=DeviceConfig(device=device, batch_size=batch_size),
                resume=resume,
                dry_run=dry_run,
                force_resources=force_resources,
                progress=update,
            )

    result = run_command(call, json_out=json_out, quiet=quiet)
    if json_out:
        print_json(result.to_dict())
    elif not quiet:
        _print_summary(result)


def _print_summary(r) -> None:
    head = "plan" if r.dry_run else f"wrote {r.output}"
    out_console.print(
        Text.assemble((head, "bold green"), f": {r.width} x {r.height} px x {r.count} bands {r.dtype}, {r.crs}, "
                      f"x{r.scale} with {r.model}; {r.windows} windows of {r.window_size} LR px "
                      f"(overlap {r.overlap}) in {r.window_rows} rows"),
        highlight=False,
    )
    extra = f"output {r.output_mb:.1f} MB uncompressed, working memory about {r.memory_mb:.0f} MB"
    if r.estimate_s is not None:
        extra += f", model time about {r.estimate_s:.0f} s"
    if not r.dry_run:
        extra += f", {r.seconds:.1f} s" + (f" (resumed after {r.resumed_rows} rows)" if r.resumed_rows else "")
    out_console.print(extra, highlight=False)
    res = r.resources or {}
    if r.dry_run and res and not res.get("fits", True):
        free = res.get("disk_free_mb")
        out_console.print(
            f"does not fit this machine: needs about {res['memory_mb']:.0f} MB of memory "
            f"({res['memory_available_mb']:.0f} MB available) and up to {res['disk_mb']:.0f} MB of disk "
            f"({'unknown' if free is None else f'{free:.0f} MB'} free); a run is refused without --force-resources",
            style="bold yellow", highlight=False,
        )
