"""Reporters: JSON shape, JUnit validity against the Jenkins junit-10.xsd, Markdown content."""

import json
from pathlib import Path

import pytest
from lxml import etree

from k2cli.checks import report_json, report_junit, report_markdown
from k2cli.checks.context import Context, Options
from k2cli.checks.model import Checklist, Manual, Result, Step
from k2cli.checks.runner import run_checklist
from k2cli.settings import Settings

XSD = Path(__file__).resolve().parents[1] / "data" / "junit-10.xsd"

STEP_KEYS = {"id", "title", "objective", "kind", "depends_on", "status", "summary", "measured", "threshold", "unit",
             "evidence", "manual", "data", "duration_s", "attempts"}


def sample_report(**options):
    def fail(c):
        return c.check("e2e_throughput_min_msg_per_s", 42.5, "throughput 42.5 msg/s",
                       evidence=["consumer said \x1b[31mslow\x1b[0m", "a <tag> & an ampersand"])

    checklist = Checklist("sample", "A sample checklist", "every status once", (
        Step("sample.pass", "Passes", "measure a passing thing",
             lambda c: c.check("streaming_connect_max_s", 0.25, "connected in 0.25 s")),
        Step("sample.warn", "Warns", "measure a borderline thing",
             lambda c: Result.warned("DLQ has 2 entries", measured=2, evidence=["entry 1", "entry 2"])),
        Step("sample.fail", "Fails", "measure a failing thing", fail),
        Step("sample.skip", "Skipped", "depends on the failure", lambda c: Result.passed("never"),
             depends_on=("sample.fail",)),
        Step("sample.manual", "Manual | piped", "a person checks", manual=Manual("Grafana is not reachable",
                                                                                   "dashboards show throughput")),
        Step("sample.error", "Errors", "could not run", lambda c: 1 / 0),
    ))
    return run_checklist(checklist, Context(Settings(), Options(**options)))


def test_json_report_shape():
    data = json.loads(report_json.render(sample_report(exchange="kraken")))
    assert data["schema_version"] == 1
    assert data["checklist"] == "sample" and data["verdict"] == "FAIL" and data["exit_code"] == 2
    assert data["options"] == {"exchange": "kraken", "url": None, "phase": None, "rehearsal_minutes": 0.0}
    assert data["counts"] == {"PASS": 1, "WARN": 1, "FAIL": 1, "SKIP": 1, "MANUAL": 1, "ERROR": 1}
    assert data["started_at"].endswith("Z") and isinstance(data["duration_s"], float)
    steps = {s["id"]: s for s in data["steps"]}
    assert list(steps) == ["sample.pass", "sample.warn", "sample.fail", "sample.skip", "sample.manual",
                           "sample.error"]
    for step in steps.values():
        assert set(step) == STEP_KEYS
        assert isinstance(step["evidence"], list) and isinstance(step["attempts"], int)
    assert steps["sample.pass"]["measured"] == 0.25 and steps["sample.pass"]["threshold"] == "< 5 s"
    assert steps["sample.fail"]["status"] == "FAIL" and steps["sample.fail"]["threshold"] == "> 100 msg/s"
    assert steps["sample.skip"]["depends_on"] == ["sample.fail"]
    assert steps["sample.manual"]["manual"] == {"reason": "Grafana is not reachable",
                                                "check": "dashboards show throughput"}
    assert steps["sample.manual"]["kind"] == "manual"
    assert "ZeroDivisionError" in steps["sample.error"]["summary"]


@pytest.fixture(scope="module")
def schema():
    return etree.XMLSchema(etree.parse(str(XSD)))


def test_junit_report_validates_against_xsd(schema):
    text = report_junit.render(sample_report())
    doc = etree.fromstring(text.encode())
    schema.assertValid(doc)
    suite = doc.find("testsuite")
    assert suite.get("name") == "k2.validate.sample"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("6", "1", "1",
                                                                                                       "2")
    cases = {c.get("name").split(":")[0]: c for c in suite.findall("testcase")}
    assert cases["sample.fail"].find("failure").get("message") == "throughput 42.5 msg/s"
    assert cases["sample.error"].find("error") is not None
    assert cases["sample.skip"].find("skipped").get("type") == "SKIP"
    assert cases["sample.manual"].find("skipped").get("type") == "MANUAL"
    assert "a person must check: dashboards show throughput" in cases["sample.manual"].find("system-out").text
    assert cases["sample.pass"].find("failure") is None and cases["sample.pass"].find("skipped") is None
    assert "WARN: DLQ has 2 entries" in cases["sample.warn"].find("system-out").text
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["verdict"] == "FAIL" and props["exit_code"] == "2"


def test_junit_report_of_a_green_run_is_valid_too(schema):
    checklist = Checklist("g", "Green", "d", (Step("g.a", "a", "o", lambda c: Result.passed("ok")),))
    doc = etree.fromstring(report_junit.render(run_checklist(checklist, Context(Settings()))).encode())
    schema.assertValid(doc)
    assert doc.get("failures") == "0" and doc.get("errors") == "0"


def test_junit_strips_characters_xml_cannot_carry():
    assert report_junit.clean("a\x1bb\x00c") == "a\ufffdb\ufffdc"
    assert report_junit.clean("tab\tnew\nline") == "tab\tnew\nline"


def test_markdown_report():
    text = report_markdown.render(sample_report())
    assert text.startswith("# k2 validate sample: FAIL")
    assert "Exit code 2." in text
    assert "| ❌ FAIL | `sample.fail` | Fails | 42.5 msg/s | > 100 msg/s |" in text
    assert "Manual \\| piped" in text  # pipes escaped inside the table
    assert "- Why manual: Grafana is not reachable" in text
    assert "- A person must check: dashboards show throughput" in text
    assert "### ⚠️ `sample.warn`" in text and "- entry 2" in text
