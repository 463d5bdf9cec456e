"""Coinbase Exchange matches-channel frames -> exact v2 records; the maker's side turned into the taker's;
control, error and bad frames."""

import json
import uuid
from decimal import Decimal

import pytest

from k2cli.errors import ConfigError
from k2cli.exchanges.base import CONTROL, ERROR_TYPES, ROW_SOURCE_SEQUENCE, SUBSCRIBE_ERROR, FrameError
from k2cli.exchanges.coinbase import (
    VENDOR_KEYS,
    CoinbaseParser,
    check_products,
    split_product,
    subscribe_message,
    symbol_of,
)
from k2cli.exchanges.symbols import UnknownSymbol
from k2cli.trade import FIELD_NAMES, validate_trade
from tests.unit.exchange_support import only_record

MATCH = {"type": "match", "trade_id": 10, "sequence": 50, "maker_order_id": "ac928c66-ca53-498f-9c13-a110027a60e8",
         "taker_order_id": "132fb6ae-456b-4654-b4e0-d681ac05cea1", "time": "2014-11-07T08:19:27.028459Z",
         "product_id": "BTC-USD", "size": "5.23512", "price": "400.23", "side": "sell"}


def frame(**changes):
    return json.dumps({**MATCH, **changes})


def without(key):
    return json.dumps({k: v for k, v in MATCH.items() if k != key})


def test_match_maps_to_exact_v2_record_every_field():
    rec = only_record(CoinbaseParser(), frame(), 1415348367100000)
    assert rec == {
        "trade_id": "COINBASE-BTCUSD-10", "symbol": "BTCUSD", "exchange": "COINBASE", "asset_class": "crypto",
        "timestamp": 1415348367028459, "price": Decimal("400.23"), "quantity": Decimal("5.23512"),
        "currency": "USD", "side": "BUY", "trade_conditions": [], "source_sequence": 10,
        "ingestion_timestamp": 1415348367100000, "platform_sequence": None,
        "vendor_data": {"product_id": "BTC-USD", "base_asset": "BTC", "quote_asset": "USD", "maker_side": "sell",
                        "maker_order_id": "ac928c66-ca53-498f-9c13-a110027a60e8",
                        "taker_order_id": "132fb6ae-456b-4654-b4e0-d681ac05cea1", "sequence": "50",
                        "event_type": "match", "raw_timestamp": "2014-11-07T08:19:27.028459Z"},
    }
    assert tuple(rec["vendor_data"]) == VENDOR_KEYS


def test_side_is_the_maker_side_so_the_taker_is_the_opposite():
    parser = CoinbaseParser()
    assert parser.parse(frame(side="sell"), 1).trades[0]["side"] == "BUY"  # maker sold: an up-tick, taker bought
    assert parser.parse(frame(side="buy"), 1).trades[0]["side"] == "SELL"
    assert parser.parse(frame(side="buy"), 1).trades[0]["vendor_data"]["maker_side"] == "buy"


def test_last_match_is_a_trade_with_its_event_type_and_records_pass_the_validator():
    rec = CoinbaseParser().parse(frame(type="last_match", product_id="ETH-EUR", trade_id=7, price="1873.57",
                                       size="0.14237354"), 5).trades[0]
    checked = validate_trade(rec)
    assert checked["trade_id"] == "COINBASE-ETHEUR-7" and checked["symbol"] == "ETHEUR"
    assert checked["currency"] == "EUR" and checked["source_sequence"] == 7
    assert checked["vendor_data"]["event_type"] == "last_match"
    assert checked["vendor_data"]["base_asset"] == "ETH" and checked["vendor_data"]["quote_asset"] == "EUR"


def test_rows_are_tuples_in_field_order_for_the_hot_path():
    parsed = CoinbaseParser().parse_rows(frame(trade_id=123456789012), 9)
    row = parsed.trades[0]
    assert isinstance(row, tuple) and len(row) == len(FIELD_NAMES)
    assert row[ROW_SOURCE_SEQUENCE] == 123456789012 and row[1] == "COINBASE-BTCUSD-123456789012"
    assert isinstance(row[14], tuple) and dict(row[14])["sequence"] == "50"


