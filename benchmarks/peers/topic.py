"""The one topic all readers consume: N Confluent-framed Avro v2 trades over 6 partitions, and what they sum to."""

from __future__ import annotations

import io
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal

BOOTSTRAP = "localhost:9092"
REGISTRY = "http://localhost:8081"
PARTITIONS = 6
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT", "AVAXUSDT", "DOTUSDT",
           "LINKUSDT", "TRXUSDT", "LTCUSDT")  # two per partition, each symbol's sequence whole in one partition
T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in µs


@dataclass(frozen=True)
class Expected:
    """What the topic holds, summed exactly: every reader's table must hold the same."""

    records: int
    price_sum: Decimal
    quantity_sum: Decimal
    t0: int
    ts_offset_sum: int  # sum of (timestamp - t0) in µs
    sub_ms: int  # timestamps that are not whole milliseconds
    schema_id: int
    produce_seconds: float


def produce(topic: str, records: int) -> Expected:
    """Create the topic and fill it with k2's v2 trades (registered under <topic>-value); what was produced."""
    import fastavro
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    from k2cli import trade
    from k2cli.kafka.registry import RegistryClient
    from k2cli.kafka.serde import frame, strip_logical_types

    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])[topic].result(30)
    schema_id = RegistryClient(REGISTRY).register(f"{topic}-value", trade.avro_schema())
    parsed = fastavro.parse_schema(strip_logical_types(trade.avro_schema()))
    producer = Producer({"bootstrap.servers": BOOTSTRAP, "linger.ms": 50, "batch.num.messages": 10000,
                         "queue.buffering.max.messages": 2_000_000, "queue.buffering.max.kbytes": 1_048_576,
                         "compression.type": "lz4", "enable.idempotence": True})
    started = time.perf_counter()
    seqs = [0] * len(SYMBOLS)
    price_sum = quantity_sum = ts_sum = sub_ms = 0
    buf = io.BytesIO()
    for i in range(records):
        s = i % len(SYMBOLS)
        seqs[s] += 1
        ts = T0 + i * 997  # most are not whole milliseconds: a reader that truncates to ms is caught
        price = 4_321_012_345_678 + (i * 7919) % 10**9  # unscaled, decimal(18,8): 43210.12345678 and up
        quantity = 120_000 + (i * 104_729) % 10**8
        price_sum += price
        quantity_sum += quantity
        ts_sum += ts - T0
        sub_ms += ts % 1000 != 0
        rec = {
            "message_id": str(uuid.UUID(int=i + 1, version=4)), "trade_id": f"BINANCE-{seqs[s]}",
            "symbol": SYMBOLS[s], "exchange": "BINANCE", "asset_class": "crypto", "timestamp": ts,
            "price": price.to_bytes(8, "big", signed=True), "quantity": quantity.to_bytes(8, "big", signed=True),
            "currency": "USDT", "side": "BUY" if i % 2 else "SELL", "trade_conditions": [],
            "source_sequence": seqs[s], "ingestion_timestamp": ts + 250, "platform_sequence": None,
            "vendor_data": {"is_buyer_maker": "true" if i % 2 else "false", "event_type": "trade"},
        }
        buf.seek(0)
        buf.truncate()
        fastavro.schemaless_writer(buf, parsed, rec)
        value = frame(schema_id, buf.getvalue())
        while True:
            try:
                producer.produce(topic, key=SYMBOLS[s].encode(), value=value, partition=s % PARTITIONS)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 1000 == 0:
            producer.poll(0)
    if producer.flush(300) != 0:
        raise SystemExit(f"producing {topic}: records left undelivered")
    return Expected(records, Decimal(price_sum).scaleb(-trade.SCALE), Decimal(quantity_sum).scaleb(-trade.SCALE),
                    T0, ts_sum, sub_ms,
                    schema_id, time.perf_counter() - started)


def create_topic(name: str, partitions: int) -> None:
    """A topic of the harness's own (Connect's control topic)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result(30)


def delete_topics(names: list[str]) -> None:
    """Remove the harness's topics from the shared broker (best effort)."""
    import contextlib

    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    for fut in admin.delete_topics(names, operation_timeout=30).values():
        with contextlib.suppress(Exception):
            fut.result(60)
