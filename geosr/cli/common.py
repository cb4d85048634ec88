"""What every command shares: exit codes, error reporting, JSON output and the progress bar."""

from __future__ import annotations

import errno
import functools
import inspect
import io
import json
import math
import os
import re
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Annotated, Any, Callable, Iterator, Optional, Sequence

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from geosr.errors import GPU_OUT_OF_MEMORY, GeoSRError, InputError, gpu_out_of_memory, name_too_long_message
from geosr.io.paths import credentials_hidden
from geosr.options import CommandOptions

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2

EXIT_INTERRUPTED = 130  # SIGINT, as shells report it
EXIT_TERMINATED = 143  # SIGTERM

# No markup: messages and summaries carry user text (file names like "[red]x.tif", band lists like "[r, g, b]")
# that Rich would otherwise interpret; styling goes through style= and Text.
# Into a pipe or a file, lines are never wrapped (rich would fold them at 80 columns: a summary split mid-path for a
# grep, a markdown table's rows broken, a table's names cut); on a terminal, its width.
_ESCAPE_CODE = re.compile(r"(\x1b\[[0-?]*[ -/]*[@-~])")  # a terminal's control sequence (CSI), as rich writes them


class _CredentialsHidden(io.TextIOBase):
    """The process's stdout or stderr of the moment (a test runner swaps them), every URL written to it without the
    ``user:password@`` of its authority: a message, summary or table names an input as given, and its password
    reached the terminal, logs and CI transcripts (found in review). Hand-written: no library filters a stream."""

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def _stream(self) -> Any:
        stream = getattr(sys, self._name)
        # a progress display puts its proxy in sys.stdout and sys.stderr, which writes to its console, which writes
        # here: the stream it stands for, or the run hung on a terminal (a lock taken twice)
        while hasattr(stream, "rich_proxied_file"):
            stream = stream.rich_proxied_file
        return stream

    def write(self, text: str) -> int:
        stream = self._stream
        if stream is not None:  # (closed by the caller, `>&-`: nothing to write to, and nothing wrong with the run)
            # each run of text between a terminal's escape codes apart: a styled URL follows its code's final letter
            # ("\x1b[1mhttp://u:pw@..."), which is no start of a URL to the search (found in review)
            stream.write("".join(part if i % 2 else credentials_hidden(part)
                                 for i, part in enumerate(_ESCAPE_CODE.split(text))))
        return len(text)

    def flush(self) -> None:
        if self._stream is not None:
            self._stream.flush()

    def isatty(self) -> bool:
        return self._stream is not None and bool(self._stream.isatty())

    def fileno(self) -> int:
        if self._stream is None:
            raise io.UnsupportedOperation("fileno")
        return int(self._stream.fileno())

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self._stream, "encoding", None) or "utf-8")


STDOUT, STDERR = _CredentialsHidden("stdout"), _CredentialsHidden("stderr")
err_console = Console(file=STDERR, markup=False)
if not err_console.is_terminal:
    err_console = Console(file=STDERR, markup=False, width=100_000)
out_console = Console(file=STDOUT, markup=False)
if not out_console.is_terminal:
    out_console = Console(file=STDOUT, markup=False, width=100_000)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that every ``finally`` (temporary files) runs as on Ctrl-C."""



def count(n: int, noun: str) -> str:
    """``1 window``, ``2 windows``: a count with its noun."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def renamed(command: str, new_flag: str, new: Any, old_flag: str, old: Any) -> Any:
    """The value of an option given by its name or by its deprecated one (hidden; kept for one release), which
    prints a deprecation line on stderr. Both at once with different values are refused."""
    if old is None:
        return new
    err_console.print(f"warning: {old_flag} is deprecated for geosr {command}; use {new_flag}", style="yellow",
                      highlight=False)
    if new is not None and new != old:
        from geosr.errors import OptionError

        raise OptionError(f"{old_flag} is the deprecated spelling of {new_flag}: give {new_flag} only")
    return old


def option_parameter(name: str, typ: Any, default: Any, flags: tuple[str, ...], help: str,
                     metavar: str | None = None, show_default: bool | None = None,
                     hidden: bool = False) -> inspect.Parameter:
    """A keyword-only Typer option as an :class:`inspect.Parameter` (for commands whose options are generated
    from :mod:`geosr.options`); optional when its default is None."""
    shown = default is not None if show_default is None else show_default
    annotation = Annotated[typ if default is not None else Optional[typ],
                           typer.Option(*flags, help=help, show_default=shown, metavar=metavar, hidden=hidden)]
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def command_option_parameters(options: type[CommandOptions]) -> list[inspect.Parameter]:
    """A command's options object's fields (:mod:`geosr.options.commands`) as Typer parameters of the same names;
    repeatable ones default to None (not given: the object's default)."""
    params = []
    for name, default, flag in options.flags():
        repeatable = getattr(flag.type, "__origin__", None) is list
        params.append(option_parameter(name, flag.type, None if repeatable else default, flag.flags, flag.help,
                                       metavar=flag.metavar, show_default=flag.show_default))
    return params


