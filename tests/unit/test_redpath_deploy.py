"""Red paths of `k2 validate deploy --pre/--post` steps judged over plain values: each step's own fault makes its
measure FAIL (ERROR where it cannot measure, MANUAL where a person must judge), with the reason in the result."""

from __future__ import annotations

import dataclasses

import pytest

from k2cli.checks.checklists import deploy, e2e, resilience
from k2cli.checks.context import Options
from k2cli.checks.model import Result, Status
from k2cli.checks.probes.source import PytestCase, PytestRun, SuiteRun
from k2cli.checks.runner import Outcome, Report
from k2cli.reliability.dlq import DeadLetterQueue, DLQEntry
from k2cli.settings import Settings
from tests.unit.canned_prometheus import CannedPrometheus, context_with, target

PRE = deploy.build_pre(Options(phase="pre"))
POST = deploy.build_post(Options(phase="post"))


def e2e_report(results: dict[str, Result] | None = None, drop: tuple[str, ...] = ()) -> Report:
    """A finished E2E run: every step PASS (5,000+ messages consumed) unless given."""
    checklist = e2e.build(Options())
    outcomes = tuple(Outcome(s, (results or {}).get(s.id, Result.passed("ok", measured=6000)))
                     for s in checklist.steps if s.id not in drop)
    return Report(checklist, {}, outcomes, 0.0, 1.0, 1)


def unit_run(*outcomes: str, returncode: int = 0) -> PytestRun:
    """A unit-suite run with one test per Phase 5 area (all passed) plus tests of the given outcomes."""
    areas = [PytestCase(f"tests.unit.test_{w}", "test_it", "passed") for w in ("ssl", "rotation", "lru", "memory",
                                                                                 "ping")]
    extra = [PytestCase("tests.unit.test_query_logic", f"test_{n}", o) for n, o in enumerate(outcomes)]
    return PytestRun(tuple(areas + extra), returncode, 91.0, "pytest tests/unit", "tail")


# ---------------------------------------------------------------- deploy-pre


@pytest.mark.parametrize("measure", [deploy.measure_unit_tests, resilience.measure_unit_tests])
def test_unit_tests_fail_on_any_failure_and_on_a_bad_exit(measure):
    green = measure(context_with(unit_run=unit_run("passed")))
    assert green.status in (Status.PASS, Status.WARN)
    red = measure(context_with(unit_run=unit_run("passed", "failed", returncode=1)))  # outside every keyword area
    assert red.status is Status.FAIL and "test_query_logic::test_1 failed" in " ".join((red.summary, *red.evidence))
    exit_only = measure(context_with(unit_run=unit_run("passed", returncode=2)))  # e.g. a collection error
    assert exit_only.status is Status.FAIL and "exited 2" in " ".join((exit_only.summary, *exit_only.evidence))


def suite(args: tuple[str, ...], exit_code: int = 0, outcome: str = "passed") -> SuiteRun:
    cases = (PytestCase("tests.integration.test_stack", "test_up", outcome), PytestCase("tests.faults.test_x", "t",
                                                                                        "passed"))
    return SuiteRun("ab" * 20, args, exit_code, "2026-12-07 12:00 UTC", cases)


@pytest.mark.parametrize(("run", "status", "words"), [
    (suite(("tests",)), Status.PASS, "all 2 integration and fault tests passed"),
    (suite(()), Status.PASS, "all 2"),
    (suite(("tests/integration/", "tests/faults")), Status.PASS, "all 2"),
    (suite(("tests/integration/test_stack.py",)), Status.MANUAL,
     "partial (it ran only tests/integration/test_stack.py)"),
    (suite(("tests/integration",)), Status.MANUAL, "it ran only tests/integration"),
    (suite(("tests", "-k", "stack")), Status.MANUAL, "it selected tests with -k"),
    (suite(("tests", "--deselect=tests/faults/test_x.py::t")), Status.MANUAL, "selected tests with --deselect"),
    (suite(("tests/integration/test_stack.py::test_up",)), Status.MANUAL, "it ran only"),
    (suite(("tests",), exit_code=1), Status.FAIL, "exited 1"),
    (suite(("tests",), exit_code=1, outcome="failed"), Status.FAIL, "1 of 2 integration and fault tests failed"),
])
def test_integration_tests_judge_the_recorded_arguments_and_exit(run, status, words):
    result = deploy.measure_integration_tests(context_with(suite_run=run))
    assert result.status is status and words in result.summary, result


