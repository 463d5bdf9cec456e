"""Exact v2 records end to end: simulator (recorded frames) -> k2 stream -> Kafka + registry -> decode."""

from __future__ import annotations

import hashlib
from decimal import Decimal

import pytest

from tests.conftest import require
from tests.integration.stream_support import stream_tape, strip_unfixed

pytestmark = pytest.mark.integration

BINANCE_TAPE = [
    '{"stream":"btcusdt@trade","data":{"e":"trade","E":1700000000123,"s":"BTCUSDT","t":1001,"p":"36512.34000001",'
    '"q":"0.00012345","T":1700000000120,"m":true,"M":true}}',
    '{"stream":"ethbtc@trade","data":{"e":"trade","E":1700000000200,"s":"ETHBTC","t":77,"p":"0.05432100",'
    '"q":"12.50000000","T":1700000000199,"m":false,"M":true}}',
    '{"stream":"btcusdt@trade","data":{"e":"trade","E":1700000000301,"s":"BTCUSDT","t":1002,'
    '"p":"9999999999.99999999","q":"0.00000001","T":1700000000300,"m":false,"M":false}}',
]

KRAKEN_V1_TAPE = [
    '[337,[["5541.20000","0.15850568","1534614057.321597","s","l",""],'
    '["6060.00000","0.02455000","1534614057.324998","b","m",""],'
    '["6060.00000","0.02455000","1534614057.324998","b","m",""]],"trade","XBT/USD"]',
    '[337,[["0.07123000","1500.00000000","1534614058.000001","b","l",""]],"trade","XDG/EUR"]',
]

KRAKEN_V2_TAPE = [
    '{"channel":"trade","type":"update","data":['
    '{"symbol":"BTC/USD","side":"buy","price":42000.5,"qty":0.00000001,"ord_type":"limit","trade_id":555,'
    '"timestamp":"2024-01-02T03:04:05.678901Z"},'
    '{"symbol":"BTC/USD","side":"sell","price":42000.49999999,"qty":3,"ord_type":"market","trade_id":556,'
    '"timestamp":"2024-01-02T03:04:05.678902Z"}]}',
    '{"channel":"trade","type":"update","data":[{"symbol":"DOGE/USD","side":"sell","price":0.0812,"qty":1e3,'
    '"ord_type":"limit","trade_id":9,"timestamp":"2024-01-02T03:04:06Z"}]}',
]


def _v1_id(pair, ts_us, fields, occurrence=0):
    text = "|".join([pair, *fields])
    if occurrence:
        text += f"|#{occurrence}"
    return f"KRAKEN-{ts_us}-{hashlib.blake2b(text.encode(), digest_size=6).hexdigest()}"


