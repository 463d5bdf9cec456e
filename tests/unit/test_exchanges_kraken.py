"""Kraken WS v1 and v2 frames -> exact v2 records, every trade of a frame, legacy names normalised."""

import json
from decimal import Decimal

import pytest

from k2cli.exchanges.base import CONTROL, SUBSCRIBE_ERROR, TRADES, FrameError
from k2cli.exchanges.kraken import (
    KrakenV1Parser,
    KrakenV2Parser,
    parse_rfc3339_us,
    parse_v1_time,
    subscribe_message,
    version_of,
)
from k2cli.trade import validate_trade

V1 = [0, [["5541.20000", "0.15850568", "1534614057.321597", "s", "l", ""],
          ["6060.00000", "0.02455000", "1534614057.324998", "b", "l", ""],
          ["6060.00000", "0.02455000", "1534614057.324998", "b", "m", ""]], "trade", "XBT/USD"]


def test_v1_every_trade_of_the_frame_is_converted_exactly():
    parsed = KrakenV1Parser().parse(json.dumps(V1), 99)
    assert parsed.kind == TRADES and len(parsed.trades) == 3
    first, second, third = parsed.trades
    for rec in parsed.trades:
        validate_trade(rec)
        assert rec["symbol"] == "BTCUSD" and rec["currency"] == "USD" and rec["exchange"] == "KRAKEN"
        assert rec["vendor_data"]["pair"] == "XBT/USD" and rec["vendor_data"]["base_asset"] == "BTC"
        assert rec["source_sequence"] is None and rec["ingestion_timestamp"] == 99
    assert first["timestamp"] == 1534614057321597 and first["side"] == "SELL"
    assert first["price"] == Decimal("5541.20000") and str(first["quantity"]) == "0.15850568"
    assert second["timestamp"] == 1534614057324998 and second["side"] == "BUY"
    assert second["vendor_data"]["order_type"] == "l" and third["vendor_data"]["order_type"] == "m"
    assert first["trade_id"].startswith("KRAKEN-1534614057321597-")
    assert second["trade_id"] != third["trade_id"]
    assert second["trade_id"].startswith("KRAKEN-1534614057324998-")


def test_v1_trade_ids_are_deterministic_and_distinct_for_identical_trades_in_one_frame():
    frame = [0, [["1.00000", "2.00000000", "1700000000.000001", "b", "l", ""]] * 3, "trade", "XDG/USD"]
    a = KrakenV1Parser().parse(json.dumps(frame), 1).trades
    b = KrakenV1Parser().parse(json.dumps(frame), 2).trades
    assert [r["trade_id"] for r in a] == [r["trade_id"] for r in b]
    assert len({r["trade_id"] for r in a}) == 3
    assert a[0]["symbol"] == "DOGEUSD" and a[0]["vendor_data"]["pair"] == "XDG/USD"
    assert a[0]["message_id"] != b[0]["message_id"]


def test_v1_time_is_parsed_from_the_digits():
    assert parse_v1_time("1534614057.321597") == 1534614057321597
    assert parse_v1_time("1534614057.3") == 1534614057300000
    assert parse_v1_time("1534614057") == 1534614057000000
    assert parse_v1_time("1534614057.1234567") == 1534614057123456
    for bad in ("abc", "1.2.3", "-1.5", 1534614057.5):
        with pytest.raises(FrameError):
            parse_v1_time(bad)


def test_v1_control_and_error_frames():
    parser = KrakenV1Parser()
    for raw in ('{"event":"heartbeat"}', '{"event":"pong","reqid":1}',
                '{"connectionID":1,"event":"systemStatus","status":"online","version":"1.9.1"}',
                '{"channelID":1,"channelName":"trade","event":"subscriptionStatus","pair":"XBT/USD",'
                '"status":"subscribed","subscription":{"name":"trade"}}'):
        assert parser.parse(raw, 1).kind == CONTROL
    refused = parser.parse('{"event":"subscriptionStatus","pair":"FOO/BAR","status":"error",'
                           '"errorMessage":"Currency pair not supported FOO/BAR"}', 1)
    assert refused.kind == SUBSCRIBE_ERROR and "not supported" in refused.info


