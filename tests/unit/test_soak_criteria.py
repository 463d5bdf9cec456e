"""Soak criteria: scaling of the limits, each criterion's outcome, and the verdict as an exit code."""

import pytest

from k2cli.soak import criteria
from k2cli.soak.criteria import Status, evaluate, thresholds_from
from k2cli.soak.profile import ABORTED, COMPLETED, CRASHED, INTERRUPTED, MB, NOT_RUN, RunRecord, Sample

T = thresholds_from({})


def record(status=COMPLETED, planned=3600.0, interval=60.0, warmup=None, consumer=False, reason=""):
    return RunRecord(exchange="binance", url="ws://x", planned_duration_s=planned, sample_interval_s=interval,
                     warmup_s=criteria.warmup_seconds(planned, T) if warmup is None else warmup, thresholds=T,
                     started_at=1.7e9, status=status, end_reason=reason,
                     consumer_command=["k2", "consume"] if consumer else [])


def samples(n=60, interval=60.0, rss_mb=lambda t: 80.0, rate=30.0, drops=lambda t: 0, errors=0, consumer=None):
    out, msgs = [], 0.0
    for k in range(1, n + 1):
        t = k * interval
        msgs += rate * interval
        rss = int(rss_mb(t) * MB)
        out.append(Sample(timestamp=1.7e9 + t, elapsed_s=t, rss_bytes=rss, vms_bytes=3 * rss, rss_mb=rss / MB,
                          vms_mb=3 * rss / MB, messages=msgs, rate_msg_s=rate, reconnects={"idle_timeout": drops(t)},
                          drops=drops(t), rotations=0, pings=k, pong_timeouts=0, integrity_errors=errors,
                          consumer=consumer(t) if consumer else None))
    return out


def by_name(ev, name):
    return next(c for c in ev.criteria if c.name == name)


@pytest.mark.parametrize(("hours", "limit"), [(0.05, 10), (1, 10), (12, 10 + 40 * 11 / 23), (24, 50), (168, 50)])
def test_growth_limit_scales_from_one_hour_to_a_day(hours, limit):
    assert criteria.growth_limit_mb(hours, T) == pytest.approx(limit)


def test_drops_limit_is_a_daily_rate_never_below_one():
    assert criteria.drops_limit(24, T) == 10
    assert criteria.drops_limit(48, T) == 20
    assert criteria.drops_limit(0.05, T) == 1


@pytest.mark.parametrize(("planned", "warmup"), [(20, 10), (180, 30), (1000, 100), (86400, 300)])
def test_warmup_is_a_tenth_of_the_run_between_30_s_and_5_minutes(planned, warmup):
    assert criteria.warmup_seconds(planned, T) == pytest.approx(warmup)


def test_consumer_steady_state_starts_30_s_after_its_first_commit():
    from k2cli.soak.profile import ConsumerSample

    s = samples(n=20, interval=5.0, consumer=lambda t: ConsumerSample(
        rss_bytes=int(MB * (100 if t < 25 else 180)), vms_bytes=0, rss_mb=0, written=0 if t < 20 else t))
    assert criteria.consumer_warmup(s, 10.0) == 50.0
    assert criteria.consumer_warmup(s, 90.0) == 90.0
    ev = evaluate(record(planned=100, interval=5, warmup=10, consumer=True), s)
    assert by_name(ev, "consumer memory growth").status is Status.PASS  # the 100 -> 180 MB load step is warm-up


def test_thresholds_from_settings_override_only_soak_names():
    t = thresholds_from({"soak_leak_score_max": 0.3, "e2e_messages": 5})
    assert t["soak_leak_score_max"] == 0.3 and "e2e_messages" not in t


def test_a_flat_steady_run_passes_with_exit_0():
    ev = evaluate(record(), samples())
    assert ev.verdict is Status.PASS and ev.exit_code == 0, ev.criteria
    assert ev.figures["stream_growth_mb"] == pytest.approx(0.0)
    assert ev.figures["avg_rate_msg_s"] == pytest.approx(30.0)


def test_steady_growth_fails_on_leak_score_and_growth():
    ev = evaluate(record(), samples(rss_mb=lambda t: 80 + 30 * t / 3600))  # 30 MiB/h
    assert by_name(ev, "stream leak score").status is Status.FAIL
    assert ev.figures["stream_leak_score"] == pytest.approx(0.75, abs=0.01)
    assert by_name(ev, "stream memory growth").status is Status.FAIL
    assert ev.exit_code == 2


def test_slow_growth_within_limits_passes():
    ev = evaluate(record(), samples(rss_mb=lambda t: 80 + 2 * t / 3600))  # 2 MiB/h scores 1/6
    assert by_name(ev, "stream leak score").status is Status.PASS
    assert by_name(ev, "stream memory growth").status is Status.PASS


def test_hard_limit_counts_every_sample_even_in_warmup():
    ev = evaluate(record(), samples(rss_mb=lambda t: 460 if t == 60 else 80))
    assert by_name(ev, "stream RSS below hard limit").status is Status.FAIL


