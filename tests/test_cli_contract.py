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
