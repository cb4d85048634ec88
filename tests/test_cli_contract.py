"""One CLI contract: docs/cli.md's reference is the commands' own, and a flag means one thing everywhere."""

from __future__ import annotations

from pathlib import Path

from geosr.cli.app import app
from geosr.cli.reference import SHARED, commands, options, render

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_docs_cli_md_is_generated_from_the_commands():
    doc = DOC.read_text()
    assert render(app, doc) == doc, "docs/cli.md is stale: run `python -m geosr.cli.reference`"


def test_a_shared_flag_has_one_meaning_and_one_spelling():
    """--quiet, --json, --overwrite, --device, -o (a file) and --out-dir (a folder) agree across commands."""
    seen: dict[str, list[str]] = {}
    for name, cmd in commands(app).items():
        for p in options(cmd):
            for flag in p.opts:
                seen.setdefault(flag, []).append(name)
            if "--output" in p.opts:
                assert "-o" in p.opts and "folder" not in (p.help or "").lower(), f"{name}: -o/--output is a file"
            if "--out-dir" in p.opts:
                assert "-o" not in p.opts, f"{name}: --out-dir has no -o"
            if "--quiet" in p.opts:
                assert "-q" in p.opts and p.is_flag, name
            if "--json" in p.opts or "--overwrite" in p.opts:
                assert p.is_flag, name
            if "--steps" in p.opts:
                assert "sampl" in (p.help or "").lower(), f"{name}: --steps counts sampling steps"
            if "--batch-size" in p.opts:
                assert "window" in (p.help or "").lower(), f"{name}: --batch-size counts windows per model call"
            if "--device" in p.opts:
                assert not p.is_flag and p.default in ("auto", None), name
    for flag in SHARED:
        assert flag in seen, f"no command has {flag}"
    for flag in ("--quiet", "--json"):
        assert set(seen[flag]) >= {"upscale", "rasterize-osm", "batch", "train", "evaluate", "info"}, flag


def test_library_messages_name_parameters_and_the_cli_shows_flags():
    """A library error names the other parameters it mentions as the Python caller knows them (in backticks); the
    CLI shows each as its flag, for the command at hand."""
    from geosr.cli.common import cli_message
    from geosr.errors import BandError

    exc = BandError("ref.tif: the reference gives 2 bands (choose matching bands with `ref_bands` / `bands`)")
    assert cli_message(exc, "upscale") == "ref.tif: the reference gives 2 bands (choose matching bands with " \
        "--ref-bands / --bands)"
    assert cli_message(BandError("keep `not_a_parameter` as it is"), "upscale") == "keep not_a_parameter as it is"
    import ast
    import re

    from geosr.cli.common import cli_flag

    for path in Path(__file__).resolve().parents[1].joinpath("geosr").rglob("*.py"):
        if "cli" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue
            texts = [n.value for n in ast.walk(node.exc) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
            for text in texts:
                if "geosr " not in text:  # a command named in full (geosr rasterize-osm --style classes) is fine
                    assert not re.search(r"(^|[ (])--[a-z]", text), (path.name, text)  # a flag never passed
                for name in re.findall(r"(?<!`)`([a-z][a-z0-9_]*)`(?!`)", text):
                    assert cli_flag(name) is not None or name in _NOT_PARAMETERS, (path.name, name)


_NOT_PARAMETERS = {"true", "false", "none"}


def test_each_command_s_help_flows_its_prose_to_the_terminal_s_width():
    """Typer's rich markup kept each source line break of a docstring, and the terminal wrapped those lines again:
    `geosr detect-changes --help` showed "(4 by default: the outlines fall inside" then a half-empty line. Prose
    paragraphs are joined now; indented lines (examples) stay as written."""
    import click
    from typer.testing import CliRunner

    for name, cmd in commands(app).items():
        for paragraph in (cmd.help or "").split("\n\n"):
            lines = paragraph.split("\n")
            assert len(lines) == 1 or any(line.startswith(" ") for line in lines), (name, paragraph)
    res = CliRunner().invoke(app, ["detect-changes", "--help"], terminal_width=80, env={"COLUMNS": "80"})
    text = click.unstyle(res.output)
    assert res.exit_code == 0 and "(4 by default: the outlines fall inside the LR" in " ".join(text.split())
    prose = [line for line in text.splitlines() if line.startswith(" Writes") or "stale reference" in line]
    assert prose and all(len(line.rstrip()) > 60 for line in prose), prose
