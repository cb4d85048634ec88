"""``geosr evaluate``: a model against bicubic and reference paste, overall and in changed / unchanged areas."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.text import Text

from geosr.cli import common
from geosr.cli.common import cli_words, err_console, out_console, print_json, progress_bar, renamed, run_command
from geosr.errors import OptionError
from geosr.options import EvaluateOptions


def evaluate(data: str, no_lr_consistency: bool = False, old_out: Optional[Path] = None, quiet: bool = False,
             json_out: bool = False, **options: Any) -> None:
    """Evaluate models with the papers' protocol (bicubic LR, or the data set's own), next to bicubic and reference paste.

    PSNR-Y, SSIM-Y, VIF, LR-consistency, SAM and ERGAS, each overall and in changed / unchanged areas; MS-SSIM
    overall; ST-LPIPS (shift-tolerant LPIPS, AlexNet) overall and per area when its weights (the stlpips-pytorch
    wheel) load. Models run through `geosr upscale`.

    Examples:

      geosr evaluate collection.json --model default --out-dir eval/

      geosr evaluate SECOND/RefSR_dataset/test -m runs/second_x8/model.safetensors -x 8
    """
    from geosr.training.evaluate import evaluate as run_evaluate
    from geosr.training.evaluate import markdown_table

    def call():
        if no_lr_consistency and options.get("lr_consistency") not in (None, "off"):
            raise OptionError(f"--no-lr-consistency and --lr-consistency {options['lr_consistency']} contradict "
                              "each other; give one")
        if no_lr_consistency:
            options["lr_consistency"] = "off"
        options["out"] = renamed("evaluate", "--out-dir", options["out"], "-o/--out", old_out)
        opts = EvaluateOptions.of(**common.given(options))
        with progress_bar("evaluate", enabled=not (quiet or json_out)) as update:
            return run_evaluate(data, options=opts, progress=update,
                                log=None if (quiet or json_out) else
                                (lambda s: err_console.print(cli_words(s, "evaluate"), highlight=False)))

    result = run_command(call, json_out=json_out, quiet=quiet, command="evaluate")
    if json_out:
        payload = result.to_dict()
        payload.pop("cases", None)
        print_json(payload, "evaluate")
    elif not quiet:
        out_console.print(markdown_table(result.summary, result.models), highlight=False, markup=False)
        out_console.print(Text.assemble((f"wrote {result.out}/metrics.json", "bold green"), " and metrics.md"),
                          highlight=False)


def _signature() -> inspect.Signature:
    """DATA, the options of :class:`geosr.options.EvaluateOptions`, the shorthand --no-lr-consistency, the
    deprecated -o/--out (hidden), -q, --json."""
    data = inspect.Parameter("data", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Annotated[
        str, typer.Argument(help="Evaluation data: a data manifest (.json naming data sets and their held-out split; "
                                  "the held-out split is used), a Ref-Diff test folder (HR_512/, Ref/, CD_mask/, "
                                  "Bic_LR_D<scale>_<side>), an A/ B/ label/ folder, or HR images (a folder of them, scored "
                                  "overall: no reference, no change label).", show_default=False)])
    return common.command_signature([data], EvaluateOptions, reporting="table", extra=[
        common.option_parameter("no_lr_consistency", bool, False, ("--no-lr-consistency",),
                                "Same as --lr-consistency off."),
        common.option_parameter("old_out", Path, None, ("--out", "-o"), "", hidden=True),
    ])


evaluate.__signature__ = _signature()  # type: ignore[attr-defined]  # Typer reads the options from here
