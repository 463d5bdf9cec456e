"""REST dialects: request URLs, real-shaped answers parsed into the live parsers' rows, cursors, errors."""

import json
from decimal import Decimal

import pytest

from k2cli.exchanges import registry
from k2cli.exchanges.base import FrameError, row_to_record
from k2cli.exchanges.binance import BinanceParser
from k2cli.exchanges.coinbase import CoinbaseParser
from k2cli.exchanges.kraken import KrakenV1Parser, KrakenV2Parser
from k2cli.exchanges.kraken_rest import rest_pair, time_us, v1_time, v2_time
from k2cli.exchanges.rest_dialect import RestAnswerError, RestPage

BINANCE = registry.get("binance").rest
KRAKEN = registry.get("kraken").rest
COINBASE = registry.get("coinbase").rest


def _records(page):
    return [row_to_record(r) for r in page.rows]


def _same_but_source(rest_record, live_record, differ=()):
    """A REST record equals the live one but for message_id, ingestion time, ('source','rest') and `differ`."""
    rest_vendor, live_vendor = dict(rest_record.pop("vendor_data")), dict(live_record.pop("vendor_data"))
    assert rest_vendor.pop("source") == "rest"
    for key in differ:
        rest_vendor.pop(key, None), live_vendor.pop(key, None)
    for r in (rest_record, live_record):
        r.pop("message_id"), r.pop("ingestion_timestamp")
    assert rest_record == live_record
    assert rest_vendor == live_vendor


# --- Binance -------------------------------------------------------------------------------------------------

BINANCE_PAGE = json.dumps([
    {"id": 28457, "price": "4.00000100", "qty": "12.00000000", "quoteQty": "48.000012", "time": 1499865549590,
     "isBuyerMaker": True, "isBestMatch": True},
    {"id": 28458, "price": "4.00000200", "qty": "0.00000001", "quoteQty": "0.00000004", "time": 1499865549591,
     "isBuyerMaker": False, "isBestMatch": True},
]).encode()


def test_binance_request_pages_from_an_id():
    req = BINANCE.ids_request("BTCUSDT", BINANCE.ids_start(28457, 30000, None))
    assert req.path == "/api/v3/historicalTrades"
    assert req.params == (("symbol", "BTCUSDT"), ("fromId", "28457"), ("limit", "1000"))
    assert BINANCE.api_key_header == "X-MBX-APIKEY" and not BINANCE.windows and not BINANCE.ids_need_time


def test_binance_rows_are_the_live_parsers_with_source_rest():
    page = BINANCE.parse("BTCUSDT", BINANCE_PAGE, {}, 7, False)
    rest = _records(page)
    assert [r["source_sequence"] for r in rest] == [28457, 28458]
    assert rest[0]["price"] == Decimal("4.00000100") and rest[1]["quantity"] == Decimal("0.00000001")
    assert rest[0]["side"] == "SELL" and rest[1]["side"] == "BUY"  # isBuyerMaker: the taker sold
    assert rest[0]["vendor_data"]["event_time"] == rest[0]["vendor_data"]["trade_time"] == "1499865549590"
    live = BinanceParser().parse(json.dumps({"stream": "btcusdt@trade", "data": {
        "e": "trade", "E": 1499865549600, "s": "BTCUSDT", "t": 28457, "p": "4.00000100", "q": "12.00000000",
        "T": 1499865549590, "m": True, "M": True}}), 7).trades[0]
    _same_but_source(rest[0], live, differ=("event_time",))  # REST has no event time: the trade time stands in


def test_binance_cursor_moves_past_the_last_id_until_to_id():
    page = BINANCE.parse("BTCUSDT", BINANCE_PAGE, {}, 7, False)
    assert BINANCE.ids_next(page, 28457, 30000) == 28459
    assert BINANCE.ids_next(page, 28457, 28458) is None  # to_id reached
    assert BINANCE.ids_next(RestPage([]), 28459, 30000) is None  # nothing newer yet


def test_binance_sorts_a_page_and_refuses_bad_trades():
    reversed_page = json.dumps(list(reversed(json.loads(BINANCE_PAGE)))).encode()
    assert [r["source_sequence"] for r in _records(BINANCE.parse("BTCUSDT", reversed_page, {}, 7, False))] == \
        [28457, 28458]
    with pytest.raises(FrameError) as missing:
        BINANCE.parse("BTCUSDT", b'[{"id": 1, "price": "1.0"}]', {}, 7, False)
    assert missing.value.error_type == "missing_field"
    with pytest.raises(FrameError) as floaty:  # a float price is refused, as on the WebSocket
        BINANCE.parse("BTCUSDT", b'[{"id":1,"price":1.5,"qty":"1","time":1,"isBuyerMaker":true}]', {}, 7, False)
    assert floaty.value.error_type == "invalid_value"
    with pytest.raises(FrameError):
        BINANCE.parse("BTCUSDT", b'{"code": -1121, "msg": "Invalid symbol."}', {}, 7, False)


