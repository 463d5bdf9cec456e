"""The fault suite's summary: one row per scenario, printed at the end of the run (whatever -s says) and saved
as JSON to $K2_FAULTS_REPORT (default tests/faults/.last-run.json) and to the run's pytest temp directory."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.faults import support

_BASETEMP: dict[str, Path] = {}
_STARTED = time.time()


@pytest.fixture(scope="session", autouse=True)
def _faults_basetemp(tmp_path_factory: pytest.TempPathFactory) -> None:
    _BASETEMP["path"] = tmp_path_factory.getbasetemp()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" or (report.when == "setup" and report.failed):
        for row in support.RESULTS:
            if row["nodeid"] == item.nodeid:
                row["outcome"] = report.outcome
                row["seconds"] = round(call.duration, 1)


COLUMNS = (("scenario", "scenario"), ("fault", "fault"), ("produced", "produced"), ("in_iceberg", "in Iceberg"),
           ("lost", "lost"), ("duplicates", "duplicates"), ("dlq_entries", "DLQ entries"),
           ("recovery_s", "recovery s"), ("outcome", "result"))


def render(rows: list[dict]) -> list[str]:
    """The summary table as text lines."""
    cells = [[label for _, label in COLUMNS]]
    for row in rows:
        cells.append(["" if row.get(key) is None else f"{row[key]:,}" if isinstance(row[key], int) else
                      str(row[key]) for key, _ in COLUMNS])
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    numeric = {i for i, (key, _) in enumerate(COLUMNS) if key in ("produced", "in_iceberg", "lost", "duplicates",
                                                                   "dlq_entries", "recovery_s")}
    lines = []
    for n, r in enumerate(cells):
        lines.append("  ".join(c.rjust(widths[i]) if i in numeric else c.ljust(widths[i]) for i, c in enumerate(r)))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    means: dict[str, list[str]] = {}
    for r in rows:
        means.setdefault(r["recovery_means"], []).append(r["scenario"])
    lines.append("recovery s = " + "; ".join(f"{m} ({', '.join(names)})" for m, names in means.items()))
    notes = [f"{r['scenario']}: {r['notes']}" for r in rows if r.get("notes")]
    if notes:
        lines.append("notes: " + " | ".join(notes))
    return lines


def report_paths() -> list[Path]:
    """Where the JSON summary goes."""
    main = Path(os.environ.get("K2_FAULTS_REPORT") or Path(__file__).with_name(".last-run.json"))
    paths = [main]
    if "path" in _BASETEMP:
        paths.append(_BASETEMP["path"] / "faults-report.json")
    return paths


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    rows = support.RESULTS
    if not rows:
        return
    terminalreporter.write_sep("=", "fault-injection summary")
    for line in render(rows):
        terminalreporter.write_line(line)
    data = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(_STARTED)),
            "wall_seconds": round(time.time() - _STARTED, 1), "exitstatus": int(exitstatus), "scenarios": rows}
    for path in report_paths():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(data, indent=2, default=str) + "\n")
            terminalreporter.write_line(f"fault summary written to {path}")
        except OSError as exc:
            terminalreporter.write_line(f"could not write the fault summary to {path}: {exc}")
