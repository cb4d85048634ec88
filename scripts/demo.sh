#!/usr/bin/env bash
# Set up geosr, copy the bundled sample scene to ./geosr-sample and super-resolve it 8x with the default model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# (the demo's own folder: a sample left by an earlier geosr is replaced; an error is still said on stderr)
.venv/bin/geosr sample geosr-sample --overwrite -q
.venv/bin/geosr upscale geosr-sample/taizhou_2003_lr240m.tif \
  --ref geosr-sample/taizhou_2000_ref30m.tif --cd geosr-sample/taizhou_change_2000_2003.tif \
  -x 8 -o geosr-sample/sr_x8.tif --overwrite "$@"
.venv/bin/geosr info geosr-sample/sr_x8.tif
