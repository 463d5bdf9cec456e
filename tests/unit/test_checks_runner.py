"""The runner: dependencies, SKIP, MANUAL, ERROR from exceptions, thresholds from settings, retries, events."""

import pytest

from k2cli.checks.context import Context, Options
from k2cli.checks.model import Checklist, Manual, Result, Status, Step
from k2cli.checks.runner import execute, run_checklist
from k2cli.errors import K2Error, ServiceUnavailable
from k2cli.settings import Settings


class FakeClock:
    """A clock that advances only when the runner sleeps or a step spends time."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def ctx(**thresholds):
    return Context(Settings(thresholds=thresholds), Options())


def const(result):
    return lambda c: result


def test_steps_run_in_order_and_a_failed_dependency_skips_its_dependents():
    order = []

    def rec(name, result):
        def run(c):
            order.append(name)
            return result
        return run

    checklist = Checklist("t", "T", "d", (
        Step("t.a", "a", "o", rec("a", Result.passed("ok"))),
        Step("t.b", "b", "o", rec("b", Result.failed("broken")), depends_on=("t.a",)),
        Step("t.c", "c", "o", rec("c", Result.passed("ok")), depends_on=("t.b",)),
        Step("t.d", "d", "o", rec("d", Result.warned("meh")), depends_on=("t.a",)),
        Step("t.e", "e", "o", rec("e", Result.passed("ok")), depends_on=("t.c",)),
    ))
    report = run_checklist(checklist, ctx())
    statuses = [o.result.status for o in report.outcomes]
    assert statuses == [Status.PASS, Status.FAIL, Status.SKIP, Status.WARN, Status.SKIP]
    assert order == ["a", "b", "d"]
    assert "t.b (FAIL)" in report.outcomes[2].result.summary
    assert "t.c (SKIP)" in report.outcomes[4].result.summary
    assert report.verdict is Status.FAIL and report.exit_code == 2


def test_manual_step_reports_reason_and_check_and_does_not_block():
    manual = Manual("needs eyes on Grafana", "dashboards show throughput")
    checklist = Checklist("t", "T", "d", (
        Step("t.m", "m", "o", manual=manual),
        Step("t.a", "a", "o", const(Result.passed("ok")), depends_on=("t.m",)),
    ))
    report = run_checklist(checklist, ctx())
    first = report.outcomes[0].result
    assert first.status is Status.MANUAL and first.manual == manual
    assert report.outcomes[1].result.status is Status.PASS
    assert report.exit_code == 0


def test_step_with_run_and_manual_note_gets_the_note_when_it_returns_manual():
    manual = Manual("logs are elsewhere", "read them")
    step = Step("t.x", "x", "o", const(Result.make(Status.MANUAL, "counters clean")), manual=manual)
    result = execute(step, ctx(), {})
    assert result.status is Status.MANUAL and result.manual == manual and result.summary == "counters clean"


@pytest.mark.parametrize(("exc", "status", "text"), [
    (ServiceUnavailable("Schema Registry unreachable"), Status.FAIL, "unreachable"),
    (K2Error("bad option"), Status.ERROR, "could not run: bad option"),
    (ZeroDivisionError("division by zero"), Status.ERROR, "ZeroDivisionError"),
])
def test_exceptions_become_results(exc, status, text):
    def boom(c):
        raise exc

    result = execute(Step("t.x", "x", "o", boom), ctx(), {})
    assert result.status is status
    assert text in result.summary


def test_a_step_returning_something_else_is_an_error():
    result = execute(Step("t.x", "x", "o", const("PASS")), ctx(), {})
    assert result.status is Status.ERROR and "not a Result" in result.summary


def test_check_uses_threshold_from_settings_with_seed_default():
    default = ctx().check("streaming_connect_max_s", 4.0, "connected")
    assert default.status is Status.PASS and default.threshold == "< 5 s" and default.unit == "s"
    tightened = ctx(streaming_connect_max_s=1.0).check("streaming_connect_max_s", 4.0, "connected")
    assert tightened.status is Status.FAIL and tightened.threshold == "< 1 s"


def test_check_refuses_run_parameters():
    with pytest.raises(ValueError, match="run parameter"):
        ctx().check("e2e_messages", 5, "x")


def test_retry_reruns_failing_steps_until_green():
    clock = FakeClock()
    calls = {"flaky": 0, "stable": 0, "after": 0}

    def flaky(c):
        calls["flaky"] += 1
        return Result.passed("up") if calls["flaky"] >= 3 else Result.failed("down")

    def stable(c):
        calls["stable"] += 1
        return Result.passed("ok")

    def after(c):
        calls["after"] += 1
        return Result.passed("ok")

    checklist = Checklist("t", "T", "d", (
        Step("t.stable", "s", "o", stable),
        Step("t.flaky", "f", "o", flaky),
        Step("t.after", "a", "o", after, depends_on=("t.flaky",)),
    ))
    report = run_checklist(checklist, ctx(), retry_timeout=30, retry_interval=2, clock=clock, sleep=clock.sleep)
    assert report.exit_code == 0
    assert calls == {"flaky": 3, "stable": 1, "after": 1}
    assert report.rounds == 3
    assert report.outcomes[1].result.attempts == 3
    assert clock.sleeps == [2, 2]


def test_retry_gives_up_when_time_runs_out():
    clock = FakeClock()
    checklist = Checklist("t", "T", "d", (Step("t.down", "d", "o", const(Result.failed("down"))),))
    report = run_checklist(checklist, ctx(), retry_timeout=5, retry_interval=2, clock=clock, sleep=clock.sleep)
    assert report.exit_code == 2
    assert report.rounds == 3  # at 0 s, 2 s and 4 s; 6 s would be past the deadline
    assert report.outcomes[0].result.attempts == 3


def test_no_retry_without_timeout_and_no_retry_for_steps_that_opt_out():
    clock = FakeClock()
    calls = []
    checklist = Checklist("t", "T", "d", (
        Step("t.once", "o", "o", lambda c: calls.append(1) or Result.failed("x"), retry=False),
    ))
    report = run_checklist(checklist, ctx(), retry_timeout=60, clock=clock, sleep=clock.sleep)
    assert calls == [1] and report.rounds == 1 and clock.sleeps == []


def test_events_and_state_shared_between_steps_and_cleanup_runs():
    events = []
    cleaned = []

    def producer(c):
        c.state["answer"] = 42
        c.progress("half way")
        c.on_close(cleaned.append, "done")
        return Result.passed("stored")

    def consumer(c):
        return c.check("e2e_errors_max", c.state["answer"] - 42, "read it back")

    checklist = Checklist("t", "T", "d", (
        Step("t.p", "p", "o", producer),
        Step("t.c", "c", "o", consumer, depends_on=("t.p",)),
    ))
    report = run_checklist(checklist, ctx(), emit=events.append)
    assert report.exit_code == 0
    assert cleaned == ["done"]
    kinds = [(e.kind, e.step_id) for e in events]
    assert kinds == [("checklist_started", None), ("step_started", "t.p"), ("step_progress", "t.p"),
                     ("step_finished", "t.p"), ("step_started", "t.c"), ("step_finished", "t.c"),
                     ("checklist_finished", None)]
    finished = [e for e in events if e.kind == "step_finished"]
    assert finished[0].index == 1 and finished[0].total == 2 and finished[0].result.status is Status.PASS
    assert events[-1].message == "PASS"


def test_checklist_rejects_bad_dependencies_and_duplicates():
    ok = const(Result.passed("ok"))
    with pytest.raises(ValueError, match="not an earlier step"):
        Checklist("t", "T", "d", (Step("t.a", "a", "o", ok, depends_on=("t.b",)), Step("t.b", "b", "o", ok)))
    with pytest.raises(ValueError, match="duplicate"):
        Checklist("t", "T", "d", (Step("t.a", "a", "o", ok), Step("t.a", "a", "o", ok)))
    with pytest.raises(ValueError, match="neither"):
        Step("t.z", "z", "o")


def test_subset_keeps_dependencies_in_order():
    ok = const(Result.passed("ok"))
    checklist = Checklist("t", "T", "d", (
        Step("t.a", "a", "o", ok), Step("t.b", "b", "o", ok, depends_on=("t.a",)), Step("t.c", "c", "o", ok),
        Step("t.d", "d", "o", ok, depends_on=("t.b",)),
    ))
    assert [s.id for s in checklist.subset(["t.d"]).steps] == ["t.a", "t.b", "t.d"]
    assert [s.id for s in checklist.subset(["t.c", "t.a"]).steps] == ["t.a", "t.c"]
    with pytest.raises(KeyError, match="no step 't.x'"):
        checklist.subset(["t.x"])


def test_counted_result():
    bad = Result.counted(["a broke", "b broke"], "all fine", unit="problems", evidence=["ctx"])
    assert bad.status is Status.FAIL and bad.summary == "a broke" and bad.measured == 2
    assert bad.threshold == "== 0" and bad.evidence == ("a broke", "b broke", "ctx")
    good = Result.counted([], "all fine", unit="problems", failed="never")
    assert good.status is Status.PASS and good.summary == "all fine" and good.measured == 0
    assert Result.counted(["x"], "ok", unit="u", failed="1 problem").summary == "1 problem"
