#!/usr/bin/env bash
# Line coverage of the whole suite — unit, integration and fault tests, and the k2 processes they start — for
# `k2 validate deploy --pre` ("unit tests passing, 80%+ coverage"). It is scripts/test.sh under coverage (about
# as long, 25-30 min on 2 cores); the result goes to .k2-coverage/ with the commit it measured, and the
# checklist uses it only while that commit is checked out unmodified. Usage: bash scripts/coverage.sh
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
out="$REPO/.k2-coverage"
rm -rf "$out"
mkdir -p "$out"
cat > "$out/coveragerc" <<RC
[run]
source_pkgs = k2cli
parallel = true
patch = subprocess
sigterm = true
data_file = $out/data
RC
commit="$(git rev-parse HEAD)"
dirty="$(git status --porcelain --untracked-files=no | wc -l)"
status=0
COVERAGE_RCFILE="$out/coveragerc" K2_PYTEST_RUNNER="coverage run -m pytest" bash scripts/test.sh "$@" || status=$?
export COVERAGE_RCFILE="$out/coveragerc"
.venv/bin/coverage combine -q
.venv/bin/coverage json -q -o "$out/coverage.json"
.venv/bin/coverage report | tail -1
printf '{"commit": "%s", "dirty_files": %d, "suite_exit": %d}\n' "$commit" "$dirty" "$status" > "$out/measured.json"
exit "$status"
