"""``geosr train``: train (or fine-tune, or resume) a change-aware diffusion model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from geosr.cli.common import out_console, print_json, progress_bar, renamed, run_command


def train(
    config: Annotated[Optional[Path], typer.Argument(help="Training config (.toml, .yaml or .json; keys as in docs/training.md).", show_default=False)] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out-dir", help="Run folder: checkpoints, log, validation grids, model.safetensors. It must be empty or new, unless --resume or --overwrite.", show_default=False)] = None,
    data: Annotated[Optional[list[str]], typer.Option("--data", "-d", help="Training data (repeatable): a Ref-Diff folder (HR_512/...), an A/ B/ label/ folder, a data manifest (.json naming data sets and their held-out split; its training split is used), or HR images for synthetic change.")] = None,
    val_data: Annotated[Optional[list[str]], typer.Option("--val-data", help="Validation data the run does not train on (repeatable; layouts as --data, not a manifest): scored every --val-every steps, the best model kept as OUT_DIR/best.safetensors.")] = None,
    arch: Annotated[Optional[str], typer.Option("--arch", help="Architecture: tiny, small or paper.")] = None,
    scale: Annotated[Optional[list[int]], typer.Option("-x", "--scale", help="Scale factor(s) to train (repeatable).")] = None,
    train_steps: Annotated[Optional[int], typer.Option("--train-steps", help="Optimizer steps (per process).")] = None,
    batch: Annotated[Optional[int], typer.Option("--batch", help="Samples per optimizer step (per process).")] = None,
    crop: Annotated[Optional[int], typer.Option("--crop", help="HR crop side (a multiple of every scale).")] = None,
    learning_rate: Annotated[Optional[float], typer.Option("--learning-rate", help="Peak learning rate (AdamW).")] = None,
    checkpoint_every: Annotated[Optional[int], typer.Option("--checkpoint-every", help="Save the training state every N steps.")] = None,
    val_every: Annotated[Optional[int], typer.Option("--val-every", help="Write a validation image grid (and, with --val-data, score the model) every N steps.")] = None,
    degradation: Annotated[Optional[str], typer.Option("--degradation", help="LR synthesis: real (Ref-Diff 3.3 chain), bicubic or mixed.")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed of the data stream and the initialization.")] = None,
    init: Annotated[Optional[str], typer.Option("--init", help="Start from this geosr checkpoint (fine-tuning).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out-dir from its last saved state.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier run in --out-dir.")] = False,
    max_minutes: Annotated[Optional[float], typer.Option("--max-minutes", help="Stop (and save) after this wall time.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
    old_out: Annotated[Optional[Path], typer.Option("--out", "-o", hidden=True)] = None,
    old_steps: Annotated[Optional[int], typer.Option("--steps", hidden=True)] = None,
    old_batch_size: Annotated[Optional[int], typer.Option("--batch-size", hidden=True)] = None,
    old_lr: Annotated[Optional[float], typer.Option("--lr", hidden=True)] = None,
) -> None:
    """Train a model; the result is OUT_DIR/model.safetensors (safe format, spec and model card inside).

    Examples:

      geosr train --data SECOND/RefSR_dataset/train -x 8 --arch small --train-steps 200000 --out-dir runs/second_x8

      geosr train train.toml --resume

      geosr train --data my_hr_tiles/ -x 8 -x 16 --train-steps 2000 --out-dir runs/synthetic   # synthetic change pairs

      torchrun --nproc-per-node 4 "$(which geosr)" train train.toml   # data parallel
    """
    from geosr.training.loop import train as run_train

    def call():
        out = renamed("train", "--out-dir", out_dir, "-o/--out", old_out)
        overrides = dict(
            out=str(out) if out else None, arch=arch, scales=tuple(scale) if scale else None,
            steps=renamed("train", "--train-steps", train_steps, "--steps", old_steps),
            batch_size=renamed("train", "--batch", batch, "--batch-size", old_batch_size),
            lr=renamed("train", "--learning-rate", learning_rate, "--lr", old_lr),
            crop=crop, checkpoint_every=checkpoint_every, val_every=val_every, degradation=degradation, device=device,
            seed=seed,
        )
        with progress_bar("train", enabled=not (quiet or json_out)) as update:
            return run_train(config, data=data, val_data=val_data, resume=resume, overwrite=overwrite, init=init,
                             progress=lambda s, n, loss: update(s, n),
                             max_seconds=None if max_minutes is None else max_minutes * 60, **overrides)

    result = run_command(call, json_out=json_out, quiet=quiet, command="train")
    if json_out:
        print_json(result.to_dict())
    elif not quiet:
        _print_summary(result)


def _print_summary(result) -> None:
    out_console.print(
        Text.assemble((f"wrote {result.checkpoint}", "bold green"),
                      f": {result.steps} steps"
                      + (f" (resumed at {result.resumed_from})" if result.resumed_from else "")
                      + f" in {result.seconds:.0f} s, loss {result.ema_loss:.4f}; log {result.log}"),
        highlight=False,
    )
    if result.best_checkpoint:
        out_console.print(f"best on validation: {result.best_checkpoint} (step {result.best_step}, "
                          f"{result.best_val_gain_db:+.2f} dB PSNR-Y over bicubic)", highlight=False)