def given(values: dict[str, Any]) -> dict[str, Any]:
    """The option values a command line gave (None: not given, the options object's default applies)."""
    return {name: value for name, value in values.items() if value is not None}


def reporting_parameters(what: str = "summary") -> list[inspect.Parameter]:
    """``--quiet`` and ``--json``, which every command that reports takes."""
    return [option_parameter("quiet", bool, False, ("--quiet", "-q"), f"No progress bar or {what}."),
            option_parameter("json_out", bool, False, ("--json",), "Print a JSON summary on stdout.")]


def command_signature(inputs: list[inspect.Parameter], options: type[CommandOptions], *,
                      extra: Sequence[inspect.Parameter] = (), reporting: str = "summary") -> inspect.Signature:
    """A command's parameters, for Typer (set as its ``__signature__``): its ``inputs`` (arguments, -o), the
    options of ``options``, ``extra`` ones (shorthands, hidden deprecated spellings), then -q and --json."""
    return inspect.Signature([*inputs, *command_option_parameters(options), *extra, *reporting_parameters(reporting)])


def upscale_option_parameters(*, unset: bool = False, skip: tuple[str, ...] = ()) -> list[inspect.Parameter]:
    """geosr upscale's options (:data:`geosr.options.UPSCALE_OPTIONS`) as Typer parameters; ``unset``: every
    default None (``geosr batch``: the job's, the manifest's or upscale's own default applies)."""
    from geosr.options import UPSCALE_OPTIONS

    params = []
    for o in UPSCALE_OPTIONS:
        if o.name in skip or (unset and not o.manifest_key):
            continue
        default = None if unset else o.default_value()
        help_ = f"{o.help} For jobs without it." if unset else o.help
        # input paths stay text: a URL (https://, s3://) or a GDAL path (/vsizip/...) is no local Path
        params.append(option_parameter(o.name, str if o.cli_path else o.type, default, o.flags, help_,
                                       metavar="PATH" if o.cli_path else None))
    return params


# a signal that came once the output was in place waited for the job's last steps (geosr.io.outputs.completing)
_COMPLETE = "{} once the output was in place: the job is complete (output and sidecars), nothing to resume"


# After SIGINT or SIGTERM, how each command continues (only upscale and train have --resume); an exception's
# ``geosr_again`` says otherwise (a training run that saved nothing yet)
_AGAIN = {"upscale": "; run again with --resume to continue where it stopped",
          "train": "; run again with --resume to continue from the last saved state",
          "batch": "; run the same batch again to continue (finished jobs are skipped, the others resume)"}


