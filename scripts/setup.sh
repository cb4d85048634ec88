#!/usr/bin/env bash
# Set up geosr in ./.venv on a fresh machine (idempotent). Installs the CPU build of torch first where the
# machine has it pinned on disk, then geosr with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  # torch 2.13.0 is a CPU build available locally here; elsewhere pip resolves torch normally below.
  .venv/bin/python -m pip install -q "torch==2.13.0" 2>/dev/null || true
fi
.venv/bin/python -m pip install -q -e ".[test]" 2>&1 | grep -vE "^(WARNING|  )|Location .* is ignored" || true
.venv/bin/python -c "import geosr, torch, rasterio; print('geosr', geosr.__version__, '| torch', torch.__version__, '| GDAL', rasterio.__gdal_version__)"
