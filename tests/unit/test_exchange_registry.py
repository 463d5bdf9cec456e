"""The exchange registry and the Binance and Kraken descriptors: names, defaults, symbol and URL rules, plans."""

import json

import pytest

from k2cli.errors import ConfigError
from k2cli.exchanges import registry
from k2cli.exchanges.base import ROW_SOURCE_SEQUENCE, ROW_SYMBOL, TRADES


def test_registered_exchanges_and_their_lookups():
    assert registry.names() == ("binance", "kraken", "coinbase")
    assert [d.name for d in registry.all()] == list(registry.names())
    assert registry.default().name == "binance"
    assert registry.get("kraken").code == "KRAKEN" and registry.by_code("binance").name == "binance"
    assert registry.by_code("NASDAQ") is None
    assert registry.names_text() == "binance, kraken or coinbase"
    assert registry.names_text("--exchange {}") == "--exchange binance, --exchange kraken or --exchange coinbase"
    assert registry.names_text(mark_default=True) == "binance (default), kraken or coinbase"


def test_an_unknown_exchange_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown exchange 'nasdaq' \(known: binance, kraken, coinbase"):
        registry.get("nasdaq")


def test_descriptors_do_not_collide():
    every = registry.all()
    for attr in ("name", "code", "default_topic", "default_metrics_port", "scrape_job", "simulator_module"):
        values = [getattr(d, attr) for d in every]
        assert len(set(values)) == len(values), attr
    for d in every:
        assert d.code == d.name.upper() and d.default_topic == f"market.crypto.trades.{d.name}"
        assert d.simulator_module == f"k2cli.simulator.venues.{d.name}"
        assert d.setting("failover_urls") == f"K2_{d.name.upper()}_FAILOVER_URLS"
        assert d.scrape_job == f"k2-stream-{d.name}" and d.metric_prefix == d.name
        assert d.check_symbols(d.default_symbols) == d.default_symbols


def test_binance_plan_subscribes_through_the_url_with_sequential_ids():
    d = registry.get("binance")
    symbols = d.check_symbols(["btcusdt", " ETHUSDT", "BTCUSDT"])
    assert symbols == ("BTCUSDT", "ETHUSDT") and d.stored_symbol("BTCUSDT") == "BTCUSDT"
    plan = d.plan(("wss://a:9443/stream", "ws://b:1"), symbols)
    assert plan.urls == ("wss://a:9443/stream?streams=btcusdt@trade/ethusdt@trade",
                         "ws://b:1/stream?streams=btcusdt@trade/ethusdt@trade")
    assert plan.subscribe == () and plan.sequential_ids is True
    frame = json.dumps({"e": "trade", "E": 2, "s": "BTCUSDT", "t": 7, "p": "1.5", "q": "2", "T": 1, "m": False})
    parsed = plan.parser.parse_rows(frame, 10)
    assert parsed.kind == TRADES and parsed.trades[0][ROW_SOURCE_SEQUENCE] == 7
    with pytest.raises(ConfigError) as err:
        d.check_symbols(["FOOBAR"])
    assert err.value.setting == "K2_BINANCE_SYMBOLS"
    d.check_urls(("wss://a/stream", "ws://b/stream"))  # no rule on how Binance URLs combine


@pytest.mark.parametrize("url,version,sequential", [("wss://ws.kraken.com", 1, False),
                                                     ("wss://ws.kraken.com/v2", 2, True)])
def test_kraken_plan_follows_the_api_version_of_the_primary_url(url, version, sequential):
    d = registry.get("kraken")
    pairs = d.check_symbols(["xbt/usd", "ETH/EUR"])
    assert pairs == ("BTC/USD", "ETH/EUR") and d.stored_symbol("BTC/USD") == "BTCUSD"
    plan = d.plan((url,), pairs)
    assert plan.urls == (url,) and plan.sequential_ids is sequential
    message = json.loads(plan.subscribe[0])
    if version == 2:
        assert message["params"]["symbol"] == ["BTC/USD", "ETH/EUR"]
        frame = json.dumps({"channel": "trade", "type": "update", "data": [
            {"symbol": "BTC/USD", "side": "buy", "price": 1.5, "qty": 2, "ord_type": "market", "trade_id": 9,
             "timestamp": "2023-09-25T07:48:36.925533Z"}]})
    else:
        assert message["pair"] == ["XBT/USD", "ETH/EUR"]
        frame = json.dumps([1, [["1.5", "2", "1695628116.925533", "b", "m", ""]], "trade", "XBT/USD"])
    parsed = plan.parser.parse_rows(frame, 10)
    assert parsed.kind == TRADES and parsed.trades[0][ROW_SYMBOL] == "BTCUSD"


def test_kraken_refuses_urls_of_two_api_versions():
    d = registry.get("kraken")
    d.check_urls(("wss://a/v2", "ws://b/v2/"))
    with pytest.raises(ConfigError, match="mix WS API v1 and v2") as err:
        d.check_urls(("wss://a/v2", "wss://b"))
    assert err.value.setting == "K2_KRAKEN_URL"


def test_kraken_record_rule_flags_legacy_xbt():
    d = registry.get("kraken")
    assert d.check_record({"symbol": "BTCUSD", "vendor_data": {"base_asset": "BTC"}}) == []
    assert d.check_record({"symbol": "XBTUSD", "vendor_data": None})
    assert registry.get("binance").check_record({"symbol": "XBTUSD"}) == []
