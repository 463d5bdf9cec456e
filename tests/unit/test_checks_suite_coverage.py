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


def test_suite_coverage_reads_the_measurement_of_this_commit(tmp_path):
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    _git(tmp_path, "add", "a.py")
    _git(tmp_path, "commit", "-qm", "one")
    assert suite_coverage(tmp_path) is None  # nothing measured
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    folder = tmp_path / COVERAGE_DIR
    folder.mkdir()
    (folder / "coverage.json").write_text(json.dumps({"totals": {"percent_covered": 88.94}}))
    (folder / "measured.json").write_text(json.dumps({"commit": head, "dirty_files": 0, "suite_exit": 0}))
    found = suite_coverage(tmp_path)
    assert found is not None and found.percent == 88.94 and found.commit == head
    (tmp_path / "a.py").write_text("x = 2\n")  # an edit makes the measurement stale
    assert suite_coverage(tmp_path) is None
