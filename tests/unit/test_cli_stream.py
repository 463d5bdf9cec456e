"""`k2 stream` / `k2 simulate` operator errors: one clear line, the right exit code, no traceback."""

import pytest

from k2cli.errors import ConfigError
from k2cli.settings import load_settings
from k2cli.stream.runner import build_options
from tests.conftest import run_k2


@pytest.mark.parametrize(("args", "code", "text"), [
    (["stream", "binance", "--symbols", "BTCUSDT,FOOBAR"], 2, "'FOOBAR' does not end in a known quote asset"),
    (["stream", "binance", "--url", "http://example.com"], 2, "is not a ws:// or wss:// URL"),
    (["stream", "kraken", "--symbols", "BTCUSD"], 2, "is not a Kraken pair"),
    (["stream", "kraken", "--url", "ws://h/v2", "--failover-urls", "ws://h"], 2, "mix WS API v1 and v2"),
    (["stream", "coinbase", "--symbols", "BTCUSD"], 2, "is not a Coinbase product"),
    (["stream", "binance", "--metrics-port", "70000"], 2, "is not a port"),
    (["stream", "binance", "--max-messages", "-1"], 2, "must be 0 (unbounded) or more"),
    (["simulate", "kraken", "--shutdown-every", "3"], 2, "--shutdown-every is a Binance fault"),
    (["simulate", "binance", "--symbols", "XYZ"], 2, "does not end in a known quote asset"),
    (["simulate", "binance", "--tls-cert", "/nonexistent.pem"], 2, "--tls-cert and --tls-key go together"),
])
def test_operator_mistakes_are_one_line(args, code, text, k2_env):
    proc = run_k2(args, env=k2_env, timeout=60)
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("k2: error: ") and text in lines[0], proc.stderr


def test_help_lists_the_resilience_knobs(k2_env):
    out = run_k2(["stream", "binance", "--help"], env=k2_env).stdout
    for flag in ("--symbols", "--url", "--topic", "--max-messages", "--duration", "--rotation-interval",
                 "--ping-interval", "--pong-timeout", "--idle-timeout", "--metrics-port", "--insecure",
                 "--ca-bundle", "--format"):
        assert flag in out
    assert "--debug-leak" not in out
    sim = run_k2(["simulate", "binance", "--help"], env=k2_env).stdout
    for flag in ("--port", "--rate", "--tape", "--tls-cert", "--drop-every", "--no-pong", "--stall-after",
                 "--garbage-every", "--skip-ids-every", "--shutdown-every", "--lag-ms"):
        assert flag in sim


def test_build_options_defaults_and_explicit_url_drops_failovers():
    settings = load_settings()
    opts = build_options(settings, "binance")
    assert opts.urls == (settings.binance_url, *settings.binance_failover_urls)
    assert opts.metrics_port == 9091 and opts.topic == "market.crypto.trades.binance"
    local = build_options(settings, "binance", url="ws://127.0.0.1:1/stream", symbols=("btcusdt",))
    assert local.urls == ("ws://127.0.0.1:1/stream",) and local.symbols == ("BTCUSDT",)
    kr = build_options(settings, "kraken", symbols=("XBT/USD", "eth/eur"), metrics_port=0)
    assert kr.symbols == ("BTC/USD", "ETH/EUR") and kr.metrics_port == 0 and kr.topic.endswith(".kraken")
    cb = build_options(settings, "coinbase", symbols=("btc-usd", "ETH-EUR"))
    assert cb.symbols == ("BTC-USD", "ETH-EUR") and cb.urls == ("wss://ws-feed.exchange.coinbase.com",)
    assert cb.metrics_port == 9095 and cb.topic == "market.crypto.trades.coinbase"
    with pytest.raises(ConfigError):
        build_options(settings, "bybit")
