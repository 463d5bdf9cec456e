"""RFC 3339 UTC times (2023-09-25T07:48:36.925533Z) -> exact integer µs since the epoch. Pure: no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from k2cli.exchanges.base import FrameError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_seconds: dict[str, int] = {}  # "2023-09-25T07:48:36" -> its epoch seconds (consecutive trades share it)


def parse_rfc3339_us(text: object) -> int:
    """Exact µs since the epoch of an RFC 3339 UTC time such as 2023-09-25T07:48:36.925533Z."""
    if type(text) is str and len(text) == 27 and text[19] == "." and text[26] == "Z":
        # the exchanges' usual form: the whole seconds (checked by fromisoformat once, then cached) + 6 digits
        frac = text[20:26]
        if frac.isdigit() and frac.isascii():
            head = text[:19]
            sec = _seconds.get(head)
            if sec is None:
                sec = _seconds_of(head)
            if sec is not None:
                return sec * 1_000_000 + int(frac)
    return _parse_rfc3339_us(text)


def _seconds_of(head: str) -> int | None:
    """Epoch seconds of "YYYY-MM-DDTHH:MM:SS" read as UTC (cached), or None for any other shape or a value
    fromisoformat refuses (the caller then takes the general path)."""
    digits = head[:4] + head[5:7] + head[8:10] + head[11:13] + head[14:16] + head[17:]
    if not (head[4] == head[7] == "-" and head[10] == "T" and head[13] == head[16] == ":"
            and digits.isdigit() and digits.isascii()):
        return None
    try:
        dt = datetime.fromisoformat(head + "+00:00")
    except ValueError:
        return None
    sec = (dt - _EPOCH) // _ONE_US // 1_000_000
    if len(_seconds) >= 4096:
        _seconds.clear()
    _seconds[head] = sec
    return sec


def _parse_rfc3339_us(text: object) -> int:
    if type(text) is not str:
        raise FrameError("invalid_value", f"timestamp {text!r} is not a string")
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise FrameError("invalid_value", f"timestamp {text!r} is not RFC 3339") from None
    if dt.tzinfo is None:
        raise FrameError("invalid_value", f"timestamp {text!r} has no time zone")
    return (dt - _EPOCH) // _ONE_US
