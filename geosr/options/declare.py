"""How a command's options are declared once: a frozen dataclass whose fields carry their CLI flag and help.

A command's options object (:class:`CommandOptions`) is the one place where an option exists: its field is the
Python API's keyword (``geosr.detect_changes(..., coregister=False)``), its :func:`option` metadata gives the
command line its flags and help (``geosr.cli.common.command_signature`` turns them into Typer
parameters), :meth:`CommandOptions.to_json` is what an output records, and ``__post_init__`` checks the values
for every door at once. ``geosr upscale``'s options are declared the same way by a table
(:mod:`geosr.options.upscale`), since its batch manifest needs more per option.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Mapping, TypeVar

from geosr.config import is_bool
from geosr.errors import OptionError

T = TypeVar("T", bound="CommandOptions")
# Help texts of options several commands share, so that a flag reads the same everywhere.
DEVICE_HELP = "auto, cpu, cuda or cuda:N."
OVERWRITE_HELP = "Replace an existing output."


@dataclass(frozen=True)
class Flag:
    """An option's face on the command line: ``flags`` (the first is its name in messages), ``type`` as Typer
    reads it (``list[str]`` for a repeatable one), ``help``, and whether the output records it."""

    flags: tuple[str, ...]
    type: Any
    help: str
    metavar: str | None = None
    show_default: bool = True
    recorded: bool = True


def option(default: Any, flags: tuple[str, ...] | str, type: Any, help: str, *,  # noqa: A002 - Typer's word
           metavar: str | None = None, show_default: bool | None = None, recorded: bool = True) -> Any:
    """A dataclass field declaring one option (``show_default``: by default, when the default is not None)."""
    flags = (flags,) if isinstance(flags, str) else tuple(flags)
    shown = default is not None if show_default is None else show_default
    return field(default=default, metadata={"cli": Flag(flags, type, help, metavar, shown, recorded)})


@dataclass(frozen=True, kw_only=True)
class CommandOptions:
    """Base of a command's options object; subclasses are frozen keyword-only dataclasses of :func:`option`
    fields and check their values in ``__post_init__`` (:class:`~geosr.errors.OptionError` naming the field)."""

    command: ClassVar[str] = ""
    paths: ClassVar[tuple[str, ...]] = ()  # fields given as str or os.PathLike, kept as str

    def __post_init__(self) -> None:
        free = {f.name for f in dataclasses.fields(self) if f.type in ("Any", Any)}  # e.g. an arch table (Python)
        for name, default, flag in self.flags():  # the kinds the command line's parsing guarantees, for Python too
            if name in free:
                continue
            value = getattr(self, name)
            typ = flag.type
            if typ is bool and value is None and isinstance(default, bool):  # "not given": the default (None read as
                object.__setattr__(self, name, default)  # off turned co-registration and cloud masks off)
                continue
            if typ in (bool, int, float, str) or isinstance(typ, type) and issubclass(typ, os.PathLike):
                object.__setattr__(self, name, coerce(name, value, typ))
            elif getattr(typ, "__origin__", None) is list and typ.__args__ == (int,) and value is not None:
                items = value if isinstance(value, (list, tuple)) else (value,)
                object.__setattr__(self, name, tuple(coerce(name, v, int) for v in items))
        for name in self.paths:
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                object.__setattr__(self, name, os.fspath(value))
        refuse_empty(self, [name for name, _, _ in self.flags()])  # (`bands=""` ran with the default bands)

    @classmethod
    def of(cls: type[T], options: T | None = None, /, **values: Any) -> T:
        """``options`` (default: every default) with ``values`` by field name or by the command line's name of the
        option (``out_dir`` for ``--out-dir``, ``model`` for ``--model``); an unknown name is refused."""
        if isinstance(options, Mapping):  # options as a table of keywords
            options, values = None, {**options, **values}
        if options is not None and not isinstance(options, cls):  # (dataclasses.replace's TypeError otherwise)
            raise OptionError(f"options {options!r}: give a {cls.__name__} or a table of its fields", param="options")
        values = cls.canonical(values)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            names = sorted(known | set(cls.cli_names()))
            raise OptionError(f"unknown {cls.command} option {unknown[0]!r} (options: {', '.join(names)})")
        return dataclasses.replace(options, **values) if options is not None else cls(**values)

    @classmethod
    def cli_names(cls) -> dict[str, str]:
        """The command line's name of each option whose flag differs from its field (``--out-dir`` -> ``out_dir``:
        ``out``), as a keyword of the Python function: the first long flag, its ``--no-`` half left out."""
        names = {}
        for name, _, flag in cls.flags():
            long = next((f for f in flag.flags if f.startswith("--")), None)
            if long is not None:
                keyword = long.split("/")[0][2:].replace("-", "_")
                if keyword != name:
                    names[keyword] = name
        return names

    @classmethod
    def canonical(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` with the command line's names of options replaced by their fields' (both given: refused)."""
        aliases = cls.cli_names()
        out: dict[str, Any] = {}
        for key, value in values.items():
            name = aliases.get(key, key)
            if name in out:
                raise OptionError(f"{cls.command} option {name!r} is given twice (also as {key!r})", param=name)
            out[name] = value
        return out

    @classmethod
    def flags(cls) -> list[tuple[str, Any, Flag]]:
        """(field name, default, :class:`Flag`) of every option the command line shows, in declaration order."""
        return [(f.name, f.default, f.metadata["cli"]) for f in dataclasses.fields(cls) if "cli" in f.metadata]

    def flat(self) -> dict[str, Any]:
        """The options by name, as plain JSON values (tuples as lists, paths as text, other objects by name)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        """The options an output records (the tag ``GEOSR_OPTIONS``): those that shape it, as compact JSON."""
        shown = {name: flag for name, _, flag in self.flags()}
        kept = {name: value for name, value in self.flat().items() if name not in shown or shown[name].recorded}
        return json.dumps(kept, sort_keys=True, separators=(",", ":"))


def coerce(name: str, value: Any, typ: Any) -> Any:
    """``value`` of option ``name`` as its declared type ``typ``, for callers of the Python API (the command line
    parses its own): a NumPy number or a whole float for a whole number, a whole number for a number, a list of
    values for a comma-separated one (``bands=[4, 3, 2]``, an ``aoi`` box of four numbers). Anything else of the
    wrong kind is refused, a yes/no option above all: ``overwrite="no"`` is a non-empty string, true to Python."""
    if value is None:
        return None
    if typ is bool:
        if is_bool(value):  # NumPy's booleans too
            return bool(value)
        raise OptionError(f"{name} {value!r}: give True or False", param=name)
    if typ is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer():
            return int(float(value))  # (a whole np.float32 was refused, np.float64 taken: found in review)
        raise OptionError(f"{name} {value!r}: give a whole number", param=name)
    if typ is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
        raise OptionError(f"{name} {value!r}: give a number", param=name)
    if typ is str or isinstance(typ, type) and issubclass(typ, os.PathLike):
        if type(value).__module__ == "numpy" and hasattr(value, "tolist"):  # an array of bands, a box: a list
            value = value.tolist()
        if isinstance(value, (list, tuple)) and value and all(  # (band files as paths too: found in review)
                isinstance(v, (str, numbers.Real, os.PathLike)) and not isinstance(v, bool) for v in value):
            return ",".join(os.fspath(v) if isinstance(v, os.PathLike) else str(v) for v in value)
        if isinstance(value, (bool, numbers.Number, list, tuple, set, dict)):
            raise OptionError(f"{name} {value!r}: give text{' or a path' if typ is not str else ''}", param=name)
    return value


def refuse_empty(options: Any, names: Iterable[str]) -> None:
    """Refuse an option of ``options`` given as empty text, as the command line refuses an empty argument (a path
    would be read as the working folder; found in review)."""
    for name in names:
        value = getattr(options, name)
        if isinstance(value, str) and not value.strip():
            raise OptionError(f"{name} is empty; give a value or leave it out", param=name)


def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return getattr(value, "name", str(value))


def check_callable(value: Any, name: str, what: str) -> None:
    """Refuse a callback ``value`` (``what`` it is called with, in words) that cannot be called: it failed once the
    work had run (a TypeError), not before."""
    if value is not None and not callable(value):
        raise OptionError(f"{name} {value!r}: give a function of {what}, or None", param=name)


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> None:
    """Refuse ``value`` for option ``name`` unless it is one of ``choices``."""
    if value not in choices:
        raise OptionError(f"{name} {value!r}: choose one of {', '.join(choices)}", param=name)
