"""Rows into Kafka off the hot path: encode, key by symbol, queue; what the gap backfill and `k2 backfill` share.

Same encoder, header and producer queue as the live trades (so the same topic, key and partition per symbol).
A writer that produces in bulk waits in `room()` while the producer holds more than half its capacity: the live
path keeps the other half and is never paused by a backfill.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from k2cli.exchanges.base import ROW_SYMBOL, Row

if TYPE_CHECKING:
    from k2cli.settings import Settings
    from k2cli.stream.kafka_sink import DeliveryFailed, KafkaSink, Unacknowledged

RowEncoder = Callable[[Row, bytes], bytes]  # (row, header) -> header + the row's Avro body


class RowSink:
    """Puts rows into the Kafka sink keyed by their symbol; `room()` is the bulk writer's back-pressure."""

    def __init__(self, sink: KafkaSink, encode: RowEncoder, header: bytes, capacity: int) -> None:
        self.sink = sink
        self.encode = encode
        self.header = header
        self.capacity = capacity  # the producer's queue bound (messages)
        self.put_count = 0
        self._keys: dict[str, bytes] = {}

    def put(self, row: Row) -> None:
        """Encode one row and queue it (behind anything already waiting, so order holds)."""
        symbol = row[ROW_SYMBOL]
        key = self._keys.get(symbol)
        if key is None:
            key = self._keys[symbol] = symbol.encode()
        value = self.encode(row, self.header)
        sink = self.sink
        if sink.pending or not sink.try_produce(key, value):
            sink.pending.append((key, value))
        self.put_count += 1

    async def room(self, interval: float = 0.02) -> None:
        """Wait until nothing waits in front of the producer and it holds at most half its capacity."""
        sink = self.sink
        while True:
            sink.producer.poll(0)
            if sink.pending:
                sink.push_pending()
            if not sink.pending and sink.producer.pending <= self.capacity // 2:
                return
            await asyncio.sleep(interval)


def open_row_sink(settings: Settings, topic: str, on_failure: DeliveryFailed, on_unacknowledged: Unacknowledged,
                  on_cache_change: Callable[[int, int], None] | None = None) -> RowSink:
    """Register the topic's schema (fails fast if the registry is down), open the producer; the stream's encoder."""
    from k2cli.kafka.registry import RegistryClient
    from k2cli.kafka.serde import SerializerCache, frame
    from k2cli.kafka.v2encode import make_row_encoder
    from k2cli.stream.kafka_sink import KafkaSink

    cache = SerializerCache(RegistryClient.from_settings(settings), settings.serializer_cache_max_size,
                            on_change=on_cache_change)
    serializer = cache.get(f"{topic}-value")
    header = frame(serializer.schema_id, b"")  # registers the schema
    sink = KafkaSink.open(settings, topic, on_failure, on_unacknowledged)
    return RowSink(sink, make_row_encoder(), header, settings.producer_buffer_max_messages)