def test_binance_error_text():
    assert BINANCE.error_text(429, b'{"code":-1003,"msg":"Too much request weight used"}') == \
        "-1003: Too much request weight used"
    assert BINANCE.error_text(502, b"<html>Bad Gateway</html>") == "<html>Bad Gateway</html>"
    assert BINANCE.error_text(503, b"") == "HTTP 503"


# --- Kraken --------------------------------------------------------------------------------------------------

KRAKEN_PAGE = (b'{"error":[],"result":{"XXBTZUSD":['
               b'["30243.40000","0.34507674",1688669597.8277369,"b","m","",61044952],'
               b'["30243.50000","0.00000001",1688669598.1,"s","l","",61044953]],'
               b'"last":"1688669598100000000"}}')


def test_kraken_request_pages_by_time_with_the_rest_pair_name():
    assert rest_pair("BTC/USD") == "XBTUSD" and rest_pair("DOGE/USD") == "XDGUSD"
    cursor = KRAKEN.ids_start(61044952, 61045000, 1688669597827736)
    assert cursor == 1688669597827736 * 1000 - 1  # `since` is exclusive: the µs of the trade before is included
    req = KRAKEN.ids_request("BTC/USD", cursor)
    assert req.path == "/0/public/Trades"
    assert req.params == (("pair", "XBTUSD"), ("since", str(cursor)), ("count", "1000"))
    assert KRAKEN.ids_need_time and KRAKEN.windows and KRAKEN.limits.min_interval == 1.0


def test_kraken_times_are_exact():
    assert time_us(Decimal("1688669597.8277369")) == 1688669597827736  # truncated below the µs, never rounded
    assert time_us(1688669598) == 1688669598_000000
    assert v2_time(1688669597827736) == "2023-07-06T18:53:17.827736Z"
    assert v1_time(1688669598_000001) == "1688669598.000001"
    with pytest.raises(FrameError):
        time_us("1688669597.8")  # a string is not Kraken's REST time
    with pytest.raises(FrameError):
        time_us(1688669597.8)  # a float never gets in


def test_kraken_rows_by_id_are_the_v2_parsers():
    page = KRAKEN.parse("BTC/USD", KRAKEN_PAGE, {}, 7, False)
    rest = _records(page)
    assert page.cursor == 1688669598100000000
    assert [r["trade_id"] for r in rest] == ["KRAKEN-BTCUSD-61044952", "KRAKEN-BTCUSD-61044953"]
    assert rest[0]["price"] == Decimal("30243.40000") and rest[1]["quantity"] == Decimal("0.00000001")
    assert rest[0]["timestamp"] == 1688669597827736 and rest[1]["timestamp"] == 1688669598100000
    assert [r["side"] for r in rest] == ["BUY", "SELL"]
    live = KrakenV2Parser().parse(json.dumps({"channel": "trade", "type": "update", "data": [{
        "symbol": "BTC/USD", "side": "buy", "price": 30243.4, "qty": 0.34507674, "ord_type": "market",
        "trade_id": 61044952, "timestamp": "2023-07-06T18:53:17.827736Z"}]}), 7).trades[0]
    assert rest[0]["vendor_data"]["channel_type"] == "rest"
    live["price"] = Decimal("30243.40000")  # v2 sends numbers (30243.4); the value is the same
    _same_but_source(rest[0], live, differ=("channel_type",))


def test_kraken_rows_by_window_are_the_v1_parsers_with_the_same_ids():
    rest = _records(KRAKEN.parse("BTC/USD", KRAKEN_PAGE, {}, 7, True))
    live = KrakenV1Parser().parse(json.dumps([0, [
        ["30243.40000", "0.34507674", "1688669597.827736", "b", "m", ""],
        ["30243.50000", "0.00000001", "1688669598.100000", "s", "l", ""]], "trade", "XBT/USD"]), 7).trades
    assert [r["trade_id"] for r in rest] == [r["trade_id"] for r in live]
    for r, lv in zip(rest, live, strict=True):
        _same_but_source(r, lv)


