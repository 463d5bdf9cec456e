"""Which REST API a backfill reads, and which ranges `k2 backfill` refuses (plain values, no I/O)."""

import pytest

from k2cli.errors import ConfigError
from k2cli.settings import load_settings
from k2cli.stream.options import rest_url_for
from k2cli.stream.range_fill import RangeRequest, check_request


def test_the_rest_url_is_the_flag_else_the_setting_else_a_simulators_own_origin(monkeypatch):
    monkeypatch.delenv("K2_BINANCE_REST_URL", raising=False)
    s = load_settings()
    assert rest_url_for(s, "binance", "wss://stream.binance.com:9443/stream") == "https://api.binance.com"
    assert rest_url_for(s, "binance", "ws://127.0.0.1:8765/stream") == "http://127.0.0.1:8765"
    assert rest_url_for(s, "binance", "wss://sim.local:9443/stream") == "https://sim.local:9443"
    assert rest_url_for(s, "binance", "ws://127.0.0.1:8765/stream", "http://10.0.0.1:9") == "http://10.0.0.1:9"
    monkeypatch.setenv("K2_BINANCE_REST_URL", "https://mirror.example")
    assert rest_url_for(load_settings(), "binance", "ws://127.0.0.1:8765/stream") == "https://mirror.example"
    with pytest.raises(ConfigError, match="not an http"):
        rest_url_for(s, "binance", "ws://127.0.0.1:1", "ftp://x")


def test_k2_backfill_takes_an_id_range_or_a_time_window_as_the_exchange_pages():
    ok = RangeRequest("binance", "BTCUSDT", "t", "http://h", from_id=5, to_id=9)
    check_request(ok)
    for bad, why in [
        (RangeRequest("binance", "BTCUSDT", "t", "http://h"), "either --from-id"),
        (RangeRequest("binance", "BTCUSDT", "t", "http://h", from_id=9, to_id=5), "at least"),
        (RangeRequest("binance", "BTCUSDT", "t", "http://h", since_us=1, until_us=2), "by trade id only"),
        (RangeRequest("kraken", "BTC/USD", "t", "http://h", from_id=1), "pages by time"),
        (RangeRequest("kraken", "BTC/USD", "t", "http://h", since_us=5, until_us=5), "after --since"),
    ]:
        with pytest.raises(ConfigError, match=why):
            check_request(bad)
