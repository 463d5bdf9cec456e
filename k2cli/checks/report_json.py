"""The JSON report: one object per run, every step with its status, measurement, threshold and evidence."""

from __future__ import annotations

import datetime as dt
import socket
from typing import Any

from k2cli import __version__
from k2cli.checks.runner import Outcome, Report
from k2cli.jsonutil import dumps
from k2cli.redaction import redact

SCHEMA_VERSION = 1


def iso(epoch: float) -> str:
    """An epoch time as ISO 8601 UTC."""
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def step_dict(outcome: Outcome) -> dict[str, Any]:
    """One step's entry."""
    step, result = outcome.step, outcome.result
    manual = result.manual or (step.manual if result.status.value == "MANUAL" else None)
    return {
        "id": step.id,
        "title": step.title,
        "objective": step.objective,
        "kind": step.kind,
        "depends_on": list(step.depends_on),
        "status": result.status.value,
        "summary": result.summary,
        "measured": result.measured,
        "threshold": result.threshold,
        "unit": result.unit,
        "evidence": list(result.evidence),
        "manual": {"reason": manual.reason, "check": manual.check} if manual else None,
        "data": result.data,
        "duration_s": round(result.duration, 3),
        "attempts": result.attempts,
    }


def to_dict(report: Report) -> dict[str, Any]:
    """The whole report as plain values."""
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": f"k2 {__version__}",
        "checklist": report.checklist.name,
        "title": report.checklist.title,
        "source": report.checklist.source,
        "options": report.options,
        "host": socket.gethostname(),
        "started_at": iso(report.started_at),
        "duration_s": round(report.duration, 3),
        "rounds": report.rounds,
        "verdict": report.verdict.value,
        "exit_code": report.exit_code,
        "counts": report.counts,
        "steps": [step_dict(o) for o in report.outcomes],
    }


def render(report: Report) -> str:
    """The report as indented JSON text (non-JSON values in evidence data become strings), secrets redacted."""
    return redact(dumps(to_dict(report), display=True, indent=2) + "\n")
