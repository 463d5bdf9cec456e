"""The one JSON encoder: stored values exact and strict, output values exact with times in UTC."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

from k2cli.jsonutil import dumps, plain


def test_output_decimals_are_exact_text_never_floats():
    out = json.loads(dumps({"p": Decimal("0.00000001"), "q": Decimal("1E+2"), "big": Decimal("12345678.12345678")},
                           display=True))
    assert out == {"p": "0.00000001", "q": "100", "big": "12345678.12345678"}


def test_output_times_are_utc_with_microseconds_and_unknown_types_are_text():
    paris = dt.timezone(dt.timedelta(hours=1))
    value = {"t": dt.datetime(2024, 1, 1, 1, tzinfo=paris), "span": dt.timedelta(minutes=90), "s": {3}}
    assert plain(value) == {"t": "2024-01-01T00:00:00.000000+00:00", "span": "1:30:00", "s": [3]}


def test_stored_values_keep_their_offset():
    paris = dt.timezone(dt.timedelta(hours=1))
    assert json.loads(dumps(dt.datetime(2024, 1, 1, 1, tzinfo=paris))) == "2024-01-01T01:00:00+01:00"
