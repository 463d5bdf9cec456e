"""DLQ operations on real files: selection, stats, the replay ledger (at most once) and exact purges."""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path

import pytest

from k2cli.reliability import dlq_ops
from k2cli.reliability.dlq import DeadLetterQueue, DLQEntry, iter_entries

NOW = dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.UTC)


class _Settings:
    kafka_bootstrap_servers = "unused:9092"
    schema_registry_url = "http://unused:8081"
    schema_registry_basic_auth = schema_registry_bearer_token = schema_registry_ca_location = ""

    def exchange_topic(self, exchange: str) -> str:
        return f"market.crypto.trades.{exchange}"


def _entry(age_days: float, error_type: str = "bad_magic_byte", origin: str = "consume", **kw: object) -> DLQEntry:
    moment = (NOW - dt.timedelta(days=age_days)).isoformat()
    if origin == "consume":
        kw.setdefault("source", {"topic": "t.in", "partition": 0, "offset": int(age_days * 10), "key": "BTCUSDT"})
        kw.setdefault("value", b"\x00\x00\x00\x00\x01payload")
    else:
        kw.setdefault("source", {"exchange": "binance", "url": "ws://x"})
        kw.setdefault("raw_frame", '{"e":"trade"}')
    return DLQEntry(error="boom", error_type=error_type, origin=origin, timestamp=moment, **kw)  # type: ignore[arg-type]


def _fill(directory: Path) -> list[DLQEntry]:
    consume = DeadLetterQueue(directory, "consume")
    stream = DeadLetterQueue(directory, "stream")
    a = [_entry(10), _entry(9, "unknown_schema_id"), _entry(1)]
    b = [_entry(8, origin="stream", error_type="missing_field"), _entry(0.5, origin="stream")]
    consume.write(a)
    stream.write(b)
    return a + b


def test_select_by_type_time_origin_and_id_prefix(tmp_path: Path) -> None:
    entries = _fill(tmp_path)
    found = dlq_ops.scan(tmp_path).entries
    assert {e.id for e in found} == {e.id for e in entries}
    assert [e.error_type for e in dlq_ops.select(found, dlq_ops.EntryFilter(error_types=("unknown_schema_id",)))] == [
        "unknown_schema_id"]
    recent = dlq_ops.select(found, dlq_ops.EntryFilter(since=NOW - dt.timedelta(days=2)))
    assert sorted(e.id for e in recent) == sorted([entries[2].id, entries[4].id])
    assert len(dlq_ops.select(found, dlq_ops.EntryFilter(origin="stream"))) == 2
    assert dlq_ops.find(found, entries[1].id[:10]).id == entries[1].id
    with pytest.raises(dlq_ops.DLQOpError):
        dlq_ops.find(found, "nope")


def test_stats_count_everything_including_unreadable_lines(tmp_path: Path) -> None:
    _fill(tmp_path)
    with next(tmp_path.glob("dlq-consume-*.jsonl")).open("a") as fh:
        fh.write("{not json\n")
    stats = dlq_ops.stats(tmp_path)
    assert stats["entries"] == 5
    assert stats["by_origin"] == {"consume": 3, "stream": 2}
    assert stats["by_error_type"] == {"bad_magic_byte": 3, "unknown_schema_id": 1, "missing_field": 1}
    assert stats["unreadable_lines"] == 1
    assert stats["oldest"] == NOW - dt.timedelta(days=10)
    assert stats["newest"] == NOW - dt.timedelta(days=0.5)
    assert sum(f["entries"] for f in stats["by_file"].values()) == 5
    assert stats["not_replayable"] == 2  # the stream entries hold raw frames only