def test_e2e_step_fails_when_the_nested_run_fails():
    red = deploy.measure_e2e(context_with(e2e_report=e2e_report({"e2e.2-no-loss": Result.failed("12 lost")})))
    assert red.status is Status.FAIL and "e2e.2-no-loss: FAIL 12 lost" in red.evidence
    assert deploy.measure_e2e(context_with(e2e_report=e2e_report())).status is Status.PASS


def test_logs_clean_fails_on_error_lines_and_tracebacks():
    logs = {"consume": {"stderr": "INFO batch committed\nERROR iceberg commit failed\n",
                        "stream_stderr": "Traceback (most recent call last):\n"}}
    red = deploy.measure_logs(context_with(e2e_report=e2e_report(), e2e_context=logs))
    assert red.status is Status.FAIL and red.measured == 2 and "ERROR iceberg commit failed" in " ".join(red.evidence)
    clean = {"consume": {"stderr": "INFO ok\n", "stream_stderr": "WARNING-free\n"}}
    assert deploy.measure_logs(context_with(e2e_report=e2e_report(), e2e_context=clean)).status is Status.PASS


@pytest.mark.parametrize(("step_id", "mirrored"), [
    ("deploy-pre.dlq-injected", "e2e.6-dlq-clean"), ("deploy-pre.performance", "e2e.5-write-p99"),
    ("deploy-pre.metrics", "e2e.5-throughput")])
def test_mirrored_steps_fail_with_their_e2e_step_and_never_pass_on_nothing(step_id, mirrored):
    run = PRE.step(step_id).run
    assert run is not None
    red = run(context_with(e2e_report=e2e_report({mirrored: Result.failed("measured and wrong")})))
    assert red.status is Status.FAIL and f"{mirrored}: FAIL measured and wrong" in red.evidence
    missing = run(context_with(e2e_report=e2e_report(drop=(mirrored,))))
    assert missing.status is Status.ERROR and mirrored in missing.summary
    assert run(context_with(e2e_report=e2e_report())).status is Status.PASS


def test_lag_monitoring_fails_without_the_consumer_job_or_its_samples():
    no_job = CannedPrometheus(targets=[target("k2-stream-binance")])
    assert deploy.measure_lag_monitoring(context_with(no_job)).status is Status.FAIL
    no_series = CannedPrometheus(targets=[target("k2-consumer")])
    red = deploy.measure_lag_monitoring(context_with(no_series))
    assert red.status is Status.FAIL and "no k2_consumer_lag_messages sample" in red.summary
    lag = {"k2_consumer_lag": [({"job": "k2-consumer"}, 2)]}
    green = CannedPrometheus(targets=[target("k2-consumer")], queries=lag)
    assert deploy.measure_lag_monitoring(context_with(green)).status is Status.PASS


def alert(name: str, query: str) -> dict:
    return {"type": "alerting", "name": name, "query": query, "health": "ok"}


@pytest.mark.parametrize(("rules", "status"), [
    ([alert("K2StreamDown", "up == 0")], Status.FAIL),  # the lag rule removed
    ([alert("K2ConsumerLagHigh", "k2_consumer_total_lag_messages > 20000")], Status.FAIL),  # another limit
    ([alert("K2ConsumerLagHigh", "k2_consumer_total_lag_messages > 10000")], Status.PASS)])
def test_lag_alert_needs_a_loaded_rule_at_the_seed_limit(rules, status):
    result = deploy.measure_lag_alert(context_with(CannedPrometheus(rules=rules)))
    assert result.status is status, result
    if status is Status.FAIL:
        assert "no loaded alert fires on consumer lag > 10000" in result.summary


