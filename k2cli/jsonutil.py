"""JSON for k2 values: Decimals exact, datetimes ISO, UUIDs and paths as strings, bytes as base64."""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import enum
import json
import uuid
from pathlib import PurePath
from typing import Any


def to_jsonable(value: Any) -> Any:
    """Turn a nested k2 value into plain JSON types without losing precision."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    return _scalar(value)


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, decimal.Decimal):
        return format(value, "f") if value.is_finite() else str(value)  # exact, never "1E-8"
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | PurePath):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class K2JSONEncoder(json.JSONEncoder):
    """A JSON encoder for the DLQ and reports (datetime, date, Decimal, UUID, bytes, nesting)."""

    def default(self, o: Any) -> Any:
        return _scalar(o)


def dumps(value: Any, **kwargs: Any) -> str:
    """json.dumps with k2's encoder."""
    return json.dumps(value, cls=K2JSONEncoder, **kwargs)
