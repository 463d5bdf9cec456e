"""`k2 status` judgement on plain readings: what is up, down, not running, lagging or broken."""

from __future__ import annotations

from k2cli.observe.status import Options, Part, PipelineStatus, judge_breaker, judge_group, judge_stream
from k2cli.observe.status_sources import GroupReading, TargetReading, partition_lag
from k2cli.verdict import Status

OPTS = Options(window_s=600, stale_after_s=60)


def _stream(up: bool, seen: bool, age: float | None = 1.0) -> TargetReading:
    return TargetReading("k2-binance-stream", up, seen, {"last_message_age_s": age})


def test_a_stream_up_passes_and_a_silent_one_warns():
    assert judge_stream(_stream(True, True), False, OPTS)[0] == Status.PASS
    status, detail = judge_stream(_stream(True, True, age=90), False, OPTS)
    assert status == Status.WARN and "90s" in detail


def test_a_stream_down_fails_when_named_or_recently_up_else_is_not_running():
    assert judge_stream(_stream(False, False), True, OPTS)[0] == Status.FAIL
    assert judge_stream(_stream(False, True), False, OPTS) == (Status.FAIL, "down (was up within the last 600s)")
    assert judge_stream(_stream(False, False), False, OPTS) == (Status.SKIP, "not running")


def test_a_group_without_members_fails_only_when_named_and_lag_warns_above_max():
    lagging = GroupReading("STABLE", 1, [{"lag": 7}, {"lag": 5}])
    assert judge_group(lagging, True, OPTS) == (Status.PASS, "1 members, lag 12")
    assert judge_group(lagging, True, Options(max_lag=10))[0] == Status.WARN
    empty = GroupReading("EMPTY", 0, [])
    assert judge_group(empty, True, OPTS)[0] == Status.FAIL
    assert judge_group(empty, False, OPTS)[0] == Status.SKIP


def test_an_open_breaker_fails_and_half_open_warns():
    def proc(breaker: str) -> TargetReading:
        return TargetReading("k2-consumer", True, True, {"breaker": breaker})

    assert judge_breaker(proc("open"), Status.PASS, "up")[0] == Status.FAIL
    assert judge_breaker(proc("half-open"), Status.PASS, "up")[0] == Status.WARN
    assert judge_breaker(proc("closed"), Status.PASS, "up") == (Status.PASS, "up")


def test_partition_lag_counts_from_the_commit_or_the_oldest_retained_record():
    assert partition_lag(("t", 0), 90, (10, 100)) == {"topic": "t", "partition": 0, "committed": 90, "end": 100,
                                                     "lag": 10}
    assert partition_lag(("t", 1), None, (10, 100))["lag"] == 90
    assert partition_lag(("t", 2), None, None)["lag"] is None


def test_the_verdict_is_the_worst_part_and_exit_codes_follow_the_checklists():
    parts = [Part("service", "kafka", Status.PASS, "ok"), Part("stream", "kraken", Status.SKIP, "not running")]
    assert PipelineStatus(0.0, parts).exit_code == 0
    doc = PipelineStatus(0.0, [*parts, Part("group", "g", Status.WARN, "lag")]).to_dict()
    assert doc["exit_code"] == 1 and doc["problems"] == ["group g: lag"] and doc["table"] is None
    assert PipelineStatus(0.0, [*parts, Part("stream", "binance", Status.FAIL, "down")]).exit_code == 2
