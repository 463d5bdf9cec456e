"""Operator time input: instants (ISO 8601 or `15m` ago) and durations (`30d`), always UTC."""

from __future__ import annotations

import datetime as _dt
import re

from k2cli.errors import K2Error

UTC = _dt.UTC
EPOCH = _dt.datetime(1970, 1, 1, tzinfo=UTC)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)


class BadTimeSpec(K2Error):
    """A time or duration flag the operator gave cannot be read."""

    exit_code = 2


def parse_duration(text: str, flag: str = "duration") -> _dt.timedelta:
    """Parse `90s`, `15m`, `2h`, `7d` or `1w` into a timedelta."""
    match = _DURATION.match(text or "")
    if not match:
        raise BadTimeSpec(f"{flag} {text!r} is not a duration like 90s, 15m, 2h, 7d or 1w")
    return _dt.timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2).lower()])


def parse_instant(text: str, flag: str = "time", now: _dt.datetime | None = None) -> _dt.datetime:
    """Parse an ISO 8601 date/datetime (naive means UTC), `now`, or a duration meaning that long ago."""
    value = (text or "").strip()
    now = now or _dt.datetime.now(UTC)
    if value.lower() == "now":
        return now
    if _DURATION.match(value):
        return now - parse_duration(value, flag)
    try:
        parsed = _dt.datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise BadTimeSpec(f"{flag} {text!r} is not an ISO 8601 time (2024-05-01, 2024-05-01T12:00:00Z) "
                          "or a duration ago (15m, 2h, 7d)") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def to_micros(moment: _dt.datetime) -> int:
    """Microseconds since the epoch of an aware datetime, exactly."""
    delta = moment - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> _dt.datetime:
    """The UTC datetime of epoch microseconds, exactly."""
    return EPOCH + _dt.timedelta(microseconds=micros)


def iso(moment: _dt.datetime) -> str:
    """UTC ISO 8601 with microseconds, e.g. 2024-05-01T12:00:00.000000+00:00."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")
