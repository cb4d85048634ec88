"""``geosr models``: the models --model accepts."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Column, Table

from geosr.cli.common import out_console, print_json


def models(json_out: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False) -> None:
    """List bundled models and classical back-ends.

    Example:

      geosr models
    """
    from geosr.models.registry import available_models

    items = available_models()
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
        if m.licences and "+" not in m.name:
            out_console.print(f"{m.name}: {m.licences.split('. ')[0]}.", highlight=False, soft_wrap=True)
