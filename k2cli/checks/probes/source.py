"""The k2 source tree (tests, README, deploy files), when k2 runs from a checkout rather than an installed wheel."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import k2cli


def source_root() -> Path | None:
    """The checkout k2cli was imported from (a directory with pyproject.toml and tests/), or None."""
    root = Path(k2cli.__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() and (root / "tests").is_dir() else None


@dataclass(frozen=True)
class PytestCase:
    """One test of a pytest run."""

    classname: str
    name: str
    outcome: str  # passed | failed | error | skipped

    @property
    def text(self) -> str:
        """Module, class and test name, for keyword matching."""
        return f"{self.classname}.{self.name}".lower()


@dataclass(frozen=True)
class PytestRun:
    """A pytest run's cases, exit code and (when pytest-cov is installed) line coverage."""

    cases: tuple[PytestCase, ...]
    returncode: int
    coverage_pct: float | None
    command: str
    tail: str


def read_junit(path: Path) -> list[PytestCase]:
    """The test cases of a pytest JUnit XML file."""
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            if case.find(tag) is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
        cases.append(PytestCase(case.get("classname", ""), case.get("name", ""), outcome))
    return cases


def run_pytest(root: Path, target: str, workdir: Path, timeout: float, coverage: bool = False) -> PytestRun:
    """Run pytest on one directory of the checkout and read its JUnit XML."""
    import importlib.util
    import json

    report = workdir / f"pytest-{target.replace('/', '_')}.xml"
    args = [sys.executable, "-m", "pytest", target, "-q", "-p", "no:cacheprovider", f"--junitxml={report}"]
    cov_file = workdir / "coverage.json"
    with_cov = coverage and importlib.util.find_spec("pytest_cov") is not None
    if with_cov:
        args += ["--cov=k2cli", f"--cov-report=json:{cov_file}"]
    done = subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=timeout)
    cases = read_junit(report) if report.is_file() else []
    pct = None
    if with_cov and cov_file.is_file():
        pct = float(json.loads(cov_file.read_text())["totals"]["percent_covered"])
    return PytestRun(tuple(cases), done.returncode, pct, " ".join(args[2:]), (done.stdout + done.stderr)[-600:])


COVERAGE_DIR = ".k2-coverage"  # written by scripts/coverage.sh
RESULTS_DIR = ".k2-results"  # written by scripts/test.sh: the last run's JUnit XML and what it ran


@dataclass(frozen=True)
class SuiteCoverage:
    """Line coverage of the whole suite (unit, integration, faults and the k2 processes they start)."""

    percent: float
    commit: str


def coverage_applies(meta: dict, head: str | None, dirty: bool) -> bool:
    """Whether a measurement (coverage, a suite run) belongs to the checkout as it is now: same commit, no edits
    then or now."""
    return bool(head) and meta.get("commit") == head and meta.get("dirty_files") == 0 and not dirty


def _git_state(root: Path) -> tuple[str | None, bool]:
    """(HEAD commit, whether tracked files are modified) of a checkout; (None, True) when git cannot tell."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=30)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None, True
    if head.returncode != 0 or status.returncode != 0:
        return None, True
    return head.stdout.strip(), bool(status.stdout.strip())


def suite_coverage(root: Path) -> SuiteCoverage | None:
    """The whole-suite coverage scripts/coverage.sh measured for exactly this checkout, or None."""
    import json

    folder = root / COVERAGE_DIR
    try:
        meta = json.loads((folder / "measured.json").read_text())
        percent = float(json.loads((folder / "coverage.json").read_text())["totals"]["percent_covered"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    head, dirty = _git_state(root)
    return SuiteCoverage(percent, str(meta.get("commit"))) if coverage_applies(meta, head, dirty) else None


@dataclass(frozen=True)
class SuiteRun:
    """The last `scripts/test.sh` run of this exact checkout: what it ran and each test's outcome."""

    commit: str
    args: tuple[str, ...]
    exit_code: int
    finished: str
    cases: tuple[PytestCase, ...]


def suite_run(root: Path) -> SuiteRun | None:
    """The last scripts/test.sh run recorded for exactly this checkout (same commit, unmodified), or None."""
    import json

    folder = root / RESULTS_DIR
    try:
        meta = json.loads((folder / "run.json").read_text())
        cases = read_junit(folder / "junit.xml")
    except (OSError, ValueError, ET.ParseError):
        return None
    head, dirty = _git_state(root)
    if not coverage_applies(meta, head, dirty):
        return None
    return SuiteRun(str(meta["commit"]), tuple(meta.get("args", ())), int(meta.get("exit", -1)),
                    str(meta.get("finished", "?")), tuple(cases))
