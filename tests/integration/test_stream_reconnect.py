"""Heartbeat, idle watchdog and dropped connections: the stream reconnects, counts why, and goes on."""

from __future__ import annotations

import pytest

from tests.conftest import require
from tests.integration.stream_support import (
    create_topic,
    free_port,
    metric_value,
    read_topic,
    records_after,
    run_stream,
    simulated_run,
    simulator,
    stream_until_pong_timeout,
)

pytestmark = pytest.mark.integration
RATE = 100


def test_pong_timeout_reconnects_and_is_counted_in_metrics(tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    topic = f"test.stream.pong.{unique}"
    create_topic(topic)
    port = free_port()
    with simulator("binance", ["--no-pong", "--rate", str(RATE), "--symbols", "BTCUSDT"], k2_env, tmp_path) as url:
        code, summary, err, metrics = stream_until_pong_timeout("binance", [
            "--url", url, "--symbols", "BTCUSDT", "--topic", topic, "--duration", "12", "--ping-interval", "1",
            "--pong-timeout", "1"], k2_env, port)
    assert code == 0, err
    assert summary["pong_timeouts"] >= 2 and summary["reconnects"].get("pong_timeout", 0) >= 2, (summary, err)
    assert "no pong within" in err
    assert metric_value(metrics, "binance_pong_timeouts_total") >= 1
    assert metric_value(metrics, "binance_reconnects_total", 'reason="pong_timeout"') >= 1
    assert metric_value(metrics, "binance_pings_sent_total") >= 1 and summary["pings_sent"] >= 2
    assert metric_value(metrics, "binance_connection_status") is not None
    assert metric_value(metrics, "process_memory_rss_bytes") > 10e6
    assert metric_value(metrics, "serializer_cache_size") == 1
    assert metric_value(metrics, "k2_stream_messages_produced_total", 'exchange="binance"') > 0
    assert metric_value(metrics, "binance_messages_received_total", 'symbol="BTCUSDT"') > 0
    recs = read_topic(topic)
    assert len(recs) == summary["produced"] and records_after(recs, 4) > 0  # trades kept flowing after reconnects


def test_server_pings_are_answered_and_no_reconnect_happens(tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    topic = f"test.stream.serverping.{unique}"
    with simulator("binance", ["--ping-interval", "0.3", "--ping-timeout", "0.5", "--rate", str(RATE),
                               "--symbols", "BTCUSDT"], k2_env, tmp_path) as url:
        code, summary, err = run_stream("binance", ["--url", url, "--symbols", "BTCUSDT", "--topic", topic,
                                                    "--duration", "4", "--ping-interval", "1"], k2_env)
    assert code == 0, err
    assert summary["reconnects"] == {} and summary["pong_timeouts"] == 0 and summary["pings_sent"] >= 2
    assert summary["produced"] > 2 * RATE


def test_idle_stall_reconnects_kraken_v1(tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    topic = f"test.stream.idle.{unique}"
    summary, err = simulated_run("kraken", "BTC/USD", ["--stall-after", "2", "--rate", str(RATE)],
                                 ["--duration", "9", "--idle-timeout", "1.5"], topic, k2_env, tmp_path)
    assert summary["reconnects"].get("idle_timeout", 0) >= 2, summary
    assert "idle timeout" in err
    recs = read_topic(topic)
    assert len(recs) == summary["produced"] and records_after(recs, 3) > 0
    assert len({r["trade_id"] for _, r in recs}) == len(recs)  # the re-subscription snapshots were deduplicated


def test_dropped_connection_reconnects_kraken_v2(tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    topic = f"test.stream.drop.{unique}"
    summary, _ = simulated_run("kraken", "BTC/USD,ETH/USD", ["--drop-every", "2", "--rate", str(RATE)],
                               ["--duration", "8"], topic, k2_env, tmp_path, path="/v2")
    assert summary["reconnects"].get("connection_closed", 0) >= 2, summary
    recs = read_topic(topic)
    assert len(recs) == summary["produced"] and records_after(recs, 4) > 0
    seqs = [r["source_sequence"] for _, r in recs]
    assert len(seqs) == len(set(seqs))  # snapshots after each reconnect were deduplicated
