"""Where a restarted stream resumes: the last trade id per symbol already in the topic.

A short-lived consumer reads the tail of each partition backwards, a chunk at a time, decodes the values with
the registry's Avro serde and keeps, per symbol of this exchange, the highest source_sequence and its trade
time (feeds without ids, asked with `newest`: the newest trade time and the trade ids read, so that trades a
restart's snapshot replays are not produced again). A symbol is
settled once a chunk holds a live record of it (backfilled ones, vendor_data source=rest,
may follow it with lower ids). Bounded in records per partition and in time; what it cannot find, it leaves out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from k2cli.settings import Settings

log = logging.getLogger("k2.stream")

CHUNK = 1_000  # records read per partition per step back
MAX_RECORDS = 20_000  # records read per partition at most
TIMEOUT = 5.0  # seconds for the whole look-up (Kafka down at start-up: the stream starts this much later)

Positions = dict[str, tuple[int, int]]  # symbol -> (highest trade id, its trade time µs)
Newest = dict[str, tuple[int, set[str]]]  # symbol -> (newest trade time µs, the trade ids read)


def fold(records: Iterable[dict[str, Any]], exchange_code: str, symbols: set[str], found: Positions,
         settled: set[str], newest: Newest | None = None) -> None:
    """Fold decoded records into `found` (highest id per symbol) or, records without an id, into `newest` when
    given; note the symbols a live record settles."""
    for rec in records:
        symbol, seq = rec.get("symbol"), rec.get("source_sequence")
        if rec.get("exchange") != exchange_code or symbol not in symbols:
            continue
        if isinstance(seq, int):
            best = found.get(symbol)
            if best is None or seq > best[0]:
                found[symbol] = (seq, _micros(rec.get("timestamp")))
        elif newest is not None and seq is None:
            at, top = _micros(rec.get("timestamp")), newest.get(symbol)
            ids = top[1] if top is not None else set()
            ids.add(str(rec.get("trade_id")))
            newest[symbol] = (max(at, top[0]) if top is not None else at, ids)
        else:
            continue
        if (rec.get("vendor_data") or {}).get("source") != "rest":
            settled.add(symbol)


def chunk_starts(low: int, high: int, chunk: int = CHUNK, max_records: int = MAX_RECORDS) -> list[tuple[int, int]]:
    """The [start, end) offset ranges to read from the end of a partition backwards, newest first."""
    out: list[tuple[int, int]] = []
    end = high
    floor = max(low, high - max_records)
    while end > floor:
        start = max(floor, end - chunk)
        out.append((start, end))
        end = start
    return out


def _micros(value: Any) -> int:
    import datetime as dt

    if isinstance(value, dt.datetime):
        from k2cli.timespec import to_micros

        return to_micros(value)
    return int(value or 0)


def last_positions(settings: Settings, topic: str, exchange_code: str, symbols: set[str],
                   timeout: float = TIMEOUT, newest: Newest | None = None) -> Positions:
    """The highest trade id (and its time) per symbol in the topic's tail; {} if the topic is empty or absent.
    newest: filled with the newest trade time (and its ids) per symbol of records without ids."""
    from confluent_kafka import Consumer, TopicPartition

    from k2cli.kafka.registry import RegistryClient
    from k2cli.kafka.serde import AvroDeserializer

    deadline = time.monotonic() + timeout
    decoder = AvroDeserializer(RegistryClient.from_settings(settings))
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": "k2-stream-resume",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    found: Positions = {}
    settled: set[str] = set()
    try:
        meta = consumer.list_topics(topic, timeout=min(3.0, max(0.1, deadline - time.monotonic())))
        info = meta.topics.get(topic)
        if info is None or info.error is not None:
            return {}
        for partition in sorted(info.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                       timeout=max(0.1, deadline - time.monotonic()))
            for start, end in chunk_starts(low, high):
                if settled >= symbols or time.monotonic() > deadline:
                    break
                fold(_read(consumer, topic, partition, start, end, decoder, deadline), exchange_code, symbols,
                     found, settled, newest)
    finally:
        consumer.close()
    return found


def _read(consumer: Any, topic: str, partition: int, start: int, end: int, decoder: Any,
          deadline: float) -> list[dict[str, Any]]:
    """Decoded values of offsets [start, end) of one partition (undecodable ones skipped)."""
    from confluent_kafka import KafkaError, TopicPartition

    consumer.assign([TopicPartition(topic, partition, start)])
    out: list[dict[str, Any]] = []
    position = start
    while position < end and time.monotonic() < deadline:
        for msg in consumer.consume(min(500, end - position), timeout=0.5):
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    return out
                continue
            position = msg.offset() + 1
            if msg.offset() < end:
                try:
                    out.append(decoder.decode(msg.value()))
                except Exception as exc:  # a foreign or broken value: not ours to judge here
                    log.debug("resume: skipped offset %d of %s[%d]: %s", msg.offset(), topic, partition, exc)
    return out
