"""``geosr evaluate``: a model against bicubic and reference paste, overall and in changed / unchanged areas."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from geosr.cli.common import (
    LR_CONSISTENCY_HELP,
    err_console,
    out_console,
    print_json,
    progress_bar,
    renamed,
    run_command,
)


def evaluate(
    data: Annotated[Path, typer.Argument(help="Evaluation data: a data manifest (.json naming data sets and their held-out split; the held-out split is used), a Ref-Diff test folder (HR_512/, Ref/, CD_mask/, Bic_LR_*), or an A/ B/ label/ folder.", show_default=False)],
    model: Annotated[Optional[list[str]], typer.Option("--model", "-m", help="Model name or checkpoint path (repeatable). Baselines bicubic and reference-paste are always added.")] = None,
    scale: Annotated[Optional[list[int]], typer.Option("-x", "--scale", help="Scale factor(s) (repeatable; default 8 and 16).")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out-dir", help="Folder for metrics.json, metrics.md and PNG panels (default geosr-eval). It must be empty or new, unless --overwrite.", show_default=False)] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Sampling steps (default: the checkpoint's own setting, else the sampler preset's).")] = None,
    lr_consistency: Annotated[Optional[str], typer.Option("--lr-consistency", help=LR_CONSISTENCY_HELP, show_default=False)] = None,
    no_lr_consistency: Annotated[bool, typer.Option("--no-lr-consistency", help="Same as --lr-consistency off.")] = False,
    reference_detail: Annotated[Optional[bool], typer.Option("--ref-detail/--no-ref-detail", help="Add the reference's detail where the LR shows that it matches (default: the checkpoint's own setting).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Noise seed.")] = 0,
    cd: Annotated[str, typer.Option("--cd", help="The change mask every model gets: given (the data set's), auto (detected against the reference, as upscale --cd auto) or none. The metrics' regions are the data set's labels.")] = "given",
    panels: Annotated[bool, typer.Option("--panels/--no-panels", help="Write PNG panels LR | Ref | mask | SR | HR.")] = True,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier evaluation in --out-dir.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or table.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the JSON summary on stdout.")] = False,
    old_out: Annotated[Optional[Path], typer.Option("--out", "-o", hidden=True)] = None,
) -> None:
    """Evaluate models with the papers' protocol (bicubic LR): PSNR-Y, SSIM-Y, VIF, LR-consistency, SAM and ERGAS,
    each overall and in changed / unchanged areas; MS-SSIM overall; ST-LPIPS (shift-tolerant LPIPS, AlexNet)
    overall and per area when its weights (the stlpips-pytorch wheel) load. Next to bicubic and reference paste;
    models run through `geosr upscale`.

    Examples:

      geosr evaluate collection.json --model default --out-dir eval/

      geosr evaluate SECOND/RefSR_dataset/test -m runs/second_x8/model.safetensors -x 8
    """
    from geosr.training.evaluate import evaluate as run_evaluate
    from geosr.training.evaluate import markdown_table

    if no_lr_consistency:
        lr_consistency = "off"

    def call():
        out = renamed("evaluate", "--out-dir", out_dir, "-o/--out", old_out) or Path("geosr-eval")
        with progress_bar("evaluate", enabled=not (quiet or json_out)) as update:
            return run_evaluate(
                data, models=model or [], scales=tuple(scale) if scale else (8, 16), out=out, steps=steps,
                lr_consistency=lr_consistency, reference_detail=reference_detail, seed=seed, panels=panels,
                device=device, overwrite=overwrite, cd=cd, progress=update,
                log=None if (quiet or json_out) else (lambda s: err_console.print(s, highlight=False)),
            )

    result = run_command(call, json_out=json_out, quiet=quiet, command="evaluate")
    if json_out:
        payload = result.to_dict()
        payload.pop("cases", None)
        print_json(payload)
    elif not quiet:
        out_console.print(markdown_table(result.summary, result.models), highlight=False, markup=False)
        out_console.print(Text.assemble((f"wrote {result.out}/metrics.json", "bold green"), " and metrics.md"),
                          highlight=False)
