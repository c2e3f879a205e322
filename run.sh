#!/usr/bin/env bash
# Set-up and entry point for a fresh clone.
#   bash run.sh demo [ARGS]   set up .venv/ if needed, then run `voxnas demo ARGS`
#   bash run.sh test [ARGS]   set up .venv/ if needed, then run the whole test suite
#   bash run.sh setup         only set up .venv/
# VOXNAS_TORCH picks the torch requirement installed first (default: the CPU wheel
# torch==2.13.0 on this project's machines; on a GPU machine e.g. VOXNAS_TORCH="torch>=2.8").
set -euo pipefail
cd "$(dirname "$0")"
export RAY_USAGE_STATS_ENABLED=0 MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1
PY=${PYTHON:-python3}

setup() {
  local stamp=.venv/.voxnas-installed
  if [ -x .venv/bin/voxnas ] && [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then
    return 0
  fi
  echo "setting up .venv/ (first run only, a few minutes)" >&2
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/python -m pip install -q "${VOXNAS_TORCH:-torch==2.13.0}"
  .venv/bin/python -m pip install -q -e ".[dev]"
  touch "$stamp"
}

cmd=${1:-help}
shift || true
case "$cmd" in
  setup) setup ;;
  demo) setup; exec .venv/bin/voxnas demo "$@" ;;
  test) setup; exec .venv/bin/python -m pytest "$@" ;;
  *) echo "usage: bash run.sh {demo|test|setup} [ARGS]" >&2; exit 2 ;;
esac