def run_command(fn: Callable[[], Any], *, json_out: bool = False, quiet: bool = False,
                command: str | None = None) -> Any:
    """Run a command's library call, mapping geosr's errors to exit codes and one printed sentence.

    A message about one parameter of the library (``exc.param``) begins with that parameter's name; it is
    printed with ``command``'s flag for it instead (``aoi '1,2,x,4': ...`` -> ``--aoi '1,2,x,4': ...``).

    SIGTERM is handled like SIGINT: temporary files are removed, a journal is kept for ``--resume``, and the
    exit code is 143 (130 for SIGINT)."""
    previous = _on_sigterm()
    previous_int = _on_sigint()
    try:
        return fn()
    except InputError as exc:
        _fail(cli_message(exc, command), EXIT_BAD_INPUT, json_out)
    except Terminated as exc:
        _fail(_COMPLETE.format("terminated (SIGTERM)") if getattr(exc, "geosr_completed", False) else
              "terminated (SIGTERM)" + (getattr(exc, "geosr_again", None) or _AGAIN.get(command or "", "")),
              EXIT_TERMINATED, json_out, getattr(exc, "geosr_report", None))
    except KeyboardInterrupt as exc:
        _fail(_COMPLETE.format("interrupted") if getattr(exc, "geosr_completed", False) else
              "interrupted" + (getattr(exc, "geosr_again", None) or _AGAIN.get(command or "", "")),
              EXIT_INTERRUPTED, json_out, getattr(exc, "geosr_report", None))
    except typer.Exit:
        raise
    except GeoSRError as exc:  # a condition geosr names (network down, ...) but not the input's fault
        _fail(cli_message(exc, command), EXIT_INTERNAL, json_out)
    except OSError as exc:  # a name the file system refuses (ENAMETOOLONG) is the input's fault, and so is a file
        # this user may not read (or a folder not enter) that no check before named
        if exc.errno in (errno.EACCES, errno.EPERM) and exc.filename:
            _fail(f"{exc.filename}: permission denied (this user may not read or write it, or enter its folder)",
                  EXIT_BAD_INPUT, json_out)
        if exc.errno != errno.ENAMETOOLONG:
            _fail(f"internal error: {type(exc).__name__}: {exc}", EXIT_INTERNAL, json_out)
        _fail(name_too_long_message(exc), EXIT_BAD_INPUT, json_out)
    except Exception as exc:  # anything else is geosr's fault: say so, exit 1
        if gpu_out_of_memory(exc):  # torch's, on CUDA (named, not imported: the CLI starts fast)
            said = cli_words(GPU_OUT_OF_MEMORY, command) if command in ("upscale", "batch") else \
                _OUT_OF_MEMORY.get(command or "", _OUT_OF_MEMORY[""])  # (the library's sentence where it fits)
            _fail(said, EXIT_INTERNAL, json_out)
        _fail(f"internal error: {type(exc).__name__}: {exc}", EXIT_INTERNAL, json_out)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if previous_int is not None:
            signal.signal(signal.SIGINT, previous_int)


# What to do when the GPU runs out of memory, per command (torch's message is a page of allocator statistics).
_OUT_OF_MEMORY = {
    "": "the GPU ran out of memory; run it with --device cpu, or free the GPU",
    # (upscale and batch: errors.GPU_OUT_OF_MEMORY, --window first: `lite` takes one window per call, for which
    # --batch-size does nothing; found in review)
    "train": "the GPU ran out of memory; give a smaller --batch (or --crop, for the diffusion models), or --device cpu",
}

# Library keywords pinned to a flag, and those the CLI names differently (the rest come from the commands).
# (x: a batch manifest's key for the scale, which its command-line defaults' messages name; found in review)
LIBRARY_FLAGS = {"scale": "-x", "x": "-x", "output": "-o", "cache_folder": "--cache-dir"}


def cli_message(exc: BaseException, command: str | None = None) -> str:
    """``str(exc)`` in the CLI's words: the parameter name it begins with (``exc.param``), and every parameter it
    names mid-sentence in backticks (```ref_bands```, as the library writes them), replaced by the CLI's flags."""
    message = cli_words(str(exc), command)
    param = getattr(exc, "param", None)
    if not param or not message.startswith(param) or message[len(param):len(param) + 1] not in (" ", ":"):
        return message
    flag = cli_flag(param, command)
    return message if flag is None else flag + message[len(param):]


_PARAM = re.compile(r"(?<!`)`([a-z][a-z0-9_]*)`(?!`)")  # a library message's mention of another parameter


def print_warnings(warnings: Any, command: str) -> None:
    """The run's warnings on stderr, one line each: with the summary, and alone with ``--quiet`` (which silences
    progress and the summary, not what the user should know of the result)."""
    for w in warnings or ():
        err_console.print(f"warning: {cli_words(w, command)}", style="yellow", highlight=False)


def crs_label(text: str | None) -> str | None:
    """A CRS as a summary line shows it: as given where short (EPSG:32633), else its name and its parts' EPSG codes
    (a compound CRS's whole WKT made a 960-character "wrote" line; found in review); `--json` keeps the WKT."""
    if not text or len(text) <= 40:
        return text
    try:
        from pyproj import CRS

        crs = CRS.from_user_input(text)
    except Exception:  # noqa: BLE001 - shown as it is
        return text
    codes = [c.to_epsg() for c in crs.sub_crs_list] if crs.is_compound else [crs.to_epsg()]
    said = "+".join(str(c) for c in codes) if all(codes) else None
    base = crs.source_crs if crs.is_bound and crs.source_crs is not None else crs  # (+towgs84: its datum shift)
    name = base.name if base.name and base.name != "unknown" else \
        f"a custom {base.coordinate_operation.method_name if base.coordinate_operation else 'CRS'}"
    return f"{name} ({'EPSG:' + said if said else 'no EPSG code; its WKT in --json'})"


