"""Decoding chunks and assembling batches with plain values (a registry stand-in that returns schemas by id)."""

from __future__ import annotations

import io
from decimal import Decimal

import fastavro
import pytest

from k2cli import trade
from k2cli.consume.batch import Batch, decode_chunk
from k2cli.consume.decode import ValueDecoder
from k2cli.errors import ServiceUnavailable
from k2cli.kafka.registry import UnknownSchemaId
from k2cli.kafka.serde import frame, strip_logical_types

T0 = 1_767_225_600_000_000


class Schemas:
    """Schemas by id, as a registry would give them; `down` makes every lookup a transient failure."""

    def __init__(self) -> None:
        self.by_id = {1: trade.avro_schema()}
        self.down = False

    def schema_by_id(self, schema_id):
        if self.down:
            raise ServiceUnavailable("registry down")
        if schema_id not in self.by_id:
            raise UnknownSchemaId(f"schema id {schema_id} is not in the registry")
        return self.by_id[schema_id]


class Msg:
    def __init__(self, topic, partition, offset, value, key=b"BTCUSDT"):
        self._t, self._p, self._o, self._v, self._k = topic, partition, offset, value, key

    def topic(self):
        return self._t

    def partition(self):
        return self._p

    def offset(self):
        return self._o

    def value(self):
        return self._v

    def key(self):
        return self._k

    def timestamp(self):
        return (1, 1_767_225_600_000)

    def error(self):
        return None


def rec(i: int, **kw) -> dict:
    base = dict(message_id=f"00000000-0000-4000-8000-{i:012d}", trade_id=f"BINANCE-{i}", symbol="BTCUSDT",
                exchange="BINANCE", timestamp_us=T0 + i, price=f"43210.{i:08d}", quantity="0.00120000",
                currency="USDT", side="BUY", ingestion_timestamp_us=T0 + i + 5, source_sequence=i,
                vendor_data={"k": "v"})
    base.update(kw)
    return trade.new_trade(**base)


def encode(record: dict, schema_id: int = 1, schema: dict | None = None) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema or trade.avro_schema()), record)
    return frame(schema_id, buf.getvalue())


def raw(record: dict, **wire) -> bytes:
    """Encode with decimals given as unscaled ints at the wire level (to make values v2 would refuse)."""
    r = dict(record)
    for name in trade.DECIMAL_FIELDS:
        r[name] = int(wire.pop(name, trade.unscaled(record[name]))).to_bytes(16, "big", signed=True)
    r.update(wire)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(strip_logical_types(trade.avro_schema())), r)
    return frame(1, buf.getvalue())


@pytest.fixture
def schemas():
    return Schemas()


def test_valid_records_become_exact_arrow_rows(schemas):
    records = [rec(i) for i in range(3)]
    result = decode_chunk(ValueDecoder(schemas), [encode(r) for r in records])
    assert result.poison == [] and result.stalled_at is None
    rows = result.table.to_pylist()
    assert result.table.schema == trade.arrow_schema()
    assert [r["price"] for r in rows] == [Decimal("43210.00000000"), Decimal("43210.00000001"),
                                         Decimal("43210.00000002")]
    assert rows[1]["quantity"] == Decimal("0.00120000")
    assert rows[2]["timestamp"].timestamp() * 1_000_000 == T0 + 2
    assert rows[0]["vendor_data"] == [("k", "v")] and rows[0]["trade_conditions"] == []


def test_each_kind_of_poison_is_reported_alone_by_index(schemas):
    good = rec(1)
    values = [
        encode(rec(0)),
        b"\x01" + encode(good)[1:],  # bad magic byte
        frame(99, b"\x00"),  # unknown schema id
        encode(good)[:30],  # truncated
        encode(good) + b"\x00\x01",  # trailing bytes
        None,  # tombstone
        raw(good, price=0),  # not positive
        raw(good, quantity=-5),  # negative
        raw(good, price=10 ** 18),  # does not fit decimal(18,8)
        raw(good, symbol=""),  # empty string
        raw(good, message_id="not-a-uuid"),
        encode(rec(2)),
    ]
    result = decode_chunk(ValueDecoder(schemas), values)
    kinds = {i: t for i, t, _, _ in result.poison}
    assert kinds == {1: "bad_magic_byte", 2: "unknown_schema_id", 3: "truncated", 4: "invalid_record",
                     5: "null_value", 6: "invalid_value", 7: "invalid_value", 8: "invalid_value",
                     9: "invalid_value", 10: "invalid_value"}
    assert [r["trade_id"] for r in result.table.to_pylist()] == ["BINANCE-0", "BINANCE-2"]
    reasons = {i: e for i, _, e, _ in result.poison}
    assert "price: not positive" in reasons[6] and "quantity: not positive" in reasons[7]
    assert "does not fit" in reasons[8] and "symbol" in reasons[9] and "UUID" in reasons[10]
    decoded = {i: r for i, _, _, r in result.poison}
    assert decoded[6]["price"] == Decimal(0) and decoded[6]["trade_id"] == "BINANCE-1"


