"""``geosr train``: train (or fine-tune, or resume) a change-aware diffusion model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from geosr.cli.common import out_console, print_json, progress_bar, run_command


def data_source(path: str) -> dict:
    """A --data path -> a data source of the training config (the kind is read from the folder layout)."""
    from geosr.errors import InputError, InputNotFoundError

    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"{p}: no such training data")
    if p.is_file():
        return {"kind": "synthetic", "paths": [str(p)]}
    if (p / "HR_512").is_dir():
        return {"kind": "refdiff", "path": str(p)}
    if (p / "A").is_dir() and (p / "B").is_dir():
        return {"kind": "pairs", "path": str(p)}
    if any((p / d).is_dir() for d in ("levir_cd", "dsifn_cd", "change_lowres")):
        return {"kind": "shared", "path": str(p)}
    images = sorted(str(f) for f in p.iterdir() if f.suffix.lower() in (".tif", ".tiff", ".png", ".jpg", ".jpeg"))
    if images:
        return {"kind": "synthetic", "paths": images}
    raise InputError(f"{p}: not a training data layout geosr knows (HR_512/, A/ B/ label/, or images for synthetic change)")


def train(
    config: Annotated[Optional[Path], typer.Argument(help="Training config (.toml, .yaml or .json; keys as in docs/training.md).", show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run folder: checkpoints, log, validation grids, model.safetensors.")] = None,
    data: Annotated[Optional[list[str]], typer.Option("--data", "-d", help="Training data (repeatable): a Ref-Diff folder (HR_512/...), an A/ B/ label/ folder, ../shared/data, or HR images for synthetic change.")] = None,
    val_data: Annotated[Optional[list[str]], typer.Option("--val-data", help="Validation data the run does not train on (repeatable; layouts as --data, not ../shared/data): scored every --val-every steps, the best model kept as OUT/best.safetensors.")] = None,
    arch: Annotated[Optional[str], typer.Option("--arch", help="Architecture: tiny, small or paper.")] = None,
    scale: Annotated[Optional[list[int]], typer.Option("-x", "--scale", help="Scale factor(s) to train (repeatable).")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Optimizer steps.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Samples per step (per process).")] = None,
    crop: Annotated[Optional[int], typer.Option("--crop", help="HR crop side (a multiple of every scale).")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Peak learning rate (AdamW).")] = None,
    checkpoint_every: Annotated[Optional[int], typer.Option("--checkpoint-every", help="Save the training state every N steps.")] = None,
    val_every: Annotated[Optional[int], typer.Option("--val-every", help="Write a validation image grid (and, with --val-data, score the model) every N steps.")] = None,
    degradation: Annotated[Optional[str], typer.Option("--degradation", help="LR synthesis: real (Ref-Diff 3.3 chain) or bicubic.")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed of the data stream and the initialization.")] = None,
    init: Annotated[Optional[str], typer.Option("--init", help="Start from this geosr checkpoint (fine-tuning).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last saved state.")] = False,
    max_minutes: Annotated[Optional[float], typer.Option("--max-minutes", help="Stop (and save) after this wall time.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
) -> None:
    """Train a model; the result is OUT/model.safetensors (safe format, spec and model card inside).

    Examples:

      geosr train --data SECOND/RefSR_dataset/train -x 8 --arch small --steps 200000 -o runs/second_x8

      geosr train train.toml --resume

      geosr train --data my_hr_tiles/ -x 8 -x 16 --steps 2000 -o runs/synthetic   # synthetic change pairs

      torchrun --nproc-per-node 4 "$(which geosr)" train train.toml   # data parallel
    """
    from geosr.training.config import load_config
    from geosr.training.loop import train as run_train

    def call():
        overrides = dict(
            out=str(out) if out else None, arch=arch, scales=tuple(scale) if scale else None, steps=steps,
            batch_size=batch_size, crop=crop, lr=lr, checkpoint_every=checkpoint_every, val_every=val_every,
            degradation=degradation, device=device, seed=seed,
        )
        if data:
            overrides["data"] = tuple(data_source(d) for d in data)
        if val_data:
            overrides["val_data"] = tuple(data_source(d) for d in val_data)
        cfg = load_config(config, **overrides)
        with progress_bar("train", enabled=not (quiet or json_out)) as update:
            return run_train(cfg, resume=resume, init=init, progress=lambda s, n, loss: update(s, n),
                             max_seconds=None if max_minutes is None else max_minutes * 60)

    result = run_command(call, json_out=json_out, quiet=quiet)
    if json_out:
        print_json(result.to_dict())
    elif not quiet:
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