def cli_words(text: str, command: str | None = None) -> str:
    """A library message or warning with each parameter it names in backticks (```bands```) as the CLI's flag."""
    return _PARAM.sub(lambda m: cli_flag(m.group(1), command) or m.group(1), text)


def cli_flag(param: str, command: str | None = None) -> str | None:
    """The flag for the library keyword ``param``: ``command``'s own option of that name, else the pinned one
    (:data:`LIBRARY_FLAGS`), else the first command's that has it (names agree across commands); None: none."""
    per_command, any_command = _flag_tables()
    return per_command.get(command or "", {}).get(param) or LIBRARY_FLAGS.get(param) or any_command.get(param)


@functools.lru_cache(maxsize=1)
def _flag_tables() -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """{command: {option name: its first flag}} and the same merged over every command, read once from the app."""
    from geosr.cli.app import app
    from geosr.cli.reference import commands

    per_command: dict[str, dict[str, str]] = {}
    any_command: dict[str, str] = {}
    for name, cmd in commands(app).items():
        flags = {p.name: p.opts[0] for p in cmd.params if p.param_type_name == "option" and p.opts}
        per_command[name] = flags
        for key, flag in flags.items():
            any_command.setdefault(key, flag)
    return per_command, any_command


def _on_sigterm():
    """Make SIGTERM raise :class:`Terminated` (main thread only); return the handler it replaced."""
    try:
        return signal.signal(signal.SIGTERM, _raising(Terminated))
    except ValueError:  # not the main thread (a test runner, an embedding application): leave it alone
        return None


