"""TLS verification against a local wss:// simulator, bad frames kept in the dead-letter file, operator errors."""

from __future__ import annotations

import pytest

from tests.conftest import require
from tests.integration.stream_support import (
    assert_garbage_kept,
    run_stream,
    self_signed_cert,
    simulated_run,
    simulator,
)

pytestmark = pytest.mark.integration


def test_self_signed_certificate_is_refused_with_one_clear_line(tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    cert, key = self_signed_cert(tmp_path)
    topic = f"test.stream.tls.{unique}"
    with simulator("binance", ["--tls-cert", str(cert), "--tls-key", str(key), "--symbols", "BTCUSDT"], k2_env,
                   tmp_path) as url:
        assert url.startswith("wss://")
        code, summary, err = run_stream("binance", ["--url", url, "--symbols", "BTCUSDT", "--topic", topic,
                                                    "--max-messages", "5"], k2_env, timeout=60)
        assert code == 3 and summary == {}
        lines = [line for line in err.splitlines() if line.strip()]
        assert lines[-1].startswith("k2: error: TLS certificate of wss://127.0.0.1:")
        assert "self-signed certificate" in lines[-1] or "self signed certificate" in lines[-1]
        assert "--ca-bundle" in lines[-1] and "Traceback" not in err

        # trusting the certificate's CA makes the same endpoint work, verified
        code, summary, err = run_stream("binance", ["--url", url, "--symbols", "BTCUSDT", "--topic", topic,
                                                    "--max-messages", "5", "--ca-bundle", str(cert)], k2_env)
        assert code == 0, err
        assert summary["produced"] == 5

        # --insecure works too, and says loudly that nothing is verified (a topic of its own: on the first one it
        # would resume after the run above and backfill the trades in between, over the same unverified TLS)
        code, summary, err = run_stream("binance", ["--url", url, "--symbols", "BTCUSDT",
                                                    "--topic", f"{topic}.insecure",
                                                    "--max-messages", "5", "--insecure"], k2_env)
        assert code == 0, err
        assert "verification is OFF" in err and summary["produced"] == 5


def test_garbage_frames_are_counted_and_kept_while_the_stream_goes_on(tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    topic = f"test.stream.garbage.{unique}"
    summary, _ = simulated_run("binance", "BTCUSDT", ["--garbage-every", "10", "--rate", "200"],
                               ["--max-messages", "400"], topic, k2_env, tmp_path)
    errors = assert_garbage_kept(summary, topic, tmp_path, "binance", '"p":"0.00000000"')
    assert sum(errors.values()) >= 39


def test_kraken_subscription_refused_is_a_clear_config_error(tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    with simulator("kraken", ["--symbols", "BTC/USD"], k2_env, tmp_path) as url:
        code, summary, err = run_stream("kraken", ["--url", url, "--symbols", "BTC/USD,ETH/USD", "--topic",
                                                   f"test.stream.refused.{unique}", "--duration", "20"], k2_env)
    assert code == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("k2: error: the exchange refused the subscription") and "ETH/USD" in last
    assert "Traceback" not in err


def test_binance_stream_the_exchange_does_not_serve_is_refused_at_start(tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    with simulator("binance", ["--symbols", "BTCUSDT"], k2_env, tmp_path) as url:
        code, summary, err = run_stream("binance", ["--url", url, "--symbols", "ETHUSDT", "--topic",
                                                    f"test.stream.http400.{unique}", "--duration", "20"], k2_env)
    assert code == 2, err
    last = err.strip().splitlines()[-1]
    assert "refused the WebSocket upgrade with HTTP 400" in last and "K2_BINANCE_URL" in last