@pytest.mark.parametrize(("text", "value"), [
    ("0.00000001", "1E-8"), ("9999999999.99999999", "9999999999.99999999"), ("1", "1"), ("400.23", "400.23"),
    ("0.10000000", "0.10000000"), ("84140.83", "84140.83"), ("1e3", "1E+3"),
])
def test_prices_and_sizes_are_exact(text, value):
    rec = CoinbaseParser().parse(frame(price=text, size=text), 1).trades[0]
    for name in ("price", "quantity"):
        assert rec[name] == Decimal(value) and str(rec[name]) == str(Decimal(text))


@pytest.mark.parametrize(("text", "us"), [
    ("2014-11-07T08:19:27.028459Z", 1415348367028459),
    ("2023-07-16T12:19:57.000001Z", 1689509997000001),
    ("2023-07-16T12:19:57.255Z", 1689509997255000),
    ("2023-07-16T12:19:57Z", 1689509997000000),
    ("2023-07-16T14:19:57.255067+02:00", 1689509997255067),
])
def test_times_are_exact_microseconds(text, us):
    assert CoinbaseParser().parse(frame(time=text), 1).trades[0]["timestamp"] == us


def test_message_ids_are_unique_uuid4():
    parser = CoinbaseParser()
    ids = {parser.parse(frame(), 1).trades[0]["message_id"] for _ in range(2000)}
    assert len(ids) == 2000 and all(uuid.UUID(i).version == 4 for i in list(ids)[:50])


def test_bytes_frames_parse_like_text():
    parser = CoinbaseParser()
    a, b = parser.parse(frame().encode(), 1).trades[0], parser.parse(frame(), 1).trades[0]
    assert {k: v for k, v in a.items() if k != "message_id"} == {k: v for k, v in b.items() if k != "message_id"}


def test_order_ids_are_optional_vendor_fields():
    raw = json.dumps({k: v for k, v in MATCH.items() if k not in ("maker_order_id", "taker_order_id")})
    vendor = CoinbaseParser().parse(raw, 1).trades[0]["vendor_data"]
    assert vendor["maker_order_id"] == "" and vendor["taker_order_id"] == ""


def test_subscriptions_heartbeat_and_other_feed_messages_are_control():
    parser = CoinbaseParser()
    for raw in ('{"type":"subscriptions","channels":[{"name":"matches","product_ids":["BTC-USD","ETH-USD"]}]}',
                '{"type":"heartbeat","sequence":90,"last_trade_id":20,"product_id":"BTC-USD",'
                '"time":"2014-11-07T08:19:28.464459Z"}',
                '{"type":"ticker","product_id":"BTC-USD","price":"1","side":"buy","trade_id":1}',
                '{"type":"status","products":[],"currencies":[]}'):
        parsed = parser.parse(raw, 1)
        assert parsed.kind == CONTROL and parsed.trades == []


def test_failed_subscribe_is_a_subscription_refusal_with_the_reason():
    refused = CoinbaseParser().parse('{"type":"error","message":"Failed to subscribe",'
                                     '"reason":"BTC-XYZ is not a valid product"}', 1)
    assert refused.kind == SUBSCRIBE_ERROR
    assert refused.info == "Failed to subscribe: BTC-XYZ is not a valid product"


