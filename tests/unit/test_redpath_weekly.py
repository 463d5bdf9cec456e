"""The 7-day report judges rotations and pings against the seed's per-day figures, not the running config."""

from __future__ import annotations

import dataclasses

import pytest

from k2cli.settings import Settings
from k2cli.soak import weekly
from k2cli.verdict import Status
from tests.unit.canned_prometheus import CannedPrometheus

NOW = 1_800_000_000.0
DAYS = 7


def report(settings: Settings, rotations: float, pings: float, timeouts: float = 0.0) -> dict[str, weekly.Line]:
    step = DAYS * 86400 / 600
    connected = [(NOW - DAYS * 86400 + i * step, 1.0) for i in range(600)]  # the whole window covered
    prom = CannedPrometheus(values={"connection_rotations_total": rotations, "pings_sent_total": pings,
                                    "pong_timeouts_total": timeouts},
                            series={"connection_status": connected})
    built = weekly._judge(prom, "http://canned", "binance", DAYS, settings, NOW)  # type: ignore[arg-type]
    return {line.key: line for line in built.lines}


def test_seed_schedule_passes():
    lines = report(Settings(), rotations=6 * DAYS, pings=480 * DAYS)
    assert lines["rotations"].status is Status.PASS and lines["heartbeat"].status is Status.PASS


def test_hourly_rotation_fails_the_seeds_six_per_day_even_when_configured():
    hourly = dataclasses.replace(Settings(), rotation_interval=3600.0)
    line = report(hourly, rotations=24 * DAYS, pings=480 * DAYS)["rotations"]
    assert line.status is Status.FAIL
    assert "24.0 per day; expected 6 per day" in line.text and "every 1 h) gives 24 per day" in line.text


def test_a_declared_schedule_is_judged_against_its_threshold():
    three_hourly = dataclasses.replace(Settings(), rotation_interval=3 * 3600.0,
                                       thresholds={"prod_rotations_per_day": 8})
    assert report(three_hourly, rotations=8 * DAYS, pings=480 * DAYS)["rotations"].status is Status.PASS


@pytest.mark.parametrize(("pings", "timeouts"), [(240 * DAYS, 0.0), (480 * DAYS, 1.0)])
def test_heartbeat_fails_on_a_ping_rate_off_the_seed_or_a_pong_timeout(pings, timeouts):
    line = report(Settings(), rotations=6 * DAYS, pings=pings, timeouts=timeouts)["heartbeat"]
    assert line.status is Status.FAIL and "expected 480" in line.text


def judged(judge, prom: CannedPrometheus) -> weekly.Line:
    """One judge of the 7-day report run on its own over a fully covered window; its line."""
    q = weekly._window(prom, "binance", DAYS, NOW)  # type: ignore[arg-type]
    q.coverage_s = DAYS * 86400
    rep = weekly.Weekly(exchange="binance", prometheus=prom.url, start=q.start, end=q.end, days=DAYS,
                        coverage_days=DAYS)
    judge(q, rep, Settings())
    (line,) = rep.lines
    return line


def _rss(start_mb: float, end_mb: float) -> list[tuple[float, float]]:
    return [(NOW - DAYS * 86400 + i * 1008, (start_mb + (end_mb - start_mb) * i / 599) * weekly.MB) for i in range(600)]


def test_memory_fails_on_a_peak_over_the_limit_or_steady_growth():
    steady = CannedPrometheus(values={"process_memory_rss_bytes": 80 * weekly.MB},
                              series={"process_memory_rss_bytes": _rss(70, 72)})
    assert judged(weekly._memory, steady).status is Status.PASS
    high = CannedPrometheus(values={"process_memory_rss_bytes": 900 * weekly.MB},
                            series={"process_memory_rss_bytes": _rss(70, 72)})
    growing = CannedPrometheus(values={"process_memory_rss_bytes": 300 * weekly.MB},
                               series={"process_memory_rss_bytes": _rss(70, 300)})
    for prom in (high, growing):
        line = judged(weekly._memory, prom)
        assert line.status is Status.FAIL and "limits: peak <=" in line.text


def test_leak_fails_on_a_high_leak_score():
    assert judged(weekly._leak, CannedPrometheus(values={"memory_leak_detection_score": 0.05})).status is Status.PASS
    line = judged(weekly._leak, CannedPrometheus(values={"memory_leak_detection_score": 0.97}))
    assert line.status is Status.FAIL and "highest 0.97" in line.text


def test_uptime_fails_when_the_process_or_the_connection_was_down():
    up = CannedPrometheus(values={"avg_over_time(up[": 1.0, "connection_status": 1.0})
    assert judged(weekly._uptime, up).status is Status.PASS
    for scraped, connected in ((0.9, 1.0), (1.0, 0.95)):
        line = judged(weekly._uptime, CannedPrometheus(values={"avg_over_time(up[": scraped,
                                                               "connection_status": connected}))
        assert line.status is Status.FAIL and "target >=" in line.text


def test_reconnects_fail_over_the_unscheduled_limit():
    none = CannedPrometheus(queries={"reconnects_total": [({"reason": "idle"}, 0.0)]})  # the seed: zero
    assert judged(weekly._reconnects, none).status is Status.PASS
    many = CannedPrometheus(queries={"reconnects_total": [({"reason": "idle"}, 40.0), ({"reason": "pong"}, 12.0)]})
    line = judged(weekly._reconnects, many)
    assert line.status is Status.FAIL and "idle 40, pong 12" in line.text


def test_rate_fails_below_the_minimum_average():
    busy = CannedPrometheus(values={"messages_received_total": 50.0 * DAYS * 86400})
    assert judged(weekly._rate, busy).status is Status.PASS
    line = judged(weekly._rate, CannedPrometheus(values={"messages_received_total": 0.01 * DAYS * 86400}))
    assert line.status is Status.FAIL and "0.0 msg/sec average" in line.text


def test_alerts_fail_when_a_critical_alert_fired():
    warning = CannedPrometheus(queries={"ALERTS": [({"alertname": "K2Lag", "severity": "warning"}, 1.0)]})
    assert judged(weekly._alerts, warning).status is Status.PASS
    critical = CannedPrometheus(queries={"ALERTS": [({"alertname": "K2StreamDown", "severity": "critical"}, 1.0)]})
    line = judged(weekly._alerts, critical)
    assert line.status is Status.FAIL and "K2StreamDown" in line.text


def test_coverage_is_an_error_without_data_and_a_warning_when_partial():
    empty = weekly._judge(CannedPrometheus(), "http://canned", "binance", DAYS, Settings(), NOW)  # type: ignore[arg-type]
    assert [(line.key, line.status) for line in empty.lines] == [("data", Status.ERROR)]
    step = DAYS * 86400 / 600
    two_days = [(NOW - 2 * 86400 + i * step, 1.0) for i in range(int(2 * 86400 / step))]
    q = weekly._window(CannedPrometheus(series={"connection_status": two_days}), "binance", DAYS, NOW)  # type: ignore[arg-type]
    rep = weekly.Weekly(exchange="binance", prometheus="http://canned", start=q.start, end=q.end, days=DAYS,
                        coverage_days=0.0)
    assert weekly._coverage(q, rep, "http://canned")
    (line,) = rep.lines
    assert line.key == "coverage" and line.status is Status.WARN and "of 7 days" in line.text
