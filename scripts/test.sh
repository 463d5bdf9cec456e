#!/usr/bin/env bash
# The whole test suite on a fresh machine: install everything, bring the stack up, run every test,
# bring the stack down. Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
bash scripts/install.sh
export PATH="$REPO/.venv/bin:$PATH"
started_stack=0
if ! k2 stack status --format json >/dev/null 2>&1; then started_stack=1; fi
k2 stack up
cleanup() { if [ "$started_stack" = 1 ]; then k2 stack down || true; fi; }
trap cleanup EXIT
# scripts/coverage.sh runs the same suite under coverage ("coverage run -m pytest")
# shellcheck disable=SC2086
if [ $# -eq 0 ]; then set -- tests; fi  # arguments name what to run (e.g. tests/unit); none: everything
python -m ${K2_PYTEST_RUNNER:-pytest} -p no:cacheprovider "$@"