def test_kraken_cursor():
    page = KRAKEN.parse("BTC/USD", KRAKEN_PAGE, {}, 7, False)
    assert KRAKEN.ids_next(page, 5, 61045000) == 1688669598100000000
    assert KRAKEN.ids_next(page, 5, 61044953) is None  # to_id reached
    assert KRAKEN.ids_next(page, 1688669598100000000, 61045000) is None  # `last` did not move
    assert KRAKEN.ids_next(RestPage([], 9), 5, 61045000) is None
    assert KRAKEN.window_start(1688669597827736) == 1688669597827735999
    assert KRAKEN.window_next(page, 5, 1688669599_000000) == 1688669598100000000
    assert KRAKEN.window_next(page, 5, 1688669598_100000) is None  # the last trade is at until: done


def test_kraken_errors_inside_the_answer():
    with pytest.raises(RestAnswerError) as limited:
        KRAKEN.parse("BTC/USD", b'{"error":["EGeneral:Too many requests"]}', {}, 7, False)
    assert limited.value.kind == "rate_limited"
    with pytest.raises(RestAnswerError) as busy:
        KRAKEN.parse("BTC/USD", b'{"error":["EService:Unavailable"]}', {}, 7, False)
    assert busy.value.kind == "unavailable"
    with pytest.raises(RestAnswerError) as refused:
        KRAKEN.parse("BTC/USD", b'{"error":["EQuery:Unknown asset pair"]}', {}, 7, False)
    assert refused.value.kind == "refused" and "Unknown asset pair" in refused.value.reason
    assert KRAKEN.error_text(400, b'{"error":["EQuery:Unknown asset pair"]}') == "EQuery:Unknown asset pair"
    with pytest.raises(FrameError):
        KRAKEN.parse("BTC/USD", b'{"error":[],"result":{"last":"1"}}', {}, 7, False)
    empty = KRAKEN.parse("BTC/USD", b'{"error":[],"result":{"XXBTZUSD":[],"last":"5"}}', {}, 7, False)
    assert empty.rows == [] and empty.cursor == 5


# --- Coinbase ------------------------------------------------------------------------------------------------

COINBASE_PAGE = json.dumps([  # newest first, as the venue sends it
    {"time": "2024-01-01T00:00:00.223456Z", "trade_id": 75, "price": "10.00000001", "size": "0.01000000",
     "side": "sell"},
    {"time": "2024-01-01T00:00:00.123456Z", "trade_id": 74, "price": "10.00000000", "size": "0.01000000",
     "side": "buy"},
]).encode()


def test_coinbase_walks_ids_upwards():
    assert COINBASE.ids_start(74, 5000, None) == 1074  # after=1074 answers ids 74 .. 1073
    req = COINBASE.ids_request("BTC-USD", 1074)
    assert req.path == "/products/BTC-USD/trades" and req.params == (("limit", "1000"), ("after", "1074"))


def test_coinbase_rows_are_the_live_parsers_ascending():
    page = COINBASE.parse("BTC-USD", COINBASE_PAGE, {"cb-after": "74", "cb-before": "75"}, 7, False)
    rest = _records(page)
    assert [r["source_sequence"] for r in rest] == [74, 75] and page.cursor == 74
    assert rest[0]["side"] == "SELL" and rest[1]["side"] == "BUY"  # side is the maker's: the taker is opposite
    assert rest[1]["price"] == Decimal("10.00000001")
    assert rest[0]["vendor_data"]["sequence"] == ""  # REST has no feed sequence
    live = CoinbaseParser().parse(json.dumps({
        "type": "match", "trade_id": 74, "sequence": 50, "product_id": "BTC-USD", "price": "10.00000000",
        "size": "0.01000000", "side": "buy", "time": "2024-01-01T00:00:00.123456Z"}), 7).trades[0]
    _same_but_source(rest[0], live, differ=("sequence",))


def test_coinbase_cursor():
    full = RestPage([(None,) * 11 + (i,) for i in range(74, 1074)])
    assert COINBASE.ids_next(full, 1074, 5000) == 2074
    assert COINBASE.ids_next(full, 1074, 1073) is None  # the page covered to_id
    short = RestPage([(None,) * 11 + (i,) for i in range(74, 80)])
    assert COINBASE.ids_next(short, 1074, 5000) is None  # the newest trade is 79: nothing after it yet
    assert COINBASE.error_text(429, b'{"message":"Public rate limit exceeded"}') == "Public rate limit exceeded"
    with pytest.raises(FrameError):
        COINBASE.parse("BTC-USD", b'{"message":"NotFound"}', {}, 7, False)


def test_every_descriptor_has_a_rest_dialect_and_url():
    for d in registry.all():
        assert d.rest is not None and d.default_rest_url.startswith("https://")
