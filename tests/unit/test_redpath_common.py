"""Red path of the shared dependencies step: a requirement missing or at a version its specifier refuses."""

from __future__ import annotations

import importlib.metadata

from k2cli.checks.checklists import common
from k2cli.verdict import Status
from tests.unit.redpath_support import assert_red, context


def test_a_missing_or_too_old_dependency_fails(tmp_path, monkeypatch):
    pytest_version = importlib.metadata.version("pytest")
    monkeypatch.setattr(common, "requirements", lambda: [("pytest", ">=1"), ("k2-no-such-package", ">=1.0")])
    assert_red(common.measure_dependencies(context(tmp_path)), Status.FAIL,
               "k2-no-such-package: not installed (needs >=1.0)", f"pytest {pytest_version} (>=1)")
    monkeypatch.setattr(common, "requirements", lambda: [("pytest", ">=999")])
    result = common.measure_dependencies(context(tmp_path))
    assert_red(result, Status.FAIL, f"pytest {pytest_version} does not satisfy >=999")
    assert (result.measured, result.threshold) == (0, "== 1")
