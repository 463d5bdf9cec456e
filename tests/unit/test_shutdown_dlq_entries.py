"""What the stream keeps when Kafka has not acknowledged trades at the stop: the routing of librdkafka's purge
reports, the replayable entry of each record, and the run's last line (its count is the entries kept)."""

from __future__ import annotations

from k2cli.reliability.dlq import DLQEntry
from k2cli.reliability.dlq_ops import build_message, replayable, target_topic
from k2cli.settings import Settings
from k2cli.stream.dead_letters import UNACKNOWLEDGED, _trades, unacknowledged_entry
from k2cli.stream.kafka_sink import route_failures
from k2cli.stream.summary import StreamSummary


def _route() -> tuple[list, list]:
    failed: list = []
    taken_back: list = []
    hook = route_failures(lambda k, v, name, msg: failed.append((k, v, name, msg)),
                          lambda k, v, stage: taken_back.append((k, v, stage)))
    hook(b"BTCUSDT", b"q", "_PURGE_QUEUE", "Local: Purged in queue")
    hook(b"ETHUSDT", b"f", "_PURGE_INFLIGHT", "Local: Purged in flight")
    hook(b"BTCUSDT", b"r", "MSG_SIZE_TOO_LARGE", "Broker: Message size too large")
    return failed, taken_back


def test_purge_reports_are_taken_back_with_their_stage_and_refusals_stay_failures():
    failed, taken_back = _route()
    assert taken_back == [(b"BTCUSDT", b"q", "queue"), (b"ETHUSDT", b"f", "in_flight")]
    assert failed == [(b"BTCUSDT", b"r", "MSG_SIZE_TOO_LARGE", "Broker: Message size too large")]


def test_an_unacknowledged_record_replays_its_bytes_with_its_key_to_the_stream_topic():
    entry = unacknowledged_entry("binance", "t.trades", b"BTCUSDT", b"\x00\x00\x00\x00\x01avro", "queue")
    assert (entry.origin, entry.error_type, entry.transient) == ("stream", UNACKNOWLEDGED, True)
    assert entry.source == {"exchange": "binance", "topic": "t.trades", "stage": "queue", "key": "BTCUSDT"}
    back = DLQEntry.from_json(entry.to_json())  # as replay reads it from the file
    assert replayable(back) == (True, "original value bytes to the source topic")
    topic = target_topic(back, None, Settings())
    message = build_message(back, topic, lambda t, r: b"unused")
    assert (message.topic, message.key, message.value) == ("t.trades", b"BTCUSDT", b"\x00\x00\x00\x00\x01avro")


def test_only_an_in_flight_record_warns_that_a_replay_may_duplicate_it():
    reasons = {stage: unacknowledged_entry("kraken", "t", None, b"v", stage).error
               for stage in ("buffer", "queue", "in_flight")}
    assert "twice" in reasons["in_flight"] and "trade id once" in reasons["in_flight"]
    assert not any("twice" in reasons[s] for s in ("buffer", "queue"))
    assert unacknowledged_entry("kraken", "t", None, b"v", "buffer").source["key"] is None


def test_only_entries_that_keep_a_record_count_as_trades():
    frame = DLQEntry(error="bad", error_type="invalid_json", origin="stream", raw_frame="{")
    kept = unacknowledged_entry("binance", "t", b"k", b"v", "buffer")
    assert _trades([frame, kept, kept]) == 2


def _summary(**counts) -> StreamSummary:
    return StreamSummary(exchange="binance", topic="t", url="ws://x", symbols=["BTCUSDT"], dlq_dir="/d", **counts)


def test_the_last_line_counts_the_trades_kept():
    summary = _summary(undelivered=8, produce_errors={"MSG_SIZE_TOO_LARGE": 2}, dlq_trades=10, dlq_entries=13)
    assert summary.not_delivered == 10
    assert summary.not_delivered_line() == (
        "10 trades were not delivered to Kafka; all 10 are kept in the dead-letter directory /d: "
        "`k2 dlq replay` produces them once Kafka can take them")


def test_the_last_line_says_how_many_could_not_be_kept():
    assert _summary(undelivered=5, dlq_trades=3).not_delivered_line() == (
        "5 trades were not delivered to Kafka; 3 are kept in the dead-letter directory /d, 2 could not be kept: "
        "`k2 dlq replay` produces them once Kafka can take them")
    assert _summary(undelivered=1, dlq_trades=1).not_delivered_line() == (
        "1 trade was not delivered to Kafka; it is kept in the dead-letter directory /d: "
        "`k2 dlq replay` produces it once Kafka can take it")


def test_no_line_when_everything_was_delivered():
    assert _summary(dlq_entries=4).not_delivered_line() == ""