@pytest.mark.parametrize(("raw", "error_type"), [
    ("nope", "invalid_json"),
    ('{"event":"bogus"}', "unknown_event"),
    ('[0, {"a": ["1","2","3"]}, "book-10", "XBT/USD"]', "unknown_event"),
    ('[0, [], "trade", "XBT/USD"]', "missing_field"),
    ('[0, [["1.0","1.0","1.0"]], "trade", "XBT/USD"]', "missing_field"),
    ('[0, [["0.0","1.0","1.5","b","l",""]], "trade", "XBT/USD"]', "invalid_value"),
    ('[0, [["1.0","1.0","1.5","x","l",""]], "trade", "XBT/USD"]', "invalid_value"),
    ('[0, [["1.0","1.0","1.5","b","l",""]], "trade", "XBTUSD"]', "unknown_symbol"),
    ('[0, [[1.0,"1.0","1.5","b","l",""]], "trade", "XBT/USD"]', "invalid_value"),
])
def test_v1_bad_frames(raw, error_type):
    with pytest.raises(FrameError) as err:
        KrakenV1Parser().parse(raw, 1)
    assert err.value.error_type == error_type


V2 = ('{"channel":"trade","type":"update","data":['
      '{"symbol":"MATIC/USD","side":"buy","price":0.5147,"qty":6423.46326,"ord_type":"limit",'
      '"trade_id":4665846,"timestamp":"2023-09-25T07:48:36.925533Z"},'
      '{"symbol":"MATIC/USD","side":"sell","price":0.51469999,"qty":1,"ord_type":"market",'
      '"trade_id":4665847,"timestamp":"2023-09-25T07:48:36.925533Z"}]}')


def test_v2_numbers_stay_exact_and_trade_id_is_the_sequence():
    parsed = KrakenV2Parser().parse(V2, 5)
    assert parsed.kind == TRADES and len(parsed.trades) == 2
    a, b = parsed.trades
    for rec in parsed.trades:
        validate_trade(rec)
    assert a["price"] == Decimal("0.5147") and str(a["quantity"]) == "6423.46326"
    assert str(b["price"]) == "0.51469999" and b["quantity"] == Decimal(1)
    assert a["side"] == "BUY" and b["side"] == "SELL"
    assert a["source_sequence"] == 4665846 and a["trade_id"] == "KRAKEN-MATICUSD-4665846"
    assert a["timestamp"] == 1695628116925533
    assert a["vendor_data"]["order_type"] == "limit" and a["vendor_data"]["channel_type"] == "update"


def test_v2_legacy_names_are_normalised_and_controls_recognised():
    raw = ('{"channel":"trade","type":"snapshot","data":[{"symbol":"XBT/EUR","side":"buy","price":50000.1,'
           '"qty":0.0001,"ord_type":"limit","trade_id":1,"timestamp":"2024-01-01T00:00:00Z"}]}')
    rec = KrakenV2Parser().parse(raw, 1).trades[0]
    assert rec["symbol"] == "BTCEUR" and rec["vendor_data"]["pair"] == "XBT/EUR"
    assert rec["timestamp"] == 1704067200000000
    parser = KrakenV2Parser()
    assert parser.parse('{"channel":"heartbeat"}', 1).kind == CONTROL
    assert parser.parse('{"channel":"status","type":"update","data":[{"system":"online"}]}', 1).kind == CONTROL
    assert parser.parse('{"method":"subscribe","result":{"channel":"trade"},"success":true}', 1).kind == CONTROL
    refused = parser.parse('{"method":"subscribe","success":false,"error":"Currency pair not supported"}', 1)
    assert refused.kind == SUBSCRIBE_ERROR and "not supported" in refused.info


@pytest.mark.parametrize(("raw", "error_type"), [
    ('{"channel":"trade","data":[{"symbol":"BTC/USD"}]}', "missing_field"),
    ('{"channel":"trade","data":[{"symbol":"BTC/USD","side":"buy","price":"1.0","qty":1,"trade_id":1,'
     '"timestamp":"2024-01-01T00:00:00Z"}]}', "invalid_value"),
    ('{"channel":"trade","data":[{"symbol":"BTC/USD","side":"buy","price":-1.0,"qty":1,"trade_id":1,'
     '"timestamp":"2024-01-01T00:00:00Z"}]}', "invalid_value"),
    ('{"channel":"trade","data":[{"symbol":"BTC/USD","side":"buy","price":1.0,"qty":1,"trade_id":1,'
     '"timestamp":"yesterday"}]}', "invalid_value"),
    ('{"channel":"book","data":[]}', "unknown_event"),
])
def test_v2_bad_frames(raw, error_type):
    with pytest.raises(FrameError) as err:
        KrakenV2Parser().parse(raw, 1)
    assert err.value.error_type == error_type


