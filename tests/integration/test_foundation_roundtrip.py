"""A framed Avro v2 trade through the real broker and registry; the trades table through both catalogs."""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal

import pytest

from k2cli import trade
from tests.conftest import require

pytestmark = pytest.mark.integration


def _sample(i: int = 0) -> dict:
    now = int(time.time() * 1_000_000)
    return trade.new_trade(trade_id=f"BINANCE-{1000 + i}", symbol="BTCUSDT", exchange="BINANCE",
                           timestamp_us=now, price="16500.12345678", quantity="0.00001234", currency="USDT",
                           side="BUY", ingestion_timestamp_us=now + 5, source_sequence=1000 + i,
                           vendor_data={"base_asset": "BTC", "quote_asset": "USDT"})


def test_avro_trade_round_trip_through_broker_and_registry(unique):
    require("kafka", "schema-registry")
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    from k2cli.kafka.registry import RegistryClient
    from k2cli.kafka.serde import AvroDeserializer, SerializerCache

    topic = f"test.roundtrip.{unique}"
    admin = AdminClient({"bootstrap.servers": "localhost:9092"})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)

    registry = RegistryClient("http://localhost:8081")
    serializer = SerializerCache(registry).get(f"{topic}-value")
    records = [_sample(i) for i in range(3)]
    producer = Producer({"bootstrap.servers": "localhost:9092", "enable.idempotence": True, "acks": "all"})
    for rec in records:
        producer.produce(topic, key=rec["symbol"].encode(), value=serializer.serialize(rec))
    assert producer.flush(30) == 0

    consumer = Consumer({"bootstrap.servers": "localhost:9092", "group.id": f"g-{unique}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got = []
    deadline = time.time() + 30
    while len(got) < 3 and time.time() < deadline:
        msg = consumer.poll(1.0)
        if msg is not None and not msg.error():
            got.append(msg.value())
    consumer.close()
    assert len(got) == 3
    assert got[0][0] == 0 and int.from_bytes(got[0][1:5], "big") == serializer.schema_id
    assert f"{topic}-value" in registry.subjects()

    decoder = AvroDeserializer(RegistryClient("http://localhost:8081"))
    decoded = [decoder.decode(v) for v in got]
    for rec, back in zip(records, decoded, strict=True):
        assert back["price"] == Decimal("16500.12345678") and back["quantity"] == Decimal("0.00001234")
        assert back["trade_id"] == rec["trade_id"] and back["message_id"] == rec["message_id"]
        assert back["vendor_data"] == rec["vendor_data"]
        assert back["timestamp"] == dt.datetime.fromtimestamp(rec["timestamp"] / 1e6, dt.UTC).replace(
            microsecond=rec["timestamp"] % 1_000_000)


def _arrow(records):
    import pyarrow as pa

    rows = []
    for rec in records:
        row = dict(rec)
        for name in trade.TIMESTAMP_FIELDS:
            row[name] = dt.datetime.fromtimestamp(rec[name] // 1_000_000, dt.UTC).replace(
                microsecond=rec[name] % 1_000_000)
        row["vendor_data"] = list(rec["vendor_data"].items()) if rec["vendor_data"] else None
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=trade.arrow_schema())


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_trades_table_create_write_read(backend, tmp_path, unique, monkeypatch):
    from k2cli.lake.catalog import ensure_trades_table, open_catalog
    from k2cli.settings import load_settings

    if backend == "postgres":
        require("postgres")
        monkeypatch.setenv("K2_ICEBERG_CATALOG_URI", "postgresql+psycopg2://k2:k2@localhost:5432/k2_catalog")
    monkeypatch.setenv("K2_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("K2_ICEBERG_WAREHOUSE", f"file://{tmp_path / 'warehouse'}")
    settings = load_settings()
    catalog = open_catalog(settings)
    name = f"test_{unique}.trades_v2"
    table = ensure_trades_table(catalog, name)
    assert ensure_trades_table(catalog, name).metadata.table_uuid == table.metadata.table_uuid
    assert str(table.spec().fields[0].transform) == "day"
    records = [_sample(i) for i in range(5)]
    table.append(_arrow(records), snapshot_properties={"k2.test": unique})
    table = catalog.load_table(name)
    assert table.current_snapshot().summary["k2.test"] == unique
    rows = sorted(table.scan().to_arrow().to_pylist(), key=lambda r: r["trade_id"])
    assert [r["trade_id"] for r in rows] == [r["trade_id"] for r in records]
    assert all(r["price"] == Decimal("16500.12345678") for r in rows)
    assert rows[0]["vendor_data"] == [("base_asset", "BTC"), ("quote_asset", "USDT")]
    catalog.drop_table(name)
