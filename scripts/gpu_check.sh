#!/usr/bin/env bash
# Checks a GPU machine in one command (under 8 minutes on one GPU) and writes docs/gpu.md:
#   scripts/gpu_check.sh                  the h100 preset's baseline at a shortened budget, then two islands
#                                         sharing the GPU (ray.gpus_per_island=0.5) with early stop on
#   scripts/gpu_check.sh --dry-run        the same steps with the tiny preset on CPU (~1 minute), written to
#                                         a temporary file instead of docs/gpu.md
#   scripts/gpu_check.sh --help           every option (scripts/gpu_check.py)
# EVOLVE_VENV_PYTHON=/path/to/python uses an interpreter that already has the project installed
# instead of setting up .venv (scripts/setup.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${EVOLVE_VENV_PYTHON:-}"
if [[ -z "$PY" ]]; then
  source "$ROOT/scripts/setup.sh"
  PY="$ROOT/.venv/bin/python"
fi
exec "$PY" "$ROOT/scripts/gpu_check.py" "$@"