def test_rfc3339_exact_and_versions_and_subscribe_messages():
    assert parse_rfc3339_us("2023-09-25T07:48:36.000001Z") == 1695628116000001
    assert parse_rfc3339_us("2023-09-25T09:48:36.5+02:00") == 1695628116500000
    assert version_of("wss://ws.kraken.com/v2") == 2 and version_of("wss://ws.kraken.com") == 1
    v1 = json.loads(subscribe_message(["BTC/USD", "DOGE/EUR"], 1))
    assert v1["event"] == "subscribe" and v1["pair"] == ["XBT/USD", "XDG/EUR"]
    v2 = json.loads(subscribe_message(["BTC/USD"], 2))
    assert v2["method"] == "subscribe" and v2["params"] == {"channel": "trade", "symbol": ["BTC/USD"],
                                                          "snapshot": True}


@pytest.mark.parametrize("text", ["0.5147", "1", "6423.46326", "0.00000001", "9999999999.99999999", "1.0000000000",
                                  "1E+3", "2.5E-7", "0", "-1.5", "10000000000", "0.000000001", "1.000000001"])
def test_json_number_decimals_are_checked_exactly_like_to_decimal(text):
    from k2cli.errors import InvalidTrade
    from k2cli.exchanges.base import exact_decimal
    from k2cli.trade import to_decimal

    try:
        expected = to_decimal("price", Decimal(text))
    except InvalidTrade as exc:
        with pytest.raises(FrameError) as err:
            exact_decimal("price", Decimal(text))
        assert err.value.error_type == "invalid_value" and str(err.value) == str(exc) and "price" in str(err.value)
    else:
        got = exact_decimal("price", Decimal(text))
        assert got == expected and str(got) == str(expected)


def test_v2_frames_decode_like_json_loads_with_decimal_floats():
    parser = KrakenV2Parser()
    via_bytes = parser.parse(V2.encode(), 5).trades
    via_text = parser.parse(V2, 5).trades
    assert [(r["price"], str(r["quantity"]), r["trade_id"]) for r in via_bytes] == \
        [(r["price"], str(r["quantity"]), r["trade_id"]) for r in via_text]
    with pytest.raises(FrameError) as err:  # a BOM is refused as json.loads refuses it
        parser.parse("\ufeff" + V2, 5)
    assert err.value.error_type == "invalid_json"
    with pytest.raises(FrameError) as err:
        parser.parse(V2 + " x", 5)
    assert err.value.error_type == "invalid_json"


def test_rfc3339_fast_path_agrees_with_the_general_parser():
    import datetime as dt
    import random

    from k2cli.exchanges.rfc3339 import _parse_rfc3339_us

    rng = random.Random(3)
    cases = ["2023-09-25T07:48:36.925533Z", "2024-02-29T23:59:59.999999Z", "1970-01-01T00:00:00.000000Z",
             "2023-13-25T07:48:36.925533Z", "2023-09-25T07:48:36.9255a3Z", "2023-09-25T07:48:36.92553\uff13Z",
             "2023-09-25 07:48:36.925533Z", "2023-09-25T07:48:36,925533Z", "2023-09-25T07:48:36.925533+",
             "2023-09-25T24:00:00.000000Z", "2023-09-25T07:48:60.000000Z", "2023-09-25T07:48:36.-25533Z",
             "2023-W39-1T07:48:36.925533Z", "2023-09-25T07:48+01.925533Z"]
    for _ in range(500):
        t = rng.randint(0, 253402300799)
        whole = dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        cases.append(f"{whole}.{rng.randint(0, 999999):06d}Z")

    def outcome(parse, text):
        try:
            return parse(text)
        except FrameError as exc:
            return exc.error_type, exc.reason

    for text in cases:
        assert outcome(parse_rfc3339_us, text) == outcome(_parse_rfc3339_us, text), text
        assert outcome(parse_rfc3339_us, text) == outcome(parse_rfc3339_us, text), text  # cached: same answer
