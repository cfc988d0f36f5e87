#!/usr/bin/env bash
# Usage: scripts/run.sh [hydra overrides...]    e.g. scripts/run.sh +islands=4 run.max_experiments=100
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
exec "$ROOT/.venv/bin/python" -m evolve "$@"
