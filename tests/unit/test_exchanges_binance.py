"""Binance @trade frames -> exact v2 records; bad frames raise FrameError with a bounded error type."""

import json
import uuid
from decimal import Decimal

import pytest

from k2cli.exchanges.base import CONTROL, SHUTDOWN, FrameError
from k2cli.exchanges.binance import BinanceParser, stream_url
from k2cli.trade import validate_trade
from tests.unit.exchange_support import only_record

TRADE = {"e": "trade", "E": 1672515782136, "s": "BNBBTC", "t": 12345, "p": "0.00100000", "q": "100.00000000",
         "T": 1672515782135, "m": True, "M": True}


def frame(**changes):
    data = {**TRADE, **changes}
    return json.dumps({"stream": f"{data['s'].lower()}@trade", "data": data})


def test_trade_maps_to_exact_v2_record():
    rec = only_record(BinanceParser(), frame(), 1672515782200000)
    assert rec == {
        "trade_id": "BINANCE-12345", "symbol": "BNBBTC", "exchange": "BINANCE", "asset_class": "crypto",
        "timestamp": 1672515782135000, "price": Decimal("0.00100000"), "quantity": Decimal("100.00000000"),
        "currency": "BTC", "side": "SELL", "trade_conditions": [], "source_sequence": 12345,
        "ingestion_timestamp": 1672515782200000, "platform_sequence": None,
        "vendor_data": {"base_asset": "BNB", "quote_asset": "BTC", "is_buyer_maker": "true", "event_type": "trade",
                        "event_time": "1672515782136", "trade_time": "1672515782135", "is_best_match": "true"},
    }


def test_record_passes_the_v2_validator_and_buyer_taker_is_buy():
    rec = BinanceParser().parse(frame(m=False, s="BTCUSDT", p="16500.12345678", q="0.00000001"), 1).trades[0]
    checked = validate_trade(rec)
    assert checked["side"] == "BUY" and checked["currency"] == "USDT"
    assert checked["price"] == Decimal("16500.12345678") and str(checked["quantity"]) == "1E-8"


@pytest.mark.parametrize(("text", "value"), [
    ("0.00000001", "1E-8"), ("9999999999.99999999", "9999999999.99999999"), ("1", "1"), ("12.5", "12.5"),
    ("1e3", "1E+3"), ("0.10000000", "0.10000000"),
])
def test_price_strings_are_exact(text, value):
    rec = BinanceParser().parse(frame(p=text), 1).trades[0]
    assert rec["price"] == Decimal(value) and str(rec["price"]) == str(Decimal(text))


def test_raw_stream_frame_without_wrapper_is_accepted_and_message_ids_are_unique():
    parser = BinanceParser()
    ids = {parser.parse(json.dumps(TRADE), 1).trades[0]["message_id"] for _ in range(2000)}
    assert len(ids) == 2000
    assert all(uuid.UUID(i).version == 4 for i in list(ids)[:50])


def test_server_shutdown_and_control_frames():
    parser = BinanceParser()
    assert parser.parse('{"e":"serverShutdown","E":1}', 1).kind == SHUTDOWN
    assert parser.parse('{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1}}', 1).kind == SHUTDOWN
    assert parser.parse('{"result":null,"id":1}', 1).kind == CONTROL


@pytest.mark.parametrize(("raw", "error_type"), [
    ("{not json", "invalid_json"),
    (b"\xff\xfe", "invalid_json"),
    ("[1,2]", "unknown_event"),
    ('{"e":"aggTrade","s":"BTCUSDT"}', "unknown_event"),
    (json.dumps({k: v for k, v in TRADE.items() if k != "p"}), "missing_field"),
    (frame(p="0.00000000"), "invalid_value"),
    (frame(p="-1"), "invalid_value"),
    (frame(q="abc"), "invalid_value"),
    (frame(p=1.5), "invalid_value"),
    (frame(p="0.000000001"), "invalid_value"),
    (frame(p="10000000000"), "invalid_value"),
    (frame(p="1e-9"), "invalid_value"),
    (frame(t="12"), "invalid_value"),
    (frame(m="true"), "invalid_value"),
    (frame(s="FOOBAR"), "unknown_symbol"),
    ('{"code":-1121,"msg":"Invalid symbol."}', "exchange_error"),
])
def test_bad_frames_raise_typed_errors(raw, error_type):
    with pytest.raises(FrameError) as err:
        BinanceParser().parse(raw, 1)
    assert err.value.error_type == error_type and err.value.reason


def test_stream_url_builds_combined_stream():
    assert stream_url("wss://stream.binance.com:9443/stream", ["BTCUSDT", "ETHUSDT"]) == \
        "wss://stream.binance.com:9443/stream?streams=btcusdt@trade/ethusdt@trade"
    assert stream_url("ws://127.0.0.1:8000", ["BTCUSDT"]) == "ws://127.0.0.1:8000/stream?streams=btcusdt@trade"
    assert stream_url("ws://h:1/stream?timeUnit=ms", ["A"]) == "ws://h:1/stream?timeUnit=ms&streams=a@trade"
