"""Which coverage figure the deploy checklist may use: the whole suite's only for the checkout it measured."""

from __future__ import annotations

import json
import subprocess

import pytest

from k2cli.checks.probes.source import COVERAGE_DIR, coverage_applies, suite_coverage

HEAD = "3f2c" * 10


@pytest.mark.parametrize(("meta", "head", "dirty", "applies"), [
    ({"commit": HEAD, "dirty_files": 0}, HEAD, False, True),
    ({"commit": HEAD, "dirty_files": 0}, "0" * 40, False, False),  # another commit is checked out now
    ({"commit": HEAD, "dirty_files": 2}, HEAD, False, False),  # measured with local edits
    ({"commit": HEAD, "dirty_files": 0}, HEAD, True, False),  # edited since
    ({"commit": HEAD, "dirty_files": 0}, None, False, False),  # not a git checkout
    ({}, HEAD, False, False),
])
def test_coverage_applies_only_to_the_measured_checkout(meta, head, dirty, applies):
    assert coverage_applies(meta, head, dirty) is applies


def _git(root, *args):
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(root)})


def _one_commit(root) -> str:
    """A git repository in root with one committed file; its HEAD."""
    _git(root, "init", "-q")
    (root / "a.py").write_text("x = 1\n")
    _git(root, "add", "a.py")
    _git(root, "commit", "-qm", "one")
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()


def test_suite_coverage_reads_the_measurement_of_this_commit(tmp_path):
    head = _one_commit(tmp_path)
    assert suite_coverage(tmp_path) is None  # nothing measured
    folder = tmp_path / COVERAGE_DIR
    folder.mkdir()
    (folder / "coverage.json").write_text(json.dumps({"totals": {"percent_covered": 88.94}}))
    (folder / "measured.json").write_text(json.dumps({"commit": head, "dirty_files": 0, "suite_exit": 0}))
    found = suite_coverage(tmp_path)
    assert found is not None and found.percent == 88.94 and found.commit == head
    (tmp_path / "a.py").write_text("x = 2\n")  # an edit makes the measurement stale
    assert suite_coverage(tmp_path) is None


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.unit.test_a" name="test_pure"/>
<testcase classname="tests.integration.test_b" name="test_real"/>
<testcase classname="tests.faults.test_c" name="test_fault">{fault}</testcase>
</testsuite></testsuites>"""


def test_suite_run_reads_the_results_of_this_commit_only(tmp_path):
    from k2cli.checks.probes.source import RESULTS_DIR, suite_run

    head = _one_commit(tmp_path)
    assert suite_run(tmp_path) is None  # nothing recorded
    folder = tmp_path / RESULTS_DIR
    folder.mkdir()
    (folder / "junit.xml").write_text(JUNIT.format(fault=""))
    (folder / "run.json").write_text(json.dumps({"commit": head, "dirty_files": 0, "exit": 0, "args": ["tests"],
                                                 "finished": "2026-12-05 04:00 UTC"}))
    run = suite_run(tmp_path)
    assert run is not None and run.args == ("tests",) and run.exit_code == 0
    assert [c.outcome for c in run.cases] == ["passed", "passed", "passed"]
    (tmp_path / "a.py").write_text("x = 2\n")  # edited since: the results no longer describe this checkout
    assert suite_run(tmp_path) is None


def _run(fault: str, classnames=("tests.unit.test_a", "tests.integration.test_b", "tests.faults.test_c")):
    from k2cli.checks.probes.source import PytestCase, SuiteRun

    outcomes = ["passed", "passed", fault]
    cases = tuple(PytestCase(c, f"test_{i}", o) for i, (c, o) in enumerate(zip(classnames, outcomes, strict=True)))
    return SuiteRun("ab" * 20, ("tests",), 0 if fault in ("passed", "skipped") else 1, "2026-12-05 04:00 UTC", cases)


@pytest.mark.parametrize(("fault", "status", "measured"), [
    ("passed", "PASS", 0), ("failed", "FAIL", 1), ("error", "FAIL", 1), ("skipped", "WARN", 1)])
def test_integration_verdict_counts_integration_and_fault_tests(fault, status, measured):
    from k2cli.checks.checklists.deploy import integration_verdict

    result = integration_verdict(_run(fault))
    assert result.status.value == status and result.measured == measured
    assert "2 integration and fault tests" in " ".join(result.evidence)


def test_integration_verdict_is_manual_without_a_run_or_without_integration_tests():
    from k2cli.checks.checklists.deploy import integration_verdict

    assert integration_verdict(None).status.value == "MANUAL"
    only_unit = _run("passed", classnames=("tests.unit.a", "tests.unit.b", "tests.unit.c"))
    assert integration_verdict(only_unit).status.value == "MANUAL"