def _on_sigint():
    """Make SIGINT raise KeyboardInterrupt as Python's own handler does, but never inside an import (see
    :func:`_raising`); return the handler it replaced. Left alone where SIGINT is not Python's (ignored: a job
    started in the background of a script) or off the main thread."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return None
    try:
        return signal.signal(signal.SIGINT, _raising(KeyboardInterrupt))
    except ValueError:
        return None


def _raising(exc_type: type[BaseException]) -> Callable[[int, Any], None]:
    """A signal handler raising ``exc_type``, unless the signal came while a module was being imported: then the
    signal is sent again shortly after, until the import is done. An exception raised in a C++ module's
    initialization (torch's, which a command imports as it starts) is no Python exception but std::terminate:
    a SIGTERM in a batch's first seconds aborted the process with a page of C++ trace and no message (review)."""

    def handler(signum: int, frame: Any) -> None:
        if not _importing(frame):
            raise exc_type()
        # a thread of its own: the signal must arrive when the main thread runs Python again, after the import
        # (os.kill wakes the main thread from a sleep, where raise_signal in this thread would not; on Windows
        # os.kill(pid, SIGINT) ends the process at once, exit code 2, where raise_signal runs the handler)
        again = signal.raise_signal if os.name == "nt" else functools.partial(os.kill, os.getpid())
        timer = threading.Timer(0.05, again, (signum,))
        timer.daemon = True
        timer.start()

    return handler


def _importing(frame: Any) -> bool:
    """Whether ``frame`` (where a signal handler was called) runs inside an import."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _fail(message: str, code: int, json_out: bool, report: dict | None = None) -> None:
    """Print ``message`` (with ``--json``: an object, ``report``'s keys added: what a stopped command had done)."""
    if json_out:
        print_json({**(report or {}), "ok": False, "exit_code": code, "error": message})
    else:
        # a console of its own: a Ctrl-C that lands while a line is being printed can leave rich's console holding
        # all later output in its buffer, never written (measured: 81 of 20,000 interrupts of a printing loop), and
        # the "interrupted ..." line went missing with it (exit 130, nothing said)
        console = Console(file=STDERR, markup=False, width=None if err_console.is_terminal else 100_000)
        console.print(Text.assemble(("geosr: error:", "bold red"), " ", message), highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def print_coregistration(co: dict | None) -> None:
    """The reference's co-registration (``Coregistration.to_dict()``, or as an output's tags recorded it: keys an
    older version did not write are left out) in a line or two of the summary or of ``geosr info``."""
    if not isinstance(co, dict):
        return
    dx, dy = (round(v, 2) + 0.0 for v in co.get("offset_lr_px", (0.0, 0.0)))  # + 0.0: -0.00 reads as +0.00
    reason = f" ({co['reason']})" if co.get("reason") else ""
    what = "moved back" if co.get("applied") else f"not moved{reason}"
    reliability = f", reliability {co['reliability']:.2f}" if isinstance(co.get("reliability"), (int, float)) else ""
    out_console.print(f"reference offset from the LR: {dx:+.2f}, {dy:+.2f} LR px (columns, rows){reliability}: "
                      f"{what}", highlight=False)
    if co.get("field"):
        out_console.print(f"  varying over the scene (rotation, scale or shear): an affine field through "
                          f"{co['tie_points']} tie points, {co['residual_lr_px']:.2f} LR px RMS from them, "
                          f"applied; the offset above is the centre's", highlight=False)


def print_sensor_mask(mask: dict | None) -> None:
    """The products' own cloud masks a detection used (``ChangeDetectionResult.sensor_mask``, or the masks a change
    raster's tags record), in a line."""
    if not isinstance(mask, dict) or not isinstance(mask.get("masks"), list):
        return
    used = "; ".join(f"the {m.get('of', '?')}'s, {m.get('source', '?')}: {m.get('flagged', '?')}"
                     for m in mask["masks"] if isinstance(m, dict))
    share = f"{100 * mask['share']:.1f}% of the area both images cover, " if isinstance(mask.get("share"),
                                                                                     (int, float)) else ""
    if mask.get("changed") is False:  # --cd none: the reference is trusted everywhere, clouds included
        out_console.print(f"cloud mask ({used}): left out of the reference's colour fit, not taken as changed "
                          "(--cd none)", highlight=False)
        return
    out_console.print(f"cloud mask ({used}): {share}taken as changed", highlight=False)


def print_json(payload: dict, command: str | None = None) -> None:
    """``payload`` as one line of JSON on stdout, its warnings and errors (at any depth) naming flags as the text
    output does (``--steps``, not the library's `steps`; found in review)."""
    if sys.stdout is None:  # closed by the caller (`>&-`): nothing to write to, and nothing wrong with the run
        return
    payload = _in_cli_words({"ok": True, **payload}, command)
    STDOUT.write(json.dumps(_finite(payload), default=str, allow_nan=False) + "\n")


def _in_cli_words(value: Any, command: str | None) -> Any:
    """``value`` with every text under a ``warnings``, ``error`` or ``reason`` key (a batch job's too) in the CLI's
    words (:func:`cli_words`)."""
    if isinstance(value, dict):
        return {k: _words(v, command) if k in ("warnings", "error", "reason") else _in_cli_words(v, command)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_in_cli_words(v, command) for v in value]
    return value


def _words(value: Any, command: str | None) -> Any:
    if isinstance(value, str):
        return cli_words(value, command)
    if isinstance(value, (list, tuple)):
        return [cli_words(v, command) if isinstance(v, str) else v for v in value]
    return value


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as null (JSON has neither; a NaN nodata value is common)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# the last seconds of progress an ETA is estimated from: rich's 30 s gave a training run of 40 s steps (a CPU, batch 16)
# no ETA ever, as no two updates fell within them (found in review)
SPEED_PERIOD_S = 3600.0


class ProgressView:
    """The one live progress renderer of every command: named bars (label, bar, done/total, elapsed, ETA) on
    stderr. Nothing shows before the first update, so a run refused while checking prints only its error."""

    def __init__(self, *, enabled: bool, transient: bool = False) -> None:
        # bars that vanish when done show nothing but a blank line where stderr is not a terminal (a log, a pipe)
        self.enabled = enabled and (err_console.is_terminal or not transient)
        self._bar: Progress | None = None
        self._transient = transient
        self._tasks: dict[str, TaskID] = {}

    def update(self, name: str, done: int, total: int | None, *, label: str | None = None) -> None:
        """Set bar ``name`` (shown as ``label``, default the name) to ``done`` of ``total`` (None: unknown)."""
        if not self.enabled:
            return
        if self._bar is None:
            self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=err_console,
                                 transient=self._transient, speed_estimate_period=SPEED_PERIOD_S)
            self._bar.start()
        if name not in self._tasks:
            self._tasks[name] = self._bar.add_task(label or name, total=total)
        self._bar.update(self._tasks[name], description=label or name, completed=done, total=total)

    def print(self, line: str) -> None:
        """A line above the bars (or on stderr when there are none)."""
        (self._bar.console if self._bar is not None else err_console).print(line, highlight=False, soft_wrap=True)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> "ProgressView":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@contextmanager
def progress_bar(description: str, *, enabled: bool) -> Iterator[Callable[[int, int], None]]:
    """A :class:`ProgressView` of one bar; yields ``update(done, total)``."""
    with ProgressView(enabled=enabled) as view:
        yield lambda done, total: view.update(description, done, total)
