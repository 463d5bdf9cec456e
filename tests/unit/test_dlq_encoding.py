"""The DLQ's JSON: datetime, date, Decimal, UUID, bytes and nesting survive exactly; entries round-trip."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal

import pytest

from k2cli.jsonutil import dumps, to_jsonable
from k2cli.reliability.dlq import DeadLetterQueue, DLQEntry, DLQWriteError, iter_entries


def test_naive_and_aware_datetimes():
    assert json.loads(dumps({"t": dt.datetime(2026, 1, 13, 15, 30, 45)})) == {"t": "2026-01-13T15:30:45"}
    aware = dt.datetime(2026, 1, 13, 15, 30, 45, tzinfo=dt.UTC)
    assert json.loads(dumps(aware)) == "2026-01-13T15:30:45+00:00"


def test_date_decimal_uuid_bytes():
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    out = json.loads(dumps({"d": dt.date(2026, 1, 13), "p": Decimal("16500.12345678"), "u": u, "b": b"\x00\xff"}))
    assert out == {"d": "2026-01-13", "p": "16500.12345678", "u": str(u), "b": "AP8="}


def test_decimal_is_never_rounded_or_exponent_lost():
    assert to_jsonable(Decimal("0.00000001")) == "0.00000001"
    assert to_jsonable(Decimal("1E+2")) == "100" and to_jsonable(Decimal("16500.50")) == "16500.50"


def test_nested_structures_and_lists():
    value = {"outer": {"when": [dt.datetime(2026, 1, 1), Decimal("1.5")], "ids": (uuid.UUID(int=1),)}}
    assert to_jsonable(value) == {"outer": {"when": ["2026-01-01T00:00:00", "1.5"],
                                            "ids": ["00000000-0000-0000-0000-000000000001"]}}


def test_plain_types_unchanged():
    value = {"s": "x", "i": 1, "f": 1.5, "b": True, "n": None, "l": [1, 2], "d": {"k": "v"}}
    assert to_jsonable(value) == value


def test_unknown_type_is_an_error_not_silence():
    with pytest.raises(TypeError):
        dumps({"x": object()})


def test_full_v2_entry_round_trip(tmp_path):
    record = {"message_id": str(uuid.uuid4()), "price": Decimal("0.00001234"),
              "timestamp": dt.datetime(2026, 1, 13, tzinfo=dt.UTC), "vendor_data": {"pair": "XBT/USD"}}
    entry = DLQEntry(error="price: 1.123456789 has more than 8 decimal places", error_type="invalid_value",
                     origin="consume", source={"topic": "t", "partition": 3, "offset": 42, "key": "BTCUSDT"},
                     value=b"\x00\x00\x00\x00\x01raw", record=record)
    dlq = DeadLetterQueue(tmp_path, "consume")
    assert dlq.write([entry]) == 1
    [back] = list(iter_entries(tmp_path))
    assert back.id == entry.id and back.value == b"\x00\x00\x00\x00\x01raw"
    assert back.record["price"] == "0.00001234" and back.record["timestamp"] == "2026-01-13T00:00:00+00:00"
    assert back.source == {"topic": "t", "partition": 3, "offset": 42, "key": "BTCUSDT"}
    assert back.error.startswith("price:") and back.time.tzinfo is not None


def test_unwritable_dlq_raises_naming_the_setting(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DLQWriteError, match="K2_DLQ_DIR"):
        DeadLetterQueue(blocker / "dlq", "consume").write([DLQEntry(error="e", error_type="t", origin="consume")])
