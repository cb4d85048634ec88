"""``geosr train``: train (or fine-tune, or resume) a change-aware diffusion model, or fine-tune the LR-space model."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.text import Text

from geosr.cli import common
from geosr.cli.common import (
    count,
    out_console,
    print_json,
    print_warnings,
    progress_bar,
    renamed,
    run_command,
)
from geosr.options import TrainOptions

# The spellings of one release ago (hidden): geosr train's flag -> its deprecated one, and that one's type.
DEPRECATED = {"out": ("--out-dir", ("-o", "--out"), Path), "steps": ("--train-steps", ("--steps",), int),
              "batch_size": ("--batch", ("--batch-size",), int), "lr": ("--learning-rate", ("--lr",), float)}


def train(config: Optional[Path] = None, quiet: bool = False, json_out: bool = False, **options: Any) -> None:
    """Train a model; the result is OUT_DIR/model.safetensors (safe format, spec and model card inside).

    Examples:

      geosr train --data SECOND/RefSR_dataset/train -x 8 --arch small --train-steps 200000 --out-dir runs/second_x8

      geosr train train.toml --resume

      geosr train --data my_hr_tiles/ -x 8 -x 16 --train-steps 2000 --out-dir runs/synthetic   # synthetic change pairs

      geosr train --arch lite --data my_hr_tiles/ --val-data my_val_tiles/ --out-dir runs/lite_mine   # the fast model

      torchrun --nproc-per-node 4 "$(which geosr)" train train.toml   # data parallel
    """
    from geosr.training.loop import lead_process
    from geosr.training.loop import train as run_train

    lead = lead_process()  # under torchrun, process 0 alone shows progress and the result

    def call():
        for name, (flag, old_flags, _) in DEPRECATED.items():
            options[name] = renamed("train", flag, options[name], "/".join(old_flags), options.pop(f"old_{name}"))
        opts = TrainOptions.of(**common.given(options))
        with progress_bar("train", enabled=lead and not (quiet or json_out)) as update:
            return run_train(config, options=opts, progress=lambda s, n, loss: update(s, n))

    result = run_command(call, json_out=json_out, quiet=quiet, command="train")
    if not lead:
        return
    if json_out:
        print_json(result.to_dict(), "train")
    elif not quiet:
        _print_summary(result)
    else:
        print_warnings(result.warnings, "train")


def _print_summary(result) -> None:
    if result.resumed_from and result.steps == result.resumed_from:  # resumed at its last step: nothing was written
        out_console.print(f"nothing to do: {result.checkpoint} has {count(result.steps, 'step')} already (give more "
                          "--train-steps to train it further)", highlight=False)
        return
    out_console.print(
        Text.assemble((f"wrote {result.checkpoint}", "bold green"),
                      ": " + (f"{result.steps} of {result.planned_steps} steps" if _cut_short(result) else
                              count(result.steps, "step"))
                      + (f" (resumed at {result.resumed_from})" if result.resumed_from else "")
                      + f" in {result.seconds:.0f} s, loss {result.ema_loss:.4f}; log {result.log}"),
        highlight=False,
    )
    print_warnings(result.warnings, "train")
    if _cut_short(result):
        out_console.print(f"stopped at the time limit (--max-minutes) after step {result.steps}; run again with "
                          "--resume to continue", style="yellow", highlight=False)
    if result.best_checkpoint:
        basis = f"; {result.best_val_basis}" if result.best_val_basis else ""
        out_console.print(f"best on validation: {result.best_checkpoint} (step {result.best_step}, "
                          f"{result.best_val_gain_db:+.2f} dB PSNR-Y over bicubic{basis})", highlight=False)


def _cut_short(result) -> bool:
    return result.planned_steps is not None and result.steps < result.planned_steps


def _signature() -> inspect.Signature:
    """CONFIG, the options of :class:`geosr.options.TrainOptions`, the deprecated spellings (hidden), -q, --json."""
    config = inspect.Parameter("config", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=Annotated[
        Optional[Path], typer.Argument(help="Training config (.toml, .yaml or .json; keys as in docs/training.md).",
                                       show_default=False)])
    return common.command_signature([config], TrainOptions, extra=[
        common.option_parameter(f"old_{name}", typ, None, flags, "", hidden=True)
        for name, (_, flags, typ) in DEPRECATED.items()
    ])


train.__signature__ = _signature()  # type: ignore[attr-defined]  # Typer reads the options from here
