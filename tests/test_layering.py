"""The house: every rule of DESIGN.md's import graph, held for every module of ``geosr``.

DESIGN.md, "House (the layout, and the direction of imports)":

    cli -> pipeline -> {conditioning, osm -> io -> tiling}
    pipeline -> {models, sampling} -> core (errors, config, _version)

``tiling``, ``io``, ``conditioning`` and ``osm`` never import torch; ``models`` and ``sampling`` never import
the GIS stack; nothing below ``cli`` imports typer or rich; core imports nothing of geosr but itself.

The check is static: every ``.py`` under ``geosr/`` is parsed and *all* of its imports are collected, at module
level and inside functions (geosr imports heavy things lazily, so a function-level import is still a
dependency), ``if TYPE_CHECKING:`` blocks included. Two subprocess checks add what only running can show:
importing ``geosr`` and the raster side loads no torch, importing the model side loads no GIS stack. And
pyproject's ``[project.dependencies]`` is exactly what ``geosr/`` imports.

A layer may import anything of its own package. Arrows are transitive (``cli`` may call ``io`` directly),
never upward and never sideways unless listed. To change a rule, change DESIGN.md first, then the tables.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "geosr"

# ---- the rules (DESIGN.md, "House") ---------------------------------------------------------------------------
# A layer is a top-level name under geosr/: a sub-package (geosr/io/) or a module (geosr/config.py).
# "__init__" is geosr/__init__.py, the public API facade; "__main__" is `python -m geosr`.
CORE = ("_version", "errors", "config", "permissions")

ALLOWED: dict[str, tuple[str, ...]] = {
    # core: nothing of geosr but itself
    "_version": (),
    "errors": (),
    "config": ("errors", "_version"),
    "permissions": (),  # the mode a new file gets (standard library only)
    # the options of the commands, declared once (flags, manifest keys, API keywords); made of core's config
    # dataclasses. Not in DESIGN.md's tree yet: it sits just above core, for the workflows and the CLI.
    "options": CORE,
    # the raster side, bottom up: {conditioning, osm} -> io -> tiling
    "tiling": CORE,
    "io": ("tiling", *CORE),
    "conditioning": ("io", "tiling", *CORE),
    "osm": ("io", "tiling", *CORE),
    # the model side: pure torch. sampling's samplers are pure functions over any denoiser (core only);
    # models/diffusion.py composes a denoiser with them into a SuperResolver, so models may use sampling
    "sampling": CORE,
    "models": ("sampling", *CORE),
    # the workflows. pipeline composes both sides; training builds on models and, to measure a model the way
    # users run it, on pipeline (training/evaluate.py runs the upscale workflow); pipeline never uses training
    "pipeline": ("conditioning", "osm", "io", "tiling", "models", "sampling", "options", *CORE),
    "training": ("pipeline", "options", "models", "sampling", "conditioning", "osm", "io", "tiling", *CORE),
    # geosr/sample_scene.py: paths of the bundled sample scene (data beside weights/); for the CLI and the API
    "sample_scene": ("io", *CORE),
    # the top: the command line, and the public API, which resolves its names lazily (import_module)
    "cli": ("pipeline", "training", "conditioning", "osm", "io", "tiling", "models", "sampling", "options",
            "sample_scene", "__init__", *CORE),
    "__init__": ("pipeline", "training", "conditioning", "osm", "io", "tiling", "models", "sampling", "options",
                 "sample_scene", *CORE),
    "__main__": ("cli",),
}

# Data, not code: holds no Python module and is never imported (read by path).
DATA = ("weights",)

# Third-party modules, matched by dotted prefix ("torch" matches torch.nn).
TORCH = ("torch", "torchvision", "torchmetrics", "safetensors.torch")
GIS = ("rasterio", "geopandas", "osmnx", "osmium", "dask", "distributed", "shapely", "pyproj", "fiona", "pyogrio",
       "rio_tiler", "rio_cogeo")
UI = ("typer", "click", "rich")

FORBIDDEN: dict[str, tuple[str, ...]] = {
    "tiling": TORCH + UI,
    "io": TORCH + UI,
    "conditioning": TORCH + UI,
    "osm": TORCH + UI,
    "models": GIS + UI,
    "sampling": GIS + UI,
    "pipeline": UI,
    "training": UI,
}
# Layers that import the standard library only (core stays cheap and dependency-free; the facade and the
# sample paths load nothing at import).
STDLIB_ONLY = ("_version", "errors", "config", "options", "sample_scene", "__init__", "__main__")

# Violations the tree has today, as "geosr/x/y.py imports MODULE" (no line numbers, so edits don't churn this).
# Each is a debt, not a licence: a new violation fails, and so does an entry here that no longer occurs —
# remove it when it is fixed.
KNOWN: set[str] = set()


# Imported under geosr/ but deliberately not in [project.dependencies]: probed inside try/except, and the
# feature says it is unavailable without it.
OPTIONAL_IMPORTS: dict[str, str] = {}


# ---- the scan -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Import:
    path: str  # "geosr/io/rasters.py"
    line: int
    module: str  # resolved, absolute: "geosr.tiling.grid", "torch.nn", "rasterio"

    @property
    def key(self) -> str:
        return f"{self.path} imports {self.module}"


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(dotted: str, root: Path) -> bool:
    """Whether ``geosr.a.b`` names a module or package on disk (so ``from geosr.a import b`` imports it)."""
    base = root.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _imports(path: Path, root: Path = ROOT) -> list[Import]:
    rel = path.relative_to(root).as_posix()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[Import, None] = {}  # ordered, one per (line, module): `from a import b, c` is one import of a
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update((Import(rel, node.lineno, alias.name), None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                module = sub if base.split(".")[0] == "geosr" and _is_module(sub, root) else base
                found[Import(rel, node.lineno, module)] = None
    return list(found)


@cache
def _sources() -> tuple[Path, ...]:
    return tuple(sorted(PACKAGE.rglob("*.py")))


def _layer_of_file(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else Path(parts[0]).stem


def _layer_of_module(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _matches(module: str, prefixes: tuple[str, ...]) -> str | None:
    return next((p for p in prefixes if module == p or module.startswith(p + ".")), None)


@cache
def _violations() -> tuple[tuple[str, str], ...]:
    """(key, message) of every static violation of the rules above."""
    out = []
    for path in _sources():
        layer = _layer_of_file(path)
        if layer not in ALLOWED:
            continue  # reported by test_every_module_sits_in_a_declared_layer
        for imp in _imports(path):
            top = imp.module.split(".")[0]
            where = f"{imp.path}:{imp.line} imports {imp.module}"
            if top == "geosr":
                target = _layer_of_module(imp.module)
                if target != layer and target not in ALLOWED[layer]:
                    out.append((imp.key, f"{where} ({layer} may not depend on {target})"))
            elif layer in STDLIB_ONLY and top not in sys.stdlib_module_names:
                out.append((imp.key, f"{where} ({layer} imports the standard library only)"))
            elif hit := _matches(imp.module, FORBIDDEN.get(layer, ())):
                out.append((imp.key, f"{where} ({layer} may not import {hit})"))
    return tuple(out)


# ---- static checks --------------------------------------------------------------------------------------------
def test_every_module_sits_in_a_declared_layer():
    undeclared = sorted({f"geosr/{_layer_of_file(p)}" for p in _sources()} - {f"geosr/{x}" for x in ALLOWED})
    assert not undeclared, (
        f"not in tests/test_layering.py's ALLOWED table: {', '.join(undeclared)}. Give each a place in "
        "DESIGN.md's House and a row in ALLOWED (which layers it may import), and add it to the rows that use it."
    )
    code_in_data = [p.relative_to(ROOT).as_posix() for d in DATA for p in (PACKAGE / d).rglob("*.py")]
    assert not code_in_data, f"{DATA} hold data only, found code: {code_in_data}"
    for layer, allowed in ALLOWED.items():
        assert set(allowed) <= set(ALLOWED), f"ALLOWED[{layer!r}] names an unknown layer"


def test_imports_follow_the_house():
    violations = [message for key, message in _violations() if key not in KNOWN]
    assert not violations, (
        f"{len(violations)} import(s) break DESIGN.md's House (rules: tests/test_layering.py ALLOWED/FORBIDDEN):\n  "
        + "\n  ".join(violations)
    )


def test_known_violations_still_occur():
    fixed = sorted(KNOWN - {key for key, _ in _violations()})
    assert not fixed, (
        "these KNOWN violations no longer occur (fixed, moved or renamed): remove them from KNOWN in "
        "tests/test_layering.py:\n  " + "\n  ".join(fixed)
    )


def test_the_scan_sees_lazy_and_relative_imports(tmp_path):
    """The scanner itself: function-level, TYPE_CHECKING and relative imports all count."""
    text = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import torch\n"
        "def f():\n    from ..models import registry\n    import rasterio.warp\n"
        "from . import rasters\n"
    )
    probe = tmp_path / "geosr" / "io" / "_scan_probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text(text)
    (tmp_path / "geosr" / "io" / "rasters.py").write_text("")
    found = [(i.line, i.module) for i in _imports(probe, tmp_path)]
    assert (3, "torch") in found
    assert (5, "geosr.models") in found  # geosr.models.registry is not on disk under tmp_path
    assert (6, "rasterio.warp") in found
    assert (7, "geosr.io.rasters") in found


def _canonical(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def test_every_third_party_import_is_declared():
    """pyproject's [project.dependencies] is what geosr/ imports: nothing missing, nothing unused."""
    tomllib = pytest.importorskip("tomllib")
    from importlib.metadata import packages_distributions

    declared, elsewhere = set(), set()
    for requirement in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        name, extras = re.match(r"\s*([A-Za-z0-9_.-]+)\s*(?:\[([^\]]*)\])?", requirement).groups()
        marker = re.search(r";\s*python_version\s*([<>=!]=?)\s*['\"]([\d.]+)['\"]", requirement)
        if marker and not _python_is(marker.group(1), marker.group(2)):  # another Python's (tomli before 3.11)
            elsewhere.add(_canonical(name))
            continue
        # "dask[distributed]" declares dask and, through its extra, distributed
        declared |= {_canonical(name), *(_canonical(e) for e in (extras or "").split(",") if e.strip())}
    providers = packages_distributions()
    used, problems = set(), []
    for path in _sources():
        for imp in _imports(path):
            top = imp.module.split(".")[0]
            if top == "geosr" or top in sys.stdlib_module_names or top in OPTIONAL_IMPORTS or \
                    _canonical(top) in elsewhere:
                continue
            dists = {_canonical(d) for d in providers.get(top, ())}
            used |= dists
            if not dists:
                problems.append(f"{imp.path}:{imp.line} imports {top}, which no installed distribution provides")
            elif not dists & declared:
                problems.append(f"{imp.path}:{imp.line} imports {top} ({', '.join(sorted(dists))}): not declared")
    problems += [f"{d} is declared and never imported under geosr/" for d in sorted(declared - used)]
    assert not problems, "pyproject.toml [project.dependencies] vs geosr/:\n  " + "\n  ".join(problems)


