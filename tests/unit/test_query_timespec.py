"""Operator time input: ISO instants, durations ago, exact microseconds."""

from __future__ import annotations

import datetime as dt

import pytest

from k2cli.timespec import BadTimeSpec, from_micros, iso, parse_duration, parse_instant, to_micros

NOW = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-05-01", dt.datetime(2024, 5, 1, tzinfo=dt.UTC)),
    ("2024-05-01T10:30:00Z", dt.datetime(2024, 5, 1, 10, 30, tzinfo=dt.UTC)),
    ("2024-05-01T12:30:00+02:00", dt.datetime(2024, 5, 1, 10, 30, tzinfo=dt.UTC)),
    ("2024-05-01T10:30:00.123456", dt.datetime(2024, 5, 1, 10, 30, 0, 123456, tzinfo=dt.UTC)),
    ("15m", NOW - dt.timedelta(minutes=15)),
    ("2h", NOW - dt.timedelta(hours=2)),
    ("7d", NOW - dt.timedelta(days=7)),
    ("1w", NOW - dt.timedelta(days=7)),
    ("now", NOW),
])
def test_instants(text: str, expected: dt.datetime) -> None:
    assert parse_instant(text, "--since", now=NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "2024-13-01", "15 minutes", "1y", "", "1h; DROP TABLE x"])
def test_bad_instants_name_the_flag(text: str) -> None:
    with pytest.raises(BadTimeSpec) as info:
        parse_instant(text, "--since", now=NOW)
    assert "--since" in str(info.value)
    assert info.value.exit_code == 2


def test_durations() -> None:
    assert parse_duration("90s") == dt.timedelta(seconds=90)
    assert parse_duration("30D") == dt.timedelta(days=30)
    with pytest.raises(BadTimeSpec):
        parse_duration("-1d", "--older-than")


def test_micros_round_trip_exactly() -> None:
    for micros in (0, 1, 1_700_000_000_123_457, 4_102_444_799_999_999):
        assert to_micros(from_micros(micros)) == micros
    assert iso(from_micros(1_700_000_000_000_001)) == "2023-11-14T22:13:20.000001+00:00"
