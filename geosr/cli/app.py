"""The ``geosr`` command line (Typer). Each command parses, makes one library call, maps errors to exits."""

from __future__ import annotations

import inspect
import json
import re
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from geosr.cli.batch import batch
from geosr.cli.common import STDERR, STDOUT
from geosr.cli.detect_changes import detect_changes
from geosr.cli.evaluate import evaluate
from geosr.cli.info import info
from geosr.cli.models import models
from geosr.cli.rasterize_osm import RasterizeOSMCommand, rasterize_osm
from geosr.cli.sample import sample
from geosr.cli.train import train
from geosr.cli.upscale import upscale

# click's ClickException, whichever click Typer parses with (recent Typer carries its own copy as typer._click)
_CLICK_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
_USAGE_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
_NO_ARGS = getattr(sys.modules[_USAGE_ERROR.__module__], "NoArgsIsHelpError", ())  # (click 8.2 on)


def _flag_type(self: Any, ctx: Any) -> str | None:
    """No type beside a flag in ``--help``: Typer 0.29 shows ``--overwrite <bool>``, which reads as taking a value
    (``geosr sample --overwrite true`` copied the sample into a folder named "true"; found in review)."""
    return None if getattr(self, "is_flag", False) else _TYPE_SHOWN(self, ctx)


# (a Typer without the method shows no type anyway: then nothing is changed)
_TYPE_SHOWN = getattr(typer.core.TyperOption, "display_type_rich", None)
if _TYPE_SHOWN is not None:
    typer.core.TyperOption.display_type_rich = _flag_type


class _Commands(TyperGroup):
    """geosr's commands; a usage error (a missing or malformed option) is reported as every other error is: one
    line on stderr, ``geosr: error: ...`` (with ``--json``: one JSON line on stdout, ``{"ok": false, "exit_code": 2,
    "error": ...}``), instead of a usage box that wraps the message over several lines."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        json_out = "--json" in argv
        try:
            empty = _empty_argument(argv)
            if empty:
                raise _USAGE_ERROR(empty)
            code = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except _NO_ARGS as exc:  # `geosr` alone: its help, printed once as the error was raised (calling click again
            sys.exit(exc.exit_code)  # printed it twice)
        except _CLICK_ERROR as exc:
            if json_out:
                print(json.dumps({"ok": False, "exit_code": exc.exit_code, "error": exc.format_message()}), file=STDOUT)
            else:
                ctx = getattr(exc, "ctx", None)
                listed = "commands" if hasattr(getattr(ctx, "command", None), "list_commands") else "options"
                where = f" (`{ctx.command_path} --help` lists the {listed})" if ctx is not None and \
                    isinstance(exc, _USAGE_ERROR) else ""
                print(f"geosr: error: {exc.format_message()}{where}", file=STDERR)  # (no URL's password)
            sys.exit(exc.exit_code)
        except typer.Abort:
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _empty_argument(argv: list[str]) -> str | None:
    """Why the command line cannot be right when it holds an empty argument (``--ref "$REF"`` with REF unset): an
    empty path would be read as the working folder, an empty option as absent. None when there is none."""
    for i, arg in enumerate(argv):
        if arg.strip() == "" or re.fullmatch(r"--[A-Za-z0-9][A-Za-z0-9-]*=", arg):
            what = f"{arg} is empty" if arg.strip() else (f"an empty argument follows {argv[i - 1]}" if i else
                                                         "the first argument is empty")
            return f"{what} (an unset shell variable?); give a value, or leave it out"
    return None


app = typer.Typer(
    cls=_Commands,
    name="geosr",
    help="Change-aware super-resolution of georeferenced satellite scenes (GeoTIFF in, COG out).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def prose_help(command: Any) -> str:
    """``command``'s docstring as its --help shows it: a prose paragraph's lines joined (Typer's rich markup keeps
    each source line break, which the terminal then wraps again into a ragged column); indented lines (examples)
    stay as written."""
    paragraphs = (inspect.getdoc(command) or "").split("\n\n")
    return "\n\n".join(p if any(line.startswith(" ") for line in p.splitlines()) else " ".join(p.split("\n"))
                       for p in paragraphs)


for _name, _command, _extra in (("upscale", upscale, {}), ("rasterize-osm", rasterize_osm, {"cls": RasterizeOSMCommand}),
                                ("detect-changes", detect_changes, {}), ("batch", batch, {}), ("train", train, {}),
                                ("evaluate", evaluate, {}), ("info", info, {}), ("models", models, {}),
                                ("sample", sample, {})):
    app.command(_name, help=prose_help(_command), **_extra)(_command)


def _version(value: bool) -> None:
    if value:
        from geosr._version import __version__

        typer.echo(f"geosr {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    """geosr: super-resolve GeoTIFF scenes 2x-16x with the CRS and footprint kept exact."""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
