"""`k2 consume` writes each (exchange, symbol, trade_id) once, against the real broker, registry and catalog:
two producers interleaved on one partition, a SIGKILL mid-run over a topic holding duplicates, late older ids,
and two consumers of one group sharing the table's trade-id state."""

from __future__ import annotations

import os
import random
import signal
import time
import urllib.request
from collections import Counter
from typing import Any

import pytest

from k2cli.lake import dedupstate as dd
from k2cli.lake import offsets as off
from tests.integration.consume_support import (
    Producer,
    free_port,
    load_table,
    make_trade,
    run_consume,
    scratch_topic,
    start_consume,
    stop,
    table_rows,
    wait_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def topic(unique):
    with scratch_topic("test.consume.dedup", unique) as name:
        yield name


def _trade(seq: int, symbol: str = "BTCUSDT", copy: int = 0) -> dict[str, Any]:
    """Trade `seq` of a symbol as a producer would send it: trade_id names the exchange's id; copy gives the
    message_id another ingestion (another producer) would have assigned."""
    rec = make_trade(seq, symbol=symbol, seq=seq)
    rec["trade_id"] = f"BINANCE-{seq}"
    rec["message_id"] = f"00000000-0000-4000-8000-{copy:04d}{seq:08d}"
    return rec


def _hash_trade(n: int, copy: int = 0) -> dict[str, Any]:
    """A trade without a sequential id (hash trade_id, no source_sequence), like Kraken WS v1."""
    rec = make_trade(n, symbol="XBT/USD", exchange="KRAKEN")
    rec["trade_id"] = f"KRAKEN-{rec['timestamp']}-{n:012x}"
    rec["message_id"] = f"00000000-0000-4000-8000-{copy:04d}{n:08d}"
    return rec


def _keys(rows: list[dict[str, Any]]) -> Counter[tuple[str, str, str]]:
    return Counter((r["exchange"], r["symbol"], r["trade_id"]) for r in rows)


def _summary_state(env: dict[str, str]) -> dd.DedupState:
    snap = load_table(env).current_snapshot()
    assert snap is not None
    return dd.decode_state(snap.summary.additional_properties.get(dd.DEDUP_KEY))


def test_two_producers_interleaved_on_one_partition_give_each_trade_once(topic, unique, k2_env):
    blue, green = Producer(topic), Producer(topic)
    rng = random.Random(unique)
    sent = 0
    for start in range(0, 400, 50):  # both producers send every trade, in chunks interleaved on partition 0
        first, second = (blue, green) if rng.random() < 0.5 else (green, blue)
        for p, copy in ((first, 1 if first is blue else 2), (second, 1 if second is blue else 2)):
            recs = [_trade(s, copy=copy) for s in range(start, start + 50)]
            recs += [_hash_trade(s, copy=copy) for s in range(start, start + 5)]
            p.send_trades(recs, partition_of=lambda i: 0)
            p.flush()
            sent += len(recs)
    rc, stats, err = run_consume(k2_env, "--topics", topic, "--max-messages", str(sent), "--batch-size", "97",
                                 "--group", f"g-{unique}")
    assert rc == 0, err
    rows = table_rows(k2_env)
    keys = _keys(rows)
    assert len(rows) == 400 + 40 == len(keys), f"{len(rows)} rows for {len(keys)} trades"
    assert {k for k in keys if k[0] == "BINANCE"} == {("BINANCE", "BTCUSDT", f"BINANCE-{s}") for s in range(400)}
    assert stats["messages_consumed"] == sent == 2 * 440
    assert stats["messages_written"] == 440
    assert stats["duplicates_skipped"] == 440
    assert stats["sequence_events"].get("DUPLICATE", 0) >= 440
    assert _summary_state(k2_env).ids == {("BINANCE", "BTCUSDT"): [(0, 399)]}


def test_sigkill_mid_run_over_a_topic_with_duplicates_then_restart_gives_each_trade_once(topic, unique, k2_env):
    p = Producer(topic)
    symbols = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "ADAUSDT")
    records = []
    for copy in (1, 2):  # every trade twice, the copies interleaved per symbol partition
        for s in range(1500):
            for k, sym in enumerate(symbols):
                records.append((k, _trade(s if copy == 1 else 1499 - s, symbol=sym, copy=copy)))
    rng = random.Random(unique)
    rng.shuffle(records)
    for k, rec in records:
        p.send(p.encode(rec), key=rec["symbol"].encode(), partition=k)
    p.flush()
    total = len(records)
    group = f"g-{unique}"
    kills = 0
    for _ in range(4):
        proc = start_consume(k2_env, "--topics", topic, "--batch-size", "400", "--flush-interval", "0.3",
                             "--group", group)
        wait_for(lambda: load_table(k2_env).current_snapshot() is not None, 60, "a first snapshot")
        time.sleep(rng.uniform(0.5, 2.0))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.communicate(timeout=30)
        if _recorded(k2_env) >= total:
            break
    assert kills >= 1
    remaining = total - _recorded(k2_env)
    if remaining:
        rc, stats, err = run_consume(k2_env, "--topics", topic, "--batch-size", "400", "--group", group,
                                     "--max-messages", str(remaining))
        assert rc == 0, err
    rows = table_rows(k2_env)
    keys = _keys(rows)
    assert len(rows) == len(keys) == 1500 * len(symbols), f"{len(rows)} rows for {len(keys)} trades"
    assert _summary_state(k2_env).ids == {("BINANCE", sym): [(0, 1499)] for sym in symbols}


def _recorded(env: dict[str, str]) -> int:
    try:
        snap = load_table(env).current_snapshot()
    except Exception:
        return 0
    if snap is None:
        return 0
    return sum(off.decode_offsets(snap.summary.additional_properties.get(off.OFFSETS_KEY)).values())


