#!/usr/bin/env bash
# Mutation testing of the checks (logic in scripts/mutation.py): every measure_* step and judge replaced by a
# constant PASS, one at a time, in a copy of the tree under /tmp; exits non-zero when a mutant survives.
# Usage: bash scripts/mutation.sh [--integration] [--only NAME] [--json] [--list]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${K2_PYTHON:-$REPO/.venv/bin/python}"
if [ ! -x "$PY" ]; then PY="$(command -v python3)"; fi
exec "$PY" "$REPO/scripts/mutation.py" "$@"