def test_binance_records_are_exact(tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    started, got = stream_tape("binance", BINANCE_TAPE, "BTCUSDT,ETHBTC", tmp_path, k2_env, unique, n=3)
    by_id = {rec["trade_id"]: (key, strip_unfixed(rec, started)) for key, rec in got}
    assert set(by_id) == {"BINANCE-1001", "BINANCE-77", "BINANCE-1002"}
    key, first = by_id["BINANCE-1001"]
    assert key == "BTCUSDT"
    assert first == {
        "trade_id": "BINANCE-1001", "symbol": "BTCUSDT", "exchange": "BINANCE", "asset_class": "crypto",
        "timestamp": 1700000000120000, "price": Decimal("36512.34000001"), "quantity": Decimal("0.00012345"),
        "currency": "USDT", "side": "SELL", "trade_conditions": [], "source_sequence": 1001,
        "platform_sequence": None,
        "vendor_data": {"base_asset": "BTC", "quote_asset": "USDT", "is_buyer_maker": "true", "event_type": "trade",
                        "event_time": "1700000000123", "trade_time": "1700000000120", "is_best_match": "true"},
    }
    key, eth = by_id["BINANCE-77"]
    assert key == "ETHBTC" and eth["currency"] == "BTC" and eth["side"] == "BUY"
    assert eth["price"] == Decimal("0.05432100") and eth["quantity"] == Decimal("12.5")
    assert eth["vendor_data"]["base_asset"] == "ETH" and eth["source_sequence"] == 77
    _, big = by_id["BINANCE-1002"]
    assert big["price"] == Decimal("9999999999.99999999") and big["quantity"] == Decimal("0.00000001")
    assert big["vendor_data"]["is_best_match"] == "false" and big["timestamp"] == 1700000000300000


def test_kraken_v1_every_trade_of_a_frame_with_legacy_names_normalised(tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    started, got = stream_tape("kraken", KRAKEN_V1_TAPE, "BTC/USD,DOGE/EUR", tmp_path, k2_env, unique, n=4)
    records = sorted((strip_unfixed(rec, started) for _, rec in got), key=lambda r: (r["timestamp"], r["trade_id"]))
    keys = sorted(key for key, _ in got)
    assert keys == ["BTCUSD", "BTCUSD", "BTCUSD", "DOGEEUR"]
    expected_ids = {
        _v1_id("XBT/USD", 1534614057321597, ["1534614057.321597", "5541.20000", "0.15850568", "s", "l", ""]),
        _v1_id("XBT/USD", 1534614057324998, ["1534614057.324998", "6060.00000", "0.02455000", "b", "m", ""]),
        _v1_id("XBT/USD", 1534614057324998, ["1534614057.324998", "6060.00000", "0.02455000", "b", "m", ""], 1),
        _v1_id("XDG/EUR", 1534614058000001, ["1534614058.000001", "0.07123000", "1500.00000000", "b", "l", ""]),
    }
    assert {r["trade_id"] for r in records} == expected_ids
    first = records[0]
    assert first == {
        "trade_id": first["trade_id"], "symbol": "BTCUSD", "exchange": "KRAKEN", "asset_class": "crypto",
        "timestamp": 1534614057321597, "price": Decimal("5541.2"), "quantity": Decimal("0.15850568"),
        "currency": "USD", "side": "SELL", "trade_conditions": [], "source_sequence": None,
        "platform_sequence": None,
        "vendor_data": {"pair": "XBT/USD", "base_asset": "BTC", "quote_asset": "USD", "order_type": "l", "misc": "",
                        "raw_timestamp": "1534614057.321597"},
    }
    twins = [r for r in records if r["timestamp"] == 1534614057324998]
    assert len(twins) == 2 and twins[0]["trade_id"] != twins[1]["trade_id"]
    assert all(r["side"] == "BUY" and r["price"] == Decimal("6060") and r["quantity"] == Decimal("0.02455")
               for r in twins)
    doge = records[-1]
    assert doge["symbol"] == "DOGEEUR" and doge["currency"] == "EUR" and doge["vendor_data"]["pair"] == "XDG/EUR"
    assert doge["vendor_data"]["base_asset"] == "DOGE" and doge["price"] == Decimal("0.07123")
    assert doge["quantity"] == Decimal("1500")


def test_kraken_v2_numbers_exact_and_trade_id_as_sequence(tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    started, got = stream_tape("kraken", KRAKEN_V2_TAPE, "BTC/USD,DOGE/USD", tmp_path, k2_env, unique,
                                path="/v2", n=3)
    by_seq = {rec["source_sequence"]: strip_unfixed(rec, started) for _, rec in got}
    assert set(by_seq) == {555, 556, 9}
    assert by_seq[555] == {
        "trade_id": "KRAKEN-BTCUSD-555", "symbol": "BTCUSD", "exchange": "KRAKEN", "asset_class": "crypto",
        "timestamp": 1704164645678901, "price": Decimal("42000.5"), "quantity": Decimal("0.00000001"),
        "currency": "USD", "side": "BUY", "trade_conditions": [], "source_sequence": 555,
        "platform_sequence": None,
        "vendor_data": {"pair": "BTC/USD", "base_asset": "BTC", "quote_asset": "USD", "order_type": "limit",
                        "raw_timestamp": "2024-01-02T03:04:05.678901Z", "channel_type": "update"},
    }
    assert by_seq[556]["price"] == Decimal("42000.49999999") and by_seq[556]["quantity"] == Decimal(3)
    assert by_seq[556]["side"] == "SELL" and by_seq[556]["timestamp"] == 1704164645678902
    assert by_seq[9]["symbol"] == "DOGEUSD" and by_seq[9]["quantity"] == Decimal(1000)
    assert by_seq[9]["price"] == Decimal("0.0812") and by_seq[9]["timestamp"] == 1704164646000000
