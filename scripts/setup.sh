#!/usr/bin/env bash
# Idempotent set-up: creates .venv, installs torch==2.13.0 (CPU, first, so nothing pulls a CUDA
# build), the pinned requirements, this package (editable) and the pinned npm tools.
# Re-running is cheap: each step is skipped while its inputs are unchanged (stamp files).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"
stamp_py="$VENV/.twin-installed"
# the editable install maps the top-level packages that exist when it runs: a new package re-runs it
want_py=$( (cat requirements.lock pyproject.toml; ls -d */__init__.py) | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp_py" ] || [ "$(cat "$stamp_py")" != "$want_py" ]; then
  $PIP install --quiet --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  $PIP install --quiet torch==2.13.0 2>&1 | grep -v "^WARNING: Location" || true
  $PIP install --quiet -r requirements.lock 2>&1 | grep -v "^WARNING: Location" || true
  $PIP install --quiet --no-deps -e . 2>&1 | grep -v "^WARNING: Location" || true
  "$VENV/bin/python" -c "import torch, ray, pettingzoo, hydra, twin" 
  echo "$want_py" > "$stamp_py"
fi
stamp_npm=node_modules/.twin-installed
want_npm=$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp_npm" ] || [ "$(cat "$stamp_npm")" != "$want_npm" ]; then
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want_npm" > "$stamp_npm"
fi
node scripts/build_contracts.mjs