@pytest.mark.parametrize(("raw", "error_type"), [
    ("{not json", "invalid_json"),
    (b"\xff\xfe", "invalid_json"),
    ("", "invalid_json"),
    ("[1,2]", "unknown_event"),
    ('"match"', "unknown_event"),
    ('{"product_id":"BTC-USD"}', "unknown_event"),
    ('{"type":"rfq_match","trade_id":1}', "unknown_event"),
    ('{"type":7}', "unknown_event"),
    (without("price"), "missing_field"),
    (without("size"), "missing_field"),
    (without("side"), "missing_field"),
    (without("time"), "missing_field"),
    (without("trade_id"), "missing_field"),
    (without("sequence"), "missing_field"),
    (without("product_id"), "missing_field"),
    (frame(price="0.00"), "invalid_value"),
    (frame(price="-1"), "invalid_value"),
    (frame(size="abc"), "invalid_value"),
    (frame(price=400.23), "invalid_value"),
    (frame(size=5), "invalid_value"),
    (frame(price="0.000000001"), "invalid_value"),
    (frame(price="10000000000"), "invalid_value"),
    (frame(size="1e-9"), "invalid_value"),
    (frame(trade_id="10"), "invalid_value"),
    (frame(trade_id=-1), "invalid_value"),
    (frame(trade_id=True), "invalid_value"),
    (frame(trade_id=1.5), "invalid_value"),
    (frame(sequence="50"), "invalid_value"),
    (frame(side="BUY"), "invalid_value"),
    (frame(side=None), "invalid_value"),
    (frame(time="yesterday"), "invalid_value"),
    (frame(time="2014-11-07T08:19:27.028459"), "invalid_value"),
    (frame(time=1415348367), "invalid_value"),
    (frame(product_id=7), "invalid_value"),
    (frame(product_id="BTCUSD"), "unknown_symbol"),
    (frame(product_id="BTC/USD"), "unknown_symbol"),
    (frame(product_id="btc-usd"), "unknown_symbol"),
    ('{"type":"error","message":"ErrSlowConsume"}', "exchange_error"),
    ('{"type":"error","message":"Failed to unsubscribe","reason":"not subscribed"}', "exchange_error"),
])
def test_bad_frames_raise_typed_errors(raw, error_type):
    assert error_type in ERROR_TYPES
    with pytest.raises(FrameError) as err:
        CoinbaseParser().parse(raw, 1)
    assert err.value.error_type == error_type and err.value.reason


def test_missing_fields_are_all_named():
    raw = json.dumps({"type": "match", "trade_id": 1, "product_id": "BTC-USD"})
    with pytest.raises(FrameError) as err:
        CoinbaseParser().parse(raw, 1)
    assert err.value.reason == "match without field(s) sequence, price, size, side, time"


def test_products_split_check_and_subscribe():
    assert split_product("BTC-USD") == ("BTC", "USD") and split_product("1INCH-USDC") == ("1INCH", "USDC")
    assert symbol_of("ETH-EUR") == "ETHEUR" and symbol_of("ETHEUR") == "ETHEUR"
    for bad in ("BTCUSD", "BTC/USD", "BTC-", "-USD", "BTC-USD-X", "btc-usd", ""):
        with pytest.raises(UnknownSymbol):
            split_product(bad)
    assert check_products([" btc-usd", "ETH-USD", "BTC-USD"]) == ("BTC-USD", "ETH-USD")
    with pytest.raises(ConfigError) as err:
        check_products(["BTCUSDT"])
    assert err.value.setting == "K2_COINBASE_SYMBOLS" and "BTC-USD" in str(err.value)
    with pytest.raises(ConfigError):
        check_products([" "])
    assert json.loads(subscribe_message(["BTC-USD", "ETH-USD"])) == \
        {"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"], "channels": ["matches"]}


def test_descriptor_plan_subscribes_by_message_with_sequential_ids():
    from k2cli.exchanges import registry

    d = registry.get("coinbase")
    assert d.code == "COINBASE" and d.default_topic == "market.crypto.trades.coinbase"
    assert d.default_url == "wss://ws-feed.exchange.coinbase.com" and d.default_symbols == ("BTC-USD", "ETH-USD")
    assert d.default_metrics_port not in (9090, 9091, 9092, 9093, 9094) and registry.by_code("COINBASE") is d
    products = d.check_symbols(["btc-usd", "ETH-EUR"])
    assert products == ("BTC-USD", "ETH-EUR") and d.stored_symbol("BTC-USD") == "BTCUSD"
    plan = d.plan(("wss://a", "ws://b"), products)
    assert plan.urls == ("wss://a", "ws://b") and plan.sequential_ids is True
    assert json.loads(plan.subscribe[0]) == {"type": "subscribe", "product_ids": ["BTC-USD", "ETH-EUR"],
                                             "channels": ["matches"]}
    row = plan.parser.parse_rows(frame(product_id="ETH-EUR"), 10).trades[0]
    assert row[ROW_SOURCE_SEQUENCE] == 10 and row[2] == "ETHEUR"
    assert d.vendor_fields == VENDOR_KEYS and d.check_record(CoinbaseParser().parse(frame(), 1).trades[0]) == []
