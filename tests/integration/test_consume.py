"""`k2 consume` against the real broker, registry and catalog: exact counts and values, the DLQ, resume,
sequence events, the flush interval, metrics and shutdown."""

from __future__ import annotations

import signal
import time
import urllib.request
from decimal import Decimal

import pytest

from k2cli import trade
from k2cli.kafka.serde import frame
from k2cli.lake import offsets as off
from tests.integration.consume_support import (
    Producer,
    dlq_entries,
    free_port,
    load_table,
    make_trade,
    raw_value,
    run_consume,
    scale10_value,
    scratch_topic,
    start_consume,
    stop,
    table_rows,
    wait_for,
)
from tests.timing import budget, load_note

pytestmark = pytest.mark.integration


@pytest.fixture
def topic(unique):
    with scratch_topic("test.consume", unique) as name:
        yield name


def _poison_values(p: Producer, topic: str, unique: str) -> list[tuple[str, bytes | None]]:
    """(expected error_type, value) for every kind of bad record."""
    good = make_trade(10_000)
    framed = p.encode(good)
    schema_id = p.serializer.schema_id
    return [
        ("bad_magic_byte", b"\x07" + framed[1:]),
        ("unknown_schema_id", frame(2_000_000_000, framed[5:])),
        ("truncated", framed[:40]),
        ("invalid_record", framed + b"\x02\x04"),
        ("null_value", None),
        ("invalid_value", raw_value(make_trade(10_001), schema_id, price=0)),
        ("invalid_value", raw_value(make_trade(10_002), schema_id, quantity=-1)),
        ("invalid_value", raw_value(make_trade(10_003), schema_id, price=10 ** 18)),
        ("invalid_value", scale10_value(f"{topic}-scale10-value", make_trade(10_004), 1_234_567_890_123)),
    ]