def test_docs_config_fails_on_an_undocumented_setting(monkeypatch):
    import k2cli.settings

    names = k2cli.settings.setting_names
    monkeypatch.setattr(k2cli.settings, "setting_names", lambda: [*names(), "knob_nobody_documented"])
    red = deploy.measure_docs_config(context_with())
    assert red.status is Status.FAIL and "K2_KNOB_NOBODY_DOCUMENTED" in red.summary


def test_docs_alerts_fails_on_an_undocumented_alert():
    rules = [alert("K2ConsumerLagHigh", "x > 1"), alert("K2AlertNobodyDocumented", "y > 1")]
    red = deploy.measure_docs_alerts(context_with(CannedPrometheus(rules=rules)))
    assert red.status is Status.FAIL and "K2AlertNobodyDocumented" in red.summary
    assert deploy.measure_docs_alerts(context_with(CannedPrometheus())).status is Status.FAIL  # none loaded


def test_runbook_fails_without_one_and_is_never_a_pass(monkeypatch, tmp_path):
    assert deploy.measure_runbook(context_with()).status is Status.MANUAL
    (tmp_path / "docs").mkdir()
    monkeypatch.setattr(deploy, "source_root", lambda: tmp_path)
    red = deploy.measure_runbook(context_with())
    assert red.status is Status.FAIL and "no runbook" in red.summary


# ---------------------------------------------------------------- deploy-post


@pytest.mark.parametrize(("rate", "status"), [(None, Status.FAIL), (50.0, Status.FAIL), (150.0, Status.PASS)])
def test_post_throughput_below_100_fails(rate, status):
    prom = CannedPrometheus(values={} if rate is None else {"k2_messages_consumed_total": rate})
    assert deploy.measure_post_throughput(context_with(prom)).status is status


def dlq_ctx(tmp_path, *values: bytes | None):
    DeadLetterQueue(tmp_path, "consume").write(
        DLQEntry(error="undecodable", error_type="invalid_record", origin="consume", value=v) for v in values)
    return context_with(settings=Settings(dlq_dir=tmp_path))


def test_post_dlq_fails_on_an_entry_that_is_not_validation_poison(tmp_path):
    assert deploy.measure_post_dlq(context_with(settings=Settings(dlq_dir=tmp_path))).status is Status.PASS  # empty
    assert deploy.measure_post_dlq(dlq_ctx(tmp_path, e2e.POISON_PREFIX + b"1")).status is Status.PASS
    red = deploy.measure_post_dlq(dlq_ctx(tmp_path, b"\x00\x00\x00\x00\x07 a real record"))
    assert red.status is Status.FAIL and red.measured == 1 and "invalid_record: undecodable" in red.summary


def test_post_dlq_fails_on_an_unreadable_line(tmp_path):
    dlq_ctx(tmp_path, e2e.POISON_PREFIX + b"2")
    [file] = tmp_path.glob("dlq-*.jsonl")
    with file.open("a") as fh:
        fh.write("{not json\n")
    red = deploy.measure_post_dlq(context_with(settings=Settings(dlq_dir=tmp_path)))
    assert red.status is Status.FAIL and "1 unreadable lines" in red.summary


def test_post_metrics_fails_without_a_stream_or_with_the_consumer_down():
    only_consumer = CannedPrometheus(targets=[target("k2-consumer")])
    red = deploy.measure_post_metrics(context_with(only_consumer))
    assert red.status is Status.FAIL and "no k2 stream is up" in red.summary
    consumer_down = CannedPrometheus(targets=[target("k2-consumer", "down"), target("k2-stream-binance")])
    assert deploy.measure_post_metrics(context_with(consumer_down)).status is Status.FAIL


