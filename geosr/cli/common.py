"""What every command shares: exit codes, error reporting, JSON output and the progress bar."""

from __future__ import annotations

import json
import signal
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import typer
from rich.console import Console
from rich.text import Text
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from geosr.errors import GeoSRError, InputError

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2

EXIT_INTERRUPTED = 130  # SIGINT, as shells report it
EXIT_TERMINATED = 143  # SIGTERM

# No markup: messages and summaries carry user text (file names like "[red]x.tif", band lists like "[r, g, b]")
# that Rich would otherwise interpret; styling goes through style= and Text.
err_console = Console(stderr=True, markup=False)
out_console = Console(markup=False)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that every ``finally`` (temporary files) runs as on Ctrl-C."""

LR_CONSISTENCY_HELP = (
    "Diffusion models: back-project the SR onto the LR: off, box (each LR pixel's block averages to it exactly) or "
    "bicubic (the bicubic degradation). Default: the checkpoint's own setting (the default model: box)."
)


def run_command(fn: Callable[[], Any], *, json_out: bool = False, quiet: bool = False) -> Any:
    """Run a command's library call, mapping geosr's errors to exit codes and one printed sentence.

    SIGTERM is handled like SIGINT: temporary files are removed, a journal is kept for ``--resume``, and the
    exit code is 143 (130 for SIGINT)."""
    previous = _on_sigterm()
    try:
        return fn()
    except InputError as exc:
        _fail(str(exc), EXIT_BAD_INPUT, json_out)
    except Terminated:
        _fail("terminated (SIGTERM); run again with --resume to continue where it stopped", EXIT_TERMINATED, json_out)
    except KeyboardInterrupt:
        _fail("interrupted", EXIT_INTERRUPTED, json_out)
    except typer.Exit:
        raise
    except GeoSRError as exc:  # a condition geosr names (network down, ...) but not the input's fault
        _fail(str(exc), EXIT_INTERNAL, json_out)
    except Exception as exc:  # anything else is geosr's fault: say so, exit 1
        _fail(f"internal error: {type(exc).__name__}: {exc}", EXIT_INTERNAL, json_out)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _on_sigterm():
    """Make SIGTERM raise :class:`Terminated` (main thread only); return the handler it replaced."""

    def handler(signum, frame):
        raise Terminated()

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (a test runner, an embedding application): leave it alone
        return None


def _fail(message: str, code: int, json_out: bool) -> None:
    if json_out:
        print(json.dumps({"ok": False, "exit_code": code, "error": message}))
    else:
        err_console.print(Text.assemble(("geosr: error:", "bold red"), " ", message), highlight=False, soft_wrap=True)
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