def test_mixed_topic_exact_counts_values_and_dlq(topic, unique, k2_env):
    p = Producer(topic)
    valid = [make_trade(i, symbol=("BTCUSDT", "ETHUSDT")[i % 2]) for i in range(1200)]
    # one exact record written by a scale-10 writer: rescaled, not rejected
    rescaled = make_trade(1200, price="123.45678901")
    poison = _poison_values(p, topic, unique)
    sent_poison: list[tuple[str, bytes | None, int]] = []
    for i, rec in enumerate(valid):
        p.send(p.encode(rec), key=rec["symbol"].encode(), partition=i % 4)
        if i % 130 == 0 and poison:
            kind, value = poison.pop(0)
            part = (i // 130) % 4
            p.send(value, partition=part)
            sent_poison.append((kind, value, part))
    p.send(scale10_value(f"{topic}-scale10-value", rescaled, 1_234_567_890_100), partition=3)
    p.flush()
    total = len(valid) + 1 + len(sent_poison)

    rc, stats, err = run_consume(k2_env, "--topics", topic, "--max-messages", str(total), "--batch-size", "200",
                                 "--group", f"g-{unique}")
    assert rc == 0, err
    assert stats["messages_consumed"] == total
    assert stats["messages_written"] == len(valid) + 1
    assert stats["dlq_entries"] == len(sent_poison) == 9
    assert stats["errors"] == 9 and stats["stopped_by"] == "max_messages"
    assert stats["snapshots_committed"] == -(-total // 200)

    rows = {r["message_id"]: r for r in table_rows(k2_env)}
    assert len(rows) == len(valid) + 1
    for rec in valid[::37] + [valid[-1]]:
        row = rows[rec["message_id"]]
        assert row["price"] == rec["price"] and row["quantity"] == rec["quantity"]
        assert row["trade_id"] == rec["trade_id"] and row["symbol"] == rec["symbol"]
        assert int(row["timestamp"].timestamp() * 1_000_000) == rec["timestamp"]
        assert row["source_sequence"] is None and dict(row["vendor_data"]) == rec["vendor_data"]
        assert row["trade_conditions"] == rec["trade_conditions"]
    assert rows[rescaled["message_id"]]["price"] == Decimal("123.45678901")

    entries = dlq_entries(k2_env)
    assert sorted((e.error_type, e.value, e.source["partition"]) for e in entries) == sorted(
        (k, v, part) for k, v, part in sent_poison)
    assert all(e.origin == "consume" and not e.transient and e.source["topic"] == topic for e in entries)
    assert len({(e.source["partition"], e.source["offset"]) for e in entries}) == 9
    too_precise = [e for e in entries if "decimal places" in e.error]
    assert len(too_precise) == 1 and too_precise[0].record["trade_id"] == "BINANCE-10004"

    # every partition's offset is in the current snapshot's summary; a second run resumes there
    table = load_table(k2_env)
    recorded = off.decode_offsets(table.current_snapshot().summary.additional_properties[off.OFFSETS_KEY])
    assert sum(recorded.values()) == total and set(recorded) == {(topic, i) for i in range(4)}
    extra = make_trade(5000)
    p.send(p.encode(extra), partition=2)
    p.flush()
    rc, stats, err = run_consume(k2_env, "--topics", topic, "--max-messages", "1", "--group", f"g2-{unique}")
    assert rc == 0, err
    assert stats["messages_consumed"] == 1 and stats["dlq_entries"] == 0
    rows = table_rows(k2_env)
    assert len(rows) == len(valid) + 2 and len({r["message_id"] for r in rows}) == len(rows)
    assert len(dlq_entries(k2_env)) == 9


def test_max_messages_is_exact_and_runs_resume_without_duplicates(topic, unique, k2_env):
    p = Producer(topic)
    p.send_trades([make_trade(i) for i in range(1000)], partition_of=lambda i: i % 4)
    p.flush()
    before = 0
    for n, batch in ((333, "100"), (500, "64"), (167, "1000")):
        rc, stats, err = run_consume(k2_env, "--topics", topic, "--max-messages", str(n), "--batch-size", batch,
                                     "--group", f"g-{unique}")
        assert rc == 0, err
        assert stats["messages_consumed"] == n == stats["messages_written"]
        rows = table_rows(k2_env)
        assert len(rows) == before + n
        before += n
    ids = [r["message_id"] for r in rows]
    assert len(set(ids)) == 1000 == len(ids)
    table = load_table(k2_env)
    snaps = table.metadata.snapshots
    assert len(snaps) == 4 + 8 + 1  # ceil(333/100) + ceil(500/64) + 1
    for s in snaps:
        props = s.summary.additional_properties
        assert {off.OFFSETS_KEY, off.BATCH_KEY, off.COMMIT_ID_KEY, off.RECORDS_KEY} <= set(props)


def test_sequence_events_for_a_tape_with_known_gaps(topic, unique, k2_env):
    p = Producer(topic)
    hour = 3600 * 1_000_000
    tape = list(range(1, 11)) + [12] + list(range(13, 21)) + [40, 39, 40]  # small gap, large gap, OOO, dup
    records = [make_trade(i, symbol="SOLUSDT", seq=s) for i, s in enumerate(tape)]
    reset = make_trade(len(tape), symbol="SOLUSDT", seq=3)
    reset["timestamp"] += 2 * hour  # far below the last sequence after a quiet period
    records += [reset, make_trade(len(tape) + 1, symbol="SOLUSDT", seq=4)]
    records[-1]["timestamp"] = reset["timestamp"] + 1000
    records += [make_trade(100 + i, symbol="ADAUSDT", seq=500 + i) for i in range(5)]  # clean
    records.append(make_trade(200, symbol="XRPUSDT", seq=None))  # untracked
    p.send_trades(records, partition_of=lambda i: 0)
    p.flush()
    rc, stats, err = run_consume(k2_env, "--topics", topic, "--max-messages", str(len(records)),
                                 "--batch-size", "7", "--group", f"g-{unique}")
    assert rc == 0, err
    assert stats["sequence_gaps"] == 2
    assert stats["sequence_events"] == {"SMALL_GAP": 1, "LARGE_GAP": 1, "OUT_OF_ORDER": 1, "DUPLICATE": 1,
                                        "RESET": 1}
    assert "SMALL_GAP BINANCE/SOLUSDT: sequence 12 after 10 (1 missing)" in err
    assert "LARGE_GAP BINANCE/SOLUSDT: sequence 40 after 20 (19 missing)" in err
    assert "RESET BINANCE/SOLUSDT: sequence 3 after 40" in err
    assert stats["messages_written"] == len(records)


def test_partial_batch_is_written_once_flush_interval_old(topic, unique, k2_env):
    p = Producer(topic)
    p.send_trades([make_trade(i) for i in range(10)], partition_of=lambda i: i % 4)
    p.flush()
    proc = start_consume(k2_env, "--topics", topic, "--batch-size", "1000", "--flush-interval", "1",
                         "--group", f"g-{unique}")
    try:
        wait_for(lambda: len(table_rows(k2_env, missing_ok=True)) == 10, timeout=60,
                 what="10 rows written by the flush interval")
        assert proc.poll() is None  # still running: the flush interval wrote them, not the exit
    finally:
        rc, stats, err = stop(proc)
    assert rc == 0, err
    assert stats["messages_written"] == 10 and stats["stopped_by"] == "SIGTERM"


def test_sigterm_on_an_idle_topic_stops_within_two_seconds_with_batch_written(topic, unique, k2_env):
    p = Producer(topic)
    p.send_trades([make_trade(i) for i in range(25)], partition_of=lambda i: i % 4)
    p.flush()
    port = free_port()
    proc = start_consume(k2_env, "--topics", topic, "--batch-size", "500", "--flush-interval", "600",
                         "--group", f"g-{unique}", metrics_port=port)
    try:
        wait_for(lambda: _metric(port, "k2_consumer_assigned_partitions") == 4, timeout=60, what="assignment")
        time.sleep(2.0)  # the 25 records are in the batch (not written: flush interval 600 s); the topic is idle
        assert table_rows(k2_env, missing_ok=True) == []
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    # within 2 s (docs/consume.md), stretched while other processes load the box; a consumer that waited for its
    # 600 s flush interval or a session timeout would still fail
    limit = budget(2.0)
    assert elapsed < limit, f"took {elapsed:.2f}s to stop (limit {limit:.1f} s, {load_note()})"
    assert '"messages_written": 25' in out and '"stopped_by": "SIGTERM"' in out
    assert len(table_rows(k2_env)) == 25


def test_metrics_endpoint_reports_the_run(topic, unique, k2_env):
    p = Producer(topic)
    p.send_trades([make_trade(i, symbol="BTCUSDT", seq=i + 1) for i in range(300)], partition_of=lambda i: 0)
    p.send(b"\x05not-avro", partition=1)
    p.flush()
    port = free_port()
    proc = start_consume(k2_env, "--topics", topic, "--batch-size", "100", "--flush-interval", "0.5",
                         "--group", f"g-{unique}", metrics_port=port)
    try:
        wait_for(lambda: _metric(port, "k2_messages_written_total", {"topic": topic}) == 300, timeout=60,
                 what="300 written in metrics")
        wait_for(lambda: _metric(port, "k2_messages_consumed_total", {"topic": topic}) == 301, timeout=30,
                 what="301 consumed in metrics")
        text = _scrape(port)
        assert _metric(port, "k2_dlq_entries_total", {"error_type": "bad_magic_byte"}) == 1
        assert _metric(port, "k2_consumer_errors_total", {"error_type": "bad_magic_byte"}) == 1
        assert _metric(port, "k2_iceberg_write_duration_seconds_count") >= 3
        assert _metric(port, "k2_consumer_batch_size_count") >= 3
        assert _metric(port, "k2_circuit_breaker_state", {"breaker": "iceberg"}) == 0
        assert _metric(port, "k2_iceberg_snapshots_committed_total") >= 3
        for part in "0123":  # lag is sampled every 2 s
            wait_for(lambda part=part: _metric(port, "k2_consumer_lag_messages",
                                               {"topic": topic, "partition": part}) == 0, timeout=30,
                     what=f"lag 0 on partition {part}")
        assert _metric(port, "k2_consumer_total_lag_messages") == 0
        assert _metric(port, "k2_consumer_assigned_partitions") == 4
        assert "process_memory_rss_bytes" in text
    finally:
        rc, _, err = stop(proc)
    assert rc == 0, err


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def _metric(port: int, name: str, labels: dict[str, str] | None = None) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = _scrape(port)
    except OSError:
        return None
    total = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                total = (total or 0) + sample.value
    return total


def test_bad_flags_give_one_clear_line(k2_env):
    rc, _, err = run_consume(k2_env, "--topics", "x", "--batch-size", "0")
    assert rc == 2 and "Traceback" not in err and "--batch-size" in err
    rc, _, err = run_consume(k2_env, "--topics", " , ")
    assert rc == 2 and "Traceback" not in err and "--topics" in err
    assert trade.SCALE == 8
