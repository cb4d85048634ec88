"""What every command shares: exit codes, error reporting, JSON output and the progress bar."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from geosr.errors import GeoSRError, InputError

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2

err_console = Console(stderr=True)
out_console = Console()

LR_CONSISTENCY_HELP = (
    "Diffusion models: back-project the SR onto the LR: off, box (each LR pixel's block averages to it exactly) or "
    "bicubic (the bicubic degradation). Default: the checkpoint's own setting (the default model: box)."
)


def run_command(fn: Callable[[], Any], *, json_out: bool = False, quiet: bool = False) -> Any:
    """Run a command's library call, mapping geosr's errors to exit codes and one printed sentence."""
    try:
        return fn()
    except InputError as exc:
        _fail(str(exc), EXIT_BAD_INPUT, json_out)
    except KeyboardInterrupt:
        _fail("interrupted", 130, json_out)
    except typer.Exit:
        raise
    except GeoSRError as exc:  # a condition geosr names (network down, ...) but not the input's fault
        _fail(str(exc), EXIT_INTERNAL, json_out)
    except Exception as exc:  # anything else is geosr's fault: say so, exit 1
        _fail(f"internal error: {type(exc).__name__}: {exc}", EXIT_INTERNAL, json_out)


def _fail(message: str, code: int, json_out: bool) -> None:
    if json_out:
        print(json.dumps({"ok": False, "exit_code": code, "error": message}))
    else:
        err_console.print(f"[bold red]geosr: error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def print_json(payload: dict) -> None:
    sys.stdout.write(json.dumps({"ok": True, **payload}, default=str) + "\n")


@contextmanager
def progress_bar(description: str, *, enabled: bool) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar with ETA; yields ``update(done, total)``. It appears at the first update, so
    a run refused while checking its inputs prints nothing but its error."""
    if not enabled:
        yield lambda done, total: None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("windows"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    bar = Progress(*columns, console=err_console)
    task = None

    def update(done: int, total: int) -> None:
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task(description, total=total)
        bar.update(task, completed=done, total=total)

    try:
        yield update
    finally:
        if task is not None:
            bar.stop()