def test_low_rate_fails_and_dips_warn():
    assert by_name(evaluate(record(), samples(rate=5.0)), "message rate").status is Status.FAIL
    s = samples(rate=30.0)
    for x in s[20:30]:
        x.rate_msg_s = 2.0
    assert by_name(evaluate(record(), s), "message rate").status is Status.WARN


def test_drops_in_a_short_run_warn_and_a_days_worth_fails():
    assert by_name(evaluate(record(), samples(drops=lambda t: 1 if t > 600 else 0)),
                   "connection drops").status is Status.WARN
    assert by_name(evaluate(record(), samples(drops=lambda t: 12 if t > 600 else 0)),
                   "connection drops").status is Status.FAIL


def test_integrity_errors_fail():
    assert by_name(evaluate(record(), samples(errors=1)), "data integrity errors").status is Status.FAIL


def test_crash_fails_with_its_reason():
    ev = evaluate(record(status=CRASHED, reason="the stream process exited: killed by signal 9 (SIGKILL)"),
                  samples(n=10))
    lc = by_name(ev, "ran the planned duration")
    assert lc.status is Status.FAIL and "SIGKILL" in lc.detail
    assert ev.exit_code == 2 and ev.partial


def test_interrupted_run_is_at_best_a_warning_marked_partial():
    ev = evaluate(record(status=INTERRUPTED, reason="stopped by SIGTERM"), samples(n=20))
    assert ev.verdict is Status.WARN and ev.exit_code == 1 and ev.partial
    assert "PARTIAL" in by_name(ev, "ran the planned duration").detail


def test_not_run_is_exit_3_and_aborted_is_a_failure():
    assert evaluate(record(status=NOT_RUN, reason="no endpoint"), []).exit_code == 3
    assert evaluate(record(status=ABORTED, reason="over 450"), samples(n=20)).exit_code == 2


def test_too_few_samples_for_a_trend_warn_instead_of_guessing():
    ev = evaluate(record(planned=300, interval=60), samples(n=5))
    assert by_name(ev, "stream leak score").status is Status.WARN


def test_missing_counters_cannot_be_judged():
    s = samples(n=20)
    for x in s:
        x.messages = x.rate_msg_s = x.drops = x.integrity_errors = None
    ev = evaluate(record(), s)
    assert by_name(ev, "message rate").status is Status.ERROR
    assert ev.exit_code == 3


def test_consumer_is_judged_when_soaked():
    from k2cli.soak.profile import ConsumerSample

    def cons(t):
        rss = int((120 + 40 * t / 3600) * MB)
        return ConsumerSample(rss_bytes=rss, vms_bytes=rss, rss_mb=rss / MB, consumed=t * 30, dlq_entries=2)

    ev = evaluate(record(consumer=True), samples(consumer=cons))
    assert by_name(ev, "consumer leak score").status is Status.FAIL
    assert by_name(ev, "data integrity errors").status is Status.FAIL  # dead-lettered records count


@pytest.mark.parametrize(("code", "text"), [(0, "exit status 0"), (3, "exit status 3"),
                                            (-9, "killed by signal 9 (SIGKILL)"), (None, "still running")])
def test_describe_exit(code, text):
    assert criteria.describe_exit(code) == text


def test_worst_orders_fail_over_error_over_warn():
    assert criteria.worst([Status.WARN, Status.ERROR, Status.PASS]) is Status.ERROR
    assert criteria.worst([Status.ERROR, Status.FAIL]) is Status.FAIL
    assert criteria.worst([]) is Status.PASS


def test_short_run_allocator_steps_are_not_a_leak_but_real_growth_is():
    short = record(planned=180, interval=5)
    tiny = evaluate(short, samples(n=36, interval=5, rss_mb=lambda t: 60 + 0.8 * t / 180))  # 16 MB/h, 0.7 MB
    c = by_name(tiny, "stream leak score")
    assert tiny.figures["stream_leak_score"] >= 0.5 and c.status is Status.PASS and "too small" in c.detail
    leak = evaluate(short, samples(n=36, interval=5, rss_mb=lambda t: 60 + 20 * t / 180))  # 400 MB/h, 18 MB
    c = by_name(leak, "stream leak score")
    assert c.status is Status.FAIL and "slope" in c.measured and leak.exit_code == 2


def test_short_runs_sample_often_enough_to_score_a_leak():
    from k2cli.soak.criteria import MIN_TREND_SAMPLES, default_sample_interval, thresholds_from, warmup_seconds

    t = thresholds_from()
    for minutes in (1, 2, 5, 10, 30):
        planned = minutes * 60
        interval = default_sample_interval(planned, t)
        assert (planned - warmup_seconds(planned, t)) / interval >= MIN_TREND_SAMPLES, minutes
    assert default_sample_interval(120, t) == 4.5
    assert default_sample_interval(3600, t) == default_sample_interval(24 * 3600, t) == 60
