"""The JUnit XML report (Jenkins junit-10.xsd dialect): one testsuite per checklist, one testcase per step.

FAIL -> <failure>, ERROR -> <error>, SKIP and MANUAL -> <skipped>; WARN passes with the warning in <system-out>.
"""

from __future__ import annotations

import re
import socket
import xml.etree.ElementTree as ET

from k2cli.checks.model import Status
from k2cli.checks.report_json import iso
from k2cli.checks.runner import Outcome, Report
from k2cli.redaction import redact

# Characters XML 1.0 cannot carry (control characters from subprocess output, for instance).
_INVALID_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def clean(text: str) -> str:
    """Text safe to put in an XML document, secrets redacted."""
    return _INVALID_XML.sub("\ufffd", redact(text))


def _seconds(value: float) -> str:
    return f"{max(value, 0.0):.3f}"


def _details(outcome: Outcome) -> str:
    result, step = outcome.result, outcome.step
    lines = [f"{result.status.value}: {result.summary}", f"objective: {step.objective}"]
    if result.measured is not None:
        lines.append(f"measured: {result.measured} {result.unit}".rstrip())
    if result.threshold:
        lines.append(f"threshold: {result.threshold}")
    manual = result.manual or step.manual
    if result.status is Status.MANUAL and manual:
        lines += [f"manual because: {manual.reason}", f"a person must check: {manual.check}"]
    if result.attempts > 1:
        lines.append(f"attempts: {result.attempts}")
    lines += [f"evidence: {line}" for line in result.evidence]
    return "\n".join(lines)


def _testcase(suite: ET.Element, classname: str, outcome: Outcome) -> None:
    step, result = outcome.step, outcome.result
    case = ET.SubElement(suite, "testcase", name=clean(f"{step.id}: {step.title}"), classname=classname,
                         time=_seconds(result.duration))
    message = clean(result.summary)
    details = clean(_details(outcome))
    if result.status is Status.FAIL:
        ET.SubElement(case, "failure", type="FAIL", message=message).text = details
    elif result.status is Status.ERROR:
        ET.SubElement(case, "error", type="ERROR", message=message).text = details
    elif result.status in (Status.SKIP, Status.MANUAL):
        ET.SubElement(case, "skipped", type=result.status.value, message=message).text = details
    ET.SubElement(case, "system-out").text = details


def render(report: Report) -> str:
    """The report as a JUnit XML document."""
    statuses = [o.result.status for o in report.outcomes]
    tests = str(len(statuses))
    failures = str(statuses.count(Status.FAIL))
    errors = str(statuses.count(Status.ERROR))
    skipped = str(statuses.count(Status.SKIP) + statuses.count(Status.MANUAL))
    root = ET.Element("testsuites", name="k2 validate", tests=tests, failures=failures, errors=errors,
                      time=_seconds(report.duration))
    classname = f"k2.validate.{report.checklist.name}"
    suite = ET.SubElement(root, "testsuite", name=classname, tests=tests, failures=failures, errors=errors,
                          skipped=skipped, time=_seconds(report.duration), timestamp=iso(report.started_at),
                          hostname=clean(socket.gethostname()))
    props = ET.SubElement(suite, "properties")
    values = {"verdict": report.verdict.value, "exit_code": str(report.exit_code), "rounds": str(report.rounds),
              **{f"option.{k}": "" if v is None else str(v) for k, v in report.options.items()}}
    for name, value in values.items():
        ET.SubElement(props, "property", name=name, value=clean(value))
    for outcome in report.outcomes:
        _testcase(suite, classname, outcome)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
