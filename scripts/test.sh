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
k2 stack up --with rest-catalog,s3  # the REST catalog on S3: tests/integration/test_rest_catalog_s3.py, test_scale_out.py
cleanup() { if [ "$started_stack" = 1 ]; then k2 stack down || true; fi; }
trap cleanup EXIT
# scripts/coverage.sh runs the same suite under coverage ("coverage run -m pytest")
# shellcheck disable=SC2086
if [ $# -eq 0 ]; then set -- tests; fi  # arguments name what to run (e.g. tests/unit); none: everything
# the run's results, with the commit they belong to, for `k2 validate deploy --pre` (deploy-pre.integration-tests)
results="$REPO/.k2-results"
mkdir -p "$results"
rm -f "$results/run.json" "$results/junit.xml"
commit="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
dirty="$(git status --porcelain --untracked-files=no 2>/dev/null | wc -l || echo 1)"
# the type checker and the linter first (config in pyproject.toml); a finding fails the run after the tests
static=0
python -m mypy || static=1
python -m ruff check . || static=1
status=0
python -m ${K2_PYTEST_RUNNER:-pytest} -p no:cacheprovider --junitxml="$results/junit.xml" "$@" || status=$?
python - "$results/run.json" "$commit" "$dirty" "$status" "$@" <<'PY'
import datetime, json, sys
path, commit, dirty, status, *args = sys.argv[1:]
finished = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
json.dump({"commit": commit, "dirty_files": int(dirty), "exit": int(status), "args": args, "finished": finished},
          open(path, "w"))
PY
if [ "$status" = 0 ] && [ "$static" != 0 ]; then echo "test.sh: mypy or ruff found problems (above)" >&2; status=1; fi
exit "$status"