def test_post_alerts_firing_fails_on_a_firing_alert():
    firing = {"state": "firing", "labels": {"alertname": "K2ConsumerLagHigh", "severity": "warning"},
              "annotations": {"summary": "lag"}}
    red = deploy.measure_firing(context_with(CannedPrometheus(alerts=[firing, {**firing, "state": "pending"}])))
    assert red.status is Status.FAIL and red.measured == 1 and "K2ConsumerLagHigh" in red.evidence[0]


@pytest.mark.parametrize("counter", ["k2_consumer_errors_total", "k2_stream_produce_errors_total",
                                     "k2_stream_frame_errors_total", "connection_errors_total"])
def test_post_logs_fails_when_an_error_counter_rose(counter):
    red = deploy.measure_post_logs(context_with(CannedPrometheus(values={counter: 3.0})))
    assert red.status is Status.FAIL and counter in red.summary
    quiet = deploy.measure_post_logs(context_with(CannedPrometheus(values={counter: 0.0})))
    assert quiet.status is Status.MANUAL


def test_post_logs_queries_counters_every_registered_exchange_exports():
    from k2cli.checks.checklists.tech_debt import declared_labels
    from k2cli.exchanges import registry

    prom = CannedPrometheus()
    deploy.measure_post_logs(context_with(prom))
    text = " ".join(prom.asked)
    for name in registry.names():
        exported = declared_labels(name)
        assert name in text, f"{name} is not in the error query"
        for family in ("connection_errors_total", "pong_timeouts_total"):
            assert f"{name}_{family}" in exported
    for counter in ("k2_consumer_errors_total", "k2_stream_produce_errors_total", "k2_stream_frame_errors_total"):
        assert counter in text and counter in declared_labels(registry.default().name)


def test_post_tls_fails_on_a_plain_url_or_verification_off():
    s = Settings()
    plain = {**s.exchanges, "coinbase": dataclasses.replace(s.exchanges["coinbase"], url="ws://feed.example/ws")}
    red = deploy.measure_post_tls(context_with(settings=dataclasses.replace(s, exchanges=plain)))
    assert red.status is Status.FAIL and "ws://feed.example/ws is not wss://" in red.summary
    off = deploy.measure_post_tls(context_with(settings=dataclasses.replace(s, ssl_verify=False)))
    assert off.status is Status.FAIL and "switched off" in off.summary
    assert deploy.measure_post_tls(context_with(settings=s)).status is Status.PASS


def weekly_state(*lines: tuple[str, str]) -> dict:
    data = {"days": 7, "coverage_days": 7, "verdict": "FAIL",
            "lines": [{"key": k, "status": st, "text": f"{k} {st}"} for k, st in lines]}
    return {"weekly": {"data": data, "command": "k2 soak report"}}


def test_weekly_report_is_not_a_pass_without_data():
    result = deploy.measure_weekly_report(context_with(**weekly_state(("data", "ERROR"))))
    assert result.status is Status.ERROR and "no report" in result.summary


@pytest.mark.parametrize(("step_id", "key"), [
    ("deploy-post.memory", "memory"), ("deploy-post.memory", "leak"), ("deploy-post.rotations", "rotations"),
    ("deploy-post.heartbeat", "heartbeat"), ("deploy-post.stream-rate", "rate"),
    ("deploy-post.reconnects", "reconnects"), ("deploy-post.critical-alerts", "alerts"),
    ("deploy-post.uptime", "uptime")])
def test_weekly_steps_fail_with_their_line_and_error_without_it(step_id, key):
    run = POST.step(step_id).run
    assert run is not None
    keys = ("memory", "leak", "rotations", "heartbeat", "rate", "reconnects", "alerts", "uptime")
    lines = [(k, "FAIL" if k == key else "PASS") for k in keys]
    red = run(context_with(**weekly_state(*lines)))
    assert red.status is Status.FAIL and f"{key} FAIL" in red.summary
    assert run(context_with(**weekly_state(*[(k, "PASS") for k in keys]))).status is Status.PASS
    if step_id != "deploy-post.memory":
        assert run(context_with(**weekly_state(*[ln for ln in lines if ln[0] != key]))).status is Status.ERROR
