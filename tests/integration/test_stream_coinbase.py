"""Coinbase Exchange end to end: `k2 simulate coinbase` (the matches channel over a real WebSocket) ->
`k2 stream coinbase` -> Kafka + Schema Registry -> decoded records, compared with what the simulator sent.

Exact records, make-before-break rotation without loss or duplicates, heartbeat and pong timeout, the idle
watchdog, dropped connections, bad frames in the dead-letter file, a refused subscription.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from tests.conftest import require
from tests.integration.stream_support import (
    assert_garbage_kept,
    assert_sequential_prefix,
    create_topic,
    free_port,
    metric_value,
    micros,
    read_topic,
    records_after,
    run_stream,
    simulated_run,
    simulator,
    stream_tape,
    stream_until_pong_timeout,
    strip_unfixed,
    tape_by_symbol,
)

pytestmark = pytest.mark.integration
RATE = 100
MAKER = "ac928c66-ca53-498f-9c13-a110027a60e8"
TAKER = "132fb6ae-456b-4654-b4e0-d681ac05cea1"


def _match(kind, trade_id, product, side, size, price, sequence, time_s):
    return json.dumps({"type": kind, "trade_id": trade_id, "maker_order_id": MAKER, "taker_order_id": TAKER,
                       "side": side, "size": size, "price": price, "product_id": product, "sequence": sequence,
                       "time": time_s})


TAPE = [
    _match("last_match", 1000, "BTC-USD", "sell", "0.00012345", "36512.34000001", 5000, "2023-11-14T22:13:20.120000Z"),
    _match("match", 1001, "BTC-USD", "buy", "0.00000001", "9999999999.99999999", 5003, "2023-11-14T22:13:20.300001Z"),
    _match("match", 77, "ETH-BTC", "sell", "12.50000000", "0.05432100", 900, "2023-11-14T22:13:21.000000Z"),
]


def test_coinbase_records_are_exact(tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    started, got = stream_tape("coinbase", TAPE, "BTC-USD,ETH-BTC", tmp_path, k2_env, unique, n=3)
    by_id = {rec["trade_id"]: (key, strip_unfixed(rec, started)) for key, rec in got}
    assert set(by_id) == {"COINBASE-BTCUSD-1000", "COINBASE-BTCUSD-1001", "COINBASE-ETHBTC-77"}
    key, last = by_id["COINBASE-BTCUSD-1000"]
    assert key == "BTCUSD"
    assert last == {
        "trade_id": "COINBASE-BTCUSD-1000", "symbol": "BTCUSD", "exchange": "COINBASE", "asset_class": "crypto",
        "timestamp": 1700000000120000, "price": Decimal("36512.34000001"), "quantity": Decimal("0.00012345"),
        "currency": "USD", "side": "BUY", "trade_conditions": [], "source_sequence": 1000, "platform_sequence": None,
        "vendor_data": {"product_id": "BTC-USD", "base_asset": "BTC", "quote_asset": "USD", "maker_side": "sell",
                        "maker_order_id": MAKER, "taker_order_id": TAKER, "sequence": "5000",
                        "event_type": "last_match", "raw_timestamp": "2023-11-14T22:13:20.120000Z"},
    }
    _, big = by_id["COINBASE-BTCUSD-1001"]
    assert big["price"] == Decimal("9999999999.99999999") and big["quantity"] == Decimal("0.00000001")
    assert big["side"] == "SELL" and big["timestamp"] == 1700000000300001  # the maker bought: the taker sold
    assert big["vendor_data"]["event_type"] == "match" and big["vendor_data"]["sequence"] == "5003"
    key, eth = by_id["COINBASE-ETHBTC-77"]
    assert key == "ETHBTC" and eth["currency"] == "BTC" and eth["side"] == "BUY" and eth["source_sequence"] == 77
    assert eth["price"] == Decimal("0.054321") and eth["quantity"] == Decimal("12.5")
    assert eth["vendor_data"]["base_asset"] == "ETH" and eth["timestamp"] == 1700000001000000


def _assert_exact_prefix(recs, record_file):
    """Kafka holds, per product, exactly the first N trades the simulator generated, compared field by field
    (prices and quantities as Decimals, µs times, the taker's side)."""
    assert all(rec["exchange"] == "COINBASE" for _, rec in recs)
    for r, t in assert_sequential_prefix(recs, tape_by_symbol(record_file)):
        assert r["trade_id"] == f"COINBASE-{r['symbol']}-{t['seq']}" and micros(r["timestamp"]) == t["ts_us"]
        assert r["vendor_data"]["maker_side"] == ("sell" if t["side"] == "buy" else "buy")


def test_coinbase_rotation_every_3s_loses_and_duplicates_nothing(tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    topic = f"test.stream.rotate.coinbase.{unique}"
    create_topic(topic, partitions=2)
    record = tmp_path / "tape.jsonl"
    with simulator("coinbase", ["--rate", "300", "--symbols", "BTC-USD,ETH-USD", "--record", str(record),
                                "--lag-ms", "300"], k2_env, tmp_path) as url:
        code, summary, err = run_stream("coinbase", ["--url", url, "--symbols", "BTC-USD,ETH-USD", "--topic", topic,
                                                     "--duration", "15", "--rotation-interval", "3"], k2_env)
    assert code == 0, err
    assert summary["rotations"].get("scheduled", 0) >= 3 and summary["reconnects"] == {}, (summary, err[-3000:])
    assert summary["undelivered"] == 0 and summary["frame_errors"] == {}
    assert summary["duplicates_dropped"] > 0  # each new connection's last_match, and the overlaps
    recs = read_topic(topic)
    assert len(recs) == summary["produced"] > 1000
    _assert_exact_prefix(recs, record)


def test_coinbase_heartbeat_pongs_and_pong_timeout(tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    topic = f"test.stream.pong.coinbase.{unique}"
    create_topic(topic)
    with simulator("coinbase", ["--rate", str(RATE), "--symbols", "BTC-USD"], k2_env, tmp_path) as url:
        code, summary, err = run_stream("coinbase", ["--url", url, "--symbols", "BTC-USD", "--topic", topic,
                                                     "--duration", "4", "--ping-interval", "1"], k2_env)
    assert code == 0, err
    assert summary["pings_sent"] >= 2 and summary["pong_timeouts"] == 0 and summary["reconnects"] == {}, summary
    assert summary["produced"] > 2 * RATE

    port = free_port()
    with simulator("coinbase", ["--no-pong", "--rate", str(RATE), "--symbols", "BTC-USD"], k2_env, tmp_path) as url:
        code, summary, err, metrics = stream_until_pong_timeout("coinbase", [
            "--url", url, "--symbols", "BTC-USD", "--topic", topic, "--duration", "10", "--ping-interval", "1",
            "--pong-timeout", "1"], k2_env, port)
    assert code == 0, err
    assert summary["pong_timeouts"] >= 2 and summary["reconnects"].get("pong_timeout", 0) >= 2, (summary, err)
    assert metric_value(metrics, "coinbase_pong_timeouts_total") >= 1
    assert metric_value(metrics, "coinbase_messages_received_total", 'symbol="BTCUSD"') > 0
    assert metric_value(metrics, "k2_stream_messages_produced_total", 'exchange="coinbase"') > 0


def test_coinbase_idle_stall_reconnects_without_duplicates(tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    topic = f"test.stream.idle.coinbase.{unique}"
    summary, err = simulated_run("coinbase", "BTC-USD", ["--stall-after", "2", "--rate", str(RATE)],
                                 ["--duration", "9", "--idle-timeout", "1.5"], topic, k2_env, tmp_path)
    assert summary["reconnects"].get("idle_timeout", 0) >= 2, summary
    assert "idle timeout" in err
    recs = read_topic(topic)
    assert len(recs) == summary["produced"] and records_after(recs, 3) > 0
    seqs = [r["source_sequence"] for _, r in recs]
    assert len(seqs) == len(set(seqs))  # each reconnect's last_match repeats a trade already kept: dropped


def test_coinbase_dropped_connection_reconnects(tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    topic = f"test.stream.drop.coinbase.{unique}"
    summary, _ = simulated_run("coinbase", "BTC-USD,ETH-USD", ["--drop-every", "2", "--rate", str(RATE)],
                               ["--duration", "8"], topic, k2_env, tmp_path)
    assert summary["reconnects"].get("connection_closed", 0) >= 2, summary
    recs = read_topic(topic)
    assert len(recs) == summary["produced"] and records_after(recs, 4) > 0
    seqs = [(r["symbol"], r["source_sequence"]) for _, r in recs]
    assert len(seqs) == len(set(seqs))


def test_coinbase_bad_frames_go_to_the_dead_letter_file(tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    topic = f"test.stream.garbage.coinbase.{unique}"
    summary, _ = simulated_run("coinbase", "BTC-USD", ["--garbage-every", "10", "--rate", "200"],
                               ["--max-messages", "400"], topic, k2_env, tmp_path)
    assert_garbage_kept(summary, topic, tmp_path, "coinbase", '"price":"0.00"')


def test_coinbase_subscription_refused_is_a_clear_config_error(tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    with simulator("coinbase", ["--symbols", "BTC-USD"], k2_env, tmp_path) as url:
        code, summary, err = run_stream("coinbase", ["--url", url, "--symbols", "BTC-USD,ETH-USD", "--topic",
                                                     f"test.stream.refused.coinbase.{unique}", "--duration", "20"],
                                        k2_env)
    assert code == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("k2: error: the exchange refused the subscription: Failed to subscribe: ETH-USD is not "
                           "a valid product") and "K2_COINBASE_SYMBOLS" in last
    assert "Traceback" not in err
