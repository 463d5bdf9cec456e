"""The Markdown report: verdict, a table of every step, then details of what needs attention."""

from __future__ import annotations

from k2cli.checks.model import Status
from k2cli.checks.report_json import iso
from k2cli.checks.runner import Outcome, Report
from k2cli.redaction import redact

ICONS = {Status.PASS: "✅", Status.WARN: "⚠️", Status.FAIL: "❌", Status.SKIP: "⏭️", Status.MANUAL: "👤",
         Status.ERROR: "💥"}


def cell(text: object) -> str:
    """Text safe inside a Markdown table cell."""
    return redact(str(text)).replace("|", "\\|").replace("\n", " ")


def measured_text(outcome: Outcome) -> str:
    """The measurement with its unit, or an empty string."""
    result = outcome.result
    if result.measured is None:
        return ""
    return f"{result.measured} {result.unit}".rstrip()


def render(report: Report) -> str:
    """The report as Markdown, secrets redacted."""
    counts = ", ".join(f"{n} {s}" for s, n in report.counts.items() if n)
    lines = [
        f"# k2 validate {report.checklist.name}: {report.verdict.value}",
        "",
        f"{report.checklist.title}. Started {iso(report.started_at)}, took {report.duration:.1f} s"
        + (f" over {report.rounds} rounds" if report.rounds > 1 else "") + f". {counts}. Exit code {report.exit_code}.",
        "",
        "| | step | title | measured | threshold | result | time |",
        "|---|---|---|---|---|---|---|",
    ]
    for outcome in report.outcomes:
        step, result = outcome.step, outcome.result
        lines.append(f"| {ICONS[result.status]} {result.status.value} | `{step.id}` | {cell(step.title)} | "
                     f"{cell(measured_text(outcome))} | {cell(result.threshold or '')} | {cell(result.summary)} | "
                     f"{result.duration:.1f} s |")
    attention = [o for o in report.outcomes if o.result.status not in (Status.PASS, Status.SKIP)]
    if attention:
        lines += ["", "## Details", ""]
        for outcome in attention:
            step, result = outcome.step, outcome.result
            lines += [f"### {ICONS[result.status]} `{step.id}`: {step.title}", "", f"*{step.objective}*", "",
                      f"**{result.status.value}**: {result.summary}", ""]
            manual = result.manual or step.manual
            if result.status is Status.MANUAL and manual:
                lines += [f"- Why manual: {manual.reason}", f"- A person must check: {manual.check}"]
            lines += [f"- {line}" for line in result.evidence]
            lines.append("")
    return redact("\n".join(lines).rstrip() + "\n")
