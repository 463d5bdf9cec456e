"""Make-before-break rotations (planned, and on Binance's serverShutdown) lose nothing and duplicate nothing.

The simulator records every trade it generates (--record); what landed in Kafka must be exactly a prefix
of that tape for every symbol: no gap (nothing lost at a rotation), no repeat (nothing duplicated).
The issue asks for a rotation every few seconds for a minute; these runs are shortened to 30 s (Binance)
and 15-25 s (Kraken) to keep the suite quick, with a rotation every 3 s.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from decimal import Decimal

import pytest

from tests.conftest import require
from tests.integration.stream_support import (
    assert_sequential_prefix,
    create_topic,
    micros,
    read_topic,
    run_stream,
    simulator,
    tape_by_symbol,
)

pytestmark = pytest.mark.integration


def _sim_args(symbols, record, *extra):
    """A 300 trades/s tape, recorded; connections lag 0..300 ms each, so old and new are never in step."""
    return ["--rate", "300", "--symbols", symbols, "--record", str(record), "--lag-ms", "300", *extra]


def _assert_sequential_prefix(recs, tape):
    """Kafka holds, per symbol, exactly the first N trades of the tape (compared field by field)."""
    for r, t in assert_sequential_prefix(recs, tape):
        # Binance carries milliseconds; Kraken v2 microseconds
        assert micros(r["timestamp"]) in (t["ts_us"], t["ts_us"] // 1000 * 1000)


def test_binance_rotation_every_3s_for_30s_loses_and_duplicates_nothing(tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    topic = f"test.stream.rotate.binance.{unique}"
    create_topic(topic, partitions=2)
    record = tmp_path / "tape.jsonl"
    with simulator("binance", _sim_args("BTCUSDT,ETHUSDT", record), k2_env, tmp_path) as url:
        code, summary, err = run_stream("binance", ["--url", url, "--symbols", "BTCUSDT,ETHUSDT", "--topic", topic,
                                                    "--duration", "30", "--rotation-interval", "3"], k2_env)
    assert code == 0, err
    # about 9 on a quiet box; each rotation's new connection takes longer on a busy one, and 5 still show repetition
    assert summary["rotations"].get("scheduled", 0) >= 5, (summary, err[-3000:])
    assert summary["reconnects"] == {} and summary["undelivered"] == 0
    assert summary["duplicates_dropped"] > 0  # the overlaps really overlapped
    recs = read_topic(topic)
    assert len(recs) == summary["produced"] > 5000
    _assert_sequential_prefix(recs, tape_by_symbol(record))


def test_binance_server_shutdown_triggers_a_lossless_rotation(tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    topic = f"test.stream.shutdown.{unique}"
    create_topic(topic, partitions=2)
    record = tmp_path / "tape.jsonl"
    with simulator("binance", _sim_args("BTCUSDT,ETHUSDT", record, "--shutdown-every", "3",
                                                "--shutdown-grace", "3"), k2_env, tmp_path) as url:
        code, summary, err = run_stream("binance", ["--url", url, "--symbols", "BTCUSDT,ETHUSDT", "--topic", topic,
                                                    "--duration", "15"], k2_env)
    assert code == 0, err
    assert summary["rotations"].get("server_shutdown", 0) >= 3, (summary, err[-3000:])
    assert summary["reconnects"] == {}
    assert "announced a shutdown" in err
    recs = read_topic(topic)
    assert len(recs) == summary["produced"]
    _assert_sequential_prefix(recs, tape_by_symbol(record))


def test_kraken_v2_rotation_loses_and_duplicates_nothing(tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    topic = f"test.stream.rotate.kraken2.{unique}"
    create_topic(topic, partitions=2)
    record = tmp_path / "tape.jsonl"
    with simulator("kraken", _sim_args("BTC/USD,ETH/USD", record), k2_env, tmp_path) as url:
        code, summary, err = run_stream("kraken", ["--url", url + "/v2", "--symbols", "BTC/USD,ETH/USD", "--topic",
                                                   topic, "--duration", "15", "--rotation-interval", "3"], k2_env)
    assert code == 0, err
    assert summary["rotations"].get("scheduled", 0) >= 3 and summary["reconnects"] == {}, (summary, err[-3000:])
    recs = read_topic(topic)
    assert len(recs) == summary["produced"]
    _assert_sequential_prefix(recs, tape_by_symbol(record))


def test_kraken_v1_rotation_with_hash_ids_loses_and_duplicates_nothing(tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    topic = f"test.stream.rotate.kraken1.{unique}"
    create_topic(topic, partitions=2)
    record = tmp_path / "tape.jsonl"
    with simulator("kraken", _sim_args("BTC/USD,DOGE/USD", record), k2_env, tmp_path) as url:
        code, summary, err = run_stream("kraken", ["--url", url, "--symbols", "BTC/USD,DOGE/USD", "--topic", topic,
                                                   "--duration", "25", "--rotation-interval", "3"], k2_env)
    assert code == 0, err
    assert summary["rotations"].get("scheduled", 0) >= 4 and summary["reconnects"] == {}, (summary, err[-3000:])
    recs = read_topic(topic)
    assert len(recs) == summary["produced"]
    ids = Counter(r["trade_id"] for _, r in recs)
    assert max(ids.values()) == 1, "duplicated trades"
    tape = tape_by_symbol(record)

    def fingerprint(ts, price, qty, side, order_type):
        return (ts, Decimal(price), Decimal(qty), side, order_type)

    by_symbol = defaultdict(list)
    for _, r in recs:
        by_symbol[r["symbol"]].append(fingerprint(
            micros(r["timestamp"]), r["price"], r["quantity"], r["side"],
            "market" if r["vendor_data"]["order_type"] == "m" else "limit"))
    assert set(by_symbol) == set(tape)
    twins = 0
    for symbol, got in by_symbol.items():
        expected = [fingerprint(t["ts_us"], t["price"], t["qty"], t["side"].upper(), t["order_type"])
                    for t in tape[symbol][:len(got)]]
        assert Counter(got) == Counter(expected), f"{symbol}: Kafka is not exactly a prefix of the tape"
        twins += sum(n - 1 for n in Counter(expected).values())
    assert twins > 0  # identical trades in one frame were kept apart by their ids