def _scale10_schema() -> dict:
    schema = trade.avro_schema()
    for f in schema["fields"]:
        if f["name"] in trade.DECIMAL_FIELDS:
            f["type"] = {"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 10}
    return schema


def test_writer_with_scale_10_is_rescaled_exactly_or_rejected(schemas):
    schemas.by_id[7] = _scale10_schema()
    ok = dict(rec(0), price=Decimal("123.4567890100"), quantity=Decimal("2"))
    too_precise = dict(rec(1), price=Decimal("123.4567890123"))
    result = decode_chunk(ValueDecoder(schemas), [encode(ok, 7, _scale10_schema()),
                                                  encode(too_precise, 7, _scale10_schema())])
    rows = result.table.to_pylist()
    assert [r["price"] for r in rows] == [Decimal("123.45678901")]
    assert rows[0]["quantity"] == Decimal("2.00000000")
    assert [(i, t) for i, t, _, _ in result.poison] == [(1, "invalid_value")]
    assert "more than 8 decimal places" in result.poison[0][2]


def test_registry_down_stops_the_chunk_at_the_first_unknown_id(schemas):
    dec = ValueDecoder(schemas)
    decode_chunk(dec, [encode(rec(0))])  # id 1 is now cached
    schemas.by_id[2] = trade.avro_schema()
    schemas.down = True
    result = decode_chunk(dec, [encode(rec(1)), encode(rec(2), 2), encode(rec(3))])
    assert result.stalled_at == 1 and result.table.num_rows == 1


def test_batch_tracks_ranges_skips_foreign_and_stale_and_builds(schemas):
    positions = {("t", 0): None, ("t", 1): 10}
    batch = Batch(positions)
    msgs = [Msg("t", 0, 0, encode(rec(0))), Msg("t", 1, 9, encode(rec(1))),  # stale: below 10
            Msg("t", 1, 10, b"junk-value"), Msg("t", 2, 0, encode(rec(2))),  # partition 2 is not ours
            Msg("t", 0, 1, encode(rec(3))), Msg("t", 1, 11, encode(rec(4)))]
    reserved = batch.reserve(msgs)
    assert len(reserved.messages) == 4 and batch.skipped == 2 and len(batch) == 4
    rest = batch.apply(reserved, decode_chunk(ValueDecoder(schemas), reserved.values))
    assert rest == []
    built = batch.build()
    assert built.ranges == {("t", 0): (0, 2), ("t", 1): (10, 12)}
    assert built.records == 4 and built.table.num_rows == 3
    assert [(p.partition, p.offset, p.error_type, p.value) for p in built.poison] == [(1, 10, "bad_magic_byte",
                                                                                    b"junk-value")]
    assert built.table.column("source_sequence").to_pylist() == [0, 3, 4]
    assert positions == {("t", 0): 2, ("t", 1): 12}
    # a re-delivery of what the batch already has is skipped
    assert batch.reserve([Msg("t", 0, 1, encode(rec(3)))]).messages == []


def test_batch_drop_removes_partitions_and_unreserve_rewinds(schemas):
    positions = {("t", 0): None, ("t", 1): None}
    batch = Batch(positions)
    msgs = [Msg("t", p, o, encode(rec(10 * p + o))) for o in range(3) for p in (0, 1)]
    reserved = batch.reserve(msgs)
    batch.apply(reserved, decode_chunk(ValueDecoder(schemas), reserved.values))
    assert batch.drop([("t", 1)]) == 3
    built = batch.build()
    assert set(built.ranges) == {("t", 0)} and built.table.num_rows == 3 and len(batch) == 3
    later = batch.reserve([Msg("t", 0, 3, encode(rec(3))), Msg("t", 0, 4, encode(rec(4)))])
    batch.unreserve(later.messages)
    assert positions[("t", 0)] == 3 and batch.ranges[("t", 0)] == [0, 3] and len(batch) == 3


def test_apply_returns_what_the_registry_could_not_decode(schemas):
    positions = {("t", 0): None}
    batch = Batch(positions)
    dec = ValueDecoder(schemas)
    schemas.down = True
    reserved = batch.reserve([Msg("t", 0, o, encode(rec(o))) for o in range(3)])
    rest = batch.apply(reserved, decode_chunk(dec, reserved.values))
    assert [m.offset() for m in rest] == [0, 1, 2]
    assert len(batch) == 0 and positions[("t", 0)] == 0 and batch.ranges == {}
