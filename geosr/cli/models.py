"""``geosr models``: the models --model accepts, or what one model file is."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Column, Table

from geosr.cli.common import out_console, print_json, run_command


def models(
    model: Annotated[list[str] | None, typer.Argument(help="Models to describe: names, checkpoint paths (a training run's model.safetensors) or DIFFUSION+BACKBONE; without any, every model --model accepts by name.", show_default=False, metavar="[MODEL]...")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """List bundled models and classical back-ends, or describe model files.

    Examples:

      geosr models

      geosr models runs/mine/model.safetensors
    """
    from geosr.models.registry import available_models, describe_model

    items = run_command(lambda: [describe_model(n) for n in model] if model else available_models(),
                        json_out=json_out, command="models")
    if json_out:
        print_json({"models": [m.to_dict() for m in items]})
        return
    table = Table(Column("name", no_wrap=True), "kind", "scales", "bands", "uses besides the LR", "description")
    for m in items:
        scales = ", ".join(f"x{s}" for s in m.scales) or "any"
        bands = str(m.bands) if m.bands else "any"
        inputs = ", ".join(f"--{i}" for i in m.inputs) or "nothing"
        if m.kind == "unreadable":  # (not "any" nor "nothing": nothing is known of it)
            scales = bands = inputs = "-"
        table.add_row(m.name, m.kind, scales, bands, inputs, m.description)
    out_console.print(table)  # into a pipe or file, one row per model at its natural width (cli.common)
    for m in items:  # the terms a checkpoint records (its spec's training.licences; `--json` gives them whole)
        if m.file:
            out_console.print(f"{m.name}: file {m.file}", highlight=False, soft_wrap=True)
        for line in _trained(m.training):
            out_console.print(f"{m.name}: {line}", highlight=False, soft_wrap=True)
        if m.licences and "+" not in m.name:
            out_console.print(f"{m.name}: {m.licences.split('. ')[0]}.", highlight=False, soft_wrap=True)


def _trained(record: dict | None) -> list[str]:
    """What a checkpoint's training run recorded, in a line or two (``--json`` gives it whole)."""
    if not isinstance(record, dict):
        return []
    if "diffusion" in record and "backbone" in record and "steps" not in record:  # a composite's two
        return [f"{part}: {line}" for part in ("diffusion", "backbone") for line in _trained(record[part])]
    lines = []
    steps, seconds = record.get("steps"), record.get("seconds")
    where = ", ".join(str(record[k]) for k in ("device", "hardware") if record.get(k))
    if isinstance(steps, int):
        took = f" in {seconds:.0f} s" if isinstance(seconds, (int, float)) else ""
        lines.append(f"trained {steps} steps{took}" + (f" ({where})" if where else ""))
    data = record.get("data")
    if isinstance(data, list) and data:
        lines.append("data: " + "; ".join(str(d) for d in data))
    validation = record.get("validation")
    if isinstance(validation, dict) and validation:
        lines.append("validation: " + ", ".join(f"{k} {v}" for k, v in validation.items()))
    elif isinstance(validation, (int, float)):
        lines.append(f"validation: {validation}")
    if isinstance(record.get("description"), str) and record["description"]:
        lines.append(f"description: {record['description']}")
    return lines