def test_late_older_ids_after_newer_ones_are_written_once(topic, unique, k2_env):
    p = Producer(topic)
    group = f"g-{unique}"
    p.send_trades([_trade(s) for s in range(100, 200)], partition_of=lambda i: 1)
    p.flush()
    rc, stats, err = run_consume(k2_env, "--topics", topic, "--max-messages", "100", "--group", group)
    assert rc == 0, err
    # a backfill of older ids, overlapping what is there, then live ids again (some repeated)
    p.send_trades([_trade(s, copy=3) for s in range(50, 121)] + [_trade(s, copy=4) for s in range(195, 211)],
                  partition_of=lambda i: 1)
    p.flush()
    rc, stats, err = run_consume(k2_env, "--topics", topic, "--max-messages", str(71 + 16), "--group", group,
                                 "--batch-size", "20")
    assert rc == 0, err
    assert stats["messages_written"] == 50 + 11
    assert stats["duplicates_skipped"] == 21 + 5
    ids = sorted(int(r["trade_id"].split("-")[1]) for r in table_rows(k2_env))
    assert ids == list(range(50, 211))
    assert _summary_state(k2_env).ids == {("BINANCE", "BTCUSDT"): [(50, 210)]}


def _assigned(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
        text = resp.read().decode()
    line = next(ln for ln in text.splitlines() if ln.startswith("k2_consumer_assigned_partitions "))
    return int(float(line.split()[1]))


def test_two_consumers_of_one_group_keep_each_others_trade_ids(topic, unique, k2_env):
    p = Producer(topic)
    symbols = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "ADAUSDT")
    group = f"g-{unique}"
    ports = free_port(), free_port()
    a, b = (start_consume(k2_env, "--topics", topic, "--batch-size", "50", "--flush-interval", "0.2", "--group",
                          group, "--instance-id", f"{group}-{n}", metrics_port=port)
            for n, port in zip("ab", ports, strict=True))
    try:
        wait_for(lambda: [_assigned(port) for port in ports] in ([1, 3], [2, 2], [3, 1]), 60,
                 "both consumers assigned")
        for start in range(0, 600, 100):
            p.send_trades([_trade(s, symbol=sym) for s in range(start, start + 100) for sym in symbols],
                          partition_of=lambda i: i % 4)
            p.flush()
            time.sleep(0.5)
        wait_for(lambda: _recorded(k2_env) >= 2400, 90, "every record committed")
    finally:
        results = [stop(a), stop(b)]
    assert all(rc == 0 for rc, _, _ in results), [err[-500:] for _, _, err in results]
    assert sum(s["messages_written"] for _, s, _ in results) == 2400
    assert all(s["messages_written"] for _, s, _ in results), "both consumers wrote"
    assert _summary_state(k2_env).ids == {("BINANCE", sym): [(0, 599)] for sym in symbols}
    # everything again, from another producer: nothing new reaches the table
    p.send_trades([_trade(s, symbol=sym, copy=5) for s in range(600) for sym in symbols],
                  partition_of=lambda i: i % 4)
    p.flush()
    rc, stats, err = run_consume(k2_env, "--topics", topic, "--max-messages", "2400", "--group", group,
                                 "--batch-size", "500")
    assert rc == 0, err
    assert stats["messages_written"] == 0 and stats["duplicates_skipped"] == 2400
    assert len(table_rows(k2_env)) == 2400


def test_concurrent_writers_merge_trade_ids_and_never_clobber_each_other(tmp_path):
    """Two writers on one table, each with its own symbols: a commit racing the other's is retried on fresh
    metadata and merges its ids into the other's; a commit without dedup carries the state as it is."""
    import pyarrow as pa

    from k2cli import trade
    from k2cli.lake.catalog import open_catalog
    from k2cli.lake.writer import TableWriter
    from k2cli.settings import Settings

    settings = Settings(data_dir=tmp_path)
    w1 = TableWriter(open_catalog(settings), "market_data.trades_v2")
    w2 = TableWriter(open_catalog(settings), "market_data.trades_v2")  # loads the table now: soon stale

    def rows(symbol: str, ids: range) -> pa.Table:
        return pa.Table.from_pylist([_trade(s, symbol=symbol) for s in ids], schema=trade.arrow_schema())

    btc, eth = ("BINANCE", "BTCUSDT"), ("BINANCE", "ETHUSDT")
    w1.commit(rows("BTCUSDT", range(1, 11)), {("t", 0): (0, 10)}, {("t", 0): None},
              dedup=dd.DedupState({btc: [(1, 10)]}))
    result = w2.commit(rows("ETHUSDT", range(1, 6)), {("t", 1): (0, 5)}, {("t", 1): None},
                       dedup=dd.DedupState({eth: [(1, 5)]}))
    assert result.attempts >= 2  # the first attempt hit w1's commit
    w1.commit(rows("BTCUSDT", range(20, 23)), {("t", 0): (10, 13)}, {("t", 0): 10},
              dedup=dd.DedupState({btc: [(20, 22)]}))  # stale too: retried on top of w2's
    w2.commit(rows("ETHUSDT", range(0, 0)), {("t", 1): (5, 6)}, {("t", 1): 5})  # dedup off: carried as it is
    w2.refresh()
    assert w2.dedup_state().ids == {btc: [(1, 10), (20, 22)], eth: [(1, 5)]}
    chain = [s.summary.additional_properties for s in load_table({"K2_DATA_DIR": str(tmp_path)}).snapshots()]
    assert all(dd.DEDUP_KEY in props for props in chain)
