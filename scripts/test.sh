#!/usr/bin/env bash
# Set up geosr, lint it, and run its tests (the realdata suite runs too when ../shared/data exists).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check geosr tests scripts bench
.venv/bin/mypy  # the core packages ([tool.mypy] in pyproject.toml)
exec .venv/bin/python -m pytest -q "$@"
