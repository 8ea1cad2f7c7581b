#!/usr/bin/env bash
# Create .venv and install dav-builder with its test extras.
# torch is pinned to 2.14.1 (with torchvision 0.29.1, which open_clip needs): the release this
# project is tested with.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]"
.venv/bin/python -c "import dav_builder, torch, ray, diffusers, open_clip; print('dav-builder installed; torch', torch.__version__)"
