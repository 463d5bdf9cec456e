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
