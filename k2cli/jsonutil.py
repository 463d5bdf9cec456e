"""k2's one JSON encoder: Decimals exact, datetimes ISO, UUIDs and paths as strings, bytes as base64."""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import enum
import json
import uuid
from collections.abc import Callable
from pathlib import PurePath
from typing import Any

from k2cli.timespec import iso


def to_jsonable(value: Any) -> Any:
    """Plain JSON types for stored values (DLQ, ledgers): exact, datetimes as given; unknown types are errors."""
    return _walk(value, _scalar)


def plain(value: Any) -> Any:
    """Plain JSON types for output: aware datetimes as UTC ISO with microseconds, unknown types as their text."""
    return _walk(value, _display_scalar)


def dumps(value: Any, *, display: bool = False, **kwargs: Any) -> str:
    """json.dumps of `to_jsonable(value)`, or of `plain(value)` with display=True."""
    return json.dumps(plain(value) if display else to_jsonable(value), **kwargs)


def _walk(value: Any, scalar: Callable[[Any], Any]) -> Any:
    if isinstance(value, dict):
        return {str(k): _walk(v, scalar) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_walk(v, scalar) for v in value]
    return scalar(value)


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, decimal.Decimal):
        return format(value, "f") if value.is_finite() else str(value)  # exact, never "1E-8", never a float
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | PurePath):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _display_scalar(value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        return iso(value) if value.tzinfo is not None else value.isoformat(timespec="microseconds")
    try:
        return _scalar(value)
    except TypeError:  # e.g. an INTERVAL from `query sql` (timedelta): its text, never a traceback
        return str(value)