def test_replay_produces_each_entry_at_most_once(tmp_path: Path) -> None:
    entries = _fill(tmp_path)
    produced: list[dlq_ops.Message] = []

    def producer(messages: list[dlq_ops.Message]) -> list[tuple[int | None, int | None, str | None]]:
        # the ledger must already hold `pending` for every message handed over
        ledger = dlq_ops.ReplayLedger(tmp_path).load()
        assert all(ledger[m.entry.id]["state"] == "pending" for m in messages)
        produced.extend(messages)
        return [(0, 100 + i, None) for i in range(len(messages))]

    everything = dlq_ops.EntryFilter(since=NOW - dt.timedelta(days=365))
    first = dlq_ops.replay(tmp_path, everything, _Settings(), producer=producer, encode=_no_encode)
    assert sorted(o.status for o in first) == ["replayed", "replayed", "replayed", "skipped", "skipped"]
    assert [m.value for m in produced] == [e.value for e in entries[:3]]
    assert [m.topic for m in produced] == ["t.in"] * 3 and produced[0].key == b"BTCUSDT"
    again = dlq_ops.replay(tmp_path, everything, _Settings(), producer=producer, encode=_no_encode)
    assert len(produced) == 3
    assert all(o.status == "skipped" for o in again)
    assert all("already replayed" in o.reason for o in again if o.origin == "consume")
    ledger = dlq_ops.ReplayLedger(tmp_path).load()
    assert {k: v["offset"] for k, v in ledger.items()} == {e.id: 100 + i for i, e in enumerate(entries[:3])}


def test_failed_deliveries_are_retried_only_on_request(tmp_path: Path) -> None:
    _fill(tmp_path)
    calls: list[int] = []

    def failing(messages: list[dlq_ops.Message]) -> list[tuple[int | None, int | None, str | None]]:
        calls.append(len(messages))
        return [(None, None, "delivery failed: broker down")] * len(messages)

    flt = dlq_ops.EntryFilter(error_types=("unknown_schema_id",))
    assert [o.status for o in dlq_ops.replay(tmp_path, flt, _Settings(), producer=failing, encode=_no_encode)] == [
        "failed"]
    assert [o.status for o in dlq_ops.replay(tmp_path, flt, _Settings(), producer=failing, encode=_no_encode)] == [
        "skipped"]
    out = dlq_ops.replay(tmp_path, flt, _Settings(), producer=lambda ms: [(1, 7, None)] * len(ms),
                         encode=_no_encode, retry_failed=True)
    assert [(o.status, o.offset) for o in out] == [("replayed", 7)]
    assert calls == [1]


def test_a_crash_after_pending_never_replays_again(tmp_path: Path) -> None:
    _fill(tmp_path)

    def crash(messages: list[dlq_ops.Message]) -> list[tuple[int | None, int | None, str | None]]:
        raise KeyboardInterrupt

    flt = dlq_ops.EntryFilter(error_types=("unknown_schema_id",))
    with pytest.raises(KeyboardInterrupt):
        dlq_ops.replay(tmp_path, flt, _Settings(), producer=crash, encode=_no_encode)
    out = dlq_ops.replay(tmp_path, flt, _Settings(), producer=crash, encode=_no_encode, retry_failed=True)
    assert out[0].status == "skipped" and "pending" in out[0].reason


def test_dry_run_produces_nothing_and_writes_no_ledger(tmp_path: Path) -> None:
    _fill(tmp_path)
    out = dlq_ops.replay(tmp_path, dlq_ops.EntryFilter(origin="consume"), _Settings(), dry_run=True,
                         to_topic="elsewhere", producer=_never, encode=_no_encode)
    assert [(o.status, o.topic) for o in out] == [("would_replay", "elsewhere")] * 3
    assert not (tmp_path / dlq_ops.LEDGER_NAME).exists()


def test_stream_entry_with_a_record_is_encoded_for_the_exchange_topic(tmp_path: Path) -> None:
    from k2cli.trade import new_trade

    record = new_trade(trade_id="BINANCE-1", symbol="BTCUSDT", exchange="BINANCE",
                       timestamp_us=1_700_000_000_000_000, price="1.5", quantity="2", currency="USDT", side="BUY",
                       ingestion_timestamp_us=1_700_000_000_000_001)
    as_json = json.loads(json.dumps(record, default=str))
    DeadLetterQueue(tmp_path, "stream").write([_entry(1, origin="stream", error_type="produce_failed",
                                                      record=as_json)])
    encoded: list[tuple[str, dict]] = []

    def encode(topic: str, rec: dict) -> bytes:
        encoded.append((topic, rec))
        return b"avro"

    out = dlq_ops.replay(tmp_path, dlq_ops.EntryFilter(error_types=("produce_failed",)), _Settings(),
                         producer=lambda ms: [(0, 1, None)] * len(ms), encode=encode)
    assert [(o.status, o.topic) for o in out] == [("replayed", "market.crypto.trades.binance")]
    assert encoded[0][1] == record  # validated back to exact Decimals