def _python_is(op: str, version: str) -> bool:
    """Whether this interpreter's ``python_version`` satisfies ``op version`` (a requirement's marker)."""
    here, there = sys.version_info[:2], tuple(int(v) for v in version.split(".")[:2])
    return {"<": here < there, "<=": here <= there, ">": here > there, ">=": here >= there, "==": here == there,
            "!=": here != there}[op]


# ---- runtime checks (a fresh interpreter each) ----------------------------------------------------------------
def _modules_of(*layers: str) -> list[str]:
    names = []
    for layer in layers:
        if (PACKAGE / f"{layer}.py").is_file():
            names.append(f"geosr.{layer}")
        names += sorted(_module_name(p) for p in (PACKAGE / layer).rglob("*.py"))
    return names


def _first_import_loading(modules: list[str], heavy: tuple[str, ...]) -> str:
    """Imports ``modules`` one by one in a fresh interpreter; '' if none of ``heavy`` got loaded, else which
    module brought in which."""
    code = (
        "import importlib, sys\n"
        f"heavy = {heavy!r}\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "    loaded = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "    if loaded:\n"
        "        print(f'importing {name} loads {loaded[0]}')\n"
        "        break\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_importing_geosr_loads_no_torch_nor_gdal():
    assert _first_import_loading(["geosr"], ("torch", "rasterio")) == ""


def test_raster_side_loads_no_torch():
    modules = _modules_of(*CORE, "tiling", "io", "conditioning", "osm")
    assert len(modules) > 10
    assert _first_import_loading(modules, ("torch", "torchvision", "torchmetrics")) == ""


def test_model_side_loads_no_gis_stack():
    modules = _modules_of("models", "sampling")
    assert len(modules) > 5
    assert _first_import_loading(modules, tuple(g.split(".")[0] for g in GIS)) == ""


def test_the_backbone_trainer_loads_no_gis_stack():
    """The LR-space model trains where only torch, numpy, scipy and PIL are installed (a GPU machine's image):
    ``scripts/train_backbone.py``'s imports load no GDAL, no STAC."""
    modules = ["geosr.training.backbone_fit", "geosr.training.sensor_degradations"]
    assert _first_import_loading(modules, (*GIS, "pystac")) == ""