def test_purge_removes_exactly_the_listed_entries(tmp_path: Path) -> None:
    entries = _fill(tmp_path)
    before = {p.name: p.read_text() for p in tmp_path.glob("dlq-*.jsonl")}
    plan = dlq_ops.plan_purge(tmp_path, dt.timedelta(days=7), now=NOW)
    assert sorted(e.id for e in plan.entries) == sorted(e.id for e in entries[:2] + entries[3:4])
    assert dlq_ops.purge(tmp_path, plan) == 3
    left = sorted(e.id for e in iter_entries(tmp_path))
    assert left == sorted([entries[2].id, entries[4].id])
    for name, text in before.items():  # the kept lines are byte-identical
        kept = [line for line in text.splitlines(keepends=True) if json.loads(line)["id"] in left]
        assert (tmp_path / name).read_text() == "".join(kept)


def test_purge_of_everything_deletes_the_files(tmp_path: Path) -> None:
    _fill(tmp_path)
    plan = dlq_ops.plan_purge(tmp_path, dt.timedelta(seconds=0), now=NOW + dt.timedelta(days=1))
    assert dlq_ops.purge(tmp_path, plan) == 5
    assert list(tmp_path.glob("dlq-*.jsonl")) == []


def test_purge_never_loses_lines_written_concurrently(tmp_path: Path) -> None:
    writer = DeadLetterQueue(tmp_path, "consume")
    writer.write([_entry(30) for _ in range(200)])
    stop = threading.Event()
    written: list[str] = []

    def keep_writing() -> None:
        while not stop.is_set():
            e = _entry(0)
            writer.write([e])
            written.append(e.id)

    thread = threading.Thread(target=keep_writing)
    thread.start()
    try:
        removed = 0
        for _ in range(5):
            removed += dlq_ops.purge(tmp_path, dlq_ops.plan_purge(tmp_path, dt.timedelta(days=7), now=NOW))
    finally:
        stop.set()
        thread.join()
    assert removed == 200
    assert sorted(e.id for e in iter_entries(tmp_path)) == sorted(written)


def _no_encode(topic: str, record: dict) -> bytes:
    raise AssertionError("consume entries are never re-encoded")


def _never(messages: list[dlq_ops.Message]) -> list[tuple[int | None, int | None, str | None]]:
    raise AssertionError("dry run must not produce")


def test_stream_delivery_failures_replay_their_original_bytes(tmp_path: Path) -> None:
    """k2 stream dead-letters a trade Kafka did not acknowledge with its encoded value and topic."""
    entry = DLQEntry(error="Kafka delivery failed: Local: Message timed out", error_type="delivery_failed",
                     origin="stream", transient=True, value=b"\x00\x00\x00\x00\x05avro",
                     source={"exchange": "binance", "topic": "market.crypto.trades.binance", "key": "BTCUSDT"})
    DeadLetterQueue(tmp_path, "stream").write([entry])
    assert dlq_ops.replayable(entry) == (True, "original value bytes to the source topic")
    sent: list[dlq_ops.Message] = []

    def producer(messages: list[dlq_ops.Message]) -> list[tuple[int | None, int | None, str | None]]:
        sent.extend(messages)
        return [(0, 3, None)] * len(messages)

    out = dlq_ops.replay(tmp_path, dlq_ops.EntryFilter(origin="stream"), _Settings(), producer=producer,
                         encode=_no_encode)
    assert [o.status for o in out] == ["replayed"]
    assert (sent[0].topic, sent[0].key, sent[0].value) == ("market.crypto.trades.binance", b"BTCUSDT", entry.value)
